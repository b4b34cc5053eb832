"""TunerWidget, headless: driven through its methods, traits and buttons' ``.click()``.

The study always runs for real (the toy script as subprocesses); what the panel shows is checked
against what the storage holds.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from _support import IN_CI, skip_or_fail, wait_for
from optuna.trial import TrialState

try:
    import traitlets

    from nbtune.widgets import TunerWidget
except ImportError as exc:  # the widget stack is an extra; CI installs it
    if IN_CI:
        raise
    pytest.skip(
        f"the widget stack is not installed (pip install -e '.[widgets]'): {exc}",
        allow_module_level=True,
    )

from nbtune._results import trial_config, trial_flags
from nbtune._spec import StudySpec

LR = {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}


def _space(**fixed: Any) -> dict[str, Any]:
    return {"learning-rate": LR, "total-timesteps": 1000, **fixed}


@pytest.fixture
def make_widget(make_tuner: Callable[..., Any]) -> Iterator[Callable[..., TunerWidget]]:
    """Build widgets on toy tuners; close them (threads included) at the end."""
    made: list[TunerWidget] = []

    def make(num_trials: int = 2, num_seeds: int = 1, **tuner_kwargs: Any) -> TunerWidget:
        tuner_kwargs.setdefault("params_fn", _space())
        tuner_kwargs.setdefault("metric_last_n_average_window", 5)
        tuner_kwargs.setdefault("pruner", optuna.pruners.NopPruner())
        widget = TunerWidget(make_tuner(**tuner_kwargs), num_trials=num_trials, num_seeds=num_seeds)
        made.append(widget)
        return widget

    yield make
    for widget in made:
        widget.close()
        if widget.session is not None:
            with contextlib.suppress(Exception):  # a test's own error is its business
                widget.session.wait(30)


def _text(widget: Any) -> str:
    """The text of an HTML widget, unescaped."""
    return html.unescape(widget.value)


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def _running_trial(widget: TunerWidget) -> optuna.trial.FrozenTrial | None:
    study = widget.study
    assert study is not None
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return running[0] if running else None


# --------------------------------------------------------------------------------------------
# Import and parsing
# --------------------------------------------------------------------------------------------


_BLOCKED_IMPORT = """
import sys
for blocked in ("ipywidgets", "plotly", "anywidget"):
    saved = {name: sys.modules.pop(name) for name in list(sys.modules)
             if name == blocked or name.startswith(blocked + ".")}
    sys.modules[blocked] = None  # what Python does for a package that is not installed
    try:
        import nbtune.widgets
    except ImportError as exc:
        print(blocked, "->", exc)
    else:
        print(blocked, "-> imported")
    del sys.modules[blocked]
    sys.modules.update(saved)
