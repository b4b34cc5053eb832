"""Opening Optuna storages the way nbtune needs them, and heartbeats for every storage.

* SQLite paths are made absolute (so a study never silently lands in another working directory),
  use WAL mode, a generous busy timeout and transactions that lock at their start (several
  writers: atomic claims, no "database is locked").
* ``mysql://`` uses the pure-Python PyMySQL driver when ``mysqlclient`` is not installed, and
  ``postgresql://`` uses psycopg2 when psycopg 3 (SQLAlchemy 2.1's default driver) is not.
* Relational storages survive an outage: every storage call is retried with backoff while the
  database is unreachable, locked or restarting (:class:`ResilientRDBStorage`), and the writes
  whose answer can be lost in a dropped connection (finishing a trial, creating one) are safe to
  repeat.
* Relational storages get Optuna's heartbeat, and stale trials are retried. Storages without
  Optuna's heartbeat (the journal file) get nbtune's own, kept in a trial system attribute.
* Passwords never appear in what nbtune prints: see :func:`redact_url` and :func:`scrub`.
"""

from __future__ import annotations

import copy
import datetime
import functools
import importlib.util
import json
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy.engine
import sqlalchemy.event
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from nbtune import _attrs, _optuna
from nbtune._budget import QUEUED_MARKS
from nbtune._errors import ConfigError, StorageUnavailableError

DEFAULT_STORAGE = "sqlite:///cleanrl_hpopt.db"
#: Seconds a storage call keeps retrying while the database is unreachable.
DEFAULT_RETRY_SECONDS = 120.0
#: Endings of a journal file storage's path.
JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
_SQLITE_BUSY_TIMEOUT = 60.0  # seconds SQLite waits for a lock before "database is locked"
# Whatever sits between "scheme://user:" and the LAST "@" of the URL counts as the password: a raw
# "@", "?", "#", "/" or ":" in a password cannot end it early (more hidden rather than less).
_PASSWORD_IN_USERINFO = re.compile(r"^([A-Za-z][\w+.-]*://[^:/]*):(.*)@", re.DOTALL)
_PASSWORD_IN_QUERY = re.compile(r"(?i)((?:^|[&;])(?:password|passwd|pwd)=)([^&;]*)")
_PASSWORD_KEYS = ("password", "passwd", "pwd")
#: Pieces of a password shorter than this are not scrubbed from messages on their own.
_MIN_FRAGMENT = 3
T = TypeVar("T")


def _parsed_url(url: str) -> sqlalchemy.engine.URL | None:
    """The URL as SQLAlchemy (and so the database driver) reads it, or ``None``."""
    try:
        return sqlalchemy.engine.make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: nothing is sent to a driver
        return None


def redact_url(url: str) -> str:
    """Hide the password of a storage URL, in ``user:password@`` and in ``?password=``.

    The password runs to the URL's last ``@``, whatever it holds; the query's ``password``,
    ``passwd`` and ``pwd`` values are hidden too. Then what SQLAlchemy's ``make_url`` reads as
    the password (what the driver sends) is checked to be gone, in every spelling: the URL is
    cut where nbtune reads the password, the check is made with what the driver would read.

    Example:
        >>> redact_url("postgresql://alice:s3cret@db.example:5432/study")
        'postgresql://alice:***@db.example:5432/study'
        >>> redact_url("postgresql://alice:a?b#c@db/study")
        'postgresql://alice:***@db/study'
        >>> redact_url("mysql+pymysql://bob@db/test?password=hunter2&charset=utf8mb4")
        'mysql+pymysql://bob@db/test?password=***&charset=utf8mb4'
        >>> redact_url("sqlite:///x.db")
        'sqlite:///x.db'

    """
    if url.lower().startswith("sqlite:///"):
        return url  # a file path: no user, no password
    text = url
    match = _PASSWORD_IN_USERINFO.match(text)
    rest_from = 0
    if match:
        text = match.group(1) + ":***@" + text[match.end() :]
        rest_from = len(match.group(1)) + len(":***@")
    head, qmark, query = text[rest_from:].partition("?")
    if qmark:
        text = text[:rest_from] + head + qmark + _PASSWORD_IN_QUERY.sub(r"\1***", query)
    # The net under the cut: nothing the driver would take for a password survives.
    return _hide(text, _unwritten(_parsed_passwords(url), _written_passwords(url)))


