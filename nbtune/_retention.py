"""Disk retention for experiment folders: keep all, keep the best k whole, or keep logs only.

"Logs" are what explains a run: its stdout and stderr logs and its TensorBoard event files.
Everything else an experiment wrote (model checkpoints, videos, replay buffers) is what fills a
disk over hundreds of trials, and what a retention policy removes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nbtune import _attrs
from nbtune._errors import ConfigError

KEEP_ALL = "all"
KEEP_LOGS = "logs"


def check_keep_runs(keep_runs: object) -> str | int:
    """Validate a retention policy: ``"all"``, ``"logs"`` or a whole number k >= 0 (best k).

    Example:
        >>> check_keep_runs(3)
        3
    """
    if keep_runs in (KEEP_ALL, KEEP_LOGS):
        return keep_runs  # type: ignore[return-value]
    if isinstance(keep_runs, int) and not isinstance(keep_runs, bool) and keep_runs >= 0:
        return keep_runs
    raise ConfigError(
        f"keep_runs must be 'all', 'logs' or a whole number k >= 0 (keep the k best trials' "
        f"folders whole, logs only for the others); got {keep_runs!r}."
    )


def _is_log(path: Path) -> bool:
    return path.name in ("stdout.log", "stderr.log") or path.name.startswith("events.out.tfevents")


def reduce_to_logs(run_dir: Path) -> int:
    """Delete everything but logs under ``run_dir``; return the bytes freed."""
    freed = 0
    if not run_dir.is_dir():
        return 0
    for root, dirs, files in os.walk(run_dir, topdown=False):
        for name in files:
            path = Path(root) / name
            if not _is_log(path):
                try:
                    freed += path.stat().st_size
                    path.unlink()
                except OSError:
                    pass
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(root) / name).rmdir()  # only empty ones
    return freed


def inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path``, with links and ``..`` resolved, lies inside ``folder`` (or is it).

    Example:
        >>> inside("runs/s/trial_00001/EnvA__seed0", "runs/s")
        True
        >>> inside("runs/s/../../elsewhere", "runs/s")
        False
    """
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def apply_retention(
    study: optuna.Study,
    keep_runs: str | int,
    finished: optuna.trial.FrozenTrial | None = None,
    reduced: set[int] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """Apply the policy after a trial finished; return the bytes freed.

    Args:
        study: The study.
        keep_runs: The policy.
        finished: The trial that just finished (``"logs"`` reduces only its folders).
        reduced: Numbers of trials already reduced to logs; updated here, so a long study does
            not walk every old folder again after each trial.
        runs_dir: The study folder: a recorded folder outside it is never touched (the folders
            come from the study's database, which must not choose what is deleted).
        log: Told of each folder left alone.
    """
    reduced = set() if reduced is None else reduced
    if keep_runs == KEEP_ALL:
        return 0
    if keep_runs == KEEP_LOGS:
        trials = [finished] if finished is not None else study.get_trials(deepcopy=False)
    else:
        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        complete = [t for t in done if t.state == TrialState.COMPLETE and t.value is not None]
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        complete.sort(key=lambda t: t.value, reverse=maximize)  # type: ignore[arg-type, return-value]
        best = {t.number for t in complete[: int(keep_runs)]}
        trials = [t for t in done if t.number not in best]
    freed = 0
    for trial in trials:
        if trial.number in reduced:
            continue
        reduced.add(trial.number)
        for exp in trial.user_attrs.get(_attrs.EXPERIMENTS) or []:
            run_dir = exp.get("run_dir") if isinstance(exp, dict) else None
            if not isinstance(run_dir, str) or runs_dir is None or not inside(run_dir, runs_dir):
                if log is not None:
                    log(
                        f"retention: trial {trial.number} records the folder {run_dir!r}, "
                        f"outside the study folder {runs_dir}: left alone"
                    )
                continue
            freed += reduce_to_logs(Path(run_dir))
    return freed