"""


def test_missing_widget_stack_names_the_extra():
    out = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT], capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out
    for line, blocked in zip(lines, ("ipywidgets", "plotly", "anywidget"), strict=True):
        assert line.startswith(f"{blocked} -> nbtune.widgets needs"), line
        assert f"({blocked} is missing)" in line
        assert line.endswith('pip install "nbtune[widgets]"'), line


def test_field_parsing_takes_literals_and_never_evaluates(tmp_path):
    import doctest

    from nbtune.widgets import _literal

    assert doctest.testmod(_literal, optionflags=doctest.ELLIPSIS).failed == 0
    marker = tmp_path / "evaluated"
    with pytest.raises(_literal.FieldError, match="not a literal"):
        _literal.literal(f"open({str(marker)!r}, 'w')", bare_strings=True)
    with pytest.raises(_literal.FieldError, match="not a literal"):
        _literal.choices(f"__import__('pathlib').Path({str(marker)!r}).touch()")
    assert not marker.exists()
    assert _literal.literal("CartPole-v1", bare_strings=True) == "CartPole-v1"
    assert _literal.choices("(32, 64)") == [32, 64]
    with pytest.raises(_literal.FieldError, match="must be a number"):
        _literal.number("True")


def test_live_plot_sends_the_whole_figure_and_plotly_js_on_request(monkeypatch):
    import plotly.graph_objects as go

    from nbtune.widgets._js import LivePlot

    plot = LivePlot()
    fig = go.Figure(go.Scatter(x=np.arange(3), y=np.array([0.5, 0.25, 1.0])))
    fig.update_layout(title={"text": "T"})
    plot.draw(fig)
    (trace,) = plot.traces
    assert trace["type"] == "scatter" and "bdata" in trace["y"]  # numpy as a typed array
    assert plot.figure_layout["title"]["text"] == "T"
    sent: list[tuple[Any, Any]] = []
    monkeypatch.setattr(plot, "send", lambda content, buffers=None: sent.append((content, buffers)))
    plot._on_custom_message(plot, {"event": "plotly.js?"}, [])
    ((content, buffers),) = sent
    assert content == {"event": "plotly.js"}
    assert buffers[0].startswith(b"/**") and b"plotly.js" in buffers[0][:100]


# --------------------------------------------------------------------------------------------
# Editors: validation beside the fields, nothing applied
# --------------------------------------------------------------------------------------------


def test_target_editor_shows_errors_beside_fields_and_applies_nothing(make_widget, tmp_path):
    widget = make_widget()
    editor = widget._panel.targets_editor
    spec_before = widget.study.user_attrs["nbtune:spec"]
    env_a, env_b = editor.rows
    assert (env_a.env.value, env_a.low.value, env_a.high.value) == ("EnvA", "0.0", "100.0")

    env_a.high.value = "0"  # low == high
    marker = tmp_path / "evaluated"
    env_b.low.value = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    editor.apply.click()
    assert "low == high" in _text(env_a.message)
    assert "must be a number such as" in _text(env_b.message)
    assert "nothing was applied" in _text(editor.message)
    assert not marker.exists()

    env_a.high.value, env_b.low.value = "100", "-100"
    duplicate = editor.add_row("EnvA", [0, 1])
    editor.apply.click()
    assert "listed twice" in _text(duplicate.message)
    duplicate.remove.click()
    assert len(editor.rows) == 2

    editor.add.click()
    editor.rows[-1].env.value, editor.rows[-1].low.value = "EnvC", "0"
    editor.rows[-1].high.value = "1"
    editor.apply.click()
    assert "never ran in this study" in _text(editor.message)
    assert widget.study_name == "test"
    assert widget.study.user_attrs["nbtune:spec"] == spec_before

    with pytest.raises(traitlets.TraitError, match="low == high"):
        widget.targets = {"EnvA": [1, 1], "EnvB": [-100, 0]}
    with pytest.raises(traitlets.TraitError, match="must be finite"):
        widget.targets = {"EnvA": [5, float("inf")], "EnvB": [-100, 0]}
    with pytest.raises(traitlets.TraitError, match="must be one of average, median"):
        widget.aggregation = "mean"
    assert widget.targets == {"EnvA": [0.0, 100.0], "EnvB": [-100.0, 0.0]}
    assert widget.study_name == "test"


def test_space_editor_shows_errors_beside_fields_and_applies_nothing(make_widget):
    widget = make_widget(
        params_fn=_space(**{"num-minibatches": {"type": "int", "low": 1, "high": 8}})
    )
    editor = widget._panel.space_editor
    spec_before = widget.study.user_attrs["nbtune:spec"]
    lr, steps, minibatches = editor.rows
    assert (lr.kind.value, lr.low.value, lr.high.value, lr.log.value) == (
        "float",
        "1e-05",
        "0.1",
        True,
    )
    assert (steps.kind.value, steps.value.value) == ("fixed", "1000")
    assert (minibatches.kind.value, minibatches.low.value) == ("int", "1")

    lr.low.value = "0"  # log with low <= 0
    minibatches.high.value = "1"  # low >= high
    extra = editor.add_row("", None)
    extra.flag.value, extra.kind.value, extra.choices.value = "activation", "categorical", ""
    dup = editor.add_row("total-timesteps", 500)  # a flag twice
    seed = editor.add_row("seed", 3)  # nbtune sets it
    editor.apply.click()
    assert "needs low > 0" in _text(lr.message)
    assert "must be below high" in _text(minibatches.message)
    assert "at least one choice" in _text(extra.message)
    assert "listed twice" in _text(dup.message)
    assert "sets --seed itself" in _text(seed.message)
    assert steps.message.value == ""
    assert "nothing was applied" in _text(editor.message)
    assert widget.study.user_attrs["nbtune:spec"] == spec_before
    assert extra.choices.layout.display == "" and extra.low.layout.display == "none"

    with pytest.raises(traitlets.TraitError, match="space"):
        widget.space = {"learning-rate": {"type": "float", "low": 1, "high": 0}}
    assert widget.study.user_attrs["nbtune:spec"] == spec_before


# --------------------------------------------------------------------------------------------
# Running, live figures, re-scoring
# --------------------------------------------------------------------------------------------


def test_figures_show_the_storage_and_a_target_edit_rescores_every_trial(make_widget):
    widget = make_widget(num_trials=3)
    widget._panel.start_button.click()
    assert widget.state == "running"
    best = widget.wait(120)
    assert widget.state == "finished"
    parent = widget.study
    trials = parent.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert best.number == max(trials, key=lambda t: t.value).number
    _check_figures(widget, parent)
    assert widget.status.startswith("3/3 finished: 3 complete")
    assert "trial 2 complete" in widget._panel.log_html.value

    # Doubling EnvA's range halves its normalized score; "min" then picks it everywhere.
    editor = widget._panel.targets_editor
    editor.rows[0].high.value = "200"
    editor.aggregation.value = "min"
    editor.apply.click()
    assert "re-scored" in _text(editor.message), editor.message.value
    assert widget.study_name == "test.r1"
    assert widget.targets == {"EnvA": [0.0, 200.0], "EnvB": [-100.0, 0.0]}
    assert widget.aggregation == "min"
    fork = widget.study
    assert fork.study_name == "test.r1"
    assert fork.user_attrs["nbtune:parent"] == "test"
    for old, new in zip(trials, fork.get_trials(deepcopy=False), strict=True):
        raw = old.user_attrs["raw_scores"]
        expected = min(raw["EnvA"][0] / 200, (raw["EnvB"][0] + 100) / 100)
        assert new.value == pytest.approx(expected)
    _check_figures(widget, fork)
    assert "re-scored from" in widget._panel.header.value
    assert widget.state == "finished"  # nothing ran: nothing restarted


def _check_figures(widget: TunerWidget, study: optuna.Study) -> None:
    """Every figure and text of the panel equals what the storage holds."""
    widget.refresh()
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    figs = widget.figures
    hist = figs["history"].data
    np.testing.assert_array_equal(hist[0].x, [t.number for t in complete])
    np.testing.assert_allclose(hist[0].y, [t.value for t in complete])
    np.testing.assert_allclose(hist[2].y, np.maximum.accumulate([t.value for t in complete]))

    (parcoords,) = figs["parcoords"].data
    dims = {d["label"]: np.asarray(d["values"]) for d in parcoords.dimensions}
    np.testing.assert_allclose(dims["Normalized score"], [t.value for t in complete])
    np.testing.assert_allclose(
        dims["learning-rate"], [math.log10(t.params["learning-rate"]) for t in complete]
    )

    best = max(complete, key=lambda t: t.value)
    bars = figs["env_scores"].data
    assert bars[0].name.startswith(f"best #{best.number}")
    assert list(bars[0].x) == list(best.user_attrs["normalized_scores"])
    np.testing.assert_allclose(
        bars[0].y, [np.mean(v) for v in best.user_attrs["normalized_scores"].values()]
    )
    curves = {int(c.name.split("#")[1].split()[0]): c for c in figs["learning_curves"].data}
    for trial in complete:
        if trial.number in curves:
            steps = sorted(trial.intermediate_values)
            np.testing.assert_array_equal(curves[trial.number].x, steps)
            np.testing.assert_allclose(
                curves[trial.number].y, [trial.intermediate_values[s] for s in steps]
            )
    assert best.number in curves

    table = widget._panel.table.value
    for trial in trials:
        assert f'data-number="{trial.number}"' in table
    spec = StudySpec.from_json(study.user_attrs["nbtune:spec"])
    assert widget.best_command == shlex.join(trial_flags(best, spec))
    assert widget.best_params == trial_config(best, spec)
    assert widget._panel.copy_command.text == widget.best_command
    assert "learning-rate" in widget._panel.copy_dict.text


def test_a_target_edit_during_a_run_continues_in_the_fork(make_widget):
    widget = make_widget(
        num_trials=3,
        target_scores={"EnvA": [0, 100]},
        params_fn=_space(**{"log-sleep": 0.1}),
    )
    widget.start()
    wait_for(
        lambda: widget.study.get_trials(states=(TrialState.COMPLETE,)), what="a complete trial"
    )
    widget.targets = {"EnvA": [0, 50]}
    assert widget.study_name == "test.r1"
    assert widget.state == "running"
    widget.wait(120)
    assert widget.state == "finished"
    parent = optuna.load_study(study_name="test", storage=widget.tuner.storage)
    assert TrialState.RUNNING not in _states(parent)
    fork = widget.study
    complete = fork.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3  # the budget of the parent, finished in the fork
    assert TrialState.RUNNING not in _states(fork)
    for trial in complete:
        raw = trial.user_attrs["raw_scores"]["EnvA"][0]
        assert trial.value == pytest.approx(raw / 50)


def test_stop_leaves_no_trial_running_and_start_finishes_the_budget(make_widget):
    widget = make_widget(
        num_trials=2, target_scores={"EnvA": [0, 100]}, params_fn=_space(**{"log-sleep": 0.15})
    )
    widget.start()
    running = wait_for(lambda: _running_trial(widget), what="a running trial")
    assert not widget._panel.stop_button.disabled and widget._panel.start_button.disabled
    widget._panel.stop_button.click()
    assert widget.state in ("stopping", "stopped")
    assert widget.wait(60) is None
    assert widget.state == "stopped"
    assert TrialState.RUNNING not in _states(widget.study)
    stopped = widget.study.get_trials(deepcopy=False)[running.number]
    assert stopped.state == TrialState.FAIL
    assert "stopped" in widget._panel.status_html.value
    assert not widget._panel.start_button.disabled and widget._panel.stop_button.disabled

    widget._panel.start_button.click()  # finishes what is left of the budget, adds nothing
    widget.wait(120)
    assert widget.state == "finished"
    assert len(widget.study.get_trials(states=(TrialState.COMPLETE,))) == 2


def _process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_pause_freezes_experiments_and_resume_goes_on(make_widget, tmp_path):
    widget = make_widget(
        num_trials=1, target_scores={"EnvA": [0, 100]}, params_fn=_space(**{"log-sleep": 0.2})
    )
    widget.start()
    received = wait_for(lambda: list((tmp_path / "runs").rglob("received.json")), what="a script")
    pid = wait_for(lambda: _read_pid(received[0]), what="its pid")
    widget._panel.pause_button.click()
    assert widget.state == "paused" and widget._panel.pause_button.description == "Resume"
    wait_for(lambda: _process_state(pid) == "T", 10, "the script to be stopped (SIGSTOP)")
    time.sleep(0.5)
    assert _process_state(pid) == "T"
    widget._panel.pause_button.click()
    assert widget.state == "running" and widget._panel.pause_button.description == "Pause"
    wait_for(lambda: _process_state(pid) != "T", 10, "the script to continue")
    widget.wait(60)
    assert widget.state == "finished"
    assert [t.state for t in widget.study.trials] == [TrialState.COMPLETE]


def _read_pid(path: Path) -> int | None:
    try:
        return json.loads(path.read_text())["pid"]
    except (ValueError, KeyError, OSError):
        return None


def test_enqueue_from_the_panel(make_widget):
    widget = make_widget(num_trials=2, target_scores={"EnvA": [0, 100]})
    widget._panel.defaults_button.click()  # the toy's --help says learning-rate 0.00025
    widget._panel.enqueue_text.value = "{'learning-rate': 0.001}"
    widget._panel.enqueue_button.click()
    assert widget.error == ""
    widget._panel.enqueue_text.value = "__import__('os').getcwd()"
    widget._panel.enqueue_button.click()
    assert "not a literal dict" in widget.error
    waiting = widget.study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [
        {"learning-rate": 0.00025},
        {"learning-rate": 0.001},
    ]
    assert "2 waiting" in widget._panel.table.value
    widget.start()
    widget.wait(120)
    assert sorted(t.params["learning-rate"] for t in widget.study.trials) == [0.00025, 0.001]


def test_a_space_edit_applies_to_new_trials(make_widget):
    widget = make_widget(num_trials=1, target_scores={"EnvA": [0, 100]})
    widget.start()
    widget.wait(60)
    editor = widget._panel.space_editor
    editor.rows[0].high.value = "2e-5"
    editor.apply.click()
    assert editor.message.value.count("applied to new trials") == 1, editor.message.value
    assert "multivariate TPE" in editor.note.value
    study = widget.study
    spec = json.loads(study.user_attrs["nbtune:spec"])
    assert spec["space"]["learning-rate"]["high"] == 2e-5
    (old,) = study.user_attrs["nbtune:spec_history"]
    assert json.loads(old)["space"]["learning-rate"]["high"] == 0.1
    assert widget.space["learning-rate"]["high"] == 2e-5
    widget.num_trials = 2
    widget.start()
    widget.wait(120)
    new = study.get_trials(deepcopy=False)[1:]
    assert len(new) == 2
    assert all(1e-5 <= t.params["learning-rate"] <= 2e-5 for t in new)


def test_errors_of_the_tuning_thread_show_in_the_panel_and_are_raised_by_wait(make_widget):
    import nbtune

    widget = make_widget(
        num_trials=3,
        target_scores={"EnvA": [0, 100]},
        params_fn=_space(mode="crash"),
        max_consecutive_failures=2,
    )
    widget.start()
    with pytest.raises(nbtune.TuningError, match="in a row failed"):
        widget.wait(60)
    assert widget.state == "error"
    assert "TuningError" in widget._panel.error_html.value
    assert "toy crash on purpose" in widget._panel.failures.value
    assert TrialState.RUNNING not in _states(widget.study)
    assert not widget._panel.start_button.disabled


def test_watch_a_plain_optuna_study_read_only(tmp_path):
    storage = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(study_name="plain", storage=storage, direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("learning-rate", 1e-4, 1e-1, log=True)
        if trial.number == 2:
            raise ValueError("boom")
        for step in range(3):
            trial.report(x * step, step)
        return x

    study.optimize(objective, n_trials=4, catch=(ValueError,))
    widget = TunerWidget.watch(storage, "plain")
    try:
        assert widget.state == "watching"
        assert widget.tuner is None and widget.study is None
        assert widget._panel.controls.layout.display == "none"
        assert widget._panel.editors.layout.display == "none"
        assert widget.targets == {} and widget.space is None
        complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
        np.testing.assert_allclose(widget.figures["history"].data[0].y, [t.value for t in complete])
        assert len(widget.figures["env_scores"].data) == 0  # no per-environment scores
        assert widget.best_params == study.best_params
        assert widget.best_command.startswith("python SCRIPT --learning-rate=")
        assert "trial 2</b>: failed" in widget._panel.failures.value
        with pytest.raises(RuntimeError, match="read-only"):
            widget.start()

        study.optimize(objective, n_trials=1)  # another process feeds the study
        widget.refresh()
        assert len(widget.figures["history"].data[0].x) == len(complete) + 1
    finally:
        widget.close()


# --------------------------------------------------------------------------------------------
# In a real kernel: threads never print into the running cell, the kernel stays responsive
# --------------------------------------------------------------------------------------------

_KERNEL_SETUP = """
import sys, time
import nbtune
from nbtune.widgets import TunerWidget

