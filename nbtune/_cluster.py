"""Running a study on a Dask cluster: one nbtune worker on each Dask worker.

A cluster is one more place a :class:`~nbtune.TuningSession` runs work. The session reserves the
budget in the study's storage as always, then :class:`ClusterRun` places one long task on each
Dask worker (:func:`work_on_dask_worker`): it joins the study exactly as ``nbtune worker`` does
(``Tuner.from_study(...).session(None).run()``), with as many slots as the Dask worker has
threads (or its ``nbtune_slots`` resource), runs experiments as subprocesses on that machine and
reports through the storage, so the budget, pruning and the live view work unchanged.

* Stop and pause travel through two ``distributed.Event`` values that a thread in each task polls
  (every 0.25 s): a stop ends the worker machine's experiments (their process groups) and fails
  their trials as interrupted, so nothing stays RUNNING.
* A task is never re-run blindly: it is pinned to its Dask worker (``workers=[address]``, no
  other worker allowed, ``retries=0``) and cancelled when that worker leaves. The trials of a
  worker killed mid-trial die with it (the experiment guard) and are failed as stale and retried
  by the nbtune workers still running, from the storage.
* Workers that join later (a nanny's restart, an adaptive ``SLURMCluster``) get a task too.
* What each worker runs comes back as Dask events (``Worker.log_event``), told to the session's
  subscribers as ``"trial"``, ``"experiment"`` and ``"workers"`` events.
* A storage the cluster cannot reach is refused before anything runs (:func:`storage_problem`):
  an in-memory storage, a SQLite or journal file the workers do not see, SQLite on other hosts,
  a ``localhost`` URL when workers run elsewhere.

``dask.distributed`` is imported here on first use only (``pip install "nbtune[cluster]"``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtune import _optuna
from nbtune._errors import ConfigError, TuningError
from nbtune._scheduler import RunSummary
from nbtune._storage import JOURNAL_SUFFIXES, redact_url, scrub, sqlite_path

#: The Dask worker resource that sets its slots (``dask worker --resources nbtune_slots=4``).
SLOTS_RESOURCE = "nbtune_slots"
#: Seconds between two polls of the stop and pause events on a worker.
POLL_SECONDS = 0.25
#: Seconds a worker goes on without reaching the scheduler before it stops its experiments.
SCHEDULER_LOST_SECONDS = 10.0
#: Seconds a stopped run waits for the workers to clean up before cancelling their tasks.
STOP_WAIT_SECONDS = 60.0
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}

Emit = Callable[..., None]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "cluster=: running on a Dask cluster needs dask.distributed; install it with "
            "pip install 'nbtune[cluster]'."
        ) from None
    return distributed


def check_cluster(cluster: Any) -> Any:
    """Refuse a ``cluster`` value that names no Dask cluster (without connecting to it).

    Accepted: ``None``, a scheduler address (``"tcp://host:8786"``), a ``distributed.Client``,
    or a cluster object with a ``scheduler_address`` (``LocalCluster``, dask-jobqueue's
    ``SLURMCluster``, ...).
    """
    if cluster is None:
        return None
    if isinstance(cluster, str):
        if not cluster.strip():
            raise ConfigError("cluster: give a Dask scheduler address such as tcp://host:8786.")
        return cluster.strip()
    if hasattr(cluster, "submit") or hasattr(cluster, "scheduler_address"):
        return cluster
    raise ConfigError(
        "cluster must be a Dask scheduler address ('tcp://host:8786'), a distributed.Client or "
        f"a Dask cluster object (LocalCluster, SLURMCluster, ...); got {type(cluster).__name__}."
    )


def describe_cluster(cluster: Any) -> str:
    """A printable name of a cluster: its scheduler address."""
    if isinstance(cluster, str):
        return cluster
    for owner in (cluster, getattr(cluster, "scheduler", None)):
        address = getattr(owner, "scheduler_address", None) or getattr(owner, "address", None)
        if isinstance(address, str):
            return address
    return type(cluster).__name__


def _connect(cluster: Any) -> tuple[Any, bool]:
    """A ``Client`` for ``cluster``, and whether it was made here (then it is closed after)."""
    distributed = _distributed()
    if isinstance(cluster, distributed.Client):
        return cluster, False
    try:
        return distributed.Client(cluster, timeout=30, set_as_default=False), True
    except (OSError, TimeoutError) as exc:
        raise TuningError(
            f"cannot reach the Dask scheduler at {describe_cluster(cluster)}: {exc}. Start it "
            "(dask scheduler) or check the address."
        ) from None


# ----------------------------------------------------------------------------------------
# Can the cluster reach the storage?
# ----------------------------------------------------------------------------------------
def storage_address(storage: Any) -> str:
    """The storage as a string a process elsewhere can open: a URL or an absolute journal path.

    Raises:
        ConfigError: For a storage that lives in this process (``InMemoryStorage``).
    """
    if isinstance(storage, (str, os.PathLike)):
        text = os.fspath(storage)
        if "://" not in text:
            return str(Path(text).expanduser().resolve())
        path = sqlite_path(text)
        if path is not None:
            return "sqlite:///" + str(path.expanduser().resolve())
        return text
    rdb = _optuna.rdb_storage(storage)
    if rdb is not None:
        return str(rdb.url)
    path = _optuna.journal_file_path(storage)
    if path is not None:
        return path
    raise ConfigError(
        f"a {type(storage).__name__} lives in this process only, so Dask workers cannot reach "
        "the study: use a database (postgresql://...) or a journal file on a shared file system."
    )


def _url_host(url: str) -> str | None:
    """The host of a database URL (``""`` for a local socket), ``None`` for a file storage."""
    if "://" not in url or url.startswith("sqlite:"):
        return None
    import sqlalchemy.engine

    try:
        return sqlalchemy.engine.make_url(url).host or ""
    except Exception:
        return None


def probe_storage(address: str, study_name: str, marker: str | None, token: str) -> dict[str, Any]:
    """Run on each Dask worker (``client.run``): its host, and whether it sees the study.

    Args:
        address: The storage, as :func:`storage_address` gives it.
        study_name: The study the workers will join.
        marker: A file next to a SQLite or journal file holding ``token`` (``None`` for
            database servers): a worker sees the same file system when it reads the token.
        token: What the marker holds.
    """
    info: dict[str, Any] = {"host": socket.gethostname(), "problem": None}
    if marker is not None:
        try:
            seen = Path(marker).read_text() == token
        except OSError:
            seen = False
        if not seen:
            info["problem"] = f"does not see {Path(marker).parent} (another file system)"
        return info
    try:
        from nbtune._storage import open_storage_for_reading

        storage = open_storage_for_reading(address)
        try:
            storage.get_study_id_from_name(study_name)
        finally:
            engine = getattr(storage, "engine", None)
            if engine is not None:
                engine.dispose()  # no connection left open in the worker
    except KeyError:
        info["problem"] = f"reaches a database without study {study_name!r} (another server?)"
    except Exception as exc:
        info["problem"] = f"cannot open it: {scrub(str(exc), address)[:300]}"
    return info


def storage_problem(
    address: str, client_host: str, workers: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """Why the workers cannot work on a study in ``address``, with the fix; ``None`` if they can.

    Args:
        address: The storage (:func:`storage_address`).
        client_host: This machine's host name.
        workers: What :func:`probe_storage` said on each worker, by worker address.

    Example:
        >>> here = {"tcp://10.0.0.2:1": {"host": "node2", "problem": None}}
        >>> storage_problem("postgresql://u@localhost/db", "laptop", here)[:60]
        'postgresql://u@localhost/db names this machine, but Dask wor'
        >>> storage_problem("postgresql://u@db.lab/db", "laptop", here) is None
        True
    """
    shown = redact_url(address)
    elsewhere = sorted({w["host"] for w in workers.values() if w["host"] != client_host})
    host = _url_host(address)
    if host is not None and (host in _LOCAL_HOSTS or host.startswith("127.")) and elsewhere:
        fqdn = socket.getfqdn()
        return (
            f"{shown} names this machine, but Dask workers run on {', '.join(elsewhere)}: there "
            f"it would mean their own machine. Use an address they reach, such as this "
            f"machine's name ({fqdn}), in the storage URL."
        )
    if sqlite_path(address) is not None and elsewhere:
        return (
            f"{shown} is a SQLite file, and Dask workers run on other machines "
            f"({', '.join(elsewhere)}): SQLite's locks do not hold across machines (not even on "
            "a shared file system). Use a database server (postgresql://... or mysql://..., see "
            "'Running on many machines' in the README) or a journal file (study.log) on a file "
            "system every machine shares."
        )
    blind = sorted(
        f"{addr} on {w['host']} {w['problem']}" for addr, w in workers.items() if w["problem"]
    )
    if blind:
        kind = "database" if host is not None else "file"
        fix = (
            "Make the database reachable from the workers (its host, port and the workers' "
            "credentials, e.g. ~/.pgpass)"
            if host is not None
            else "Put the study on a file system every worker mounts at the same path, or use "
            "a database server (postgresql://...)"
        )
        return f"the Dask workers cannot reach the study's {kind} {shown}: " + (
            "; ".join(blind) + f". {fix}."
        )
    return None


def check_storage_reach(client: Any, address: str, study_name: str) -> None:
    """Ask every worker of ``client`` whether it reaches the study; refuse if one does not.

    Raises:
        ConfigError: Naming the workers that cannot, and the fix.
    """
    marker: Path | None = None
    token = uuid.uuid4().hex
    if sqlite_path(address) is not None or address.endswith(JOURNAL_SUFFIXES):
        file = sqlite_path(address) or Path(address)
        marker = file.parent / f".nbtune-cluster-probe-{token[:12]}"
        marker.write_text(token)
    try:
        workers = client.run(
            probe_storage, address, study_name, None if marker is None else str(marker), token
        )
    finally:
        if marker is not None:
            with contextlib.suppress(OSError):
                marker.unlink()
    problem = storage_problem(address, socket.gethostname(), workers)
    if problem is not None:
        raise ConfigError(problem)


# ----------------------------------------------------------------------------------------
# On each Dask worker
# ----------------------------------------------------------------------------------------
def live_workers(client: Any) -> dict[str, Any]:
    """The Dask workers the scheduler knows now, by address, asked of the scheduler itself.

    Not ``client.scheduler_info()``: that returns the client's cached identity, which the
    client's own periodic refresh (every 2 s) overwrites with a copy that lists no workers, so
    a call racing the refresh saw every worker gone and the run gave up on their experiments.
    """
    try:
        identity = client.sync(client.scheduler.identity, n_workers=-1)
    except TypeError:  # older distributed: identity() takes no argument and lists them all
        identity = client.sync(client.scheduler.identity)
    return dict(identity.get("workers") or {})


def worker_slots(worker: Any) -> int:
    """A Dask worker's slots: its ``nbtune_slots`` resource if it has one, else its threads."""
    state = getattr(worker, "state", worker)
    resources = getattr(state, "total_resources", None) or {}
    if SLOTS_RESOURCE in resources:
        return max(1, int(resources[SLOTS_RESOURCE]))
    return max(1, int(getattr(state, "nthreads", 1) or 1))