def _written_passwords(url: str) -> list[str]:
    """The passwords of ``url`` as nbtune cuts them out (userinfo to the last ``@``, query)."""
    written: list[str] = []
    match = _PASSWORD_IN_USERINFO.match(url)
    if match and match.group(2):
        written.append(match.group(2))
    _, _, query = url.partition("?")
    written += [m.group(2) for m in _PASSWORD_IN_QUERY.finditer(query) if m.group(2)]
    return written


def _unwritten(parsed: Sequence[str], written: Sequence[str]) -> list[str]:
    """SQLAlchemy's passwords that are not part of one nbtune cut out already.

    They differ only for a password with a raw ``@``, where SQLAlchemy reads a piece of it
    (perhaps one letter, which must not be scrubbed from every word).
    """
    known = [*written, *(urllib.parse.unquote(w) for w in written)]
    return [p for p in parsed if not any(p in w for w in known)]


def _parsed_passwords(url: str) -> list[str]:
    """The passwords SQLAlchemy reads in ``url`` (userinfo and query), decoded."""
    parsed = _parsed_url(url)
    if parsed is None:
        return []
    found = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if key.lower() in _PASSWORD_KEYS:
            found += [value] if isinstance(value, str) else list(value)
    return [str(p) for p in found if p]


def url_passwords(url: str) -> list[str]:
    """Every spelling of the password(s) of a storage URL that must never be printed.

    The password as written, decoded and percent-encoded; as SQLAlchemy reads it (which differs
    when it holds a raw ``@``); and the pieces of a password with a raw ``@`` (a driver that took
    the part after it for the host name prints that part). Longest first; empty if none.

    Example:
        >>> url_passwords("postgresql://alice:p%40ss@db/study")
        ['p%40ss', 'p@ss']
        >>> url_passwords("sqlite:///x.db")
        []

    """
    if url.lower().startswith("sqlite:///"):
        return []
    written = _written_passwords(url)
    written += _unwritten(_parsed_passwords(url), written)
    found: list[str] = []
    for password in written:
        decoded = urllib.parse.unquote(password)
        found += [password, decoded]
        found += [urllib.parse.quote(decoded, safe=""), urllib.parse.quote_plus(decoded)]
        for piece in re.split(r"[@]", password) + re.split(r"[@]", decoded):
            if len(piece) >= _MIN_FRAGMENT:
                found.append(piece)
    unique = list(dict.fromkeys(p for p in found if p))
    return sorted(unique, key=len, reverse=True)


def scrub(text: str, url: str | None) -> str:
    """Replace every password of ``url`` in ``text`` with ``***`` (for messages that embed it).

    Example:
        >>> scrub("cannot connect to u:pw1@db", "postgresql://u:pw1@db/x")
        'cannot connect to u:***@db'
        >>> scrub('could not translate host name "ngPw@db"', "postgresql://u:Wr@ngPw@db/x")
        'could not translate host name "***@db"'

    """
    return _hide(text, url_passwords(url or ""))


