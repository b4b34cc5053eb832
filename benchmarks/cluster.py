"""What running on a Dask cluster costs: the same study on local slots and on a local cluster.

    python benchmarks/cluster.py                       # the toy script, 1 and 2 slots
    python benchmarks/cluster.py --script ppo --trials 4 --slots 1 2 4 8 16

For each number of slots N it runs the same study twice, on fresh SQLite studies in a temporary
folder, interleaved:

* ``local``: this process, ``n_slots=N`` (``tuner.tune``);
* ``dask``: a ``LocalCluster`` of N worker processes with one thread each (so N slots spread
  over N Dask workers, each its own nbtune worker), ``tuner.tune(..., cluster=client)``.

Every trial runs the same fixed configuration (one seed, one environment), so both paths run the
same experiments. Timed: from the ``tune`` call to its return (the cluster's start is not
counted, its per-run work is: checking that the workers reach the storage, placing the tasks,
collecting them). It prints wall seconds, experiments per minute, the cluster's wall overhead
per experiment and that overhead as a share of one experiment's median duration (for
``--script ppo``: a 100k-step PPO run), then the scaling of both paths against one slot.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbtune

TOY = Path(__file__).resolve().parents[1] / "tests" / "scripts" / "toy_train.py"


def _tuner(args: argparse.Namespace, folder: Path, name: str, slots: int) -> nbtune.Tuner:
    if args.script == "toy":
        script, metric, targets = TOY, "charts/episodic_return", {"EnvA": [0, 100]}
        space: dict[str, Any] = {
            "learning-rate": 0.001,
            "total-timesteps": args.toy_steps,
            "sleep": args.toy_sleep,
        }
    else:
        script, metric = nbtune.example_script("ppo"), "charts/episodic_return"
        targets = {"CartPole-v1": [0, 500]}
        space = {"learning-rate": 0.00025, "total-timesteps": 100_000, "num-envs": 16}
    return nbtune.Tuner(
        script=script,
        metric=metric,
        target_scores=targets,
        params_fn=space,
        metric_last_n_average_window=3,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
        storage=f"sqlite:///{folder / 'bench.db'}",
        study_name=name,
        runs_dir=folder / "runs" / name,
        n_slots=slots,
        verbose=False,
        progress_bar=False,
    )


def _span(tuner: nbtune.Tuner) -> float:
    """Seconds from the first trial's start to the last trial's end (the steady state)."""
    trials = tuner.study.get_trials(deepcopy=False)
    start = min(t.datetime_start for t in trials if t.datetime_start is not None)
    end = max(t.datetime_complete for t in trials if t.datetime_complete is not None)
    return (end - start).total_seconds()


def _durations(tuner: nbtune.Tuner) -> list[float]:
    return [
        float(e["seconds"])
        for t in tuner.study.get_trials(deepcopy=False)
        for e in t.user_attrs.get("experiments", [])
        if e.get("seconds") is not None
    ]


def _run(args: argparse.Namespace, folder: Path, slots: int, rep: int, client: Any) -> dict:
    out: dict[str, Any] = {}
    for how in ("local", "dask"):
        tuner = _tuner(args, folder, f"{how}_{slots}_{rep}", slots)
        tuner.study  # noqa: B018  (the study exists before the clock starts)
        started = time.perf_counter()
        if how == "local":
            tuner.tune(args.trials * slots, num_seeds=1)
        else:
            tuner.tune(args.trials * slots, num_seeds=1, cluster=client)
        out[how] = time.perf_counter() - started
        out[f"{how}_span"] = _span(tuner)
        out[f"{how}_exp"] = statistics.median(_durations(tuner))
        tuner.storage.engine.dispose()  # type: ignore[attr-defined]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", choices=["toy", "ppo"], default="toy")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=6, help="trials per slot")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--toy-steps", type=int, default=2000)
    parser.add_argument("--toy-sleep", type=float, default=1.0, help="seconds per toy run")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    print(
        f"{args.script}: {args.trials} one-experiment trials per slot, median of "
        f"{args.repeats}; {os.cpu_count()} CPUs"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="nbtune-bench-cluster-") as tmp:
        folder = Path(tmp)
        for slots in args.slots:
            with (
                LocalCluster(
                    n_workers=slots,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
                ) as cluster,
                Client(cluster) as client,
            ):
                runs = [_run(args, folder, slots, rep, client) for rep in range(args.repeats)]
            row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            row["slots"] = slots
            rows.append(row)
    print()
    print(
        "| slots | local: wall / trials span | dask: wall / trials span | dask's fixed cost per "
        "run | dask overhead per experiment | share of one experiment |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        n = args.trials * row["slots"]
        fixed = (row["dask"] - row["dask_span"]) - (row["local"] - row["local_span"])
        per = (row["dask_span"] - row["local_span"]) * row["slots"] / n
        print(
            f"| {row['slots']} | {row['local']:.2f} / {row['local_span']:.2f} s | "
            f"{row['dask']:.2f} / {row['dask_span']:.2f} s | {fixed:+.2f} s | {per:+.3f} s | "
            f"{100 * per / row['local_exp']:+.1f}% (of {row['local_exp']:.2f} s) |"
        )
    base = rows[0]
    base_n = args.trials * base["slots"]
    print()
    print("Experiments per minute over the trials' span (wall, with start and end, in brackets):")
    print()
    print("| slots | local | dask | local scaling | dask scaling | dask / local |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        n = args.trials * row["slots"]
        local, dask = 60 * n / row["local_span"], 60 * n / row["dask_span"]
        base_rate = 60 * base_n / base["local_span"]
        print(
            f"| {row['slots']} | {local:.1f} ({60 * n / row['local']:.1f}) | {dask:.1f} "
            f"({60 * n / row['dask']:.1f}) | {local / base_rate:.2f}x | {dask / base_rate:.2f}x "
            f"| {dask / local:.3f} |"
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