def work_on_dask_worker(
    storage: str,
    study_name: str,
    run_id: str,
    overrides: Mapping[str, Any],
    timeout: float | None,
) -> dict[str, int]:
    """The task each Dask worker runs: join the study as ``nbtune worker`` does, until done.

    Args:
        storage: The study's storage (a URL or a journal file path).
        study_name: The study.
        run_id: Names the stop and pause events of this run, and the topic of its reports.
        overrides: This worker's own config fields (``verbose``, ``runs_dir``, ...).
        timeout: Seconds after which it stops starting trials.

    Returns:
        How many trials it completed, pruned, failed and interrupted.
    """
    from distributed import Event, get_client, get_worker

    from nbtune._tuner import Tuner

    worker = get_worker()
    client = get_client()
    slots = int(overrides.get("n_slots") or worker_slots(worker))
    fields = {**overrides, "n_slots": slots, "cluster": None, "local_slots": 0}
    fields.setdefault("progress_bar", False)
    session = Tuner.from_study(storage, study_name, **fields).session(None, timeout=timeout)
    me = {"worker": worker.address, "host": socket.gethostname(), "slots": slots}
    running: dict[int, None] = {}
    lock = threading.Lock()

    def report(kind: str, **data: Any) -> None:
        with contextlib.suppress(Exception):  # a report lost never stops the work
            worker.log_event(run_id, {"kind": kind, **me, **data})

    def on_event(event: Any) -> None:
        if event.kind == "trial":
            with lock:
                if event.data["state"] == "started":
                    running[int(event.data["number"])] = None
                else:
                    running.pop(int(event.data["number"]), None)
                now = sorted(running)
            report("trial", **dict(event.data))
            report("worker", state="working", running=now)
        elif event.kind == "experiment":
            report("experiment", **dict(event.data))

    session.subscribe(on_event)
    stop, pause = threading.Event(), threading.Event()
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch,
        args=(
            worker,
            client,
            Event(f"{run_id}-stop", client),
            Event(f"{run_id}-pause", client),
            stop,
            pause,
        ),
        kwargs={"done": done, "log": lambda line: _say(line, report)},
        name="nbtune-dask-watch",
        daemon=True,
    )
    watcher.start()
    report("worker", state="working", running=[])
    try:
        summary = session.run(stop_event=stop, pause_event=pause)
    finally:
        done.set()
        watcher.join(5)
        report("worker", state="done", running=[])
    return {
        "complete": summary.complete,
        "pruned": summary.pruned,
        "failed": summary.failed,
        "interrupted": summary.interrupted,
    }


