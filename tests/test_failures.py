"""Failures outside the script, said in one clear line: full and read-only disks, storages that
cannot be reached, experiments that stall, a second Ctrl-C (issue 14, findings 6, 8 and 9a).

Disks are real where the machine allows it: a 1 MiB tmpfs filled by the script, a read-only
tmpfs (both need root and ``mount``; skipped elsewhere), and a regular file where a folder
should be, which fails for root too (root ignores permission bits, so ``chmod`` proves nothing).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from _support import TOY, wait_for
from optuna.trial import TrialState

import nbtune
from nbtune import _attrs, _resources
from nbtune._budget import budget_state
from nbtune._storage import forget_trial, record_heartbeat
from nbtune.widgets._render import trials_table_html

ONE_ENV = {"EnvA": [0, 100]}


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (root only), unmounted after."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def states(tuner: nbtune.Tuner) -> list[tuple[str, Any]]:
    return [
        (t.state.name, t.system_attrs.get(_attrs.FAIL_KIND))
        for t in tuner.study.get_trials(deepcopy=False)
    ]


# --------------------------------------------------------------------------------------------
# Finding 8: full and read-only disks, unreachable storages
# --------------------------------------------------------------------------------------------


def test_a_full_disk_stops_the_study_in_one_line_and_does_not_count_the_trial(make_tuner, tmp_path):
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        tuner = make_tuner(
            params_fn={"learning-rate": 1e-3, "total-timesteps": 500, "fill-disk": True},
            target_scores=ONE_ENV,
            runs_dir=disk / "runs",
        )
        with pytest.raises(nbtune.TuningError) as stopped:
            tuner.tune(3, num_seeds=1)
    message = str(stopped.value)
    assert f"the disk holding {disk / 'runs'} is full (ENOSPC" in message
    assert "\n" not in message and "exited with code" not in message
    # Not a failure of the configuration: interrupted, and its place in the budget given back.
    assert [s for s in states(tuner) if s[0] != "WAITING"] == [("FAIL", "interrupted")]
    assert (budget_state(tuner.study).finished, budget_state(tuner.study).total) == (0, 3)
    assert (
        tuner.study.get_trials(deepcopy=False)[0]
        .user_attrs[_attrs.FAIL_REASON]
        .startswith("interrupted by TuningError: the disk holding")
    )


def test_a_disk_that_is_full_already_is_said_before_the_first_trial(make_tuner, monkeypatch):
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(_resources.shutil, "disk_usage", lambda path: usage._replace(free=1 << 20))
    tuner = make_tuner(target_scores=ONE_ENV)
    with pytest.raises(nbtune.TuningError, match=r"is full \(ENOSPC, 1024 KiB free\)"):
        tuner.tune(1, num_seeds=1)
    assert all(state == "WAITING" for state, _ in states(tuner))


def test_what_counts_as_a_full_disk(monkeypatch, tmp_path):
    usage = shutil.disk_usage("/")
    free = {"bytes": 50 << 30}
    monkeypatch.setattr(
        _resources.shutil,
        "disk_usage",
        lambda path: usage._replace(total=100 << 30, free=free["bytes"]),
    )
    assert not _resources.disk_full(tmp_path)
    assert _resources.disk_full(tmp_path, "OSError: [Errno 28] No space left on device")
    assert "another one, such as /tmp" in _resources.disk_full_message(tmp_path, "ENOSPC")
    free["bytes"] = 1 << 20
    assert _resources.disk_full(tmp_path / "not" / "made" / "yet")
    assert "KiB free" in _resources.disk_full_message(tmp_path)


@pytest.mark.parametrize("how", ["a file in the way", "a read-only file system"])
def test_an_unwritable_runs_folder_is_one_line_before_the_first_trial(how, make_tuner, tmp_path):
    if how == "a file in the way":
        (tmp_path / "file").write_text("not a folder")
        runs, words = tmp_path / "file" / "runs", "Not a directory"
        context: Any = contextlib.nullcontext(tmp_path)
    else:
        context = tmpfs(tmp_path / "ro", "ro,size=1m")
        runs, words = tmp_path / "ro" / "runs", "Read-only file system"
    with context:
        tuner = make_tuner(target_scores=ONE_ENV, runs_dir=runs)
        with pytest.raises(nbtune.ConfigError) as refused:
            tuner.tune(1, num_seeds=1)
    message = str(refused.value)
    assert message.startswith(f"cannot write experiment folders under {runs}: {words}")
    assert "writable runs_dir (--runs-dir)" in message and "\n" not in message
    assert all(state == "WAITING" for state, _ in states(tuner))


def test_an_unwritable_sqlite_file_is_said_at_once(make_tuner, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        started = time.monotonic()
        with pytest.raises(nbtune.NbtuneError) as refused:
            make_tuner(storage=f"sqlite:///{folder / 'study.db'}").study  # noqa: B018
        assert time.monotonic() - started < 10  # not the 120 s of an outage
    assert "unable to open database file" in str(refused.value)
    assert "folder writable" in str(refused.value)


@pytest.mark.parametrize("command", ["show", "worker"])
def test_a_storage_nobody_answers_at_is_said_at_once(command):
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "nbtune", command, "--storage", "postgresql://u@127.0.0.1:1/db"]
        + (["--study", "x"] if command == "worker" else []),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 20
    assert out.returncode == 2
    assert out.stderr.startswith("nbtune: error: cannot ") and "Connection refused" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


# --------------------------------------------------------------------------------------------
# Finding 9a: a second Ctrl-C
# --------------------------------------------------------------------------------------------


def test_a_second_ctrl_c_during_cleanup_still_fails_the_running_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    runs = tmp_path / "runs"
    # The script ignores SIGTERM: stopping it takes the 0.5 s grace before SIGKILL, and the
    # second Ctrl-C lands in that cleanup.
    code = f"""
