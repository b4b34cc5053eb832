"""The one door to Optuna's internals: each private Optuna name nbtune uses, and what needs it.

Optuna has no public API for a few things nbtune relies on (the storage and id behind a study,
the id of a trial, an atomic claim of a waiting trial, a journal replayed incrementally, stale
heartbeats, its table schema). A minor Optuna release may move any of them. Keeping them all
here means such a release breaks one small helper whose docstring names the nbtune feature at
stake, and whose error says which feature and which Optuna version, instead of an
``AttributeError`` deep inside the scheduler. Where a public equivalent exists (slower, or less
exact), the helper falls back to it.

``tests/test_optuna_door.py`` runs every helper against real storages and fails if any other
nbtune module touches a private Optuna name; ``.ci/optuna_versions.sh`` runs it on the oldest
Optuna that nbtune allows.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial

F = TypeVar("F", bound=Callable[..., Any])


class OptunaInternalsError(RuntimeError):
    """An Optuna internal that a feature of nbtune relies on is missing from this Optuna."""


def _missing(feature: str, internal: str) -> OptunaInternalsError:
    return OptunaInternalsError(
        f"{feature}: Optuna {optuna.__version__} lacks {internal}, which nbtune relies on "
        "(nbtune supports optuna>=5.0,<6; please report this with both versions)."
    )


# --------------------------------------------------------------------------------------------
# Studies and trials
# --------------------------------------------------------------------------------------------


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes through (``Study._storage``).

    Features: budget (claiming waiting trials), heartbeats, failure kinds, rescoring (forks
    live in the same storage), ``StudyView.from_study``. For relational storages this is
    Optuna's cache around the :class:`~optuna.storages.RDBStorage` (see :func:`rdb_storage`).

    Raises:
        OptunaInternalsError: This Optuna keeps the storage elsewhere.

    """
    try:
        return study._storage
    except AttributeError:
        raise _missing("the study's storage (budget, heartbeats)", "Study._storage") from None


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage (``Study._study_id``; else looked up by name).

    Features: budget (listing a study's waiting trials), heartbeats (Optuna's stale trial ids).
    """
    try:
        return study._study_id
    except AttributeError:  # the public way costs one storage call
        return study_storage(study).get_study_id_from_name(study.study_name)


def trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    """A trial's id in its storage (``_trial_id`` of a frozen or a live trial).

    Features: budget (claiming and giving back a trial), heartbeats (nbtune's and Optuna's,
    and telling this process's trials apart), failure kinds, the study view (which trials it
    saw unfinished).

    Raises:
        OptunaInternalsError: This Optuna names the id differently.

    """
    try:
        return trial._trial_id
    except AttributeError:
        raise _missing(
            "trial ids (budget, heartbeats)", f"{type(trial).__name__}._trial_id"
        ) from None


def forget_cached_trials(study: optuna.Study) -> None:
    """Drop the study's per-thread cache of its trials (``Study._thread_local``).

    Feature: budget: a claim lists waiting trials straight from the storage, and the study must
    not answer later reads from a list cached before the claim. Optuna versions without the
    cache need nothing dropped.
    """
    local = getattr(study, "_thread_local", None)
    if local is not None and hasattr(local, "cached_all_trials"):
        local.cached_all_trials = None


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Sample a parameter from its distribution as declared (``Trial._suggest``).

    Feature: declarative search spaces (``Param.suggest``): the distribution, step, log scale
    and choices included, exactly as given. Without the internal the public ``suggest_*`` method
    of the distribution's type samples the same distribution.
    """
    private = getattr(trial, "_suggest", None)
    if private is not None:
        return private(name, distribution)
    dist = distribution
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"unsupported distribution {distribution!r}")


def tpe_constant_liar(sampler: optuna.samplers.TPESampler) -> bool:
    """Whether a TPE sampler accounts for running trials (``TPESampler._constant_liar``).

    Feature: the tuner's warning when several slots share a sampler without constant liar.
    Without the internal, nbtune assumes Optuna 5's default (on) and does not warn.
    """
    return bool(getattr(sampler, "_constant_liar", True))


# --------------------------------------------------------------------------------------------
# Storages: what wraps what, and where a journal lives
# --------------------------------------------------------------------------------------------


def _cached_storage_class() -> type | None:
    return getattr(optuna.storages, "_CachedStorage", None)


