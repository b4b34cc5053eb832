"""Statistics over runs the way RL papers are expected to report them, with numpy only.

These follow Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical
Precipice" (NeurIPS 2021) and their library ``rliable``, on a score matrix of shape
``(runs, tasks)``: for nbtune, one row per seed and one column per environment, each cell a
normalized score.

* :func:`iqm`: the interquartile mean of every (run, task) score pooled (``rliable``'s
  ``aggregate_iqm``: ``scipy.stats.trim_mean(scores, 0.25, axis=None)``);
* :func:`mean`: the mean over tasks of each task's mean over runs (``aggregate_mean``);
* :func:`bootstrap_ci`: a percentile confidence interval from a *stratified* bootstrap, where
  each resample draws, within every task, as many runs as it has, with replacement (``rliable``'s
  ``StratifiedBootstrap`` with ``get_interval_estimates``' defaults: 50,000 resamples, 95%);
* :func:`probability_of_improvement`: P(X > Y), per task the Mann-Whitney U statistic of X's runs
  against Y's divided by the number of pairs (ties count one half), averaged over tasks.

``tests/test_stats.py`` checks these numbers against ``rliable`` itself on a fixed matrix.

Example:
    >>> import numpy as np
    >>> scores = np.array([[0.9, 0.5], [0.7, 0.6], [0.8, 0.4], [1.0, 0.55]])
    >>> round(iqm(scores), 4), round(mean(scores), 4)
    (0.6625, 0.6813)
    >>> low, high = bootstrap_ci(scores, "iqm", reps=2000, seed=0)
    >>> bool(low <= iqm(scores) <= high)
    True
    >>> probability_of_improvement(scores, scores - 0.05)
    0.671875
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nbtune._errors import ConfigError

__all__ = [
    "DEFAULT_REPS",
    "Estimate",
    "bootstrap_ci",
    "estimate",
    "iqm",
    "mean",
    "probability_of_improvement",
    "score_matrix",
]

#: Bootstrap resamples, as ``rliable.library.get_interval_estimates`` by default.
DEFAULT_REPS = 50_000
#: Resamples computed at once (bounds the memory of a bootstrap to a few tens of MiB).
_CHUNK = 10_000


def score_matrix(scores: Any) -> np.ndarray:
    """A ``(runs, tasks)`` float matrix of finite scores; a 1-D input is one task.

    Raises:
        ConfigError: For an empty matrix or a score that is not finite.
    """
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ConfigError(f"scores must be a non-empty (runs, tasks) matrix; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ConfigError("scores must be finite numbers (a run without a score cannot count)")
    return x


def _iqm_many(samples: np.ndarray) -> np.ndarray:
    """IQM of each resample: ``samples`` has shape ``(..., runs, tasks)``."""
    flat = np.sort(samples.reshape(*samples.shape[:-2], -1), axis=-1)
    n = flat.shape[-1]
    cut = int(0.25 * n)  # as scipy.stats.trim_mean: int(proportiontocut * n) from each end
    return flat[..., cut : n - cut].mean(axis=-1)


def _mean_many(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=-2).mean(axis=-1)


_STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": _iqm_many,
    "mean": _mean_many,
}


def _statistic(name: str) -> Callable[[np.ndarray], np.ndarray]:
    try:
        return _STATISTICS[name]
    except KeyError:
        raise ConfigError(
            f"statistic must be one of {', '.join(_STATISTICS)}; got {name!r}"
        ) from None


def iqm(scores: Any) -> float:
    """Interquartile mean of all (run, task) scores pooled.

    Example:
        >>> iqm([[0.0, 1.0], [2.0, 3.0], [4.0, 100.0], [-50.0, 5.0]])
        2.5
    """
    return float(_iqm_many(score_matrix(scores)))


def mean(scores: Any) -> float:
    """Mean over tasks of each task's mean over runs.

    Example:
        >>> mean([[0.2, 0.4], [0.6, 0.8]])
        0.5
    """
    return float(_mean_many(score_matrix(scores)))


def bootstrap_ci(
    scores: Any,
    statistic: str = "iqm",
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile confidence interval of ``statistic`` from a stratified bootstrap.

    Each of ``reps`` resamples draws, for every task (column) separately, as many runs as the
    task has, with replacement; the interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` percentiles of the statistic over the resamples (linear
    interpolation, as ``numpy.percentile``). The result depends only on ``scores`` and ``seed``.

    Args:
        scores: The ``(runs, tasks)`` matrix.
        statistic: ``"iqm"`` or ``"mean"``.
        reps: Resamples.
        confidence: The interval's coverage, in (0, 1).
        seed: Seed of the ``numpy.random.Generator`` that draws the resamples.

    Returns:
        ``(low, high)``.

    Example:
        >>> bootstrap_ci([[0.5, 0.5], [0.5, 0.5]], "mean", reps=100)
        (0.5, 0.5)
    """
    x = score_matrix(scores)
    func = _statistic(statistic)
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps must be a whole number >= 1; got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1); got {confidence!r}")
    runs, tasks = x.shape
    rng = np.random.default_rng(seed)
    columns = np.arange(tasks)
    values = np.empty(reps)
    for start in range(0, reps, _CHUNK):
        n = min(_CHUNK, reps - start)
        rows = rng.integers(0, runs, size=(n, runs, tasks))
        values[start : start + n] = func(x[rows, columns])
    alpha = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [alpha, 100.0 - alpha])
    return float(low), float(high)


def probability_of_improvement(x: Any, y: Any) -> float:
    """P(X > Y): how likely a run of X beats a run of Y on a task, averaged over tasks.

    Per task, the Mann-Whitney U statistic of X's runs against Y's (pairs where X's score is
    higher, plus half the ties) divided by the number of pairs; identical columns give 0.5. X and
    Y need the same tasks (columns), not the same number of runs.

    Example:
        >>> probability_of_improvement([[1.0], [2.0]], [[0.0], [1.0]])
        0.875
    """
    a, b = score_matrix(x), score_matrix(y)
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"X has {a.shape[1]} tasks and Y {b.shape[1]}: they must match")
    per_task = []
    for task in range(a.shape[1]):
        xa, yb = a[:, task], b[:, task]
        if xa.shape == yb.shape and np.array_equal(xa, yb):
            per_task.append(0.5)
            continue
        greater = (xa[:, None] > yb[None, :]).sum()
        ties = (xa[:, None] == yb[None, :]).sum()
        per_task.append((greater + 0.5 * ties) / (xa.size * yb.size))
    return float(np.mean(per_task))


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval.

    Attributes:
        value: The statistic on the scores.
        low: Lower end of the interval.
        high: Upper end of the interval.
    """

    value: float
    low: float
    high: float

    def overlaps(self, other: Estimate) -> bool:
        """Whether the two intervals share any point."""
        return self.low <= other.high and other.low <= self.high

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def estimate(
    scores: Any,
    statistic: str = "iqm",
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """The statistic with its stratified bootstrap interval (see :func:`bootstrap_ci`).

    Example:
        >>> str(estimate([[0.5, 0.5], [0.5, 0.5]], "iqm", reps=10))
        '0.500 [0.500, 0.500]'
    """
    x = score_matrix(scores)
    value = float(_statistic(statistic)(x))
    low, high = bootstrap_ci(x, statistic, reps=reps, confidence=confidence, seed=seed)
    return Estimate(value, low, high)
