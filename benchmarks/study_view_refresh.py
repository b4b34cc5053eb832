"""Refresh time of the live study view (reader + chart data) beside the naive ways to poll.

For each storage (SQLite, and the journal file with ``--storages sqlite,journal``) and study size,
it measures one poll of:

* ours: ``StudyView.refresh()`` on a kept view, then every chart info (history, parallel
  coordinates, per-environment top-5, learning curves, status/ETA), with 0 and with 10 new
  trials written between polls (by an Optuna ``Study`` handle, not timed);
* Optuna's kept handle: ``study.get_trials(deepcopy=False)`` on a kept ``Study`` (its cache),
  data only, no charts;
* naive: a fresh ``optuna.load_study`` + ``get_trials`` + ``plot_optimization_history`` +
  ``plot_parallel_coordinate`` (skipped above ``--naive-max`` trials: it takes minutes);
* optuna-dashboard's API, if installed: ``GET /api/studies/<id>?after=<n>`` through its WSGI app
  with its trial cache fresh, and with the cache expired (its TTL is 10 s above 500 trials).

The study looks like an nbtune study: 6 parameters (log-scaled, categorical, int), 3 intermediate
values and score attributes per trial, and the last 4 trials running. Studies are bulk-inserted
(SQLAlchemy Core on Optuna's own tables; checked against ``study.add_trials`` at start) and cached
in ``--cache`` between runs; each run works on a copy.

Usage::

    python benchmarks/study_view_refresh.py                       # 100 .. 100,000, SQLite
    python benchmarks/study_view_refresh.py --storages sqlite,journal --sizes 1000,10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import wsgiref.util
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbtune import plots
from nbtune._study_view import StudyView

VIS = optuna.visualization
BUILD_VERSION = 3
STUDY = "bench"
N_RUNNING = 4  # workers
N_WAITING = 20  # nbtune reserves its trial budget as waiting trials
DISTS = {
    "learning-rate": FloatDistribution(1e-5, 1e-2, log=True),
    "num-minibatches": CategoricalDistribution([1, 2, 4]),
    "update-epochs": CategoricalDistribution([1, 2, 4, 8]),
    "num-steps": IntDistribution(16, 256, log=True),
    "vf-coef": FloatDistribution(0.0, 5.0),
    "max-grad-norm": FloatDistribution(0.0, 5.0),
}
ENVS = ("CartPole-v1", "Acrobot-v1")
SEEDS = [1, 2, 3]


# --------------------------------------------------------------------------------------------
# Building studies
# --------------------------------------------------------------------------------------------


def make_trial(rng: random.Random, state: TrialState = TrialState.COMPLETE) -> FrozenTrial:
    """One nbtune-like trial (FrozenTrial built directly: create_trial validates, slowly)."""
    params = {
        "learning-rate": 10 ** rng.uniform(-5, -2),
        "num-minibatches": rng.choice([1, 2, 4]),
        "update-epochs": rng.choice([1, 2, 4, 8]),
        "num-steps": int(2 ** rng.uniform(4, 8)),
        "vf-coef": rng.uniform(0, 5),
        "max-grad-norm": rng.uniform(0, 5),
    }
    v = rng.random()
    norm = {env: [v + rng.gauss(0, 0.05) for _ in SEEDS] for env in ENVS}
    raw = {"CartPole-v1": [500 * x for x in norm["CartPole-v1"]]}
    raw["Acrobot-v1"] = [-500 + 500 * x for x in norm["Acrobot-v1"]]
    now = dt.datetime.now()
    finished = state.is_finished()
    return FrozenTrial(
        number=0,
        state=state,
        value=v if state == TrialState.COMPLETE else None,
        datetime_start=now - dt.timedelta(seconds=30),
        datetime_complete=now if finished else None,
        params=params,
        distributions=dict(DISTS),
        user_attrs={"seeds": SEEDS, "normalized_scores": norm, "raw_scores": raw}
        if finished
        else {"seeds": SEEDS},
        system_attrs={},
        intermediate_values={0: v * 0.5, 1: v * 0.8, 2: v},
        trial_id=0,
    )


def waiting_trial() -> FrozenTrial:
    return FrozenTrial(
        number=0, state=TrialState.WAITING, value=None, datetime_start=None,
        datetime_complete=None, params={}, distributions={}, user_attrs={},
        system_attrs={"nbtune:reserved": 1.0}, intermediate_values={}, trial_id=0,
    )  # fmt: skip


def study_trials(n: int, seed: int = 0) -> Iterable[FrozenTrial]:
    """``n`` trials: complete ones, then 4 running and 20 waiting (fewer in tiny studies)."""
    rng = random.Random(seed)
    n_waiting = min(N_WAITING, n // 5)
    n_running = min(N_RUNNING, n // 5)
    for i in range(n):
        if i >= n - n_waiting:
            yield waiting_trial()
        elif i >= n - n_waiting - n_running:
            yield make_trial(rng, TrialState.RUNNING)
        else:
            yield make_trial(rng, TrialState.COMPLETE)


def bulk_insert(storage: RDBStorage, study_id: int, trials: list[FrozenTrial]) -> None:
    """Insert trials with SQLAlchemy Core into Optuna's tables, as RDBStorage stores them."""
    from optuna.storages._rdb import models

    def utc(value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    with storage.engine.begin() as conn:
        t = models.TrialModel.__table__
        last_id = conn.execute(sqlalchemy.select(sqlalchemy.func.max(t.c.trial_id))).scalar()
        first_id = (last_id or 0) + 1
        first_number = conn.execute(
            sqlalchemy.select(sqlalchemy.func.count()).where(t.c.study_id == study_id)
        ).scalar()
        rows: dict[Any, list[dict[str, Any]]] = {m: [] for m in (
            models.TrialModel, models.TrialParamModel, models.TrialValueModel,
            models.TrialUserAttributeModel, models.TrialSystemAttributeModel,
            models.TrialIntermediateValueModel,
        )}  # fmt: skip
        dist_json = {name: distribution_to_json(d) for name, d in DISTS.items()}
        for k, trial in enumerate(trials):
            tid = first_id + k
            rows[models.TrialModel].append({
                "trial_id": tid, "number": first_number + k, "study_id": study_id,
                "state": trial.state, "datetime_start": utc(trial.datetime_start),
                "datetime_complete": utc(trial.datetime_complete),
            })  # fmt: skip
            for name, value in trial.params.items():
                d = trial.distributions[name]
                rows[models.TrialParamModel].append({
                    "trial_id": tid, "param_name": name, "param_value": d.to_internal_repr(value),
                    "distribution_json": dist_json.get(name) or distribution_to_json(d),
                })  # fmt: skip
            for objective, value in enumerate(trial.values or ()):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                rows[models.TrialValueModel].append({
                    "trial_id": tid, "objective": objective, "value": stored, "value_type": kind,
                })  # fmt: skip
            for key, value in trial.user_attrs.items():
                rows[models.TrialUserAttributeModel].append(
                    {"trial_id": tid, "key": key, "value_json": json.dumps(value)}
                )
            for key, value in trial.system_attrs.items():
                rows[models.TrialSystemAttributeModel].append(
                    {"trial_id": tid, "key": key, "value_json": json.dumps(value)}
                )
            for step, value in trial.intermediate_values.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(
                    value
                )
                rows[models.TrialIntermediateValueModel].append({
                    "trial_id": tid, "step": step, "intermediate_value": stored,
                    "intermediate_value_type": kind,
                })  # fmt: skip
        for model, batch in rows.items():
            if batch:
                conn.execute(sqlalchemy.insert(model.__table__), batch)


def build_sqlite(path: Path, n: int) -> None:
    path.unlink(missing_ok=True)
    storage = RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, study_name=STUDY, direction="maximize")
    batch: list[FrozenTrial] = []
    for trial in study_trials(n):
        batch.append(trial)
        if len(batch) == 20_000:
            bulk_insert(storage, study._study_id, batch)
            batch = []
    if batch:
        bulk_insert(storage, study._study_id, batch)
    storage.engine.dispose()