def _hide(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret != "***":
            text = text.replace(secret, "***")
    return text


def check_url_password(url: str) -> None:
    """Refuse a URL whose password holds a raw ``@``: the driver would get part of it as host.

    SQLAlchemy ends the password at its first ``@``; with ``user:Wr@ngPw@host`` it connects
    to the host ``ngPw@host`` with the password ``Wr``, and the driver's error then prints
    ``ngPw``. An ``@`` after the one that ends the password is refused before anything connects.

    Raises:
        ConfigError: Naming the fix (``%40``), the password hidden.

    Example:
        >>> check_url_password("postgresql://u:a%40b@db/x")
        >>> check_url_password("postgresql://u:a@b@db/x")
        Traceback (most recent call last):
        ...
        nbtune._errors.ConfigError: the password in the storage URL postgresql://u:***@db/x ...

    """
    if url.lower().startswith("sqlite:///"):
        return
    match = _PASSWORD_IN_USERINFO.match(url)
    # The password as nbtune cuts it runs to the last "@": holding one, it is cut differently
    # from SQLAlchemy's (or SQLAlchemy cannot read the rest, and says so with a piece of it).
    if match is not None and "@" in match.group(2):
        raise ConfigError(
            f"the password in the storage URL {redact_url(url)} holds a raw '@' (or an '@' "
            "follows it): the database driver would take part of the password for the host. "
            "Percent-encode it: '@' as %40, '%' as %25 (urllib.parse.quote(password, safe=''))."
        )


def describe_storage(storage: str | os.PathLike[str] | BaseStorage) -> str:
    """A printable name for a storage, password hidden: its URL, journal path, or class.

    Example:
        >>> describe_storage("postgresql://u:pw@localhost/db")
        'postgresql://u:***@localhost/db'
        >>> describe_storage(optuna.storages.InMemoryStorage())
        'InMemoryStorage'

    """
    if isinstance(storage, (str, os.PathLike)):
        return redact_url(os.fspath(storage))
    rdb = _optuna.rdb_storage(storage)  # Optuna's cache wraps RDB storages
    if rdb is not None:
        return redact_url(str(rdb.url))
    path = _optuna.journal_file_path(storage)
    return path if path is not None else type(storage).__name__


def resolve_storage_url(url: str) -> str:
    """Make a SQLite URL absolute and pick an installed MySQL or PostgreSQL driver.

    ``mysql://`` means the ``mysqlclient`` driver, which has no Linux wheels: PyMySQL is used
    when it is missing. ``postgresql://`` means psycopg 3 since SQLAlchemy 2.1: psycopg2 is used
    when only it is installed. ``postgres://`` (Heroku's spelling) means ``postgresql://``.

    Example:
        >>> resolve_storage_url("sqlite:///study.db")  # relative to the current folder
        'sqlite:///.../study.db'
        >>> resolve_storage_url("postgresql+psycopg2://u@db/x")
        'postgresql+psycopg2://u@db/x'

    """
    if url.startswith("sqlite:///") and url not in ("sqlite:///:memory:",):
        path = url[len("sqlite:///") :]
        if path and not path.startswith(":"):
            return "sqlite:///" + str(Path(path).expanduser().resolve())
    if url.startswith("mysql://") and not _installed("MySQLdb") and _installed("pymysql"):
        return "mysql+pymysql://" + url[len("mysql://") :]
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://") and not _installed("psycopg") and _installed("psycopg2"):
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


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
    retry_seconds: float = DEFAULT_RETRY_SECONDS,
) -> BaseStorage:
    """Open a storage to run a study in, given as a URL, a journal-file path, or a storage object.

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
        retry_seconds: How long each storage call keeps retrying while the database is
            unreachable or locked (relational storages). Opening does not retry: a wrong URL
            or password fails at once.

    Returns:
        The storage.

    Raises:
        ValueError: For an unknown URL scheme, a missing driver, or a missing file with
            ``must_exist``.
        StorageUnavailableError: When the database cannot be reached (the message has no
            password).

    """
    if storage is None:
        storage = DEFAULT_STORAGE
    if isinstance(storage, BaseStorage):
        return storage
    text = os.fspath(storage)
    if "://" not in text:
        path = _journal_path(text)
        if must_exist and not path.exists():
            raise ValueError(f"journal file {path} does not exist; check the path.")
        return _open_journal(path)
    check_url_password(text)
    url = resolve_storage_url(text)
    path = sqlite_path(url)
    if path is not None and must_exist and not path.exists():
        raise ValueError(
            f"SQLite file {path} does not exist: a worker joins an existing study. "
            "Check the path (relative paths are resolved from the current directory)."
        )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The heartbeat arguments are marked experimental since Optuna 2.9; nbtune relies on them.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = (
            RetryStaleTrial(max_retry=max_retry)
            if heartbeat_interval is not None and max_retry != 0
            else None
        )
        try:
            rdb = ResilientRDBStorage(
                url,
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=callback,
                retry_seconds=retry_seconds,
            )
        except ImportError:
            raise ValueError(
                f"no database driver for {redact_url(text)}: install psycopg 3 for "
                "postgresql:// (pip install 'nbtune[postgres]') or PyMySQL for mysql:// "
                "(pip install 'nbtune[mysql]')."
            ) from None
        except sqlalchemy.exc.DBAPIError as exc:
            # Opening does not retry: a wrong host, database or password should fail now.
            raise StorageUnavailableError(
                f"cannot open {redact_url(text)}: {scrub(_short_error(exc), url)}"
            ) from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            raise ValueError(
                f"invalid storage URL {redact_url(text)}: {scrub(_short_error(exc), url)}"
            ) from None
    if path is not None:
        _enable_wal(rdb)
        _begin_transactions_at_once(rdb.engine)
    return rdb


