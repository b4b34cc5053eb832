"""How many experiments this process can really run at once.

``os.cpu_count()`` reports the host's CPUs, even in a container (Binder, Docker, Slurm) that may
use far fewer: the CPUs this process may use come from its affinity mask and its cgroup quota.
Memory is the other limit: a slot whose experiment cannot fit in memory is worse than no slot.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
from pathlib import Path

from nbtune._errors import ConfigError, TuningError

#: Memory one experiment is assumed to need when choosing the default number of slots
#: (CleanRL's PPO with torch on CPU uses 300 to 500 MB).
DEFAULT_MEMORY_PER_EXPERIMENT = 1 << 30


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    Example:
        >>> available_cpus() >= 1
        True
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup CPU limit in CPUs, or ``None`` when unlimited or unknown.

    Args:
        root: Where the cgroup filesystem is mounted.
    """
    v2 = root / "cpu.max"
    try:
        quota, period = v2.read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of memory this process can still use, or ``None`` when unknown.

    The smaller of what the system has available and what its cgroup still allows.
    """
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit_text = Path(limit_file).read_text().strip()
            if limit_text == "max":
                continue
            limit, usage = int(limit_text), int(Path(usage_file).read_text())
            if limit < 1 << 60:  # v1 reports "unlimited" as a huge number
                candidates.append(max(0, limit - usage))
        except (OSError, ValueError):
            continue
    return min(candidates) if candidates else None


def default_slots(memory_per_experiment: int = DEFAULT_MEMORY_PER_EXPERIMENT) -> int:
    """The default number of slots: one per usable CPU, fewer if memory would run out.

    Example:
        >>> 1 <= default_slots() <= available_cpus()
        True
    """
    slots = available_cpus()
    memory = available_memory()
    if memory is not None and memory_per_experiment > 0:
        slots = min(slots, max(1, memory // memory_per_experiment))
    return slots


# --------------------------------------------------------------------------------------------
# Disk: the runs folder must be writable, and its disk not full
# --------------------------------------------------------------------------------------------

#: Below this many free bytes (or 1% of a small disk) the disk holding the runs folder counts
#: as full: the next log line or event record of an experiment fails.
DISK_FULL_BYTES = 8 << 20
_ENOSPC_WORDS = ("no space left on device", "enospc", "errno 28", "disk quota exceeded")


def check_runs_dir(folder: Path) -> None:
    """Make sure experiments can write in ``folder`` before the first one starts.

    Creates the folder, writes and deletes a probe file. A folder that cannot be written
    (read-only file system, no permission, a file where a folder should be) is refused with a
    one-line error naming the folder and the fix; so is a full disk.

    Raises:
        ConfigError: The folder cannot be created or written.
        TuningError: Its disk is full.

    Example:
        >>> import tempfile, pathlib
        >>> check_runs_dir(pathlib.Path(tempfile.mkdtemp()) / "runs")
        >>> check_runs_dir(pathlib.Path("/dev/null/runs"))
        Traceback (most recent call last):
        ...
        nbtune._errors.ConfigError: cannot write experiment folders under /dev/null/runs: ...

    """
    probe = folder / f".nbtune-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"nbtune checks that experiments can write here\n")
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TuningError(disk_full_message(folder, str(exc))) from None
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(
            f"cannot write experiment folders under {folder}: {why}"
            + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(folder) else "")
            + ". Give a writable runs_dir (--runs-dir), or make this folder writable."
        ) from None
    if disk_full(folder):
        raise TuningError(disk_full_message(folder))


def disk_full(folder: Path, stderr: str = "") -> bool:
    """Whether the disk holding ``folder`` is (nearly) full, or ``stderr`` says a write failed so.

    Example:
        >>> disk_full(Path("/"), "OSError: [Errno 28] No space left on device")
        True
    """
    if any(word in stderr.lower() for word in _ENOSPC_WORDS):
        return True
    path = folder
    while not path.exists() and path != path.parent:
        path = path.parent  # the folder may not exist yet: ask about the disk it would be on
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return False
    return usage.free < min(DISK_FULL_BYTES, usage.total // 100)


def disk_full_message(folder: Path, stderr: str = "") -> str:
    """The one line that says a disk is full, with what is free and what to do.

    Example:
        >>> disk_full_message(Path("/"), "OSError: [Errno 28] No space left on device")
        'the experiment ran out of disk space (ENOSPC in its stderr; ...'
    """
    try:
        free_bytes = shutil.disk_usage(folder).free
    except OSError:
        free_bytes = 0
    what = "is not counted; run again to go on"
    if disk_full(folder):
        head = f"the disk holding {folder} is full (ENOSPC, {free_bytes >> 10} KiB free)"
    else:  # the script wrote elsewhere (a cache, /tmp) and said so
        head = (
            "the experiment ran out of disk space (ENOSPC in its stderr; the disk holding "
            f"{folder} has {free_bytes >> 20} MiB free, so it was another one, such as /tmp)"
        )
    return (
        f"{head}: free some space (keep_runs='logs' or a number of trials keeps less of each "
        f"experiment) and run again. The study is intact: the trial that ran out of space {what}."
    )
