"""Every CLI command on a real study, and one-line argument errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

TOY = Path(__file__).parent / "scripts" / "toy_train.py"


def nbtune(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nbtune", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    # Relative paths are taken relative to the config file.
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "train.py").write_text(TOY.read_text())
    path = tmp_path / "study.toml"
    path.write_text(
        """
script = "scripts/train.py"
metric = "charts/episodic_return"
storage = "sqlite:///study.db"
study_name = "cli"
num_trials = 3
num_seeds = 1
metric_last_n_average_window = 10
runs_dir = "runs"
aggregation_type = "average"
sampler = { name = "TPESampler", seed = 1 }
pruner = { name = "MedianPruner", n_startup_trials = 2 }

[target_scores]
EnvA = [0, 100]
EnvB = [-100, 0]

[params]
learning-rate = { type = "float", low = 1e-5, high = 1e-1, log = true }
num-minibatches = { type = "categorical", choices = [1, 2, 4] }
total-timesteps = 1000
"""
    )
    return path


def load(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="cli", storage=f"sqlite:///{tmp_path / 'study.db'}")


def test_tune_worker_enqueue_show_export_on_a_real_study(config, tmp_path):
    # tune: from anywhere, the config's relative paths hold
    out = nbtune("tune", str(config), cwd=Path("/"))
    assert out.returncode == 0, out.stderr
    assert "best trial" in out.stdout
    study = load(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert Path(study.trials[0].user_attrs["experiments"][0]["run_dir"]).is_relative_to(
        tmp_path / "runs"
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    # enqueue a baseline and the script's defaults, reserve 3 more, let a worker run them
    out = nbtune(
        "enqueue", "--storage", storage, "--study", "cli", "--params", '{"learning-rate": 0.001}'
    )
    assert out.returncode == 0, out.stderr
    out = nbtune("enqueue", "--storage", storage, "--study", "cli", "--defaults")
    assert out.returncode == 0, out.stderr
    assert '"learning-rate": 0.00025' in out.stdout and '"num-minibatches": 4' in out.stdout
    out = nbtune("tune", str(config), "--num-trials", "3", "--reserve-only")
    assert out.returncode == 0, out.stderr
    assert "total of 6 trials" in out.stdout
    out = nbtune("worker", "--storage", storage, "--study", "cli")
    assert out.returncode == 0, out.stderr
    assert "study at 6 of 6" in out.stdout
    study = load(tmp_path)
    assert len(study.trials) == 6
    assert study.trials[3].params["learning-rate"] == 0.001
    assert study.trials[4].params == {"learning-rate": 0.00025, "num-minibatches": 4}

    # show: a summary table and the best configuration as a command line
    out = nbtune("show", "--storage", storage, "--study", "cli")
    assert out.returncode == 0, out.stderr
    assert "6 of 6 finished" in out.stdout
    assert "EnvA" in out.stdout and "learning-rate" in out.stdout
    best = study.best_trial
    assert f"--learning-rate={best.params['learning-rate']!r}" in out.stdout
    assert "--total-timesteps=1000" in out.stdout
    out = nbtune("show", "--storage", storage)
    assert out.stdout.startswith("cli\t6 trials")

    # export: the best configuration as JSON
    out = nbtune(
        "export", "--storage", storage, "--study", "cli", "-o", str(tmp_path / "best.json")
    )
    assert out.returncode == 0, out.stderr
    exported = json.loads((tmp_path / "best.json").read_text())
    assert exported["trial"] == best.number
    assert exported["config"] == {
        "learning-rate": best.params["learning-rate"],
        "num-minibatches": best.params["num-minibatches"],
        "total-timesteps": 1000,
    }
    assert exported["command"][1] == str(tmp_path / "scripts" / "train.py")
    assert set(exported["normalized_scores"]) == {"EnvA", "EnvB"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["tune"], "the following arguments are required: config"),
        (["tune", "missing.toml"], "does not exist"),
        (["worker", "--storage", "sqlite:///nowhere/x.db", "--study", "s"], "does not exist"),
        (["show", "--storage", "sqlite:///nowhere/x.db"], "does not exist"),
        (["frobnicate"], "invalid choice"),
        (
            ["enqueue", "--storage", "x.log", "--study", "s"],
            "one of the arguments --params --defaults is required",
        ),
    ],
)
def test_argument_errors_are_one_line(args, words, tmp_path):
    out = nbtune(*args, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("nbtune: error:") and words in lines[0]
    assert not (tmp_path / "nowhere").exists()  # a worker never creates an empty database


def test_config_errors_are_one_line(tmp_path, config):
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace("num_seeds = 1", "num_seed = 1"))
    out = nbtune("tune", str(bad))
    assert out.returncode == 2 and "unknown field(s) num_seed" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    bad.write_text(config.read_text().replace('"TPESampler"', '"TPE"'))
    out = nbtune("tune", str(bad))
    assert out.returncode == 2 and "unknown sampler 'TPE'" in out.stderr


def test_yaml_and_json_configs(tmp_path):
    data = {
        "script": str(TOY),
        "metric": "charts/episodic_return",
        "storage": f"sqlite:///{tmp_path / 'study.db'}",
        "study_name": "cli",
        "num_trials": 1,
        "num_seeds": 1,
        "target_scores": {"EnvA": [0, 100]},
        "params": {
            "learning-rate": {"type": "float", "low": 1e-4, "high": 1e-2},
            "total-timesteps": 500,
        },
    }
    (tmp_path / "c.json").write_text(json.dumps(data))
    assert nbtune("tune", str(tmp_path / "c.json")).returncode == 0
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    out = nbtune("tune", str(tmp_path / "c.yaml"), "--num-trials", "2")
    assert out.returncode == 0, out.stderr
    assert len(load(tmp_path).trials) == 3


def test_a_worker_refuses_a_study_whose_params_fn_is_not_declarative(tmp_path, make_tuner):
    tuner = make_tuner(
        study_name="cli",
        params_fn=lambda t: {"total-timesteps": 500 * t.suggest_int("k", 1, 2)},
        target_scores={"EnvA": [0, 100]},
    )
    tuner.reserve(1, num_seeds=1)
    out = nbtune("worker", "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--study", "cli")
    assert out.returncode == 2
    assert "not declarative" in out.stderr and "'k'" in out.stderr


def test_show_and_export_on_a_study_of_several_objectives(tmp_path):
    storage = f"sqlite:///{tmp_path / 'multi.db'}"
    study = optuna.create_study(
        study_name="multi", storage=storage, directions=["maximize", "minimize"]
    )
    study.set_metric_names(["score", "seconds"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=4)
    out = nbtune("show", "--storage", storage, "--study", "multi")
    assert out.returncode == 0, out.stderr
    assert "(maximize, minimize)" in out.stdout
    assert "best score: trial" in out.stdout and "best seconds: trial" in out.stdout
    out = nbtune("export", "--storage", storage, "--study", "multi")
    assert out.returncode == 2
    assert "has 2 objectives" in out.stderr and "--trial N" in out.stderr
    assert "Traceback" not in out.stderr
    out = nbtune("export", "--storage", storage, "--study", "multi", "--trial", "1")
    assert out.returncode == 0, out.stderr
    exported = json.loads(out.stdout)
    assert exported["values"] == study.trials[1].values and exported["value"] is None
