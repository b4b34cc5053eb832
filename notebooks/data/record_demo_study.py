"""Record the small pre-recorded study that the notebooks open (``demo_study.log``).

It is the study of CleanRL's documented example (PPO on CartPole-v1 and Acrobot-v1, its search
space, 100k steps, 16 envs, median pruner), run for a few dozen trials with one seed each so that it records in
minutes on a laptop. The journal file keeps only what Optuna stores (trials, parameters, values,
checkpoint reports and nbtune's per-environment attributes); the experiment folders are deleted.

    python notebooks/data/record_demo_study.py --trials 36
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import optuna

import nbtune

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def main() -> None:
    """Run the study into a new journal file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=36)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "demo_study.log")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; delete it first to record a new study")
    runs = Path(tempfile.mkdtemp(prefix="nbtune-demo-"))
    tuner = nbtune.Tuner(
        script=nbtune.example_script("ppo"),
        metric="charts/episodic_return",
        metric_last_n_average_window=50,
        direction="maximize",
        aggregation_type="average",
        target_scores={"CartPole-v1": [0, 500], "Acrobot-v1": [-500, 0]},
        params_fn=lambda trial: {
            "learning-rate": trial.suggest_float("learning-rate", 0.0003, 0.003, log=True),
            "num-minibatches": trial.suggest_categorical("num-minibatches", [1, 2, 4]),
            "update-epochs": trial.suggest_categorical("update-epochs", [1, 2, 4, 8]),
            "num-steps": trial.suggest_categorical("num-steps", [5, 16, 32, 64, 128]),
            "vf-coef": trial.suggest_float("vf-coef", 0, 5),
            "max-grad-norm": trial.suggest_float("max-grad-norm", 0, 5),
            "total-timesteps": 100000,
            "num-envs": 16,
        },
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
        sampler=optuna.samplers.TPESampler(seed=0),
        storage=str(args.out),
        study_name="ppo_cartpole_acrobot_demo",
        runs_dir=runs / "runs",
        keep_runs="logs",
        progress_bar=False,
    )
    started = time.monotonic()
    try:
        best = tuner.tune(num_trials=args.trials, num_seeds=args.seeds)
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    relativize(args.out, {sys.executable: "python", f"{REPO}/": "", f"{runs}/": ""})
    print(f"recorded {args.trials} trials in {time.monotonic() - started:.0f} s; best {best.value}")
    print(f"{args.out}: {args.out.stat().st_size / 1e3:.0f} kB")


def relativize(log: Path, replacements: dict[str, str]) -> None:
    """Rewrite the recording machine's absolute paths in the journal as relative ones.

    The interpreter becomes ``python``, the script a path from the repository's root, and each
    experiment's folder a path from the (deleted) runs folder: the shipped file must not carry
    one machine's folders.
    """
    text = log.read_text()
    for old, new in replacements.items():
        text = text.replace(old, new)
    log.write_text(text)


if __name__ == "__main__":
    main()
