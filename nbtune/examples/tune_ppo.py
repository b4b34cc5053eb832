"""The seed's example: one set of PPO hyperparameters for CartPole-v1 and Acrobot-v1.

Run it with ``python -m nbtune.examples.tune_ppo`` (``--help`` for the budget). It needs the
``rl`` extra and torch: ``pip install "nbtune[rl]" torch``. The study lands in the default SQLite
file, ``cleanrl_hpopt.db`` in the current directory; watch it with ``optuna-dashboard`` or the
notebook widget while it runs.
"""

from __future__ import annotations

import argparse

import optuna

import nbtune


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-trials", type=int, default=100)
    parser.add_argument("--num-seeds", type=int, default=3)
    parser.add_argument("--total-timesteps", type=int, default=100_000)
    parser.add_argument("--storage", default="sqlite:///cleanrl_hpopt.db")
    parser.add_argument("--study-name", default="", help="default: tuner_<unix time>")
    args = parser.parse_args(argv)

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
            "total-timesteps": args.total_timesteps,
            "num-envs": 16,
        },
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
        sampler=optuna.samplers.TPESampler(),
        storage=args.storage,
        study_name=args.study_name,
    )
    best = tuner.tune(num_trials=args.num_trials, num_seeds=args.num_seeds)
    print("best parameters:", best.params)


if __name__ == "__main__":
    main()