def open_storage_for_reading(storage: str | os.PathLike[str] | BaseStorage) -> BaseStorage:
    """Open a storage to read a study from, refusing to create files that do not exist.

    Unlike :func:`open_storage`, nothing here writes: no heartbeat, no retried calls, no WAL
    switch or locking transactions on SQLite, no parent folder created. The study view and the
    widget read this way while workers write.

    Args:
        storage: An Optuna storage object (returned as is), a database URL (``sqlite:///f.db``,
            ``postgresql+psycopg2://...``, ``mysql+pymysql://...``), or the path of an Optuna
            journal file (ending in ``.log``, ``.jsonl`` or ``.journal``).

    Returns:
        The storage: an :class:`~optuna.storages.RDBStorage` for URLs (the view does its own
        caching), a :class:`~optuna.storages.JournalStorage` for journal files.

    Raises:
        FileNotFoundError: The SQLite or journal file does not exist.
        ValueError: The string is neither a URL nor a journal file path.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "study.log"
        >>> open_storage_for_reading(path)
        Traceback (most recent call last):
        ...
        FileNotFoundError: journal file .../study.log does not exist
        >>> path.touch()
        >>> type(open_storage_for_reading(path)).__name__
        'JournalStorage'

    """
    if isinstance(storage, BaseStorage):
        return storage
    text = os.fspath(storage)
    if "://" not in text:
        path = _journal_path(text)
        if not path.exists():
            raise FileNotFoundError(f"journal file {path} does not exist")
        return _open_journal(path)
    check_url_password(text)
    url = resolve_storage_url(text)  # postgresql:// and mysql:// with installed drivers
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"SQLite file {path} does not exist")
    try:
        return RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except sqlalchemy.exc.DBAPIError as exc:
        # Reading retries nothing: a storage that cannot be opened is said at once, in one line.
        reason = scrub(_short_error(exc), url)
        raise StorageUnavailableError(
            f"cannot open the storage {redact_url(url)}: {reason}{_storage_hint(reason)}"
        ) from None
    except Exception as exc:
        # A reader fails at once (nothing to ride out yet), in one line, never with a password.
        raise StorageUnavailableError(
            f"cannot open {redact_url(url)}: {scrub(_short_error(exc), url)}"
        ) from None


def _journal_path(text: str) -> Path:
    """The absolute path of a journal file, or ValueError for a string that names no storage."""
    if not text.endswith(JOURNAL_SUFFIXES):
        raise ValueError(
            f"storage {redact_url(text)!r} is neither a database URL (sqlite:///file.db, "
            "postgresql://..., mysql://...) nor a journal file path ending in .log, .jsonl or "
            ".journal."
        )
    return Path(text).expanduser().resolve()


