"""How many experiments this process can really run at once.

``os.cpu_count()`` reports the host's CPUs, even in a container (Binder, Docker, Slurm) that may
use far fewer: the CPUs this process may use come from its affinity mask and its cgroup quota.
Memory is the other limit: a slot whose experiment cannot fit in memory is worse than no slot.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

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
