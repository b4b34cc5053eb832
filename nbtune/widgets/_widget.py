"""``TunerWidget``: edit, run and watch an nbtune study live in a notebook.

How it is built:

* The study's storage is the one source of truth. The panel is a view over it: a refresher
  thread (1 Hz by default) refreshes a :class:`~nbtune.StudyView` and redraws what changed, with
  the compute-then-draw functions of :mod:`nbtune.plots` (each plotly figure is created once and
  updated in place with numpy arrays, batched; a small anywidget draws its whole state in the
  browser, see :mod:`nbtune.widgets._js`). Nothing reads the tuning thread's state.
* The widget runs nothing itself: it drives a :class:`~nbtune.TuningSession` (the run
  controller that scripts and the CLI use too), which runs the study in a background thread, its
  experiments in subprocesses, so ``display()`` returns at once and the kernel stays free. The
  session's events (state, log lines, errors, a move to a fork) update the traits.
* Layout and drawing live in :mod:`nbtune.widgets._panel`, the live reading of the storage
  (refresher thread, log) in :mod:`nbtune.widgets._live`, applying edits of the definition in
  :mod:`nbtune.widgets._definition`, and validating from the panel in
  :mod:`nbtune.widgets._validation_panel`; this module holds traits and wiring.
* Widget state lives in traitlets: the run ``state``, the applied ``targets``, ``aggregation``
  and ``space``, ``num_trials``, ``num_seeds``, ``error`` and ``status``. Setting ``targets`` or
  ``space`` (from code or the editors' *Apply* buttons) is validated, then applied.
* Threads: observers run on the thread that sets a trait, so every change of the panel's widgets
  and figures happens under one lock.
  Background threads never ``display()`` and never print into the running cell (see
  :mod:`nbtune.widgets._kernel`): the Tuner runs quietly, and the panel's log is built from the
  storage.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
from collections.abc import Mapping
from typing import Any

import optuna
import plotly.graph_objects as go
import traitlets
from optuna.trial import FrozenTrial

from nbtune._errors import ConfigError
from nbtune._output import quiet_optuna
from nbtune._results import trial_config, trial_flags
from nbtune._session import SessionEvent, TuningSession
from nbtune._study_view import RefreshResult, StudyView
from nbtune._tuner import Tuner
from nbtune._validation import ValidationReport
from nbtune.widgets import _render
from nbtune.widgets._definition import (
    DefinitionEditor,
    checked_aggregation,
    checked_count,
    checked_space,
    checked_targets,
)
from nbtune.widgets._kernel import bind_thread_output, current_parent, execution_count
from nbtune.widgets._literal import FieldError, params_literal
from nbtune.widgets._live import LiveStudy
from nbtune.widgets._panel import Panel
from nbtune.widgets._validation_panel import ValidationPanel

RUN_STATES = tuple(_render.RUN_STATES)


class TunerWidget(traitlets.HasTraits):
    """A notebook panel to edit, run and watch an nbtune study live.

    ``TunerWidget(tuner, num_trials=20, num_seeds=3).display()`` shows the panel and returns at
    once. From it the user edits the target scores (every finished trial is re-scored exactly,
    in a fork of the study) and the search space (for new trials), starts, pauses, resumes and
    stops the study, enqueues configurations, and watches the study update live: the score of
    each trial and the best so far, parallel coordinates, per-environment scores of the best
    trials, learning curves, a trial table, progress with ETA, failures with their stderr, and
    the best configuration as a command line and as a dict, each with a copy button. *Validate*
    re-runs the top k configurations on fresh seeds (:meth:`validate`); the winner's-curse chart
    (tuning score beside fresh-seed IQM and interval) fills in while it runs, beside the
    parameter importances.

    The same actions are methods (:meth:`start`, :meth:`pause`, :meth:`resume`, :meth:`stop`,
    :meth:`wait`, :meth:`enqueue`, :meth:`enqueue_defaults`) and traits (``targets``, ``space``),
    so notebooks and tests run it without clicks. :meth:`watch` attaches read-only to any study.

    The widget runs the Tuner quietly (its ``verbose`` and ``progress_bar`` are turned off): the
    panel shows the progress, and nothing is printed into other cells.

    Args:
        tuner: The study to run.
        num_trials: Trials the *Start* button adds to the study (editable in the panel). After
            *Stop*, *Start* first finishes what is left of the study's budget.
        num_seeds: Seeds per environment (default: the Tuner's, else the study's, else 1).
        timeout: Seconds after which a run stops starting trials (running ones finish).
        refresh_interval: Seconds between reads of the storage.
        cluster: Run the experiments on a Dask cluster (a scheduler address, a
            ``distributed.Client`` or a cluster object; default: the Tuner's). The panel's
            *cluster* field takes an address too; *Where work runs* then lists each Dask worker,
            its slots and the trials it runs.

    Attributes:
        state: ``"idle"``, ``"running"``, ``"paused"``, ``"stopping"``, ``"stopped"``,
            ``"finished"``, ``"error"``, or ``"watching"`` (read-only).
        study_name: The study shown (a target edit moves to a fork: ``name.r1``, ...).
        targets: Applied target scores, ``{env_id: [low, high] | None}``; setting them
            re-scores the study into a fork.
        aggregation: Applied aggregation across environments; setting it re-scores too.
        space: Applied search space in its dict form (``SearchSpace.to_dict()``), or ``None``
            when ``params_fn`` is not declarative; setting it applies to new trials.
        num_trials: Trials *Start* adds.
        num_seeds: Seeds per environment, or ``None`` until known.
        error: The last error of the tuning thread or of an action, as text ("" if none).
        status: One line: counts, best value, ETA.
        validation_state: The validation run's state (``""`` before any, then ``"running"``,
            ``"finished"``, ...).
        validation: The validation's recommendation in words ("" before any).

    Example:
        >>> import nbtune
        >>> from nbtune.widgets import TunerWidget
        >>> tuner = nbtune.Tuner(...)  # doctest: +SKIP
        >>> panel = TunerWidget(tuner, num_trials=20, num_seeds=2).display()  # doctest: +SKIP
        >>> panel.start()  # doctest: +SKIP
    """

    state = traitlets.Enum(RUN_STATES, default_value="idle")
    study_name = traitlets.Unicode("")
    targets = traitlets.Dict()
    aggregation = traitlets.Unicode("average")
    space = traitlets.Dict(allow_none=True, default_value=None)
    num_trials = traitlets.Int(10)
    num_seeds = traitlets.Int(None, allow_none=True)
    error = traitlets.Unicode("")
    status = traitlets.Unicode("")
    validation_state = traitlets.Unicode("")
    validation = traitlets.Unicode("")

    def __init__(
        self,
        tuner: Tuner,
        num_trials: int = 10,
        num_seeds: int | None = None,
        *,
        timeout: float | None = None,
        refresh_interval: float = 1.0,
        cluster: Any = None,
    ) -> None:
        if not isinstance(tuner, Tuner):
            raise TypeError(
                f"TunerWidget needs an nbtune.Tuner, got {type(tuner).__name__}; to look at an "
                "existing study, use TunerWidget.watch(storage, study_name)."
            )
        super().__init__()
        # The panel shows progress; nothing prints from threads.
        tuner = tuner.replace(verbose=False, progress_bar=False)
        # Opens the study (refusing a mismatched one) and settles the seeds with it.
        # A kernel restart re-runs the cells that made the parent: continue its newest fork.
        # Optuna's "[I ...] A new study created" would print above the panel: kept out.
        with quiet_optuna():
            session = TuningSession(
                tuner, num_trials, num_seeds, timeout=timeout, follow_forks=True, cluster=cluster
            )
        view = StudyView(tuner.storage, session.study_name)
        self._setup(session, view, num_trials, refresh_interval)
        if isinstance(session.cluster, str):
            self._panel.cluster_text.value = session.cluster

    @classmethod
    def watch(
        cls,
        storage: Any,
        study_name: str | None = None,
        *,
        refresh_interval: float = 1.0,
    ) -> TunerWidget:
        """Attach read-only to an existing study: any Optuna study, fed from anywhere.

        Studies not created by nbtune (a CleanRL or plain Optuna study) show what they have:
        values, parameters and intermediate values; per-environment scores, failure reasons and
        editors appear only when the study records them.

        Args:
            storage: A database URL, a journal file path, or an Optuna storage.
            study_name: The study; ``None`` when the storage holds only one.
            refresh_interval: Seconds between reads of the storage.

        Returns:
            The widget (call :meth:`display`).
        """
        view = StudyView(storage, study_name)
        self = cls.__new__(cls)
        traitlets.HasTraits.__init__(self)
        self._setup(None, view, 10, refresh_interval)
        return self

    # ----------------------------------------------------------------------------------------
    # Construction
    # ----------------------------------------------------------------------------------------
    def _setup(
        self,
        session: TuningSession | None,
        view: StudyView,
        num_trials: int,
        refresh_interval: float,
    ) -> None:
        if not refresh_interval > 0:
            raise ConfigError(f"refresh_interval must be positive, got {refresh_interval!r}.")
        self._lock = threading.RLock()
        self._session = session
        self._shown_in: int | None = None
        self._build_panel()
        self._live = LiveStudy(
            view, self._lock, float(refresh_interval), self._draw, self._panel.draw_log
        )
        self._validation = ValidationPanel(self, self._panel, self._live, self._draw_controls)
        self._definition = DefinitionEditor(self, self._panel, self._live, self._require_session)
        with self._definition.syncing():
            self.num_trials = num_trials
            self.num_seeds = session.num_seeds if session is not None else None
            self._definition.read_spec()  # sets num_seeds from the study, if it has stored them
            self.state = "idle" if session is not None else "watching"
        if session is not None:
            session.subscribe(self._on_session_event)
            for note in session.notes:
                self._live.log(note)
        self._on_state({"new": self.state})
        self.refresh()

    def _build_panel(self) -> None:
        reserved = []
        if self._session is not None:
            config = self._session.tuner.config
            reserved = [config.env_flag, config.seed_flag]
        # The editors' Apply buttons; the DefinitionEditor is made once the panel exists.
        p = self._panel = Panel(
            lambda targets, aggregation: self._definition.apply_targets(targets, aggregation),
            lambda space: self._definition.apply_space(space),
            reserved,
        )
        p.start_button.on_click(lambda _: self._guarded(self.start))
        p.pause_button.on_click(lambda _: self._guarded(self._toggle_pause))
        p.stop_button.on_click(lambda _: self._guarded(self.stop))
        p.enqueue_button.on_click(lambda _: self._guarded(self._enqueue_from_text))
        p.defaults_button.on_click(lambda _: self._guarded(self.enqueue_defaults))
        p.validate_button.on_click(lambda _: self._guarded(self._validation.start_from_panel))
        p.trials_input.observe(self._on_trials_input, "value")
        p.seeds_input.observe(self._on_seeds_input, "value")
        self.panel = p.box

    # ----------------------------------------------------------------------------------------
    # Showing
    # ----------------------------------------------------------------------------------------
    def display(self) -> TunerWidget:
        """Show the panel in the notebook (and start reading the storage live).

        Returns:
            The widget itself, so ``w = TunerWidget(...).display()`` works (shown once, even as
            the last expression of a cell).
        """
        from IPython.display import display

        self._shown_in = execution_count()
        display(self.panel)
        self._live.ensure_refresher()
        return self

    def _ipython_display_(self) -> None:
        if self._shown_in is not None and self._shown_in == execution_count():
            return  # display() already showed it in this cell (it returns the widget)
        self.display()

    def __repr__(self) -> str:
        return f"TunerWidget(study={self.study_name!r}, state={self.state!r})"

    @property
    def tuner(self) -> Tuner | None:
        """The Tuner of the study shown (a new one after an edit), or ``None`` when watching."""
        return None if self._session is None else self._session.tuner

    @property
    def session(self) -> TuningSession | None:
        """The run controller the panel drives, or ``None`` when watching."""
        return self._session

    @property
    def study(self) -> optuna.Study | None:
        """The Optuna study being run, or ``None`` when watching."""
        return None if self._session is None else self._session.study

    @property
    def figures(self) -> dict[str, go.Figure]:
        """The live figures: ``history``, ``env_scores``, ``parcoords``, ``learning_curves``.

        Each is one ``go.Figure``, updated in place (by :mod:`nbtune.plots`) as the study
        changes; the panel draws it in the browser.
        """
        return dict(self._panel.figures)

    @property
    def best_trial(self) -> FrozenTrial | None:
        """The best complete trial as of the last refresh, or ``None``."""
        with self._lock:
            return self._live.view.best_trial

    @property
    def best_command(self) -> str:
        """The best configuration as the exact command line of the script ("" if none yet).

        Add the environment and seed flags (``--env-id=...``, ``--seed=...``) to run it.
        """
        trial = self.best_trial
        return "" if trial is None else shlex.join(trial_flags(trial, self._live.spec()))

    @property
    def best_params(self) -> dict[str, Any]:
        """The best configuration as a dict of flag to value, fixed values included."""
        trial = self.best_trial
        return {} if trial is None else trial_config(trial, self._live.spec())

    # ----------------------------------------------------------------------------------------
    # Running
    # ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the study in a background thread; returns at once.

        The first start adds ``num_trials`` trials to the study; after :meth:`stop` (or an
        edit), it finishes what is left of the study's budget, or adds ``num_trials`` if none is
        left.

        Raises:
            RuntimeError: When already running, or when watching (read-only).
        """
        session = self._require_session("run it")
        self.error = ""
        address = self._panel.cluster_text.value.strip()
        if address or isinstance(session.cluster, str):  # the field names the cluster
            session.use_cluster(address or None)
        parent = current_parent()
        session.start(thread_setup=lambda: bind_thread_output(parent))
        self._live.ensure_refresher()

    def _on_session_event(self, event: SessionEvent) -> None:
        """Mirror the session in the panel: its state, log lines, errors, study changes."""
        if event.kind == "state":
            state = event.data["state"]
            if state in ("stopped", "finished", "error"):
                with contextlib.suppress(Exception):
                    self.refresh()  # the last trials first, then the run's end
            with self._lock:
                self.state = state
        elif event.kind == "log":
            self._live.log(event.data["line"])
        elif event.kind == "error":
            with self._lock:
                self.error = _render.error_text(event.data["error"])
        elif event.kind == "study":
            self._follow_study()
        elif event.kind == "validation":
            self._validation.on_event(event.data["event"])
        elif event.kind == "workers":
            with self._lock:
                self._panel.draw_workers(event.data["workers"])

    def _follow_study(self) -> None:
        """Show the study the session now runs (a fork after a target edit, or a new space)."""
        assert self._session is not None
        with self._lock:
            if self._live.follow(self._session.tuner.storage, self._session.study_name):
                self._validation.forget()  # a fork is validated on its own
            with self._definition.syncing():
                self._definition.read_spec()
        self.refresh()

    def stop(self) -> None:
        """Stop the study: running experiments end, their trials are failed (none stays RUNNING).

        Returns at once; :meth:`wait` waits until the tuning thread has cleaned up.
        """
        if self._session is not None:
            self._session.stop()

    def pause(self) -> None:
        """Freeze running experiments (SIGSTOP) and start none until :meth:`resume`."""
        if self._session is not None:
            self._session.pause()

    def resume(self) -> None:
        """Continue after :meth:`pause`."""
        if self._session is not None:
            self._session.resume()

    def _toggle_pause(self) -> None:
        if self.state == "paused":
            self.resume()
        else:
            self.pause()

    def wait(self, timeout: float | None = None) -> FrozenTrial | None:
        """Block until the tuning thread ends; raise its error, if any.

        For scripts and tests: in a notebook, a cell blocked here also blocks the panel's
        buttons (widget messages are handled between cells), though the figures keep updating.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The best trial, or ``None`` if none completed.

        Raises:
            TimeoutError: The thread still runs after ``timeout`` seconds.
            Exception: Whatever stopped the tuning thread (e.g. :class:`nbtune.TuningError`).
        """
        try:
            if self._session is not None:
                self._session.wait(timeout)
        finally:
            self.refresh()
        return self.best_trial

    # ----------------------------------------------------------------------------------------
    # Validating
    # ----------------------------------------------------------------------------------------
    def validate(self, top_k: int | None = None, num_seeds: int | None = None) -> None:
        """Re-run the ``top_k`` best configurations on ``num_seeds`` fresh seeds, in the background.

        The study must not be running. The winner's-curse chart fills in as runs end;
        :meth:`wait_validation` blocks until it is done and returns the report.

        Args:
            top_k: How many of the best distinct configurations (default: the panel's, 5).
            num_seeds: Fresh seeds per environment (default: the panel's, 10).
        """
        self._validation.start(self._require_session("validate"), top_k, num_seeds)

    def wait_validation(self, timeout: float | None = None) -> ValidationReport | None:
        """Block until the validation run ends (raising its error); return the report.

        Returns:
            The validation report, or ``None`` when the study has never been validated.
        """
        return self._validation.wait(timeout)

    @property
    def validation_report(self) -> ValidationReport | None:
        """The study's validation as of the last refresh (rliable's 50,000 resamples), or None."""
        return self._validation.report

    # ----------------------------------------------------------------------------------------
    # Enqueueing
    # ----------------------------------------------------------------------------------------
    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Queue a configuration (by flag or parameter name) to be tried next.

        It counts in the budget, as ``Tuner.enqueue``; parameters left out are sampled.
        """
        self._require_session("enqueue").enqueue(params)
        self.refresh()

    def enqueue_defaults(self) -> dict[str, Any]:
        """Queue the script's own defaults (read from its ``--help``); return them."""
        defaults = self._require_session("enqueue").enqueue_defaults()
        self.refresh()
        return defaults

    def _enqueue_from_text(self) -> None:
        params = params_literal(self._panel.enqueue_text.value)
        self.enqueue(params)
        self._panel.enqueue_text.value = ""

    def _require_session(self, what: str) -> TuningSession:
        if self._session is None:
            raise RuntimeError(f"this widget watches a study read-only: it cannot {what}.")
        return self._session

    # ----------------------------------------------------------------------------------------
    # Editing: targets (re-score into a fork) and search space (new trials)
    # ----------------------------------------------------------------------------------------
    # Each trait is checked by the same rule as the Tuner's argument (see _definition).
    @traitlets.validate("targets")
    def _valid_targets(self, proposal: Any) -> dict[str, list[float] | None]:
        return checked_targets(proposal["value"])

    @traitlets.validate("aggregation")
    def _valid_aggregation(self, proposal: Any) -> str:
        return checked_aggregation(proposal["value"])

    @traitlets.validate("space")
    def _valid_space(self, proposal: Any) -> dict[str, Any] | None:
        return checked_space(proposal["value"])

    @traitlets.validate("num_trials", "num_seeds")
    def _valid_count(self, proposal: Any) -> int | None:
        return checked_count(proposal["trait"].name, proposal["value"])

    # Applying an edit (and undoing a refused one) is the DefinitionEditor's job.
    @traitlets.observe("targets", "aggregation")
    def _on_scoring_change(self, change: Any) -> None:
        self._definition.on_scoring_change(change)

    @traitlets.observe("space")
    def _on_space_change(self, change: Any) -> None:
        self._definition.on_space_change(change)

    # ----------------------------------------------------------------------------------------
    # Reacting to state
    # ----------------------------------------------------------------------------------------
    @traitlets.observe("state")
    def _on_state(self, change: Any) -> None:
        with self._lock:
            self._panel.draw_controls(
                change["new"], self._seeds_stored(), self._validation.running()
            )
            self._draw_status()

    def _draw_controls(self) -> None:
        with self._lock:
            self._panel.draw_controls(self.state, self._seeds_stored(), self._validation.running())

    def _seeds_stored(self) -> bool:
        return isinstance((self._live.view.spec or {}).get("num_seeds"), int)

    @traitlets.observe("error")
    def _on_error(self, change: Any) -> None:
        with self._lock:
            self._panel.draw_error(change["new"])

    @traitlets.observe("num_trials")
    def _on_num_trials(self, change: Any) -> None:
        if getattr(self, "_session", None) is not None:
            self._session.num_trials = change["new"]
        with self._lock:
            if self._panel.trials_input.value != change["new"]:
                self._panel.trials_input.value = change["new"]

    @traitlets.observe("num_seeds")
    def _on_num_seeds(self, change: Any) -> None:
        if getattr(self, "_session", None) is not None and change["new"] is not None:
            self._session.num_seeds = change["new"]
        with self._lock:
            value = change["new"] if change["new"] is not None else 1
            if self._panel.seeds_input.value != value:
                self._panel.seeds_input.value = value

    def _on_trials_input(self, change: Any) -> None:
        if change["new"] != self.num_trials:
            self.num_trials = change["new"]

    def _on_seeds_input(self, change: Any) -> None:
        if change["new"] != self.num_seeds and not self._seeds_stored():
            self.num_seeds = change["new"]

    def _guarded(self, action: Any) -> None:
        """Run a button's action; show its error in the panel instead of raising it."""
        try:
            action()
        except (ValueError, RuntimeError, FieldError, traitlets.TraitError) as exc:
            self.error = f"{exc}"
        except Exception as exc:
            self.error = _render.error_text(exc)

    # ----------------------------------------------------------------------------------------
    # Reading the storage
    # ----------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the storage now and update the whole panel (the refresher does it every tick)."""
        self._live.tick(force=True)

    def _draw(self, result: RefreshResult, full: bool) -> None:
        """Redraw what a read of the storage changed (the LiveStudy calls it, with the lock)."""
        if full or result.new or result.finished:
            self._draw_all()
        elif result.changed:
            self._panel.draw_running(self._live.view)
        self._validation.find(self._live.view)
        self._validation.draw(full)
        self._draw_status()

    def _draw_all(self) -> None:
        self._panel.draw_view(
            self._live.view, self.best_command, self.best_params, self._live.definition_warning()
        )

    def _draw_status(self) -> None:
        text = self._panel.draw_status(self.state, self._live.view)
        if text != self.status:
            self.status = text

    def close(self) -> None:
        """Stop the run (if any) and the refresher, and close the panel's widgets."""
        self.stop()
        self._live.close()
        with self._lock:
            self._panel.close()


__all__ = ["TunerWidget"]
