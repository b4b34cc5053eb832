"""Many workers on one study, on every storage, under faults, with every trial accounted for.

Real servers only: PostgreSQL on 127.0.0.1:5432 and MariaDB/MySQL on 127.0.0.1:3306 (each test
gets a fresh database, dropped after), SQLite and Optuna's journal file in a temporary folder.
Workers are real ``python -m nbtune worker`` processes; faults are real too: ``kill -9`` of a
worker, a database that refuses its connections for a few seconds, a SQLite lock held by another
connection. The one injected fault is a lost answer to a commit that succeeded, which no server
can be asked to produce on cue.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from _support import TOY, assert_exact, dispose, postgres_admin, skip_or_fail, wait_for
from optuna.trial import TrialState

import nbtune
import nbtune._storage as storage_module
from nbtune._budget import _pop_waiting, budget_state
from nbtune._storage import (
    ResilientRDBStorage,
    _fail_and_requeue,
    fail_stale_trials,
    open_storage,
    record_heartbeat,
    redact_url,
    resolve_storage_url,
    scrub,
)

PASSWORD = "s3cr3t-pw"
SPACE = {
    "learning-rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "total-timesteps": 500,
}
STORAGES = ["sqlite", "journal", "postgresql", "mariadb"]


# --------------------------------------------------------------------------------------------
# Fresh databases on the real servers
# --------------------------------------------------------------------------------------------


@dataclass
class Database:
    """A fresh database: the URL workers use, and an admin connection to make faults with."""

    kind: str
    url: str
    name: str = ""
    admin: Any = None
    user: str = ""
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def outage(self, seconds: float) -> None:
        """Refuse the study's connections for ``seconds``, ending those open now."""
        with self.admin.cursor() as cur:
            if self.kind == "postgresql":
                cur.execute(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS false")
                self._terminate(cur)
                time.sleep(seconds)
                cur.execute(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS true")
            else:
                cur.execute(f"ALTER USER '{self.user}'@'%' ACCOUNT LOCK")
                self._terminate(cur)
                time.sleep(seconds)
                cur.execute(f"ALTER USER '{self.user}'@'%' ACCOUNT UNLOCK")

    def _terminate(self, cur: Any) -> None:
        if self.kind == "postgresql":
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )
        else:
            cur.execute(
                "SELECT id FROM information_schema.processlist WHERE user = %s", (self.user,)
            )
            for (pid,) in cur.fetchall():
                with contextlib.suppress(Exception):  # it may have ended meanwhile
                    cur.execute(f"KILL {int(pid)}")


def _postgres_admin() -> Any:
    return postgres_admin()  # psycopg 3, or psycopg2 where only it is installed


def _mysql_admin() -> Any:
    try:
        import pymysql
    except ImportError:
        skip_or_fail("PyMySQL is not installed (pip install -e '.[mysql]')")
    try:
        return pymysql.connect(
            host="127.0.0.1",
            port=3306,
            user="root",
            password="",
            connect_timeout=3,
            autocommit=True,
        )
    except pymysql.err.OperationalError as exc:
        skip_or_fail(f"MySQL/MariaDB at 127.0.0.1:3306 unreachable: {exc}")


@contextlib.contextmanager
def postgres_database(password: str | None = None) -> Iterator[Database]:
    """A fresh PostgreSQL database; with a password, owned by a fresh role that has it."""
    admin = _postgres_admin()
    name = f"nbtune_{uuid.uuid4().hex[:12]}"
    owner = admin.info.user
    with admin.cursor() as cur:
        if password is not None:
            owner = f"{name}_pw"  # roles are server-wide: a unique one per test
            cur.execute(f"CREATE ROLE {owner} LOGIN PASSWORD %s", (password,))
        cur.execute(f"CREATE DATABASE {name} OWNER {owner}")
    userinfo = owner if password is None else f"{owner}:{password}"
    db = Database("postgresql", f"postgresql://{userinfo}@127.0.0.1:5432/{name}", name, admin)
    try:
        yield db
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            if password is not None:
                cur.execute(f"DROP ROLE IF EXISTS {owner}")
        admin.close()


@contextlib.contextmanager
def mysql_database() -> Iterator[Database]:
    """A fresh MariaDB/MySQL database, used by a fresh user with a password (one to lock)."""
    admin = _mysql_admin()
    name = f"nbtune_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{PASSWORD}'")
        cur.execute(f"GRANT ALL ON {name}.* TO '{name}'@'%'")
    db = Database(
        "mariadb", f"mysql://{name}:{PASSWORD}@127.0.0.1:3306/{name}", name, admin, user=name
    )
    try:
        yield db
    finally:
        with admin.cursor() as cur:
            cur.execute(f"ALTER USER '{name}'@'%' ACCOUNT UNLOCK")
            db._terminate(cur)  # sessions left by a failed test would block DROP DATABASE
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        admin.close()


@pytest.fixture(params=STORAGES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Each storage nbtune supports, fresh."""
    kind = request.param
    if kind == "sqlite":
        yield Database(kind, f"sqlite:///{tmp_path / 'study.db'}")
    elif kind == "journal":
        yield Database(kind, str(tmp_path / "study.log"))
    elif kind == "postgresql":
        with postgres_database() as db:
            yield db
    else:
        with mysql_database() as db:
            yield db


# --------------------------------------------------------------------------------------------
# A study on the toy script, and workers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def reserved_study(
    url: str, tmp_path: Path, num_trials: int, *, sleep: float, heartbeat: int = 10
) -> Iterator[nbtune.Tuner]:
    """Record a study of ``num_trials`` one-seed trials that workers then run.

    The heartbeat is long unless a test needs staleness: on this loaded 2-core machine a live
    worker can miss a 2 s grace period (SQLite's clock has whole seconds), and another worker
    would then fail its trial.
    """
    tuner = nbtune.Tuner(
        script=TOY,
        metric="charts/episodic_return",
        target_scores={"EnvA": [0, 100]},
        params_fn={**SPACE, "sleep": sleep},
        metric_last_n_average_window=3,
        pruner=optuna.pruners.NopPruner(),  # every trial completes: easy to account for
        storage=url,
        study_name="shared",
        runs_dir=tmp_path / "runs",
        heartbeat_interval=heartbeat,
        verbose=False,
    )
    assert tuner.reserve(num_trials, num_seeds=1) == num_trials
    try:
        yield tuner
    finally:
        if isinstance(tuner.storage, ResilientRDBStorage):
            tuner.storage.engine.dispose()  # before the database is dropped


class Worker:
    """A ``python -m nbtune worker`` process, its output in files."""

    def __init__(self, url: str, tmp_path: Path, index: int) -> None:
        self.out = tmp_path / f"worker{index}.out"
        self.err = tmp_path / f"worker{index}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nbtune", "worker", "--storage", url, "--study", "shared"],
                stdout=out,
                stderr=err,
                cwd=tmp_path,
            )

    @property
    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def wait(self, timeout: float = 180) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"worker did not finish:\n{self.output}") from None


@contextlib.contextmanager
def workers(url: str, tmp_path: Path, n: int) -> Iterator[list[Worker]]:
    started = [Worker(url, tmp_path, i) for i in range(n)]
    try:
        yield started
    finally:
        for w in started:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()


def load(url: str) -> optuna.Study:
    return optuna.load_study(
        study_name="shared", storage=open_storage(url, heartbeat_interval=None)
    )


# --------------------------------------------------------------------------------------------
# Several workers, kill -9, a lost database
# --------------------------------------------------------------------------------------------


def test_several_workers_finish_a_study_at_exactly_its_total(database, tmp_path):
    with (
        reserved_study(database.url, tmp_path, 6, sleep=0.2),
        workers(database.url, tmp_path, 3) as procs,
    ):
        codes = [w.wait() for w in procs]
        outputs = [w.output for w in procs]
    assert codes == [0, 0, 0], outputs
    assert all("study at 6 of 6" in out for out in outputs), outputs
    study = load(database.url)
    trials = assert_exact(study, 6)
    assert len(trials) == 6  # no trial created beyond the reservations
    run_dirs = {e["run_dir"] for t in trials for e in t.user_attrs["experiments"]}
    assert len(run_dirs) == 6
    dispose(study)


def test_a_worker_killed_mid_trial_is_retried_and_the_budget_completes(database, tmp_path):
    with (
        reserved_study(database.url, tmp_path, 4, sleep=1.5, heartbeat=2),
        workers(database.url, tmp_path, 2) as procs,
    ):
        # Kill whichever worker starts a trial first, once that trial's script is running.
        victim, number = wait_for(
            lambda: next(
                (
                    (w, int(line.split()[1]))
                    for w in procs
                    for line in w.out.read_text().splitlines()
                    if line.startswith("trial ") and " started" in line
                ),
                None,
            ),
            60,
            "a trial to start",
        )
        received = tmp_path / "runs" / f"trial_{number:05d}" / "EnvA__seed0" / "received.json"
        wait_for(received.exists, 30, "the killed trial's script to start")
        script_pid = wait_for(lambda: _read_pid(received), 10, "the script's pid")
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        # Its experiment dies with it (the guard's pipe closes).
        wait_for(lambda: not _alive(script_pid), 10, "the killed worker's script to die")
        survivor = next(w for w in procs if w is not victim)
        assert survivor.wait() == 0, survivor.output
    study = load(database.url)
    trials = assert_exact(study, 4)
    killed = next(t for t in trials if t.number == number)
    assert killed.state == TrialState.FAIL  # its heartbeat went stale
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert retries[0].params == killed.params
    assert "study at 4 of 4" in survivor.output
    dispose(study)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_worker_that_looked_dead_drops_its_trial_and_goes_on(kind, tmp_path):
    # A worker that missed its heartbeats (a suspended laptop, an outage longer than the grace
    # period) finds that another process failed its trial as stale and queued a retry. It must
    # not crash on writing to a finished trial, and the budget still comes out exact. The test
    # plays the other process, failing the trial as fail_stale_trials would.
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "s.log")
    with (
        reserved_study(url, tmp_path, 2, sleep=2.0, heartbeat=1),
        workers(url, tmp_path, 1) as (worker,),
    ):
        (number,) = wait_for(  # a tuple: trial 0 is falsy
            lambda: next(
                (
                    (int(line.split()[1]),)
                    for line in worker.out.read_text().splitlines()
                    if line.startswith("trial ") and " started" in line
                ),
                None,
            ),
            60,
            "a trial to start",
        )
        study = load(url)
        assert _fail_and_requeue(study, study.trials[number], max_retry=3)
        assert worker.wait() == 0, worker.output
    assert f"trial {number} was ended by another process" in worker.output
    study = load(url)
    trials = assert_exact(study, 2)
    assert study.trials[number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert len(trials) == 3  # the failed one, its retry, the other reservation
    dispose(study)


def _read_pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None  # being written


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it only waits for its parent to reap it.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return False


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_workers_ride_out_a_few_seconds_without_the_database(kind, tmp_path):
    database = postgres_database() if kind == "postgresql" else mysql_database()
    # A grace period (10 s) longer than the outage: live trials are not judged dead after it.
    with database as db, reserved_study(db.url, tmp_path, 6, sleep=0.5, heartbeat=5):
        with workers(db.url, tmp_path, 2) as procs:
            wait_for(lambda: any("started" in w.out.read_text() for w in procs), 60, "a trial")
            db.outage(4.0)
            codes = [w.wait() for w in procs]
            outputs = [w.output for w in procs]
        assert codes == [0, 0], "\n\n".join(outputs)
        assert any("reachable again" in out for out in outputs), outputs  # the outage hit
        study = load(db.url)
        trials = assert_exact(study, 6)
        assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
        dispose(study)
    for out in outputs:
        assert PASSWORD not in out


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_worker_started_during_an_outage_waits_for_the_database(kind, tmp_path):
    # Connecting, creating the tables and checking the schema are retried like every call.
    database = postgres_database() if kind == "postgresql" else mysql_database()
    with database as db, reserved_study(db.url, tmp_path, 2, sleep=0, heartbeat=5):
        outage = threading.Thread(target=db.outage, args=(4.0,))
        outage.start()
        time.sleep(0.5)  # the database refuses connections now
        with workers(db.url, tmp_path, 1) as (worker,):
            code = worker.wait()
        outage.join()
        assert code == 0, worker.output
        assert "reachable again" in worker.output
        study = load(db.url)
        assert [t.state for t in assert_exact(study, 2)] == [TrialState.COMPLETE] * 2
        dispose(study)


def test_no_password_in_any_output(tmp_path):
    with postgres_database(password=PASSWORD) as db:
        url = db.url
        assert PASSWORD in url
        config = tmp_path / "study.json"
        config.write_text(
            json.dumps(
                {
                    "script": str(TOY),
                    "metric": "charts/episodic_return",
                    "target_scores": {"EnvA": [0, 100]},
                    "params": SPACE,
                    "metric_last_n_average_window": 3,
                    "study_name": "pw",
                    "runs_dir": str(tmp_path / "runs"),
                }
            )
        )
        base = [sys.executable, "-m", "nbtune"]
        wrong_db = url.rsplit("/", 1)[0] + "/nbtune_no_such_database"
        commands = [
            [*base, "tune", str(config), "--storage", url, "--num-trials", "1", "--num-seeds", "1"],
            [*base, "tune", str(config), "--storage", url, "--num-trials", "1", "--reserve-only"],
            [*base, "worker", "--storage", url, "--study", "pw"],
            [*base, "show", "--storage", url],
            [*base, "show", "--storage", url, "--study", "pw"],
            [*base, "export", "--storage", url, "--study", "pw"],
            [*base, "enqueue", "--storage", url, "--study", "pw", "--params", '{"x": 1}'],
            [*base, "worker", "--storage", url, "--study", "no-such-study"],
            [*base, "worker", "--storage", wrong_db, "--study", "pw"],
            [*base, "show", "--storage", url.replace(":5432", ":1"), "--study", "pw"],
        ]
        # The first three build the study in turn; the rest only read or fail: run them at once.
        results = [
            subprocess.run(c, capture_output=True, text=True, cwd=tmp_path, timeout=120)
            for c in commands[:3]
        ]
        readers = [
            subprocess.Popen(
                c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
            )
            for c in commands[3:]
        ]
        for c, proc in zip(commands[3:], readers, strict=True):
            out, err = proc.communicate(timeout=120)
            results.append(subprocess.CompletedProcess(c, proc.returncode, out, err))
    for command, result in zip(commands, results, strict=True):
        shown = f"{command[3:5]} exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
        assert PASSWORD not in result.stdout + result.stderr, shown
    assert [r.returncode for r in results[:7]] == [0, 0, 0, 0, 0, 0, 2], [r.stderr for r in results]
    assert "postgresql://" in results[0].stdout and ":***@" in results[0].stdout
    assert "study at 2 of 2" in results[2].stdout
    assert "best configuration" in results[4].stdout
    for result in results[7:]:
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "no study named 'no-such-study'" in results[7].stderr
    assert "cannot open" in results[8].stderr and "nbtune_no_such_database" in results[8].stderr


# --------------------------------------------------------------------------------------------
# The pieces: drivers, redaction, SQLite locks, lost answers, orphaned claims
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "url", "expected"),
    [
        # mysql:// means mysqlclient, which has no Linux wheels: PyMySQL when it is missing.
        ({"pymysql"}, "mysql://u@h/db", "mysql+pymysql://u@h/db"),
        ({"pymysql", "MySQLdb"}, "mysql://u@h/db", "mysql://u@h/db"),
        (set(), "mysql://u@h/db", "mysql://u@h/db"),  # the error then names the extra
        ({"pymysql"}, "mysql+pymysql://u@h/db", "mysql+pymysql://u@h/db"),
        # postgresql:// means psycopg 3 (the postgres extra) since SQLAlchemy 2.1: kept as it is,
        # so the URL nbtune prints opens in Optuna and optuna-dashboard unchanged.
        ({"psycopg", "psycopg2"}, "postgresql://u@h/db", "postgresql://u@h/db"),
        ({"psycopg"}, "postgres://u@h/db", "postgresql://u@h/db"),
        # Where only psycopg2 is installed, nbtune still opens it.
        ({"psycopg2"}, "postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ({"psycopg2"}, "postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_urls_pick_an_installed_driver(monkeypatch, installed, url, expected):
    monkeypatch.setattr(storage_module, "_installed", lambda module: module in installed)
    assert resolve_storage_url(url) == expected


def test_redaction_covers_every_form_of_password():
    assert redact_url("postgresql://u:p@ss/w@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("mysql://u@h/db?password=x&charset=utf8") == (
        "mysql://u@h/db?password=***&charset=utf8"
    )
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    url = "postgresql://u:p%40ss@h/db"
    assert scrub("for p%40ss and p@ss", url) == "for *** and ***"


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_both_servers_open_from_plain_urls(kind):
    database = postgres_database() if kind == "postgresql" else mysql_database()
    with database as db:
        storage = open_storage(db.url)
        assert isinstance(storage, ResilientRDBStorage)
        postgres_driver = "psycopg" if storage_module._installed("psycopg") else "psycopg2"
        expected = postgres_driver if kind == "postgresql" else "pymysql"
        assert storage.engine.dialect.driver == expected
        study = optuna.create_study(storage=storage, study_name="plain")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        assert len(study.trials) == 3
        view = nbtune.StudyView(db.url, "plain")  # the live views take the same plain URL
        assert view.n_trials == 3
        assert PASSWORD not in repr(view)
        view.close()
        storage.engine.dispose()


def test_plain_postgresql_urls_open_with_psycopg2_where_only_it_is_installed(monkeypatch):
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg2 is not installed (pip install -e '.[test]')")
    monkeypatch.setattr(storage_module, "_installed", lambda module: module != "psycopg")
    with postgres_database() as db:
        storage = open_storage(db.url, heartbeat_interval=None)
        assert storage.engine.dialect.driver == "psycopg2"
        study = optuna.create_study(storage=storage, study_name="psycopg2")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        view = nbtune.StudyView(db.url, "psycopg2")
        assert view.n_trials == 2
        view.close()
        storage.engine.dispose()


def test_sqlite_uses_wal_and_waits_out_a_locked_database(tmp_path, monkeypatch, capfd):
    # A short busy timeout, so "database is locked" reaches nbtune instead of SQLite's wait.
    monkeypatch.setattr(storage_module, "_SQLITE_BUSY_TIMEOUT", 0.1)
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=None)
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    study = optuna.create_study(storage=storage, study_name="locked")
    holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the lock for 2 s
    threading.Timer(2.0, lambda: holder.execute("COMMIT")).start()
    started = time.monotonic()
    study.set_user_attr("written", True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert time.monotonic() - started >= 1.5
    assert study.user_attrs["written"] is True and len(study.trials) == 2
    err = capfd.readouterr().err
    assert "database is locked" in err and "reachable again" in err  # told, not raised
    holder.close()
    storage.engine.dispose()


def test_a_lost_answer_to_a_commit_is_not_a_crash_and_creates_nothing_twice(monkeypatch):
    with postgres_database() as db:
        storage = open_storage(db.url, heartbeat_interval=None)
        study = optuna.create_study(storage=storage, study_name="lost", direction="maximize")
        factory = storage.scoped_session.session_factory
        lost = {"armed": False, "count": 0, "wrote": False}
        dialect = storage.engine.dialect
        real_commit = dialect.do_commit
        driver_error = dialect.loaded_dbapi.OperationalError  # psycopg 3's or psycopg2's

        @sqlalchemy.event.listens_for(factory, "after_flush")
        def wrote(session: Any, context: Any) -> None:
            lost["wrote"] = True

        # The server commits a write; the answer is lost, as when the connection drops then.
        def commit_then_lose_the_answer(dbapi_connection: Any) -> None:
            real_commit(dbapi_connection)
            if lost["wrote"] and lost["armed"]:
                lost["armed"] = False
                lost["count"] += 1
                raise driver_error("server closed the connection unexpectedly")
            lost["wrote"] = False

        monkeypatch.setattr(dialect, "do_commit", commit_then_lose_the_answer)
        lost["armed"] = True
        study.enqueue_trial({"x": 0.5})  # a template trial, as reservations and retries are
        assert lost["count"] == 1 and len(study.get_trials(deepcopy=False)) == 1
        trial = study.ask()
        lost["armed"] = True
        study.tell(trial, 1.0)  # the retry finds the trial complete with this value: success
        assert lost["count"] == 2
        assert study.trials[0].state == TrialState.COMPLETE and study.best_value == 1.0
        other = study.ask()
        study.tell(other, 2.0)
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # a real conflict
            storage.set_trial_state_values(other._trial_id, TrialState.COMPLETE, [3.0])
        sqlalchemy.event.remove(factory, "after_flush", wrote)
        storage.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_an_orphaned_claim_is_given_back(kind, tmp_path):
    # A process that took a reservation and died (or lost the answer) before its first heartbeat.
    url = f"sqlite:///{tmp_path / 'o.db'}" if kind == "sqlite" else str(tmp_path / "o.log")
    with reserved_study(url, tmp_path, 2, sleep=0, heartbeat=1) as tuner:
        study = tuner.study
        orphan = _pop_waiting(study)
        assert orphan is not None
        assert fail_stale_trials(study, grace_period=1.0) == []  # too young to tell
        time.sleep(1.2)
        number = study._storage.get_trial(orphan).number
        assert fail_stale_trials(study, grace_period=1.0) == [number]
        trials = study.get_trials(deepcopy=False)
        assert trials[number].state == TrialState.FAIL
        retry = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert [t.state for t in retry] == [TrialState.WAITING]
        assert "nbtune:heartbeat" not in retry[0].system_attrs
        assert budget_state(study).waiting == 2


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_own_trials_are_told_apart_across_studies_in_one_process(kind, tmp_path):
    # This process beats for trial 0 of one study: trial 0 of another study is not its own,
    # and when orphaned it is still given back (journal studies once shared one key).
    def url(name: str) -> str:
        return (
            f"sqlite:///{tmp_path / name}.db" if kind == "sqlite" else str(tmp_path / f"{name}.log")
        )

    with reserved_study(url("mine"), tmp_path / "mine", 1, sleep=0, heartbeat=1) as mine:
        own = _pop_waiting(mine.study)
        assert own is not None
        record_heartbeat(mine.study, own)
        with reserved_study(url("other"), tmp_path / "other", 1, sleep=0, heartbeat=1) as other:
            orphan = _pop_waiting(other.study)
            assert orphan == own  # the same id in another storage
            time.sleep(1.2)
            assert fail_stale_trials(other.study, grace_period=1.0) == [0]
            assert fail_stale_trials(mine.study, grace_period=1.0) == []  # alive: this process
