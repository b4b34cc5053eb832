"""The README's Slurm recipe, run as written against a real single-node Slurm.

The fixture starts ``munged``, ``slurmctld`` and ``slurmd`` (Debian's ``slurm-wlm`` and ``munge``,
which ``.ci/run`` installs; nothing is installed here) with a configuration, key, state and logs
in a temporary folder and ports of their own, and stops them after. Jobs are submitted with
``sbatch`` as a user would, the README's script as it is: only the environment (the virtual
environment, database, study and runs folder) and the sizes (``--array``, ``--cpus-per-task``,
``--mem`` on the command line, over the ``#SBATCH`` lines) are this machine's. The study is in a
fresh PostgreSQL database. Without Slurm (or not as root) these tests skip locally and fail under
``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from _support import (
    TOY,
    assert_exact,
    dispose,
    free_port,
    postgres_database,
    skip_or_fail,
    wait_for,
)
from optuna.trial import TrialState

import nbtune
from nbtune._storage import open_storage

README = Path(__file__).resolve().parent.parent / "README.md"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
SPACE = {
    "learning-rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "total-timesteps": 500,
}
#: This machine's sizes, over the recipe's #SBATCH lines (2 cores here).
SIZES = ["--cpus-per-task=1", "--mem=1G", "--time=00:20:00"]


def readme_block(name: str) -> str:
    """The fenced block after ``<!-- ci: NAME ... -->`` in the README, verbatim."""
    text = README.read_text()
    match = re.search(
        rf"<!--\s*ci:\s*{re.escape(name)}\b.*?-->\s*\n```[a-z]*\n(.*?)\n```", text, re.DOTALL
    )
    assert match, f"no block marked <!-- ci: {name} --> in README.md"
    return match.group(1) + "\n"


# --------------------------------------------------------------------------------------------
# A real single-node Slurm
# --------------------------------------------------------------------------------------------


@dataclass
class Slurm:
    """A running single-node Slurm: ``env`` is what its commands need (``SLURM_CONF``)."""

    folder: Path
    env: dict[str, str]

    def run(self, *argv: str, cwd: Path | None = None) -> str:
        out = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, f"{argv}: {out.stdout}{out.stderr}"
        return out.stdout

    def jobs(self, job: str) -> list[str]:
        """The array tasks of a job still pending or running."""
        return self.run("squeue", "-h", "-r", "-j", job, "-o", "%i %T").split("\n")[:-1]

    def log(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted((self.folder / "logs").glob("*"))
        )


def _need_slurm() -> None:
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        skip_or_fail(
            f"Slurm is not installed ({', '.join(missing)} missing): apt-get install -y "
            "slurm-wlm munge"
        )
    if os.geteuid() != 0:
        skip_or_fail("a single-node Slurm needs root here (slurmd runs jobs as their users)")


def _conf(folder: Path, host: str, ctld_port: int, d_port: int) -> str:
    cpus = os.cpu_count() or 1
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    return "\n".join(
        [
            "ClusterName=nbtune",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={d_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={folder / 'munge' / 'munge.sock'}",
            f"StateSaveLocation={folder / 'state'}",
            f"SlurmdSpoolDir={folder / 'spool'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={folder / 'logs' / 'slurmctld.log'}",
            f"SlurmdLogFile={folder / 'logs' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            "KillWait=5",
            "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SlurmdParameters=config_overrides",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb // 2} "
            "State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@contextlib.contextmanager
def single_node_slurm(folder: Path) -> Iterator[Slurm]:
    """Start munged, slurmctld and slurmd in the foreground, wait for the node; stop them after."""
    _need_slurm()
    for sub in ("munge", "state", "spool", "logs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "munge").chmod(0o755)  # the socket's folder: reachable by every job's user
    key = folder / "state" / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    host = socket.gethostname()
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder, host, free_port(), free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str]) -> None:
        with open(folder / "logs" / f"{name}.out", "wb") as out:
            procs.append(
                subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            )

    slurm = Slurm(folder, env)
    try:
        munge = folder / "munge"
        start(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={munge / 'munge.sock'}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={folder / 'state' / 'munge.seed'}",
                f"--log-file={folder / 'logs' / 'munged.log'}",
            ],
        )
        wait_for((munge / "munge.sock").exists, 30, "munged's socket")
        start("slurmctld", ["slurmctld", "-D", "-i"])
        start("slurmd", ["slurmd", "-D"])

        def idle() -> bool:
            if any(p.poll() is not None for p in procs):
                pytest.fail(f"a Slurm daemon exited:\n{slurm.log()}")
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=False,
            )
            return out.returncode == 0 and out.stdout.strip() == "idle"

        try:
            wait_for(idle, 90, "the Slurm node to be idle")
        except AssertionError:
            pytest.fail(f"the Slurm node never became idle:\n{slurm.log()}")
        yield slurm
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(
                ["scancel", "--user=root"], env=env, timeout=30, check=False, capture_output=True
            )
        for proc in reversed(procs):  # slurmd, slurmctld, then munged
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slurm]:
    with single_node_slurm(tmp_path_factory.mktemp("slurm")) as running:
        yield running


@pytest.fixture
def database() -> Iterator[str]:
    with postgres_database("nbtune_slurm") as url:
        yield url


# --------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------


def reserve(url: str, tmp_path: Path, num_trials: int, *, sleep: float, heartbeat: int) -> None:
    tuner = nbtune.Tuner(
        script=TOY,
        metric="charts/episodic_return",
        target_scores={"EnvA": [0, 100]},
        params_fn={**SPACE, "sleep": sleep},
        metric_last_n_average_window=3,
        pruner=optuna.pruners.NopPruner(),
        storage=url,
        study_name="slurm-study",
        runs_dir=tmp_path / "runs",
        heartbeat_interval=heartbeat,
        verbose=False,
    )
    assert tuner.reserve(num_trials, num_seeds=1) == num_trials
    tuner.storage.engine.dispose()  # type: ignore[attr-defined]


def submit(slurm: Slurm, url: str, tmp_path: Path, tasks: str) -> tuple[str, Path]:
    """``sbatch`` the README's recipe as it is; returns the job id and the submit folder."""
    folder = tmp_path / "submit"
    (folder / "logs").mkdir(parents=True)
    script = folder / "workers.sh"
    script.write_text(readme_block("slurm-recipe"))
    env = {
        **slurm.env,
        "NBTUNE_VENV": str(Path(sys.executable).parent.parent),
        "NBTUNE_DB": url,
        "NBTUNE_STUDY": "slurm-study",
        "NBTUNE_RUNS": str(tmp_path / "runs"),
    }
    out = subprocess.run(
        ["sbatch", "--parsable", f"--array={tasks}", *SIZES, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip().split(";")[0], folder


def load(url: str) -> optuna.Study:
    return optuna.load_study(
        study_name="slurm-study", storage=open_storage(url, heartbeat_interval=None)
    )


def worker_logs(folder: Path, job: str) -> dict[int, str]:
    return {
        int(p.stem.rsplit("_", 1)[1]): p.read_text(errors="replace")
        for p in (folder / "logs").glob(f"worker_{job}_*.out")
    }


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_the_readme_slurm_array_finishes_a_study_at_exactly_its_total(slurm, database, tmp_path):
    reserve(database, tmp_path, 4, sleep=0.5, heartbeat=10)
    job, folder = submit(slurm, database, tmp_path, "0-1")
    wait_for(lambda: not slurm.jobs(job), 240, f"job {job} to end")
    logs = worker_logs(folder, job)
    assert sorted(logs) == [0, 1], slurm.log()
    study = load(database)
    trials = assert_exact(study, 4)
    assert len(trials) == 4
    for text in logs.values():
        assert "study at 4 of 4" in text, text
    print(f"job {job}: " + "; ".join(f"task {i}: {t.splitlines()[-1]}" for i, t in logs.items()))
    dispose(study)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[1])


@pytest.mark.parametrize(("how", "kind"), [("scancel", "interrupted"), ("kill -9", "stale")])
def test_a_job_ended_mid_trial_gives_its_trial_back_and_the_study_ends_exact(
    slurm, database, tmp_path, how, kind
):
    reserve(database, tmp_path, 4, sleep=3.0, heartbeat=2)
    job, folder = submit(slurm, database, tmp_path, "0-1")

    def running_trial() -> tuple[int, int] | None:
        for task, text in worker_logs(folder, job).items():
            found = re.search(r"^trial (\d+) started", text, re.MULTILINE)
            if found:
                return task, int(found.group(1))
        return None

    task, number = wait_for(running_trial, 180, "a trial to start in a Slurm job")
    received = tmp_path / "runs" / f"trial_{number:05d}" / "EnvA__seed0" / "received.json"
    pid = wait_for(
        lambda: json.loads(received.read_text())["pid"] if received.exists() else None, 60
    )
    if how == "scancel":
        slurm.run("scancel", f"{job}_{task}")  # SIGTERM, then SIGKILL after KillWait
    else:
        # The job's nbtune worker dies without cleaning up (a node lost, the OOM killer):
        # its pid is the parent of the experiment's guard. Slurm then ends the job.
        os.kill(_parent(_parent(int(pid))), signal.SIGKILL)
    wait_for(lambda: not _alive(int(pid)), 30, "the cancelled job's experiment to die")
    wait_for(lambda: not slurm.jobs(job), 240, f"job {job} to end")
    study = load(database)
    trials = assert_exact(study, 4)
    cancelled = next(t for t in trials if t.number == number)
    assert cancelled.state == TrialState.FAIL
    assert cancelled.system_attrs["nbtune:fail_kind"] == kind, worker_logs(folder, job)
    if kind == "stale":  # retried with the same parameters
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert [t.state for t in retries] == [TrialState.COMPLETE]
        assert retries[0].params == cancelled.params
    survivor = worker_logs(folder, job)[1 - task]
    assert "study at 4 of 4" in survivor, survivor
    print(
        f"{how} of {job}_{task} during trial {number}: {cancelled.state.name} ({kind}); task "
        f"{1 - task}: {survivor.strip().splitlines()[-1]}"
    )
    dispose(study)


# --------------------------------------------------------------------------------------------
# From a notebook: dask-jobqueue's SLURMCluster on the same Slurm
# --------------------------------------------------------------------------------------------


def test_a_study_runs_on_slurm_jobs_through_dask_jobqueue(slurm, database, tmp_path, monkeypatch):
    if os.environ.get("CI") != "true":
        pytest.importorskip("dask_jobqueue", reason="pip install -e '.[cluster]'")
    from dask_jobqueue import SLURMCluster

    monkeypatch.setenv("SLURM_CONF", slurm.env["SLURM_CONF"])  # sbatch runs from this process
    tuner = nbtune.Tuner(
        script=TOY,
        metric="charts/episodic_return",
        target_scores={"EnvA": [0, 100]},
        params_fn={**SPACE, "sleep": 0.5},
        metric_last_n_average_window=3,
        pruner=optuna.pruners.NopPruner(),
        storage=database,
        study_name="slurm-study",
        runs_dir=tmp_path / "runs",
        verbose=False,
    )
    # As in the README: one Slurm job per Dask worker, one experiment per core.
    with SLURMCluster(
        cores=1,
        processes=1,
        memory="1GB",
        walltime="00:20:00",
        python=sys.executable,
        scheduler_options={"host": "127.0.0.1", "dashboard_address": None},
        log_directory=str(tmp_path / "jobqueue-logs"),
        local_directory=str(tmp_path / "dask-local"),
    ) as cluster:
        cluster.scale(jobs=2)
        session = tuner.session(4, 1, cluster=cluster)
        summary = session.run()
        places = session.workers()
    study = load(database)
    assert_exact(study, 4)
    assert summary.complete == 4
    assert len(places) >= 1 and all(w["slots"] == 1 for w in places), places
    logs = list((tmp_path / "jobqueue-logs").glob("*"))
    assert logs, "no Slurm job ran a Dask worker"
    print(f"SLURMCluster: {len(places)} Dask workers in Slurm jobs ran 4 of 4 trials")
    tuner.storage.engine.dispose()  # type: ignore[attr-defined]
    dispose(study)
