"""The seed-compatible ``Tuner``: CleanRL's API, run correctly and in isolation."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from nbtune import _attrs
from nbtune._scheduler import RunConfig, RunSummary, Scheduler, TrialListener, TuningError
from nbtune._scoring import check_aggregation, check_target_scores
from nbtune._space import ParamsFn
from nbtune._storage import DEFAULT_STORAGE, describe_storage, open_storage, sqlite_path


class Tuner:
    """Tune a training script's hyperparameters for one score across several environments.

    A drop-in for CleanRL's ``cleanrl_utils.tuner.Tuner``: the same arguments mean the same
    thing. Each trial samples parameters with ``params_fn``, runs the script once per
    environment and seed as a subprocess (``[python, script, --key=value..., --env-id=E,
    --seed=S]``) in its own folder, averages the last ``metric_last_n_average_window`` points of
    ``metric`` from its TensorBoard log, normalizes it with ``target_scores``, aggregates across
    environments and averages over seeds; Optuna optimizes that value.

    Args:
        script: Path of the training script.
        metric: TensorBoard scalar tag the script logs, e.g. ``"charts/episodic_return"``.
        target_scores: ``{env_id: [low, high]}``; the normalized score is
            ``(x - low) / (high - low)``. ``{env_id: None}`` (one environment only) uses the raw
            metric.
        params_fn: ``params_fn(trial) -> dict`` of flag name to value, sampled with
            ``trial.suggest_*`` or fixed.
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
            name is continued.
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
        ...     study_name="doctest",
        ... )  # doctest: +SKIP
        >>> best = tuner.tune(num_trials=10, num_seeds=3)  # doctest: +SKIP

    """

    def __init__(
        self,
        script: str | os.PathLike[str],
        metric: str,
        target_scores: Mapping[str, Sequence[float] | None],
        params_fn: ParamsFn,
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
        if not callable(params_fn):
            raise ValueError("params_fn must be a function of an Optuna trial returning a dict.")
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
        self.env = dict(env or {})
        self.experiment_timeout = experiment_timeout
        self.max_consecutive_failures = max_consecutive_failures
        self.heartbeat_interval = heartbeat_interval
        self.env_flag = env_flag
        self.seed_flag = seed_flag
        self.verbose = verbose
        self._storage_arg = storage
        self._storage: BaseStorage | None = None
        self._study: optuna.Study | None = None

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
    def study(self) -> optuna.Study:
        """The Optuna study, created on first use or continued if it exists."""
        if self._study is None:
            self._study = self._open_study()
        return self._study

    def _open_study(self) -> optuna.Study:
        storage = self.storage
        try:
            existing = optuna.load_study(study_name=self.study_name, storage=storage)
        except KeyError:
            existing = None
        if existing is not None and existing.direction.name.lower() != self.direction:
            raise ValueError(
                f"study {self.study_name!r} in {describe_storage(self._storage_arg)} was created "
                f"to {existing.direction.name.lower()} but this Tuner has direction="
                f"{self.direction!r}. Use another study_name for a new study."
            )
        return optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            pruner=self.pruner,
            direction=self.direction,
            load_if_exists=True,
        )

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
    ) -> FrozenTrial:
        """Run ``num_trials`` more trials of ``num_seeds`` seeds each; return the best trial.

        Args:
            num_trials: Trials to add to the study, as Optuna's ``n_trials``.
            num_seeds: Seeds per environment (``0 .. num_seeds - 1``); default the
                constructor's.
            timeout: Stop starting trials after this many seconds.
            stop_event: Set it from another thread to stop: running experiments end and their
                trials are failed, so none stays RUNNING.

        Returns:
            The study's best trial.

        Raises:
            ValueError: For a bad ``num_trials`` or ``num_seeds``, before anything runs.
            TuningError: When too many trials fail in a row, or no trial has completed.

        """
        _check_positive_int("num_trials", num_trials)
        if num_seeds is None:
            num_seeds = self.num_seeds
        if num_seeds is None:
            raise ValueError("num_seeds: give tune(num_trials, num_seeds) or Tuner(num_seeds=...).")
        _check_positive_int("num_seeds", num_seeds)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}.")

        study = self.study
        self._announce()
        listeners: list[TrialListener] = []
        if self.wandb_kwargs:
            from nbtune._wandb import WandbTracker

            listeners.append(WandbTracker(self.wandb_kwargs, self.study_name))
        scheduler = Scheduler(
            study,
            self._run_config(),
            num_seeds=num_seeds,
            max_consecutive_failures=self.max_consecutive_failures,
            heartbeat_interval=self.heartbeat_interval,
            stop_event=stop_event,
            listeners=listeners,
            log=self._say if self.verbose else None,
        )
        with _sigterm_as_interrupt():
            summary = scheduler.run(num_trials, timeout=timeout)
        self._say(_summary_line(summary))
        try:
            best = study.best_trial
        except ValueError:
            raise TuningError(
                f"no trial of study {self.study_name!r} has completed; see each trial's "
                "fail_reason in tuner.trials_dataframe()."
            ) from None
        self._say(f"The best trial obtains a normalized score of {best.value} {best.params}")
        return best

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
        )

    def _announce(self) -> None:
        where = describe_storage(self._storage_arg)
        if isinstance(self._storage_arg, (str, os.PathLike)):
            path = sqlite_path(str(getattr(self.storage, "url", "")))
            if path is not None:
                where = f"sqlite:///{path}"
        self._say(f"nbtune: study {self.study_name!r} in {where}")
        self._say(f"nbtune: experiment folders under {self.runs_dir}")
        self._say(f"nbtune: watch the runs with: tensorboard --logdir {self.runs_dir}")

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
