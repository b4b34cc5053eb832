"""What nbtune adds per experiment, against the same argv launched directly.

    python benchmarks/overhead.py [--script toy|ppo] [--repeats 5]

For each repeat it times the exact argv of one experiment run directly (``subprocess.run``)
and the same experiment run as a one-trial, one-environment, one-seed nbtune study (guard
process, log files, TensorBoard tail, storage writes, scoring), interleaved so machine noise
hits both alike, and prints the median seconds of each and their ratio. Goal: under 5%.
It also prints CPU seconds (user + system of the experiment's processes, plus, through nbtune,
those of the tuner's own process): on a virtual machine whose host is busy, wall times of the
same run vary by 2x, and CPU seconds show what nbtune costs regardless.
The ``ppo`` script needs the ``rl`` extra and torch; ``toy`` is the tests' tiny script, whose
runs are short, so it shows the fixed cost per experiment at its most visible.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

import nbtune

TOY = Path(__file__).resolve().parents[1] / "tests" / "scripts" / "toy_train.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", choices=["toy", "ppo"], default="ppo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--total-timesteps", type=int, default=100_000)  # CleanRL's example
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if args.script == "ppo":
        script = nbtune.example_script("ppo")
        params = {"total-timesteps": args.total_timesteps, "num-envs": 16}
        env_id, targets = "CartPole-v1", {"CartPole-v1": [0, 500]}
    else:
        script = TOY
        params = {"total-timesteps": 20_000, "log-sleep": 0.0}
        env_id, targets = "EnvA", {"EnvA": [0, 100]}

    direct, tuned = [], []
    direct_cpu, tuned_cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            argv = [sys.executable, str(script)]
            argv += [f"--{k}={v}" for k, v in params.items()]
            argv += [f"--env-id={env_id}", "--seed=0"]
            run_dir = Path(tmp, f"direct{i}")
            run_dir.mkdir()
            t, c = time.perf_counter(), _cpu()
            subprocess.run(
                argv,
                cwd=run_dir,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )
            direct.append(time.perf_counter() - t)
            direct_cpu.append(_cpu() - c)

            tuner = nbtune.Tuner(
                script=script,
                metric="charts/episodic_return",
                target_scores=targets,
                params_fn=dict(params),
                storage=f"sqlite:///{tmp}/study{i}.db",
                study_name="overhead",
                runs_dir=Path(tmp, f"runs{i}"),
                n_slots=1,
                verbose=False,
                progress_bar=False,
            )
            _ = tuner.study  # open the storage outside the timing, as a long study would
            t, c = time.perf_counter(), _cpu(own=True)
            tuner.tune(num_trials=1, num_seeds=1)
            tuned.append(time.perf_counter() - t)
            tuned_cpu.append(_cpu(own=True) - c)
            print(
                f"repeat {i}: direct {direct[-1]:.2f} s ({direct_cpu[-1]:.2f} s CPU), "
                f"nbtune {tuned[-1]:.2f} s ({tuned_cpu[-1]:.2f} s CPU)",
                flush=True,
            )

    d, n = statistics.median(direct), statistics.median(tuned)
    dc, nc = statistics.median(direct_cpu), statistics.median(tuned_cpu)
    print()
    print(f"script: {args.script} ({script.name}), {params}")
    print(f"{'':28}{'median s':>10}{'CPU s':>10}")
    print(f"{'argv launched directly':28}{d:>10.3f}{dc:>10.3f}")
    print(f"{'the same through nbtune':28}{n:>10.3f}{nc:>10.3f}")
    print(f"overhead per experiment: {n - d:+.3f} s = {100 * (n - d) / d:+.1f}% (goal: < 5%)")
    print(f"CPU overhead per experiment: {nc - dc:+.3f} s = {100 * (nc - dc) / dc:+.1f}%")


def _cpu(own: bool = False) -> float:
    """User + system CPU seconds of finished child processes, and of this process if ``own``."""
    who = [resource.RUSAGE_CHILDREN] + ([resource.RUSAGE_SELF] if own else [])
    return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime for w in who)


if __name__ == "__main__":
    main()
