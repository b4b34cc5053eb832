"""The incremental study reader, on real storages written by another process."""

from __future__ import annotations

import doctest
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from _support import postgres_admin
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from nbtune import _optuna, _study_view
from nbtune._storage import open_storage_for_reading
from nbtune._study_view import (
    RefreshResult,
    StudyNotFoundError,
    StudyView,
    redact_url,
)

IN_CI = os.environ.get("CI") == "true"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------
# Another process that writes trials, one command at a time
# --------------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import json, sys
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = None

    def suggest(trial, k):
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("batch", [16, 32, 64])
        trial.set_user_attr("normalized_scores", {"A": [k / 10, k / 20], "B": [k / 5, None]})

    def trial_id(number):
        return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)

    print("ready", flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "open":
            target = cmd["target"]
            if "://" in target:
                storage = optuna.storages.RDBStorage(target)
            else:
                from optuna.storages.journal import JournalFileBackend
                storage = optuna.storages.JournalStorage(JournalFileBackend(target))
            study = optuna.create_study(
                storage=storage, study_name=cmd["name"], direction="maximize",
                sampler=optuna.samplers.RandomSampler(seed=0),
            )
            study.set_user_attr("nbtune:spec", {"n_trials": 10})
        elif op == "add":
            for k in range(cmd["n"]):
                trial = study.ask()
                suggest(trial, k)
                study.tell(trial, k / 10)
        elif op == "start":
            for k in range(cmd["n"]):
                trial = study.ask()
                suggest(trial, k)
                trial.report(0.0, 0)
        elif op == "report":
            optuna.trial.Trial(study, trial_id(cmd["number"])).report(cmd["value"], cmd["step"])
        elif op == "attr":
            study._storage.set_trial_user_attr(trial_id(cmd["number"]), cmd["key"], cmd["value"])
        elif op == "tell":
            study.tell(cmd["number"], cmd.get("value"), state=TrialState[cmd["state"]])
        elif op == "close":
            if isinstance(study._storage, optuna.storages.RDBStorage):
                study._storage.engine.dispose()
            study = None
        print("ok", flush=True)
    """
)


class WriterProcess:
    """Another process that writes to storages when told (one for the module: imports once)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._expect("ready")

    def _expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == word, f"writer said {line!r} (exit code {self.proc.poll()})"

    def do(self, op: str, **kwargs: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        self._expect("ok")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def writer_process() -> Iterator[WriterProcess]:
    process = WriterProcess()
    yield process
    process.close()


@pytest.fixture
def writer(writer_process: WriterProcess) -> Iterator[WriterProcess]:
    yield writer_process
    writer_process.do("close")


# --------------------------------------------------------------------------------------------
# Storages: SQLite and journal files, and a fresh database per test on the real servers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    admin = postgres_admin()  # psycopg 3, or psycopg2 where only it is installed
    name = f"nbtune_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    # A plain postgresql:// means psycopg 3 to SQLAlchemy 2.1, in Optuna as in nbtune.
    scheme = "postgresql" if importlib.util.find_spec("psycopg") else "postgresql+psycopg2"
    try:
        yield f"{scheme}://{admin.info.user}@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def mysql_url() -> Iterator[str]:
    pymysql = pytest.importorskip(
        "pymysql", reason="PyMySQL is not installed (pip install -e '.[mysql]')"
    )
    name = f"nbtune_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = pymysql.connect(
            host="127.0.0.1", port=3306, user="root", password="", connect_timeout=3
        )
    except pymysql.err.OperationalError as exc:
        skip_or_fail(f"MySQL/MariaDB at 127.0.0.1:3306 unreachable: {exc}")
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.cursor() as cur:
            # Sessions left by a failed test would block DROP DATABASE: end them first.
            cur.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND id != "
                "CONNECTION_ID()",
                (name,),
            )
            for (pid,) in cur.fetchall():
                cur.execute(f"KILL {int(pid)}")
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture(params=["sqlite", "journal", "postgres", "mysql"])
def storage_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if kind == "journal":
        return str(tmp_path / "study.log")
    return request.getfixturevalue(f"{kind}_url")


def _dispose(view: StudyView) -> None:
    view.close()


