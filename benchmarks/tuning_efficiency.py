"""Tuning efficiency on real PPO: nbtune (parallel slots + in-run pruning) vs CleanRL's way.

    python benchmarks/tuning_efficiency.py [--budget-minutes 30] [--sampler-seeds 0 1 2]

Both methods tune the shipped PPO script on CartPole-v1 + Acrobot-v1 at 100k steps with the
search space of CleanRL's documented example, 3 seeds per trial, its
MedianPruner(n_startup_trials=5) and a TPESampler with the same seed, for the same wall-clock
budget:

* ``nbtune``: the defaults: one slot per usable CPU, ``OMP_NUM_THREADS=1`` per experiment, the
  trial's value reported at 10 checkpoints of the training of each seed, so the pruner can stop a
  bad trial while it runs.
* ``cleanrl-like``: what CleanRL's Tuner does: one experiment at a time with torch's default
  threads (one per core), intermediate values only after each seed (all environments) ends.

It prints, per method and sampler seed: wall-clock until the best normalized score first
reached each of ``--targets`` (0.8, the issue's mark, and 0.9) and by which trial number, when
the first trial finished (no pruner acts before it: its ratio is what the slots alone give),
the best score at the end of the budget, completed/pruned trials and CPU utilisation (CPU
seconds of all experiments / (wall seconds x usable CPUs)); then the ratios, median and spread
over sampler seeds (a method that never reached a target gives a bound, marked >= or <=).
Goal: at least 3x sooner to the same score on 2 cores. This takes hours (2 methods x seeds x
budget): it is not part of CI.

The same configuration and seed need not score the same in both methods: torch's results
depend on its thread count, and a PPO run amplifies the difference, so a configuration near
0.8 may pass in one and not the other. ``--baseline-threads 1`` removes that noise (then only
scheduling and pruning differ); ``benchmarks/slots.py`` measures what the slots alone give on
this machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna

import nbtune
from nbtune._resources import available_cpus

SPACE = {
    "learning-rate": {"type": "float", "low": 0.0003, "high": 0.003, "log": True},
    "num-minibatches": {"type": "categorical", "choices": [1, 2, 4]},
    "update-epochs": {"type": "categorical", "choices": [1, 2, 4, 8]},
    "num-steps": {"type": "categorical", "choices": [5, 16, 32, 64, 128]},
    "vf-coef": {"type": "float", "low": 0.0, "high": 5.0},
    "max-grad-norm": {"type": "float", "low": 0.0, "high": 5.0},
    "total-timesteps": 100_000,
    "num-envs": 16,
}
METHODS = {
    "nbtune": {"reporting": "checkpoint"},
    "cleanrl-like": {
        "reporting": "seed",
        "n_slots": 1,
        "env": {"OMP_NUM_THREADS": str(available_cpus())},  # torch's default: one per core
    },
}


def run_one(
    method: str,
    sampler_seed: int,
    budget: float,
    targets: list[float],
    tmp: Path,
    baseline_threads: int | None = None,
) -> dict:
    """Tune for ``budget`` seconds; return when each target was first reached, and more."""
    options = dict(METHODS[method])
    if method == "cleanrl-like" and baseline_threads is not None:
        options["env"] = {"OMP_NUM_THREADS": str(baseline_threads)}
    tuner = nbtune.Tuner(
        script=nbtune.example_script("ppo"),
        metric="charts/episodic_return",
        target_scores={"CartPole-v1": [0, 500], "Acrobot-v1": [-500, 0]},
        params_fn=SPACE,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        storage=f"sqlite:///{tmp}/{method}-{sampler_seed}.db",
        study_name=f"{method}-{sampler_seed}",
        runs_dir=tmp / f"{method}-{sampler_seed}",
        keep_runs="logs",
        verbose=False,
        progress_bar=False,
        max_consecutive_failures=None,
        **options,  # type: ignore[arg-type]
    )
    study = tuner.study
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_at = datetime.datetime.now()  # trials' datetime_complete is local time
    start = time.monotonic()
    # The study size of CleanRL's documented example: the budget ends the run long before (a
    # huge num_trials would only cost reservation bookkeeping, see nbtune._budget).
    tuner.tune(num_trials=100, num_seeds=3, timeout=budget)
    wall = time.monotonic() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    complete = sorted(
        (t for t in trials if t.state.name == "COMPLETE" and t.value is not None),
        key=lambda t: t.datetime_complete,
    )
    # When the best score first reached each target, from the trials' completion times. Trials
    # running at the deadline finish after it: a target reached then is a real time to reach it;
    # a method that never reached it ran for `wall`, a lower bound on its time.
    reached: dict[float, float | None] = dict.fromkeys(targets)
    reached_by: dict[float, int | None] = dict.fromkeys(targets)
    for trial in complete:
        for target in targets:
            if reached[target] is None and trial.value >= target:
                reached[target] = (trial.datetime_complete - started_at).total_seconds()
                reached_by[target] = trial.number
    # The first trial to finish whole: no pruner can act before it, so its time shows what
    # the slots alone give.
    first = (complete[0].datetime_complete - started_at).total_seconds() if complete else None
    return {
        "method": method,
        "seed": sampler_seed,
        "reached": reached,
        "reached_by": reached_by,
        "first_trial": first,
        # Trials that finished within the budget (the last one started may end after it).
        "best": max(
            (
                t.value
                for t in complete
                if (t.datetime_complete - started_at).total_seconds() <= budget
            ),
            default=None,
        ),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "wall": wall,
        "cpu_util": cpu / (wall * available_cpus()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=30.0)
    parser.add_argument("--sampler-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.8, 0.9])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--baseline-threads",
        type=int,
        help="threads of cleanrl-like's experiments (default: one per CPU, as torch); 1 makes a "
        "configuration score the same in both methods, so only scheduling and pruning differ",
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = args.budget_minutes * 60
    print(f"{available_cpus()} usable CPUs, budget {args.budget_minutes:g} min per run", flush=True)
    print(_header(args.targets), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.sampler_seeds:
            for method in args.methods:
                row = run_one(method, seed, budget, args.targets, Path(tmp), args.baseline_threads)
                rows.append(row)
                print(_format(row, args.targets), flush=True)
                if args.json:  # after each run: a stopped benchmark keeps what it measured
                    args.json.write_text(json.dumps(rows, indent=1))
    print()
    print(_header(args.targets))
    for row in rows:
        print(_format(row, args.targets))
    print()
    for target in args.targets:
        print(_ratio_line(rows, args.sampler_seeds, target))
    first_ratios = [
        theirs["first_trial"] / ours["first_trial"]
        for _, ours, theirs in _pairs(rows, args.sampler_seeds)
        if ours["first_trial"] and theirs["first_trial"]
    ]
    if first_ratios:
        print(
            "first whole trial: cleanrl-like / nbtune = "
            f"{statistics.median(first_ratios):.2f}x median ({min(first_ratios):.2f}x .. "
            f"{max(first_ratios):.2f}x): the slots alone, before any pruner may act; where "
            "an early trial reaches the target this is the whole gain."
        )
    for method in args.methods:
        best = [r["best"] for r in rows if r["method"] == method and r["best"] is not None]
        if best:
            print(
                f"best score after {args.budget_minutes:g} min, {method}: median "
                f"{statistics.median(best):.3f} ({min(best):.3f} .. {max(best):.3f})"
            )


def _pairs(rows: list[dict], seeds: list[int]) -> Iterator[tuple[int, dict, dict]]:
    """(sampler seed, nbtune's row, cleanrl-like's row) for each seed both methods ran."""
    for seed in seeds:
        by = {r["method"]: r for r in rows if r["seed"] == seed}
        if len(by) == 2:
            yield seed, by["nbtune"], by["cleanrl-like"]


def _ratio_line(rows: list[dict], seeds: list[int], target: float) -> str:
    """cleanrl-like's time to ``target`` over nbtune's, per sampler seed, and their median.

    A method that never reached the target gives only a bound: its whole run (``wall``) is a
    lower bound on its time, so the ratio is at least (``>=``) or at most (``<=``) the figure.
    Bounds enter the median at their value; seeds where neither reached it are left out.
    """
    ratios: list[float] = []
    shown: list[str] = []
    for seed, our_row, their_row in _pairs(rows, seeds):
        ours, theirs = our_row["reached"][target], their_row["reached"][target]
        if ours is None and theirs is None:
            shown.append(f"seed {seed}: neither")
            continue
        if ours is None:  # nbtune never reached it: the ratio is at most this
            ratio, mark = theirs / our_row["wall"], "<="
        elif theirs is None:  # cleanrl-like never reached it: the ratio is at least this
            ratio, mark = their_row["wall"] / ours, ">="
        else:
            ratio, mark = theirs / ours, ""
        ratios.append(ratio)
        shown.append(f"seed {seed}: {mark}{ratio:.2f}x")
    if not ratios:
        return f"time to reach {target}: no sampler seed reached it; no ratio"
    return (
        f"time to reach {target}: cleanrl-like / nbtune = {statistics.median(ratios):.2f}x "
        f"median over {len(ratios)} sampler seeds ({'; '.join(shown)}). Goal: >= 3x."
    )


def _header(targets: list[float]) -> str:
    cols = "".join(f"{'to ' + str(t):>16}" for t in targets)
    return (
        f"{'method':14}{'seed':>5}{'1st trial':>11}{cols}{'best':>8}{'done':>6}{'pruned':>7}"
        f"{'CPU':>6}"
    )


def _format(row: dict, targets: list[float]) -> str:
    # "1.9 min (#2)": when the target was first reached, and by which trial number.
    cols = "".join(f"{_when(row['reached'][t], row['reached_by'][t]):>16}" for t in targets)
    first = "-" if row["first_trial"] is None else f"{row['first_trial'] / 60:.1f} min"
    best = "-" if row["best"] is None else f"{row['best']:.3f}"
    return (
        f"{row['method']:14}{row['seed']:>5}{first:>11}{cols}{best:>8}{row['complete']:>6}"
        f"{row['pruned']:>7}{row['cpu_util']:>6.0%}"
    )


def _when(seconds: float | None, number: int | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min (#{number})"


if __name__ == "__main__":
    main()
