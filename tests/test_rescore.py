import optuna
import pytest
from optuna.trial import TrialState

import nbtune
from nbtune._rescore import PARENT, fork_study


def test_a_fork_rescores_every_finished_trial_exactly(make_tuner):
    tuner = make_tuner(
        n_slots=2,
        params_fn=lambda t: {
            "learning-rate": t.suggest_float("learning-rate", 1e-5, 1e-1, log=True),
            "total-timesteps": 1000,
            "mode": "crash" if t.number == 2 else "ok",
        },
        max_consecutive_failures=None,
        pruner=optuna.pruners.NopPruner(),
    )
    tuner.tune(num_trials=4, num_seeds=2)
    parent = tuner.study
    # Doubling EnvA's range halves its normalized score; "min" now picks it.
    fork = fork_study(
        parent, target_scores={"EnvA": [0, 200], "EnvB": [-100, 0]}, aggregation_type="min"
    )
    assert fork.study_name == "test.r1"
    assert fork.user_attrs[PARENT] == "test"
    assert fork.user_attrs["nbtune:total_trials"] == parent.user_attrs["nbtune:total_trials"]
    assert len(fork.trials) == 4
    for old, new in zip(parent.trials, fork.trials, strict=True):
        assert new.system_attrs["nbtune:forked_from"] == old.number
        assert new.params == old.params
        if old.state == TrialState.FAIL:
            assert new.state == TrialState.FAIL
            assert new.user_attrs["fail_reason"] == old.user_attrs["fail_reason"]
            continue
        raw = old.user_attrs["raw_scores"]
        expected = sum(min(raw["EnvA"][s] / 200, (raw["EnvB"][s] + 100) / 100) for s in (0, 1)) / 2
        assert new.value == pytest.approx(expected)
        assert new.user_attrs["normalized_scores"]["EnvA"] == [x / 200 for x in raw["EnvA"]]
        assert set(new.intermediate_values) == set(old.intermediate_values)
        assert new.intermediate_values[max(new.intermediate_values)] == pytest.approx(new.value)
    assert '"aggregation": "min"' in fork.user_attrs["nbtune:spec"]
    assert fork_study(parent).study_name == "test.r2"


def test_fork_refuses_environments_that_never_ran(make_tuner):
    tuner = make_tuner(target_scores={"EnvA": [0, 100]})
    tuner.tune(num_trials=1, num_seeds=1)
    with pytest.raises(ValueError, match="were not run"):
        fork_study(tuner.study, target_scores={"EnvA": [0, 100], "EnvC": [0, 1]})
    with pytest.raises(ValueError, match="low == high"):
        fork_study(tuner.study, target_scores={"EnvA": [1, 1]})


def test_trials_pruned_before_any_seed_ended_are_rescored_from_their_checkpoints(make_tuner):
    """Pruned mid-seed, a trial has no raw scores: its checkpoint scores still re-score it."""
    tuner = make_tuner(
        params_fn={"learning-rate": 1e-3, "total-timesteps": 2000, "log-sleep": 0.2},
        # Every report is under 2.0: each trial is pruned at its first checkpoint.
        pruner=optuna.pruners.ThresholdPruner(lower=2.0),
        n_slots=2,
        checkpoints=4,
    )
    with pytest.raises(nbtune.TuningError, match="no trial of study 'test' has completed"):
        tuner.tune(num_trials=2, num_seeds=2)
    parent = tuner.study
    assert [t.state for t in parent.trials] == [TrialState.PRUNED] * 2
    assert all("raw_scores" not in t.user_attrs for t in parent.trials)
    fork = fork_study(parent, target_scores={"EnvA": [0, 50], "EnvB": [-100, 0]})
    assert [t.state for t in fork.trials] == [TrialState.PRUNED] * 2
    assert "nbtune:not_rescored" not in fork.user_attrs
    for old, new in zip(parent.trials, fork.trials, strict=True):
        assert new.system_attrs["nbtune:forked_from"] == old.number
        assert set(new.intermediate_values) == set(old.intermediate_values)
        (step,) = old.intermediate_values
        scores = old.user_attrs["checkpoint_scores"][str(step)]
        expected = (scores["EnvA"] / 50 + (scores["EnvB"] + 100) / 100) / 2
        assert new.intermediate_values[step] == pytest.approx(expected)


def test_a_trial_without_any_score_is_named_in_the_fork(make_tuner):
    tuner = make_tuner(target_scores={"EnvA": [0, 100]})
    tuner.tune(num_trials=1, num_seeds=1)
    parent = tuner.study
    parent.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))  # pruned at once
    fork = fork_study(parent, target_scores={"EnvA": [0, 50]})
    assert len(fork.trials) == 1
    assert fork.user_attrs["nbtune:not_rescored"] == {
        "1": "it was pruned before any score was recorded (no raw or checkpoint scores)"
    }
