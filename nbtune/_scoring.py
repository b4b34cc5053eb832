"""Normalizing and aggregating scores across environments and seeds.

The semantics follow CleanRL's tuner documentation: per seed, each environment's score (the mean
of the metric's last N points) is normalized with its target range ``[low, high]`` as
``(x - low) / (high - low)``; the normalized scores are aggregated across environments; the
trial's value is the mean over seeds of those aggregates. ``"iqm"`` instead pools every
(environment, seed) normalized score and takes their interquartile mean, as rliable does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias

import numpy as np

from nbtune._errors import ConfigError

Aggregation: TypeAlias = Literal["average", "median", "max", "min", "iqm"]
AGGREGATIONS: tuple[str, ...] = ("average", "median", "max", "min", "iqm")

#: Target scores: per environment a ``[low, high]`` pair, or ``None`` to use the raw metric.
TargetScores: TypeAlias = Mapping[str, "Sequence[float] | None"]


def check_target_scores(target_scores: object) -> dict[str, tuple[float, float] | None]:
    """Validate target scores and return them as ``{env_id: (low, high) | None}``.

    Args:
        target_scores: Mapping of environment id to ``[low, high]`` or ``None``.

    Returns:
        A new dict with tuples of floats.

    Raises:
        ValueError: On an empty mapping, a pair that is not two finite numbers, ``low == high``
            (see :func:`check_target`),
            or a ``None`` target beside other environments.

    Example:
        >>> check_target_scores({"CartPole-v1": [0, 500]})
        {'CartPole-v1': (0.0, 500.0)}

    """
    if not isinstance(target_scores, Mapping) or not target_scores:
        raise ConfigError(
            "target_scores must be a non-empty dict of environment id to [low, high] "
            f"(or None for a single environment), got {target_scores!r}."
        )
    checked: dict[str, tuple[float, float] | None] = {}
    for env_id, target in target_scores.items():
        if not isinstance(env_id, str) or not env_id:
            raise ConfigError(
                f"target_scores: environment ids must be non-empty strings, got {env_id!r}."
            )
        if target is None:
            checked[env_id] = None
            continue
        checked[env_id] = check_target(env_id, target)
    if len(checked) > 1 and any(t is None for t in checked.values()):
        missing = [env for env, t in checked.items() if t is None]
        raise ConfigError(
            f"target_scores: {missing} have no target (None), which is allowed only with a single "
            "environment: raw scores of different environments have different scales. "
            "Give every environment a [low, high] range."
        )
    return checked


def check_target(env_id: str, target: object) -> tuple[float, float]:
    """Validate one environment's ``[low, high]``: two finite, different numbers.

    ``low > high`` is allowed: it normalizes a metric where lower is better (a loss, a time).
    This is the one rule, used by the Tuner, config files, the CLI and the widget's editor.

    Example:
        >>> check_target("Pendulum-v1", [-1500, -150])
        (-1500.0, -150.0)
        >>> check_target("loss", [2.0, 0.1])  # lower is better
        (2.0, 0.1)
    """
    if isinstance(target, (str, bytes)) or not isinstance(target, Sequence) or len(target) != 2:
        raise ConfigError(
            f"target_scores[{env_id!r}] must be a pair [low, high] or None, got {target!r}."
        )
    try:
        low, high = float(target[0]), float(target[1])
    except (TypeError, ValueError):
        raise ConfigError(
            f"target_scores[{env_id!r}] must hold two numbers, got {target!r}."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"target_scores[{env_id!r}] must be finite, got {target!r}.")
    if low == high:
        raise ConfigError(
            f"target_scores[{env_id!r}] has low == high == {low}: the normalized score "
            "(x - low) / (high - low) would divide by zero. Give two different numbers, "
            "for example the score of a random policy and of a good one."
        )
    return (low, high)


def check_aggregation(aggregation: object) -> Aggregation:
    """Validate an aggregation name.

    Raises:
        ValueError: If the name is not one of ``average``, ``median``, ``max``, ``min``, ``iqm``.

    """
    if aggregation not in AGGREGATIONS:
        raise ConfigError(
            f"aggregation_type must be one of {', '.join(AGGREGATIONS)}; got {aggregation!r}."
        )
    return aggregation  # type: ignore[return-value]


def normalize(raw: float, target: tuple[float, float] | None) -> float:
    """Normalize a raw score with a target range; ``None`` keeps the raw score.

    Example:
        >>> normalize(250.0, (0.0, 500.0))
        0.5
        >>> normalize(-100.0, (-500.0, 0.0))
        0.8

    """
    if target is None:
        return float(raw)
    low, high = target
    return (float(raw) - low) / (high - low)


def interquartile_mean(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50%, as ``scipy.stats.trim_mean(x, 0.25)``.

    This is the statistic rliable reports as IQM: ``int(0.25 * n)`` values are cut from each end
    of the sorted values.

    Example:
        >>> interquartile_mean([0.0, 1.0, 2.0, 3.0, 100.0, -50.0, 4.0, 5.0])
        2.5

    """
    x = np.sort(np.asarray(values, dtype=float))
    if x.size == 0:
        raise ConfigError("interquartile_mean of no values")
    cut = int(0.25 * x.size)
    return float(np.mean(x[cut : x.size - cut]))