def _open_journal(path: Path) -> JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments for reading and writing ``url``."""
    if url.startswith("sqlite:"):
        return {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT}}
    # Survive a database restart or a dropped connection between two polls.
    return {"pool_pre_ping": True}


def _enable_wal(storage: RDBStorage) -> None:
    # WAL is a property of the database file: setting it once is enough, and it lets readers
    # (the live view) work while a writer commits. It roughly doubled throughput here. A file
    # system without shared memory (some network mounts) refuses it: SQLite then stays in its
    # rollback journal, slower but correct.
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    # Pooled connections opened before (creating the tables) report their old mode until they
    # reread the file header: start afresh, so every connection reports (and uses) WAL.
    storage.engine.dispose()


class RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a stale trial, minus what belonged to the dead run.

    The retry copies the failed trial's attributes; nbtune's heartbeat, owner, failure kind,
    reason and creation token describe the dead run, and an inherited heartbeat would make the
    retry look stale (or alive) before it ran. The retry records the number of the trial it
    repeats (``nbtune:retry_of``).
    """

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Queue a copy of ``trial`` to run again (at most ``max_retry`` times)."""
        trial = copy.copy(trial)
        trial.system_attrs = {
            k: v
            for k, v in trial.system_attrs.items()
            if k not in (_attrs.HEARTBEAT, _attrs.FAIL_KIND, _attrs.CREATE_TOKEN, _attrs.OWNER)
        }
        # Why the dead run failed is not the retry's story; which trial it repeats is.
        trial.user_attrs = {
            **{
                k: v
                for k, v in trial.user_attrs.items()
                if k not in (_attrs.FAIL_REASON, _attrs.STDERR_TAIL, _attrs.DATA_WARNINGS)
            },
            _attrs.RETRY_OF: trial.number,
        }
        super().__call__(study, trial)


def _begin_transactions_at_once(engine: sqlalchemy.engine.Engine) -> None:
    """Make each SQLite transaction take the write lock at its start, reads included.

    Python's sqlite3 module begins a transaction only at the first INSERT/UPDATE/DELETE: the
    SELECT before it runs on its own, so two processes could both read a trial as WAITING and
    both set it RUNNING (4 processes popping 200 reservations claimed 256). ``BEGIN IMMEDIATE``
    (emitted by us, SQLAlchemy's documented recipe) makes read-then-write atomic and makes
    concurrent transactions wait for each other under the busy timeout instead of failing with
    "database is locked" when a read turns into a write. Readers outside nbtune's workers (the
    live view) are not held up: in WAL mode they never wait for a writer.

    ``synchronous=NORMAL`` is SQLite's advice for WAL: no fsync at each commit, and a database
    that stays consistent through a crash; only the last commits before a power cut can be lost.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN, off
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _short_error(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's SQL and background link.

    Optuna wraps errors raised while committing in a ``StorageInternalError`` whose message
    blames invalid data: the database's own error, its cause, says what happened.
    """
    current: BaseException | None = exc
    for _ in range(5):
        if current is None or isinstance(current, sqlalchemy.exc.DBAPIError):
            break
        current = current.__cause__ or current.__context__
    root = exc if current is None else current
    text = str(getattr(root, "orig", None) or root).strip()
    return text.splitlines()[0] if text else type(root).__name__


# --------------------------------------------------------------------------------------------
# Surviving an outage
# --------------------------------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """Whether a storage error is worth retrying: connection lost or refused, database locked.

    SQLAlchemy reports those as ``OperationalError`` or ``InterfaceError`` (or any DBAPI error
    that invalidated its connection); Optuna wraps errors raised while committing in
    ``StorageInternalError``, with the database error as its cause.
    """
    if _PERMANENT.search(str(exc)):
        return False  # a wrong database name or password does not fix itself: say so at once
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(
            current,
            (
                sqlalchemy.exc.OperationalError,
                sqlalchemy.exc.InterfaceError,
                sqlalchemy.exc.PendingRollbackError,
                sqlalchemy.exc.TimeoutError,  # the connection pool is exhausted
            ),
        ):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if not isinstance(current, (optuna.exceptions.StorageInternalError,)):
            return False
        current = current.__cause__ or current.__context__
        seen += 1
    return False


# Connection errors that waiting does not cure (PostgreSQL, then MySQL/MariaDB wording); a
# locked account (MariaDB's 4151) or a database refusing connections for a while is retried.
_PERMANENT = re.compile(
    r"database \S+ does not exist|role \S+ does not exist|password authentication failed"
    r"|no password supplied|Access denied for user|Unknown database"
)

# Connection errors that mean nothing answers at that address, or a SQLite file that cannot be
# opened or written (PostgreSQL, MySQL/MariaDB and SQLite wording). At the first connection
# they are a wrong URL, a server that is not running or a read-only folder far more often than
# an outage: said at once. Anything else (a server refusing connections for a while, a killed
# session) is waited for from the start, and every transient error once a study was reached.
_UNREACHABLE = re.compile(
    r"connection refused|could not translate host name|failed to resolve host"
    r"|name or service not known|nodename nor servname|unknown mysql server host"
    r"|no route to host|network is unreachable|timeout expired|timed out"
    r"|unable to open database file|readonly database|disk i/o error",
    re.IGNORECASE,
)

_in_call = threading.local()  # one retry loop per thread: nested storage calls do not retry


def _retried(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> T:
        return self._retry(lambda retried: method(self, *args, **kwargs))

    return wrapper


class ResilientRDBStorage(_optuna.RDBStorageCreationHooks):
    """Optuna's relational storage, with every call retried while the database is unreachable.

    A lost or refused connection, a server restart, a killed session, or SQLite's "database is
    locked" make a call wait and try again (exponential backoff up to 2 s, 0.25 s for a lock,
    with jitter so that many workers do not reconnect in step) for up to ``retry_seconds``;
    then :class:`StorageUnavailableError` is raised. One line on standard error tells when an outage
    lasts over a second, and one more when the database is back.

    A retried write may have been committed by the attempt whose answer was lost, so the writes
    that are not naturally repeatable are made so: finishing a trial that is already finished
    the same way succeeds, and a trial created from a template carries a token that a retry
    looks for before creating it again. (Setting attributes, parameters, intermediate values
    and heartbeats are upserts, repeatable as they are.) A claim of a waiting trial whose
    answer was lost reports the claim as lost: the trial then runs nowhere, and
    :func:`fail_stale_trials` gives it back after the grace period.

    Args:
        url: The database URL.
        retry_seconds: How long a call keeps retrying.
        **kwargs: :class:`optuna.storages.RDBStorage` arguments.

    """

    def __init__(
        self, url: str, *, retry_seconds: float = DEFAULT_RETRY_SECONDS, **kwargs: Any
    ) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self._tokens_tried: set[str] = set()  # creations attempted and not yet returned
        #: ``time.monotonic()`` when the last outage (a call retried, not for a lock) ended.
        self.recovered_at: float | None = None
        #: Whether the database answered once: until then, nothing answering is said at once.
        self.reached = False
        # Connecting, creating the tables and checking the schema version ride out a server that
        # refuses connections for a while (a worker that starts while the database restarts
        # waits for it); a server that is not there at all is said at once.
        self._retry(lambda _: RDBStorage.__init__(self, url, **kwargs))
        self.reached = True

    def retried(self, read: Callable[[], T]) -> T:
        """Run a read of this database with the retries of the storage's own calls."""
        return self._retry(lambda _: read())

    def _retry(self, operation: Callable[[bool], T]) -> T:
        """Run ``operation(retried)`` until it succeeds, retrying transient database errors."""
        if getattr(_in_call, "active", False):
            return operation(False)  # the outermost call owns the retry loop
        _in_call.active = True
        try:
            started = time.monotonic()
            delay = 0.05
            retried = False
            told = False
            locked = False
            while True:
                try:
                    result = operation(retried)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    reason = scrub(_short_error(exc), str(self.url))
                    if not self.reached and _UNREACHABLE.search(reason):
                        raise StorageUnavailableError(
                            f"cannot reach the storage {redact_url(str(self.url))}: {reason}"
                            f"{_storage_hint(reason)}"
                        ) from None
                    waited = time.monotonic() - started
                    if waited >= self.retry_seconds:
                        raise StorageUnavailableError(
                            f"the storage {redact_url(str(self.url))} stayed unreachable for "
                            f"{waited:.0f} s (retry_seconds): "
                            f"{scrub(_short_error(exc), str(self.url))}"
                        ) from None
                    locked = "locked" in reason
                    if not told and waited >= 1.0:
                        told = True
                        _say(
                            f"nbtune: storage {redact_url(str(self.url))} unreachable or busy "
                            f"({reason}); retrying for up to {self.retry_seconds:.0f} s"
                        )
                    engine = getattr(self, "engine", None)  # none yet while connecting
                    if not locked and engine is not None:
                        # The pool may hold connections to a server that restarted: drop them.
                        engine.dispose()
                    time.sleep(min(delay, self.retry_seconds - waited) * random.uniform(0.5, 1.0))
                    # A lock passes in milliseconds; a server takes seconds to come back.
                    delay = min(2 * delay, 0.25 if locked else 2.0)
                    retried = True
                    continue
                if retried and not locked:  # an outage, not a passing lock
                    self.recovered_at = time.monotonic()
                if told:
                    _say(
                        f"nbtune: storage reachable again after {time.monotonic() - started:.1f} s"
                    )
                return result
        finally:
            _in_call.active = False

    # Writes that must be repeatable -----------------------------------------------------------
    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Set a trial's state; finishing it again the same way after a lost answer succeeds."""

        def operation(retried: bool) -> bool:
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                if retried and state.is_finished():
                    done = RDBStorage.get_trial(self, trial_id)
                    same_values = values is None or done.values == [float(v) for v in values]
                    if done.state == state and same_values:
                        return True  # our earlier attempt committed; its answer was lost
                raise

        return self._retry(operation)

    def create_trial_with(
        self,
        study_id: int,
        template_trial: FrozenTrial | None,
        create: Callable[[FrozenTrial | None], FrozenTrial],
    ) -> FrozenTrial:
        """Create a trial; a template's copy carries a token so a retry never creates two."""
        if template_trial is None:
            return self._retry(lambda _: create(None))
        token = uuid.uuid4().hex
        template = copy.copy(template_trial)
        template.system_attrs = {**template_trial.system_attrs, _attrs.CREATE_TOKEN: token}
        try:
            return self._retry(lambda _: create(template))
        finally:
            self._tokens_tried.discard(token)

    def find_created_trial(
        self, study_id: int, template_trial: FrozenTrial | None, session: Any
    ) -> Any:
        """The trial an earlier attempt of this creation committed, or ``None``."""
        # Optuna retries a failed creation itself (and so may we): from the second attempt on,
        # look for the trial a previous attempt committed, under the study's row lock.
        attrs = {} if template_trial is None else template_trial.system_attrs
        token = attrs.get(_attrs.CREATE_TOKEN)
        if token is None:
            return None
        if token in self._tokens_tried:
            existing = _optuna.find_trial_row_by_system_attr(
                session, study_id, _attrs.CREATE_TOKEN, json.dumps(token)
            )
            if existing is not None:
                return existing
        self._tokens_tried.add(token)
        return None


# Every other call the study, the cache and the heartbeat make is retried as it is, the private
# ones Optuna calls directly included (wrapped by nbtune._optuna). Methods that only delegate to
# a retried one (create_new_trial, set_trial_param, get_all_trials) are left alone: their inner
# call retries.
for _name in (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "get_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_best_trial",
    "record_heartbeat",
):
    setattr(ResilientRDBStorage, _name, _retried(getattr(RDBStorage, _name)))
del _name
_optuna.wrap_private_rdb_calls(ResilientRDBStorage, _retried)


def _storage_hint(reason: str) -> str:
    """What to check, for the common first-connection failures."""
    low = reason.lower()
    if "unable to open database file" in low or "readonly database" in low:
        return " (is the SQLite file's folder writable, and its disk not full?)"
    if "disk i/o error" in low or "database or disk is full" in low:
        return " (is the disk holding the SQLite file full?)"
    if "refused" in low or "resolve host" in low or "translate host" in low or "known" in low:
        return " (is the server running, and the host and port right?)"
    return ""


def riding_out(storage: BaseStorage, read: Callable[[], T]) -> T:
    """Run ``read`` with the storage's retries: a study already reached rides out an outage.

    For readers that query the storage's database themselves (the study view's SQL reader).
    """
    backend = _optuna.rdb_storage(storage)
    if isinstance(backend, ResilientRDBStorage) and backend.reached:
        return backend.retried(read)
    return read()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def uses_optuna_heartbeat(storage: BaseStorage) -> bool:
    """Whether Optuna's own heartbeat covers this storage."""
    return _optuna.uses_optuna_heartbeat(storage)


