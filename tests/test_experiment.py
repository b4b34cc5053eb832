import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nbtune._experiment import Experiment, build_argv, format_flag

TOY = Path(__file__).parent / "scripts" / "toy_train.py"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("learning-rate", 0.0003, ["--learning-rate=0.0003"]),
        ("--num-envs", 16, ["--num-envs=16"]),
        ("anneal-lr", True, ["--anneal-lr"]),
        ("anneal-lr", False, ["--no-anneal-lr"]),
        ("layers", [64, 32], ["--layers", "64", "32"]),
        ("layers", (), ["--layers"]),
        ("exp-name", "a b", ["--exp-name=a b"]),
        ("target-kl", None, ["--target-kl=None"]),
        ("lr", 1e-10, ["--lr=1e-10"]),
    ],
)
def test_format_flag(key, value, expected):
    assert format_flag(key, value) == expected


def test_format_flag_rejects_bad_names_and_values():
    with pytest.raises(ValueError, match="invalid parameter name"):
        format_flag("bad name", 1)
    with pytest.raises(ValueError, match="non-finite"):
        format_flag("lr", float("nan"))


def test_build_argv_keeps_every_parameter_in_order():
    argv = build_argv("py", "s.py", {"a": 1, "b": False, "c": [1, 2]}, "CartPole-v1", 3)
    assert argv == [
        "py",
        "s.py",
        "--a=1",
        "--no-b",
        "--c",
        "1",
        "2",
        "--env-id=CartPole-v1",
        "--seed=3",
    ]


def test_build_argv_refuses_env_and_seed_from_params_fn():
    with pytest.raises(ValueError, match="nbtune sets itself"):
        build_argv("py", "s.py", {"seed": 1}, "E", 0)


def test_experiment_runs_in_its_own_directory_with_explicit_env(tmp_path):
    exp = Experiment(
        argv=[sys.executable, str(TOY), "--env-id=EnvA", "--total-timesteps=500"],
        run_dir=tmp_path / "exp",
        env={"TOY_EXTRA": "yes"},
    )
    exp.start()
    assert wait_for(lambda: exp.poll() is not None)
    assert exp.returncode == 0
    received = json.loads((tmp_path / "exp" / "received.json").read_text())
    assert received["OMP_NUM_THREADS"] == "1"
    assert received["TOY_EXTRA"] == "yes"
    assert list((tmp_path / "exp" / "runs").iterdir())
    assert "final return" in exp.stdout_path.read_text()


def test_user_env_overrides_default_threads(tmp_path):
    exp = Experiment(
        argv=[sys.executable, str(TOY), "--total-timesteps=100"],
        run_dir=tmp_path,
        env={"OMP_NUM_THREADS": "2"},
    )
    exp.start()
    assert wait_for(lambda: exp.poll() is not None)
    assert json.loads((tmp_path / "received.json").read_text())["OMP_NUM_THREADS"] == "2"


def test_exit_code_and_stderr_tail(tmp_path):
    exp = Experiment(argv=[sys.executable, str(TOY), "--mode=crash"], run_dir=tmp_path)
    exp.start()
    assert wait_for(lambda: exp.poll() is not None)
    assert exp.returncode == 3
    assert "toy crash on purpose" in exp.stderr_tail()


def test_timeout_stops_the_whole_process_group(tmp_path):
    exp = Experiment(
        argv=[sys.executable, str(TOY), "--mode=hang", "--spawn-child"],
        run_dir=tmp_path,
        timeout=1.0,
    )
    exp.start()
    assert wait_for(lambda: (tmp_path / "grandchild.pid").exists())
    script_pid = json.loads((tmp_path / "received.json").read_text())["pid"]
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert wait_for(lambda: exp.poll() is not None, timeout=5)
    assert exp.timed_out
    assert wait_for(lambda: not alive(script_pid) and not alive(grandchild), timeout=2)


def test_stop_is_quick(tmp_path):
    exp = Experiment(argv=[sys.executable, str(TOY), "--mode=hang"], run_dir=tmp_path)
    exp.start()
    assert wait_for(lambda: (tmp_path / "received.json").exists())
    t = time.monotonic()
    exp.stop()
    assert time.monotonic() - t < 1.0
    assert exp.returncode is not None and exp.stopped


def test_a_missing_interpreter_fails_the_experiment(tmp_path):
    exp = Experiment(argv=[str(tmp_path / "no-python"), "x.py"], run_dir=tmp_path)
    exp.start()
    assert wait_for(lambda: exp.poll() is not None)
    assert exp.returncode == 127
    assert "cannot start" in exp.stderr_tail()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_orphans_when_the_tuner_process_dies(tmp_path, sig):
    """The process that started an experiment dies (even by SIGKILL): its experiments die too."""
    owner = textwrap.dedent(
        f"""
        import sys, time, threading
        from pathlib import Path
        from nbtune._experiment import Experiment
        # start from a non-main thread, as the widget does
        def go():
            Experiment(argv=[sys.executable, {str(TOY)!r}, "--mode=hang", "--spawn-child"],
                       run_dir=Path({str(tmp_path)!r})).start()
        t = threading.Thread(target=go); t.start(); t.join()
        print("started", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", owner], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    assert wait_for(lambda: (tmp_path / "grandchild.pid").exists())
    script_pid = json.loads((tmp_path / "received.json").read_text())["pid"]
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert alive(script_pid) and alive(grandchild)
    proc.send_signal(sig)
    proc.wait(timeout=10)
    assert wait_for(lambda: not alive(script_pid) and not alive(grandchild), timeout=5)
