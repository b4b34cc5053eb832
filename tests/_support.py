"""Helpers shared by the tests (import them from here, not from conftest: the notebooks have a
conftest.py of their own, and two modules named ``conftest`` would shadow each other)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TOY = Path(__file__).parent / "scripts" / "toy_train.py"
IN_CI = os.environ.get("CI") == "true"


def skip_or_fail(reason: str) -> None:
    """Skip locally, but fail under CI=true: CI must not skip what the product promises."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def postgres_admin() -> Any:
    """An autocommit connection to the PostgreSQL server at 127.0.0.1:5432, as its superuser.

    With psycopg 3 (what ``pip install -e ".[postgres]"`` installs) or else psycopg2; skipped
    locally (failed under CI=true) when neither is installed or the server cannot be reached.
    """
    try:
        import psycopg as driver

        # Client-side parameters, as psycopg2's: CREATE ROLE ... PASSWORD %s takes none else.
        options: dict[str, Any] = {"cursor_factory": driver.ClientCursor}
    except ImportError:
        try:
            import psycopg2 as driver  # type: ignore[no-redef]

            options = {}
        except ImportError:
            skip_or_fail("no PostgreSQL driver is installed (pip install -e '.[postgres]')")
    error: Exception | None = None
    for user in ("postgres", "root"):
        try:
            admin = driver.connect(
                host="127.0.0.1",
                port=5432,
                user=user,
                dbname="postgres",
                connect_timeout=3,
                **options,
            )
        except driver.OperationalError as exc:
            error = exc
            continue
        admin.autocommit = True
        return admin
    skip_or_fail(f"PostgreSQL at 127.0.0.1:5432 unreachable: {error}")


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``condition`` every 50 ms until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


@contextlib.contextmanager
def postgres_database(prefix: str, driver: str = "") -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped after; yields its URL.

    Args:
        prefix: The start of the database's name (the rest is random).
        driver: ``"+psycopg2"`` for a URL that names that driver; default a plain
            ``postgresql://`` URL (psycopg 3).
    """
    admin = postgres_admin()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql{driver}://{admin.info.user}@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    """GET a URL and parse its JSON body."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@contextlib.contextmanager
def serve_dashboard(storage: str, log_path: Path) -> Iterator[str]:
    """Serve ``storage`` with optuna-dashboard on 127.0.0.1; yields its base URL once it answers.

    Fails the test with the dashboard's output when it does not serve within two minutes.
    """
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    exe = exe or shutil.which("optuna-dashboard")
    command = (
        [exe] if exe else [sys.executable, "-c", "from optuna_dashboard._cli import main; main()"]
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*command, storage, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    get_json(f"{base}/api/studies")
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        pytest.fail(
                            f"optuna-dashboard did not serve: {log_path.read_text()[-2000:]}"
                        )
                    time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def assert_exact(study: Any, total: int) -> list[Any]:
    """The budget held exactly: ``total`` finished, nothing left running or waiting, every
    finished trial complete. Returns the trials."""
    from optuna.trial import TrialState

    from nbtune._budget import budget_state

    trials = study.get_trials(deepcopy=False)
    state = budget_state(study)
    assert (state.total, state.finished, state.running, state.waiting) == (total, total, 0, 0), [
        (t.number, t.state.name, t.system_attrs) for t in trials
    ]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == total
    return trials


def dispose(*objects: Any) -> None:
    """Close the database connections of studies or Tuners before their database is dropped."""
    from nbtune._storage import ResilientRDBStorage

    for obj in objects:
        storage = getattr(obj, "storage", None) or getattr(obj, "_storage", None)
        backend = getattr(storage, "_backend", storage)
        if isinstance(backend, ResilientRDBStorage):
            backend.engine.dispose()
