"""The panel of :class:`~nbtune.widgets.TunerWidget`: its ipywidgets, their layout, and drawing.

The panel holds no state of the run and reads nothing on its own: the widget tells it what to
show (a :class:`~nbtune.StudyView` to draw, the run's state, log lines), and wires its buttons
to the run controller. Each figure is created once and updated in place by the
compute-then-draw functions of :mod:`nbtune.plots`, then drawn by one
:class:`~nbtune.widgets._js.LivePlot` (see that module for why not plotly's FigureWidget).
"""

from __future__ import annotations

import pprint
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from nbtune import plots
from nbtune._space import SearchSpace
from nbtune._study_view import StudyView
from nbtune.widgets import _render
from nbtune.widgets._editors import SpaceEditor, TargetsEditor
from nbtune.widgets._js import CopyButton, LivePlot

#: States in which a run is going on (Start is disabled).
ACTIVE = ("running", "paused", "stopping")
FIGURE_HEIGHT = 300
#: The live figures and the CSS class of each one's box.
FIGURES = {
    "history": "nbtune-history",
    "env_scores": "nbtune-env-scores",
    "parcoords": "nbtune-parcoords",
    "learning_curves": "nbtune-learning-curves",
    "winners_curse": "nbtune-winners-curse",
    "importance": "nbtune-importance",
}


def _figure(name: str) -> go.Figure:
    fig = go.Figure()
    top = 80 if name == "parcoords" else 40  # room for the axis labels under the title
    fig.update_layout(
        height=FIGURE_HEIGHT,  # the browser draws it that high, as wide as the panel allows
        margin={"l": 55, "r": 20, "t": top, "b": 40},
        template="plotly_white",
        uirevision="nbtune",  # zoom and pan survive updates
    )
    return fig


def _html(css: str) -> W.HTML:
    widget = W.HTML()
    widget.add_class(css)
    return widget


def _button(description: str, icon: str, css: str, style: str = "") -> W.Button:
    button = W.Button(description=description, icon=icon, button_style=style)
    button.add_class(css)
    return button


def _row(children: Sequence[W.Widget]) -> W.HBox:
    return W.HBox(children, layout=W.Layout(flex_flow="row wrap", align_items="center"))


