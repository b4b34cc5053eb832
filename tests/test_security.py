"""Trust boundaries: what a study's database says never chooses what runs, nor what is deleted.

Each test plays someone who can write the study's tables (a shared lab database, a leaked
password) but not the user's files, and checks that nbtune refuses, loudly, instead of running
or deleting what they chose.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from _support import TOY, postgres_admin

import nbtune
from nbtune import _attrs, _storage

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
        assert "Not checked" in watching._live.definition_warning()
        assert "changed since it was signed" in watching._live.definition_warning()
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


# --------------------------------------------------------------------------------------------
# Finding 4: passwords never printed, however they are spelled
# --------------------------------------------------------------------------------------------

#: A password with every character that ends a password early in a naive parser, and unicode.
#: Written in the URL with its "@" encoded (a raw "@" is refused, see below) and the rest raw:
#: SQLAlchemy reads "?", "#", ":", "%" (before no hex digits) and "é" as they are.
TRICKY_WRITTEN = "Pa?ss#w%40rd%:é9"
TRICKY = "Pa?ss#w@rd%:é9"  # what the driver sends


def _forms(password: str) -> list[str]:
    """Every spelling of a password, and the pieces a naive parser leaves behind (4+ chars)."""
    from urllib.parse import quote, quote_plus

    whole = [password, quote(password, safe=""), quote_plus(password), TRICKY_WRITTEN]
    pieces = [p for w in (password, TRICKY_WRITTEN) for p in re.split(r"[@?#:]", w)]
    return [f for f in whole + pieces if len(f) >= 4]


@pytest.fixture
def tricky_database() -> Any:
    """A fresh PostgreSQL database owned by a role whose password is ``TRICKY``."""
    admin = postgres_admin()
    name = f"nbtune_{uuid.uuid4().hex[:12]}"
    role = f"{name}_pw"
    with admin.cursor() as cur:
        # Local connections may use trust authentication (any password is accepted): the URL
        # still carries the password, which is what must never be printed.
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (TRICKY,))
        cur.execute(f"CREATE DATABASE {name} OWNER {role}")
    try:
        yield f"postgresql://{role}:{TRICKY_WRITTEN}@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def test_a_password_with_special_characters_is_printed_nowhere(
    tricky_database, tmp_path, capsys, caplog
):
    url = tricky_database
    config = tmp_path / "study.json"
    config.write_text(
        json.dumps(
            {
                "script": str(TOY),
                "metric": "charts/episodic_return",
                "target_scores": {"EnvA": [0, 100]},
                "params": SPACE,
                "metric_last_n_average_window": 3,
                "study_name": "pw",
                "runs_dir": str(tmp_path / "runs"),
            }
        )
    )
    head = url.rpartition("/")[0]
    commands = {
        "tune": ["tune", str(config), "--storage", url, "--num-trials", "1", "--num-seeds", "1"],
        "enqueue": ["enqueue", "--storage", url, "--study", "pw", "--params", '{"x": 1}'],
        "worker": ["worker", "--storage", url, "--study", "pw"],
        "show list": ["show", "--storage", url],
        "show": ["show", "--storage", url, "--study", "pw"],
        "export": ["export", "--storage", url, "--study", "pw"],
        "no such study": ["worker", "--storage", url, "--study", "no-such-study"],
        "wrong database": ["show", "--storage", head + "/nbtune_no_such_db", "--study", "pw"],
        "wrong port": ["worker", "--storage", url.replace(":5432", ":1"), "--study", "pw"],
        "wrong host": ["show", "--storage", url.replace("127.0.0.1", "no-such-host.invalid")],
        "raw @": ["worker", "--storage", url.replace("%40", "@"), "--study", "pw"],
    }
    results = {what: cli(*args) for what, args in commands.items()}
    for what, result in results.items():
        shown = result.stdout + result.stderr
        for form in _forms(TRICKY):
            assert form not in shown, f"{what} printed {form!r}:\n{shown}"
        if what in ("tune", "worker", "show", "export", "show list"):
            assert result.returncode == 0, f"{what}: {shown}"
        else:
            assert result.returncode != 0, f"{what}: {shown}"
            assert "Traceback" not in shown, f"{what}: {shown}"
            assert len(result.stderr.strip().splitlines()) == 1, f"{what}: {shown}"
    assert ":***@127.0.0.1:5432/" in results["tune"].stdout
    assert "nbtune worker --storage 'postgresql://" in results["tune"].stdout
    assert "best configuration" in results["show"].stdout
    assert "no-such-host.invalid" in results["wrong host"].stderr
    assert "Connection refused" in results["wrong port"].stderr
    assert "%40" in results["raw @"].stderr

    # In this process: the config's and the view's repr, errors, and every log record.
    caplog.set_level(logging.DEBUG)
    tuner = nbtune.Tuner.from_study(url, "pw", verbose=True)
    with nbtune.StudyView(url, "pw") as view:
        texts = [repr(tuner.config), str(tuner.config), repr(view), view.storage_description]
    with pytest.raises(nbtune.NbtuneError) as refused:
        nbtune.StudyView(url.replace(":5432", ":1"), "pw")
    texts.append(str(refused.value))
    tuner.enqueue({"learning-rate": 1e-3})
    tuner.work()
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    if isinstance(tuner.storage, _storage.ResilientRDBStorage):
        tuner.storage.engine.dispose()
    for text in texts:
        for form in _forms(TRICKY):
            assert form not in text, f"{form!r} in {text}"
    assert "***" in texts[0] and "***" in texts[2]


def test_redaction_keeps_the_url_and_hides_every_password():
    redact, passwords = _storage.redact_url, _storage.url_passwords
    assert redact("postgresql://u:a?b#c@h:5432/db?sslmode=require") == (
        "postgresql://u:***@h:5432/db?sslmode=require"
    )
    assert redact("postgresql://u:Wr@ngPw@h/db") == "postgresql://u:***@h/db"
    assert redact("mysql://u@h/db?charset=utf8&password=x#y&pwd=z") == (
        "mysql://u@h/db?charset=utf8&password=***&pwd=***"
    )
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact("sqlite:////tmp/a:b@c.db") == "sqlite:////tmp/a:b@c.db"
    # A driver that took "ngPw@h" for the host name prints the piece after the "@".
    assert _storage.scrub('host name "ngPw@h" unknown', "postgresql://u:Wr@ngPw@h/db") == (
        'host name "***@h" unknown'
    )
    assert "p:qAé" in passwords("postgresql://u:p:q%41é@h/db")
    assert passwords("postgresql://u@h/db") == []


def test_a_raw_at_sign_in_a_password_is_refused_before_connecting():
    with pytest.raises(nbtune.ConfigError, match="%40") as refused:
        _storage.open_storage("postgresql://u:Wr@ngPw@127.0.0.1:1/db")
    assert "ngPw" not in str(refused.value)
    with pytest.raises(nbtune.ConfigError, match="%40"):
        _storage.open_storage_for_reading("postgresql://u:Wr@ngPw@127.0.0.1:1/db")