import nbtune
nbtune.Tuner(
    script={str(TOY)!r},
    metric="charts/episodic_return",
    target_scores={{"EnvA": [0, 100]}},
    params_fn={{"learning-rate": 1e-3, "total-timesteps": 500, "mode": "hang",
               "ignore-sigterm": True}},
    storage={storage!r},
    study_name="test",
    runs_dir={str(runs)!r},
    n_slots=1,
).tune(1, num_seeds=1)
"""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: list(runs.rglob("received.json")), 60, "the experiment to start")
        time.sleep(0.3)  # past the script's signal set-up
        proc.send_signal(signal.SIGINT)
        time.sleep(0.15)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    study = optuna.load_study(study_name="test", storage=storage)
    (trial,) = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    assert trial.state == TrialState.FAIL, output
    assert trial.system_attrs[_attrs.FAIL_KIND] == "interrupted"
    assert "marking the running trials as interrupted" in output


# --------------------------------------------------------------------------------------------
# Finding 6: silent stalls, and waiting for a dead run's trials
# --------------------------------------------------------------------------------------------


def test_a_silent_experiment_is_said_to_seem_stuck_once_in_the_log_show_and_widget(
    make_tuner, capsys
):
    tuner = make_tuner(
        params_fn={"learning-rate": 1e-3, "total-timesteps": 500, "mode": "hang"},
        target_scores=ONE_ENV,
        stall_warning=1.0,
        verbose=False,  # a warning still reaches the session's subscribers
    )
    session = tuner.session(1, num_seeds=1)
    lines: list[str] = []
    session.subscribe(lambda event: lines.append(event.data.get("line", "")))
    session.start()
    try:
        stall = wait_for(lambda: [ln for ln in lines if "seems" in ln or "no new output" in ln])
        assert stall[0].startswith("trial 0 warning: EnvA seed 0: no new output or TensorBoard ")
        assert "(stall_warning); still running, set experiment_timeout" in stall[0]
        storage = tuner.config.storage
        shown = subprocess.run(
            [sys.executable, "-m", "nbtune", "show", "--storage", storage, "--study", "test"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "  trial 0 (running) seems stuck: EnvA seed 0: no new output" in shown.stdout
        with nbtune.StudyView(storage, "test") as view:
            assert "seems stuck: EnvA seed 0: no new output" in trials_table_html(view)
        time.sleep(1.5)  # said once per stall, not at every check
        assert len([ln for ln in lines if "no new output" in ln]) == 1
    finally:
        session.stop()
        session.wait(60)
    (trial,) = [t for t in tuner.study.get_trials(deepcopy=False) if t.number == 0]
    assert len(trial.user_attrs[_attrs.STALL_WARNINGS]) == 1


def test_an_experiment_that_logs_is_never_said_to_stall(make_tuner, capsys):
    tuner = make_tuner(
        params_fn={"learning-rate": 1e-3, "total-timesteps": 1500, "log-sleep": 0.2},
        target_scores=ONE_ENV,
        stall_warning=1.0,
        verbose=True,
    )
    tuner.tune(1, num_seeds=1)  # 15 points, 0.2 s apart: 3 s with a point every 0.2 s
    assert "no new output" not in capsys.readouterr().out
    (trial,) = tuner.study.get_trials(deepcopy=False)
    assert _attrs.STALL_WARNINGS not in trial.user_attrs


@pytest.mark.parametrize("value", [-1, "soon", True])
def test_stall_warning_is_checked(make_tuner, value):
    with pytest.raises(nbtune.ConfigError, match="stall_warning"):
        make_tuner(stall_warning=value)


def test_a_rerun_after_a_crash_says_which_trials_it_waits_for_and_how_long(make_tuner, capsys):
    tuner = make_tuner(target_scores=ONE_ENV, heartbeat_interval=2, verbose=True)
    tuner.reserve(1, num_seeds=1)
    # A run that died mid-trial: it took the reservation, beat once, and was gone.
    study = tuner.study
    trial = study.ask()
    record_heartbeat(study, trial._trial_id)
    forget_trial(study, trial._trial_id)  # this process plays the re-run, not the dead one
    started = time.monotonic()
    tuner.work()
    out = capsys.readouterr().out
    assert time.monotonic() - started < 60
    line = next(ln for ln in out.splitlines() if ln.startswith("nbtune: waiting for"))
    assert re.match(
        r"nbtune: waiting for trial 0 \(last heartbeat [01] s ago, stale in [34] s\)", line
    )
    assert "a trial without a heartbeat for 4 s is failed and run again" in line
    assert out.count("nbtune: waiting for") == 1
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["FAIL", "COMPLETE"]