def _say(line: str, report: Callable[..., None]) -> None:
    """Tell a line in the Dask worker's log and to the process that drives the run."""
    print(f"nbtune: {line}", flush=True)
    report("log", line=line)


def _watch(
    worker: Any,
    client: Any,
    remote_stop: Any,
    remote_pause: Any,
    stop: threading.Event,
    pause: threading.Event,
    *,
    done: threading.Event,
    log: Callable[[str], None],
) -> None:
    """Mirror the run's stop and pause events into this worker's.

    The experiments stop too when the Dask worker closes (it does when it loses its scheduler:
    its task then ends cleanly, failing its trials as interrupted, before the process goes) or
    when the scheduler has been unreachable for :data:`SCHEDULER_LOST_SECONDS`.
    """
    reached = time.monotonic()
    while not done.wait(POLL_SECONDS):
        if stop.is_set():
            continue
        status = getattr(getattr(worker, "status", None), "name", "running")
        if status not in ("running", "paused"):  # paused: Dask's memory pause, not ours
            log(f"the Dask worker is {status}: stopping its experiments")
            pause.clear()
            stop.set()
            continue
        try:
            if client.status != "running":  # reconnecting: a call would wait for it
                raise ConnectionError(client.status)
            if remote_stop.is_set():
                stop.set()
            if remote_pause.is_set():
                pause.set()
            else:
                pause.clear()
            reached = time.monotonic()
        except Exception:
            if time.monotonic() - reached > SCHEDULER_LOST_SECONDS:
                log("the Dask scheduler is unreachable: stopping this worker's experiments")
                pause.clear()
                stop.set()


# ----------------------------------------------------------------------------------------
# In the process that drives the run
# ----------------------------------------------------------------------------------------
@dataclass
class WorkerState:
    """Where work runs: one Dask worker of the run, as the session shows it.

    Attributes:
        address: The Dask worker's address.
        host: Its machine.
        slots: Experiments it runs at once.
        state: ``"starting"``, ``"working"``, ``"done"``, ``"lost"`` (it left mid-run) or
            ``"failed"``.
        running: Numbers of the trials it runs now.
    """

    address: str
    host: str = ""
    slots: int = 0
    state: str = "starting"
    running: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The state as a plain dict (what ``"workers"`` events carry)."""
        return {
            "address": self.address,
            "host": self.host,
            "slots": self.slots,
            "state": self.state,
            "running": list(self.running),
        }


class ClusterRun:
    """Work on a study's reserved budget on a Dask cluster (and, optionally, here too).

    Args:
        cluster: A scheduler address, a ``distributed.Client`` or a Dask cluster object.
        tuner: The study (already opened and reserved by the session).
        stop: Set to stop: the workers' experiments end, their trials are failed as
            interrupted.
        pause: While set, the workers' experiments are frozen.
        emit: The session's event sink: ``emit(kind, **data)``.
        timeout: Seconds after which workers stop starting trials.
        local_slots: Experiments this process runs too (0: the cluster runs them all).
        listeners: Scheduler listeners of the local slots.
    """

    def __init__(
        self,
        cluster: Any,
        tuner: Any,
        *,
        stop: threading.Event,
        pause: threading.Event,
        emit: Emit,
        timeout: float | None = None,
        local_slots: int = 0,
        listeners: Any = (),
    ) -> None:
        self.cluster = cluster
        self.tuner = tuner
        self.stop = stop
        self.pause = pause
        self._emit = emit
        self.timeout = timeout
        self.local_slots = local_slots
        self.listeners = list(listeners)
        self.run_id = f"nbtune-{uuid.uuid4().hex[:12]}"
        self.workers: dict[str, WorkerState] = {}
        self._reports: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._collected: set[str] = set()  # workers whose task's end was counted
        self._lock = threading.Lock()

    def _log(self, line: str) -> None:
        self._emit("log", line=line)
        if self.tuner.config.verbose:
            print(f"nbtune: {line}", flush=True)

    def snapshot(self) -> list[dict[str, Any]]:
        """Where work runs now: one dict per Dask worker (see :class:`WorkerState`)."""
        with self._lock:
            return [w.as_dict() for w in self.workers.values()]

    def _tell_workers(self) -> None:
        self._emit("workers", workers=self.snapshot())

    # ------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run until the budget is reached, a stop, or an error; return what was done.

        Raises:
            ConfigError: The cluster cannot reach the storage (nothing ran).
            TuningError: The scheduler went away, or a worker's nbtune failed.
        """
        distributed = _distributed()
        client, own = _connect(self.cluster)
        where = describe_cluster(self.cluster)
        address = storage_address(self.tuner.config.storage)
        name = self.tuner.config.study_name
        try:
            check_storage_reach(client, address, name)
            remote_stop = distributed.Event(f"{self.run_id}-stop", client)
            remote_pause = distributed.Event(f"{self.run_id}-pause", client)
            client.subscribe_topic(self.run_id, self._on_report)
            local = self._start_local()
            try:
                return self._loop(client, where, address, remote_stop, remote_pause, local)
            finally:
                if client.status == "running":  # else each call would wait for a reconnection
                    with contextlib.suppress(Exception):
                        client.unsubscribe_topic(self.run_id)
                    with contextlib.suppress(Exception):
                        remote_stop.clear()
                        remote_pause.clear()
        finally:
            if own:
                with contextlib.suppress(Exception):
                    client.close(timeout=2 if client.status != "running" else 10)

    def _start_local(self) -> tuple[threading.Thread, dict[str, Any]] | None:
        if not self.local_slots:
            return None
        out: dict[str, Any] = {}
        tuner = self.tuner.replace(n_slots=self.local_slots, cluster=None, local_slots=0)

        def work() -> None:
            try:
                out["summary"] = tuner.work(
                    timeout=self.timeout,
                    stop_event=self.stop,
                    pause_event=self.pause,
                    listeners=self.listeners,
                )
            except BaseException as exc:
                out["error"] = exc

        thread = threading.Thread(target=work, name="nbtune-local-slots", daemon=True)
        thread.start()
        host = socket.gethostname()
        with self._lock:
            self.workers["here"] = WorkerState(
                "here", host=host, slots=self.local_slots, state="working"
            )
        return thread, out

    def _loop(
        self,
        client: Any,
        where: str,
        address: str,
        remote_stop: Any,
        remote_pause: Any,
        local: tuple[threading.Thread, dict[str, Any]] | None,
    ) -> RunSummary:
        futures: dict[str, Any] = {}  # by worker address
        missed: dict[str, int] = {}  # looks in a row that did not find the worker
        summary = RunSummary()
        error: BaseException | None = None
        overrides = {"verbose": self.tuner.config.verbose}
        if self.tuner.config.memory_per_experiment is not None:
            overrides["memory_per_experiment"] = self.tuner.config.memory_per_experiment
        paused = False
        stopped_at: float | None = None
        next_look = 0.0
        waiting_said = False
        while True:
            if self.stop.is_set() and stopped_at is None:
                stopped_at = time.monotonic()
                remote_stop.set()
            if self.pause.is_set() != paused:
                paused = self.pause.is_set()
                remote_pause.set() if paused else remote_pause.clear()
            self._drain()
            now = time.monotonic()
            if client.status != "running":
                error = TuningError(
                    f"the Dask scheduler at {where} went away: the study is intact in "
                    f"{redact_url(address)} (trials running on the cluster are failed as "
                    "interrupted, or as stale once their heartbeat stops, and run again); "
                    "start the scheduler and workers again, then resume."
                )
                self.stop.set()
                break
            if now >= next_look:
                next_look = now + 1.0
                try:
                    info = live_workers(client)
                except Exception:
                    continue  # the status tells on the next turn
                if stopped_at is None:
                    for addr, meta in info.items():
                        if addr not in futures:
                            futures[addr] = self._submit(client, addr, meta, address, overrides)
                if not futures and not waiting_said:
                    self._log(f"waiting for Dask workers to join {where}")
                    waiting_said = True
                for addr, future in list(futures.items()):
                    state = self.workers[addr]
                    missed[addr] = 0 if addr in info else missed.get(addr, 0) + 1
                    # Two looks a second apart: one answer that lacks a worker is not enough
                    # to give up on its experiments.
                    if missed[addr] >= 2 and not future.done() and state.state != "lost":
                        future.cancel()
                        self._set(addr, state="lost", running=[])
                        self._log(
                            f"Dask worker {addr} ({state.host or '?'}) left mid-run: its "
                            "experiments died with it; its trials run again elsewhere once "
                            "their heartbeat is stale"
                        )
            failure = self._collect(futures, summary)
            if failure is not None and error is None:
                error = failure
                self.stop.set()
            local_alive = local is not None and local[0].is_alive()
            remote_alive = any(not f.done() for f in futures.values())
            if not remote_alive and not local_alive:
                if futures or local is not None or stopped_at is not None:
                    break
                if self._budget_reached():
                    break
            if stopped_at is not None and now - stopped_at > STOP_WAIT_SECONDS:
                for future in futures.values():
                    future.cancel()
                self._log("the cluster's workers did not stop in time; their tasks were cancelled")
                break
            time.sleep(0.1)
        self._drain()
        failure = self._collect(futures, summary)
        error = error or failure
        if local is not None:
            thread, out = local
            thread.join()
            if "summary" in out:
                s = out["summary"]
                summary.complete += s.complete
                summary.pruned += s.pruned
                summary.failed += s.failed
                summary.interrupted += s.interrupted
            self._set("here", state="done", running=[])
            if error is None and "error" in out:
                error = out["error"]
        self._tell_workers()
        if error is not None:
            raise error
        return summary

    def _collect(self, futures: Mapping[str, Any], summary: RunSummary) -> BaseException | None:
        """Count what the ended tasks did into ``summary``; return a worker's error, if any."""
        error: BaseException | None = None
        for addr, future in futures.items():
            state = self.workers[addr]
            if addr in self._collected or not future.done():
                continue
            self._collected.add(addr)
            if future.status == "finished":
                counts = future.result()
                summary.complete += counts["complete"]
                summary.pruned += counts["pruned"]
                summary.failed += counts["failed"]
                summary.interrupted += counts["interrupted"]
                self._set(addr, state="done", running=[])
            elif future.status == "error":
                exc = future.exception()
                self._set(addr, state="failed", running=[])
                if type(exc).__name__ == "KilledWorker":
                    self._log(f"Dask worker {addr} died mid-run")
                elif error is None:
                    error = TuningError(
                        f"the nbtune worker on Dask worker {addr} ({state.host}) failed: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    error.__cause__ = exc
            else:  # cancelled: the scheduler connection went, or this run cancelled it
                self._set(addr, state="lost", running=[])
        return error

    def _budget_reached(self) -> bool:
        from nbtune._budget import budget_state

        return budget_state(self.tuner.study).reached

    def _submit(
        self,
        client: Any,
        addr: str,
        meta: Mapping[str, Any],
        address: str,
        overrides: Mapping[str, Any],
    ) -> Any:
        resources = meta.get("resources") or {}
        slots = int(resources.get(SLOTS_RESOURCE) or meta.get("nthreads") or 1)
        host = str(meta.get("host") or "")
        with self._lock:
            self.workers[addr] = WorkerState(addr, host=host, slots=slots)
        self._tell_workers()
        self._log(f"Dask worker {addr} joins the study with {slots} slot(s)")
        return client.submit(
            work_on_dask_worker,
            address,
            self.tuner.config.study_name,
            self.run_id,
            dict(overrides),
            self.timeout,
            key=f"{self.run_id}-{addr}",
            workers=[addr],
            allow_other_workers=False,
            pure=False,
            retries=0,
        )

    def _set(self, addr: str, **changes: Any) -> None:
        with self._lock:
            state = self.workers.get(addr)
            if state is None:
                return
            for key, value in changes.items():
                setattr(state, key, value)
        self._tell_workers()

    def _on_report(self, event: Any) -> None:
        """A worker's report (on the client's event loop): queued, told on the run's thread."""
        self._reports.put(event[1] if isinstance(event, tuple) else event)

    def _drain(self) -> None:
        changed = False
        while True:
            try:
                msg = self._reports.get_nowait()
            except queue.Empty:
                break
            if not isinstance(msg, Mapping):
                continue
            kind = msg.get("kind")
            addr = str(msg.get("worker", ""))
            data = {k: v for k, v in msg.items() if k not in ("kind", "worker", "host", "slots")}
            if kind == "worker":
                with self._lock:
                    state = self.workers.setdefault(addr, WorkerState(addr))
                    state.host = str(msg.get("host", state.host))
                    state.slots = int(msg.get("slots", state.slots))
                    if state.state not in ("lost", "failed"):
                        state.state = str(msg.get("state", state.state))
                    state.running = [int(n) for n in msg.get("running", [])]
                changed = True
            elif kind in ("trial", "experiment"):
                self._emit(kind, **data)
            elif kind == "log":
                self._log(f"{addr}: {data.get('line', '')}")
        if changed:
            self._tell_workers()
