"""What nbtune prints at the end of a study, and keeping Optuna's log lines out of it.

Shared by the Python path (:meth:`nbtune.Tuner.tune`) and the command line, so both print the
best trial once, in the same words, with scores rounded for reading.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nbtune import _attrs
from nbtune._results import trial_flags
from nbtune._spec import StudySpec

#: The words of a ``stall_warnings`` line that says the experiment wrote again.
WRITING_AGAIN = "writing again"


def stall_note(trial: FrozenTrial) -> str:
    """For a running trial that seems stuck, its last stall warning; else ``""``.

    The scheduler appends a line to the trial's ``stall_warnings`` when an experiment has
    written nothing for ``stall_warning`` seconds, and another (with "writing again") when it
    writes again: the last line tells the current state.

    Example:
        >>> from optuna.trial import TrialState, create_trial
        >>> t = create_trial(state=TrialState.RUNNING, user_attrs={"stall_warnings": ["x"]})
        >>> stall_note(t)
        'x'
    """
    lines = trial.user_attrs.get(_attrs.STALL_WARNINGS)
    if trial.state != optuna.trial.TrialState.RUNNING or not lines:
        return ""
    last = str(lines[-1])
    return "" if WRITING_AGAIN in last else last


def format_value(value: Any) -> str:
    """A value as printed for reading: floats to 4 significant digits, ``None`` as ``-``.

    Example:
        >>> format_value(0.41535999999999995)
        '0.4154'
        >>> format_value(None), format_value(4), format_value("a")
        ('-', '4', 'a')

    """
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plural(count: int, word: str) -> str:
    """``"1 seed"``, ``"3 seeds"``.

    Example:
        >>> plural(1, "seed"), plural(3, "seed")
        ('1 seed', '3 seeds')

    """
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def env_seed_hint(spec: StudySpec | None) -> str:
    """What a best configuration's command line lacks: ``add --env-id=ENV --seed=S``."""
    env_flag = spec.env_flag if spec is not None else "env-id"
    seed_flag = spec.seed_flag if spec is not None else "seed"
    return f"add --{env_flag}=ENV --{seed_flag}=S"


def best_summary(trial: FrozenTrial, spec: StudySpec | None) -> str:
    """The lines that end a study: the best trial's score, then its command line.

    Example:
        >>> import optuna
        >>> trial = optuna.trial.create_trial(
        ...     value=0.41535999999999995,
        ...     params={"learning-rate": 0.001},
        ...     distributions={"learning-rate": optuna.distributions.FloatDistribution(1e-4, 1e-2)},
        ... )
        >>> trial.number = 0
        >>> print(best_summary(trial, None))
        nbtune: best trial 0, score 0.4154; its command line (add --env-id=ENV --seed=S):
          python SCRIPT --learning-rate=0.001

    """
    return (
        f"nbtune: best trial {trial.number}, score {format_value(trial.value)}; "
        f"its command line ({env_seed_hint(spec)}):\n  {shlex.join(trial_flags(trial, spec))}"
    )


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Keep Optuna's INFO lines (``[I ...] A new study created``) out of nbtune's own output.

    Optuna's verbosity is lowered to WARNING for the duration and restored after, unless
    something else changed it meanwhile. A verbosity already at WARNING or above is left alone.
    """
    before = optuna.logging.get_verbosity()
    if before > logging.INFO:
        yield
        return
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        if optuna.logging.get_verbosity() == logging.WARNING:
            optuna.logging.set_verbosity(before)
