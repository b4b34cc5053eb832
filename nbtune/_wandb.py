"""Weights and Biases tracking of trials, imported only when ``wandb_kwargs`` is given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState


class WandbTracker:
    """One wandb run per trial: its parameters, each environment's score, the trial's value.

    Args:
        wandb_kwargs: Passed to ``wandb.init`` (``project``, ``entity``, ...).
        study_name: Groups the trials' runs; each run is named ``{study_name}_{trial number}``.

    Raises:
        ImportError: If wandb is not installed.

    """

    def __init__(self, wandb_kwargs: Mapping[str, Any], study_name: str) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise ImportError(
                "wandb_kwargs was given but wandb is not installed: `pip install wandb`, "
                "or leave wandb_kwargs out."
            ) from exc
        self._wandb = wandb
        self._kwargs = dict(wandb_kwargs)
        self._study_name = study_name
        self._runs: dict[int, Any] = {}

    def on_trial_start(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None:
        """Open the trial's run."""
        kwargs = {
            "name": f"{self._study_name}_{trial.number}",
            "group": self._study_name,
            **self._kwargs,
            "config": {**dict(params), "trial_number": trial.number},
            "reinit": "create_new",
        }
        self._runs[trial.number] = self._wandb.init(**kwargs)

    def on_experiment_end(
        self,
        trial: optuna.Trial,
        env_id: str,
        seed: int,
        raw: float | None,
        normalized: float | None,
    ) -> None:
        """Log one environment's score."""
        run = self._runs.get(trial.number)
        if run is not None and raw is not None:
            run.log({f"{env_id}_return": raw, f"{env_id}_normalized": normalized, "seed": seed})

    def on_trial_end(self, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
        """Record the outcome and close the run."""
        run = self._runs.pop(trial.number, None)
        if run is None:
            return
        run.summary["state"] = state.name
        if value is not None:
            run.summary["normalized_score"] = value
        run.finish()
