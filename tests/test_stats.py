"""nbtune._stats against rliable itself (Agarwal et al., NeurIPS 2021) on a fixed score matrix.

The reference numbers below were computed once with rliable 1.2.0 (arch 7.2.0, scipy 1.17.1,
numpy 2.4.6, 50,000 resamples, ``np.random.seed(0)``) by::

    python tests/scripts/rliable_reference.py

rliable is not a dependency of nbtune or of its tests: the numbers are pasted here. Point
estimates and probabilities of improvement must match to rounding; bootstrap interval ends come
from different random resamples (rliable draws from numpy's global RandomState, nbtune from a
seeded Generator), so they must agree within 0.005, several times the Monte Carlo error of a
percentile over 50,000 resamples of these matrices (the largest difference seen was 0.0015).
"""

from __future__ import annotations

import numpy as np
import pytest

from nbtune import _stats
from nbtune._errors import ConfigError

# Runs (seeds) x tasks (environments), from tests/scripts/rliable_reference.py.
SCORES = {
    "a": [
        [0.79, 0.55], [0.74, 0.69], [0.8, 0.56], [0.8, 0.39], [0.73, 0.48],
        [0.84, 0.57], [0.88, 0.63], [0.7, 0.61], [0.74, 0.59], [0.82, 0.54],
    ],
    "b": [
        [0.9, 0.61], [0.78, 0.37], [0.71, 0.47], [0.92, 0.93], [0.79, 0.25],
        [0.6, 0.72], [0.64, 0.99], [0.55, 0.71], [0.78, 0.5], [0.71, 0.49],
    ],
    "c": [[0.74, 0.61], [0.7, 0.61], [0.79, 0.7], [0.71, 0.63], [0.66, 0.68], [0.68, 0.65],
          [0.67, 0.7]],
}  # fmt: skip
# rliable: (point estimate, 95% CI low, 95% CI high) of metrics.aggregate_iqm / aggregate_mean
# with library.get_interval_estimates(reps=50000).
RLIABLE_IQM = {
    "a": (0.679, 0.651, 0.711),
    "b": (0.681, 0.5960000000000001, 0.773),
    "c": (0.6799999999999999, 0.6575, 0.7),
}
RLIABLE_MEAN = {
    "a": (0.6725, 0.6420000000000001, 0.7010000000000001),
    "b": (0.6709999999999999, 0.595, 0.7510000000000001),
    "c": (0.6807142857142857, 0.6607142857142858, 0.7021428571428572),
}
# rliable: metrics.probability_of_improvement(SCORES[x], SCORES[y]).
RLIABLE_POI = {
    ("a", "b"): 0.565,
    ("a", "c"): 0.49642857142857144,
    ("b", "a"): 0.435,
    ("b", "c"): 0.5035714285714286,
    ("c", "a"): 0.5035714285714286,
    ("c", "b"): 0.49642857142857144,
}
CI_TOLERANCE = 0.005


@pytest.mark.parametrize("statistic", ["iqm", "mean"])
@pytest.mark.parametrize("name", sorted(SCORES))
def test_point_estimates_and_intervals_match_rliable(statistic, name):
    expected = (RLIABLE_IQM if statistic == "iqm" else RLIABLE_MEAN)[name]
    got = _stats.estimate(SCORES[name], statistic)
    assert got.value == pytest.approx(expected[0], abs=1e-12)
    assert got.low == pytest.approx(expected[1], abs=CI_TOLERANCE)
    assert got.high == pytest.approx(expected[2], abs=CI_TOLERANCE)


@pytest.mark.parametrize(("x", "y"), sorted(RLIABLE_POI))
def test_probability_of_improvement_matches_rliable(x, y):
    got = _stats.probability_of_improvement(SCORES[x], SCORES[y])
    assert got == pytest.approx(RLIABLE_POI[(x, y)], abs=1e-12)


def test_the_bootstrap_resamples_runs_within_each_task():
    # Task 0 holds only 0s and task 1 only 1s: a resample that mixed tasks would move the mean.
    scores = np.array([[0.0, 1.0]] * 5)
    assert _stats.bootstrap_ci(scores, "mean", reps=500) == (0.5, 0.5)
    # Within a task, the runs are resampled: different runs give an interval around the mean.
    runs = np.array([[0.0], [1.0], [2.0], [3.0]])
    low, high = _stats.bootstrap_ci(runs, "mean", reps=2000)
    assert 0.0 < low < 1.5 < high < 3.0


def test_the_bootstrap_is_deterministic_given_its_seed():
    a = _stats.bootstrap_ci(SCORES["b"], reps=1000, seed=3)
    assert a == _stats.bootstrap_ci(SCORES["b"], reps=1000, seed=3)
    assert a != _stats.bootstrap_ci(SCORES["b"], reps=1000, seed=4)


def test_bad_input_is_refused():
    with pytest.raises(ConfigError, match="finite"):
        _stats.iqm([[0.5, float("nan")]])
    with pytest.raises(ConfigError, match="non-empty"):
        _stats.iqm([])
    with pytest.raises(ConfigError, match="statistic"):
        _stats.bootstrap_ci([[1.0]], "median")
    with pytest.raises(ConfigError, match="tasks"):
        _stats.probability_of_improvement([[1.0, 2.0]], [[1.0]])


def test_the_interquartile_mean_is_the_one_used_for_trial_values():
    from nbtune._scoring import interquartile_mean

    pooled = np.asarray(SCORES["c"]).ravel()
    assert _stats.iqm(SCORES["c"]) == interquartile_mean(pooled)
