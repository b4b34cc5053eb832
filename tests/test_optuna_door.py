"""nbtune/_optuna.py, the one door to Optuna's internals: each helper on real storages, and scans.

Each helper is run against real Optuna objects (in memory, SQLite, a journal file, PostgreSQL
where the helper is about relational storages), so that an Optuna release that moves an internal
fails here, under the name of the nbtune feature that depends on it. The scans fail when a module
other than ``_optuna.py`` touches a private Optuna name, or spells out a stored attribute name
instead of importing it from ``_attrs``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from _support import postgres_database
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.trial import TrialState

import nbtune
from nbtune import _attrs, _optuna
from nbtune._budget import claim_trial, reserve_slot
from nbtune._storage import ResilientRDBStorage, describe_storage, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

NBTUNE = Path(nbtune.__file__).parent
SOURCES = sorted(NBTUNE.rglob("*.py"))


# --------------------------------------------------------------------------------------------
# Real storages
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards: a plain URL, which means psycopg 3 to
    SQLAlchemy 2.1 (the driver of the ``postgres`` extra, as in the oldest-Optuna CI run)."""
    with postgres_database("nbtune_door") as url:
        yield url


def _dispose(storage: BaseStorage) -> None:
    rdb = _optuna.rdb_storage(storage)
    if rdb is not None:
        rdb.engine.dispose()  # before PostgreSQL drops the database


@contextlib.contextmanager
def warnings_off() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@contextlib.contextmanager
def storage_of_kind(kind: str, tmp_path: Path, **rdb_kwargs: Any) -> Iterator[BaseStorage]:
    """A fresh storage: ``memory``, ``sqlite``, ``journal`` or ``postgres``."""
    if kind == "memory":
        yield InMemoryStorage()
    elif kind == "journal":
        yield open_storage(tmp_path / "study.log")
    elif kind == "sqlite":
        with warnings_off():
            storage = RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", **rdb_kwargs)
        yield storage
        _dispose(storage)
    else:
        with postgres_url() as url, warnings_off():
            storage = RDBStorage(url, **rdb_kwargs)
            try:
                yield storage
            finally:
                _dispose(storage)


ALL_KINDS = ["memory", "sqlite", "journal", "postgres"]
RDB_KINDS = ["sqlite", "postgres"]


# --------------------------------------------------------------------------------------------
# Studies and trials
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_budget_and_heartbeats_reach_the_study_storage_and_id(kind: str, tmp_path: Path) -> None:
    with storage_of_kind(kind, tmp_path) as storage:
        study = optuna.create_study(storage=storage, study_name="door")
        inner = _optuna.study_storage(study)
        assert isinstance(inner, BaseStorage)
        assert _optuna.study_id(study) == inner.get_study_id_from_name("door")
        # A relational storage comes back wrapped in Optuna's cache, with it underneath.
        assert _optuna.rdb_storage(inner) is (storage if kind in RDB_KINDS else None)


def test_budget_study_id_falls_back_to_the_public_lookup() -> None:
    study = optuna.create_study(study_name="lookup")
    expected = _optuna.study_id(study)
    del study._study_id  # as if a later Optuna kept it elsewhere
    assert _optuna.study_id(study) == expected


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_heartbeats_and_claims_read_the_trial_id_of_live_and_frozen_trials(
    kind: str, tmp_path: Path
) -> None:
    with storage_of_kind(kind, tmp_path) as storage:
        study = optuna.create_study(storage=storage, study_name="ids")
        study.ask()
        live = study.ask()
        expected = _optuna.study_storage(study).get_trial_id_from_study_id_trial_number(
            _optuna.study_id(study), 1
        )
        assert _optuna.trial_id(live) == expected
        assert _optuna.trial_id(study.get_trials(deepcopy=False)[1]) == expected


def test_missing_internals_raise_an_error_naming_the_feature_and_the_version() -> None:
    with pytest.raises(
        _optuna.OptunaInternalsError, match="trial ids.*Optuna " + optuna.__version__
    ):
        _optuna.trial_id(object())  # type: ignore[arg-type]
    with pytest.raises(_optuna.OptunaInternalsError, match="budget, heartbeats"):
        _optuna.study_storage(object())  # type: ignore[arg-type]
    with pytest.raises(_optuna.OptunaInternalsError, match=r"heartbeats.*_get_stale_trial_ids"):
        _optuna.stale_trial_ids(InMemoryStorage(), 0)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_budget_claim_of_a_waiting_trial_uses_the_study_storage_atomically(
    kind: str, tmp_path: Path
) -> None:
    with storage_of_kind(kind, tmp_path) as storage:
        study = optuna.create_study(storage=storage, study_name="claim")
        study.set_user_attr(_attrs.TOTAL_TRIALS, 1)
        reserve_slot(study)
        inner, sid = _optuna.study_storage(study), _optuna.study_id(study)
        (waiting,) = inner.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING,))
        # The claim is one WAITING -> RUNNING transition; a second claimant loses it.
        assert inner.set_trial_state_values(_optuna.trial_id(waiting), state=TrialState.RUNNING)
        assert not inner.set_trial_state_values(_optuna.trial_id(waiting), state=TrialState.RUNNING)
        inner.set_trial_state_values(_optuna.trial_id(waiting), state=TrialState.WAITING)
        trial = claim_trial(study)  # the whole claim, through the door
        assert trial is not None and _optuna.trial_id(trial) == _optuna.trial_id(waiting)
        assert claim_trial(study) is None  # the budget of one is taken


def test_budget_claim_forgets_the_study_trial_cache() -> None:
    study = optuna.create_study()
    study._thread_local.cached_all_trials = []
    _optuna.forget_cached_trials(study)
    assert study._thread_local.cached_all_trials is None
    del study._thread_local  # an Optuna without the cache: nothing to forget
    _optuna.forget_cached_trials(study)


DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "clip": FloatDistribution(0.1, 0.3, step=0.1),
    "steps": IntDistribution(128, 2048, step=128),
    "layers": IntDistribution(1, 8, log=True),
    "act": CategoricalDistribution(["tanh", "relu", None]),
}


class _PublicOnly:
    """An Optuna trial seen through its public API only (an Optuna without ``_suggest``)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.suggest_float = trial.suggest_float
        self.suggest_int = trial.suggest_int
        self.suggest_categorical = trial.suggest_categorical


@pytest.mark.parametrize("public_only", [False, True], ids=["suggest", "public-fallback"])
def test_search_space_suggest_samples_each_distribution_as_declared(public_only: bool) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        target: Any = _PublicOnly(trial) if public_only else trial
        values = {name: _optuna.suggest(target, name, d) for name, d in DISTRIBUTIONS.items()}
        study.tell(trial, 0.0)
        frozen = study.trials[-1]
        assert frozen.distributions == DISTRIBUTIONS
        assert frozen.params == values
        assert all(d._contains(d.to_internal_repr(values[n])) for n, d in DISTRIBUTIONS.items())


def test_tuner_warning_reads_whether_tpe_uses_constant_liar() -> None:
    assert _optuna.tpe_constant_liar(optuna.samplers.TPESampler(constant_liar=True))
    assert not _optuna.tpe_constant_liar(optuna.samplers.TPESampler(constant_liar=False))
    assert _optuna.tpe_constant_liar(object())  # type: ignore[arg-type]  # unknown: no warning


# --------------------------------------------------------------------------------------------
# Storages: naming, unwrapping
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_storage_naming_unwraps_optuna_cache_and_names_journal_files(
    kind: str, tmp_path: Path
) -> None:
    with storage_of_kind(kind, tmp_path) as storage:
        study = optuna.create_study(storage=storage, study_name="named")
        inner = _optuna.study_storage(study)
        backend = _optuna.cached_storage_backend(inner)
        assert backend is (storage if kind in RDB_KINDS else None)
        assert _optuna.cached_storage_backend(storage) is None  # not wrapped itself
        journal = str((tmp_path / "study.log").resolve()) if kind == "journal" else None
        assert _optuna.journal_file_path(inner) == journal
        expected = {"memory": "InMemoryStorage", "journal": journal}.get(kind)
        assert describe_storage(inner) == (expected or str(storage.url))


# --------------------------------------------------------------------------------------------
# Heartbeats
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_heartbeats_know_which_storages_optuna_covers(kind: str, tmp_path: Path) -> None:
    with storage_of_kind(kind, tmp_path, heartbeat_interval=60) as storage:
        study = optuna.create_study(storage=storage)
        covered = kind in RDB_KINDS
        assert _optuna.uses_optuna_heartbeat(storage) is covered
        assert _optuna.uses_optuna_heartbeat(_optuna.study_storage(study)) is covered


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_heartbeats_fall_back_to_the_public_heartbeat_interval(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(optuna.storages._heartbeat, "is_heartbeat_enabled")
    with storage_of_kind(kind, tmp_path, heartbeat_interval=60) as storage:
        assert _optuna.uses_optuna_heartbeat(storage) is (kind in RDB_KINDS)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with")
@pytest.mark.parametrize("kind", RDB_KINDS)
def test_heartbeats_stale_trial_ids_name_the_trials_of_dead_processes(
    kind: str, tmp_path: Path
) -> None:
    with storage_of_kind(kind, tmp_path, heartbeat_interval=1, grace_period=1) as storage:
        study = optuna.create_study(storage=storage)
        dead, alive = study.ask(), study.ask()
        storage.record_heartbeat(_optuna.trial_id(dead))
        time.sleep(2.5)  # SQLite's clock has whole seconds
        storage.record_heartbeat(_optuna.trial_id(alive))
        sid = _optuna.study_id(study)
        assert _optuna.stale_trial_ids(storage, sid) == [_optuna.trial_id(dead)]
        assert _optuna.stale_trial_ids(_optuna.study_storage(study), sid) == [
            _optuna.trial_id(dead)
        ]


# --------------------------------------------------------------------------------------------
# The study view: journal replay, Optuna's tables
# --------------------------------------------------------------------------------------------


def test_study_view_incremental_journal_replay_sees_another_writer(tmp_path: Path) -> None:
    writer = open_storage(tmp_path / "study.log")
    study = optuna.create_study(storage=writer, study_name="journal")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    reader = open_storage(tmp_path / "study.log")  # a second process's view of the file
    assert isinstance(reader, JournalStorage) and _optuna.journal_replay_available(reader)
    sid = reader.get_study_id_from_name("journal")
    with _optuna.replayed_journal(reader) as replay:
        ids = list(replay.trial_ids_by_study[sid])
        assert [replay.trials[i].number for i in ids] == [0, 1]
        assert not reader._thread_lock.acquire(blocking=False)  # held while reading
    running = study.ask()
    with _optuna.replayed_journal(reader) as replay:  # only the new line is replayed
        assert list(replay.trial_ids_by_study[sid])[2:] == [_optuna.trial_id(running)]
        assert replay.trials[_optuna.trial_id(running)].state == TrialState.RUNNING
    assert not _optuna.journal_replay_available(InMemoryStorage())  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", RDB_KINDS)
def test_study_view_rdb_reader_uses_optuna_tables_and_orm(kind: str, tmp_path: Path) -> None:
    models = _optuna.rdb_models()
    for name in ("TrialModel", "TrialValueModel", "TrialParamModel", "StudyUserAttributeModel"):
        assert hasattr(getattr(models, name), "__table__"), name
    with storage_of_kind(kind, tmp_path) as storage:
        study = optuna.create_study(storage=storage, study_name="rdb")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        running = study.ask()
        trials = study.get_trials(deepcopy=False)
        sid, ids = _optuna.study_id(study), [_optuna.trial_id(t) for t in trials]
        # New trials (id above the highest seen) plus the unfinished ones asked for.
        since = _optuna.rdb_trials_since(storage, sid, {_optuna.trial_id(running)}, ids[1])
        assert sorted(t.number for t in since) == [2, 3]
        everything = _optuna.rdb_trials_since(storage, sid, set(), -1)
        assert [(t.number, t.state, t.params) for t in everything] == [
            (t.number, t.state, t.params) for t in trials
        ]


@pytest.mark.parametrize("kind", RDB_KINDS)
def test_study_view_orm_reader_falls_back_to_listing_all_trials(kind: str, tmp_path: Path) -> None:
    with storage_of_kind(kind, tmp_path) as storage:
        study = optuna.create_study(storage=storage)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        running = study.ask()
        sid, ids = _optuna.study_id(study), [_optuna.trial_id(t) for t in study.trials]
        expected = _optuna.rdb_trials_since(storage, sid, {_optuna.trial_id(running)}, ids[1])
        # An RDBStorage of an Optuna without _get_trials: its public listing only.
        public_only: Any = type("PublicOnly", (), {"get_all_trials": storage.get_all_trials})()
        fallback = _optuna.rdb_trials_since(public_only, sid, {_optuna.trial_id(running)}, ids[1])
        assert fallback == expected


def test_study_view_reads_every_storage_through_its_incremental_source(tmp_path: Path) -> None:
    from nbtune import _study_view

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    with _study_view.StudyView.from_study(study) as view:
        assert isinstance(view._source, _study_view._RDBSource)
        assert view._source._mode == "core"
    journal = optuna.create_study(storage=open_storage(tmp_path / "s.log"), study_name="j")
    view = _study_view.StudyView.from_study(journal)
    assert isinstance(view._source, _study_view._JournalSource)


# --------------------------------------------------------------------------------------------
# The resilient relational storage: retried private calls, repeatable creation
# --------------------------------------------------------------------------------------------


def test_resilient_storage_retries_the_private_calls_optuna_makes() -> None:
    wrapped = _optuna.wrap_private_rdb_calls(type("Probe", (RDBStorage,), {}), lambda f: f)
    # Every private call Optuna 5 makes directly is still there to be retried.
    assert wrapped == (
        "_set_trial_param",
        "_get_trials",
        "_get_best_trial_id",
        "_get_stale_trial_ids",
    )
    for name in wrapped:
        assert getattr(ResilientRDBStorage, name) is not getattr(RDBStorage, name), name
        assert getattr(ResilientRDBStorage, name).__wrapped__ is getattr(RDBStorage, name)


class _RecordingHooks(_optuna.RDBStorageCreationHooks):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.created: list[Any] = []
        self.looked_up: list[Any] = []

    def create_trial_with(self, study_id: int, template_trial: Any, create: Any) -> Any:
        self.created.append(template_trial)
        return create(template_trial)

    def find_created_trial(self, study_id: int, template_trial: Any, session: Any) -> Any:
        self.looked_up.append(template_trial)
        return None


def test_resilient_storage_creation_hooks_are_called_by_optuna(tmp_path: Path) -> None:
    storage = _RecordingHooks(f"sqlite:///{tmp_path / 'hooks.db'}")
    study = optuna.create_study(storage=storage)
    study.ask()
    study.enqueue_trial({"x": 0.5})
    assert storage.created[0] is None and storage.created[1] is not None
    assert len(storage.looked_up) == 2
    assert [t.state for t in study.trials] == [TrialState.RUNNING, TrialState.WAITING]
    storage.engine.dispose()


@pytest.mark.parametrize("kind", RDB_KINDS)
def test_resilient_storage_finds_a_trial_by_its_creation_token(kind: str, tmp_path: Path) -> None:
    with storage_of_kind(kind, tmp_path) as storage:
        study = optuna.create_study(storage=storage)
        study.ask()
        token = uuid.uuid4().hex
        template = optuna.trial.create_trial(
            state=TrialState.WAITING, system_attrs={_attrs.CREATE_TOKEN: token}
        )
        study.add_trial(template)
        session = storage.scoped_session()
        try:
            sid = _optuna.study_id(study)
            found = _optuna.find_trial_row_by_system_attr(
                session, sid, _attrs.CREATE_TOKEN, json.dumps(token)
            )
            assert found is not None and found.number == 1
            missing = _optuna.find_trial_row_by_system_attr(
                session, sid, _attrs.CREATE_TOKEN, json.dumps("other")
            )
            assert missing is None
        finally:
            session.close()


def test_resilient_storage_creates_one_trial_when_a_commit_answer_is_lost(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'lost.db'}", heartbeat_interval=None)
    assert isinstance(storage, ResilientRDBStorage)
    study = optuna.create_study(storage=storage)
    template = optuna.trial.create_trial(state=TrialState.WAITING)

    def create_then_lose(template_trial: Any, create: Any) -> Any:
        create(template_trial)  # the first attempt commits, but its answer is lost: again
        return create(template_trial)

    original = ResilientRDBStorage.create_trial_with

    def hooked(self: Any, study_id: int, template_trial: Any, create: Any) -> Any:
        return original(self, study_id, template_trial, lambda t: create_then_lose(t, create))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ResilientRDBStorage, "create_trial_with", hooked)
        study.add_trial(template)
    assert len(study.trials) == 1
    storage.engine.dispose()


# --------------------------------------------------------------------------------------------
# The door is documented
# --------------------------------------------------------------------------------------------


def _door_helpers() -> list[tuple[str, Any]]:
    return [
        (name, obj)
        for name, obj in vars(_optuna).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == _optuna.__name__
    ]


def test_every_door_helper_names_the_feature_it_serves() -> None:
    helpers = _door_helpers()
    assert len(helpers) >= 15
    undocumented = [
        name
        for name, obj in helpers
        if obj is not _optuna.OptunaInternalsError
        and obj is not _optuna.JournalReplay
        and "Feature" not in (inspect.getdoc(obj) or "")
    ]
    assert not undocumented, f"say which nbtune feature needs these helpers: {undocumented}"


# --------------------------------------------------------------------------------------------
# Scan: private Optuna names only in nbtune/_optuna.py
# --------------------------------------------------------------------------------------------

#: nbtune's own private attributes reached from outside their object, by file and expression.
OWN_PRIVATE = {
    # Tuner.from_storage-style constructors fill in the instance they built.
    ("_tuner.py", "tuner._storage_arg"),
    ("_tuner.py", "tuner._storage"),
}
ATTRIBUTE_BUILTINS = ("getattr", "hasattr", "setattr", "delattr")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _private_imports(node: ast.AST) -> list[str]:
    """``import optuna.x._y`` and ``from optuna.x._y import z`` / ``from optuna.x import _z``."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = [f"{node.module}.{alias.name}" for alias in node.names]
    else:
        return []
    return [
        name
        for name in names
        if name.split(".")[0] == "optuna" and any(map(_is_private, name.split(".")))
    ]


def _other_libraries(tree: ast.Module) -> set[str]:
    """Names a module binds to libraries other than Optuna and nbtune (``torch``, ``np``...)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases = [
                (alias.name, alias.asname or alias.name.split(".")[0]) for alias in node.names
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            aliases = [(node.module, alias.asname or alias.name) for alias in node.names]
        else:
            continue
        names |= {name for module, name in aliases if module.split(".")[0] not in OURS}
    return names


OURS = ("optuna", "nbtune")


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _private_accesses(path: Path, rel: str) -> list[str]:
    """Every ``x._name`` (x not self/cls), ``getattr(x, "_name")`` and private Optuna import.

    Attributes of another library's module (``torch._foreach_add_`` in the example script) are
    that library's business, and nbtune's own private attributes are listed in OWN_PRIVATE.
    """
    tree = ast.parse(path.read_text(), str(path))
    others = _other_libraries(tree)
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and not _is_self(node.value):
            text = ast.unparse(node)
            if (rel, text) in OWN_PRIVATE or _root(node) in others:
                continue
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTRIBUTE_BUILTINS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
            and not _is_self(node.args[0])
        ):
            text = ast.unparse(node)
        else:
            imported = _private_imports(node)
            text = ", ".join(imported) if imported else None
        if text is not None:
            found.append(f"nbtune/{rel}:{getattr(node, 'lineno', '?')}: {text}")
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(NBTUNE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _optuna_names(tree: ast.Module) -> set[str]:
    """Names a module binds to Optuna or to nbtune's door (``optuna``, ``RDBStorage``...)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {
                alias.asname or alias.name.split(".")[0]
                for alias in node.names
                if alias.name.split(".")[0] == "optuna"
            }
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] == "optuna" or node.module == "nbtune._optuna":
                names |= {alias.asname or alias.name for alias in node.names}
            elif node.module == "nbtune":
                names |= {a.asname or a.name for a in node.names if a.name == "_optuna"}
    return names


