"""The seed-compatible ``Tuner``: CleanRL's API, run correctly and in isolation."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from nbtune import _attrs, _optuna
from nbtune._attrs import STUDY_SPEC, STUDY_SPEC_HISTORY
from nbtune._budget import extend_budget
from nbtune._progress import ProgressBar
from nbtune._resources import DEFAULT_MEMORY_PER_EXPERIMENT, default_slots
from nbtune._retention import check_keep_runs
from nbtune._scheduler import RunConfig, RunSummary, Scheduler, TrialListener, TuningError
from nbtune._scoring import check_aggregation, check_target_scores
from nbtune._space import ParamsFn, SearchSpace, record_space
from nbtune._spec import SpecMismatchError, StudySpec, build_component, describe_component
from nbtune._storage import (
    DEFAULT_STORAGE,
    describe_storage,
    fail_stale_trials,
    open_storage,
    sqlite_path,
)


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

    Args:
        script: Path of the training script.
        metric: TensorBoard scalar tag the script logs, e.g. ``"charts/episodic_return"``.
        target_scores: ``{env_id: [low, high]}``; the normalized score is
            ``(x - low) / (high - low)``. ``{env_id: None}`` (one environment only) uses the raw
            metric.
        params_fn: ``params_fn(trial) -> dict`` of flag name to value, sampled with
            ``trial.suggest_*`` or fixed; or a :class:`~nbtune.SearchSpace`, or its dict form.
        direction: ``"maximize"`` or ``"minimize"``.
        aggregation_type: ``"average"``, ``"median"``, ``"max"``, ``"min"``, or ``"iqm"`` (the
            interquartile mean of all environment x seed scores pooled, as rliable computes it).
        metric_last_n_average_window: How many of the metric's last points make an
            experiment's score.
        sampler: An Optuna sampler (default: Optuna's default, TPE).
        pruner: An Optuna pruner (default: Optuna's default, median).
        storage: Database URL, journal file path, or Optuna storage. SQLite paths are made
            absolute and printed.
        study_name: Name of the study; default ``tuner_<unix time>``. An existing study of this
            name is continued if it was defined the same way.
        wandb_kwargs: When given, each trial is tracked as a wandb run with these arguments.
        num_seeds: Default for :meth:`tune`'s ``num_seeds``.
        interpreter: Executable that runs the script (default: this Python). Point it at another
            virtual environment's Python to keep the script's pinned dependencies apart.
        runs_dir: Study folder holding one directory per experiment (default
            ``nbtune_runs/<study_name>``); usable as ``tensorboard --logdir``.
        env: Environment variables for the experiments, over the defaults
            (``OMP_NUM_THREADS=1``).
        experiment_timeout: Seconds after which one experiment fails its trial.
        max_consecutive_failures: Stop the study after this many failed trials in a row.
        heartbeat_interval: Seconds between heartbeats of running trials; a trial whose process
            died is failed after twice this and retried.
        env_flag: Flag that receives the environment id (``env-id``).
        seed_flag: Flag that receives the seed (``seed``).
        keep_runs: Disk retention of experiment folders: ``"all"``, ``"logs"`` (stdout, stderr
            and TensorBoard files only), or k (the k best trials' folders whole, logs only for
            the others).
        n_slots: How many experiments run at once (default: one per CPU this process may use,
            from its affinity and cgroup quota, fewer if memory is short).
        reporting: ``"checkpoint"`` (default) reports the trial's value to Optuna while
            experiments run, at each of ``checkpoints`` steps of training progress (judged from
            the metric's logged step against the ``progress_flag`` value), so a pruner can stop
            a bad trial early; ``"seed"`` reports after each seed, as CleanRL's tuner.
        checkpoints: Checkpoints per experiment (10: every 10% of training).
        progress_flag: The flag holding the training length in steps.
        slot_env: Environment variables per slot, e.g. ``[{"CUDA_VISIBLE_DEVICES": "0"},
            {"CUDA_VISIBLE_DEVICES": "1"}]``.
        memory_per_experiment: Bytes one experiment needs: fewer slots by default if memory is
            short, and no new experiment while less is available (``None``: no check).
        progress_bar: Show a terminal progress bar (default: when stderr is a terminal).
        override_spec: Continue an existing study even though it was defined differently,
            storing the new definition (the old one is kept in its history).
        verbose: Print one line per experiment and trial.

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
        ...     storage="sqlite:////tmp/nbtune-doctest.db",
        ... )
        >>> tuner.spec.space["total-timesteps"]
        100000
    """

    def __init__(
        self,
        script: str | os.PathLike[str],
        metric: str,
        target_scores: Mapping[str, Sequence[float] | None],
        params_fn: ParamsFn | SearchSpace | Mapping[str, Any],
        direction: str = "maximize",
        aggregation_type: str = "average",
        metric_last_n_average_window: int = 50,
        sampler: optuna.samplers.BaseSampler | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
        storage: str | os.PathLike[str] | BaseStorage = DEFAULT_STORAGE,
        study_name: str = "",
        wandb_kwargs: Mapping[str, Any] | None = None,
        num_seeds: int | None = None,
        *,
        interpreter: str | os.PathLike[str] | None = None,
        runs_dir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        experiment_timeout: float | None = None,
        max_consecutive_failures: int | None = 5,
        heartbeat_interval: int = 60,
        env_flag: str = "env-id",
        seed_flag: str = "seed",
        keep_runs: str | int = "all",
        n_slots: int | None = None,
        reporting: str = "checkpoint",
        checkpoints: int = 10,
        progress_flag: str = "total-timesteps",
        slot_env: Sequence[Mapping[str, str]] = (),
        memory_per_experiment: int | None = DEFAULT_MEMORY_PER_EXPERIMENT,
        progress_bar: bool | None = None,
        override_spec: bool = False,
        verbose: bool = True,
    ) -> None:
        script_path = Path(script).expanduser()
        if not script_path.is_file():
            raise ValueError(
                f"script: {str(script)!r} is not a file (looked for {script_path.resolve()}). "
                "Give the path of the training script, relative to the current directory or "
                "absolute."
            )
        if not isinstance(metric, str) or not metric:
            raise ValueError(
                f"metric must be the TensorBoard tag the script logs, such as "
                f"'charts/episodic_return'; got {metric!r}."
            )
        if isinstance(params_fn, Mapping):
            params_fn = SearchSpace.from_dict(params_fn)
        if not callable(params_fn):
            raise ValueError(
                "params_fn must be a function of an Optuna trial returning a dict, or a "
                "SearchSpace."
            )
        if isinstance(direction, optuna.study.StudyDirection):
            direction = direction.name.lower()
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize'; got {direction!r}.")
        _check_positive_int("metric_last_n_average_window", metric_last_n_average_window)
        if num_seeds is not None:
            _check_positive_int("num_seeds", num_seeds)
        if experiment_timeout is not None and not experiment_timeout > 0:
            raise ValueError(
                "experiment_timeout must be a positive number of seconds or None; "
                f"got {experiment_timeout!r}."
            )
        if max_consecutive_failures is not None:
            _check_positive_int("max_consecutive_failures", max_consecutive_failures)
        _check_positive_int("heartbeat_interval", heartbeat_interval)

        self.script = script_path.resolve()
        self.metric = metric
        self.target_scores = check_target_scores(target_scores)
        self.params_fn = params_fn
        self.direction = direction
        self.aggregation_type = check_aggregation(aggregation_type)
        self.metric_last_n_average_window = metric_last_n_average_window
        self.sampler = sampler
        self.pruner = pruner
        self.study_name = study_name or f"tuner_{int(time.time())}"
        self.wandb_kwargs = dict(wandb_kwargs or {})
        self.num_seeds = num_seeds
        self.interpreter = str(interpreter) if interpreter is not None else sys.executable
        self.runs_dir = (
            Path(runs_dir) if runs_dir is not None else Path("nbtune_runs") / self.study_name
        ).resolve()
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.experiment_timeout = experiment_timeout
        self.max_consecutive_failures = max_consecutive_failures
        self.heartbeat_interval = heartbeat_interval
        self.env_flag = env_flag
        self.seed_flag = seed_flag
        self.keep_runs = check_keep_runs(keep_runs)
        if reporting not in ("checkpoint", "seed"):
            raise ValueError(f"reporting must be 'checkpoint' or 'seed'; got {reporting!r}.")
        _check_positive_int("checkpoints", checkpoints)
        if n_slots is not None:
            _check_positive_int("n_slots", n_slots)
        self.memory_per_experiment = memory_per_experiment
        self.n_slots = n_slots if n_slots is not None else default_slots(memory_per_experiment or 0)
        self.reporting = reporting
        self.checkpoints = checkpoints if reporting == "checkpoint" else 1
        self.progress_flag = progress_flag
        self.slot_env = [dict(e) for e in slot_env]
        self.progress_bar = progress_bar
        self._warn_sampler()
        self.override_spec = override_spec
        self.verbose = verbose
        self.space, self.space_note = record_space(params_fn)
        self._storage_arg = storage
        self._storage: BaseStorage | None = None
        self._study: optuna.Study | None = None
        self._stored_spec: StudySpec | None = None

    def _warn_sampler(self) -> None:
        """Several trials at once need a sampler that accounts for the running ones."""
        sampler = self.sampler
        if (
            self.n_slots > 1
            and isinstance(sampler, optuna.samplers.TPESampler)
            and not _optuna.tpe_constant_liar(sampler)
        ):
            warnings.warn(
                f"{self.n_slots} slots run trials concurrently, but this TPESampler has "
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
        storage. ``overrides`` replace constructor arguments that are local to this process
        (``interpreter``, ``runs_dir``, ``env``, ``verbose``, ...).

        Raises:
            ValueError: If the study does not exist, was not created by nbtune, or its
                ``params_fn`` is not declarative (it can only run in the process that has it).
        """
        opened = open_storage(storage, must_exist=must_exist, heartbeat_interval=None)
        try:
            study = optuna.load_study(study_name=study_name, storage=opened)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
            raise ValueError(
                f"no study named {study_name!r} in {describe_storage(storage)}; it has: "
                f"{', '.join(names) or 'no study'}."
            ) from None
        raw = study.user_attrs.get(STUDY_SPEC)
        if raw is None:
            raise ValueError(
                f"study {study_name!r} has no nbtune spec (it was not created by nbtune): "
                "start it with nbtune.Tuner or `nbtune tune CONFIG` first."
            )
        spec = StudySpec.from_json(raw)
        heartbeat = int(overrides.get("heartbeat_interval", spec.heartbeat_interval))
        if not isinstance(storage, BaseStorage):
            opened = open_storage(storage, heartbeat_interval=heartbeat)  # as the study needs
        if spec.space is None:
            raise ValueError(
                f"study {study_name!r} samples its parameters with a params_fn that is not "
                f"declarative ({spec.space_note}), so only the process that has that function "
                "can run its trials. Write the space as a table (nbtune.SearchSpace or the "
                "'params' table of a config file) to let workers join."
            )
        kwargs: dict[str, Any] = {
            "script": spec.script,
            "metric": spec.metric,
            "target_scores": spec.targets,
            "params_fn": SearchSpace.from_dict(spec.space),
            "direction": spec.direction,
            "aggregation_type": spec.aggregation,
            "metric_last_n_average_window": spec.window,
            "sampler": build_component(spec.sampler, "samplers"),
            "pruner": build_component(spec.pruner, "pruners"),
            "storage": opened,
            "study_name": study_name,
            "num_seeds": spec.num_seeds,
            "interpreter": spec.interpreter,
            "runs_dir": spec.runs_dir or None,
            "env": spec.env,
            "experiment_timeout": spec.experiment_timeout,
            "env_flag": spec.env_flag,
            "seed_flag": spec.seed_flag,
            "heartbeat_interval": heartbeat,
            "reporting": spec.reporting,
            "checkpoints": max(1, spec.checkpoints),
        }
        kwargs.update(overrides)
        tuner = cls(**kwargs)
        tuner._storage_arg = storage if not isinstance(storage, BaseStorage) else opened
        tuner._storage = opened
        return tuner

    # ----------------------------------------------------------------------------------------
    @property
    def storage(self) -> BaseStorage:
        """The opened Optuna storage."""
        if self._storage is None:
            self._storage = open_storage(
                self._storage_arg, heartbeat_interval=self.heartbeat_interval
            )
        return self._storage

    @property
    def spec(self) -> StudySpec:
        """What defines this study, as stored with it."""
        return StudySpec(
            script=str(self.script),
            interpreter=self.interpreter,
            metric=self.metric,
            window=self.metric_last_n_average_window,
            direction=self.direction,
            aggregation=self.aggregation_type,
            targets={k: None if v is None else list(v) for k, v in self.target_scores.items()},
            num_seeds=self.num_seeds,
            space=None if self.space is None else self.space.to_dict(),
            space_note=self.space_note,
            sampler=describe_component(self.sampler),
            pruner=describe_component(self.pruner),
            env_flag=self.env_flag,
            seed_flag=self.seed_flag,
            env=self.env,
            experiment_timeout=self.experiment_timeout,
            runs_dir=str(self.runs_dir),
            script_sha256=_sha256(self.script),
            heartbeat_interval=self.heartbeat_interval,
            reporting=self.reporting,
            checkpoints=self.checkpoints,
        )

    @property
    def study(self) -> optuna.Study:
        """The Optuna study, created on first use or continued if it exists and matches."""
        if self._study is None:
            self._study = self._open_study()
        return self._study

    def _open_study(self, num_seeds: int | None = None) -> optuna.Study:
        storage = self.storage
        spec = self.spec
        if num_seeds is not None:
            spec.num_seeds = num_seeds
        try:
            existing = optuna.load_study(study_name=self.study_name, storage=storage)
        except KeyError:
            existing = None
        if existing is not None:
            stored_direction = existing.direction.name.lower()
            stored = existing.user_attrs.get(STUDY_SPEC)
            stored_spec = StudySpec.from_json(stored) if stored is not None else None
            diff = stored_spec.differences(spec) if stored_spec is not None else []
            if stored_spec is None and stored_direction != self.direction:
                # A study nbtune did not create: only its direction can be compared.
                diff.append(f"  direction: stored {stored_direction!r}, given {self.direction!r}")
            if diff and (not self.override_spec or stored_direction != self.direction):
                fix = "Use another study_name for a new study" + (
                    ", or pass override_spec=True to continue it with the new definition."
                    if stored_direction == self.direction
                    else " (Optuna cannot change a study's direction)."
                )
                raise SpecMismatchError(
                    f"study {self.study_name!r} in {describe_storage(self._storage_arg)} was "
                    f"defined differently:\n" + "\n".join(diff) + f"\n{fix}"
                )
            study = existing
            if stored_spec is not None and not diff:
                if spec.num_seeds is None:
                    spec.num_seeds = stored_spec.num_seeds
                if spec.script_sha256 != stored_spec.script_sha256:
                    spec.script_sha256 = stored_spec.script_sha256  # warned about per trial
                self._stored_spec = stored_spec
            else:
                if diff:
                    history = list(existing.user_attrs.get(STUDY_SPEC_HISTORY, []))
                    history.append(stored)
                    existing.set_user_attr(STUDY_SPEC_HISTORY, history)
                    self._say("nbtune: continuing with a changed definition:\n" + "\n".join(diff))
                existing.set_user_attr(STUDY_SPEC, spec.to_json())
                self._stored_spec = spec
            if self.sampler is not None or self.pruner is not None:
                study = optuna.load_study(
                    study_name=self.study_name,
                    storage=storage,
                    sampler=self.sampler,
                    pruner=self.pruner,
                )
            return study
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            pruner=self.pruner,
            direction=self.direction,
            load_if_exists=True,
        )
        study.set_user_attr(STUDY_SPEC, spec.to_json())
        self._stored_spec = spec
        if self.space is None:
            self._say(
                f"nbtune: params_fn is not declarative ({self.space_note}): this study's trials "
                "run only from this process; workers elsewhere will refuse it."
            )
        return study

    def _say(self, line: str) -> None:
        if self.verbose:
            print(line, flush=True)

    # ----------------------------------------------------------------------------------------
    def tune(
        self,
        num_trials: int,
        num_seeds: int | None = None,
        *,
        timeout: float | None = None,
        stop_event: threading.Event | None = None,
        pause_event: threading.Event | None = None,
    ) -> FrozenTrial:
        """Add ``num_trials`` trials of ``num_seeds`` seeds each to the study; return the best.

        The study's total becomes (trials finished so far + ``num_trials``); this process and
        any ``nbtune worker`` joined to the study share the work and stop when it is reached.

        Args:
            num_trials: Trials to add to the study, as Optuna's ``n_trials``.
            num_seeds: Seeds per environment (``0 .. num_seeds - 1``); default the
                constructor's, or the study's.
            timeout: Stop starting trials after this many seconds (running ones finish).
            pause_event: While set (from another thread), running experiments are frozen and
                none starts; clear it to go on.
            stop_event: Set it from another thread to stop: running experiments end and their
                trials are failed, so none stays RUNNING.

        Returns:
            The study's best trial.

        Raises:
            ValueError: For a bad ``num_trials`` or ``num_seeds``, before anything runs.
            SpecMismatchError: If the study exists and was defined differently.
            TuningError: When too many trials fail in a row, or no trial has completed.
        """
        _check_positive_int("num_trials", num_trials)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}.")
        num_seeds = self._prepare(num_seeds)
        self._extend(num_trials)
        self._schedule(num_seeds, timeout, stop_event, pause_event)
        try:
            best = self.study.best_trial
        except ValueError:
            raise TuningError(
                f"no trial of study {self.study_name!r} has completed; see each trial's "
                "fail_reason in tuner.trials_dataframe()."
            ) from None
        self._say(f"The best trial obtains a normalized score of {best.value} {best.params}")
        return best

    def reserve(self, num_trials: int, num_seeds: int | None = None) -> int:
        """Record the study and add ``num_trials`` to its budget without running anything.

        Use it to prepare a study that ``nbtune worker`` processes (on this machine or others)
        then run; :meth:`tune` is ``reserve`` followed by working on the study.

        Returns:
            The study's new total.
        """
        _check_positive_int("num_trials", num_trials)
        self._prepare(num_seeds)
        return self._extend(num_trials)

    def work(
        self,
        *,
        timeout: float | None = None,
        stop_event: threading.Event | None = None,
        pause_event: threading.Event | None = None,
    ) -> RunSummary:
        """Work on the study's remaining budget without adding to it (what a worker does)."""
        num_seeds = self._prepare(None)
        return self._schedule(num_seeds, timeout, stop_event, pause_event)

    def _prepare(self, num_seeds: int | None) -> int:
        """Open the study, settle the number of seeds with the stored spec, and return it."""
        if num_seeds is None:
            num_seeds = self.num_seeds
        if num_seeds is not None:
            _check_positive_int("num_seeds", num_seeds)
        if self._study is None:
            self._study = self._open_study(num_seeds)
        stored = self._stored_spec
        assert stored is not None
        if num_seeds is None:
            num_seeds = stored.num_seeds
        if num_seeds is None:
            raise ValueError("num_seeds: give tune(num_trials, num_seeds) or Tuner(num_seeds=...).")
        if stored.num_seeds is None:
            stored.num_seeds = num_seeds
            self._study.set_user_attr(STUDY_SPEC, stored.to_json())
        elif stored.num_seeds != num_seeds:
            raise SpecMismatchError(
                f"study {self.study_name!r} averages {stored.num_seeds} seeds per trial; "
                f"num_seeds={num_seeds} would make new values incomparable. Use "
                f"num_seeds={stored.num_seeds}, or another study_name."
            )
        return num_seeds

    def _extend(self, num_trials: int) -> int:
        fail_stale_trials(self.study, 2 * self.heartbeat_interval)
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
    ) -> RunSummary:
        listeners: list[TrialListener] = []
        if self.wandb_kwargs:
            from nbtune._wandb import WandbTracker

            listeners.append(WandbTracker(self.wandb_kwargs, self.study_name))
        assert self._stored_spec is not None
        show_bar = self.progress_bar if self.progress_bar is not None else sys.stderr.isatty()
        bar = ProgressBar(self.study) if show_bar else None
        log = (bar.write if bar is not None else self._say) if self.verbose else None
        scheduler = Scheduler(
            self.study,
            self._run_config(),
            num_seeds=num_seeds,
            max_consecutive_failures=self.max_consecutive_failures,
            heartbeat_interval=self.heartbeat_interval,
            n_slots=self.n_slots,
            slot_env=self.slot_env,
            memory_per_experiment=self.memory_per_experiment,
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

    def _run_config(self) -> RunConfig:
        return RunConfig(
            script=self.script,
            interpreter=self.interpreter,
            metric=self.metric,
            window=self.metric_last_n_average_window,
            targets=self.target_scores,
            aggregation=self.aggregation_type,
            params_fn=self.params_fn,
            runs_dir=self.runs_dir,
            env=self.env,
            experiment_timeout=self.experiment_timeout,
            env_flag=self.env_flag,
            seed_flag=self.seed_flag,
            keep_runs=self.keep_runs,
            reporting=self.reporting,
            checkpoints=self.checkpoints,
            progress_flag=self.progress_flag,
        )

    def _announce(self, total: int | None) -> None:
        where = describe_storage(self._storage_arg)
        path = sqlite_path(str(getattr(self.storage, "url", "")))
        if path is not None:
            where = f"sqlite:///{path}"
        self._say(f"nbtune: study {self.study_name!r} in {where} (total {total} trials)")
        self._say(f"nbtune: experiment folders under {self.runs_dir}")
        if self.space is not None:
            self._say(
                "nbtune: more processes can join with: nbtune worker --storage "
                f"{shlex.quote(where)} --study {shlex.quote(self.study_name)}"
            )

    # ----------------------------------------------------------------------------------------
    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Queue a known configuration (a baseline) to be tried next; it counts in the budget.

        Args:
            params: Values by flag name (``"learning-rate"``) or parameter name; parameters
                left out are sampled.

        Raises:
            ValueError: For a name the search space does not sample, or a categorical value
                that is not one of its choices.
        """
        self.study.enqueue_trial(self._to_param_names(params), skip_if_exists=False)
        self._say(f"nbtune: enqueued {dict(params)}")

    def enqueue_defaults(self) -> dict[str, Any]:
        """Queue the script's own defaults for every sampled parameter, read from its ``--help``.

        Returns:
            The values enqueued, by flag.
        """
        if self.space is None:
            raise ValueError(
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
                raise ValueError(
                    f"enqueue: {key!r} is not a sampled parameter{fixed}; sampled: "
                    f"{', '.join(by_flag) or 'none'}."
                )
            if param.type == "categorical" and value not in (param.choices or ()):
                raise ValueError(
                    f"enqueue: {key!r} must be one of {list(param.choices or ())}, got {value!r}."
                )
            if param.type == "int":
                value = int(value)
            elif param.type == "float":
                value = float(value)
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


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1; got {value!r}.")


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
        raise ValueError(f"could not run {script} --help: {exc}") from exc
    if out.returncode != 0:
        raise ValueError(f"{script} --help exited with {out.returncode}: {out.stderr[-500:]}")
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
        raise ValueError(
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
