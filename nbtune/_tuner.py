"""A ``Tuner`` compatible with CleanRL's: the same API, run correctly and in isolation."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from nbtune import _attrs, _optuna
from nbtune._attrs import STUDY_SPEC, STUDY_SPEC_HISTORY
from nbtune._budget import TOTAL_TRIALS, budget_state, extend_budget
from nbtune._config import TunerConfig, check_positive_int, field_names, folder_name
from nbtune._errors import ConfigError, SpecMismatchError, TuningError
from nbtune._output import best_summary, plural, quiet_optuna
from nbtune._progress import ProgressBar
from nbtune._scheduler import RunSummary, Scheduler, TrialListener
from nbtune._spec import StudySpec
from nbtune._storage import (
    describe_storage,
    fail_stale_trials,
    open_storage,
    sqlite_path,
)
from nbtune._trust import (
    UntrustedSpecError,
    signature_problem,
    store_spec,
    trusted_spec,
    untrusted_message,
)

if TYPE_CHECKING:
    from nbtune._session import TuningSession
    from nbtune._validation import ValidationReport

#: What ``tuner.<name>`` reads from ``tuner.config``.
_CONFIG_NAMES = frozenset(field_names() | {"space", "space_note"})


class Tuner:
    """Tune a training script's hyperparameters for one score across several environments.

    A drop-in for CleanRL's ``cleanrl_utils.tuner.Tuner``: the same arguments mean the same
    thing. Each trial samples parameters with ``params_fn``, runs the script once per
    environment and seed as a subprocess (``[python, script, --key=value..., --env-id=E,
    --seed=S]``) in its own folder, averages the last ``metric_last_n_average_window`` points of
    ``metric`` from its TensorBoard log, normalizes it with ``target_scores``, aggregates across
    environments and averages over seeds; Optuna optimizes that value.

    What defines the study (script, metric, targets, search space, ...) is stored with it, so it
    can be resumed after a restart and joined by ``nbtune worker`` processes on other machines.

    The arguments are exactly the fields of :class:`~nbtune.TunerConfig` (documented there, one
    by one): ``Tuner(script, metric, target_scores, params_fn, ...)`` builds and validates a
    ``TunerConfig`` (``tuner.config``), and ``Tuner(config)`` takes one directly. Every field is
    also readable as an attribute (``tuner.metric``); :meth:`replace` gives a Tuner with some
    fields changed.

    Example:
        >>> import optuna, nbtune
        >>> tuner = nbtune.Tuner(
        ...     script=nbtune.example_script("ppo"),
        ...     metric="charts/episodic_return",
        ...     target_scores={"CartPole-v1": [0, 500], "Acrobot-v1": [-500, 0]},
        ...     params_fn=lambda trial: {
        ...         "learning-rate": trial.suggest_float("learning-rate", 3e-4, 3e-3, log=True),
        ...         "total-timesteps": 100000,
        ...     },
        ...     storage="sqlite:///nbtune-doctest.db",
        ... )
        >>> tuner.spec.space["total-timesteps"]
        100000
        >>> tuner.replace(num_seeds=2).config.num_seeds
        2
    """

    config: TunerConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and not kwargs and isinstance(args[0], TunerConfig):
            config = args[0]
        else:
            config = TunerConfig(*args, **kwargs)
        self.config = config
        self._storage_arg = config.storage
        self._storage: BaseStorage | None = (
            config.storage if isinstance(config.storage, BaseStorage) else None
        )
        self._study: optuna.Study | None = None
        self._stored_spec: StudySpec | None = None
        self._warn_sampler()

    def __getattr__(self, name: str) -> Any:
        # Every config field (and the derived search space) reads as an attribute, as the
        # CleanRL Tuner's constructor arguments did.
        if name in _CONFIG_NAMES:
            return getattr(self.config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def replace(self, **changes: Any) -> Tuner:
        """A Tuner like this one with some config fields changed (validated), same storage.

        Example:
            >>> tuner.replace(verbose=False).verbose  # doctest: +SKIP
            False
        """
        tuner = type(self)(self.config.replace(**changes))
        if "storage" not in changes:  # the same database: keep this connection and its name
            tuner._storage_arg, tuner._storage = self._storage_arg, self._storage
        return tuner

    def _warn_sampler(self) -> None:
        """Several trials at once need a sampler that accounts for the running ones."""
        sampler = self.config.sampler
        if (
            self.config.n_slots > 1  # type: ignore[operator]
            and isinstance(sampler, optuna.samplers.TPESampler)
            and not _optuna.tpe_constant_liar(sampler)
        ):
            warnings.warn(
                f"{self.config.n_slots} slots run trials concurrently, but this TPESampler has "
                "constant_liar=False: concurrent trials may sample the same region. Pass "
                "TPESampler(constant_liar=True) (Optuna 5's default).",
                UserWarning,
                stacklevel=3,
            )

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_study(
        cls,
        storage: str | os.PathLike[str] | BaseStorage,
        study_name: str,
        *,
        must_exist: bool = True,
        **overrides: Any,
    ) -> Tuner:
        """Rebuild the Tuner of an existing study from the spec stored with it.

        This is how a worker on another machine joins a study: everything it needs is in the
        storage. ``overrides`` set config fields that belong to this process or machine
        (``interpreter``, ``runs_dir``, ``n_slots``, ``verbose``, ...).

        Raises:
            ConfigError: If the study does not exist, was not created by nbtune, or its
                ``params_fn`` is not declarative (it can only run in the process that has it).
        """
        opened = open_storage(storage, must_exist=must_exist, heartbeat_interval=None)
        try:
            study = optuna.load_study(study_name=study_name, storage=opened)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
            raise ConfigError(
                f"no study named {study_name!r} in {describe_storage(storage)}; it has: "
                f"{', '.join(names) or 'no study'}."
            ) from None
        raw = study.user_attrs.get(STUDY_SPEC)
        if raw is None:
            raise ConfigError(
                f"study {study_name!r} has no nbtune spec (it was not created by nbtune): "
                "start it with nbtune.Tuner or `nbtune tune CONFIG` first."
            )
        # What a worker runs comes from the database: only a definition signed with this
        # machine's key is run (see nbtune._trust).
        spec = trusted_spec(study)
        heartbeat = int(overrides.get("heartbeat_interval", spec.heartbeat_interval))
        if not isinstance(storage, BaseStorage):
            opened = open_storage(storage, heartbeat_interval=heartbeat)  # as the study needs
        try:
            config = TunerConfig.from_spec(spec, storage=opened, study_name=study_name, **overrides)
        except ConfigError as exc:
            raise ConfigError(f"study {study_name!r}: {exc}") from None
        tuner = cls(config)
        tuner._storage_arg = storage if not isinstance(storage, BaseStorage) else opened
        return tuner

    # ----------------------------------------------------------------------------------------
    @property
    def storage(self) -> BaseStorage:
        """The opened Optuna storage."""
        if self._storage is None:
            self._storage = open_storage(
                self._storage_arg, heartbeat_interval=self.config.heartbeat_interval
            )
        return self._storage

    @property
    def spec(self) -> StudySpec:
        """What defines this study, as stored with it."""
        return self.config.to_spec()

    @property
    def stored_spec(self) -> StudySpec:
        """The spec stored with the study (opening the study first), as every process reads it."""
        self.study  # noqa: B018
        assert self._stored_spec is not None
        return self._stored_spec

    @property
    def study(self) -> optuna.Study:
        """The Optuna study, created on first use or continued if it exists and matches."""
        if self._study is None:
            self._study = self._open_study()
        return self._study

    def _open_study(self) -> optuna.Study:
        config = self.config
        storage = self.storage
        spec = self.spec
        try:
            existing = optuna.load_study(study_name=config.study_name, storage=storage)
        except KeyError:
            existing = None
        if existing is not None:
            stored_direction = existing.direction.name.lower()
            stored = existing.user_attrs.get(STUDY_SPEC)
            stored_spec = None
            if stored is not None:
                stored_spec = StudySpec.from_json(stored).upgraded(spec, json.loads(stored))
            diff = stored_spec.differences(spec) if stored_spec is not None else []
            if stored_spec is None and stored_direction != config.direction:
                # A study nbtune did not create: only its direction can be compared.
                diff.append(f"  direction: stored {stored_direction!r}, given {config.direction!r}")
            if diff and (not config.override_spec or stored_direction != config.direction):
                fix = "Use another study_name for a new study" + (
                    ", or pass override_spec=True to continue it with the new definition."
                    if stored_direction == config.direction
                    else " (Optuna cannot change a study's direction)."
                )
                raise SpecMismatchError(
                    f"study {config.study_name!r} in {describe_storage(self._storage_arg)} was "
                    f"defined differently:\n" + "\n".join(diff) + f"\n{fix}"
                )
            study = existing
            problem = None
            if stored_spec is not None:
                problem = signature_problem(config.study_name, existing.user_attrs)
            signature = existing.user_attrs.get(_attrs.SPEC_SIGNATURE)
            unsigned = problem is not None and not isinstance(signature, dict)
            if problem is not None and not unsigned and not diff and not config.override_spec:
                raise UntrustedSpecError(untrusted_message(config.study_name, problem))
            if stored_spec is not None and not diff and problem is None:
                if spec.num_seeds is None:
                    spec.num_seeds = stored_spec.num_seeds
                if spec.script_sha256 != stored_spec.script_sha256:
                    spec.script_sha256 = stored_spec.script_sha256  # warned about per trial
                if stored_spec.to_json() != stored:  # an older version: store it upgraded
                    store_spec(existing, stored_spec)
                self._stored_spec = stored_spec
            else:
                if diff:
                    history = list(existing.user_attrs.get(STUDY_SPEC_HISTORY, []))
                    history.append(stored)
                    existing.set_user_attr(STUDY_SPEC_HISTORY, history)
                    self._say("nbtune: continuing with a changed definition:\n" + "\n".join(diff))
                elif stored_spec is not None:
                    # Unsigned (an older nbtune) or, with override_spec, untrusted: this
                    # process's own definition replaces what the database says, signed.
                    if spec.num_seeds is None:
                        spec.num_seeds = stored_spec.num_seeds
                    spec.script_sha256 = stored_spec.script_sha256
                    self._say(
                        f"nbtune: study {config.study_name!r}: {problem}; stored this process's "
                        "definition, signed with this machine's key"
                    )
                store_spec(existing, spec)
                self._stored_spec = spec
            if config.sampler is not None or config.pruner is not None:
                study = optuna.load_study(
                    study_name=config.study_name,
                    storage=storage,
                    sampler=config.sampler,
                    pruner=config.pruner,
                )
            return study
        study = optuna.create_study(
            study_name=config.study_name,
            storage=storage,
            sampler=config.sampler,
            pruner=config.pruner,
            direction=config.direction,
            load_if_exists=True,
        )
        store_spec(study, spec)
        self._stored_spec = spec
        if config.space is None:
            self._say(
                f"nbtune: params_fn is not declarative ({config.space_note}): this study's "
                "trials run only from this process; workers elsewhere will refuse it."
            )
        return study

    def _say(self, line: str) -> None:
        if self.config.verbose:
            print(line, flush=True)

    # ----------------------------------------------------------------------------------------
    def session(
        self,
        num_trials: int | None = None,
        num_seeds: int | None = None,
        *,
        timeout: float | None = None,
        follow_forks: bool = False,
        cluster: Any = None,
        local_slots: int | None = None,
    ) -> TuningSession:
        """A run controller for this study (not started): see :class:`~nbtune.TuningSession`.

        Args:
            num_trials: Trials a start adds to the study; ``None`` works on what is left of
                the study's budget without adding to it (what a worker does).
            num_seeds: Seeds per environment (default: the config's, else the study's).
            timeout: Seconds after which a run stops starting trials.
            follow_forks: Continue the study's newest fork (after target edits) instead.
            cluster: Run the experiments on this Dask cluster (default: the config's).
            local_slots: With a cluster, experiments this process runs too (default: the
                config's, 0).
        """
        from nbtune._session import TuningSession

        return TuningSession(
            self,
            num_trials,
            num_seeds,
            timeout=timeout,
            follow_forks=follow_forks,
            cluster=cluster,
            local_slots=local_slots,
        )

    def start(
        self,
        num_trials: int,
        num_seeds: int | None = None,
        *,
        timeout: float | None = None,
        cluster: Any = None,
        local_slots: int | None = None,
    ) -> TuningSession:
        """Run ``num_trials`` more trials in a background thread; return the controller.

        ``cluster`` and ``local_slots`` are as in :meth:`tune`.

        Example:
            >>> session = tuner.start(20, num_seeds=2)  # doctest: +SKIP
            >>> session.pause(); session.resume(); session.wait()  # doctest: +SKIP
        """
        session = self.session(
            num_trials, num_seeds, timeout=timeout, cluster=cluster, local_slots=local_slots
        )
        session.start()
        return session

    def tune(
        self,
        num_trials: int,
        num_seeds: int | None = None,
        *,
        timeout: float | None = None,
        stop_event: threading.Event | None = None,
        pause_event: threading.Event | None = None,
        cluster: Any = None,
        local_slots: int | None = None,
    ) -> FrozenTrial:
        """Add ``num_trials`` trials of ``num_seeds`` seeds each to the study; return the best.

        The study's total becomes (trials finished so far + ``num_trials``); this process and
        any ``nbtune worker`` joined to the study share the work and stop when it is reached.
        It runs in this thread; :meth:`start` runs the same in the background.

        Args:
            num_trials: Trials to add to the study, as Optuna's ``n_trials``.
            num_seeds: Seeds per environment (``0 .. num_seeds - 1``); default the
                constructor's, or the study's.
            timeout: Stop starting trials after this many seconds (running ones finish).
            pause_event: While set (from another thread), running experiments are frozen and
                none starts; clear it to go on.
            stop_event: Set it from another thread to stop: running experiments end and their
                trials are failed, so none stays RUNNING.
            cluster: Run the experiments on a Dask cluster: a scheduler address
                (``"tcp://host:8786"``), a ``distributed.Client`` or a cluster object
                (``LocalCluster``, dask-jobqueue's ``SLURMCluster``). Each Dask worker joins the
                study as ``nbtune worker`` does, with one slot per thread (or its
                ``nbtune_slots`` resource). Default: the config's ``cluster`` (``None``: here).
            local_slots: With a cluster, experiments this process runs too (default 0).

        Returns:
            The study's best trial.

        Raises:
            ConfigError: For a bad ``num_trials`` or ``num_seeds``, before anything runs.
            SpecMismatchError: If the study exists and was defined differently.
            TuningError: When too many trials fail in a row, or no trial has completed.
        """
        check_positive_int("num_trials", num_trials)
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds; got {timeout!r}.")
        # Optuna's own INFO lines would interleave with nbtune's (restored after).
        with quiet_optuna() if self.config.verbose else contextlib.nullcontext():
            session = self.session(
                num_trials, num_seeds, timeout=timeout, cluster=cluster, local_slots=local_slots
            )
            for note in session.notes:
                self._say(f"nbtune: {note}")
            session.run(stop_event=stop_event, pause_event=pause_event)
        try:
            best = self.study.best_trial
        except ValueError:
            raise TuningError(
                f"no trial of study {self.config.study_name!r} has completed; see each trial's "
                "fail_reason in tuner.trials_dataframe()."
            ) from None
        self._say(best_summary(best, self._stored_spec))
        return best

    def reserve(self, num_trials: int, num_seeds: int | None = None) -> int:
        """Record the study and add ``num_trials`` to its budget without running anything.

        Use it to prepare a study that ``nbtune worker`` processes (on this machine or others)
        then run; :meth:`tune` is ``reserve`` followed by working on the study.

        Returns:
            The study's new total.
        """
        check_positive_int("num_trials", num_trials)
        self._prepare(num_seeds)
        return self._extend(num_trials)

    def work(
        self,
        *,
        timeout: float | None = None,
        stop_event: threading.Event | None = None,
        pause_event: threading.Event | None = None,
        listeners: Sequence[TrialListener] = (),
    ) -> RunSummary:
        """Work on the study's remaining budget without adding to it (what a worker does).

        Args:
            timeout: Stop starting trials after this many seconds.
            stop_event: Set it from another thread to stop.
            pause_event: While set, experiments are frozen.
            listeners: Told of each trial's start and end and each experiment's end, on the
                scheduler's thread.
        """
        num_seeds = self._prepare(None)
        return self._schedule(num_seeds, timeout, stop_event, pause_event, listeners)

    def settled_seeds(self, num_seeds: int | None = None) -> int | None:
        """The seeds per environment: as given, else the config's, else the study's.

        Opens the study. ``None`` when none of them says (a new study before its first run).

        Raises:
            SpecMismatchError: When the study averages another number of seeds per trial.
        """
        if num_seeds is None:
            num_seeds = self.config.num_seeds
        if num_seeds is not None:
            check_positive_int("num_seeds", num_seeds)
        stored = self.stored_spec.num_seeds
        if stored is not None and num_seeds is not None and stored != num_seeds:
            raise SpecMismatchError(
                f"study {self.config.study_name!r} averages {stored} seeds per trial "
                f"(num_seeds: stored {stored}, given {num_seeds}): new values would be "
                f"incomparable. Use num_seeds={stored}, or another study_name."
            )
        return num_seeds if num_seeds is not None else stored

    def _prepare(self, num_seeds: int | None) -> int:
        """Open the study, settle the number of seeds with the stored spec, and return it."""
        num_seeds = self.settled_seeds(num_seeds)
        if num_seeds is None:
            raise ConfigError(
                "num_seeds: give tune(num_trials, num_seeds) or Tuner(num_seeds=...)."
            )
        stored = self.stored_spec
        if stored.num_seeds is None:  # the study's first run: its seeds are part of it now
            stored.num_seeds = num_seeds
            store_spec(self.study, stored)
        return num_seeds

    def _extend(self, num_trials: int) -> int:
        fail_stale_trials(self.study, 2 * self.config.heartbeat_interval)
        total = extend_budget(self.study, num_trials).total
        assert total is not None
        self._announce(total)
        return total

    def _schedule(
        self,
        num_seeds: int,
        timeout: float | None,
        stop_event: threading.Event | None,
        pause_event: threading.Event | None = None,
        extra_listeners: Sequence[TrialListener] = (),
    ) -> RunSummary:
        config = self.config
        listeners: list[TrialListener] = list(extra_listeners)
        if config.wandb_kwargs:
            from nbtune._wandb import WandbTracker

            listeners.append(WandbTracker(config.wandb_kwargs, config.study_name))
        assert self._stored_spec is not None
        show_bar = config.progress_bar if config.progress_bar is not None else sys.stderr.isatty()
        bar = ProgressBar(self.study) if show_bar else None
        log = (bar.write if bar is not None else self._say) if config.verbose else None
        scheduler = Scheduler(
            self.study,
            config,
            num_seeds=num_seeds,
            stop_event=stop_event,
            pause_event=pause_event,
            listeners=listeners,
            log=log,
            study_script_sha256=self._stored_spec.script_sha256,
            on_tick=bar.update if bar is not None else None,
        )
        try:
            with _sigterm_as_interrupt():
                summary = scheduler.run(timeout=timeout)
        finally:
            if bar is not None:
                bar.close()
        self._say(_summary_line(summary))
        return summary

    def _announce(self, total: int | None) -> None:
        where = describe_storage(self._storage_arg)
        path = sqlite_path(str(getattr(self.storage, "url", "")))
        if path is not None:
            where = f"sqlite:///{path}"
        name = self.config.study_name
        self._say(f"nbtune: study {name!r} in {where} (total {plural(total or 0, 'trial')})")
        self._say(f"nbtune: experiment folders under {self.config.runs_dir}")
        if self.config.space is not None:
            self._say(
                "nbtune: more processes can join with: nbtune worker --storage "
                f"{shlex.quote(where)} --study {shlex.quote(name)}"
            )

    # ----------------------------------------------------------------------------------------
    def validation(self, top_k: int = 5, num_seeds: int = 10) -> Tuner:
        """The Tuner of this study's validation study, its configurations queued; nothing runs.

        The validation study (``<study_name>.validation``, see :mod:`nbtune._validation`)
        re-runs the ``top_k`` best distinct configurations of this study on every environment
        with ``num_seeds`` seeds that no trial of this study used, recorded with it. Calling it
        again continues the same validation: configurations already validated (or queued) are
        not queued again, new ones among the ``top_k`` best are added, and a configuration whose
        validation failed is queued again. Run the returned Tuner's work (``.work()``, a
        ``.session(None)``) or join it from anywhere with ``nbtune worker --study
        <study_name>.validation``.

        Raises:
            ConfigError: For a bad ``top_k`` or ``num_seeds``, a study without a complete trial,
                or a ``num_seeds`` other than the one this study was validated with.
        """
        from optuna.trial import TrialState

        from nbtune._validation import (
            ValidationRecord,
            fresh_first_seed,
            select_configurations,
            validation_study_name,
        )

        check_positive_int("top_k", top_k)
        check_positive_int("num_seeds", num_seeds)
        study = self.study
        spec = self.stored_spec
        name = self.config.study_name
        chosen = select_configurations(study.get_trials(deepcopy=False), study.direction, top_k)
        if not chosen:
            raise ConfigError(
                f"study {name!r} has no complete trial to validate yet: tune it first."
            )
        vname = validation_study_name(name)
        try:
            existing = optuna.load_study(study_name=vname, storage=self.storage)
        except KeyError:
            existing = None
        record = ValidationRecord.read(existing.user_attrs if existing is not None else {})
        if record is not None and record.seeds:
            seeds = list(record.seeds)
            if len(seeds) != num_seeds:
                raise ConfigError(
                    f"study {name!r} was validated with {len(seeds)} fresh seeds ({vname!r}); "
                    f"num_seeds={num_seeds} would make the configurations incomparable. Use "
                    f"num_seeds={len(seeds)}."
                )
        else:
            first = fresh_first_seed(study.get_trials(deepcopy=False), spec)
            seeds = list(range(first, first + num_seeds))
        runs_dir = self.config.runs_dir / folder_name(vname)  # type: ignore[operator]
        validator = self.replace(
            study_name=vname,
            num_seeds=num_seeds,
            first_seed=seeds[0],
            aggregation_type="iqm",  # each trial's value: its configuration's fresh-seed IQM
            pruner=optuna.pruners.NopPruner(),  # every configuration runs every seed
            sampler=optuna.samplers.RandomSampler(),  # never used: every trial is enqueued
            runs_dir=runs_dir,
            override_spec=False,
        )
        vstudy = validator.study
        held: dict[int, TrialState] = {}
        for trial in vstudy.get_trials(deepcopy=False):
            number = trial.user_attrs.get(_attrs.VALIDATES_TRIAL)
            if isinstance(number, int) and trial.state in (
                TrialState.COMPLETE,
                TrialState.RUNNING,
                TrialState.WAITING,
            ):
                held[number] = trial.state
        numbers = list(record.trials) if record is not None else []
        added = []
        for trial in chosen:
            if trial.number not in numbers:
                numbers.append(trial.number)
            if trial.number in held:
                continue
            vstudy.enqueue_trial(
                dict(trial.params),
                user_attrs={_attrs.VALIDATES_TRIAL: trial.number, _attrs.TUNING_SCORE: trial.value},
                skip_if_exists=False,
            )
            added.append(trial.number)
        ValidationRecord(name, tuple(seeds), tuple(numbers)).write(vstudy)
        study.set_user_attr(_attrs.VALIDATION_STUDY, vname)
        state = budget_state(vstudy)
        # Every trial of the validation study is an enqueued configuration: the total is what
        # ran, runs and waits, so no blank (sampled) trial is ever reserved.
        vstudy.set_user_attr(TOTAL_TRIALS, state.finished + state.running + state.waiting)
        self._say(
            f"nbtune: validating {plural(len(chosen), 'configuration')} of {name!r} "
            f"(trials {', '.join(f'#{t.number}' for t in chosen)}) on {num_seeds} fresh seeds "
            f"{seeds[0]}..{seeds[-1]} in study {vname!r}"
            + (f"; queued #{', #'.join(map(str, added))}" if added else "; nothing new to queue")
        )
        return validator

    def validate(
        self,
        top_k: int = 5,
        num_seeds: int = 10,
        *,
        timeout: float | None = None,
    ) -> ValidationReport:
        """Validate the ``top_k`` best configurations on ``num_seeds`` fresh seeds; report.

        Runs (or resumes) the validation study of :meth:`validation` in this thread, on this
        Tuner's slots (any ``nbtune worker --study <study_name>.validation`` helps), then reads
        it back: per configuration the IQM of its normalized scores over environments x fresh
        seeds with a 95% stratified bootstrap interval, the mean with its interval, and the
        probability of improvement of the recommended configuration (the highest IQM) over
        each other one. The tuning trials' values stay as they are.

        Args:
            top_k: How many of the best distinct configurations to validate.
            num_seeds: Fresh seeds per environment.
            timeout: Stop starting validation trials after this many seconds.

        Returns:
            The report (``print(report.table())``, ``report.statement``, ``report.markdown()``).

        Example:
            >>> report = tuner.validate(top_k=5, num_seeds=10)  # doctest: +SKIP
            >>> report.recommended.trial, str(report.recommended.iqm)  # doctest: +SKIP
            (30, '0.910 [0.880, 0.930]')
        """
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds; got {timeout!r}.")
        with quiet_optuna() if self.config.verbose else contextlib.nullcontext():
            report = self.session(None, timeout=timeout).validate(top_k, num_seeds)
        assert report is not None
        self._say(report.table())
        return report

    # ----------------------------------------------------------------------------------------
    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Queue a known configuration (a baseline) to be tried next; it counts in the budget.

        When the study has reached its total, the total grows by one so that it runs (and this
        says so).

        Args:
            params: Values by flag name (``"learning-rate"``) or parameter name; parameters
                left out are sampled.

        Raises:
            ConfigError: For a name the search space does not sample, or a value it could
                never sample (out of range, not finite, not one of the choices); nothing is
                stored then.
        """
        checked = self._to_param_names(params)
        state = budget_state(self.study)
        self.study.enqueue_trial(checked, skip_if_exists=False)
        self._say(f"nbtune: enqueued {dict(params)}")
        if state.total is not None and state.finished + state.running >= state.total:
            self.study.set_user_attr(TOTAL_TRIALS, state.finished + state.running + 1)
            self._say(
                f"nbtune: the study had reached its total of {state.total} trials; its total is "
                f"now {state.finished + state.running + 1} so that this configuration runs"
            )

    def enqueue_defaults(self) -> dict[str, Any]:
        """Queue the script's own defaults for every sampled parameter, read from its ``--help``.

        Returns:
            The values enqueued, by flag.
        """
        if self.space is None:
            raise ConfigError(
                f"enqueue_defaults needs a declarative search space ({self.space_note})."
            )
        defaults = script_defaults(self.interpreter, self.script, list(self.space.params))
        self.enqueue(defaults)
        return defaults

    def _to_param_names(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if self.space is None:
            return dict(params)  # nothing to check against: Optuna names as given
        by_flag = self.space.params
        by_name = {p.name: p for p in by_flag.values()}
        out: dict[str, Any] = {}
        for key, value in params.items():
            param = by_flag.get(key) or by_name.get(key)
            if param is None:
                fixed = " (it is fixed by the search space)" if key in self.space.fixed else ""
                raise ConfigError(
                    f"enqueue: {key!r} is not a sampled parameter{fixed}; sampled: "
                    f"{', '.join(by_flag) or 'none'}."
                )
            value = param.check_value(value)
            out[param.name] = value
        return out

    # ----------------------------------------------------------------------------------------
    def trials_dataframe(self) -> pd.DataFrame:
        """The study's trials, one row each, with every score as its own column.

        Besides Optuna's columns (``number``, ``value``, ``state``, ``params_*``, ...) there is a
        column ``raw_score/<env>/seed<s>`` and ``normalized_score/<env>/seed<s>`` per environment
        and seed, and ``fail_reason``, ``script_sha256`` and ``experiments``.
        """
        return trials_dataframe(self.study)


def sign_stored_spec(
    storage: str | os.PathLike[str] | BaseStorage, study_name: str, reviewed: str
) -> None:
    """Sign a study's stored definition with this machine's key (``nbtune trust``).

    Args:
        storage: The study's storage.
        study_name: The study.
        reviewed: The stored spec as the user reviewed it; if it changed since, nothing is
            signed.

    Raises:
        UntrustedSpecError: When the stored definition is no longer what was reviewed.
    """
    opened = open_storage(storage, must_exist=True, heartbeat_interval=None)
    study = optuna.load_study(study_name=study_name, storage=opened)
    raw = study.user_attrs.get(STUDY_SPEC)
    if raw != reviewed:
        raise UntrustedSpecError(
            f"study {study_name!r}: its definition changed while you read it; run nbtune trust "
            "again."
        )
    store_spec(study, StudySpec.from_json(raw))


def trials_dataframe(study: optuna.Study) -> pd.DataFrame:
    """A study's trials as a DataFrame with per-environment, per-seed score columns."""
    df = study.trials_dataframe(
        attrs=(
            "number",
            "value",
            "state",
            "datetime_start",
            "datetime_complete",
            "duration",
            "params",
        )
    )
    if df.empty:
        return df
    extra: list[dict[str, Any]] = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {}
        seeds = trial.user_attrs.get(_attrs.SEEDS, [])
        for key, prefix in (
            (_attrs.RAW_SCORES, "raw_score"),
            (_attrs.NORMALIZED_SCORES, "normalized_score"),
        ):
            for env, scores in (trial.user_attrs.get(key) or {}).items():
                for i, score in enumerate(scores):
                    seed = seeds[i] if i < len(seeds) else i
                    row[f"{prefix}/{env}/seed{seed}"] = math.nan if score is None else score
        for key in (_attrs.FAIL_REASON, _attrs.SCRIPT_SHA256, _attrs.EXPERIMENTS):
            if key in trial.user_attrs:
                row[key] = trial.user_attrs[key]
        extra.append(row)
    return pd.concat([df, pd.DataFrame(extra, index=df.index)], axis=1)


def _summary_line(summary: RunSummary) -> str:
    parts = [f"{summary.complete} complete", f"{summary.pruned} pruned", f"{summary.failed} failed"]
    if summary.interrupted:
        parts.append(f"{summary.interrupted} interrupted")
    return "nbtune: " + ", ".join(parts)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the scheduler cleans up on the way out."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While tuning on the main thread, turn SIGTERM into an exception, then re-deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    if previous is None:  # set outside Python: restore the default
        previous = signal.SIG_DFL
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        # Trials are failed and experiments stopped: now let SIGTERM do what it would have done.
        signal.raise_signal(signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def script_defaults(
    interpreter: str, script: str | os.PathLike[str], flags: Sequence[str]
) -> dict[str, Any]:
    """Read the defaults of ``flags`` from the script's ``--help`` (tyro and argparse styles).

    tyro prints ``--learning-rate FLOAT  ... (default: 0.00025)``; argparse prints defaults when
    the help mentions them (``%(default)s`` or ``ArgumentDefaultsHelpFormatter``).

    Raises:
        ValueError: When ``--help`` fails or does not show a default for some flag.
    """
    try:
        out = subprocess.run(
            [interpreter, str(script), "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"could not run {script} --help: {exc}") from exc
    if out.returncode != 0:
        raise ConfigError(f"{script} --help exited with {out.returncode}: {out.stderr[-500:]}")
    # Drop tyro's box drawing and join wrapped lines per flag.
    text = re.sub(r"[│╭╮╰╯─┃]", " ", out.stdout)
    found: dict[str, Any] = {}
    missing = []
    for flag in flags:
        value = _help_default(text, flag.lstrip("-"))
        if value is _MISSING:
            missing.append(flag)
        else:
            found[flag] = value
    if missing:
        raise ConfigError(
            f"{script} --help shows no default for {', '.join(missing)}; enqueue those values "
            "by hand."
        )
    return found


_MISSING = object()


def _help_default(text: str, name: str) -> Any:
    """The ``(default: X)`` shown for ``--name`` in help text, or ``_MISSING``.

    Each mention of the flag is read up to the next option (the usage line mentions flags
    without defaults); ``--no-name`` beside ``--name`` belongs to the same option.
    """
    next_option = re.compile(rf"\s--(?!no-{re.escape(name)}\b)[A-Za-z]")
    for m in re.finditer(rf"--{re.escape(name)}(?![\w-])", text):
        end = next_option.search(text, m.end())
        segment = text[m.end() : end.start() if end else len(text)]
        found = re.search(r"\(default:\s*(.*?)\)", segment, re.DOTALL)
        if found:
            return _literal(" ".join(found.group(1).split()))
    return _MISSING


def _literal(text: str) -> Any:
    import ast

    if text in ("True", "False", "None"):
        return ast.literal_eval(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
