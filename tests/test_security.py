"""Trust boundaries: what a study's database says never chooses what runs, nor what is deleted.

Each test plays someone who can write the study's tables (a shared lab database, a leaked
password) but not the user's files, and checks that nbtune refuses, loudly, instead of running
or deleting what they chose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from _support import TOY

import nbtune
from nbtune import _attrs

SPACE = {
    "learning-rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "total-timesteps": 1000,
}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbtune", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def tamper(study: optuna.Study, **changes: Any) -> None:
    """Edit the stored definition as a database writer would (the signature stays as it was)."""
    spec = json.loads(study.user_attrs[_attrs.STUDY_SPEC])
    spec.update(changes)
    study.set_user_attr(_attrs.STUDY_SPEC, json.dumps(spec, sort_keys=True))


@pytest.fixture
def attacked(make_tuner: Any, tmp_path: Path) -> tuple[nbtune.Tuner, Path]:
    """A study whose stored environment runs a command in any Python that starts with it.

    ``PYTHONWARNINGS`` naming a module makes Python import it at start-up; ``antigravity``
    opens a web page through ``webbrowser``, which runs the command in ``BROWSER``.
    """
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    tuner.reserve(2, num_seeds=1)
    marker = tmp_path / "pwned"
    tamper(
        tuner.study,
        env={"PYTHONWARNINGS": "all:0:antigravity.x:0:0", "BROWSER": f"touch {marker}"},
    )
    return tuner, marker


def test_a_worker_refuses_a_definition_changed_in_the_database(attacked):
    tuner, marker = attacked
    out = cli("worker", "--storage", tuner.config.storage, "--study", "test")
    assert out.returncode == 2
    assert "will not run here" in out.stderr
    assert "changed since it was signed" in out.stderr
    assert "nbtune trust" in out.stderr
    assert not marker.exists()
    states = {t.state for t in tuner.study.get_trials(deepcopy=False)}
    assert optuna.trial.TrialState.RUNNING not in states


def test_tune_refuses_to_resume_a_changed_definition(attacked, make_tuner):
    _tuner, marker = attacked
    with pytest.raises(nbtune.UntrustedSpecError, match="changed since it was signed"):
        make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]}).tune(1, num_seeds=1)
    assert not marker.exists()


def test_enqueue_defaults_refuses_a_changed_definition(attacked):
    tuner, marker = attacked
    tamper(tuner.study, interpreter="/bin/sh")
    out = cli("enqueue", "--storage", tuner.config.storage, "--study", "test", "--defaults")
    assert out.returncode == 2 and "will not run here" in out.stderr
    assert not marker.exists()


def test_the_widget_refuses_to_resume_and_warns_when_watching(attacked, make_tuner):
    pytest.importorskip("ipywidgets")
    from nbtune.widgets import TunerWidget

    tuner, _ = attacked
    with pytest.raises(nbtune.UntrustedSpecError):
        TunerWidget(make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]}))
    watching = TunerWidget.watch(tuner.config.storage, "test")
    try:
        assert "Not checked" in watching._definition_warning()
        assert "changed since it was signed" in watching._definition_warning()
    finally:
        watching.close()


def test_an_unsigned_definition_waits_for_its_owner_to_trust_it(make_tuner):
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    tuner.reserve(1, num_seeds=1)
    study = tuner.study
    study.set_user_attr(_attrs.SPEC_SIGNATURE, None)  # as an older nbtune left it
    storage = tuner.config.storage
    out = cli("worker", "--storage", storage, "--study", "test")
    assert out.returncode == 2 and "not signed" in out.stderr
    out = cli("trust", "--storage", storage, "--study", "test")
    assert out.returncode == 1
    assert f"script       {TOY.resolve()}" in out.stdout
    assert "--yes" in out.stdout
    out = cli("trust", "--storage", storage, "--study", "test", "--yes")
    assert out.returncode == 0, out.stderr
    assert "signed with this machine's key" in out.stdout
    out = cli("worker", "--storage", storage, "--study", "test")
    assert out.returncode == 0, out.stderr
    assert "study at 1 of 1" in out.stdout


def test_a_local_tuner_stores_its_own_definition_over_an_unsigned_one(make_tuner, tmp_path):
    """An older nbtune's study continues from the owner's code: the owner's values are stored
    and signed, so an unsigned edit made in the database never runs."""
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    tuner.reserve(1, num_seeds=1)
    tamper(tuner.study, env={"TOY_EXTRA": "sneaky"})
    tuner.study.set_user_attr(_attrs.SPEC_SIGNATURE, None)
    again = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]}, verbose=True)
    again.tune(1, num_seeds=1)
    stored = json.loads(again.study.user_attrs[_attrs.STUDY_SPEC])
    assert stored["env"] == {}
    received = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("received.json")]
    assert received and all(r["TOY_EXTRA"] is None for r in received)
    worker = nbtune.Tuner.from_study(tuner.config.storage, "test")  # signed now
    assert worker.config.env == {}


def test_another_machines_key_is_named_in_the_refusal(make_tuner, tmp_path):
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    tuner.reserve(1, num_seeds=1)
    env = {**os.environ, "NBTUNE_KEY_FILE": str(tmp_path / "other.key")}
    (tmp_path / "other.key").write_bytes(os.urandom(32))
    out = cli("worker", "--storage", tuner.config.storage, "--study", "test", env=env)
    assert out.returncode == 2
    assert "signed with another key" in out.stderr and "NBTUNE_KEY_FILE" in out.stderr
    env["NBTUNE_KEY_FILE"] = str(tmp_path / "missing.key")
    out = cli("worker", "--storage", tuner.config.storage, "--study", "test", env=env)
    assert out.returncode == 2 and "no nbtune signing key" in out.stderr


def test_the_key_is_readable_by_its_owner_only(make_tuner):
    make_tuner().study  # noqa: B018  (stores a signed definition, making the key)
    key = Path(os.environ["NBTUNE_KEY_FILE"])
    assert key.stat().st_mode & 0o077 == 0
    assert len(key.read_bytes()) == 32


def test_retention_never_deletes_a_folder_the_database_points_outside_the_runs_folder(
    make_tuner, tmp_path
):
    victim = tmp_path / "home" / "me"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "id_rsa").write_text("secret")
    (victim / "notes.txt").write_text("keep me")
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]}, keep_runs=0)
    tuner.reserve(1, num_seeds=1)
    # A database writer adds a finished trial whose experiment "ran" in the user's folder.
    tuner.study.add_trial(
        optuna.trial.create_trial(
            value=0.0,
            params={"learning-rate": 1e-3},
            distributions={
                "learning-rate": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True)
            },
            user_attrs={_attrs.EXPERIMENTS: [{"run_dir": str(victim)}]},
        )
    )
    tuner.replace(verbose=True).tune(1, num_seeds=1)
    assert (victim / "sub" / "id_rsa").read_text() == "secret"
    assert (victim / "notes.txt").exists()


@pytest.mark.parametrize("name", ["../../escape", "/tmp/absolute", "..", "a/b"])
def test_study_names_never_put_experiments_outside_the_runs_folder(name, make_tuner, tmp_path):
    runs = tmp_path / "work"
    runs.mkdir()
    tuner = make_tuner(
        study_name=name, runs_dir=None, params_fn=SPACE, target_scores={"EnvA": [0, 100]}
    )
    default_root = (Path.cwd() / "nbtune_runs").resolve()
    assert tuner.config.runs_dir.parent == default_root
    assert tuner.config.runs_dir.name not in ("", ".", "..")


def test_unicode_and_spaces_in_study_names_stay_readable(make_tuner):
    tuner = make_tuner(study_name="ppo cartpole é", runs_dir=None)
    assert tuner.config.runs_dir.name == "ppo cartpole é"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (-1, "outside its range"),
        (float("nan"), "not a finite number"),
        (1e999, "not a finite number"),
        ("fast", "not a number"),
    ],
)
def test_enqueued_values_are_checked_against_the_space_before_they_are_stored(
    make_tuner, value, words
):
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    tuner.reserve(1, num_seeds=1)
    before = len(tuner.study.get_trials(deepcopy=False))
    with pytest.raises(nbtune.ConfigError, match=words):
        tuner.enqueue({"learning-rate": value})
    assert len(tuner.study.get_trials(deepcopy=False)) == before


def test_enqueue_past_the_total_raises_it_so_the_configuration_runs(make_tuner, capsys):
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]}, verbose=True)
    tuner.tune(1, num_seeds=1)
    tuner.enqueue({"learning-rate": 2e-3})
    assert "its total is now 2" in capsys.readouterr().out
    tuner.work()
    trials = tuner.study.get_trials(deepcopy=False)
    assert [t.params["learning-rate"] for t in trials][-1] == 2e-3
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]


def test_a_cli_enqueue_of_a_bad_value_is_one_clear_line(make_tuner):
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    tuner.reserve(1, num_seeds=1)
    out = cli(
        "enqueue",
        "--storage",
        tuner.config.storage,
        "--study",
        "test",
        "--params",
        '{"learning-rate": -1}',
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "nbtune: error: parameter 'learning-rate': -1 is outside its range [1e-05, 0.1] "
        "(log scale)."
    ]


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("truncate", "ends in a partial record ("),
        ("corrupt", "a corrupt record at byte"),
    ],
)
def test_damaged_event_files_are_scored_with_a_warning_naming_what_was_lost(
    make_tuner, damage, words, capsys
):
    space = {"learning-rate": 1e-3, "total-timesteps": 2000, "damage": damage}
    tuner = make_tuner(params_fn=space, target_scores={"EnvA": [0, 100]}, verbose=True)
    tuner.tune(1, num_seeds=1)
    (trial,) = tuner.study.get_trials(deepcopy=False)
    assert trial.state == optuna.trial.TrialState.COMPLETE
    warnings = trial.user_attrs[_attrs.DATA_WARNINGS]
    assert len(warnings) == 1 and words in warnings[0] and warnings[0].startswith("EnvA seed 0")
    if damage == "corrupt":
        assert "about 10 records" in warnings[0] or "about 11 records" in warnings[0]
    assert "scored from the points read" in capsys.readouterr().out


def test_an_intact_event_file_records_no_warning(make_tuner):
    tuner = make_tuner(params_fn={"learning-rate": 1e-3, "total-timesteps": 2000})
    tuner.tune(1, num_seeds=1)
    (trial,) = tuner.study.get_trials(deepcopy=False)
    assert _attrs.DATA_WARNINGS not in trial.user_attrs
