"""``TuningSession``: the one run controller that scripts, the CLI and the widget drive.

A session runs a study, in the calling thread (:meth:`TuningSession.run`: the CLI, a script) or
in a background thread (:meth:`TuningSession.start`: a notebook), and controls it while it runs:
pause, resume, stop, wait; change the target scores (the finished trials are re-scored exactly
into a linked fork, and the run continues there); change the search space (for new trials);
enqueue configurations. What happens is told as :class:`SessionEvent` values to subscribers, so
a view (the widget, a progress line) reacts without reading the session's private state.

The study's storage stays the one source of truth: a session's progress is read from it
(:meth:`TuningSession.status`), so trials that other processes run count too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nbtune import _attrs
from nbtune._budget import budget_state
from nbtune._config import folder_name
from nbtune._errors import ConfigError
from nbtune._rescore import fork_study, lineage
from nbtune._scheduler import RunSummary
from nbtune._space import SearchSpace
from nbtune._storage import STALE_REASON, fail_stale_trials, riding_out
from nbtune._trust import trusted_spec

if TYPE_CHECKING:
    from nbtune._tuner import Tuner
    from nbtune._validation import ValidationReport
    from nbtune.plots import StatusInfo

#: The states of a session, in the order a run goes through them.
STATES = ("idle", "running", "paused", "stopping", "stopped", "finished", "error")
ACTIVE = ("running", "paused", "stopping")


@dataclass(frozen=True)
class SessionEvent:
    """Something that happened to a session.

    Attributes:
        kind: ``"state"`` (``data["state"]`` is the new state), ``"log"`` (``data["line"]``
            is a line for the user), ``"trial"`` (progress: ``data["number"]``,
            ``data["state"]`` = ``"started"``, ``"complete"``, ``"pruned"`` or ``"failed"``,
            ``data["value"]``), ``"experiment"`` (``number``, ``env_id``, ``seed``, ``raw``,
            ``normalized``: ``None`` when it failed), ``"study"`` (the session moved to another
            study or definition: ``data["study_name"]``; after a target or space edit),
            ``"workers"`` (on a cluster, where work runs: ``data["workers"]``, as
            :meth:`TuningSession.workers` gives it) or ``"error"`` (``data["error"]`` is the
            exception that ended the run).
        data: What the kind carries.
    """

    kind: str
    data: Mapping[str, Any]


class TuningSession:
    """Run one study and control it: start, pause, resume, stop, wait, re-target, re-space.

    Made by :meth:`nbtune.Tuner.session` (not started) or :meth:`nbtune.Tuner.start` (started
    in the background).

    A run first adds ``num_trials`` trials to the study's budget (``None``: it adds nothing and
    works on what is left, as ``nbtune worker`` does); a later start (after :meth:`stop` or an
    edit) first finishes what is left of the budget, and adds ``num_trials`` only when nothing
    is left.

    Args:
        tuner: The study to run.
        num_trials: Trials a start adds, or ``None`` to work on the remaining budget only.
        num_seeds: Seeds per environment (default: the config's, else the study's, else 1).
        timeout: Seconds after which a run stops starting trials (running ones finish).
        follow_forks: When the study was re-scored into forks (target edits), continue its
            newest fork instead (the panel does, so a kernel restart loses no edit); otherwise
            the study as given runs, and a line says that a newer fork exists.
        cluster: Run the experiments on this Dask cluster (a scheduler address, a
            ``distributed.Client`` or a cluster object): one nbtune worker per Dask worker, with
            one slot per thread (default: the config's ``cluster``; ``None`` there: here).
        local_slots: With a cluster, experiments this process runs too (default: the
            config's, 0).

    Example:
        >>> session = tuner.session(num_trials=20, num_seeds=2)  # doctest: +SKIP
        >>> session.subscribe(lambda event: print(event.kind, dict(event.data)))  # doctest: +SKIP
        >>> session.start(); session.pause(); session.resume()  # doctest: +SKIP
        >>> session.retarget({"CartPole-v1": [0, 500], "Acrobot-v1": [-500, -60]})  # doctest: +SKIP
        >>> best = session.wait()  # doctest: +SKIP
    """

    def __init__(
        self,
        tuner: Tuner,
        num_trials: int | None = 10,
        num_seeds: int | None = None,
        *,
        timeout: float | None = None,
        follow_forks: bool = False,
        cluster: Any = None,
        local_slots: int | None = None,
    ) -> None:
        if num_trials is not None and (
            isinstance(num_trials, bool) or not isinstance(num_trials, int) or num_trials < 1
        ):
            raise ConfigError(f"num_trials must be a whole number >= 1; got {num_trials!r}.")
        if num_seeds is not None and (
            isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1
        ):
            raise ConfigError(f"num_seeds must be a whole number >= 1; got {num_seeds!r}.")
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds; got {timeout!r}.")
        self._lock = threading.RLock()
        self._subscribers: list[Callable[[SessionEvent], None]] = []
        self._notes: list[str] = []
        if cluster is not None or local_slots is not None:  # checked as the config checks them
            tuner.config.replace(
                cluster=cluster if cluster is not None else tuner.config.cluster,
                local_slots=local_slots if local_slots is not None else tuner.config.local_slots,
            )
        self.cluster = cluster if cluster is not None else tuner.config.cluster
        self.local_slots = local_slots if local_slots is not None else tuner.config.local_slots
        self._tuner = self._follow(tuner, follow_forks)
        self._cluster_run: Any = None
        self.num_trials = num_trials
        self.timeout = timeout
        # As given, else the config's, else the study's, else 1; opens the study, refusing a
        # mismatched definition or number of seeds now.
        self.num_seeds = self._tuner.settled_seeds(num_seeds) or 1
        # A kernel restart leaves its trial RUNNING: fail it now (its process on this machine is
        # gone, or its heartbeat is stale) so that it runs again, and say so.
        config = self._tuner.config
        for number in fail_stale_trials(self._tuner.study, 2 * config.heartbeat_interval):
            self._notes.append(f"trial {number}: {STALE_REASON}")
        self._state = "idle"
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._pause_event = threading.Event()
        self._exception: BaseException | None = None
        self._started_once = False
        self._view: Any = None
        self._validation: TuningSession | None = None
        self.summary: RunSummary | None = None

    def _follow(self, tuner: Tuner, follow: bool) -> Tuner:
        """The Tuner of the newest fork of the given study when ``follow``, else the given one.

        Either way a note says when the study has a newer fork, so a Tuner for the parent
        never silently shadows the fork a target edit made.
        """
        chain = lineage(tuner.storage, tuner.config.study_name)
        if len(chain) > 1 and not follow:
            self._notes.append(
                f"study {chain[0]!r} has a newer fork, {chain[-1]!r} (re-scored under other "
                f"targets): this run continues {chain[0]!r}; study_name={chain[-1]!r} continues "
                "the fork"
            )
            return tuner
        for name in chain[1:]:
            fork = optuna.load_study(study_name=name, storage=tuner.storage)
            spec = trusted_spec(fork)
            tuner = tuner.replace(
                study_name=name,
                target_scores=spec.targets,
                aggregation_type=spec.aggregation,
                runs_dir=tuner.config.runs_dir / folder_name(name),  # type: ignore[operator]
            )
        if len(chain) > 1:
            self._notes.append(
                f"continuing {chain[-1]!r}, re-scored from {chain[-2]!r} (the newest fork of "
                f"{chain[0]!r})"
            )
        return tuner

    @property
    def notes(self) -> list[str]:
        """What the session did on opening that a user should know (e.g. a fork followed)."""
        return list(self._notes)

    # ------------------------------------------------------------------------------ reading
    @property
    def tuner(self) -> Tuner:
        """The Tuner of the study now run (a new one after a target or space edit)."""
        return self._tuner

    @property
    def study(self) -> optuna.Study:
        """The Optuna study now run."""
        return self._tuner.study

    @property
    def study_name(self) -> str:
        """The name of the study now run (a target edit moves to a fork: ``name.r1``, ...)."""
        return self._tuner.config.study_name

    @property
    def state(self) -> str:
        """The run's state: one of :data:`STATES` (``idle``, ``running``, ``paused``, ...)."""
        return self._state

    @property
    def exception(self) -> BaseException | None:
        """What ended the last run with an error, or ``None``."""
        return self._exception

    @property
    def best_trial(self) -> FrozenTrial | None:
        """The study's best complete trial, or ``None``."""
        try:
            return self.study.best_trial
        except ValueError:
            return None

    def status(self) -> StatusInfo:
        """Counts by state, budget, best score and ETA, read from the storage now."""
        from nbtune._study_view import StudyView
        from nbtune.plots import get_status_info

        storage = self._tuner.storage
        with self._lock:
            if self._view is None or self._view.study_name != self.study_name:
                # The view reads the database itself: a worker that reads while the database
                # restarts waits for it like any other call (a traceback otherwise).
                self._view = riding_out(storage, lambda: StudyView(storage, self.study_name))
            view = self._view
        riding_out(storage, view.refresh)
        return get_status_info(view)

    # ------------------------------------------------------------------------------ events
    def subscribe(self, callback: Callable[[SessionEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every :class:`SessionEvent`; returns an unsubscribe.

        Callbacks run on the thread where the event happens (the run's thread for the end of a
        run): a view takes its own lock.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, kind: str, **data: Any) -> None:
        for callback in list(self._subscribers):
            callback(SessionEvent(kind, data))

    def _set_state(self, state: str) -> None:
        """Change the state and tell subscribers.

        Never called with the lock held: a subscriber takes its own lock, and may call back.
        """
        with self._lock:
            if state == self._state:
                return
            self._state = state
        self._emit("state", state=state)

    def _log(self, line: str) -> None:
        self._emit("log", line=line)

    # ------------------------------------------------------------------------------ running
    def run(
        self,
        *,
        stop_event: threading.Event | None = None,
        pause_event: threading.Event | None = None,
    ) -> RunSummary:
        """Run in this thread until the budget is reached, the timeout passes, or a stop.

        Ctrl-C and SIGTERM (on the main thread) fail the running trials and re-raise.

        Args:
            stop_event: Set it from another thread to stop (default: the session's own,
                which :meth:`stop` sets).
            pause_event: While set, experiments are frozen (default: the session's own).
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"the study is {self._state} already; stop it first.")
            if stop_event is not None:
                self._stop_event = stop_event
            if pause_event is not None:
                self._pause_event = pause_event
            self._exception = None
            add = not self._started_once
            self._started_once = True
        self._set_state("running")
        try:
            summary = self._work(add, self._stop_event, self._pause_event)
        except BaseException as exc:
            self._end(exc, self._stop_event.is_set())
            raise
        self._end(None, self._stop_event.is_set())
        return summary

    def start(
        self, *, paused: bool = False, thread_setup: Callable[[], None] | None = None
    ) -> None:
        """Run in a background thread; return at once.

        Args:
            paused: Start frozen (nothing runs until :meth:`resume`).
            thread_setup: Called first on the new thread (a notebook binds its output there).

        Raises:
            RuntimeError: When a run is going on already.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"the study is {self._state} already; stop it first.")
            self._stop_event = threading.Event()
            self._pause_event = threading.Event()
            if paused:
                self._pause_event.set()
            self._exception = None
            add = not self._started_once
            self._started_once = True
            self._thread_setup = thread_setup
            thread = threading.Thread(
                target=self._background,
                args=(add, self._stop_event, self._pause_event, thread_setup),
                name="nbtune-tuning",
                daemon=True,
            )
            self._thread = thread
            self._state = "paused" if paused else "running"
        self._emit("state", state=self._state)
        self._log("started (paused)" if paused else "started")
        thread.start()

    def _background(
        self,
        add: bool,
        stop: threading.Event,
        pause: threading.Event,
        thread_setup: Callable[[], None] | None,
    ) -> None:
        if thread_setup is not None:
            thread_setup()
        exception: BaseException | None = None
        try:
            self._work(add, stop, pause)
        except BaseException as exc:  # told to subscribers and raised by wait()
            exception = exc
        self._end(exception, stop.is_set())

    def _work(self, add: bool, stop: threading.Event, pause: threading.Event) -> RunSummary:
        """Reserve what this run adds, then work on the study until done or stopped."""
        tuner = self._tuner
        if self.num_trials is not None:
            if add:
                tuner.reserve(self.num_trials, self.num_seeds)
            else:
                # Finish what is left of the budget (after a stop, or in a fork that holds no
                # reservations yet); add num_trials when nothing is left.
                state = budget_state(tuner.study)
                if state.total is None or state.reached:
                    tuner.reserve(self.num_trials, self.num_seeds)
                elif state.total - state.finished > state.running + state.waiting:
                    tuner.reserve(state.total - state.finished, self.num_seeds)
        summary = RunSummary()
        if not stop.is_set() and self.cluster is not None:
            from nbtune._cluster import ClusterRun

            run = ClusterRun(
                self.cluster,
                tuner,
                stop=stop,
                pause=pause,
                emit=self._emit,
                timeout=self.timeout,
                local_slots=self.local_slots,
                listeners=[_Progress(self._emit)],
            )
            with self._lock:
                self._cluster_run = run
            summary = run.run()
        elif not stop.is_set():
            summary = tuner.work(
                timeout=self.timeout,
                stop_event=stop,
                pause_event=pause,
                listeners=[_Progress(self._emit)],
            )
        self.summary = summary
        return summary

    def use_cluster(self, cluster: Any, local_slots: int | None = None) -> None:
        """Run the next start on this Dask cluster (``None``: in this process).

        Raises:
            ConfigError: For a value that names no cluster.
            RuntimeError: While a run goes on.
        """
        self._tuner.config.replace(cluster=cluster)  # checked as the config checks it
        with self._lock:
            if self._state in ACTIVE:
                raise RuntimeError(f"the study is {self._state}; stop it first.")
            self.cluster = cluster
            if local_slots is not None:
                self.local_slots = local_slots

    def workers(self) -> list[dict[str, Any]]:
        """Where work runs: one dict per place (``[]`` without a cluster).

        Each has ``address`` (a Dask worker's, or ``"here"`` for this process's slots),
        ``host``, ``slots``, ``state`` (``"starting"``, ``"working"``, ``"done"``, ``"lost"``,
        ``"failed"``) and ``running`` (the numbers of the trials it runs now). The same lists
        come as ``"workers"`` events.
        """
        with self._lock:
            run = self._cluster_run
        return [] if run is None else run.snapshot()

    def _end(self, exception: BaseException | None, stopped: bool) -> None:
        with self._lock:
            self._exception = exception
        if exception is not None and not isinstance(exception, KeyboardInterrupt):
            self._emit("error", error=exception)
            self._set_state("error")
            self._log(f"error: {type(exception).__name__}: {exception}")
        elif stopped or exception is not None:
            self._set_state("stopped")
            self._log("stopped")
        else:
            self._set_state("finished")
            self._log("finished")

    def stop(self) -> None:
        """Stop: running experiments end and their trials are failed (none stays RUNNING).

        Returns at once; :meth:`wait` waits until the run has cleaned up.
        """
        with self._lock:
            if self._state not in ("running", "paused"):
                return
            self._stop_event.set()
        self._set_state("stopping")

    def pause(self) -> None:
        """Freeze running experiments (SIGSTOP) and start none until :meth:`resume`."""
        with self._lock:
            if self._state != "running":
                return
            self._pause_event.set()
        self._set_state("paused")
        self._log("paused")

    def resume(self) -> None:
        """Continue after :meth:`pause`."""
        with self._lock:
            if self._state != "paused":
                return
            self._pause_event.clear()
        self._set_state("running")
        self._log("resumed")

    def wait(self, timeout: float | None = None) -> FrozenTrial | None:
        """Block until the background run ends; raise its error, if any.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The best trial, or ``None`` if none completed.

        Raises:
            TimeoutError: The run still goes on after ``timeout`` seconds.
            Exception: Whatever ended the run (e.g. :class:`nbtune.TuningError`).
        """
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the study is still {self._state} after {timeout} s.")
        if self._exception is not None:
            raise self._exception
        return self.best_trial

    def _halt(self) -> str | None:
        """Stop a background run before changing the study; return how to go on."""
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                return None
            mode = "paused" if self._pause_event.is_set() else "running"
            self._stop_event.set()
        self._set_state("stopping")
        thread.join()  # without the lock: the run takes it to finish
        return mode

    def _go_on(self, mode: str | None) -> None:
        if mode is not None:
            self.start(paused=mode == "paused", thread_setup=getattr(self, "_thread_setup", None))

    # ------------------------------------------------------------------------------ editing
    def retarget(
        self,
        target_scores: Mapping[str, Any],
        aggregation_type: str | None = None,
    ) -> str:
        """Re-score every finished trial under new target scores into a fork, and go on there.

        Optuna cannot change a finished trial's value, so the re-scored trials go into a new
        study (``name.r1``, ...) linked to this one; a run going on is stopped, and continued
        in the fork.

        Returns:
            A line saying what was re-scored into which study.

        Raises:
            ConfigError: For bad targets, or an environment that never ran in this study.
        """
        tuner = self._tuner
        aggregation = aggregation_type or tuner.config.aggregation_type
        known = set(tuner.stored_spec.targets)
        unknown = sorted(set(target_scores) - known)
        if unknown:
            raise ConfigError(
                f"{', '.join(unknown)} never ran in this study, so its trials cannot be "
                f"re-scored for it (environments run: {', '.join(sorted(known))}). Start a new "
                "study (another study_name) to add environments."
            )
        tuner.config.replace(target_scores=target_scores, aggregation_type=aggregation)  # check
        mode = self._halt()
        try:
            fork = fork_study(
                tuner.study, target_scores=target_scores, aggregation_type=aggregation
            )
            new = tuner.replace(
                study_name=fork.study_name,
                target_scores=target_scores,
                aggregation_type=aggregation,
                runs_dir=tuner.config.runs_dir / folder_name(fork.study_name),  # type: ignore[operator]
                num_seeds=self.num_seeds,
            )
            new.study  # noqa: B018  (opens the fork: its spec matches)
        except Exception:
            self._go_on(mode)
            raise
        copied = len(fork.get_trials(deepcopy=False))
        parent = tuner.config.study_name
        with self._lock:
            self._tuner = new
        line = (
            f"re-scored {copied} finished trials of {parent!r} into {fork.study_name!r} "
            f"(targets {dict(target_scores)}, {aggregation})"
        )
        skipped = fork.user_attrs.get(_attrs.NOT_RESCORED) or {}
        if skipped:
            line += "; not re-scored: " + "; ".join(
                f"#{number} ({why})" for number, why in sorted(skipped.items(), key=_by_number)
            )
        self._emit("study", study_name=fork.study_name)
        self._log(line)
        self._go_on(mode)
        return line

    def respace(self, space: SearchSpace | Mapping[str, Any]) -> None:
        """Sample new trials from another search space (finished trials stay as they are).

        The study's stored definition changes (the old one is kept in its history); a run going
        on is stopped and continued with the new space.
        """
        if space is None:
            raise ConfigError("space: give a search space (a dict, as SearchSpace.to_dict()).")
        if not isinstance(space, SearchSpace):
            space = SearchSpace.from_dict(space)
        mode = self._halt()
        try:
            new = self._tuner.replace(params_fn=space, override_spec=True, num_seeds=self.num_seeds)
            new.study  # noqa: B018  (stores the new spec, keeps the old one in its history)
        except Exception:
            self._go_on(mode)
            raise
        with self._lock:
            self._tuner = new
        self._emit("study", study_name=new.config.study_name)
        self._log(f"search space applied to new trials: {space.to_dict()}")
        self._go_on(mode)

    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Queue a configuration (by flag or parameter name) to be tried next.

        It counts in the budget; parameters left out are sampled.
        """
        self._tuner.enqueue(params)
        self._log(f"enqueued {dict(params)}")

    def enqueue_defaults(self) -> dict[str, Any]:
        """Queue the script's own defaults (read from its ``--help``); return them."""
        defaults = self._tuner.enqueue_defaults()
        self._log(f"enqueued the script's defaults {defaults}")
        return defaults

    # ------------------------------------------------------------------------------ validating
    def validate(
        self,
        top_k: int = 5,
        num_seeds: int = 10,
        *,
        background: bool = False,
        thread_setup: Callable[[], None] | None = None,
    ) -> ValidationReport | None:
        """Validate the study's ``top_k`` best configurations on ``num_seeds`` fresh seeds.

        The validation study (see :meth:`nbtune.Tuner.validation`) is run by a session of its
        own (:attr:`validation`), on this session's slots; its events reach this session's
        subscribers as ``"validation"`` events. The tuning run must not be going on (it would
        compete for the slots).

        Args:
            top_k: How many of the best distinct configurations to validate.
            num_seeds: Fresh seeds per environment.
            background: Run in a background thread and return at once (then
                ``session.validation.wait()`` and :meth:`validation_report`).
            thread_setup: Called first on the background thread.

        Returns:
            The report when run in this thread, else ``None``.

        Raises:
            RuntimeError: While the tuning run or a validation run is going on.
        """
        with self._lock:
            if self._state in ACTIVE:
                raise RuntimeError(
                    f"the study is {self._state}: stop it or wait for it before validating."
                )
            running = self._validation
            if running is not None and running.state in ACTIVE:
                raise RuntimeError("a validation is going on already.")
        validator = self._tuner.validation(top_k, num_seeds)
        session = validator.session(None, timeout=self.timeout)
        name = validator.config.study_name
        session.subscribe(lambda event: self._emit("validation", study_name=name, event=event))
        with self._lock:
            self._validation = session
        self._log(f"validating the {top_k} best configurations on {num_seeds} fresh seeds")
        if background:
            session.start(thread_setup=thread_setup)
            return None
        session.run()
        return self.validation_report()

    @property
    def validation(self) -> TuningSession | None:
        """The session of the last validation started here, or ``None``."""
        return self._validation

    @property
    def validation_study_name(self) -> str:
        """The name of the study that validates this one (whether it exists or not)."""
        from nbtune._validation import validation_study_name

        return validation_study_name(self.study_name)

    def validation_report(self, *, reps: int | None = None) -> ValidationReport:
        """The validation of this study (a :class:`~nbtune.ValidationReport`), read now.

        Raises:
            ConfigError: When the study has not been validated.
        """
        from nbtune._stats import DEFAULT_REPS
        from nbtune._validation import ValidationReport

        return ValidationReport.from_storage(
            self._tuner.storage, self.study_name, reps=reps or DEFAULT_REPS
        )

    def __repr__(self) -> str:
        return f"TuningSession(study={self.study_name!r}, state={self._state!r})"


def _by_number(item: tuple[str, str]) -> int:
    return int(item[0])


class _Progress:
    """A scheduler listener that tells a session's subscribers of each trial and experiment."""

    def __init__(self, emit: Callable[..., None]) -> None:
        self._emit = emit

    def on_trial_start(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None:
        self._emit("trial", number=trial.number, state="started", value=None)

    def on_experiment_end(
        self,
        trial: optuna.Trial,
        env_id: str,
        seed: int,
        raw: float | None,
        normalized: float | None,
    ) -> None:
        self._emit(
            "experiment",
            number=trial.number,
            env_id=env_id,
            seed=seed,
            raw=raw,
            normalized=normalized,
        )

    def on_trial_end(self, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
        name = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(state, "failed")
        self._emit("trial", number=trial.number, state=name, value=value)

    def on_warning(self, trial: optuna.Trial, line: str) -> None:
        self._emit("log", line=line)
