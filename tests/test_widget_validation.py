"""The widget's Validate control, winner's-curse panel and importance chart (issue 18), headless."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import optuna
import pytest
from _support import IN_CI

try:
    from nbtune.widgets import TunerWidget
except ImportError as exc:  # the widget stack is an extra; CI installs it
    if IN_CI:
        raise
    pytest.skip(f"the widget stack is not installed: {exc}", allow_module_level=True)

SPACE = {
    "learning-rate": {"type": "categorical", "choices": [5e-4, 7e-4, 1e-3]},
    "anneal-lr": False,
    "noise": 0.1,
    "log-hparams": True,
    "total-timesteps": 1000,
}


@pytest.fixture
def widget(make_tuner: Callable[..., Any]) -> Iterator[TunerWidget]:
    tuner = make_tuner(
        params_fn=SPACE,
        metric_last_n_average_window=5,
        pruner=optuna.pruners.NopPruner(),
        n_slots=2,
    )
    for lr in SPACE["learning-rate"]["choices"]:  # type: ignore[index]
        tuner.enqueue({"learning-rate": lr})
    made = TunerWidget(tuner, num_trials=3, num_seeds=1)
    yield made
    made.close()
    with contextlib.suppress(Exception):
        made.session.wait(30)  # type: ignore[union-attr]
        made.wait_validation(30)


def test_validate_fills_the_winners_curse_panel_and_importance(widget):
    panel = widget._panel
    assert "Not validated yet" in panel.validation_html.value
    panel.validate_button.click()  # nothing complete yet: the error shows, nothing runs
    assert "no complete trial" in widget.error
    panel.start_button.click()
    widget.wait(120)
    assert widget.state == "finished"
    importance = widget.figures["importance"]
    assert "3 complete trials" in importance.layout.title.text

    panel.top_k_input.value = 2
    panel.fresh_seeds_input.value = 3
    panel.validate_button.click()
    assert widget.error == ""
    assert widget.validation_state in ("running", "finished")
    report = widget.wait_validation(120)
    assert widget.validation_state == "finished"
    assert report is not None and report.complete and len(report.configurations) == 2
    assert report.seeds == (1, 2, 3)
    widget.refresh()
    fig = widget.figures["winners_curse"]
    tuning, fresh = fig.data
    assert list(tuning.x) == [f"#{c.trial}" for c in report.configurations]
    np.testing.assert_allclose(fresh.y, [c.iqm.value for c in report.configurations])
    assert "tuning said" in fig.layout.title.text
    assert widget.validation == report.statement
    text = html.unescape(panel.validation_html.value)
    assert report.statement in text and "fresh seeds say" in text
    assert "validation: finished" in panel.log_html.value

    watcher = TunerWidget.watch(widget.tuner.storage, widget.study_name)
    try:
        assert len(watcher.figures["winners_curse"].data[0].x) == 2
        assert watcher.validation == report.statement
    finally:
        watcher.close()


def test_validate_is_refused_while_the_study_runs(widget):
    widget.num_trials = 3
    widget.start()
    widget._panel.validate_button.click()
    assert "stop it or wait for it before validating" in widget.error
    widget.wait(120)
