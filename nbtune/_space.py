"""Search spaces: what ``params_fn`` samples, seen through a recording trial.

A CleanRL-style ``params_fn(trial) -> dict`` mixes sampled values (``trial.suggest_*``) and fixed
ones (``"total-timesteps": 100000``). :class:`RecordingTrial` hands ``params_fn`` the real Optuna
trial, keeps the deprecated ``suggest_uniform``/``suggest_loguniform``/``suggest_discrete_uniform``
spellings of the seed's examples working (without Optuna's deprecation warnings), and records
each call's distribution so the declarative form of the space can be stored with the study.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

ParamsFn = Callable[[Any], Mapping[str, Any]]


class RecordingTrial:
    """An Optuna trial as ``params_fn`` sees it, recording each ``suggest_*`` call.

    Every attribute of the wrapped trial is available (``number``, ``set_user_attr``, ...).

    Args:
        trial: The trial to sample from.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> rec = RecordingTrial(study.ask())
        >>> rec.suggest_loguniform("learning-rate", 1e-4, 1e-2) > 0
        True
        >>> sorted(rec.distributions)
        ['learning-rate']

    """

    def __init__(self, trial: optuna.Trial) -> None:
        self._trial = trial
        self.distributions: dict[str, BaseDistribution] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """Sample a float, as :meth:`optuna.Trial.suggest_float`."""
        value = self._trial.suggest_float(name, low, high, step=step, log=log)
        self.distributions[name] = FloatDistribution(low, high, step=step, log=log)
        return value

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        """Sample an integer, as :meth:`optuna.Trial.suggest_int`."""
        value = self._trial.suggest_int(name, low, high, step=step, log=log)
        self.distributions[name] = IntDistribution(low, high, step=step, log=log)
        return value

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType]
    ) -> CategoricalChoiceType:
        """Sample one of ``choices``, as :meth:`optuna.Trial.suggest_categorical`."""
        value = self._trial.suggest_categorical(name, choices)
        self.distributions[name] = CategoricalDistribution(choices)
        return value

    def suggest_uniform(self, name: str, low: float, high: float) -> float:
        """Optuna 2's spelling of ``suggest_float(name, low, high)``, used by CleanRL's examples."""
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name: str, low: float, high: float) -> float:
        """Optuna 2's spelling of ``suggest_float(name, low, high, log=True)``."""
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name: str, low: float, high: float, q: float) -> float:
        """Optuna 2's spelling of ``suggest_float(name, low, high, step=q)``."""
        return self.suggest_float(name, low, high, step=q)


def sample_params(
    params_fn: ParamsFn, trial: optuna.Trial
) -> tuple[dict[str, Any], RecordingTrial]:
    """Call ``params_fn`` on a recording view of ``trial`` and check what it returns.

    Returns:
        The parameters (flag name to value, in the order ``params_fn`` gave them) and the
        recording trial.

    Raises:
        TypeError: If ``params_fn`` does not return a dict with string keys.

    """
    recording = RecordingTrial(trial)
    params = params_fn(recording)
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params_fn must return a dict of flag name to value, got {type(params).__name__}."
        )
    bad = [k for k in params if not isinstance(k, str)]
    if bad:
        raise TypeError(f"params_fn returned non-string keys {bad!r}; use flag names as keys.")
    return dict(params), recording