def _fresh_trials(target: str, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage_for_reading(target)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finally:
        rdb = _optuna.rdb_storage(storage)
        if rdb is not None:
            rdb.engine.dispose()


# --------------------------------------------------------------------------------------------
# Refresh: trials and state changes written by another process
# --------------------------------------------------------------------------------------------


def test_refresh_follows_another_process(storage_target: str, writer: WriterProcess) -> None:
    writer.do("open", target=storage_target, name="cross")
    writer.do("add", n=2)
    view = StudyView(storage_target, "cross")
    try:
        assert view.n_trials == 2
        assert view.spec == {"n_trials": 10}
        assert view.direction == optuna.study.StudyDirection.MAXIMIZE
        assert [t.state for t in view.trials] == [TrialState.COMPLETE] * 2
        assert not view.refresh()

        writer.do("start", n=2)
        result = view.refresh()
        assert result.new == (2, 3) and result.changed == () and result.finished == ()
        assert view.unfinished_numbers == (2, 3)
        assert view.trial(2).state == TrialState.RUNNING
        assert view.trial(2).intermediate_values == {0: 0.0}

        writer.do("report", number=2, step=1, value=0.25)
        writer.do("attr", number=3, key="raw_scores", value={"A": [1.0]})
        result = view.refresh()
        assert result.changed == (2, 3) and result.new == ()
        assert view.trial(2).intermediate_values == {0: 0.0, 1: 0.25}
        assert view.trial(3).user_attrs["raw_scores"] == {"A": [1.0]}

        writer.do("tell", number=2, state="COMPLETE", value=0.9)
        writer.do("tell", number=3, state="PRUNED")
        writer.do("start", n=1)
        writer.do("tell", number=4, state="FAIL")
        result = view.refresh()
        assert result.changed == (2, 3)
        assert result.new == (4,)
        assert result.finished == (2, 3, 4)
        assert view.unfinished_numbers == ()
        assert [view.trial(n).state.name for n in (2, 3, 4)] == ["COMPLETE", "PRUNED", "FAIL"]
        assert view.best_trial is not None and view.best_trial.number == 2
        assert view.refresh() == RefreshResult(seconds=view.last_refresh.seconds)

        # What the view pieced together equals a fresh read of the whole study.
        assert view.trials == _fresh_trials(storage_target, "cross")
        cols = view.columns
        assert cols.number.tolist() == [0, 1, 2, 3, 4]
        assert cols.state.tolist() == [1, 1, 1, 2, 3]
        assert cols.values[:3, 0].tolist() == [0.0, 0.1, 0.9]
        assert math.isnan(cols.values[4, 0])
        assert sorted(cols.params) == ["batch", "lr"]
    finally:
        _dispose(view)


# --------------------------------------------------------------------------------------------
# Incremental: what a refresh costs
# --------------------------------------------------------------------------------------------


def _make_sqlite_study(path: Path, n: int, name: str = "s") -> optuna.Study:
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name=name)
    dist = {"x": FloatDistribution(0, 1)}
    study.add_trials(
        optuna.trial.create_trial(params={"x": i / n}, distributions=dist, value=float(i))
        for i in range(n)
    )
    return study


def test_refresh_reads_only_new_and_unfinished_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _make_sqlite_study(tmp_path / "s.db", 10)
    running = study.ask()
    view = StudyView(f"sqlite:///{tmp_path / 's.db'}", "s")
    rdb = _optuna.rdb_storage(view.storage)
    assert rdb is not None
    built: list[int] = []
    statements: list[str] = []
    original = _study_view._RDBSource._build

    def counting_build(self: Any, row: Any, children: Any) -> Any:
        built.append(row[1])
        return original(self, row, children)

    monkeypatch.setattr(_study_view._RDBSource, "_build", counting_build)
    sqlalchemy.event.listen(
        rdb.engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )

    assert view.refresh().new == ()
    assert built == [10]  # only the running trial is read again
    study.tell(running, 1.5)
    study.add_trial(optuna.trial.create_trial(value=2.0))
    result = view.refresh()
    assert result.changed == (10,) and result.new == (11,)
    assert sorted(built) == [10, 10, 11]
    built.clear()
    statements.clear()
    assert not view.refresh()
    assert built == []
    trial_queries = [q for q in statements if "FROM trials" in q and "trial_values" not in q]
    assert len(trial_queries) == 1  # one indexed range query when nothing changed

    # A waiting trial (nbtune reserves its budget so) is read in full once, then only its row.
    study.enqueue_trial({"x": 0.5})
    assert view.refresh().new == (12,) and built == [12]
    assert not view.refresh() and built == [12]
    popped = study.ask()
    assert popped.number == 12
    assert view.refresh().changed == (12,) and built == [12, 12]
    assert view.trial(12).state == TrialState.RUNNING
    _dispose(view)


def test_cached_storage_of_a_study_in_this_process(tmp_path: Path) -> None:
    # A study opened from a URL wraps a _CachedStorage: the view reads the RDB under it.
    study = _make_sqlite_study(tmp_path / "c.db", 3, name="c")
    view = StudyView.from_study(study)
    assert isinstance(view._source, _study_view._RDBSource)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert view.refresh().new == (3, 4)
    assert view.trials == study.get_trials()
    _dispose(view)


def test_in_memory_study_uses_the_generic_reader() -> None:
    study = optuna.create_study(study_name="mem", direction="maximize")
    trial = study.ask()
    trial.suggest_int("k", 1, 3)
    view = StudyView(study._storage, "mem")
    assert isinstance(view._source, _study_view._GenericSource)
    assert view.unfinished_numbers == (0,)
    trial.report(1.0, 0)
    assert view.refresh().changed == (0,)
    study.tell(trial, 3.0)
    study.optimize(lambda t: t.suggest_int("k", 1, 3), n_trials=2)
    result = view.refresh()
    assert result.changed == (0,) and result.new == (1, 2)
    assert view.trials == study.get_trials()
    assert view.columns.params["k"].tolist() == [t.params["k"] for t in study.trials]


def test_journal_study_in_this_process(tmp_path: Path) -> None:
    # Optuna's Trial updates the journal's objects in place: the view must still see changes.
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(storage=storage, study_name="j")
    study.enqueue_trial({"k": 2})
    view = StudyView(storage, "j")
    assert isinstance(view._source, _study_view._JournalSource)
    assert view.trial(0).state == TrialState.WAITING
    assert view._source.fetch() == []  # an unchanged waiting trial is not looked at again
    trial = study.ask()
    trial.suggest_int("k", 1, 3)
    assert view.refresh().changed == (0,)
    trial.report(0.5, 1)
    assert view.refresh().changed == (0,)
    assert view.trial(0).intermediate_values == {1: 0.5}
    assert not view.refresh()
    study.tell(trial, 1.0)
    assert view.refresh().finished == (0,)
    assert view.trials == study.get_trials()


def test_rdb_falls_back_to_optuna_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = _make_sqlite_study(tmp_path / "f.db", 4)
    view = StudyView(f"sqlite:///{tmp_path / 'f.db'}", "s", refresh=False)

    def broken(self: Any) -> None:
        raise AttributeError("schema moved")

    monkeypatch.setattr(_study_view._RDBSource, "_fetch_core", broken)
    assert view.refresh().new == (0, 1, 2, 3)
    assert view._source._mode == "orm"
    study.add_trial(optuna.trial.create_trial(value=9.0))
    assert view.refresh().new == (4,)
    _dispose(view)


# --------------------------------------------------------------------------------------------
# Studies nbtune did not create, odd values, several objectives
# --------------------------------------------------------------------------------------------


def test_plain_optuna_study_and_odd_values(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(storage=url, study_name="plain")
    study.add_trial(optuna.trial.create_trial(value=float("inf")))
    study.add_trial(optuna.trial.create_trial(value=-float("inf")))
    study.add_trial(optuna.trial.create_trial(value=2.0))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    trial = study.ask()
    trial.report(float("nan"), 0)
    view = StudyView(url, "plain")
    assert view.spec is None
    # Infinite values are kept in the trials but never count as best.
    assert view.best_trial is not None and view.best_trial.number == 2
    assert view.columns.values[:, 0].tolist()[:3] == [math.inf, -math.inf, 2.0]
    assert math.isnan(view.trial(4).intermediate_values[0])
    assert view.count_states()[TrialState.RUNNING] == 1
    assert all(map(_study_view._same_trial, view.trials, study.get_trials()))
    _dispose(view)


def test_multi_objective_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = optuna.create_study(storage=url, study_name="mo", directions=["minimize", "maximize"])
    study.add_trial(optuna.trial.create_trial(values=[1.0, 5.0]))
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1.0]))
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["loss", "return"])
    view = StudyView(url, "mo")
    assert view.is_multi_objective
    assert view.best_trial is None
    assert view.best_number(0) == 1 and view.best_number(1) == 0
    assert view.columns.values.tolist() == [[1.0, 5.0], [0.5, 1.0]]
    assert view.metric_names == ("loss", "return")
    _dispose(view)