def _optuna_subclass_privates(path: Path) -> list[str]:
    """Private Optuna names used by nbtune classes that subclass Optuna's.

    A method named like a private method of the Optuna base overrides an internal; ``self._x``
    reads an internal unless nbtune's own classes define ``_x``. Only modules with such classes
    are imported (the widgets' dependencies are optional).
    """
    tree = ast.parse(path.read_text(), str(path))
    optuna_names = _optuna_names(tree)
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not any(
            ast.unparse(base).split(".")[0] in optuna_names for base in node.bases
        ):
            continue
        cls = getattr(importlib.import_module(_module_name(path)), node.name)
        bases = [k for k in cls.__mro__[1:] if k.__module__.split(".")[0] == "optuna"]
        if not bases:
            continue
        ours = [k for k in cls.__mro__ if k not in bases and k is not object]
        assigned = {
            n.attr
            for n in ast.walk(node)
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and _is_self(n.value)
        }
        for item in ast.walk(node):
            name = None
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_private(item.name):
                if any(item.name in vars(base) for base in bases):
                    name = item.name
            elif (
                isinstance(item, ast.Attribute) and _is_private(item.attr) and _is_self(item.value)
            ):
                defined = item.attr in assigned or any(item.attr in vars(k) for k in ours)
                name = None if defined else item.attr
            if name is not None:
                found.append(f"nbtune/{path.relative_to(NBTUNE).as_posix()}:{item.lineno}: {name}")
    return found


def test_only_the_door_touches_private_optuna_names() -> None:
    door = NBTUNE / "_optuna.py"
    found = []
    for path in SOURCES:
        if path != door:
            rel = path.relative_to(NBTUNE).as_posix()
            found += _private_accesses(path, rel) + _optuna_subclass_privates(path)
    assert not found, (
        "private Optuna names outside nbtune/_optuna.py (add a helper there that names the "
        "feature, and call it):\n" + "\n".join(found)
    )


def test_the_scan_finds_each_kind_of_private_use(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import optuna.storages._heartbeat\n"
        "from optuna.storages._rdb import models\n"
        "from optuna.storages import _CachedStorage\n"
        "import torch\n"
        "def f(study, storage):\n"
        "    torch._foreach_add_([], 1)\n"
        "    storage._sync_with_backend()\n"
        "    x = getattr(storage, '_backend', None)\n"
        "    return study._storage, self._ok, x.__class__\n"
    )
    found = _private_accesses(probe, "probe.py")
    assert sorted(line.split(": ", 1)[1] for line in found) == sorted(
        [
            "optuna.storages._heartbeat",
            "optuna.storages._rdb.models",
            "optuna.storages._CachedStorage",
            "storage._sync_with_backend",
            "getattr(storage, '_backend', None)",
            "study._storage",
        ]
    )


# --------------------------------------------------------------------------------------------
# Scan: stored attribute names only in nbtune/_attrs.py
# --------------------------------------------------------------------------------------------

#: String literals equal to a stored attribute name that are not one, by file and value.
NOT_ATTRIBUTE_NAMES = {
    ("widgets/_panel.py", "seeds"),  # the label of the number-of-seeds field
    ("__main__.py", "seeds"),  # the plural in a default study name ("cartpole_acrobot_3seeds")
    # Keys of the validation record (nbtune:validation_of, documented in _attrs) and of the
    # export's validation object, whose names are a contract of their own.
    ("_validation.py", "seeds"),
    ("_validation.py", "tuning_score"),
    ("_validation.py", "versions"),
    ("_validation.py", "fail_reason"),
}


def _attribute_names() -> dict[str, str]:
    return {
        value: name
        for name, value in vars(_attrs).items()
        if name.isupper() and isinstance(value, str)
    }


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *ast.walk(tree)]
    return {
        id(n.body[0].value)
        for n in nodes
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }


def test_stored_attribute_names_are_spelled_only_in_attrs() -> None:
    names = _attribute_names()
    assert len(names) == len([n for n in vars(_attrs) if n.isupper()]), "two names, one value"
    found = []
    for path in SOURCES:
        rel = path.relative_to(NBTUNE).as_posix()
        if rel == "_attrs.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in names
                and id(node) not in docstrings
                and (rel, node.value) not in NOT_ATTRIBUTE_NAMES
            ):
                found.append(
                    f"nbtune/{rel}:{node.lineno}: {node.value!r} (use _attrs.{names[node.value]})"
                )
    assert not found, "stored attribute names spelled outside nbtune/_attrs.py:\n" + "\n".join(
        found
    )
