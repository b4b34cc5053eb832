"""The winner's curse on real PPO: what tuning says against what fresh seeds say.

    python benchmarks/winners_curse.py [--trials 50] [--sampler-seeds 0 1 2 3 4]

For each sampler seed, tune the shipped PPO script on CartPole-v1 + Acrobot-v1 at 100k steps
with the search space of CleanRL's documented example (its ``MedianPruner(n_startup_trials=5)``
and a ``TPESampler`` with that seed), ``--trials`` trials of ``--tuning-seeds`` (2) seeds each;
then ``tuner.validate(top_k=5, num_seeds=10)``: the 5 best distinct configurations on 10 fresh
seeds. Per run it prints:

* the naive best (the trial with the best tuning score): its tuning score, its fresh-seed IQM
  and 95% interval, and the gap between them (the winner's curse, reported whatever it is);
* the recommended configuration (the best fresh-seed IQM) and its fresh-seed IQM;
* whether the recommendation beat the naive best on fresh seeds. On the validation seeds this
  holds by construction (the naive best is among the validated), so both configurations also
  run on ``--holdout-seeds`` (10) further seeds, used by nothing else, and the comparison that
  counts is there: the recommendation's held-out IQM against the naive best's (a tie when they
  are the same configuration).

Goal: the recommendation's held-out IQM is at least the naive best's in at least 80% of runs.
This takes hours (trials x seeds x 2 environments of 100k-step PPO, per sampler seed): it is not
part of CI. ``--script tests/scripts/toy_train.py --steps 1000`` smoke-tests the benchmark itself
in seconds (the toy script accepts PPO's flags and ignores them; ``--fixed noise=0.1`` gives it
per-seed noise).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna

import nbtune
from nbtune import _stats

TARGETS = {"CartPole-v1": [0, 500], "Acrobot-v1": [-500, 0]}
SPACE: dict[str, Any] = {
    "learning-rate": {"type": "float", "low": 0.0003, "high": 0.003, "log": True},
    "num-minibatches": {"type": "categorical", "choices": [1, 2, 4]},
    "update-epochs": {"type": "categorical", "choices": [1, 2, 4, 8]},
    "num-steps": {"type": "categorical", "choices": [5, 16, 32, 64, 128]},
    "vf-coef": {"type": "float", "low": 0.0, "high": 5.0},
    "max-grad-norm": {"type": "float", "low": 0.0, "high": 5.0},
    "total-timesteps": 100_000,
    "num-envs": 16,
}


def holdout_iqms(
    tuner: nbtune.Tuner, params: list[dict[str, Any]], first_seed: int, num_seeds: int
) -> list[_stats.Estimate]:
    """Run each configuration on ``num_seeds`` more seeds from ``first_seed``; their IQMs."""
    holdout = tuner.replace(
        study_name=tuner.config.study_name + ".holdout",
        first_seed=first_seed,
        num_seeds=num_seeds,
        aggregation_type="iqm",
        pruner=optuna.pruners.NopPruner(),
        runs_dir=Path(str(tuner.config.runs_dir)) / "holdout",
    )
    for p in params:
        holdout.enqueue(p)
    holdout.tune(len(params), num_seeds)
    out = []
    for trial in sorted(holdout.study.trials, key=lambda t: t.number)[: len(params)]:
        scores = trial.user_attrs["normalized_scores"]
        matrix = np.array([scores[env] for env in TARGETS], float).T  # seeds x environments
        out.append(_stats.estimate(matrix, "iqm"))
    return out


def run_one(args: argparse.Namespace, sampler_seed: int, tmp: Path) -> dict[str, Any]:
    space = dict(SPACE, **{"total-timesteps": args.steps}, **dict(args.fixed))
    tuner = nbtune.Tuner(
        script=args.script or nbtune.example_script("ppo"),
        metric="charts/episodic_return",
        metric_last_n_average_window=50,
        direction="maximize",
        aggregation_type="average",
        target_scores=TARGETS,
        params_fn=space,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        storage=args.storage or f"sqlite:///{tmp / 'winners_curse.db'}",
        study_name=f"winners_curse_{sampler_seed}",
        runs_dir=tmp / f"runs_{sampler_seed}",
        keep_runs="logs",
        verbose=args.verbose,
        progress_bar=False,
    )
    started = time.monotonic()
    tuner.tune(args.trials, args.tuning_seeds)
    tuned = time.monotonic() - started
    report = tuner.validate(top_k=args.top_k, num_seeds=args.fresh_seeds)
    naive, rec = report.naive_best, report.recommended
    assert naive is not None and naive.iqm is not None and rec is not None and rec.iqm is not None
    first = max(report.seeds) + 1
    same = naive.trial == rec.trial
    params = [dict(naive.params)] if same else [dict(naive.params), dict(rec.params)]
    held = holdout_iqms(tuner, params, first, args.holdout_seeds) if args.holdout_seeds else []
    naive_held = held[0] if held else None
    rec_held = (held[0] if same else held[1]) if held else None
    return {
        "sampler_seed": sampler_seed,
        "trials": args.trials,
        "tuning_minutes": round(tuned / 60, 1),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "naive": naive.trial,
        "naive_tuning": naive.tuning_score,
        "naive_fresh": [naive.iqm.value, naive.iqm.low, naive.iqm.high],
        "gap": naive.gap,
        "recommended": rec.trial,
        "rec_fresh": [rec.iqm.value, rec.iqm.low, rec.iqm.high],
        "statement": report.statement,
        "naive_holdout": None
        if naive_held is None
        else [naive_held.value, naive_held.low, naive_held.high],
        "rec_holdout": None if rec_held is None else [rec_held.value, rec_held.low, rec_held.high],
        "beat": None if not held else rec_held.value >= naive_held.value,  # type: ignore[union-attr]
        "markdown": report.markdown(),
    }


def _est(values: list[float] | None) -> str:
    if values is None:
        return "-"
    return f"{values[0]:.3f} [{values[1]:.3f}, {values[2]:.3f}]"


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the runs, and the summary lines."""
    lines = [
        "| sampler seed | naive best: tuning score | its fresh IQM [95% CI] | gap "
        "| recommended: fresh IQM | held-out IQM: naive / recommended | recommendation >= naive |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        same = " (same)" if r["naive"] == r["recommended"] else ""
        held = "-"
        if r["naive_holdout"] is not None:
            held = f"{r['naive_holdout'][0]:.3f} / {r['rec_holdout'][0]:.3f}"
        lines.append(
            f"| {r['sampler_seed']} | #{r['naive']}: {r['naive_tuning']:.3f} "
            f"| {_est(r['naive_fresh'])} | {r['gap']:+.3f} "
            f"| #{r['recommended']}{same}: {_est(r['rec_fresh'])} | {held} "
            f"| {'-' if r['beat'] is None else 'yes' if r['beat'] else 'no'} |"
        )
    beats = [r["beat"] for r in rows if r["beat"] is not None]
    gaps = [r["gap"] for r in rows]
    lines.append("")
    if beats:
        lines.append(
            f"recommendation >= naive best on held-out seeds in {sum(beats)} of {len(beats)} runs "
            f"({100 * sum(beats) / len(beats):.0f}%; goal 80%)"
        )
    if gaps:
        median = -statistics.median(gaps)
        lines.append(
            f"tuning score minus fresh-seed IQM of the naive best: median {median:+.3f} "
            f"(from {-max(gaps):+.3f} to {-min(gaps):+.3f})"
        )
    return "\n".join(lines)


def _fixed(text: str) -> tuple[str, Any]:
    flag, _, value = text.partition("=")
    try:
        return flag, json.loads(value)
    except json.JSONDecodeError:
        return flag, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50, help="tuning trials per run")
    parser.add_argument("--tuning-seeds", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--fresh-seeds", type=int, default=10)
    parser.add_argument("--holdout-seeds", type=int, default=10, help="0: no held-out check")
    parser.add_argument("--sampler-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=100_000, help="--total-timesteps")
    parser.add_argument("--script", help="another training script (default: the shipped PPO)")
    parser.add_argument(
        "--fixed",
        type=_fixed,
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="one more fixed flag (a JSON value), e.g. --fixed noise=0.1 for the toy script",
    )
    parser.add_argument("--storage", help="keep the studies here (default: a temporary SQLite)")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    parser.add_argument("--verbose", action="store_true", help="print every experiment")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nbtune-winners-curse-") as tmp:
        for seed in args.sampler_seeds:
            row = run_one(args, seed, Path(tmp))
            rows.append(row)
            print(f"sampler seed {seed}: {row['statement']}", flush=True)
            print(table(rows), flush=True)
            if args.json:  # after each run: hours of work survive a stop
                args.json.write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
