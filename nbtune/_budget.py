"""The study's trial budget, shared by every process that works on it.

``tune(num_trials)`` raises the study's recorded total to (trials finished so far + num_trials)
and *reserves* trials by enqueueing blank ones (Optuna's ``ask()`` reserves nothing: two
processes asking at once would both start a trial). A process only runs trials it popped from
that queue, which Optuna does atomically, and after the pop checks that finished and running
trials stay within the total, so several processes together add exactly ``num_trials``.

At most :data:`RESERVE_AHEAD` blank reservations wait at a time; a process that finds the
queue empty while the total has room reserves one more. A study of thousands of trials would
otherwise hold thousands of WAITING trials, which every read of the study's unfinished trials
(Optuna caches finished ones only) fetches again: seconds of CPU per read.

Finished means complete, pruned, or failed by the script itself. A trial failed because its
process died (stale heartbeat) is retried by Optuna's callback, which enqueues it again; a trial
interrupted by Ctrl-C or a stop request gives its reservation back.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from nbtune import _attrs, _optuna
from nbtune._attrs import TOTAL_TRIALS

#: System attributes of trials Optuna queued first: retries, enqueued configurations.
_FIRST_MARKS = frozenset({_attrs.OPTUNA_FAILED_TRIAL, _attrs.OPTUNA_FIXED_PARAMS})
#: System attributes of trials taken from the queue: reservations, retries, enqueued ones.
QUEUED_MARKS = frozenset({_attrs.RESERVED, *_FIRST_MARKS})
#: Blank reservations made ahead of time; more are made on demand as trials are claimed.
RESERVE_AHEAD = 16


def counts_as_finished(trial: FrozenTrial) -> bool:
    """Whether a trial counts towards the budget.

    Complete and pruned trials count. A failed trial counts when the script failed it; not when
    it was interrupted (its reservation was given back) or its process died (it is retried).
    nbtune marks each failure with its kind; a failed nbtune trial without a kind was failed by
    Optuna's heartbeat check, and a failed trial of another tool counts.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    if trial.state != TrialState.FAIL:
        return False
    kind = trial.system_attrs.get(_attrs.FAIL_KIND)
    if kind is not None:
        return kind == "script"
    return _attrs.HEARTBEAT not in trial.system_attrs


@dataclass(frozen=True)
class BudgetState:
    """Where a study stands against its budget."""

    total: int | None
    finished: int
    running: int
    waiting: int
    #: Running trials just taken from the queue, with no heartbeat yet (claims in flight).
    claiming: int = 0

    @property
    def reached(self) -> bool:
        """Whether the study has finished its total."""
        return self.total is not None and self.finished >= self.total


def budget_state(study: optuna.Study) -> BudgetState:
    """Count finished, running and waiting trials, and read the recorded total."""
    finished = running = waiting = claiming = 0
    for trial in study.get_trials(deepcopy=False):
        if counts_as_finished(trial):
            finished += 1
        elif trial.state == TrialState.RUNNING:
            running += 1
            attrs = trial.system_attrs.keys()
            claiming += bool(QUEUED_MARKS & attrs) and _attrs.HEARTBEAT not in attrs
        elif trial.state == TrialState.WAITING:
            waiting += 1
    total = study.user_attrs.get(TOTAL_TRIALS)
    return BudgetState(None if total is None else int(total), finished, running, waiting, claiming)


def extend_budget(study: optuna.Study, num_trials: int) -> BudgetState:
    """Set the total to finished + ``num_trials`` and reserve trials ahead (at most 16).

    Trials already waiting (enqueued baselines, reservations left by an interrupted run) and
    trials running in other processes count towards the new total. The rest of the total is
    reserved on demand by :func:`claim_trial`.
    """
    state = budget_state(study)
    total = state.finished + num_trials
    study.set_user_attr(TOTAL_TRIALS, total)
    missing = max(0, total - state.finished - state.running - state.waiting)
    made = min(missing, RESERVE_AHEAD)
    for _ in range(made):
        reserve_slot(study)
    return BudgetState(total, state.finished, state.running, state.waiting + made)