def cached_storage_backend(storage: BaseStorage) -> BaseStorage | None:
    """The storage inside Optuna's ``_CachedStorage``, or ``None`` if ``storage`` is not one.

    ``optuna.create_study`` and ``load_study`` wrap a relational storage in that cache.
    Features: storage naming (``describe_storage``), heartbeats (the outage a storage recovered
    from), the study view (reading the relational storage underneath).
    """
    cached = _cached_storage_class()
    if cached is None or not isinstance(storage, cached):
        return None
    return getattr(storage, "_backend", None)


def rdb_storage(storage: BaseStorage) -> RDBStorage | None:
    """The relational storage that ``storage`` is or wraps (Optuna's cache), else ``None``.

    Features: storage naming, the study view's SQL reader, closing a view's connections.
    """
    if isinstance(storage, RDBStorage):
        return storage
    backend = cached_storage_backend(storage)
    return backend if isinstance(backend, RDBStorage) else None


def journal_file_path(storage: BaseStorage) -> str | None:
    """The file of a journal file storage (``JournalStorage._backend._file_path``), else ``None``.

    Feature: storage naming (``describe_storage``, the CLI and the widget show the path). Without
    the internal the storage is named by its class.
    """
    if not isinstance(storage, JournalStorage):
        return None
    path = getattr(getattr(storage, "_backend", None), "_file_path", None)
    return path if isinstance(path, str) else None


# --------------------------------------------------------------------------------------------
# Heartbeats
# --------------------------------------------------------------------------------------------


def uses_optuna_heartbeat(storage: BaseStorage) -> bool:
    """Whether Optuna's own heartbeat covers ``storage`` (``storages._heartbeat``).

    Feature: heartbeats: relational storages beat through Optuna's heartbeat table, the others
    through nbtune's trial attribute. Without the internal, the storage's public
    ``get_heartbeat_interval`` answers the same question.
    """
    module = _import("optuna.storages._heartbeat")
    is_enabled = getattr(module, "is_heartbeat_enabled", None)
    if is_enabled is not None:
        return bool(is_enabled(storage))
    interval = getattr(storage, "get_heartbeat_interval", None)
    return callable(interval) and interval() is not None


def stale_trial_ids(storage: BaseStorage, study_id: int) -> list[int]:
    """Ids of the study's running trials whose Optuna heartbeat is stale.

    Feature: heartbeats: failing and retrying the trials of dead processes
    (``fail_stale_trials``) on relational storages. Call it only where
    :func:`uses_optuna_heartbeat` is true.

    Raises:
        OptunaInternalsError: This Optuna has no ``_get_stale_trial_ids``.

    """
    method = getattr(storage, "_get_stale_trial_ids", None)
    if method is None:
        raise _missing(
            "heartbeats (stale trials)", f"{type(storage).__name__}._get_stale_trial_ids"
        )
    return list(method(study_id))


# --------------------------------------------------------------------------------------------
# The journal storage, replayed incrementally
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalReplay:
    """The journal's replayed state, to read under :func:`replayed_journal` only."""

    #: Trial id -> the replay's current object for that trial (replaced on every change).
    trials: Mapping[int, FrozenTrial]
    #: Study id -> its trial ids in creation order; a deleted study is absent.
    trial_ids_by_study: Mapping[int, Sequence[int]]


def journal_replay_available(storage: JournalStorage) -> bool:
    """Whether :func:`replayed_journal` works on this Optuna.

    Feature: the study view's incremental journal reader; without it the view falls back to
    listing all trials on each refresh.
    """
    replay = getattr(storage, "_replay_result", None)
    return (
        hasattr(storage, "_thread_lock")
        and callable(getattr(storage, "_sync_with_backend", None))
        and isinstance(getattr(replay, "_trials", None), Mapping)
        and isinstance(getattr(replay, "_study_id_to_trial_ids", None), Mapping)
    )


@contextlib.contextmanager
def replayed_journal(storage: JournalStorage) -> Iterator[JournalReplay]:
    """Read the new lines of the journal, then hold its lock while the caller reads the replay.

    Feature: the study view's incremental journal reader (only new log lines are parsed; new
    trial ids and changed trial objects are picked without copying the study). Check
    :func:`journal_replay_available` first.
    """
    with storage._thread_lock:
        storage._sync_with_backend()
        replay = storage._replay_result
        yield JournalReplay(replay._trials, replay._study_id_to_trial_ids)


# --------------------------------------------------------------------------------------------
# Relational storages: Optuna's tables, and its private calls
# --------------------------------------------------------------------------------------------


