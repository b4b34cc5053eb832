"""Several processes on one study: trials/s and live-view refresh time, on every storage.

For each storage (SQLite, Optuna's journal file, PostgreSQL, MariaDB/MySQL) and each number of
worker processes (1, 2, 4 by default), on a fresh study (a fresh database on the servers, dropped
after), it measures:

* storage throughput: each process runs ``ask`` / ``tell`` of a trivial objective (random
  sampler) on a storage opened by nbtune (``open_storage``: WAL and explicit transactions on
  SQLite, retries everywhere) for ``--seconds``, all starting at the same instant; trials/s is
  the total over the window. This is the ceiling the storage puts on any workload.
* nbtune workers: ``--trials`` reserved one-seed trials of the toy script (tiny timesteps, one
  experiment at a time per worker), run by that many worker processes (``Tuner.from_study(...)
  .work()``, what ``nbtune worker`` does); trials/s is over the span from the first trial's
  start to the last one's end, so interpreter start-up is not counted. On a 2-core machine this
  is bound by the CPU the experiments need, not by the storage.
* the live view during both: ``StudyView(storage, name).refresh()`` polled every 0.25 s by the
  benchmark process while the workers write (median and 95th percentile).

Ratios: trials/s against 1 worker on the same storage, and against SQLite with as many workers.

Usage::

    python benchmarks/workers.py
    python benchmarks/workers.py --storages sqlite,journal --workers 1,2,4 --seconds 8 --trials 24
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbtune
from nbtune._storage import open_storage

TOY = Path(__file__).resolve().parents[1] / "tests" / "scripts" / "toy_train.py"
STUDY = "bench"
POLL = 0.25  # seconds between two refreshes of the live view


# --------------------------------------------------------------------------------------------
# Fresh storages
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_storage(kind: str, tmp: Path) -> Iterator[str]:
    """A URL (or journal path) of a new, empty storage; servers' databases are dropped after."""
    name = f"nbtune_bench_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        yield f"sqlite:///{tmp / (name + '.db')}"
    elif kind == "journal":
        yield str(tmp / (name + ".log"))
    elif kind == "postgresql":
        import psycopg2

        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        try:
            yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
        finally:
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.close()
    elif kind == "mariadb":
        import pymysql

        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        try:
            yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
        finally:
            with admin.cursor() as cur:
                cur.execute(
                    "SELECT id FROM information_schema.processlist WHERE db = %s "
                    "AND id != CONNECTION_ID()",
                    (name,),
                )
                for (pid,) in cur.fetchall():
                    with contextlib.suppress(Exception):
                        cur.execute(f"KILL {int(pid)}")
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
            admin.close()
    else:
        raise ValueError(f"unknown storage {kind!r}")


def dispose(storage: Any) -> None:
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


