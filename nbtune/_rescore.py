"""Re-scoring a study under new target scores or aggregation, as a linked fork.

Each nbtune trial keeps its raw per-environment scores (``raw_scores``) and the raw scores
behind each intermediate value (``checkpoint_scores``), so its value under new target scores is
exact, not an estimate. Optuna cannot change a finished trial's value, so the re-scored trials
go into a new study (a fork, linked to its parent by the study user attribute
``nbtune:parent``) in which the sampler and the pruner see one consistent objective.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from nbtune import _attrs, _optuna
from nbtune._attrs import PARENT, TOTAL_TRIALS
from nbtune._errors import ConfigError
from nbtune._scoring import (
    check_aggregation,
    check_target_scores,
    normalize,
    normalize_all,
    trial_value,
)
from nbtune._trust import store_spec, trusted_spec


@dataclass(frozen=True)
class Rescored:
    """A trial's outcome under new targets: its value, normalized scores, intermediate values."""

    value: float | None
    normalized: dict[str, list[float | None]]
    intermediate: dict[int, float]


def rescore_trial(
    trial: FrozenTrial,
    targets: Mapping[str, tuple[float, float] | None],
    aggregation: str,
    checkpoints: int,
) -> Rescored | None:
    """Recompute a trial's value and intermediate values under ``targets``/``aggregation``.

    A complete trial needs its raw scores of every target environment. A pruned trial may have
    none (it was stopped before a seed ended): its checkpoint scores are enough to recompute
    every intermediate value, the last of which is its value.

    Returns:
        The re-scored outcome, or ``None`` when the trial lacks what re-scoring needs (see
        :func:`why_not_rescored`).
    """
    if why_not_rescored(trial, targets) is not None:
        return None
    seeds = trial.user_attrs.get(_attrs.SEEDS) or []
    stored = trial.user_attrs.get(_attrs.RAW_SCORES) or {}
    width = max([len(seeds), *(len(v) for v in stored.values() if isinstance(v, list))], default=0)
    raw = {env: list(stored.get(env) or [None] * width) for env in targets}
    normalized = normalize_all(raw, targets)
    value = trial_value(normalized, aggregation) if trial.state == TrialState.COMPLETE else None
    intermediate: dict[int, float] = {}
    for key_text, scores in (trial.user_attrs.get(_attrs.CHECKPOINT_SCORES) or {}).items():
        key = int(key_text)
        seed_index = key // max(1, checkpoints)
        if not set(targets) <= set(scores):
            continue
        column = copy.deepcopy(normalized)
        for env in targets:
            while len(column[env]) <= seed_index:
                column[env].append(None)
            column[env][seed_index] = normalize(scores[env], targets[env])
        v = trial_value(column, aggregation, seed_indices=range(seed_index + 1))
        if v is not None:
            intermediate[key] = v
    return Rescored(value, normalized, intermediate)


def why_not_rescored(
    trial: FrozenTrial, targets: Mapping[str, tuple[float, float] | None]
) -> str | None:
    """Why a trial cannot be re-scored exactly under ``targets``, or ``None`` when it can."""
    raw = trial.user_attrs.get(_attrs.RAW_SCORES)
    has_raw = isinstance(raw, Mapping) and set(targets) <= set(raw)
    if trial.state == TrialState.COMPLETE:
        return None if has_raw else "it records no raw score of every environment"
    checkpoint_scores = trial.user_attrs.get(_attrs.CHECKPOINT_SCORES)
    if has_raw or (isinstance(checkpoint_scores, Mapping) and checkpoint_scores):
        return None
    return "it was pruned before any score was recorded (no raw or checkpoint scores)"