def rdb_models() -> ModuleType:
    """Optuna's SQLAlchemy models of its tables (``optuna.storages._rdb.models``).

    Features: the study view's fast SQL reader (which falls back to the ORM or to listing all
    trials without it), and the resilient storage finding a trial that a lost commit created.

    Raises:
        ImportError: The module moved (callers fall back; the message names the version).

    """
    try:
        return importlib.import_module("optuna.storages._rdb.models")
    except ImportError as exc:
        raise ImportError(
            f"Optuna {optuna.__version__} has no optuna.storages._rdb.models: {exc}"
        ) from None


def rdb_trials_since(
    storage: RDBStorage, study_id: int, unfinished_ids: set[int], max_id: int
) -> list[FrozenTrial]:
    """Trials whose id is above ``max_id`` or in ``unfinished_ids`` (``RDBStorage._get_trials``).

    Feature: the study view's ORM reader, its fallback when the SQL reader fails on a future
    schema. Without the internal all trials are listed and filtered (same result, slower).
    """
    private = getattr(storage, "_get_trials", None)
    if private is not None:
        return list(private(study_id, None, set(unfinished_ids), max_id))
    return [
        trial
        for trial in storage.get_all_trials(study_id, deepcopy=False)
        if trial_id(trial) > max_id or trial_id(trial) in unfinished_ids
    ]


def find_trial_row_by_system_attr(session: Any, study_id: int, key: str, value_json: str) -> Any:
    """The trial row of the study whose system attribute ``key`` holds ``value_json``, or ``None``.

    Feature: the resilient storage's repeatable trial creation: a retried creation looks for
    the trial its first attempt committed (by its creation token) before creating another.
    """
    models = rdb_models()
    attr = models.TrialSystemAttributeModel
    return (
        session.query(models.TrialModel)
        .join(attr, attr.trial_id == models.TrialModel.trial_id)
        .filter(models.TrialModel.study_id == study_id)
        .filter(attr.key == key, attr.value_json == value_json)
        .one_or_none()
    )


#: Private ``RDBStorage`` methods that Optuna's study, cache and heartbeat call directly.
_PRIVATE_RDB_CALLS = (
    "_set_trial_param",
    "_get_trials",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
)


def wrap_private_rdb_calls(cls: type[RDBStorage], wrap: Callable[[F], F]) -> tuple[str, ...]:
    """Set ``wrap(RDBStorage.<name>)`` on ``cls`` for each private call Optuna makes directly.

    Feature: the resilient storage: a database outage during one of these calls is retried
    like any public call. A call this Optuna lacks is skipped (nothing calls it).

    Returns:
        The names wrapped.

    """
    wrapped = tuple(name for name in _PRIVATE_RDB_CALLS if hasattr(RDBStorage, name))
    for name in wrapped:
        setattr(cls, name, wrap(getattr(RDBStorage, name)))
    return wrapped


class RDBStorageCreationHooks(RDBStorage):
    """An ``RDBStorage`` whose private trial-creation steps call two public hooks.

    Feature: the resilient storage's repeatable trial creation. ``create_new_trial`` runs
    ``_create_new_trial``, which prepares the new row with ``_get_prepared_new_trial`` inside
    its transaction; subclasses override :meth:`create_trial_with` (to retry the whole creation)
    and :meth:`find_created_trial` (to return a row a lost commit created). Should Optuna rename
    the steps, the hooks are not called: creations then are not retried, nothing else changes.
    """

    def create_trial_with(
        self,
        study_id: int,
        template_trial: FrozenTrial | None,
        create: Callable[[FrozenTrial | None], FrozenTrial],
    ) -> FrozenTrial:
        """Create a trial by calling ``create(template_trial)`` (override to wrap it)."""
        return create(template_trial)

    def find_created_trial(
        self, study_id: int, template_trial: FrozenTrial | None, session: Any
    ) -> Any:
        """A trial row to return instead of creating one, or ``None`` (the default)."""
        return None

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        def create(template: FrozenTrial | None) -> FrozenTrial:
            return super(RDBStorageCreationHooks, self)._create_new_trial(study_id, template)

        return self.create_trial_with(study_id, template_trial, create)

    def _get_prepared_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None, session: Any
    ) -> Any:
        found = self.find_created_trial(study_id, template_trial, session)
        if found is not None:
            return found
        return super()._get_prepared_new_trial(study_id, template_trial, session)


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