def test_study_name_optional_when_only_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    optuna.create_study(storage=url, study_name="only")
    view = StudyView(url)
    assert view.study_name == "only"
    optuna.create_study(storage=url, study_name="second")
    with pytest.raises(StudyNotFoundError, match=r"has 2 studies.*'only', 'second'"):
        StudyView(url)
    _dispose(view)


# --------------------------------------------------------------------------------------------
# Errors and passwords
# --------------------------------------------------------------------------------------------


def test_missing_study_lists_existing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    optuna.create_study(storage=url, study_name="alpha")
    optuna.create_study(storage=url, study_name="beta")
    with pytest.raises(StudyNotFoundError) as info:
        StudyView(url, "gamma")
    message = str(info.value)
    assert "'gamma'" in message and "'alpha', 'beta'" in message and "m.db" in message


def test_missing_files_are_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.db"):
        StudyView(f"sqlite:///{tmp_path / 'nope.db'}", "x")
    with pytest.raises(FileNotFoundError, match=r"nope\.log"):
        StudyView(tmp_path / "nope.log", "x")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="neither a database URL"):
        open_storage_for_reading(str(tmp_path / "study.txt"))


def test_empty_journal_has_no_studies(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").touch()
    with pytest.raises(StudyNotFoundError, match="it has no studies"):
        StudyView(tmp_path / "empty.jsonl", "x")


def test_passwords_never_shown(postgres_url: str) -> None:
    # Trust authentication ignores the password: the URL works, and must not leak it.
    user_at = postgres_url.split("//", 1)[1].split("@", 1)[0]
    with_password = postgres_url.replace(f"//{user_at}@", f"//{user_at}:TopSecret9@")
    optuna.create_study(storage=with_password, study_name="p")
    view = StudyView(with_password, "p")
    assert "TopSecret9" not in repr(view) and "***" in repr(view)
    assert "TopSecret9" not in view.storage_description
    with pytest.raises(StudyNotFoundError) as info:
        StudyView(with_password, "missing")
    assert "TopSecret9" not in str(info.value) and "'p'" in str(info.value)
    bad = with_password.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(Exception) as error:
        StudyView(bad, "p")
    assert "TopSecret9" not in str(error.value)
    _dispose(view)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p/w@h/db", "postgresql://u:***@h/db"),
        ("mysql+pymysql://root@127.0.0.1:3306/test", "mysql+pymysql://root@127.0.0.1:3306/test"),
        ("mysql://h/db?user=u&password=p&x=1", "mysql://h/db?user=u&password=***&x=1"),
        ("postgresql://h:5432/db", "postgresql://h:5432/db"),
        ("sqlite:///a:b@c.db", "sqlite:///a:b@c.db"),
        ("/tmp/study.log", "/tmp/study.log"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# --------------------------------------------------------------------------------------------
# Columns and documentation
# --------------------------------------------------------------------------------------------


def test_columns_grow_and_take_out_of_order_trials() -> None:
    columns = _study_view._Columns(1)
    dist = {"x": FloatDistribution(0, 1)}

    def trial(number: int) -> optuna.trial.FrozenTrial:
        t = optuna.trial.create_trial(params={"x": number / 1000}, distributions=dist, value=1.0)
        t.number = number
        return t

    for n in range(300):  # past the first capacity, with 150 missing
        if n != 150:
            columns.insert(columns.size, trial(n))
    columns.insert(150, trial(150))
    view = columns.view()
    assert view.number.tolist() == list(range(300))
    assert view.params["x"].tolist() == [n / 1000 for n in range(300)]
    assert not view.number.flags.writeable


def test_docstring_examples_run() -> None:
    result = doctest.testmod(_study_view, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
