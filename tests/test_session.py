"""TuningSession, the run controller, driven headless: every control, without ipywidgets.

Each scenario runs in a fresh interpreter in which the notebook stack (ipywidgets, IPython,
plotly, traitlets, anywidget) cannot be imported, as on a machine without them, and prints what
it observed as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _support import TOY

PRELUDE = """
import json, sys, time
for name in ("ipywidgets", "IPython", "plotly", "traitlets", "anywidget"):
    sys.modules[name] = None  # importing it raises ImportError, as if not installed
import optuna
import nbtune
from optuna.trial import TrialState

def make(tmp, **kwargs):
    options = dict(
        script={toy!r},
        metric="charts/episodic_return",
        target_scores={{"EnvA": [0, 100], "EnvB": [-100, 0]}},
        params_fn={{
            "learning-rate": {{"type": "float", "low": 1e-5, "high": 1e-1, "log": True}},
            "total-timesteps": 1000,
        }},
        metric_last_n_average_window=5,
        storage=f"sqlite:///{{tmp}}/study.db",
        study_name="s",
        runs_dir=f"{{tmp}}/runs",
        pruner=optuna.pruners.NopPruner(),
        n_slots=1,
        verbose=False,
    )
    options.update(kwargs)
    return nbtune.Tuner(**options)

def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    raise AssertionError("timed out")

events = []
def record(event):
    events.append([event.kind, {{k: str(v) for k, v in event.data.items()}}])

def states(study):
    return [t.state.name for t in study.get_trials(deepcopy=False)]