def fork_study(
    study: optuna.Study,
    *,
    target_scores: Mapping[str, Sequence[float] | None] | None = None,
    aggregation_type: str | None = None,
    study_name: str | None = None,
) -> optuna.Study:
    """A new study holding ``study``'s finished trials re-scored under new targets/aggregation.

    Args:
        study: An nbtune study (it has a stored spec).
        target_scores: New targets (default: unchanged). Environments must be among those the
            trials ran.
        aggregation_type: New aggregation (default: unchanged).
        study_name: Name of the fork; default ``<parent>.r<N>`` with the first free N.

    Returns:
        The fork, in the same storage, with the parent's spec (changed as asked), budget total
        and a link to the parent. Complete trials get their new value, pruned ones their new
        intermediate values, failed ones are copied as they are; running and waiting trials stay
        with the parent.

    Raises:
        ValueError: If the study has no nbtune spec, or the targets are invalid.
    """
    raw_spec = study.user_attrs.get(_attrs.STUDY_SPEC)
    if raw_spec is None:
        raise ConfigError(
            f"study {study.study_name!r} has no nbtune spec: its trials carry no raw scores "
            "to re-score."
        )
    spec = trusted_spec(study)  # the fork is signed: never launder an edited definition
    targets = check_target_scores(target_scores if target_scores is not None else spec.targets)
    unknown = set(targets) - set(spec.targets)
    if unknown:
        raise ConfigError(
            f"target_scores: {sorted(unknown)} were not run in study {study.study_name!r}; "
            f"its environments are {sorted(spec.targets)}. Start a new study to add some."
        )
    aggregation = check_aggregation(aggregation_type or spec.aggregation)
    spec.targets = {k: None if v is None else list(v) for k, v in targets.items()}
    spec.aggregation = aggregation

    storage = _optuna.study_storage(study)
    existing = {
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }
    if study_name is None:
        n = 1
        while f"{study.study_name}.r{n}" in existing:
            n += 1
        study_name = f"{study.study_name}.r{n}"
    elif study_name in existing:
        raise ConfigError(f"a study named {study_name!r} exists already; choose another name.")
    fork = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=study.direction,
        sampler=study.sampler,
        pruner=study.pruner,
    )
    store_spec(fork, spec)
    fork.set_user_attr(PARENT, study.study_name)
    if TOTAL_TRIALS in study.user_attrs:
        fork.set_user_attr(TOTAL_TRIALS, study.user_attrs[TOTAL_TRIALS])

    copies = []
    not_rescored: dict[str, str] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        user_attrs = dict(trial.user_attrs)
        state, value, intermediate = trial.state, None, dict(trial.intermediate_values)
        if trial.state != TrialState.FAIL:
            rescored = rescore_trial(trial, targets, aggregation, spec.checkpoints)
            if rescored is None:
                # Cannot be re-scored exactly: it stays with the parent, and the fork says why.
                not_rescored[str(trial.number)] = why_not_rescored(trial, targets) or ""
                continue
            user_attrs[_attrs.NORMALIZED_SCORES] = rescored.normalized
            intermediate = rescored.intermediate
            value = rescored.value
            if state == TrialState.PRUNED:
                value = intermediate[max(intermediate)] if intermediate else None
        system_attrs = {k: v for k, v in trial.system_attrs.items() if k != _attrs.HEARTBEAT}
        system_attrs[_attrs.FORKED_FROM] = trial.number
        frozen = optuna.trial.create_trial(
            state=state,
            value=value,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            intermediate_values=intermediate,
        )
        frozen.datetime_start = trial.datetime_start
        frozen.datetime_complete = trial.datetime_complete
        copies.append(frozen)
    fork.add_trials(copies)
    if not_rescored:
        fork.set_user_attr(_attrs.NOT_RESCORED, not_rescored)
    return fork


def lineage(storage: BaseStorage, study_name: str) -> list[str]:
    """The study and its newest descendants through target edits, oldest first.

    A fork's study attribute ``nbtune:parent`` names the study it was re-scored from; a study
    forked several times continues in its newest fork (the one made last), and so on down.

    Example:
        >>> import optuna
        >>> storage = optuna.storages.InMemoryStorage()
        >>> for name, parent in (("live", None), ("live.r1", "live"), ("live.r2", "live"),
        ...                      ("live.r2.r1", "live.r2")):
        ...     study = optuna.create_study(study_name=name, storage=storage)
        ...     if parent:
        ...         study.set_user_attr(PARENT, parent)
        >>> lineage(storage, "live")
        ['live', 'live.r2', 'live.r2.r1']
    """
    # Storages list studies in the order they were created, so a parent's last child listed is
    # its newest fork.
    newest: dict[str, str] = {}
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        parent = summary.user_attrs.get(PARENT)
        if isinstance(parent, str):
            newest[parent] = summary.study_name
    chain = [study_name]
    while chain[-1] in newest and newest[chain[-1]] not in chain:
        chain.append(newest[chain[-1]])
    return chain
