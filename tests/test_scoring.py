import math

import numpy as np
import pytest

from nbtune._scoring import (
    aggregate,
    check_aggregation,
    check_target_scores,
    interquartile_mean,
    normalize,
    trial_value,
)


def test_normalize_follows_the_seed_formula():
    assert normalize(250, (0, 500)) == 0.5
    assert normalize(-86, (-500, 0)) == pytest.approx(414 / 500)
    assert normalize(600, (0, 500)) == 1.2  # scores beyond the target are not clipped
    assert normalize(123.5, None) == 123.5  # None target: the raw metric


@pytest.mark.parametrize(
    ("name", "odd", "even"),
    [("average", 0.5, 0.5), ("median", 0.4, 0.45), ("max", 0.9, 0.9), ("min", 0.2, 0.2)],
)
def test_aggregations(name, odd, even):
    assert aggregate([0.2, 0.4, 0.9], name) == pytest.approx(odd)
    assert aggregate([0.2, 0.4, 0.9, 0.5], name) == pytest.approx(even)


def test_iqm_matches_trim_mean_definition():
    # rliable's IQM is scipy.stats.trim_mean(x, 0.25): int(0.25 n) cut from each sorted end.
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7]) == pytest.approx(np.mean([2, 3, 4, 5, 6]))
    assert interquartile_mean([5.0]) == 5.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=37)
    cut = int(0.25 * 37)
    assert interquartile_mean(x) == pytest.approx(np.sort(x)[cut : 37 - cut].mean())


def test_trial_value_averages_per_seed_aggregates():
    normalized = {"a": [0.1, 0.5, 0.9], "b": [0.3, 0.7, 0.2]}
    # median over 2 envs is their mean; max/min differ from "aggregate of seed means"
    assert trial_value(normalized, "max") == pytest.approx(np.mean([0.3, 0.7, 0.9]))
    assert trial_value(normalized, "min") == pytest.approx(np.mean([0.1, 0.5, 0.2]))
    assert trial_value(normalized, "average") == pytest.approx(np.mean([0.2, 0.6, 0.55]))
    # iqm pools all 6 (env, seed) scores
    assert trial_value(normalized, "iqm") == pytest.approx(np.mean([0.2, 0.3, 0.5, 0.7]))


def test_trial_value_uses_complete_seeds_only():
    assert trial_value({"a": [0.1, None], "b": [0.3, 0.7]}, "average") == pytest.approx(0.2)
    assert trial_value({"a": [None], "b": [0.3]}, "average") is None
    assert trial_value({"a": [0.1, 0.5], "b": [0.3, 0.7]}, "average", seed_indices=[1]) == 0.6


def test_check_target_scores_accepts_lists_tuples_and_single_none():
    assert check_target_scores({"A": [0, 1], "B": (2.5, 3)}) == {"A": (0.0, 1.0), "B": (2.5, 3.0)}
    assert check_target_scores({"A": None}) == {"A": None}


@pytest.mark.parametrize(
    ("targets", "words"),
    [
        ({"A": [1, 1]}, "low == high"),
        ({"A": None, "B": [0, 1]}, "single environment"),
        ({"A": [0]}, "pair"),
        ({"A": ["x", 1]}, "two numbers"),
        ({"A": [0, math.inf]}, "finite"),
        ({}, "non-empty"),
    ],
)
def test_check_target_scores_names_the_problem(targets, words):
    with pytest.raises(ValueError, match="target_scores") as info:
        check_target_scores(targets)
    assert words in str(info.value)


def test_unknown_aggregation():
    with pytest.raises(ValueError, match="aggregation_type must be one of average, median"):
        check_aggregation("mean")
