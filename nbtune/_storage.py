"""Opening Optuna storages the way nbtune needs them, and heartbeats for every storage.

* SQLite paths are made absolute (so a study never silently lands in another working directory),
  use WAL mode and a generous busy timeout (several writers: no "database is locked").
* ``mysql://`` uses the pure-Python PyMySQL driver when ``mysqlclient`` is not installed.
* Relational storages get Optuna's heartbeat, and stale trials are retried. Storages without
  Optuna's heartbeat (the journal file) get nbtune's own, kept in a trial system attribute.
* Passwords never appear in what nbtune prints: see :func:`redact_url`.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages import fail_stale_trials as optuna_fail_stale_trials
from optuna.trial import TrialState

from nbtune import _attrs

DEFAULT_STORAGE = "sqlite:///cleanrl_hpopt.db"
_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")


def redact_url(url: str) -> str:
    """Hide the password of a storage URL.

    Example:
        >>> redact_url("postgresql://alice:s3cret@db.example:5432/study")
        'postgresql://alice:***@db.example:5432/study'
        >>> redact_url("sqlite:////tmp/x.db")
        'sqlite:////tmp/x.db'

    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def describe_storage(storage: str | BaseStorage) -> str:
    """A printable name for a storage, password hidden."""
    if isinstance(storage, str):
        return redact_url(storage)
    if isinstance(storage, RDBStorage):
        return redact_url(storage.url)
    return type(storage).__name__


def resolve_storage_url(url: str) -> str:
    """Make a SQLite URL absolute and pick an installed MySQL driver.

    Example:
        >>> resolve_storage_url("sqlite:////tmp/study.db")
        'sqlite:////tmp/study.db'

    """
    if url.startswith("sqlite:///") and url not in ("sqlite:///:memory:",):
        path = url[len("sqlite:///") :]
        if path and not path.startswith(":"):
            return "sqlite:///" + str(Path(path).expanduser().resolve())
    if url.startswith("mysql://") and importlib.util.find_spec("MySQLdb") is None:
        return "mysql+pymysql://" + url[len("mysql://") :]
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or ``None`` for other storages."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:"):
        return Path(url[len("sqlite:///") :])
    return None


def open_storage(
    storage: str | os.PathLike[str] | BaseStorage | None,
    *,
    heartbeat_interval: int | None = 60,
    grace_period: int | None = None,
    max_retry: int | None = 3,
    must_exist: bool = False,
) -> BaseStorage:
    """Open a storage given as a URL, a journal-file path, or a storage object.

    Args:
        storage: A database URL (``sqlite:///study.db``, ``postgresql://...``,
            ``mysql://...``), a path ending in ``.log``/``.jsonl``/``.journal`` for Optuna's
            journal file storage, an Optuna storage object (used as given), or ``None`` for the
            default ``sqlite:///cleanrl_hpopt.db``.
        heartbeat_interval: Seconds between heartbeats of running trials (relational storages;
            ``None`` disables Optuna's heartbeat).
        grace_period: Seconds without heartbeat after which a running trial counts as dead;
            by default twice the interval.
        max_retry: How many times a trial whose process died is run again.
        must_exist: Refuse a SQLite or journal file that does not exist instead of creating an
            empty study database (for workers joining a study).

    Returns:
        The storage.

    Raises:
        ValueError: For an unknown URL scheme, or a missing file with ``must_exist``.

    """
    if storage is None:
        storage = DEFAULT_STORAGE
    if isinstance(storage, BaseStorage):
        return storage
    text = os.fspath(storage)
    if "://" not in text:
        if text.endswith(_JOURNAL_SUFFIXES):
            path = Path(text).expanduser().resolve()
            if must_exist and not path.exists():
                raise ValueError(f"journal file {path} does not exist; check the path.")
            from optuna.storages.journal import JournalFileBackend

            return JournalStorage(JournalFileBackend(str(path)))
        raise ValueError(
            f"storage {text!r} is neither a database URL (sqlite:///file.db, postgresql://..., "
            "mysql://...) nor a journal file path ending in .log, .jsonl or .journal."
        )
    url = resolve_storage_url(text)
    path = sqlite_path(url)
    if path is not None and must_exist and not path.exists():
        raise ValueError(
            f"SQLite file {path} does not exist: a worker joins an existing study. "
            "Check the path (relative paths are resolved from the current directory)."
        )
    engine_kwargs: dict[str, Any] = {}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        # Survive a database restart or a dropped connection between two polls.
        engine_kwargs = {"pool_pre_ping": True}
    with warnings.catch_warnings():
        # The heartbeat arguments are marked experimental since Optuna 2.9; nbtune relies on them.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = (
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
            if heartbeat_interval is not None and max_retry != 0
            else None
        )
        rdb = RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=callback,
        )
    if path is not None:
        _enable_wal(rdb)
    return rdb


def _enable_wal(storage: RDBStorage) -> None:
    # WAL is a property of the database file: setting it once is enough, and it lets readers
    # (the live view) work while a writer commits. It roughly doubled throughput here.
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")


def uses_optuna_heartbeat(storage: BaseStorage) -> bool:
    """Whether Optuna's own heartbeat covers this storage."""
    return optuna.storages._heartbeat.is_heartbeat_enabled(storage)


def record_heartbeat(study: optuna.Study, trial_id: int) -> None:
    """Record that a running trial is alive: Optuna's heartbeat where it exists, and nbtune's.

    nbtune's own (a trial system attribute) works on every storage and lets a process see that
    another one is still working on the study.
    """
    storage = study._storage
    if uses_optuna_heartbeat(storage):
        storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
    storage.set_trial_system_attr(trial_id, _attrs.HEARTBEAT, time.time())


def fail_stale_trials(
    study: optuna.Study, grace_period: float, max_retry: int | None = 3
) -> list[int]:
    """Fail running trials whose process died, and queue them again.

    Relational storages use Optuna's heartbeat and its stale-trial callback. For other storages
    (the journal file) a running trial whose ``nbtune:heartbeat`` is older than ``grace_period``
    seconds is failed and re-enqueued (at most ``max_retry`` times), the same way.

    Returns:
        Numbers of the trials failed here (nbtune's own heartbeat only; Optuna does not say).

    """
    storage = study._storage
    if uses_optuna_heartbeat(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna_fail_stale_trials(study)
        return []
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.system_attrs.get(_attrs.HEARTBEAT)
        if beat is None or now - float(beat) <= grace_period:
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        storage.set_trial_system_attr(trial._trial_id, _attrs.FAIL_KIND, "stale")
        failed.append(trial.number)
        if max_retry != 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
            retry(study, storage.get_trial(trial._trial_id))
    return failed
