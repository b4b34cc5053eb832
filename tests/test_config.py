"""TunerConfig: every field reaches every path (Python, stored spec, worker, file, CLI flags)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from _support import TOY

import nbtune
from nbtune import __main__ as cli
from nbtune._config import MACHINE, PROCESS, STUDY, config_fields, field_names
from nbtune._spec import StudySpec
from nbtune._tuner import sign_stored_spec

SPACE = {
    "learning-rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "total-timesteps": 1000,
}

#: A value other than the default for every field. A new field without an entry here fails
#: test_every_field_has_a_test_value, so no field can miss the round trips below.
NON_DEFAULT: dict[str, Any] = {
    "script": str(TOY),
    "metric": "charts/other_return",
    "target_scores": {"EnvA": [0.0, 100.0], "EnvB": [0.0, -100.0]},  # lower is better
    "params_fn": SPACE,
    "direction": "minimize",
    "aggregation_type": "median",
    "metric_last_n_average_window": 7,
    "sampler": {"name": "RandomSampler", "kwargs": {}},
    "pruner": {"name": "MedianPruner", "kwargs": {"n_startup_trials": 3}},
    "storage": "STORAGE",  # filled in per test
    "study_name": "round-trip",
    "wandb_kwargs": {"project": "p"},
    "num_seeds": 3,
    "first_seed": 100,
    "interpreter": "/opt/other/python",
    "runs_dir": "RUNS",  # filled in per test
    "env": {"MY_VAR": "1"},
    "experiment_timeout": 77.0,
    "stall_warning": 33.0,
    "max_consecutive_failures": 9,
    "heartbeat_interval": 17,
    "env_flag": "env",
    "seed_flag": "random-seed",
    "keep_runs": 2,
    "n_slots": 3,
    "reporting": "seed",
    "checkpoints": 1,  # "seed" reporting has one checkpoint per seed
    "progress_flag": "num-steps",
    "slot_env": [{"CUDA_VISIBLE_DEVICES": "0"}],
    "cluster": "tcp://127.0.0.1:8786",  # never connected to: the study only records it
    "local_slots": 2,
    "memory_per_experiment": 12345,
    "progress_bar": False,
    "override_spec": True,
    "verbose": False,
}


def _values(tmp_path: Path) -> dict[str, Any]:
    values = dict(NON_DEFAULT)
    values["storage"] = f"sqlite:///{tmp_path / 'study.db'}"
    values["runs_dir"] = str(tmp_path / "runs")
    return values


def _python_config(values: dict[str, Any]) -> nbtune.TunerConfig:
    kwargs = dict(values)
    kwargs["sampler"] = optuna.samplers.RandomSampler()
    kwargs["pruner"] = optuna.pruners.MedianPruner(n_startup_trials=3)
    return nbtune.TunerConfig(**kwargs)


def _same(a: Any, b: Any) -> bool:
    """Equal as the study sees them (samplers and pruners by their recorded description)."""
    if isinstance(a, (optuna.samplers.BaseSampler, optuna.pruners.BasePruner)):
        from nbtune._spec import describe_component

        return describe_component(a) == describe_component(b)
    if isinstance(a, nbtune.SearchSpace):
        return a.to_dict() == b.to_dict()
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_every_field_has_a_test_value_that_differs_from_its_default():
    assert set(NON_DEFAULT) == field_names()
    for f in config_fields():
        if f.default is not dataclasses.MISSING:
            assert NON_DEFAULT[f.name] != f.default, f.name


def test_the_stored_spec_holds_exactly_the_stored_fields():
    stored = {f.metadata["stored"] for f in config_fields()} - {None}
    derived = {"space_note", "script_sha256", "version"}
    assert {f.name for f in dataclasses.fields(StudySpec)} == stored | derived
    for f in config_fields():
        assert (f.metadata["stored"] is None) == (f.metadata["scope"] == PROCESS), f.name


def test_every_field_survives_python_to_stored_spec_to_worker(tmp_path):
    config = _python_config(_values(tmp_path))
    tuner = nbtune.Tuner(config)
    tuner.study  # noqa: B018  (stores the spec)
    worker = nbtune.Tuner.from_study(config.storage, config.study_name)
    for f in config_fields():
        mine, theirs = getattr(config, f.name), getattr(worker.config, f.name)
        if f.metadata["scope"] in (STUDY, MACHINE):
            assert _same(mine, theirs), f.name
        elif f.name not in ("storage", "study_name"):
            # A process's own fields are not stored: the worker has its own defaults.
            assert _same(theirs, getattr(nbtune.TunerConfig(**_minimal()), f.name)) or (
                f.name == "n_slots"
            ), f.name
    assert worker.config.study_name == config.study_name


def _minimal() -> dict[str, Any]:
    return {
        "script": TOY,
        "metric": "m",
        "target_scores": {"EnvA": [0, 1]},
        "params_fn": SPACE,
        "study_name": "x",
    }


def test_a_worker_sets_its_machine_and_process_fields_by_flag(tmp_path):
    config = _python_config(_values(tmp_path))
    nbtune.Tuner(config).study  # noqa: B018
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "worker",
            "--storage",
            config.storage,
            "--study",
            config.study_name,
            "--interpreter",
            sys.executable,
            "--runs-dir",
            str(tmp_path / "here"),
            "--n-slots",
            "1",
        ]
    )
    overrides = cli.flag_values(args, cli._WORKER_SCOPES, exclude=cli._WORKER_OWN)
    worker = nbtune.Tuner.from_study(config.storage, config.study_name, **overrides)
    assert worker.config.interpreter == sys.executable
    assert worker.config.runs_dir == tmp_path / "here"
    assert worker.config.n_slots == 1
    assert worker.config.progress_flag == "num-steps"  # the study's, not the default


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def test_every_field_is_settable_from_a_config_file(tmp_path):
    values = _values(tmp_path)
    lines = []
    for name, value in values.items():
        key = "params" if name == "params_fn" else name
        lines.append(f"{key} = {_toml_value(value)}")
    file = tmp_path / "study.toml"
    file.write_text("\n".join(lines) + "\nnum_trials = 2\n")
    data = cli.load_config(file)
    tuner = cli.tuner_from_config(data, base=tmp_path)
    expected = _python_config(values)
    for f in config_fields():
        assert _same(getattr(expected, f.name), getattr(tuner.config, f.name)), f.name


def test_unknown_config_keys_name_the_closest_field(tmp_path):
    file = tmp_path / "study.toml"
    file.write_text(
        'script = "x.py"\nmetric = "m"\nparams = {}\nnum_slots = 2\n[target_scores]\nA = [0, 1]\n'
    )
    (tmp_path / "x.py").write_text("")
    with pytest.raises(nbtune.ConfigError, match=r"num_slots \(did you mean 'n_slots'\?\)"):
        cli.tuner_from_config(cli.load_config(file), base=tmp_path, source="study.toml")


def test_every_cli_field_is_a_tune_flag_that_overrides_the_file(tmp_path):
    values = _values(tmp_path)
    flags: list[str] = []
    given: dict[str, Any] = {}
    for f in config_fields():
        kind = f.metadata["cli"]
        if kind is None:
            continue
        value = values[f.name]
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
        given[f.name] = value
    args = cli.build_parser().parse_args(["tune", "study.toml", *flags])
    parsed = cli.flag_values(args, (STUDY, MACHINE, PROCESS))
    assert set(parsed) == set(given)
    for name, value in given.items():
        assert str(parsed[name]) == str(value), name
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["tune"].format_help()
    for name in given:
        assert "--" + name.replace("_", "-") in help_text


def test_replace_validates_and_keeps_the_storage(make_tuner):
    tuner = make_tuner()
    storage = tuner.storage
    other = tuner.replace(num_seeds=2, verbose=True)
    assert other.config.num_seeds == 2 and other.storage is storage
    assert tuner.config.num_seeds is None  # the original is unchanged (frozen)
    with pytest.raises(nbtune.ConfigError, match="checkpoints must be a whole number"):
        tuner.replace(checkpoints=0)
    with pytest.raises(nbtune.ConfigError, match=r"num_seed \(did you mean 'num_seeds'\?\)"):
        tuner.replace(num_seed=2)


def test_targets_follow_one_rule_everywhere(make_tuner):
    tuner = make_tuner(target_scores={"EnvA": [100, 0]})  # lower is better: allowed
    assert tuner.config.target_scores == {"EnvA": (100.0, 0.0)}
    for bad, words in (([1, 1], "low == high"), ([0, float("nan")], "must be finite")):
        with pytest.raises(nbtune.ConfigError, match=words):
            make_tuner(target_scores={"EnvA": bad})


def test_a_version_1_spec_still_opens_and_is_upgraded(make_tuner):
    tuner = make_tuner(params_fn=SPACE, progress_flag="num-steps")
    study = tuner.study
    stored = json.loads(study.user_attrs["nbtune:spec"])
    for key in ("progress_flag", "keep_runs", "max_consecutive_failures", "wandb_kwargs"):
        stored.pop(key)
    stored["version"] = 1
    version_1 = json.dumps(stored)

    def as_version_1_left_it() -> None:  # unsigned: signatures came with version 2
        study.set_user_attr("nbtune:spec", version_1)
        study.set_user_attr("nbtune:spec_signature", None)

    as_version_1_left_it()
    again = make_tuner(params_fn=SPACE, progress_flag="num-steps")
    again.study  # noqa: B018
    upgraded = json.loads(again.study.user_attrs["nbtune:spec"])
    assert upgraded["version"] == 2 and upgraded["progress_flag"] == "num-steps"
    # A worker of a version 1 study, once its owner trusts it, uses what version 1 workers used.
    as_version_1_left_it()
    sign_stored_spec(tuner.config.storage, "test", version_1)
    worker = nbtune.Tuner.from_study(tuner.config.storage, "test")
    assert worker.config.progress_flag == "total-timesteps"


def test_nbtune_worker_honours_the_studys_progress_flag(make_tuner, tmp_path):
    """The checkpoints of a trial run by `nbtune worker` follow the study's progress_flag.

    The toy script logs up to step 1000 (total-timesteps) while the study judges progress
    against num-envs=2000, so each checkpoint's score averages other points than under the
    default flag: the worker's checkpoint scores equal those of the same study run here.
    """
    space = {**SPACE, "num-envs": 2000, "learning-rate": 1e-3}
    tuner = make_tuner(params_fn=space, progress_flag="num-envs", checkpoints=4)
    tuner.reserve(1, num_seeds=1)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbtune",
            "worker",
            "--storage",
            tuner.config.storage,
            "--study",
            "test",
            "--n-slots",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    (trial,) = tuner.study.get_trials()
    by_worker = trial.intermediate_values
    here = make_tuner(params_fn=space, progress_flag="num-envs", checkpoints=4, study_name="here")
    here.tune(1, num_seeds=1)
    assert by_worker == here.study.trials[0].intermediate_values
    default = make_tuner(params_fn=space, checkpoints=4, study_name="default")
    default.tune(1, num_seeds=1)
    assert by_worker != default.study.trials[0].intermediate_values