def record_heartbeat(study: optuna.Study, trial_id: int) -> None:
    """Record that a running trial is alive: Optuna's heartbeat where it exists, and nbtune's.

    nbtune's own (a trial system attribute) works on every storage and lets a process see that
    another one is still working on the study. The trial is also remembered as this process's
    own: :func:`fail_stale_trials` called here never fails it, however late its heartbeat.
    """
    storage = _optuna.study_storage(study)
    _own_trials.add((_storage_key(storage), trial_id))
    if uses_optuna_heartbeat(storage):
        storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
    storage.set_trial_system_attr(trial_id, _attrs.HEARTBEAT, time.time())


def record_owner(study: optuna.Study, trial_id: int) -> None:
    """Record which process on which machine runs a trial.

    A process restarted on the same machine (a kernel restart, a worker started again after a
    kill) then sees at once that the trial's process is gone, instead of waiting for its
    heartbeat to go stale; a view shows where a running trial runs.
    """
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": _started(os.getpid())}
    _optuna.study_storage(study).set_trial_system_attr(trial_id, _attrs.OWNER, owner)


def _started(pid: int) -> int | None:
    """When a process started (clock ticks since boot, Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
        return int(fields[19])  # starttime, the 22nd field of stat(5)
    except (OSError, IndexError, ValueError):
        return None


def _died_here(trial: FrozenTrial) -> bool:
    """Whether the trial's process ran on this machine and is gone (or its pid was reused)."""
    owner = trial.system_attrs.get(_attrs.OWNER)
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    if not os.path.isdir("/proc"):  # no way to tell a reused pid: only a missing process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    started = _started(pid)
    return started is None or started != owner.get("since")


# Trials whose heartbeat this process records, by storage: alive as long as this process is.
_own_trials: set[tuple[str, int]] = set()


def forget_trial(study: optuna.Study, trial_id: int) -> None:
    """Stop treating a trial as this process's own (another process ended it)."""
    _own_trials.discard((_storage_key(_optuna.study_storage(study)), trial_id))


def _storage_key(storage: BaseStorage) -> str:
    """Tells storages apart: by URL or journal path, else by object (an in-memory storage)."""
    name = describe_storage(storage)
    return f"{name}@{id(storage)}" if name == type(storage).__name__ else name