def aggregate(values: Sequence[float], aggregation: Aggregation) -> float:
    """Aggregate normalized scores of several environments with one named function.

    Example:
        >>> aggregate([0.2, 0.4, 0.9], "median")
        0.4

    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ConfigError("aggregate of no values")
    if aggregation == "average":
        return float(np.mean(x))
    if aggregation == "median":
        return float(np.median(x))
    if aggregation == "max":
        return float(np.max(x))
    if aggregation == "min":
        return float(np.min(x))
    if aggregation == "iqm":
        return interquartile_mean(x)
    raise ConfigError(f"unknown aggregation {aggregation!r}")


def trial_value(
    normalized: Mapping[str, Sequence[float | None]],
    aggregation: Aggregation,
    seed_indices: Sequence[int] | None = None,
) -> float | None:
    """The value a trial optimizes, from its normalized scores per environment and seed.

    Args:
        normalized: ``{env_id: [score of seed 0, score of seed 1, ...]}``; ``None`` marks a score
            not known yet.
        aggregation: How environments are combined.
        seed_indices: Which seeds to use; by default every seed that has a score in every
            environment (the seeds that are complete).

    Returns:
        For ``average``/``median``/``max``/``min``: the mean over seeds of the per-seed aggregate
        across environments. For ``iqm``: the interquartile mean of all (environment, seed)
        scores pooled. ``None`` when no seed is complete.

    Example:
        >>> trial_value({"a": [0.2, 0.4], "b": [0.6, 0.8]}, "average")
        0.5
        >>> trial_value({"a": [0.2, None], "b": [0.6, 0.8]}, "min")
        0.2

    """
    envs = list(normalized)
    if not envs:
        return None
    n_seeds = max(len(v) for v in normalized.values())
    if seed_indices is None:
        seed_indices = [
            s
            for s in range(n_seeds)
            if all(s < len(normalized[e]) and normalized[e][s] is not None for e in envs)
        ]
    if not seed_indices:
        return None
    if aggregation == "iqm":
        pooled = [float(normalized[e][s]) for s in seed_indices for e in envs]  # type: ignore[arg-type]
        return interquartile_mean(pooled)
    per_seed = [
        aggregate([float(normalized[e][s]) for e in envs], aggregation)  # type: ignore[arg-type]
        for s in seed_indices
    ]
    return float(np.mean(per_seed))


def normalize_all(
    raw: Mapping[str, Sequence[float | None]],
    targets: Mapping[str, tuple[float, float] | None],
) -> dict[str, list[float | None]]:
    """Normalize every raw score with its environment's target (``None`` stays ``None``).

    Example:
        >>> normalize_all({"CartPole-v1": [250.0, None]}, {"CartPole-v1": (0.0, 500.0)})
        {'CartPole-v1': [0.5, None]}

    """
    return {
        env: [None if x is None else normalize(x, targets[env]) for x in scores]
        for env, scores in raw.items()
    }