def reserve_slot(study: optuna.Study) -> None:
    """Enqueue one blank trial: its parameters are sampled when a process pops it."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING, system_attrs={_attrs.RESERVED: time.time()}
        )
    )


#: User attributes an enqueued configuration carries from its enqueueing (not from a run): an
#: interrupted trial queued again keeps them.
ENQUEUED_ATTRS = (_attrs.VALIDATES_TRIAL, _attrs.TUNING_SCORE)


def give_back(study: optuna.Study, trial: FrozenTrial) -> None:
    """Return an interrupted trial's place in the budget to the queue.

    An enqueued configuration (a baseline, a configuration under validation) is queued again as
    it was, with the attributes it was enqueued with; a reservation comes back blank.
    """
    fixed = trial.system_attrs.get(_attrs.OPTUNA_FIXED_PARAMS)
    if not fixed:
        reserve_slot(study)
        return
    user_attrs = {k: trial.user_attrs[k] for k in ENQUEUED_ATTRS if k in trial.user_attrs}
    study.enqueue_trial(dict(fixed), user_attrs=user_attrs or None, skip_if_exists=False)


def claim_trial(study: optuna.Study) -> optuna.Trial | None:
    """Take a waiting trial (reserved or enqueued) to run it, within the budget; else ``None``.

    Unlike ``study.ask()``, this never creates a trial. The pop is atomic in every storage (a
    WAITING -> RUNNING transition that fails if another process won). Reservations can outnumber
    what is left of the budget (a run stopped by its timeout leaves some, then a smaller
    ``tune`` lowers the total), so after the pop the claim counts finished and running trials,
    this one included, and gives the trial back if the total would be exceeded. Two processes
    popping at once both see both trials running and both give back, never both run past the
    total; when another claim still in flight (popped, no heartbeat yet) may be what filled the
    total, the claim waits a random moment and tries again, so that one of them runs the last
    trial instead of both leaving the study one short. An empty queue while the total has room
    (reservations are made :data:`RESERVE_AHEAD` at a time) gets one more reservation, which
    this call then pops.
    """
    attempts = 5
    for attempt in range(attempts):
        trial_id = _pop_waiting(study)
        if trial_id is None:
            state = budget_state(study)
            if state.total is None or state.finished + state.running + state.waiting >= state.total:
                return None
            reserve_slot(study)  # the total has room: reserve on demand, then pop again
            continue
        state = budget_state(study)
        if state.total is not None and state.finished + state.running > state.total:
            # Another claim in flight besides this one was counted: it may be racing for the
            # same last trial and giving its own back too, so try again apart from it.
            racing = attempt < attempts - 1 and state.claiming > 1
            _optuna.study_storage(study).set_trial_state_values(trial_id, state=TrialState.WAITING)
            if not racing:
                return None  # the total is really reached by trials that run
            time.sleep(random.uniform(0.02, 0.25))  # apart from the other claimant, then retry
            continue
        return optuna.Trial(study, trial_id)
    return None


def _pop_waiting(study: optuna.Study) -> int | None:
    """Pop a waiting trial, retried and enqueued ones before blank reservations.

    Study.ask() pops the same way (oldest first) but falls back to creating a new trial.
    """
    _optuna.forget_cached_trials(study)
    storage = _optuna.study_storage(study)
    waiting = storage.get_all_trials(
        _optuna.study_id(study), deepcopy=False, states=(TrialState.WAITING,)
    )
    # Retries ("failed_trial") and enqueued configurations ("fixed_params") go first.
    waiting.sort(key=lambda t: (not _FIRST_MARKS & t.system_attrs.keys(), t.number))
    for trial in waiting:
        trial_id = _optuna.trial_id(trial)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process finished it meanwhile
    return None


def others_working(study: optuna.Study, own: set[int]) -> bool:
    """Whether trials of other nbtune processes are running (alive, or dead but not yet failed).

    Only trials with an nbtune heartbeat, or taken from the queue (not yet beating, or orphaned:
    ``fail_stale_trials`` gives those back after the grace period), count: a RUNNING trial left
    by some other tool would never end, and no one should wait for it.
    """
    return any(
        _optuna.trial_id(trial) not in own
        and (_attrs.HEARTBEAT in trial.system_attrs or QUEUED_MARKS & trial.system_attrs.keys())
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )
