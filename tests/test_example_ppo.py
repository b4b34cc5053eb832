"""Smoke tests of the shipped PPO script: it runs, logs episodes to TensorBoard and parses flags."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbtune.examples import example_script

RL_MODULES = ("torch", "gymnasium", "tyro")


def require_rl() -> None:
    """Skip without the RL dependencies, except on CI, where they must be installed."""
    missing = [m for m in RL_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        message = f"the PPO example needs {', '.join(missing)} (nbtune[rl] and torch)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def start(cwd: Path, *flags: str) -> tuple[Path, subprocess.Popen[str]]:
    cwd.mkdir()
    return cwd, subprocess.Popen(
        [sys.executable, str(example_script("ppo")), *flags],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(cwd: Path, proc: subprocess.Popen[str]) -> dict[str, list[tuple[int, float]]]:
    """Wait for the run and return its scalars as {tag: [(step, value), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert len(stdout.splitlines()) <= 32, "at most a line per iteration on stdout"
    event_files = list(cwd.glob("runs/*/events.out.tfevents.*"))
    assert len(event_files) == 1, event_files
    acc = EventAccumulator(str(event_files[0]), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_unknown_example_script() -> None:
    with pytest.raises(ValueError, match="ppo"):
        example_script("nope")


def test_example_script_path() -> None:
    path = example_script()
    assert path.is_absolute() and path.name == "ppo.py" and path.is_file()


@pytest.mark.slow
def test_ppo_logs_episodes(tmp_path: Path) -> None:
    require_rl()
    common = ["--total-timesteps=4096", "--num-envs=4", "--num-steps=128", "--seed=3"]
    # Started together: each spends a few seconds importing torch.
    runs = {
        "cartpole": start(tmp_path / "cartpole", *common),
        "next_step": start(tmp_path / "next_step", *common, "--autoreset-mode=next-step"),
        # 512 steps per env: every env ends at least one episode (Acrobot truncates at 500).
        "acrobot": start(
            tmp_path / "acrobot",
            "--env-id=Acrobot-v1",
            "--total-timesteps=8192",
            "--num-envs=16",
            "--num-steps=64",
            "--no-anneal-lr",
            "--learning-rate=0.001",
        ),
    }
    scalars = {name: finish(*run) for name, run in runs.items()}

    for name in ("cartpole", "next_step"):
        returns = [v for _, v in scalars[name]["charts/episodic_return"]]
        assert len(returns) >= 50, (name, len(returns))
        assert all(1 <= r <= 500 for r in returns), (name, returns)
        lengths = [v for _, v in scalars[name]["charts/episodic_length"]]
        assert lengths == returns  # CartPole: +1 per step
        lrs = [v for _, v in scalars[name]["charts/learning_rate"]]
        assert len(lrs) == 8 and lrs[0] == pytest.approx(2.5e-4) and lrs[-1] < lrs[0]
    acrobot = [v for _, v in scalars["acrobot"]["charts/episodic_return"]]
    assert len(acrobot) >= 16, len(acrobot)
    assert all(-500 <= r <= 0 for r in acrobot), acrobot
    lrs = [v for _, v in scalars["acrobot"]["charts/learning_rate"]]
    assert lrs == pytest.approx([1e-3] * 8)  # --no-anneal-lr

    for name, tags in scalars.items():
        for tag in ("charts/SPS", "losses/value_loss", "losses/policy_loss", "losses/entropy"):
            assert tag in tags, (name, tag)
        [run_dir] = (tmp_path / name).glob("runs/*")
        env_id = "Acrobot-v1" if name == "acrobot" else "CartPole-v1"
        seed = 1 if name == "acrobot" else 3
        assert run_dir.name.startswith(f"{env_id}__ppo__{seed}__"), run_dir.name


def test_adam_matches_torch() -> None:
    """The script's Adam (which avoids importing torch._dynamo) is torch.optim.Adam."""
    require_rl()
    import torch

    spec = importlib.util.spec_from_file_location("nbtune_example_ppo", example_script("ppo"))
    assert spec and spec.loader
    ppo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ppo)

    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    ours = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    ours.load_state_dict(reference.state_dict())
    optimizers = [
        (reference, torch.optim.Adam(reference.parameters(), lr=2.5e-4, eps=1e-5)),
        (ours, ppo.Adam(ours.parameters(), lr=2.5e-4, eps=1e-5)),
    ]
    for i in range(50):
        x = torch.randn(32, 4)
        for net, opt in optimizers:
            opt.param_groups[0]["lr"] = 2.5e-4 * (1 - i / 50)
            opt.zero_grad()
            (net(x) ** 2).mean().backward()
            opt.step()
    for a, b in zip(reference.parameters(), ours.parameters(), strict=True):
        # Bit for bit with torch 2.13; a tolerance in case other versions round differently.
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