def child_optimize(url: str, go: Path, seconds: float, out: Path) -> None:
    """Once ready, wait for the start time in ``go``; ask/tell for ``seconds``; write the count."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, heartbeat_interval=None)
    study = optuna.load_study(
        study_name=STUDY, storage=storage, sampler=optuna.samplers.RandomSampler()
    )
    study.get_trials(deepcopy=False)  # connected
    out.with_suffix(".ready").touch()
    while not go.exists():
        time.sleep(0.02)
    start = float(go.read_text())
    time.sleep(max(0.0, start - time.time()))
    end = start + seconds
    done = 0
    while time.time() < end:
        trial = study.ask()
        x = trial.suggest_float("x", -1.0, 1.0)
        study.tell(trial, x * x)
        done += 1
    out.write_text(json.dumps({"done": done}))


def child_worker(url: str) -> None:
    """What ``nbtune worker`` does, with one experiment at a time."""
    kwargs: dict[str, Any] = {"verbose": False}
    if "n_slots" in inspect.signature(nbtune.Tuner).parameters:
        kwargs["n_slots"] = 1
    nbtune.Tuner.from_study(url, STUDY, **kwargs).work()


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


class ViewPoller:
    """Refresh a live view of the study every ``POLL`` seconds on a thread, timing each one."""

    def __init__(self, url: str) -> None:
        from nbtune._study_view import StudyView

        self.storage = open_storage(url, heartbeat_interval=None)
        self.view = StudyView(self.storage, STUDY)
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            started = time.perf_counter()
            self.view.refresh()
            self.samples.append(time.perf_counter() - started)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        started = time.perf_counter()
        self.view.refresh()  # a last one, with everything written
        last = time.perf_counter() - started
        dispose(self.storage)
        samples = sorted(self.samples) or [last]
        return {
            "view_median_ms": 1000 * statistics.median(samples),
            "view_p95_ms": 1000 * samples[min(len(samples) - 1, int(0.95 * len(samples)))],
            "view_trials": self.view.n_trials,
        }


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_all(procs: list[subprocess.Popen[bytes]], what: str) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} exited {proc.returncode}: {err.decode()[-2000:]}")


def bench_optimize(kind: str, n_workers: int, seconds: float, tmp: Path) -> dict[str, Any]:
    with fresh_storage(kind, tmp) as url:
        storage = open_storage(url, heartbeat_interval=None)
        optuna.create_study(study_name=STUDY, storage=storage)
        dispose(storage)
        outs = [tmp / f"opt_{kind}_{n_workers}_{i}.json" for i in range(n_workers)]
        go = tmp / f"go_{kind}_{n_workers}"
        procs = [spawn(["_optimize", url, str(go), str(seconds), str(out)]) for out in outs]
        # Start together once every process has imported and connected.
        while not all(out.with_suffix(".ready").exists() for out in outs):
            if any(proc.poll() is not None for proc in procs):
                wait_all(procs, "optimize process")
            time.sleep(0.05)
        start = time.time() + 0.5
        go.write_text(repr(start))
        time.sleep(max(0.0, start - time.time()))
        poller = ViewPoller(url)
        wait_all(procs, "optimize process")
        view = poller.stop()
        done = sum(json.loads(out.read_text())["done"] for out in outs)
    return {"trials_per_s": done / seconds, "trials": done, **view}


def bench_workers(kind: str, n_workers: int, n_trials: int, tmp: Path) -> dict[str, Any]:
    with fresh_storage(kind, tmp) as url:
        tuner = nbtune.Tuner(
            script=TOY,
            metric="charts/episodic_return",
            target_scores={"EnvA": [0, 100]},
            params_fn={
                "learning-rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                "total-timesteps": 300,
            },
            metric_last_n_average_window=2,
            pruner=optuna.pruners.NopPruner(),
            storage=url,
            study_name=STUDY,
            runs_dir=tmp / f"runs_{kind}_{n_workers}",
            verbose=False,
        )
        tuner.reserve(n_trials, num_seeds=1)
        dispose(tuner.storage)
        poller = ViewPoller(url)
        procs = [spawn(["_worker", url]) for _ in range(n_workers)]
        wait_all(procs, "worker")
        view = poller.stop()
        storage = open_storage(url, heartbeat_interval=None)
        trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)
        dispose(storage)
    done = [t for t in trials if t.state.is_finished()]
    if len(done) != n_trials:
        raise RuntimeError(f"{kind}, {n_workers} workers: {len(done)} of {n_trials} finished")
    span = max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    return {"trials_per_s": n_trials / span.total_seconds(), "trials": n_trials, **view}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def report(title: str, rows: list[dict[str, Any]], kinds: list[str], counts: list[int]) -> None:
    by = {(r["storage"], r["workers"]): r for r in rows}
    print()
    print(title)
    print()
    print(
        "| storage | workers | trials/s | vs 1 worker | vs SQLite | live view refresh "
        "median / p95 | trials in study |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        for n in counts:
            r = by.get((kind, n))
            if r is None:
                continue
            if "error" in r:
                print(f"| {kind} | {n} | failed: {r['error']} | | | | |")
                continue
            one = by.get((kind, 1), {}).get("trials_per_s")
            lite = by.get(("sqlite", n), {}).get("trials_per_s")
            print(
                f"| {kind} | {n} | {r['trials_per_s']:.1f} | {_ratio(r['trials_per_s'], one)} "
                f"| {_ratio(r['trials_per_s'], lite)} | {r['view_median_ms']:.1f} / "
                f"{r['view_p95_ms']:.1f} ms | {r['view_trials']:,} |"
            )


def _ratio(a: float, b: float | None) -> str:
    return "-" if not b else f"{a / b:.2f}x"


def run_all(
    kinds: list[str],
    counts: list[int],
    fn: Callable[[str, int], dict[str, Any]],
    label: str,
) -> list[dict[str, Any]]:
    rows = []
    for kind in kinds:
        for n in counts:
            print(f"{label}: {kind}, {n} worker(s) ...", flush=True)
            try:
                row = fn(kind, n)
            except Exception as exc:  # a server that is down: say so in the table, go on
                row = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"}
            rows.append({"storage": kind, "workers": n, **row})
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_optimize":
        child_optimize(argv[1], Path(argv[2]), float(argv[3]), Path(argv[4]))
        return 0
    if argv and argv[0] == "_worker":
        child_worker(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storages", default="sqlite,journal,postgresql,mariadb")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=8.0, help="ask/tell window")
    parser.add_argument("--trials", type=int, default=24, help="toy-script trials per run")
    parser.add_argument("--skip", choices=["optimize", "workers"], help="leave one part out")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kinds = args.storages.split(",")
    counts = [int(n) for n in args.workers.split(",")]
    print(
        f"nbtune {nbtune.__version__}, Optuna {optuna.__version__}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cores; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="nbtune-bench-workers-") as tmp_name:
        tmp = Path(tmp_name)
        if args.skip != "optimize":
            results["optimize"] = run_all(
                kinds, counts, lambda k, n: bench_optimize(k, n, args.seconds, tmp), "ask/tell"
            )
        if args.skip != "workers":
            results["workers"] = run_all(
                kinds, counts, lambda k, n: bench_workers(k, n, args.trials, tmp), "workers"
            )
    if "optimize" in results:
        report(
            f"Storage throughput: ask/tell of a trivial objective for {args.seconds:g} s per "
            "process (random sampler).",
            results["optimize"],
            kinds,
            counts,
        )
    if "workers" in results:
        report(
            f"nbtune workers: {args.trials} one-seed trials of the toy script, one experiment "
            "at a time per worker (trials/s from first start to last end).",
            results["workers"],
            kinds,
            counts,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