def fail_stale_trials(
    study: optuna.Study, grace_period: float, max_retry: int | None = 3
) -> list[int]:
    """Fail running trials whose process died, and queue them again.

    A running trial is stale when its heartbeat is older than ``grace_period`` seconds: Optuna's
    heartbeat on relational storages (timed by the database's clock), nbtune's
    ``nbtune:heartbeat`` elsewhere (the journal file). A trial taken from the queue (a
    reservation, a retry or an enqueued configuration) that has been running for
    ``grace_period`` seconds without any heartbeat is stale too: its process died between
    taking it and its first heartbeat, or lost the answer to its claim in a dropped connection.
    Stale trials are failed (``nbtune:fail_kind`` ``"stale"``) and queued again, at most
    ``max_retry`` times.

    Never failed here: this process's own trials (it is alive), and anything while the storage
    has been back from an outage for less than ``grace_period`` (nobody could beat during it:
    every process gets a grace period to catch up before anyone is judged dead).

    Returns:
        Numbers of the trials failed here.

    """
    storage = _optuna.study_storage(study)
    backend = _optuna.cached_storage_backend(storage) or storage
    recovered = getattr(backend, "recovered_at", None)
    if recovered is not None and time.monotonic() - recovered < grace_period:
        return []
    key = _storage_key(storage)
    optuna_heartbeat = uses_optuna_heartbeat(storage)
    stale_ids: set[int] = set()
    if optuna_heartbeat:
        stale_ids = set(_optuna.stale_trial_ids(storage, _optuna.study_id(study)))
    now = time.time()
    local_now = datetime.datetime.now()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if (key, _optuna.trial_id(trial)) in _own_trials:
            continue
        beat = trial.system_attrs.get(_attrs.HEARTBEAT)
        started = trial.datetime_start
        if beat is not None and started is not None and float(beat) < started.timestamp() - 1:
            beat = None  # inherited from the failed trial this one retries (older nbtune)
        if _died_here(trial) or (optuna_heartbeat and _optuna.trial_id(trial) in stale_ids):
            pass
        elif beat is None:
            queued = QUEUED_MARKS & trial.system_attrs.keys()
            if not queued or started is None:
                continue  # not nbtune's: some other tool runs it
            if (local_now - started).total_seconds() <= grace_period:
                continue
        elif optuna_heartbeat or now - float(beat) <= grace_period:
            continue
        if _fail_and_requeue(study, trial, max_retry):
            failed.append(trial.number)
    return failed


def stale_waits(study: optuna.Study, grace_period: float) -> list[tuple[int, float, float]]:
    """The running trials of other nbtune processes, and how long until each counts as stale.

    For a process that waits on them (its own work is done, or a re-run after a crash): which
    trials, how long since their last heartbeat (or since they were taken from the queue), and
    how many seconds are left until :func:`fail_stale_trials` fails and retries them if no
    heartbeat comes. Ages use nbtune's own heartbeat (wall clock), which every storage has.

    Returns:
        ``(trial number, seconds since the last sign of life, seconds until stale)``, by number.
    """
    storage = _optuna.study_storage(study)
    key = _storage_key(storage)
    now = time.time()
    waits = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if (key, _optuna.trial_id(trial)) in _own_trials:
            continue
        beat = trial.system_attrs.get(_attrs.HEARTBEAT)
        started = trial.datetime_start
        if beat is not None:
            last = float(beat)
        elif QUEUED_MARKS & trial.system_attrs.keys() and started is not None:
            last = started.timestamp()
        else:
            continue  # not nbtune's: nobody waits for it
        age = max(0.0, now - last)
        waits.append((trial.number, age, max(0.0, grace_period - age)))
    return sorted(waits)


def _fail_and_requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int | None) -> bool:
    storage = _optuna.study_storage(study)
    trial_id = _optuna.trial_id(trial)
    try:
        # The kind first: a finished trial takes no more attributes. Should the trial end
        # meanwhile, its own state wins (a complete trial counts whatever its kind says).
        storage.set_trial_system_attr(trial_id, _attrs.FAIL_KIND, "stale")
        storage.set_trial_user_attr(trial_id, _attrs.FAIL_REASON, STALE_REASON)
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another process got there first
    if max_retry != 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryStaleTrial(max_retry=max_retry)
        retry(study, storage.get_trial(trial_id))
        # Link the retry to the trial it repeats, by number, for the views.
        for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if waiting.system_attrs.get(_attrs.OPTUNA_FAILED_TRIAL) == trial_id:
                storage.set_trial_user_attr(
                    _optuna.trial_id(waiting), _attrs.RETRY_OF, trial.number
                )
    return True


#: Why a trial whose process died was failed (it runs again as another trial).
STALE_REASON = "its process stopped (kernel restart or kill): it runs again as a new trial"
