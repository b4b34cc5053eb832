"""Shared fixtures: the tiny training script and a Tuner factory on a temporary SQLite study."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import TOY


def pytest_configure(config: pytest.Config) -> None:
    """One signing key for the whole run, never the user's own (subprocesses inherit it)."""
    if "NBTUNE_KEY_FILE" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="nbtune-key-"))
        os.environ["NBTUNE_KEY_FILE"] = str(folder / "signing.key")


@pytest.fixture
def toy_script() -> Path:
    return TOY


@pytest.fixture
def make_tuner(tmp_path: Path) -> Callable[..., Any]:
    """Build a Tuner on the toy script with a fresh SQLite study under tmp_path."""
    import nbtune

    def make(**overrides: Any) -> nbtune.Tuner:
        kwargs: dict[str, Any] = {
            "script": TOY,
            "metric": "charts/episodic_return",
            "target_scores": {"EnvA": [0, 100], "EnvB": [-100, 0]},
            "params_fn": lambda trial: {
                "learning-rate": trial.suggest_float("learning-rate", 1e-5, 1e-1, log=True),
                "total-timesteps": 2000,
            },
            "metric_last_n_average_window": 10,
            "storage": f"sqlite:///{tmp_path / 'study.db'}",
            "study_name": "test",
            "runs_dir": tmp_path / "runs",
            "interpreter": sys.executable,
            "verbose": False,
            "n_slots": 1,  # parallel tests ask for more
        }
        kwargs.update(overrides)
        return nbtune.Tuner(**kwargs)

    return make


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """wandb in offline mode writing under tmp_path; yields the folder its runs go to.

    wandb reads its settings (WANDB_DIR among them) once per process, at its first run: tear
    its process-wide state down around each test, or runs land in an earlier test's folder.
    """
    if os.environ.get("CI") == "true":
        import wandb  # CI installs it: fail, never skip
    else:
        wandb = pytest.importorskip(
            "wandb", reason="wandb is not installed (pip install -e '.[test]')"
        )
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb.teardown()
    yield tmp_path / "wandb"
    wandb.teardown()