def params_fn(trial):
    print("PRINTED-BY-THE-TUNING-THREAD", flush=True)
    return {{
        "learning-rate": trial.suggest_float("learning-rate", 1e-5, 1e-1, log=True),
        "total-timesteps": 1000,
        "log-sleep": 0.1,
    }}

tuner = nbtune.Tuner(
    script={script!r}, metric="charts/episodic_return", target_scores={{"EnvA": [0, 100]}},
    params_fn=params_fn, metric_last_n_average_window=5, storage={storage!r},
    study_name="kernel", runs_dir={runs!r}, n_slots=1,
)
widget = TunerWidget(tuner, num_trials=3, num_seeds=1)
"""


@pytest.mark.slow
def test_in_a_kernel_threads_never_print_into_the_running_cell(tmp_path, toy_script):
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        skip_or_fail("jupyter_client is not installed (pip install -e '.[test]')")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:

        def run(code: str) -> tuple[list[tuple[str, Any]], float]:
            started = time.monotonic()
            msg_id = kc.execute(code)
            out = []
            while True:
                msg = kc.get_iopub_msg(timeout=180)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind in ("stream", "error", "execute_result", "display_data"):
                    out.append((kind, content))
                if kind == "status" and content["execution_state"] == "idle":
                    return out, time.monotonic() - started

        setup = _KERNEL_SETUP.format(
            script=str(toy_script),
            storage=f"sqlite:///{tmp_path / 'k.db'}",
            runs=str(tmp_path / "runs"),
        )
        out, _ = run(setup)
        assert not [o for o in out if o[0] == "error"], out
        # display() returns the widget: shown once, not again as the cell's result.
        out, _ = run("widget.display()")
        views = [o for o in out if "application/vnd.jupyter.widget-view+json" in o[1]["data"]]
        assert len(views) == 1 and [o[0] for o in out] == ["display_data"], out
        out, _ = run("widget.start(); None")
        assert out == []
        out, seconds = run("1 + 1")
        assert out[-1][1]["data"]["text/plain"] == "2"
        assert seconds < 5.0  # generous: the machine is shared; typically ~50 ms
        out, _ = run("time.sleep(2.5); 'slept'")
        assert [o[0] for o in out] == ["execute_result"], out  # no thread output leaked here
        out, _ = run("widget.wait(); widget.state")
        assert [o[0] for o in out] == ["execute_result"], out
        assert out[-1][1]["data"]["text/plain"] == "'finished'"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
