"""Learning quality and speed of the shipped PPO script, beside CleanRL's published figures.

Runs ``nbtune/examples/ppo.py`` (or ``--script``) as subprocesses with ``OMP_NUM_THREADS=1``, each
in a fresh working directory, reads ``charts/episodic_return`` from its TensorBoard events and
prints a Markdown table. Quality runs use CleanRL's defaults (4 envs); speed runs use 16 envs at
100k steps, like the reference timings, and run one at a time so that they compete only with
whatever else the machine is doing (the ``load`` column is the 1-minute load average at the end of
each run: above the core count, times are inflated).

    python benchmarks/ppo_quality.py                       # the full benchmark (about 30 min)
    python benchmarks/ppo_quality.py --steps 100000 --seeds 2 --speed-seeds 1   # a quick look
    python benchmarks/ppo_quality.py --compare-script cleanrl/ppo.py  # time another script too
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "nbtune" / "examples" / "ppo.py"

# CleanRL's ppo.py with its default hyperparameters: final returns at 500k steps
# (https://docs.cleanrl.dev/rl-algorithms/ppo/#experiment-results), and wall-clock seconds for
# 100k steps with 16 envs measured on these 2-core machines (about 2.8 s of it importing torch).
REFERENCE_RETURN = {("CartPole-v1", 500_000): 490.0, ("Acrobot-v1", 500_000): -86.0}
REFERENCE_SECONDS = {("CartPole-v1", 100_000, 16): 14.0, ("Acrobot-v1", 100_000, 16): 18.0}
REFERENCE_STARTUP = 2.8


@dataclass
class Run:
    script: str
    env_id: str
    steps: int
    num_envs: int
    seed: int
    seconds: float = 0.0
    returns: list[float] = field(default_factory=list)
    load: float = 0.0
    error: str = ""

    @property
    def final_return(self) -> float:
        """Mean of the last 50 episodic returns (NaN if no episode was logged)."""
        last = self.returns[-50:]
        return statistics.fmean(last) if last else float("nan")


def read_returns(run_dir: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    returns: list[float] = []
    for events in sorted(run_dir.glob("runs/*/events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "charts/episodic_return" in acc.Tags()["scalars"]:
            returns += [e.value for e in acc.Scalars("charts/episodic_return")]
    return returns


def execute(run: Run, extra_args: list[str]) -> Run:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        run.script,
        f"--env-id={run.env_id}",
        f"--total-timesteps={run.steps}",
        f"--num-envs={run.num_envs}",
        f"--seed={run.seed}",
        *extra_args,
    ]
    with tempfile.TemporaryDirectory(prefix="ppo_bench_") as cwd:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        run.seconds = time.perf_counter() - start
        run.load = os.getloadavg()[0]
        if proc.returncode:
            run.error = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
        run.returns = read_returns(Path(cwd))
    status = run.error or f"return {run.final_return:.1f}"
    print(
        f"  {Path(run.script).name} {run.env_id} {run.steps} steps x{run.num_envs} seed "
        f"{run.seed}: {run.seconds:.1f} s, {status}, load {run.load:.1f}",
        file=sys.stderr,
        flush=True,
    )
    return run


def startup_seconds(statement: str, repeats: int = 3) -> float:
    """Median wall-clock time of a fresh interpreter running `statement`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", statement],
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mean_std(values: list[float], fmt: str = ".1f") -> str:
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{fmt}} ± {std:{fmt}}"


def table(runs: list[Run], startup: dict[str, float]) -> str:
    groups: dict[tuple[str, str, int, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.script, run.env_id, run.steps, run.num_envs), []).append(run)
    lines = [
        "| script | env | steps | envs | seeds | final return (last 50) | CleanRL return "
        "| s/run | CleanRL s/run | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (script, env_id, steps, num_envs), group in groups.items():
        ref_ret = REFERENCE_RETURN.get((env_id, steps))
        ref_sec = REFERENCE_SECONDS.get((env_id, steps, num_envs))
        failed = sum(bool(r.error) for r in group)
        lines.append(
            f"| {Path(script).name} | {env_id} | {steps} | {num_envs} | {len(group)}"
            + (f" ({failed} failed)" if failed else "")
            + f" | {mean_std([r.final_return for r in group])}"
            + f" | {'' if ref_ret is None else f'{ref_ret:g}'}"
            + f" | {mean_std([r.seconds for r in group])}"
            + f" | {'' if ref_sec is None else f'{ref_sec:g}'}"
            + f" | {statistics.fmean(r.load for r in group):.1f} |"
        )
    lines.append("")
    lines.append(
        f"start-up: `import torch, gymnasium` {startup['torch_gymnasium']:.2f} s "
        f"(CleanRL reference {REFERENCE_STARTUP:g} s); the script's imports "
        f"{startup['script_imports']:.2f} s; {os.cpu_count()} cores"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument(
        "--steps",
        nargs="*",
        type=int,
        default=[100_000, 500_000],
        help="step budgets of the quality runs (none: skip them)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N per quality config")
    parser.add_argument("--num-envs", type=int, default=4, help="envs of the quality runs")
    parser.add_argument("--jobs", type=int, default=2, help="quality runs in parallel")
    parser.add_argument("--speed-steps", type=int, default=100_000)
    parser.add_argument("--speed-num-envs", type=int, default=16)
    parser.add_argument(
        "--speed-seeds",
        type=int,
        default=3,
        help="speed runs per env, one at a time (0: skip them)",
    )
    parser.add_argument("--script", default=str(SCRIPT), help="the training script to measure")
    parser.add_argument(
        "--compare-script",
        action="append",
        default=[],
        help="another script (e.g. CleanRL's ppo.py) to time in the speed runs",
    )
    parser.add_argument(
        "--script-args",
        default="",
        help="extra flags for the script: --script-args='--no-bootstrap-truncated'",
    )
    parser.add_argument("--json", type=Path, help="also write every run's result to this file")
    args = parser.parse_args(argv)
    extra = args.script_args.split()

    startup = {
        "torch_gymnasium": startup_seconds("import torch, gymnasium"),
        "script_imports": startup_seconds(
            "import torch, gymnasium, tyro; from torch.utils.tensorboard import SummaryWriter"
        ),
    }
    print(f"start-up: {startup}", file=sys.stderr, flush=True)

    speed = [
        Run(script, env_id, args.speed_steps, args.speed_num_envs, seed)
        for env_id in args.envs
        for seed in range(1, args.speed_seeds + 1)
        for script in [args.script, *args.compare_script]
    ]
    quality = [
        Run(args.script, env_id, steps, args.num_envs, seed)
        for steps in args.steps
        for env_id in args.envs
        for seed in range(1, args.seeds + 1)
    ]
    runs = [execute(run, extra if run.script == args.script else []) for run in speed]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs += list(pool.map(lambda run: execute(run, extra), quality))

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "startup": startup,
                    "runs": [asdict(r) | {"final_return": r.final_return} for r in runs],
                },
                indent=1,
            )
        )
    print(table(runs, startup))
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
