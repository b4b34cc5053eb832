"""Validating from the panel, for :class:`~nbtune.widgets.TunerWidget`.

*Validate* re-runs the best configurations on fresh seeds (:meth:`nbtune.TuningSession.validate`)
in a study of its own, which the tuned study names in its user attributes. The widget's side of
it is one job with its own state, the validation study's view, so it lives here rather than
among the widget's traits: start the run with the panel's settings, wait for it, mirror its
events (state, log lines, errors) in the traits and the panel, and read the validation study at
each refresh to draw the winner's-curse chart and the recommendation. The widget's
:meth:`~nbtune.widgets.TunerWidget.validate`, ``wait_validation`` and ``validation_report``
delegate here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from nbtune._attrs import VALIDATION_STUDY
from nbtune._output import quiet_optuna
from nbtune._session import SessionEvent, TuningSession
from nbtune._study_view import StudyView
from nbtune._validation import ValidationReport
from nbtune.widgets import _render
from nbtune.widgets._kernel import bind_thread_output, current_parent
from nbtune.widgets._live import LiveStudy
from nbtune.widgets._panel import Panel

if TYPE_CHECKING:  # the widget imports this module
    from nbtune.widgets._widget import TunerWidget


class ValidationPanel:
    """The validation run as the panel shows it: started here, read at each refresh.

    Args:
        widget: The widget whose traits (``validation_state``, ``validation``, ``error``)
            mirror the validation run.
        panel: The panel: its *Validate* settings and the winner's-curse chart.
        live: The study shown: its lock (held for every change of the panel), log and refresher.
        draw_controls: Redraws the panel's buttons (*Start* and *Validate* are disabled while a
            validation runs).
    """

    def __init__(
        self,
        widget: TunerWidget,
        panel: Panel,
        live: LiveStudy,
        draw_controls: Callable[[], None],
    ) -> None:
        self._widget = widget
        self._panel = panel
        self._live = live
        self._draw_controls = draw_controls
        self._view: StudyView | None = None

    def start(self, session: TuningSession, top_k: int | None, num_seeds: int | None) -> None:
        """Start the validation in the background (see ``TunerWidget.validate``)."""
        panel = self._panel
        top_k = panel.top_k_input.value if top_k is None else top_k
        num_seeds = panel.fresh_seeds_input.value if num_seeds is None else num_seeds
        self._widget.error = ""
        parent = current_parent()
        with quiet_optuna():  # "[I ...] A new study created" would print into the cell
            session.validate(
                top_k, num_seeds, background=True, thread_setup=lambda: bind_thread_output(parent)
            )
        with self._live.lock:
            self._view = StudyView(session.tuner.storage, session.validation_study_name)
        self._widget.refresh()
        self._live.ensure_refresher()

    def start_from_panel(self) -> None:
        """The *Validate* button: validate with the panel's settings."""
        self._widget.validate(self._panel.top_k_input.value, self._panel.fresh_seeds_input.value)

    def wait(self, timeout: float | None) -> ValidationReport | None:
        """Block until the validation run ends (see ``TunerWidget.wait_validation``)."""
        session = self._widget.session
        try:
            if session is not None and session.validation is not None:
                session.validation.wait(timeout)
        finally:
            self._widget.refresh()
        return self.report

    @property
    def report(self) -> ValidationReport | None:
        """The validation as of the last refresh, or ``None`` before any."""
        with self._live.lock:
            view = self._view
            return None if view is None else ValidationReport.from_view(view)

    def running(self) -> bool:
        """Whether a validation run is going on (running, paused or stopping)."""
        session = self._widget.session
        validation = None if session is None else session.validation
        return validation is not None and validation.state in ("running", "paused", "stopping")

    def on_event(self, event: SessionEvent) -> None:
        """Mirror the validation run: its state, log lines and errors."""
        if event.kind == "state":
            state = event.data["state"]
            with self._live.lock:
                self._widget.validation_state = state
                self._draw_controls()
            if state in ("stopped", "finished", "error"):
                with contextlib.suppress(Exception):
                    self._widget.refresh()
        elif event.kind == "log":
            self._live.log(f"validation: {event.data['line']}")
        elif event.kind == "error":
            with self._live.lock:
                self._widget.error = _render.error_text(event.data["error"])

    def forget(self) -> None:
        """Drop the validation shown (call with the lock): a fork is validated on its own."""
        self._view = None

    def find(self, study: StudyView) -> None:
        """Open the validation study's view once ``study`` records one (call with the lock)."""
        if self._view is not None:
            return
        name = study.user_attrs.get(VALIDATION_STUDY)
        if isinstance(name, str):
            with contextlib.suppress(Exception):
                self._view = StudyView(study.storage, name)

    def draw(self, force: bool) -> None:
        """Read the validation study and redraw its chart if it changed (call with the lock).

        Args:
            force: Redraw even if nothing changed (and clear the chart when there is none).
        """
        view = self._view
        if view is None:
            if force:
                self._panel.draw_validation(None)
            return
        try:
            result = view.refresh()
        except Exception as exc:
            self._live.log(f"cannot read the validation: {type(exc).__name__}: {exc}")
            return
        if force or result:
            state = self._widget.validation_state if self.running() else ""
            statement = self._panel.draw_validation(view, state)
            if statement != self._widget.validation:
                self._widget.validation = statement
