"""What parallel slots buy on this machine: one PPO experiment alone against several at once.

    python benchmarks/slots.py [--repeats 3] [--env-id CartPole-v1]

The tuning-efficiency benchmark's gain before any pruner acts is the throughput of N one-thread
experiments side by side (nbtune's slots) against one experiment at a time with torch's default
N threads (CleanRL's way). That ratio is a property of the machine: on N real cores it nears N;
where the virtual CPUs share physical cores, or memory bandwidth is the limit, it is less. Each
repeat times, in the same run and interleaved:

* ``alone, 1 thread``: one experiment, ``OMP_NUM_THREADS=1``;
* ``alone, N threads``: one experiment, ``OMP_NUM_THREADS=N`` (torch's default);
* ``N at once, 1 thread each``: N experiments started together.

It prints the median wall seconds of each and the throughputs (experiments per minute), then
the ratio of the third to the second: the most that slots can give when the first trial is
already good. Needs the ``rl`` extra and torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbtune
from nbtune._resources import available_cpus


def _launch(argv: list[str], cwd: Path, threads: int) -> subprocess.Popen[bytes]:
    cwd.mkdir(parents=True)
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _timed(procs: list[subprocess.Popen[bytes]], started: float) -> float:
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"experiment failed: {proc.args}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--env-id", default="CartPole-v1")
    parser.add_argument("--total-timesteps", type=int, default=100_000)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--cpus", type=int, default=available_cpus(), help="N (default: usable)")
    args = parser.parse_args()
    n = args.cpus
    argv = [
        sys.executable,
        str(nbtune.example_script("ppo")),
        f"--env-id={args.env_id}",
        f"--total-timesteps={args.total_timesteps}",
        f"--num-envs={args.num_envs}",
        "--seed=1",
    ]
    times: dict[str, list[float]] = {"alone, 1 thread": [], f"alone, {n} threads": []}
    together = f"{n} at once, 1 thread each"
    times[together] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            t = time.perf_counter()
            times["alone, 1 thread"].append(_timed([_launch(argv, Path(tmp, f"a{i}"), 1)], t))
            t = time.perf_counter()
            times[f"alone, {n} threads"].append(_timed([_launch(argv, Path(tmp, f"b{i}"), n)], t))
            t = time.perf_counter()
            procs = [_launch(argv, Path(tmp, f"c{i}-{k}"), 1) for k in range(n)]
            times[together].append(_timed(procs, t))
            print(
                f"repeat {i}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                flush=True,
            )
    print()
    print(f"{n} usable CPUs; PPO on {args.env_id}, {args.total_timesteps} steps, ", end="")
    print(f"{args.num_envs} envs")
    print(f"{'':28}{'median s':>10}{'experiments/min':>17}")
    rate = {}
    for name, values in times.items():
        wall = statistics.median(values)
        rate[name] = (n if name == together else 1) * 60 / wall
        print(f"{name:28}{wall:>10.2f}{rate[name]:>17.2f}")
    print(
        f"slots against torch's threads: {rate[together] / rate[f'alone, {n} threads']:.2f}x "
        f"the throughput ({rate[together] / rate['alone, 1 thread']:.2f}x against one "
        f"one-thread experiment; {n}x would be perfect)"
    )


if __name__ == "__main__":
    main()