class Panel:
    """The panel's widgets, laid out; methods draw what the widget hands them.

    Args:
        apply_targets: Called by the targets editor's *Apply* with the edited targets and
            aggregation; returns a line saying what happened.
        apply_space: Called by the space editor's *Apply* with the edited space.
        reserved_flags: Flags the space may not sample (the environment and seed flags).
    """

    def __init__(
        self,
        apply_targets: Callable[[dict[str, list[float] | None], str], str],
        apply_space: Callable[[SearchSpace], str],
        reserved_flags: Sequence[str] = (),
    ) -> None:
        self.header = _html("nbtune-header")
        self.status_html = _html("nbtune-status")
        self.progress = _html("nbtune-progress")
        self.error_html = _html("nbtune-error")

        self.start_button = _button("Start", "play", "nbtune-start", "success")
        self.pause_button = _button("Pause", "pause", "nbtune-pause")
        self.stop_button = _button("Stop", "stop", "nbtune-stop", "danger")
        self.trials_input = W.BoundedIntText(
            min=1, max=1_000_000, description="trials", layout=W.Layout(width="150px")
        )
        self.trials_input.add_class("nbtune-num-trials")
        self.seeds_input = W.BoundedIntText(
            min=1, max=10_000, description="seeds", layout=W.Layout(width="150px")
        )
        self.seeds_input.add_class("nbtune-num-seeds")
        self.cluster_text = W.Text(
            placeholder="here, or a Dask scheduler: tcp://host:8786",
            description="cluster",
            layout=W.Layout(width="320px"),
        )
        self.cluster_text.add_class("nbtune-cluster")
        self.workers_html = _html("nbtune-workers")
        self.enqueue_text = W.Text(
            placeholder='{"learning-rate": 0.00025}', layout=W.Layout(width="260px")
        )
        self.enqueue_text.add_class("nbtune-enqueue-params")
        self.enqueue_button = _button("Enqueue", "plus", "nbtune-enqueue")
        self.defaults_button = _button("Enqueue defaults", "plus", "nbtune-enqueue-defaults")
        self.validate_button = _button("Validate", "check", "nbtune-validate", "info")
        self.top_k_input = W.BoundedIntText(
            value=5, min=1, max=1000, description="top k", layout=W.Layout(width="150px")
        )
        self.top_k_input.add_class("nbtune-validate-top-k")
        self.fresh_seeds_input = W.BoundedIntText(
            value=10, min=1, max=10_000, description="fresh seeds", layout=W.Layout(width="180px")
        )
        self.fresh_seeds_input.add_class("nbtune-validate-seeds")
        self.controls = W.VBox(
            [
                _row(
                    [
                        self.start_button,
                        self.pause_button,
                        self.stop_button,
                        self.trials_input,
                        self.seeds_input,
                        self.cluster_text,
                    ]
                ),
                _row([self.enqueue_text, self.enqueue_button, self.defaults_button]),
                _row([self.validate_button, self.top_k_input, self.fresh_seeds_input]),
            ]
        )
        self.controls.add_class("nbtune-controls")

        self.figures = {name: _figure(name) for name in FIGURES}
        self.plots = {name: LivePlot(height=FIGURE_HEIGHT) for name in FIGURES}
        boxes = []
        for name, css in FIGURES.items():
            # Two charts a row where they fit at 420 px or more each, else one filling the row.
            box = W.Box([self.plots[name]], layout=W.Layout(flex="1 1 420px", min_width="0"))
            box.add_class(css)
            box.add_class("nbtune-figure")
            boxes.append(box)
        charts = W.HBox(boxes[:4], layout=W.Layout(flex_flow="row wrap", width="100%"))
        self.validation_html = _html("nbtune-validation")
        validation = W.VBox(
            [
                W.HTML("<b>Validation on fresh seeds</b>"),
                self.validation_html,
                W.HBox(boxes[4:], layout=W.Layout(flex_flow="row wrap", width="100%")),
            ]
        )
        validation.add_class("nbtune-validation-box")

        self.best_command_html = _html("nbtune-best-command")
        self.best_dict_html = _html("nbtune-best-dict")
        self.copy_command = CopyButton(label="Copy command")
        self.copy_command.add_class("nbtune-copy-command")
        self.copy_dict = CopyButton(label="Copy dict")
        self.copy_dict.add_class("nbtune-copy-dict")
        best = W.VBox(
            [
                W.HTML("<b>Best configuration</b>"),
                W.HBox([self.copy_command, self.copy_dict]),
                self.best_command_html,
                self.best_dict_html,
            ]
        )
        best.add_class("nbtune-best")

        self.targets_editor = TargetsEditor(apply_targets)
        self.space_editor = SpaceEditor(apply_space, list(reserved_flags))
        self.space_note = W.HTML()
        self.editors = W.Accordion(
            children=[self.targets_editor.box, W.VBox([self.space_note, self.space_editor.box])],
            titles=("Target scores", "Search space"),
            selected_index=0,
        )
        self.editors.add_class("nbtune-editors")

        self.table = _html("nbtune-trials")
        self.failures = _html("nbtune-failures")
        self.log_html = _html("nbtune-log")
        self.box = W.VBox(
            [
                self.header,
                self.status_html,
                self.progress,
                self.workers_html,
                self.controls,
                self.error_html,
                charts,
                best,
                validation,
                self.editors,
                W.HTML("<b>Trials</b>"),
                self.table,
                self.failures,
                W.HTML("<b>Log</b>"),
                self.log_html,
            ],
            layout=W.Layout(width="100%"),
        )
        self.box.add_class("nbtune-panel")
        self._drawn_status = ""

    # ------------------------------------------------------------------------------ drawing
    def draw_view(
        self,
        view: StudyView,
        best_command: str,
        best_params: dict[str, Any],
        warning: str = "",
    ) -> None:
        """Redraw every figure, the table, the failures and the best configuration.

        ``warning`` is shown above the best command (a definition that is not signed).
        """
        figs = self.figures
        plots.update_history_figure(figs["history"], plots.get_history_info(view))
        plots.update_env_scores_figure(figs["env_scores"], plots.get_env_scores_info(view))
        plots.update_parcoords_figure(figs["parcoords"], plots.get_parcoords_info(view))
        plots.update_learning_curves_figure(
            figs["learning_curves"], plots.get_learning_curves_info(view)
        )
        plots.update_importance_figure(figs["importance"], plots.get_importance_info(view))
        for name, fig in figs.items():
            if name != "winners_curse":
                self.plots[name].draw(fig)
        self.table.value = _render.trials_table_html(view)
        self.failures.value = _render.failures_html(view)
        if best_command:
            note = (
                f"<p class='nbtune-untrusted'>&#9888; {_render.esc(warning)}</p>" if warning else ""
            )
            self.best_command_html.value = note + _render.code_html(best_command)
            text = pprint.pformat(best_params, sort_dicts=False, width=90)
            self.best_dict_html.value = _render.code_html(text)
            self.copy_command.text = best_command
            self.copy_dict.text = text
        else:
            self.best_command_html.value = "<i>No complete trial yet.</i>"
            self.best_dict_html.value = ""

    def draw_validation(self, view: StudyView | None, state: str = "") -> str:
        """Draw the validation of the study (``view``: its validation study, or ``None``).

        The winner's-curse chart fills in as the validation's runs end: each configuration's
        interval is over the runs done so far until it is complete.

        Returns:
            The recommendation in words ("" when not validated).
        """
        if view is None:
            self.validation_html.value = (
                "<i>Not validated yet: <b>Validate</b> re-runs the top k configurations on fresh "
                "seeds, never used in tuning, and compares what tuning said with what they "
                "say.</i>"
            )
            info = plots.WinnersCurseInfo.empty()
        else:
            # rliable's 50,000 resamples, as the report: the panel says what the export says.
            info = plots.get_winners_curse_info(view)
            running = f" ({_render.esc(state)})" if state else ""
            lines = "".join(f"<li>{_render.esc(line)}</li>" for line in info.lines)
            self.validation_html.value = (
                f"<p class='nbtune-validation-statement'>{_render.esc(info.statement)}"
                f"{running}</p><ul>{lines}</ul>"
            )
        fig = self.figures["winners_curse"]
        plots.update_winners_curse_figure(fig, info)
        self.plots["winners_curse"].draw(fig)
        return "" if view is None else info.statement

    def draw_running(self, view: StudyView) -> None:
        """Redraw what changes while trials run: learning curves and the table."""
        curves = self.figures["learning_curves"]
        plots.update_learning_curves_figure(curves, plots.get_learning_curves_info(view))
        self.plots["learning_curves"].draw(curves)
        self.table.value = _render.trials_table_html(view)

    def draw_status(self, state: str, view: StudyView) -> str:
        """Draw the status line and progress; return the status as plain text."""
        info = plots.get_status_info(view)
        html = _render.status_html(state, info, view.study_name)
        if html != self._drawn_status:
            self._drawn_status = html
            self.status_html.value = html
            self.progress.value = _render.progress_html(info)
        return plots.format_status(info)

    def draw_controls(self, state: str, seeds_stored: bool, validating: bool = False) -> None:
        """Enable the buttons that make sense in ``state`` (and while a validation runs)."""
        watching = state == "watching"
        self.controls.layout.display = "none" if watching else ""
        active = state in ACTIVE
        with self.start_button.hold_sync():
            self.start_button.disabled = active or watching
        with self.pause_button.hold_sync():
            self.pause_button.disabled = state not in ("running", "paused")
            paused = state == "paused"
            self.pause_button.description = "Resume" if paused else "Pause"
            self.pause_button.icon = "play" if paused else "pause"
        self.stop_button.disabled = state not in ("running", "paused")
        self.seeds_input.disabled = active or seeds_stored
        self.validate_button.disabled = active or validating
        self.cluster_text.disabled = active

    def draw_definition(
        self,
        *,
        view: StudyView,
        targets: dict[str, Any],
        aggregation: str,
        space: dict[str, Any] | None,
        space_note: str,
        read_only: bool,
        parent: str | None,
    ) -> None:
        """Show the study's definition: header, targets and space editors."""
        self.targets_editor.set_values(targets, aggregation)
        if space is not None:
            self.space_editor.set_values(SearchSpace.from_dict(space))
            self.space_note.value = ""
            self.space_editor.box.layout.display = ""
        else:
            note = space_note or "the study records no search space"
            self.space_note.value = (
                f"<i>The search space cannot be edited here: {_render.esc(note)}.</i>"
            )
            self.space_editor.box.layout.display = "none"
        self.targets_editor.box.layout.display = "" if targets else "none"
        self.targets_editor.set_disabled(read_only)
        self.space_editor.set_disabled(read_only)
        if not targets and space is None:
            self.editors.layout.display = "none"
        where = _render.esc(view.storage_description)
        fork = f" (re-scored from <b>{_render.esc(parent)}</b>)" if parent else ""
        self.header.value = (
            f"<b>nbtune</b> &middot; study <b>{_render.esc(view.study_name)}</b>{fork} "
            f"&middot; <small>{where}</small>"
        )

    def draw_workers(self, workers: Sequence[dict[str, Any]]) -> None:
        """Show where work runs: each Dask worker, its slots, what it runs now."""
        rows = []
        for w in workers:
            running = ", ".join(f"#{n}" for n in w["running"]) or "nothing"
            rows.append(
                f"<li><code>{_render.esc(w['address'])}</code> on {_render.esc(w['host'])}: "
                f"{int(w['slots'])} slot(s), {_render.esc(w['state'])}, running "
                f"{_render.esc(running)}</li>"
            )
        self.workers_html.value = f"<b>Where work runs</b><ul>{''.join(rows)}</ul>" if rows else ""

    def draw_log(self, lines: Iterable[str]) -> None:
        """Show the log lines, newest last."""
        self.log_html.value = _render.log_html(lines)

    def draw_error(self, text: str) -> None:
        """Show an error ("" clears it)."""
        self.error_html.value = _render.error_html(text)

    def close(self) -> None:
        """Close every widget of the panel."""
        _close_tree(self.box)


def _close_tree(widget: W.Widget) -> None:
    """Close a widget and every widget inside it."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()
