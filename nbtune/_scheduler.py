"""The scheduler: trials from Optuna (ask/tell), experiments on slots, scores back to Optuna.

One loop, on one thread, owns every running trial and experiment:

1. it fills free slots with experiments of the running trials, oldest trial first and seeds in
   order, asking Optuna for a new trial when none is waiting to run;
2. it polls the experiments; when one ends it reads the metric and scores it;
3. when all environments of a seed are scored it reports the running trial value to Optuna
   (per-seed reporting, as CleanRL's tuner does) and asks the pruner;
4. when every experiment of a trial has ended it tells Optuna the value (or the failure);
5. it records heartbeats of running trials and fails trials of dead processes.

Whatever ends the loop (a stop request, Ctrl-C, SIGTERM, an error), running experiments are
stopped and running trials are failed with the reason, so the study never keeps a trial RUNNING.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from optuna.trial import TrialState

from nbtune import _attrs, _optuna
from nbtune._budget import budget_state, claim_trial, give_back, others_working
from nbtune._errors import TuningError
from nbtune._experiment import Experiment, argument_mismatch, build_argv
from nbtune._metrics import ScalarTail, reported_hyperparameters, scalar_tags
from nbtune._output import WRITING_AGAIN
from nbtune._resources import available_memory, check_runs_dir, disk_full, disk_full_message
from nbtune._retention import apply_retention
from nbtune._scoring import normalize, normalize_all, trial_value
from nbtune._space import sample_params
from nbtune._storage import (
    fail_stale_trials,
    forget_trial,
    record_heartbeat,
    record_owner,
    stale_waits,
)
from nbtune._version import __version__

if TYPE_CHECKING:
    from nbtune._config import TunerConfig

__all__ = ["RunSummary", "Scheduler", "TrialListener", "TuningError"]


class TrialListener(Protocol):
    """Hooks called on the scheduler's thread (used for wandb tracking)."""

    def on_trial_start(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None:
        """A trial's parameters were sampled."""

    def on_experiment_end(
        self,
        trial: optuna.Trial,
        env_id: str,
        seed: int,
        raw: float | None,
        normalized: float | None,
    ) -> None:
        """An experiment of the trial ended (scores ``None`` when it failed)."""

    def on_trial_end(self, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
        """The trial was told to Optuna."""

    # Optional: ``on_warning(trial, line)``, a warning about a running trial (it seems stuck).


@dataclass
class _TrialRun:
    trial: optuna.Trial
    params: dict[str, Any]
    seeds: list[int]
    envs: list[str]
    pending: deque[tuple[int, str]]
    experiments: dict[tuple[int, str], Experiment] = field(default_factory=dict)
    tails: dict[tuple[int, str], ScalarTail] = field(default_factory=dict)
    raw: dict[str, list[float | None]] = field(default_factory=dict)
    next_key: int = 0  # the next intermediate-value step to report
    failure: tuple[str, str] | None = None  # reason, stderr tail
    pruned: bool = False
    slots: dict[tuple[int, str], int] = field(default_factory=dict)
    checkpoint_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    tails_polled: float = 0.0
    told: bool = False  # this process told Optuna the trial's outcome
    data_warnings: list[str] = field(default_factory=list)  # unreadable parts of event files
    # Stall watch: per experiment, what it had written and its running seconds when that changed.
    activity: dict[tuple[int, str], tuple[tuple[int, int, int], float]] = field(
        default_factory=dict
    )
    stalled: set[tuple[int, str]] = field(default_factory=set)
    stall_warnings: list[str] = field(default_factory=list)
    stalls_checked: float = 0.0

    @property
    def running(self) -> list[Experiment]:
        return [e for e in self.experiments.values() if e.running]

    @property
    def done(self) -> bool:
        return not self.pending and not self.running


@dataclass
class RunSummary:
    """What one :meth:`Scheduler.run` did."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: int = 0

    @property
    def finished(self) -> int:
        """Trials that count towards the budget: complete, pruned, or failed by the script."""
        return self.complete + self.pruned + self.failed


class Scheduler:
    """Runs trials of one study as experiments on a number of slots.

    Args:
        study: The Optuna study (its storage is the one source of truth).
        config: How trials become experiments and scores, on how many slots (its
            ``n_slots``, ``slot_env``, ``memory_per_experiment``, ``heartbeat_interval`` and
            ``max_consecutive_failures`` too).
        num_seeds: Seeds per environment; seeds are ``first_seed .. first_seed + num_seeds - 1``
            (the config's ``first_seed``: 0, as in CleanRL, unless the study validates another).
        grace_period: Seconds without heartbeat after which another process's trial is stale.
        max_retry: How many times a trial of a dead process is re-run.
        poll_interval: Seconds between polls of running experiments.
        report_interval: Seconds between reads of running experiments' metric (in-run
            reporting).
        stop_event: Set it (from any thread) to stop: running experiments are ended and their
            trials failed as interrupted.
        pause_event: While it is set, running experiments are frozen (SIGSTOP, resumed with
            SIGCONT when it is cleared) and none starts; heartbeats go on.
        listeners: Hooks such as wandb tracking.
        log: Receives one line per event worth telling the user.
        study_script_sha256: Hash of the script when the study began; a different script is
            warned about once.
        on_tick: Called on every turn of the loop (a progress bar throttles itself).

    """

    def __init__(
        self,
        study: optuna.Study,
        config: TunerConfig,
        *,
        num_seeds: int,
        grace_period: float | None = None,
        max_retry: int | None = 3,
        poll_interval: float = 0.05,
        report_interval: float = 1.0,
        stop_event: threading.Event | None = None,
        pause_event: threading.Event | None = None,
        listeners: Sequence[TrialListener] = (),
        log: Callable[[str], None] | None = print,
        study_script_sha256: str = "",
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.study = study
        self.config = config
        self.num_seeds = num_seeds
        self.n_slots: int = config.n_slots  # type: ignore[assignment]  # resolved by the config
        self.max_consecutive_failures = config.max_consecutive_failures
        self.heartbeat_interval = config.heartbeat_interval
        self.grace_period = (
            grace_period if grace_period is not None else 2 * self.heartbeat_interval
        )
        self.max_retry = max_retry
        self.poll_interval = poll_interval
        self.report_interval = report_interval
        self.slot_env = [dict(e) for e in config.slot_env]
        self.memory_per_experiment = config.memory_per_experiment
        self._memory_warned = False
        self.stop_event = stop_event or threading.Event()
        self.pause_event = pause_event or threading.Event()
        self._paused = False
        self.listeners = list(listeners)
        self._log = log
        self._active: list[_TrialRun] = []
        self._script_sha256 = _file_sha256(config.script)
        self._study_script_sha256 = study_script_sha256 or self._script_sha256
        self._warned_script_change = False
        self._reduced: set[int] = set()
        self._on_tick = on_tick
        self._versions = _versions(config.interpreter)
        self._told_waits: tuple[int, ...] = ()

    # ----------------------------------------------------------------------------------------
    def run(self, timeout: float | None = None) -> RunSummary:
        """Run the study's reserved trials until its budget is reached; return a summary.

        Only trials reserved in the study (see :mod:`nbtune._budget`) are run, so several
        processes share a budget exactly. While other processes still run trials of the study,
        this one waits for them (and retries theirs if they die) instead of leaving early.

        Args:
            timeout: Stop starting trials after this many seconds; running ones finish.

        Raises:
            TuningError: After ``max_consecutive_failures`` failed trials in a row.
        """
        summary = RunSummary()
        deadline = None if timeout is None else time.monotonic() + timeout
        consecutive_failures = 0
        last_failure = ""
        next_heartbeat = 0.0
        # A read-only or full disk is said now, in one line, not as a crash of the first trial.
        check_runs_dir(Path(self.config.runs_dir))  # type: ignore[arg-type]  # resolved
        fail_stale_trials(self.study, self.grace_period, self.max_retry)
        try:
            while True:
                if self.stop_event.is_set():
                    break
                if self._sync_pause():
                    now = time.monotonic()
                    if now >= next_heartbeat:
                        self._beat()
                        next_heartbeat = now + self.heartbeat_interval
                    if deadline is not None:
                        deadline += self.poll_interval  # a pause does not use up the time budget
                    self.stop_event.wait(self.poll_interval)
                    continue
                for run in list(self._active):
                    try:
                        self._poll_trial(run)
                        if not run.done:
                            continue
                        state = self._finish_trial(run)
                    except Exception:
                        if not self._lost_to_another_process(run):
                            raise
                        continue
                    self._active.remove(run)
                    if state == TrialState.COMPLETE:
                        summary.complete += 1
                        consecutive_failures = 0
                    elif state == TrialState.PRUNED:
                        summary.pruned += 1
                        consecutive_failures = 0
                    else:
                        summary.failed += 1
                        consecutive_failures += 1
                        last_failure = run.failure[0] if run.failure else ""
                if (
                    self.max_consecutive_failures is not None
                    and consecutive_failures >= self.max_consecutive_failures
                ):
                    raise TuningError(
                        f"{consecutive_failures} trials in a row failed; stopping the study. "
                        f"Last failure: {last_failure}"
                    )
                can_start = deadline is None or time.monotonic() < deadline
                while self._free_slots() > 0:
                    item = self._next_experiment()
                    if item is None:
                        run = self._start_trial() if can_start else None
                        if run is None:
                            break
                        self._active.append(run)
                        continue
                    self._start_experiment(*item)
                now = time.monotonic()
                if self._on_tick is not None:
                    self._on_tick()
                if not self._active:
                    if not can_start or budget_state(self.study).reached:
                        break
                    if not others_working(self.study, set()):
                        break
                    # Other processes still work on the study: wait, in case one dies and its
                    # trial comes back to the queue (or a reservation is given back).
                    if now >= next_heartbeat:
                        fail_stale_trials(self.study, self.grace_period, self.max_retry)
                        self._tell_waits()
                        next_heartbeat = now + min(self.heartbeat_interval, 5.0)
                    self.stop_event.wait(min(1.0, self.heartbeat_interval))
                    continue
                if now >= next_heartbeat:
                    self._beat()
                    fail_stale_trials(self.study, self.grace_period, self.max_retry)
                    next_heartbeat = now + self.heartbeat_interval
                self.stop_event.wait(self.poll_interval)
        except BaseException as exc:
            reason = f"interrupted by {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
            with _signals_deferred(self._say_always, unwinding=True):
                summary.interrupted += self._abort_all(reason)
            raise
        with _signals_deferred(self._say_always, unwinding=False):
            summary.interrupted += self._abort_all("stopped before it finished")
        return summary

    # ----------------------------------------------------------------------------------------
    def _sync_pause(self) -> bool:
        """Freeze or continue running experiments to match ``pause_event``; return paused."""
        paused = self.pause_event.is_set()
        if paused != self._paused:
            self._paused = paused
            for run in self._active:
                for exp in run.running:
                    if paused:
                        exp.pause()
                    else:
                        exp.resume()
            self._say("nbtune: paused" if paused else "nbtune: resumed")
        return paused

    def _free_slots(self) -> int:
        running = sum(len(run.running) for run in self._active)
        free = self.n_slots - running
        if free > 0 and running > 0 and self.memory_per_experiment:
            memory = available_memory()
            if memory is not None and memory < self.memory_per_experiment:
                if not self._memory_warned:
                    self._say(
                        f"nbtune: only {memory >> 20} MiB of memory available: not starting "
                        "more experiments until some end"
                    )
                    self._memory_warned = True
                return 0
        return free

    def _free_slot_id(self) -> int:
        used = {
            slot
            for run in self._active
            for key, slot in run.slots.items()
            if run.experiments[key].running
        }
        return min(i for i in range(self.n_slots) if i not in used)

    def _next_experiment(self) -> tuple[_TrialRun, int, str] | None:
        for run in self._active:
            if run.pending and run.failure is None and not run.pruned:
                seed_index, env_id = run.pending[0]
                return run, seed_index, env_id
        return None

    def _beat(self) -> None:
        """Record the heartbeat of every running trial."""
        for run in list(self._active):
            try:
                record_heartbeat(self.study, _optuna.trial_id(run.trial))
            except Exception:
                if not self._lost_to_another_process(run):
                    raise

    def _tell_waits(self) -> None:
        """Say which other processes' trials this one waits for, once per set of trials.

        After a crash, a re-run waits for the dead run's trials until their heartbeat is stale
        (twice ``heartbeat_interval``): without this line it would print nothing meanwhile.
        """
        waits = stale_waits(self.study, self.grace_period)
        numbers = tuple(number for number, _, _ in waits)
        if not numbers or numbers == self._told_waits:
            return
        self._told_waits = numbers
        parts = [
            f"trial {number} (last heartbeat {format_seconds(age)} ago, "
            + (f"stale in {format_seconds(left)})" if left > 0 else "stale now)")
            for number, age, left in waits
        ]
        self._say(
            "nbtune: waiting for " + ", ".join(parts) + ": they run in another process, or in "
            "one that died; a trial without a heartbeat for "
            f"{format_seconds(self.grace_period)} is failed and run again"
        )

    def _lost_to_another_process(self, run: _TrialRun) -> bool:
        """If another process finished this trial, drop it here and return True.

        That happens when this process looked dead to another one (no heartbeat for the grace
        period: a suspended laptop, a database outage longer than the grace period): that
        process failed the trial as stale and queued a retry. Writing to a finished trial
        raises; the experiments here are stopped and the study goes on.
        """
        if run.told:
            return False
        try:
            stored = _optuna.study_storage(self.study).get_trial(_optuna.trial_id(run.trial))
        except Exception:
            return False
        if not stored.state.is_finished():
            return False
        for exp in run.running:
            exp.stop()
        run.pending.clear()
        self._active.remove(run)
        forget_trial(self.study, _optuna.trial_id(run.trial))
        self._say(
            f"trial {run.trial.number} was ended by another process ({stored.state.name.lower()}, "
            "its heartbeat looked stale); its experiments here are stopped and a retry, if any, "
            "runs from the queue"
        )
        return True

    def _start_trial(self) -> _TrialRun | None:
        trial = claim_trial(self.study)
        if trial is None:
            return None
        record_heartbeat(self.study, _optuna.trial_id(trial))
        record_owner(self.study, _optuna.trial_id(trial))
        self._check_script()
        envs = list(self.config.target_scores)
        first = self.config.first_seed
        seeds = list(range(first, first + self.num_seeds))
        run = _TrialRun(
            trial=trial,
            params={},
            seeds=seeds,
            envs=envs,
            pending=deque((s, e) for s in range(len(seeds)) for e in envs),
            raw={e: [None] * len(seeds) for e in envs},
        )
        try:
            run.params, _ = sample_params(self.config.params_fn, trial)
            argvs = {key: self._argv(run, *key) for key in run.pending}
        except Exception as exc:
            # A bug in params_fn repeats on every trial: fail this one, then tell the user.
            self._tell_failed(run, f"params_fn raised {type(exc).__name__}: {exc}", "", "script")
            raise
        trial.set_user_attr(_attrs.SEEDS, seeds)
        trial.set_user_attr(_attrs.SCRIPT_SHA256, self._script_sha256)
        trial.set_user_attr(_attrs.VERSIONS, self._versions)
        trial.set_user_attr(
            _attrs.EXPERIMENTS,
            [
                {
                    "env_id": e,
                    "seed": seeds[s],
                    "argv": argvs[(s, e)],
                    "run_dir": str(self._run_dir(run, s, e)),
                }
                for (s, e) in run.pending
            ],
        )
        for listener in self.listeners:
            listener.on_trial_start(trial, run.params)
        self._say(f"trial {trial.number} started: {_short(run.params)}")
        return run

    def _check_script(self) -> None:
        """Warn once if the script changed since the study began (old and new trials differ)."""
        if self._warned_script_change:
            return
        try:
            now = _file_sha256(self.config.script)
        except OSError as exc:
            raise TuningError(f"cannot read the script {self.config.script}: {exc}") from exc
        if now != self._study_script_sha256:
            self._warned_script_change = True
            message = (
                f"the training script {self.config.script} changed since this study began "
                "(its SHA-256 differs): new trials may not be comparable with old ones. Each "
                "trial records the hash it ran (user attribute script_sha256)."
            )
            warnings.warn(message, UserWarning, stacklevel=2)
            self._say("nbtune: warning: " + message)
        self._script_sha256 = now

    def _argv(self, run: _TrialRun, seed_index: int, env_id: str) -> list[str]:
        c = self.config
        return build_argv(
            c.interpreter,
            c.script,
            run.params,
            env_id,
            run.seeds[seed_index],
            env_flag=c.env_flag,
            seed_flag=c.seed_flag,
        )

    def _run_dir(self, run: _TrialRun, seed_index: int, env_id: str) -> Path:
        safe_env = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in env_id)
        return (
            self.config.runs_dir
            / f"trial_{run.trial.number:05d}"
            / f"{safe_env}__seed{run.seeds[seed_index]}"
        )

    def _start_experiment(self, run: _TrialRun, seed_index: int, env_id: str) -> None:
        run.pending.popleft()
        key = (seed_index, env_id)
        run_dir = self._run_dir(run, seed_index, env_id)
        if run_dir.exists() and any(run_dir.iterdir()):
            # A retried trial keeps its number's folder only if it is new: never mix two runs.
            run_dir = run_dir.with_name(run_dir.name + f"__{int(time.time() * 1000)}")
        slot = self._free_slot_id()
        env = dict(self.config.env)
        if self.slot_env:
            env.update(self.slot_env[slot % len(self.slot_env)])
        exp = Experiment(
            argv=self._argv(run, seed_index, env_id),
            run_dir=run_dir,
            env=env,
            timeout=self.config.experiment_timeout,
            env_id=env_id,
            seed=run.seeds[seed_index],
        )
        run.experiments[key] = exp
        run.slots[key] = slot
        run.tails[key] = ScalarTail(run_dir, self.config.metric)
        try:
            exp.start()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise TuningError(disk_full_message(run_dir, str(exc))) from None
            raise

    def _poll_trial(self, run: _TrialRun) -> None:
        now = time.monotonic()
        if self.config.reporting == "checkpoint" and now - run.tails_polled >= self.report_interval:
            run.tails_polled = now
            for key, exp in run.experiments.items():
                if exp.running:
                    run.tails[key].poll()
        for key, exp in run.experiments.items():
            if not exp.running:
                continue
            code = exp.poll()
            if code is None:
                continue
            self._experiment_ended(run, key, exp, code)
            if run.failure is not None:
                self._stop_experiments(run)
                return
        if run.failure is None and not run.pruned:
            self._report(run)
            self._watch_stalls(run)

    def _watch_stalls(self, run: _TrialRun) -> None:
        """Say once per stall when a running experiment has written nothing for a while.

        Activity is anything the script writes where nbtune looks: its standard output and
        error (log files) and TensorBoard records of any tag. Time paused does not count.
        """
        limit = self.config.stall_warning
        now = time.monotonic()
        if not limit or now - run.stalls_checked < min(5.0, limit / 4):
            return
        run.stalls_checked = now
        for key, exp in run.experiments.items():
            if not exp.running or exp.paused:
                continue
            tail = run.tails[key]
            if self.config.reporting != "checkpoint":
                tail.poll()  # otherwise read at every report_interval already
            written = (_size(exp.stdout_path), _size(exp.stderr_path), tail.records_read)
            seconds = exp.seconds or 0.0
            seen = run.activity.get(key)
            if seen is None or seen[0] != written:
                if seen is not None and key in run.stalled:
                    run.stalled.discard(key)
                    line = (
                        f"{exp.env_id} seed {exp.seed}: {WRITING_AGAIN} after "
                        f"{format_seconds(seconds - seen[1])} of silence"
                    )
                    run.stall_warnings.append(line)  # the last line tells the current state
                    run.trial.set_user_attr(_attrs.STALL_WARNINGS, run.stall_warnings)
                    self._warn(run, f"trial {run.trial.number} {line}")
                # At the first look, an experiment that wrote nothing yet is silent since its start.
                since = 0.0 if seen is None and not any(written) else seconds
                run.activity[key] = (written, since)
                continue
            idle = seconds - seen[1]
            if idle < limit or key in run.stalled:
                continue
            run.stalled.add(key)
            timeout = self.config.experiment_timeout
            stop = (
                f"experiment_timeout stops it after {format_seconds(timeout)}"
                if timeout
                else "set experiment_timeout to stop such experiments"
            )
            line = (
                f"{exp.env_id} seed {exp.seed}: no new output or TensorBoard record for "
                f"{format_seconds(idle)} (stall_warning); still running, {stop}. "
                f"Log: {exp.stdout_path.parent}"
            )
            run.stall_warnings.append(line)
            run.trial.set_user_attr(_attrs.STALL_WARNINGS, run.stall_warnings)
            self._warn(run, f"trial {run.trial.number} warning: {line}")

    def _experiment_ended(
        self, run: _TrialRun, key: tuple[int, str], exp: Experiment, code: int
    ) -> None:
        seed_index, env_id = key
        where = f"{env_id} seed {exp.seed}"
        raw: float | None = None
        if exp.timed_out:
            run.failure = (
                f"{where}: timed out after {self.config.experiment_timeout:g} s "
                f"(experiment_timeout); log in {exp.run_dir}",
                exp.stderr_tail(),
            )
        elif code != 0:
            self._check_disk(exp)
            run.failure = (self._exit_reason(where, exp, code), exp.stderr_tail())
        else:
            tail = run.tails[key]
            tail.poll()
            self._warn_damage(run, where, tail)
            raw = tail.last_n_mean(self.config.metric_last_n_average_window)
            if raw is None:
                self._check_disk(exp)
                tags = scalar_tags(exp.run_dir)
                logged = ", ".join(tags) if tags else "no scalar at all (no TensorBoard event file)"
                run.failure = (
                    f"{where}: the script logged no point of metric {self.config.metric!r} "
                    f"(total-timesteps too small for one episode or update? wrong tag?). "
                    f"It logged: {logged}. Run folder: {exp.run_dir}",
                    exp.stderr_tail(),
                )
            elif not math.isfinite(raw):
                run.failure = (
                    f"{where}: metric {self.config.metric!r} is {raw}",
                    exp.stderr_tail(),
                )
                raw = None
            else:
                problem = self._witness(run, exp, env_id)
                if problem is not None:
                    run.failure = (f"{where}: {problem}", exp.stderr_tail())
                    raw = None
        normalized = None if raw is None else normalize(raw, self.config.target_scores[env_id])
        if raw is not None:
            run.raw[env_id][seed_index] = raw
            run.trial.set_user_attr(_attrs.RAW_SCORES, run.raw)
            run.trial.set_user_attr(
                _attrs.NORMALIZED_SCORES, normalize_all(run.raw, self.config.target_scores)
            )
            self._say(
                f"trial {run.trial.number} {where}: {self.config.metric} = {raw:.6g} "
                f"(mean of last {self.config.metric_last_n_average_window}), "
                f"normalized {normalized:.4g}, "
                f"{exp.seconds:.1f} s"
            )
        for listener in self.listeners:
            listener.on_experiment_end(run.trial, env_id, exp.seed, raw, normalized)

    def _witness(self, run: _TrialRun, exp: Experiment, env_id: str) -> str | None:
        """Check the values the script reports it used against those passed (None: agreed).

        A script that logs CleanRL's ``hyperparameters`` text summary says which arguments it
        parsed; each flag nbtune passed (parameters, environment, seed) must be there with the
        value passed. Scripts that log no such summary are not judged.
        """
        reported = reported_hyperparameters(exp.run_dir)
        if reported is None:
            return None
        passed = {**run.params, self.config.env_flag: env_id, self.config.seed_flag: exp.seed}
        return argument_mismatch(passed, reported)

    def _check_disk(self, exp: Experiment) -> None:
        """Stop the study if a failed experiment ran out of disk space.

        A full disk is no fault of the configuration: counting the trial as failed would tell
        the sampler a lie and fail every trial after it. Raising here fails the running trials
        as interrupted (not counted towards the budget) and says why in one line.
        """
        stderr = exp.stderr_tail()
        if disk_full(exp.run_dir, stderr):
            raise TuningError(disk_full_message(Path(self.config.runs_dir), stderr))  # type: ignore[arg-type]

    def _warn_damage(self, run: _TrialRun, where: str, tail: ScalarTail) -> None:
        """Record on the trial what of an experiment's event files could not be read.

        The score is still computed from the points read; a user looking at a surprising score
        sees why in the log and in the trial's ``data_warnings`` attribute.
        """
        damage = tail.damage()
        if not damage:
            return
        lines = [f"{where}: {line}" for line in damage]
        run.data_warnings.extend(lines)
        run.trial.set_user_attr(_attrs.DATA_WARNINGS, run.data_warnings)
        for line in lines:
            self._say(f"trial {run.trial.number} warning: {line}; scored from the points read")

    @staticmethod
    def _exit_reason(where: str, exp: Experiment, code: int) -> str:
        tail = exp.stderr_tail(2000)
        if code == 2 and ("unrecognized" in tail.lower() or "usage:" in tail.lower()):
            return (
                f"{where}: the script rejected its arguments (exit code 2): check the names "
                f"returned by params_fn against the script's flags. argv: {list(exp.argv)}"
            )
        if code > 128:
            return f"{where}: the script was killed by signal {code - 128} (exit code {code})"
        return f"{where}: the script exited with code {code}; log in {exp.run_dir}"

    def _checkpoints(self, run: _TrialRun) -> tuple[int, float | None]:
        """Checkpoints per experiment, and the training length they divide (if known)."""
        if self.config.reporting != "checkpoint":
            return 1, None
        total = run.params.get(self.config.progress_flag)
        if isinstance(total, bool) or not isinstance(total, (int, float)) or total <= 0:
            return self.config.checkpoints, None  # only the last checkpoint of each seed reports
        return self.config.checkpoints, float(total)

    def _report(self, run: _TrialRun) -> None:
        """Report every intermediate value that has become known, in step order; maybe prune.

        Steps are checkpoint indices, the same for every trial: step ``s * K + k - 1`` is
        checkpoint k of K of seed index s, reached when every environment of seed s has logged
        a point at or beyond ``k / K`` of its training length (or ended). Its value is the trial
        value over the data seen so far: the final scores of seeds before s, and seed s's
        last-N mean of the points logged up to that checkpoint. At the last step it is the
        trial's final value. A checkpoint where some environment has no point yet (no episode
        ended) is skipped rather than reported as NaN, which would prune at once.
        """
        n_checkpoints, total = self._checkpoints(run)
        last_key = len(run.seeds) * n_checkpoints - 1
        while run.next_key <= last_key:
            seed_index, k = divmod(run.next_key, n_checkpoints)
            k += 1
            if k < n_checkpoints and total is None:
                run.next_key += 1
                continue
            scores: dict[str, float | None] = {}
            for env in run.envs:
                key = (seed_index, env)
                exp = run.experiments.get(key)
                if exp is None:
                    return  # not started yet
                if k == n_checkpoints:
                    if run.raw[env][seed_index] is None:
                        return  # final score not known yet
                    scores[env] = run.raw[env][seed_index]
                    continue
                assert total is not None
                threshold = total * k / n_checkpoints
                tail = run.tails[key]
                if exp.returncode is None and (
                    tail.last_step is None or tail.last_step < threshold
                ):
                    return  # not there yet
                scores[env] = _mean_up_to(tail, threshold, self.config.metric_last_n_average_window)
            key_now = run.next_key
            run.next_key += 1
            if any(v is None for v in scores.values()):
                continue
            normalized = normalize_all(run.raw, self.config.target_scores)
            for env, raw in scores.items():
                normalized[env][seed_index] = normalize(raw, self.config.target_scores[env])  # type: ignore[arg-type]
            value = trial_value(
                normalized, self.config.aggregation_type, seed_indices=range(seed_index + 1)
            )
            if value is None or not math.isfinite(value):
                continue
            run.trial.report(value, key_now)
            run.checkpoint_scores[str(key_now)] = dict(scores)  # type: ignore[arg-type]
            if key_now < last_key and run.trial.should_prune():
                run.pruned = True
                self._stop_experiments(run)
                self._say(
                    f"trial {run.trial.number} pruned at step {key_now} "
                    f"(seed {run.seeds[seed_index]}, checkpoint {k}/{n_checkpoints}): {value:.4g}"
                )
                return

    def _stop_experiments(self, run: _TrialRun) -> None:
        for exp in run.running:
            exp.stop()
        run.pending.clear()

    def _finish_trial(self, run: _TrialRun) -> TrialState:
        state = self._tell_outcome(run)
        if self.config.keep_runs != "all":
            frozen = _optuna.study_storage(self.study).get_trial(_optuna.trial_id(run.trial))
            apply_retention(
                self.study,
                self.config.keep_runs,
                frozen,
                self._reduced,
                runs_dir=self.config.runs_dir,
                log=self._say,
            )
        return state

    def _tell_outcome(self, run: _TrialRun) -> TrialState:
        trial = run.trial
        self._write_experiments(run)
        if run.failure is not None:
            reason, stderr = run.failure
            self._tell_failed(run, reason, stderr, "script")
            return TrialState.FAIL
        if run.pruned:
            self.study.tell(trial, state=TrialState.PRUNED)
            self._notify_end(run, TrialState.PRUNED, None)
            return TrialState.PRUNED
        value = trial_value(
            normalize_all(run.raw, self.config.target_scores), self.config.aggregation_type
        )
        assert value is not None
        self.study.tell(trial, value)
        self._say(
            f"trial {trial.number} finished: {self.config.aggregation_type} normalized score "
            f"{value:.4g}"
        )
        self._notify_end(run, TrialState.COMPLETE, value)
        return TrialState.COMPLETE

    def _write_experiments(self, run: _TrialRun) -> None:
        records = []
        for (s, e), exp in run.experiments.items():
            if exp.returncode is None:
                status = "running"
            elif exp.stopped and not exp.timed_out:
                status = "pruned" if run.pruned else "stopped"
            elif exp.returncode == 0 and run.raw[e][s] is not None:
                status = "ok"
            else:
                status = "failed"
            records.append(
                {
                    "env_id": e,
                    "seed": run.seeds[s],
                    "argv": list(exp.argv),
                    "run_dir": str(exp.run_dir),
                    "returncode": exp.returncode,
                    "seconds": None if exp.seconds is None else round(exp.seconds, 3),
                    "status": status,
                }
            )
        run.trial.set_user_attr(_attrs.EXPERIMENTS, records)
        if run.checkpoint_scores:
            run.trial.set_user_attr(_attrs.CHECKPOINT_SCORES, run.checkpoint_scores)

    def _tell_failed(self, run: _TrialRun, reason: str, stderr: str, kind: str) -> None:
        trial = run.trial
        trial.set_user_attr(_attrs.FAIL_REASON, reason)
        trial.set_user_attr(_attrs.STDERR_TAIL, stderr[-4000:])
        storage = _optuna.study_storage(self.study)
        storage.set_trial_system_attr(_optuna.trial_id(trial), _attrs.FAIL_KIND, kind)
        self.study.tell(trial, state=TrialState.FAIL)
        self._say(f"trial {trial.number} failed: {reason}")
        self._notify_end(run, TrialState.FAIL, None)

    def _notify_end(self, run: _TrialRun, state: TrialState, value: float | None) -> None:
        run.told = True
        for listener in self.listeners:
            listener.on_trial_end(run.trial, state, value)

    def _abort_all(self, reason: str) -> int:
        """Stop every running experiment and fail every running trial; return how many."""
        count = 0
        for run in self._active:
            for exp in run.running:
                exp.stop()
        for run in self._active:
            try:
                self._write_experiments(run)
                self._tell_failed(run, reason, "", "interrupted")
                # An interrupted trial does not use up the budget; an enqueued configuration
                # runs again rather than a sampled one.
                frozen = _optuna.study_storage(self.study).get_trial(_optuna.trial_id(run.trial))
                give_back(self.study, frozen)
            except Exception as exc:  # the storage may be gone; the heartbeat covers that case
                self._say(f"could not fail trial {run.trial.number}: {exc}")
            count += 1
        self._active.clear()
        return count

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    def _warn(self, run: _TrialRun, line: str) -> None:
        """A warning about a running trial: in the log, and to listeners that take warnings.

        A session passes it to its subscribers as a ``"log"`` event (the widget's log), even
        when the tuner is not verbose: a warning is not chatter.
        """
        self._say(line)
        for listener in self.listeners:
            hook = getattr(listener, "on_warning", None)
            if hook is not None:
                hook(run.trial, line)

    def _say_always(self, line: str) -> None:
        """Tell the user even when not verbose (an answer to their own Ctrl-C)."""
        if self._log is not None:
            self._log(line)
        else:
            print(line, file=sys.stderr, flush=True)


#: Seconds a second Ctrl-C (or SIGTERM) waits while running trials are failed in the study;
#: after that one quits at once (a storage in an outage could otherwise hold the user for minutes).
ABORT_SIGNAL_BOUND = 10.0


@contextlib.contextmanager
def _signals_deferred(
    say: Callable[[str], None], *, unwinding: bool, bound: float = ABORT_SIGNAL_BOUND
) -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the running trials are failed in the study.

    A second Ctrl-C during that cleanup used to cut it short and leave the trial RUNNING until
    another process failed it as stale, minutes later. Within ``bound`` seconds a signal is
    noted and said; after the cleanup it is delivered again, unless an interruption is already
    on its way out (``unwinding``). After ``bound`` seconds a signal acts at once.
    Only the main thread receives signals: elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    started = time.monotonic()
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if time.monotonic() - started > bound:
            previous = saved[signum]
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt
        if not held:
            say(
                "nbtune: stopping: marking the running trials as interrupted in the study; "
                f"press Ctrl-C again after {bound:g} s to quit without waiting"
            )
        held.append(signum)

    saved: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if previous in (signal.SIG_IGN, None):
            continue  # ignored (or set outside Python): leave it so
        saved[signum] = previous
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)
        if held and not unwinding:
            signal.raise_signal(held[0])  # the user's stop, delivered now that the study is told


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def format_seconds(seconds: float | None) -> str:
    """A duration in words for a log line: ``45 s``, ``10 min``, ``1 h 5 min``.

    Example:
        >>> format_seconds(45.2), format_seconds(600), format_seconds(3900)
        ('45 s', '10 min', '1 h 5 min')
    """
    total = round(seconds or 0)
    if total < 120:
        return f"{total} s"
    minutes = round(total / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _file_sha256(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _short(params: Mapping[str, Any], limit: int = 200) -> str:
    text = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _versions(interpreter: str) -> dict[str, str]:
    """Versions that make a trial reproducible: nbtune's, Optuna's, the script's interpreter's."""
    try:
        out = subprocess.run(
            [interpreter, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        interp = (out.stdout or out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        interp = f"unknown ({exc})"
    return {"nbtune": __version__, "optuna": optuna.__version__, "interpreter": interp}


def _mean_up_to(tail: ScalarTail, step: float, window: int) -> float | None:
    """Mean of the last ``window`` points logged at or before ``step``; ``None`` if none."""
    values = tail.values[tail.steps <= step]
    if values.size == 0:
        return None
    value = float(values[-window:].mean())
    return value if math.isfinite(value) else None
