"""An incremental, headless reader of an Optuna study, for every live surface of nbtune.

The widget, the CLI progress, ``nbtune show`` and the benchmarks all read a study through one
:class:`StudyView`. A view keeps one storage handle and, on each :meth:`StudyView.refresh`, fetches
only the trials it has not seen yet plus those it saw unfinished; everything else (the trial list,
numpy columns of numbers, states, values, times and parameters) is updated in place, so a refresh
costs what changed, not what the study holds.

How each storage is read incrementally:

* Relational storages (SQLite, PostgreSQL, MySQL; a :class:`~optuna.storages.RDBStorage`, or the
  ``_CachedStorage`` that wraps one inside a :class:`optuna.Study`): a few SQL queries on Optuna's
  tables select trials whose id is above the highest id seen, or whose id is one of the unfinished
  ones. Within a study Optuna creates trials under a row lock, so ids are committed in order.
* The journal file (and any :class:`~optuna.storages.JournalStorage`): the storage replays only
  new log lines; the view looks at new trial ids and at the unfinished ones it knows.
* Any other storage: ``get_all_trials(deepcopy=False)``, then only new and unfinished trials are
  compared (the storage's own listing is the only O(total) step).

Studies that nbtune did not create (a CleanRL or a plain Optuna study) are read the same way:
what nbtune would have stored (see :mod:`nbtune._attrs`) is simply absent.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import datetime
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nbtune import _attrs, _optuna
from nbtune._errors import StudyNotFoundError
from nbtune._storage import describe_storage, open_storage_for_reading, redact_url

__all__ = [
    "RefreshResult",
    "StudyNotFoundError",
    "StudyView",
    "TrialColumns",
    "redact_url",
]


# --------------------------------------------------------------------------------------------
# Trial sources: how each kind of storage yields new and possibly changed trials
# --------------------------------------------------------------------------------------------


class _Source:
    """Yields, on each fetch, the trials that are new or may have changed since the last one."""

    #: Whether fetched objects may be shared with (and mutated in place by) a writer in this
    #: process, as Optuna's ``Trial`` does with the objects of in-memory and journal storages.
    shares_objects = True

    def __init__(self, storage: BaseStorage, study_id: int) -> None:
        self._storage = storage
        self._study_id = study_id

    def fetch(self) -> list[FrozenTrial]:
        raise NotImplementedError

    def study_user_attrs(self) -> dict[str, Any]:
        return self._storage.get_study_user_attrs(self._study_id)


class _GenericSource(_Source):
    """Any storage: list all trials (the storage's cost), return new and unfinished ones.

    A waiting trial is returned again only if the storage replaced its object (no ``Trial``
    updates waiting trials in place); running ones are always returned, to be compared.
    """

    def __init__(self, storage: BaseStorage, study_id: int) -> None:
        self._storage = storage
        self._study_id = study_id
        self._n_seen = 0
        self._unfinished: dict[int, FrozenTrial] = {}  # trial number -> object last returned

    def fetch(self) -> list[FrozenTrial]:
        trials = self._storage.get_all_trials(self._study_id, deepcopy=False)
        out = []
        for number, last in self._unfinished.items():
            current = trials[number] if number < len(trials) else None
            if current is None or current.number != number:
                current = next((t for t in trials if t.number == number), None)
            if current is not None and _may_have_changed(current, last):
                out.append(current)
        out.extend(trials[self._n_seen :])
        self._n_seen = max(self._n_seen, len(trials))
        _track_unfinished(self._unfinished, out, lambda t: t.number)
        return out


def _may_have_changed(current: FrozenTrial, last: FrozenTrial) -> bool:
    return current is not last or current.state == TrialState.RUNNING


def _track_unfinished(
    unfinished: dict[int, FrozenTrial], trials: list[FrozenTrial], key: Any
) -> None:
    for trial in trials:
        if trial.state.is_finished():
            unfinished.pop(key(trial), None)
        else:
            unfinished[key(trial)] = trial


class _JournalSource(_Source):
    """Journal storages replay only new log lines: look at new trial ids and unfinished ones.

    The replay replaces a trial's object on every change, so an unfinished trial is returned
    again when its object changed; running ones always (a ``Trial`` in this process may update
    its object in place).
    """

    def __init__(self, storage: JournalStorage, study_id: int) -> None:
        self._storage = storage
        self._study_id = study_id
        self._n_seen = 0
        self._unfinished: dict[int, FrozenTrial] = {}  # trial id -> object last returned

    def fetch(self) -> list[FrozenTrial]:
        with _optuna.replayed_journal(self._storage) as replay:
            ids = replay.trial_ids_by_study.get(self._study_id)
            if ids is None:
                raise KeyError(f"study id {self._study_id} was deleted")
            trials = replay.trials
            out = [
                current
                for trial_id, last in self._unfinished.items()
                if _may_have_changed(current := trials[trial_id], last)
            ]
            out.extend(trials[i] for i in ids[self._n_seen :])
            self._n_seen = len(ids)
        _track_unfinished(self._unfinished, out, _optuna.trial_id)
        return out


class _RDBSource(_Source):
    """Relational storages: select trials above the highest id seen, or still unfinished.

    Rows are read with SQLAlchemy Core from Optuna's own table definitions (statements built once,
    with bound parameters) and turned into :class:`~optuna.trial.FrozenTrial` objects the way
    ``RDBStorage`` does, several times faster than its ORM path. Children (values, parameters,
    attributes, intermediate values) are read for new trials, running ones, and trials whose row
    changed; a waiting trial whose row did not change (nbtune reserves its budget as waiting
    trials) costs one short row. If the Core path ever fails on a future schema, the source falls
    back to the same selection through Optuna's ORM (:func:`nbtune._optuna.rdb_trials_since`).
    """

    shares_objects = False  # every fetch builds new objects
    _CHUNK = 500  # ids per IN (...) list: far below every database's limit on bound parameters

    def __init__(self, storage: RDBStorage, study_id: int) -> None:
        self._storage = storage
        self._study_id = study_id
        self._models = _optuna.rdb_models()
        self._max_id = -1
        # trial id -> (state, stored datetime_start) of its row when last read, if unfinished
        self._unfinished: dict[int, tuple[Any, Any]] = {}
        self._distribution_cache: dict[str, BaseDistribution] = {}
        self._statements: dict[str, Any] | None = None
        self._mode = "core"

    def fetch(self) -> list[FrozenTrial]:
        if self._mode == "core":
            try:
                return self._fetch_core()
            except (AttributeError, TypeError, KeyError, AssertionError, ImportError):
                self._mode = "orm"
        trials = _optuna.rdb_trials_since(
            self._storage, self._study_id, set(self._unfinished), self._max_id
        )
        for trial in trials:
            trial_id = _optuna.trial_id(trial)
            self._max_id = max(self._max_id, trial_id)
            if trial.state.is_finished():
                self._unfinished.pop(trial_id, None)
            else:
                self._unfinished[trial_id] = (None, None)
        return trials

    def study_user_attrs(self) -> dict[str, Any]:
        if self._mode == "core":
            with contextlib.suppress(AttributeError, KeyError, TypeError):
                statement = self._build_statements()["study_attrs"]
                with self._storage.engine.connect() as conn:
                    rows = conn.execute(statement, {"sid": self._study_id}).all()
                return {key: json.loads(value) for key, value in rows}
        return self._storage.get_study_user_attrs(self._study_id)

    def _build_statements(self) -> dict[str, Any]:
        if self._statements is not None:
            return self._statements
        import sqlalchemy as sa

        m = self._models
        t = m.TrialModel.__table__
        row_columns = (t.c.trial_id, t.c.number, t.c.state, t.c.datetime_start)
        row_columns += (t.c.datetime_complete,)
        new_ids = sa.select(t.c.trial_id).where(
            t.c.study_id == sa.bindparam("sid"), t.c.trial_id > sa.bindparam("max_id")
        )
        statements: dict[str, Any] = {
            "new_rows": sa.select(*row_columns)
            .where(t.c.study_id == sa.bindparam("sid"), t.c.trial_id > sa.bindparam("max_id"))
            .order_by(t.c.trial_id),
            "rows_by_id": sa.select(*row_columns).where(
                t.c.trial_id.in_(sa.bindparam("ids", expanding=True))
            ),
        }
        sua = m.StudyUserAttributeModel.__table__
        statements["study_attrs"] = sa.select(sua.c.key, sua.c.value_json).where(
            sua.c.study_id == sa.bindparam("sid")
        )
        param_columns = ("param_name", "param_value", "distribution_json")
        step_columns = ("step", "intermediate_value", "intermediate_value_type")
        for name, model, columns, order in (
            ("values", m.TrialValueModel, ("objective", "value", "value_type"), "objective"),
            ("params", m.TrialParamModel, param_columns, "param_id"),
            ("user", m.TrialUserAttributeModel, ("key", "value_json"), None),
            ("system", m.TrialSystemAttributeModel, ("key", "value_json"), None),
            ("steps", m.TrialIntermediateValueModel, step_columns, "step"),
        ):
            table = model.__table__
            base = sa.select(table.c.trial_id, *(table.c[c] for c in columns))
            if order is not None:
                base = base.order_by(table.c[order])
            statements[name + ":new"] = base.where(table.c.trial_id.in_(new_ids))
            statements[name + ":ids"] = base.where(
                table.c.trial_id.in_(sa.bindparam("ids", expanding=True))
            )
        self._statements = statements
        return statements

    def _fetch_core(self) -> list[FrozenTrial]:
        st = self._build_statements()
        waiting = TrialState.WAITING
        known = sorted(self._unfinished)
        with self._storage.engine.connect() as conn:
            rows = conn.execute(
                st["new_rows"], {"sid": self._study_id, "max_id": self._max_id}
            ).all()
            for chunk in _chunks(known, self._CHUNK):
                rows.extend(conn.execute(st["rows_by_id"], {"ids": chunk}).all())
            wanted = []
            for row in rows:
                state = _trial_state(row[2])
                if state == waiting and self._unfinished.get(row[0]) == (state, row[3]):
                    continue  # a waiting trial whose row did not change
                wanted.append(row)
            if not wanted:
                return []
            has_new = any(row[0] > self._max_id for row in wanted)
            again = sorted(row[0] for row in wanted if row[0] <= self._max_id)
            children: dict[str, dict[int, list[Any]]] = {}
            for name in ("values", "params", "user", "system", "steps"):
                grouped: dict[int, list[Any]] = {}
                results = []
                if has_new:
                    params = {"sid": self._study_id, "max_id": self._max_id}
                    results.append(conn.execute(st[name + ":new"], params))
                results.extend(
                    conn.execute(st[name + ":ids"], {"ids": chunk})
                    for chunk in _chunks(again, self._CHUNK)
                )
                for result in results:
                    for child in result:
                        grouped.setdefault(child[0], []).append(child)
                children[name] = grouped
        trials = [self._build(row, children) for row in wanted]
        for row in wanted:  # the row's trial id, as the trial built from it has
            trial_id, state = row[0], _trial_state(row[2])
            self._max_id = max(self._max_id, trial_id)
            if state.is_finished():
                self._unfinished.pop(trial_id, None)
            else:
                self._unfinished[trial_id] = (state, row[3])
        return trials

    def _distribution(self, text: str) -> BaseDistribution:
        dist = self._distribution_cache.get(text)
        if dist is None:
            dist = optuna.distributions.json_to_distribution(text)
            self._distribution_cache[text] = dist
        return dist

    def _build(self, row: Any, children: dict[str, dict[int, list[Any]]]) -> FrozenTrial:
        m = self._models
        trial_id, number, state, start, complete = row
        state = _trial_state(state)
        values: list[float] | None = None
        value_rows = children["values"].get(trial_id)
        if value_rows:
            values = [0.0] * len(value_rows)
            for _, objective, value, value_type in value_rows:
                if not isinstance(value_type, m.TrialValueModel.TrialValueType):
                    value_type = m.TrialValueModel.TrialValueType[str(value_type)]
                values[objective] = m.TrialValueModel.stored_repr_to_value(value, value_type)
        params: dict[str, Any] = {}
        dists: dict[str, BaseDistribution] = {}
        for _, name, internal, dist_json in children["params"].get(trial_id, ()):
            dist = self._distribution(dist_json)
            dists[name] = dist
            params[name] = dist.to_external_repr(internal)
        steps: dict[int, float] = {}
        iv_type = m.TrialIntermediateValueModel.TrialIntermediateValueType
        for _, step, value, value_type in children["steps"].get(trial_id, ()):
            if not isinstance(value_type, iv_type):
                value_type = iv_type[str(value_type)]
            steps[step] = m.TrialIntermediateValueModel.stored_repr_to_intermediate_value(
                value, value_type
            )
        return FrozenTrial(
            number=number,
            state=state,
            value=None,
            values=values,
            datetime_start=_utc_to_local(start),
            datetime_complete=_utc_to_local(complete),
            params=params,
            distributions=dists,
            user_attrs={k: json.loads(v) for _, k, v in children["user"].get(trial_id, ())},
            system_attrs={k: json.loads(v) for _, k, v in children["system"].get(trial_id, ())},
            intermediate_values=steps,
            trial_id=trial_id,
        )


def _trial_state(value: Any) -> TrialState:
    return value if isinstance(value, TrialState) else TrialState[str(value)]


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _same_trial(a: FrozenTrial, b: FrozenTrial) -> bool:
    """Trial equality where NaN equals NaN (intermediate values may be NaN)."""
    if a == b:
        return True
    return _same_value(a.__dict__, b.__dict__)


def _same_value(x: Any, y: Any) -> bool:
    if x is y or x == y:
        return True
    if isinstance(x, float) and isinstance(y, float):
        return math.isnan(x) and math.isnan(y)
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same_value(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and type(x) is type(y):
        return len(x) == len(y) and all(_same_value(i, j) for i, j in zip(x, y, strict=True))
    return False


def _utc_to_local(value: datetime.datetime | None) -> datetime.datetime | None:
    # RDBStorage stores naive UTC and hands out naive local time (see its TrialModel).
    if value is None:
        return None
    return value.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)


def _make_source(storage: BaseStorage, study_id: int) -> _Source:
    # Each incremental source relies on Optuna internals (nbtune._optuna); without them, the
    # generic source reads any storage through the public API.
    rdb = _optuna.rdb_storage(storage)
    if rdb is not None:
        with contextlib.suppress(ImportError):
            return _RDBSource(rdb, study_id)
    if isinstance(storage, JournalStorage) and _optuna.journal_replay_available(storage):
        return _JournalSource(storage, study_id)
    return _GenericSource(storage, study_id)


# --------------------------------------------------------------------------------------------
# Columns: numpy arrays over trials, in trial-number order, updated in place
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialColumns:
    """Read-only numpy columns over a view's trials, in trial-number order.

    Row ``i`` is ``view.trials[i]``. The arrays are views into the study view's buffers: they are
    valid until the next refresh. Copy them to keep them longer.

    Attributes:
        number: Trial numbers (``int64``).
        state: ``int(TrialState)`` of each trial (``int8``: 0 running, 1 complete, 2 pruned,
            3 fail, 4 waiting).
        values: Objective values, shape ``(n_trials, n_objectives)``; NaN where absent.
        datetime_start: Start times as POSIX seconds; NaN where absent.
        datetime_complete: Completion times as POSIX seconds; NaN where absent.
        params: Per parameter, its internal representation (the index of the choice for a
            categorical, the value otherwise); NaN where the trial lacks the parameter.
        distributions: Per parameter, the first distribution seen for it.

    """

    number: np.ndarray
    state: np.ndarray
    values: np.ndarray
    datetime_start: np.ndarray
    datetime_complete: np.ndarray
    params: Mapping[str, np.ndarray]
    distributions: Mapping[str, BaseDistribution]

    def __len__(self) -> int:
        return len(self.number)


class _Columns:
    def __init__(self, n_objectives: int) -> None:
        self.size = 0
        self._n_objectives = n_objectives
        self._allocate(0)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        self.number = np.zeros(capacity, np.int64)
        self.state = np.zeros(capacity, np.int8)
        self.values = np.full((capacity, self._n_objectives), np.nan)
        self.start = np.full(capacity, np.nan)
        self.complete = np.full(capacity, np.nan)
        self.params: dict[str, np.ndarray] = {}
        self.distributions: dict[str, BaseDistribution] = {}

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity, 256)
        old = (self.number, self.state, self.values, self.start, self.complete, self.params)
        dists = self.distributions
        self._allocate(capacity)
        n = self.size
        for new, prev in zip(
            (self.number, self.state, self.values, self.start, self.complete), old[:5], strict=True
        ):
            new[:n] = prev[:n]
        for name, prev in old[5].items():
            self.params[name] = column = np.full(capacity, np.nan)
            column[:n] = prev[:n]
        self.distributions = dists

    def insert(self, position: int, trial: FrozenTrial) -> None:
        self._grow(self.size + 1)
        n = self.size
        if position < n:  # rare: a trial number arrived out of order; shift the tail by one
            for column in (self.number, self.state, self.values, self.start, self.complete):
                column[position + 1 : n + 1] = column[position:n]
            for column in self.params.values():
                column[position + 1 : n + 1] = column[position:n]
                column[position] = np.nan
        self.size = n + 1
        self.set(position, trial)

    def set(self, i: int, trial: FrozenTrial) -> None:
        self.number[i] = trial.number
        self.state[i] = int(trial.state)
        row = self.values[i]
        row[:] = np.nan
        if trial.values is not None:
            for k, value in enumerate(trial.values[: self._n_objectives]):
                row[k] = np.nan if value is None else value
        self.start[i] = _timestamp(trial.datetime_start)
        self.complete[i] = _timestamp(trial.datetime_complete)
        for name, value in trial.params.items():
            column = self.params.get(name)
            dist = trial.distributions.get(name)
            if column is None:
                self.params[name] = column = np.full(self.capacity, np.nan)
                if dist is not None:
                    self.distributions[name] = dist
            column[i] = _internal(dist, value)

    def view(self) -> TrialColumns:
        n = self.size

        def ro(array: np.ndarray) -> np.ndarray:
            out = array[:n]
            out.flags.writeable = False
            return out

        return TrialColumns(
            number=ro(self.number),
            state=ro(self.state),
            values=ro(self.values),
            datetime_start=ro(self.start),
            datetime_complete=ro(self.complete),
            params={name: ro(column) for name, column in self.params.items()},
            distributions=dict(self.distributions),
        )


def _timestamp(value: datetime.datetime | None) -> float:
    return math.nan if value is None else value.timestamp()


def _internal(dist: BaseDistribution | None, value: Any) -> float:
    try:
        if dist is not None:
            return float(dist.to_internal_repr(value))
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------------------------
# The view
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshResult:
    """What one :meth:`StudyView.refresh` found.

    Attributes:
        new: Numbers of trials seen for the first time, ascending.
        changed: Numbers of known trials that changed (state, values, parameters, attributes or
            intermediate values), ascending.
        finished: Numbers of trials (new or changed) that are finished now and were not before,
            ascending.
        seconds: Wall time of the refresh.

    """

    new: tuple[int, ...] = ()
    changed: tuple[int, ...] = ()
    finished: tuple[int, ...] = ()
    seconds: float = 0.0

    def __bool__(self) -> bool:
        """Whether anything changed."""
        return bool(self.new or self.changed)


class StudyView:
    """A live, incremental read of one study: trials, numpy columns, spec and best trial.

    Keep one view per study and call :meth:`refresh` as often as needed (it fetches only new and
    unfinished trials). The view only reads; it never writes to the storage. It is not
    thread-safe: refresh it and read it from one thread (or guard both with one lock).

    Args:
        storage: A database URL, a journal file path, or an Optuna storage object (see
            :meth:`from_study` to watch a study run in the same process).
        study_name: The study to read; ``None`` picks the storage's only study.
        refresh: Read the trials now (otherwise at the first :meth:`refresh`).

    Raises:
        StudyNotFoundError: No such study (the message lists those the storage has).
        FileNotFoundError: The SQLite or journal file does not exist.

    Example:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(study_name="demo", direction="maximize")
        >>> study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        >>> view = StudyView.from_study(study)
        >>> view.n_trials, view.direction.name
        (3, 'MAXIMIZE')
        >>> study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        >>> view.refresh().new
        (3, 4)
        >>> view.refresh().new
        ()
        >>> view.best_trial.value == study.best_value
        True

    """

    def __init__(
        self,
        storage: str | os.PathLike[str] | BaseStorage,
        study_name: str | None = None,
        *,
        refresh: bool = True,
    ) -> None:
        self._storage = open_storage_for_reading(storage)
        self._owns_storage = not isinstance(storage, BaseStorage)
        self._description = describe_storage(storage)
        self.study_name = self._resolve_name(study_name)
        self._study_id = self._storage.get_study_id_from_name(self.study_name)
        self._directions = tuple(self._storage.get_study_directions(self._study_id))
        self._source = _make_source(self._storage, self._study_id)
        self._trials: list[FrozenTrial] = []
        self._position: dict[int, int] = {}  # trial number -> index in _trials
        self._unfinished: set[int] = set()  # trial numbers
        self._columns = _Columns(len(self._directions))
        self._user_attrs: dict[str, Any] = {}
        self._metric_names: tuple[str, ...] | None = None
        with contextlib.suppress(Exception):  # names are a courtesy, read once
            names = self._storage.get_study_system_attrs(self._study_id).get(
                _attrs.OPTUNA_METRIC_NAMES
            )
            if names:
                self._metric_names = tuple(str(n) for n in names)
        self._last = RefreshResult()
        if refresh:
            self.refresh()

    @classmethod
    def from_study(cls, study: optuna.Study, *, refresh: bool = True) -> StudyView:
        """A view of a :class:`optuna.Study` object's storage (same process or not).

        Example:
            >>> import optuna
            >>> study = optuna.create_study(study_name="from-study")
            >>> StudyView.from_study(study).n_trials
            0

        """
        return cls(_optuna.study_storage(study), study.study_name, refresh=refresh)

    @staticmethod
    def describe(storage: str | os.PathLike[str] | BaseStorage) -> str:
        """How a storage is named in output: its URL or path with any password hidden."""
        return describe_storage(storage)

    def _resolve_name(self, study_name: str | None) -> str:
        if study_name is not None:
            try:
                self._storage.get_study_id_from_name(study_name)
            except KeyError:
                raise StudyNotFoundError(
                    f"no study named {study_name!r} in {self._description}; " + self._list_studies()
                ) from None
            return study_name
        names = [s.study_name for s in self._storage.get_all_studies()]
        if len(names) != 1:
            raise StudyNotFoundError(
                f"give a study name: {self._description} has {len(names)} studies; "
                + self._list_studies()
            )
        return names[0]

    def _list_studies(self) -> str:
        try:
            names = sorted(s.study_name for s in self._storage.get_all_studies())
        except Exception:  # listing is a courtesy; never hide the real error behind another
            return "the studies there could not be listed"
        if not names:
            return "it has no studies"
        shown = ", ".join(repr(n) for n in names[:20])
        more = f" and {len(names) - 20} more" if len(names) > 20 else ""
        return f"studies there: {shown}{more}"

    def __repr__(self) -> str:
        return (
            f"StudyView(storage={self._description!r}, study_name={self.study_name!r}, "
            f"n_trials={len(self._trials)})"
        )

    def close(self) -> None:
        """Release the database connections of a storage the view opened from a URL.

        A storage object passed in by the caller is left alone. The view can still be read.
        """
        rdb = _optuna.rdb_storage(self._storage) if self._owns_storage else None
        if rdb is not None:
            rdb.engine.dispose()

    def __enter__(self) -> StudyView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------

    def refresh(self) -> RefreshResult:
        """Fetch new trials and those not finished at the last refresh.

        Returns:
            The numbers of new, changed and newly finished trials, and the time it took.

        """
        started = time.perf_counter()
        new: list[int] = []
        changed: list[int] = []
        finished: list[int] = []
        snapshot = self._source.shares_objects
        for trial in self._source.fetch():
            number = trial.number
            position = self._position.get(number)
            old = None if position is None else self._trials[position]
            if old is not None and (trial is old or _same_trial(trial, old)):
                continue
            if snapshot and not trial.state.is_finished():
                # Optuna's Trial updates such objects in place: keep our own copy to compare.
                trial = copy.deepcopy(trial)
            if position is None:
                self._insert(trial)
                new.append(number)
                if trial.state.is_finished():
                    finished.append(number)
            else:
                assert old is not None
                self._trials[position] = trial
                self._columns.set(position, trial)
                changed.append(number)
                if trial.state.is_finished() and not old.state.is_finished():
                    finished.append(number)
            if trial.state.is_finished():
                self._unfinished.discard(number)
            else:
                self._unfinished.add(number)
        self._user_attrs = self._storage.get_study_user_attrs(self._study_id)
        if self._metric_names is None:
            with contextlib.suppress(Exception):
                names = self._storage.get_study_system_attrs(self._study_id).get(
                    _attrs.OPTUNA_METRIC_NAMES
                )
                if names:
                    self._metric_names = tuple(str(n) for n in names)
        self._last = RefreshResult(
            new=tuple(sorted(new)),
            changed=tuple(sorted(changed)),
            finished=tuple(sorted(finished)),
            seconds=time.perf_counter() - started,
        )
        return self._last

    def _insert(self, trial: FrozenTrial) -> None:
        number = trial.number
        if not self._trials or number > self._trials[-1].number:
            position = len(self._trials)
            self._trials.append(trial)
            self._position[number] = position
            self._columns.insert(position, trial)
            return
        # Out of order (never seen with Optuna's storages, handled anyway): O(n), once.
        position = bisect.bisect_left([t.number for t in self._trials], number)
        self._trials.insert(position, trial)
        self._columns.insert(position, trial)
        for i in range(position, len(self._trials)):
            self._position[self._trials[i].number] = i

    # -- what the view knows ------------------------------------------------------------------

    @property
    def storage(self) -> BaseStorage:
        """The storage object the view reads from."""
        return self._storage

    @property
    def storage_description(self) -> str:
        """The storage URL or path, password hidden."""
        return self._description

    @property
    def study_id(self) -> int:
        """The study's id in its storage."""
        return self._study_id

    @property
    def directions(self) -> tuple[StudyDirection, ...]:
        """The direction of each objective."""
        return self._directions

    @property
    def direction(self) -> StudyDirection:
        """The direction of the first objective (the only one of single-objective studies)."""
        return self._directions[0]

    @property
    def is_multi_objective(self) -> bool:
        """Whether the study has more than one objective."""
        return len(self._directions) > 1

    @property
    def metric_names(self) -> tuple[str, ...] | None:
        """The objectives' names if set with ``Study.set_metric_names``, else ``None``."""
        return self._metric_names

    @property
    def user_attrs(self) -> Mapping[str, Any]:
        """The study's user attributes as of the last refresh."""
        return self._user_attrs

    @property
    def spec(self) -> dict[str, Any] | None:
        """The nbtune study spec (study user attribute ``nbtune:spec``), or ``None``."""
        raw = self._user_attrs.get(_attrs.STUDY_SPEC)
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                return None
        return raw if isinstance(raw, dict) else None

    @property
    def last_refresh(self) -> RefreshResult:
        """What the last refresh found."""
        return self._last

    @property
    def n_trials(self) -> int:
        """How many trials the view has seen."""
        return len(self._trials)

    @property
    def trials(self) -> list[FrozenTrial]:
        """All trials, by number (a new list; do not modify the trials)."""
        return list(self._trials)

    def trial(self, number: int) -> FrozenTrial:
        """The trial of that number.

        Raises:
            KeyError: The view has not seen that trial.

        """
        return self._trials[self._position[number]]

    def position(self, number: int) -> int:
        """The row of trial ``number`` in :attr:`columns` and :attr:`trials`."""
        return self._position[number]

    @property
    def unfinished_numbers(self) -> tuple[int, ...]:
        """Numbers of running and waiting trials, ascending."""
        return tuple(sorted(self._unfinished))

    @property
    def columns(self) -> TrialColumns:
        """Numpy columns over all trials (read-only; valid until the next refresh)."""
        return self._columns.view()

    def best_number(self, objective: int = 0) -> int | None:
        """The number of the best complete trial for one objective, or ``None``.

        Only finite values count (a NaN or infinite score is treated as a scoring error, unlike
        Optuna's ``best_trial``). Ties go to the lowest trial number.
        """
        cols = self._columns
        n = cols.size
        values = cols.values[:n, objective]
        ok = (cols.state[:n] == int(TrialState.COMPLETE)) & np.isfinite(values)
        if not ok.any():
            return None
        sign = -1.0 if self._directions[objective] == StudyDirection.MAXIMIZE else 1.0
        masked = np.where(ok, sign * values, np.inf)
        return int(cols.number[int(np.argmin(masked))])

    @property
    def best_trial(self) -> FrozenTrial | None:
        """The best complete trial of a single-objective study, or ``None``.

        ``None`` if no trial completed with a finite value yet, or if the study has several
        objectives (see :meth:`best_number`).
        """
        if self.is_multi_objective:
            return None
        number = self.best_number(0)
        return None if number is None else self.trial(number)

    def count_states(self) -> dict[TrialState, int]:
        """How many trials are in each state (every state present, zeros included)."""
        counts = np.bincount(self._columns.state[: self._columns.size], minlength=len(TrialState))
        return {state: int(counts[int(state)]) for state in TrialState}


def list_studies(storage: str | os.PathLike[str] | BaseStorage) -> list[tuple[str, int]]:
    """The studies of a storage as ``(name, number of trials)``, without creating anything.

    Raises:
        FileNotFoundError: The SQLite or journal file does not exist.
    """
    opened = open_storage_for_reading(storage)
    summaries = optuna.get_all_study_summaries(opened, include_best_trial=False)
    return [(s.study_name, s.n_trials) for s in summaries]
