import warnings

import optuna
import pytest

from nbtune._space import Param, SearchSpace, record_space


def test_record_space_of_the_seed_params_fn():
    space, why = record_space(
        lambda trial: {
            "learning-rate": trial.suggest_loguniform("learning-rate", 0.0003, 0.003),
            "num-minibatches": trial.suggest_categorical("num-minibatches", [1, 2, 4]),
            "vf-coef": trial.suggest_uniform("vf-coef", 0, 5),
            "clip": trial.suggest_discrete_uniform("clip", 0.1, 0.3, 0.1),
            "epochs": trial.suggest_int("epochs", 1, 8, log=True),
            "total-timesteps": 100000,
            "anneal-lr": False,
        }
    )
    assert why == ""
    assert space.to_dict() == {
        "learning-rate": {"type": "float", "low": 0.0003, "high": 0.003, "log": True},
        "num-minibatches": {"type": "categorical", "choices": [1, 2, 4]},
        "vf-coef": {"type": "float", "low": 0.0, "high": 5.0},
        "clip": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
        "epochs": {"type": "int", "low": 1, "high": 8, "log": True},
        "total-timesteps": 100000,
        "anneal-lr": False,
    }
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_flag_names_may_differ_from_parameter_names():
    space, _ = record_space(lambda t: {"lr": t.suggest_float("learning_rate", 1e-4, 1e-2)})
    assert space.to_dict() == {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "name": "learning_rate"}
    }
    trial = optuna.create_study().ask()
    params = space(trial)
    assert params["lr"] == trial.params["learning_rate"]


@pytest.mark.parametrize(
    ("params_fn", "words"),
    [
        (lambda t: {"a": 1 if t.suggest_categorical("opt", ["x", "y"]) == "x" else 2}, "'opt'"),
        (lambda t: {"bs": 2 ** t.suggest_int("k", 1, 4)}, "'k'"),
        (lambda t: {"name": f"run-{t.suggest_int('k', 1, 4)}"}, "'k'"),
        (lambda t: {"lr": t.suggest_float("lr", 1e-4, 1e-2), "x": t.number * 2}, "trial.number"),
        (lambda t: {"hidden": [t.suggest_int("h", 8, 64), 64]}, "not a plain value"),
        (lambda t: (t.suggest_int("k", 1, 2), t.suggest_int("j", 1, 2)) and {"k": 1}, "'k'"),
    ],
)
def test_conditional_or_derived_spaces_are_not_declarative(params_fn, words):
    space, why = record_space(params_fn)
    assert space is None
    assert why
    assert words in why


def test_trial_number_is_not_declarative():
    space, why = record_space(lambda t: {"seed-offset": t.number})
    assert space is None
    assert "trial.number" in why


def test_sampling_a_space_gives_valid_values():
    space = SearchSpace(
        {
            "lr": Param("lr", "float", 1e-4, 1e-2, log=True),
            "n": Param("n", "int", 2, 64, step=2),
            "opt": Param("opt", "categorical", choices=("adam", "sgd")),
            "fixed": 7,
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = space(trial)
        assert 1e-4 <= params["lr"] <= 1e-2
        assert params["n"] % 2 == 0 and 2 <= params["n"] <= 64
        assert params["opt"] in ("adam", "sgd")
        assert params["fixed"] == 7
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"lr": {"type": "float", "low": 1, "high": 0}}, "must not exceed"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
        ({"opt": {"type": "categorical", "choices": []}}, "at least one choice"),
        ({"n": {"type": "int", "low": 1.5, "high": 3}}, "whole numbers"),
        ({"x": {"type": "normal", "low": 0, "high": 1}}, "type must be"),
        ({"x": {"low": 0, "high": 1}}, "without 'type'"),
        ({"x": {"type": "float", "low": 0}}, "missing 'high'"),
        ({"x": {"type": "float", "low": 0, "high": 1, "lgo": True}}, "unknown field"),
        (
            {
                "a": {"type": "int", "low": 0, "high": 1, "name": "k"},
                "b": {"type": "int", "low": 0, "high": 1, "name": "k"},
            },
            "both sample",
        ),
    ],
)
def test_bad_spaces_name_the_problem(data, words):
    with pytest.raises(ValueError) as info:
        SearchSpace.from_dict(data)
    assert words in str(info.value)


def test_deprecated_suggest_spellings_warn_nothing_through_the_tuner_trial():
    from nbtune._space import RecordingTrial

    study = optuna.create_study()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = RecordingTrial(study.ask())
        assert 0 <= rec.suggest_uniform("a", 0, 1) <= 1
        assert 1e-3 <= rec.suggest_loguniform("b", 1e-3, 1) <= 1
        assert rec.suggest_discrete_uniform("c", 0, 1, 0.5) in (0, 0.5, 1)