class _Collect(BaseJournalBackend):
    """An in-memory journal: Optuna writes its log lines here, then they go to a file at once."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(logs)


def build_journal(path: Path, n: int) -> None:
    path.unlink(missing_ok=True)
    memory = _Collect()
    study = optuna.create_study(
        storage=JournalStorage(memory), study_name=STUDY, direction="maximize"
    )
    study.add_trials(study_trials(n))
    JournalFileBackend(str(path)).append_logs(memory.logs)


def check_bulk_insert(tmp: Path) -> None:
    """The bulk-inserted study reads back exactly like one written with study.add_trials."""
    trials = list(study_trials(30, seed=1))
    build_sqlite(tmp / "bulk.db", 0)
    storage = RDBStorage(f"sqlite:///{tmp / 'bulk.db'}")
    bulk_insert(storage, storage.get_study_id_from_name(STUDY), trials)
    reference = optuna.create_study(storage=f"sqlite:///{tmp / 'ref.db'}", study_name=STUDY)
    reference.add_trials(trials)

    def key(t: FrozenTrial) -> tuple[Any, ...]:
        return (
            (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs),
            (t.system_attrs, t.intermediate_values, t.datetime_start, t.datetime_complete),
        )

    got = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp / 'bulk.db'}").trials
    assert [key(t) for t in got] == [key(t) for t in reference.trials], "bulk insert differs"
    storage.engine.dispose()


def cached_study(cache: Path, kind: str, n: int) -> Path:
    """A prebuilt study file for (kind, n), built once and kept in the cache directory."""
    suffix = "db" if kind == "sqlite" else "log"
    path = cache / f"{kind}_{n}_v{BUILD_VERSION}.{suffix}"
    if not path.exists():
        started = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        (build_sqlite if kind == "sqlite" else build_journal)(tmp, n)
        tmp.rename(path)
        print(f"  built {kind} study of {n:,} trials in {time.perf_counter() - started:.1f} s")
    return path


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def chart_data(view: StudyView) -> None:
    plots.get_history_info(view)
    plots.get_parcoords_info(view)
    plots.get_env_scores_info(view, k=5)
    plots.get_learning_curves_info(view)
    plots.get_status_info(view)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def open_target(kind: str, path: Path) -> Any:
    if kind == "sqlite":
        return f"sqlite:///{path}"
    return str(path)


def writer_study(kind: str, path: Path) -> optuna.Study:
    if kind == "sqlite":
        return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{path}")
    return optuna.load_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(path)))
    )


def dashboard_poll(kind: str, path: Path, n_known: int, reps: int) -> tuple[float, float] | None:
    try:
        import optuna_dashboard
    except ImportError:
        return None
    storage: Any
    if kind == "sqlite":
        storage = optuna.storages.get_storage(f"sqlite:///{path}")
    else:
        storage = JournalStorage(JournalFileBackend(str(path)))
    app = optuna_dashboard.wsgi(storage)
    study_id = storage.get_study_id_from_name(STUDY)

    def get() -> None:
        environ: dict[str, Any] = {
            "PATH_INFO": f"/api/studies/{study_id}",
            "QUERY_STRING": f"after={n_known}",
            "REQUEST_METHOD": "GET",
        }
        wsgiref.util.setup_testing_defaults(environ)
        status: list[str] = []
        body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (status, body[:200])

    get()  # first load, as a browser opening the page
    cached = [timed(get) for _ in range(reps)]
    cache = app._inmemory_cache  # type: ignore[attr-defined]

    def expire_then_get() -> float:
        cache._trials_last_fetched_at[study_id] = dt.datetime(2000, 1, 1)
        return timed(get)

    expired = [expire_then_get() for _ in range(max(1, reps // 2))]
    if kind == "sqlite":
        storage._backend.engine.dispose()
    return median_ms(cached), median_ms(expired)


def bench_one(kind: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    source = cached_study(args.cache, kind, n)
    path = args.cache / f"work_{kind}.{source.suffix.lstrip('.')}"
    shutil.copyfile(source, path)
    target = open_target(kind, path)
    row: dict[str, Any] = {"storage": kind, "n": n}
    reps = args.reps

    started = time.perf_counter()
    view = StudyView(target, STUDY)
    chart_data(view)
    row["first_load_s"] = time.perf_counter() - started

    row["ours_0"] = median_ms(
        [timed(lambda: (view.refresh(), chart_data(view))) for _ in range(reps)]
    )
    writer = writer_study(kind, path)
    rng = random.Random(n)
    refresh_only, total = [], []
    kept = optuna.load_study(study_name=STUDY, storage=target if kind == "sqlite" else
                             JournalStorage(JournalFileBackend(str(path))))  # fmt: skip
    kept.get_trials(deepcopy=False)
    row["optuna_kept_0"] = median_ms([timed(lambda: kept.get_trials(deepcopy=False))
                                      for _ in range(reps)])  # fmt: skip
    kept_new = []
    for _ in range(reps):
        writer.add_trials([make_trial(rng) for _ in range(10)])
        t_refresh = timed(lambda: view.refresh())
        assert len(view.last_refresh.new) == 10, view.last_refresh
        t_charts = timed(lambda: chart_data(view))
        refresh_only.append(t_refresh)
        total.append(t_refresh + t_charts)
        kept_new.append(timed(lambda: kept.get_trials(deepcopy=False)))
    row["ours_10"] = median_ms(total)
    row["ours_10_refresh"] = median_ms(refresh_only)
    row["optuna_kept_10"] = median_ms(kept_new)
    n_now = view.n_trials

    if n <= args.naive_max:
        naive_reps = max(1, min(reps, 3 if n <= 1000 else 1))
        load, hist, pc = [], [], []
        for _ in range(naive_reps):
            started = time.perf_counter()
            storage = target if kind == "sqlite" else JournalStorage(JournalFileBackend(str(path)))
            fresh = optuna.load_study(study_name=STUDY, storage=storage)
            fresh.get_trials()
            load.append(time.perf_counter() - started)
            hist.append(timed(lambda s=fresh: VIS.plot_optimization_history(s)))
            pc.append(timed(lambda s=fresh: VIS.plot_parallel_coordinate(s)))
        row["naive_load"] = median_ms(load)
        row["naive_history"] = median_ms(hist)
        row["naive_parcoords"] = median_ms(pc)
        row["naive"] = row["naive_load"] + row["naive_history"] + row["naive_parcoords"]
    if args.dashboard and n <= args.naive_max:
        polled = dashboard_poll(kind, path, n_now, max(3, reps // 2))
        if polled is not None:
            row["dash_cached"], row["dash_expired"] = polled
    return row


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(ms: float | None) -> str:
    if ms is None:
        return "skipped"
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:,.0f}x"


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print("One poll, median (ours = StudyView.refresh() + all chart infos).")
    print()
    print("| storage | trials | ours, 0 new | ours, 10 new (refresh only) "
          "| Optuna kept Study get_trials, 0 / 10 new | naive: fresh load + 2 Optuna plots "
          "(load / history / parcoords) | naive / ours (10 new) "
          "| dashboard API cached / expired | dashboard expired / ours |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        naive = r.get("naive")
        naive_text = (
            f"{fmt(naive)} ({fmt(r['naive_load'])} / {fmt(r['naive_history'])} / "
            f"{fmt(r['naive_parcoords'])})"
            if naive is not None
            else f"skipped (> {args.naive_max:,} trials: minutes)"
        )
        dash = (
            f"{fmt(r['dash_cached'])} / {fmt(r['dash_expired'])}"
            if "dash_cached" in r
            else "skipped"
        )
        print(
            f"| {r['storage']} | {r['n']:,} | {fmt(r['ours_0'])} | {fmt(r['ours_10'])} "
            f"({fmt(r['ours_10_refresh'])}) | {fmt(r['optuna_kept_0'])} / "
            f"{fmt(r['optuna_kept_10'])} | {naive_text} | {ratio(naive, r['ours_10'])} | "
            f"{dash} | {ratio(r.get('dash_expired'), r['ours_10'])} |"
        )
    print()
    for r in rows:
        print(f"first load of the view ({r['storage']}, {r['n']:,} trials): "
              f"{r['first_load_s']:.2f} s")  # fmt: skip
    goals = {10_000: 50.0, 100_000: 500.0}
    print()
    for r in rows:
        goal = goals.get(r["n"])
        if goal is not None:
            worst = max(r["ours_0"], r["ours_10"])
            verdict = "met" if worst < goal else "NOT met"
            print(f"goal < {goal:.0f} ms at {r['n']:,} trials ({r['storage']}): "
                  f"{verdict} (worst {worst:.1f} ms)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--storages", default="sqlite")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--naive-max", type=int, default=10_000)
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_false")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "nbtune-bench-study-view"
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.cache.mkdir(parents=True, exist_ok=True)
    check_dir = args.cache / "check"
    shutil.rmtree(check_dir, ignore_errors=True)
    check_dir.mkdir()
    check_bulk_insert(check_dir)
    print(f"Optuna {optuna.__version__}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    rows = []
    for kind in args.storages.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            print(f"{kind}, {n:,} trials ...", flush=True)
            rows.append(bench_one(kind, n, args))
    report(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