"""


REPORT = """
result["heavy"] = [m for m in ("ipywidgets", "IPython", "plotly") if sys.modules.get(m)]
print(json.dumps(result))
"""


def run_headless(tmp_path: Path, body: str) -> dict[str, Any]:
    code = PRELUDE.format(toy=str(TOY)) + textwrap.dedent(body) + REPORT
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result.pop("heavy") == [], "the notebook stack was imported"
    return result


def test_start_wait_and_the_events_a_view_sees(tmp_path):
    result = run_headless(
        tmp_path,
        """
        tmp = sys.argv[1]
        session = make(tmp).session(num_trials=2, num_seeds=1)
        session.subscribe(record)
        session.start()
        best = session.wait(120)
        info = session.status()
        result = {
            "state": session.state,
            "events": events,
            "best": best.number if best else None,
            "finished": info.n_finished,
            "total": info.total,
            "trial_states": states(session.study),
        }
        """,
    )
    assert result["state"] == "finished"
    kinds = [(kind, data.get("state")) for kind, data in result["events"] if kind == "state"]
    assert kinds == [("state", "running"), ("state", "finished")]
    assert ["log", {"line": "started"}] in result["events"]
    trials = [(d["number"], d["state"]) for kind, d in result["events"] if kind == "trial"]
    assert trials == [("0", "started"), ("0", "complete"), ("1", "started"), ("1", "complete")]
    experiments = [(d["number"], d["env_id"]) for k, d in result["events"] if k == "experiment"]
    assert experiments == [("0", "EnvA"), ("0", "EnvB"), ("1", "EnvA"), ("1", "EnvB")]
    assert (result["finished"], result["total"]) == (2, 2)
    assert result["trial_states"] == ["COMPLETE", "COMPLETE"]
    assert result["best"] in (0, 1)


def test_pause_resume_and_stop_leave_nothing_running(tmp_path):
    result = run_headless(
        tmp_path,
        """
        tmp = sys.argv[1]
        tuner = make(tmp, params_fn={
            "learning-rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
            "total-timesteps": 1000, "sleep": 1.0,
        })
        session = tuner.session(num_trials=20, num_seeds=1)
        session.subscribe(record)
        session.start()
        wait_for(lambda: "RUNNING" in states(session.study))
        session.pause()
        paused = session.state
        time.sleep(1.5)
        session.resume()
        resumed = session.state
        wait_for(lambda: "COMPLETE" in states(session.study))
        session.stop()
        stopping = session.state
        session.wait(120)
        result = {
            "paused": paused, "resumed": resumed, "stopping": stopping,
            "state": session.state, "trial_states": states(session.study),
            "logs": [data["line"] for kind, data in events if kind == "log"],
        }
        """,
    )
    assert (result["paused"], result["resumed"], result["stopping"]) == (
        "paused",
        "running",
        "stopping",
    )
    assert result["state"] == "stopped"
    assert "RUNNING" not in result["trial_states"]
    assert "COMPLETE" in result["trial_states"]
    assert len(result["trial_states"]) < 20  # it stopped early
    assert result["logs"][:3] == ["started", "paused", "resumed"]
    assert result["logs"][-1] == "stopped"


def test_retarget_forks_and_continues_respace_and_enqueue_apply_to_new_trials(tmp_path):
    result = run_headless(
        tmp_path,
        """
        tmp = sys.argv[1]
        session = make(tmp).session(num_trials=2, num_seeds=1)
        session.subscribe(record)
        session.run()  # in this thread, as the CLI does
        parent_values = {t.params["learning-rate"]: t.value for t in session.study.trials}
        line = session.retarget({"EnvA": [0, 50], "EnvB": [-100, 0]}, "min")
        fork = session.study
        fork_values = {t.params["learning-rate"]: t.value for t in fork.trials}
        session.respace({
            "learning-rate": {"type": "float", "low": 1e-3, "high": 2e-3, "log": True},
            "total-timesteps": 1000,
        })
        session.enqueue({"learning-rate": 1.5e-3})  # the budget was reached: it grows by one
        session.start()
        session.wait(120)
        after_enqueue = len(session.study.trials)
        session.start()  # nothing left: a start adds num_trials
        session.wait(120)
        trials = session.study.trials
        result = {
            "line": line,
            "study": session.study_name,
            "values": [[parent_values[lr], fork_values[lr]] for lr in parent_values],
            "new_lrs": [t.params["learning-rate"] for t in trials[2:]],
            "n": len(trials),
            "after_enqueue": after_enqueue,
            "study_events": [d["study_name"] for k, d in events if k == "study"],
            "spec_space_low": json.loads(session.study.user_attrs["nbtune:spec"])["space"][
                "learning-rate"]["low"],
        }
        """,
    )
    assert result["study"] == "s.r1"
    assert result["line"].startswith("re-scored 2 finished trials of 's' into 's.r1'")
    # Each trial re-scored: the minimum over environments is at most their average.
    assert len(result["values"]) == 2
    # TensorBoard keeps float32 values: equal scores differ in the 8th digit
    assert all(fork <= parent + 1e-6 for parent, fork in result["values"]), result["values"]
    assert result["study_events"] == ["s.r1", "s.r1"]  # the fork, then the new space
    assert result["after_enqueue"] == 3  # the two re-scored and the enqueued one
    assert result["n"] == 5
    assert result["new_lrs"][0] == 1.5e-3  # the enqueued configuration runs first
    assert all(1e-3 <= lr <= 2e-3 for lr in result["new_lrs"]), result["new_lrs"]
    assert result["spec_space_low"] == 1e-3


def test_an_error_ends_the_run_and_is_raised_by_wait(tmp_path):
    result = run_headless(
        tmp_path,
        """
        tmp = sys.argv[1]
        tuner = make(tmp, params_fn={"total-timesteps": 1000, "mode": "crash"},
                     max_consecutive_failures=2)
        session = tuner.session(num_trials=5, num_seeds=1)
        session.subscribe(record)
        session.start()
        try:
            session.wait(120)
            raised = None
        except nbtune.TuningError as exc:
            raised = str(exc)
        result = {"state": session.state, "raised": raised,
                  "errors": [d["error"] for k, d in events if k == "error"]}
        """,
    )
    assert result["state"] == "error"
    assert result["raised"] and "in a row" in result["raised"]
    assert result["errors"] == [result["raised"]]


def test_bad_session_arguments_are_refused_before_anything_runs(make_tuner):
    import nbtune

    tuner = make_tuner()
    for kwargs, words in (
        ({"num_trials": 0}, "num_trials must be"),
        ({"num_seeds": -1}, "num_seeds must be"),
        ({"timeout": 0}, "timeout must be"),
    ):
        with pytest.raises(nbtune.ConfigError, match=words):
            tuner.session(**kwargs)
    with pytest.raises(nbtune.ConfigError, match="never ran in this study"):
        tuner.session(num_trials=1, num_seeds=1).retarget({"EnvC": [0, 1]})


def test_a_session_for_the_parent_follows_or_names_its_newest_fork(make_tuner):
    """After a target edit (a fork) and a restart, re-running the same cells loses nothing."""
    space = {"learning-rate": 1e-3, "total-timesteps": 1000}
    first = make_tuner(params_fn=space).session(num_trials=1, num_seeds=1)
    first.run()
    first.retarget({"EnvA": [0, 50], "EnvB": [-100, 0]})
    first.retarget({"EnvA": [0, 25], "EnvB": [-100, 0]})  # a fork of the fork

    again = make_tuner(params_fn=space).session(num_trials=1, follow_forks=True)
    assert again.study_name == "test.r1.r1"
    assert again.tuner.config.target_scores["EnvA"] == (0.0, 25.0)
    assert again.notes == [
        "continuing 'test.r1.r1', re-scored from 'test.r1' (the newest fork of 'test')"
    ]
    again.run()
    assert len(again.study.trials) == 2  # the re-scored trial and the new one

    plain = make_tuner(params_fn=space).session(num_trials=1)
    assert plain.study_name == "test"
    assert "has a newer fork, 'test.r1.r1'" in plain.notes[0]
