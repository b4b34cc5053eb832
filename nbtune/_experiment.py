"""One experiment: the training script run once for one environment and seed, as a subprocess.

Each experiment gets an explicit argv list, its own working directory (so the script's
``runs/{run_name}`` never collides with another experiment's), an explicit environment, log files
for stdout and stderr, an optional timeout, and its own process group. A small guard process
(``_guard.py``) kills the group when the tuner dies, so no experiment outlives its tuner.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtune._errors import ConfigError

_GUARD = str(Path(__file__).with_name("_guard.py"))

#: Environment variables every experiment gets unless the user overrides them. One OpenMP thread
#: per experiment measured 15 to 25% faster than torch's default for CleanRL PPO on 2 cores.
DEFAULT_ENV: Mapping[str, str] = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def format_flag(key: str, value: Any) -> list[str]:
    """Render one parameter as command-line arguments, the way tyro and argparse expect them.

    Booleans become ``--flag`` / ``--no-flag`` (tyro exits 2 on ``--flag=False``), lists and
    tuples become repeated values after the flag, ``None`` becomes ``--flag=None`` (tyro's
    spelling for an optional's empty value), anything else ``--flag=value``.

    Args:
        key: Parameter name, with or without the leading ``--``.
        value: Its value.

    Returns:
        The arguments for this parameter.

    Example:
        >>> format_flag("learning-rate", 0.00025)
        ['--learning-rate=0.00025']
        >>> format_flag("anneal-lr", False)
        ['--no-anneal-lr']
        >>> format_flag("hidden-sizes", [64, 64])
        ['--hidden-sizes', '64', '64']

    """
    name = key[2:] if key.startswith("--") else key
    if not name or name.startswith("-") or any(c.isspace() or c == "=" for c in name):
        raise ConfigError(
            f"invalid parameter name {key!r}: use a flag name such as 'learning-rate'."
        )
    if isinstance(value, bool):
        return [f"--{name}"] if value else [f"--no-{name}"]
    if isinstance(value, (list, tuple)):
        return [f"--{name}", *(_format_value(v) for v in value)]
    return [f"--{name}={_format_value(value)}"]


def _format_value(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot pass a non-finite number ({value}) as a flag")
        return repr(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _format_value(value.item())
    return str(value)


def argument_mismatch(passed: Mapping[str, Any], reported: Mapping[str, str]) -> str | None:
    """Compare the values nbtune passed with what the script says it used; name the first flag.

    ``reported`` is the script's own ``|param|value|`` table (CleanRL's ``hyperparameters`` text
    summary, see :func:`nbtune._metrics.reported_hyperparameters`), keyed by argument names
    (``learning_rate``); flags (``learning-rate``) match them with ``-`` read as ``_``. A flag
    the table does not list is not judged. Numbers match within a relative 1e-6 (a script may
    hold a float32), lists element by element.

    Returns:
        A message naming the flag, what was passed and what the script reports, or ``None``
        when every listed flag matches.

    Example:
        >>> argument_mismatch({"learning-rate": 0.001, "seed": 3},
        ...                   {"learning_rate": "0.00025", "seed": "3"})  # doctest: +ELLIPSIS
        "the script did not use --learning-rate: nbtune passed 0.001, but its 'hyperparameters'...
        >>> argument_mismatch({"anneal-lr": False, "layers": [64, 64]},
        ...                   {"anneal_lr": "False", "layers": "(64, 64)"}) is None
        True
    """
    table = {name.strip().replace("-", "_"): value for name, value in reported.items()}
    for flag, value in passed.items():
        name = flag.lstrip("-")
        text = table.get(name.replace("-", "_"))
        if text is None or _same_value(value, text):
            continue
        shown = _format_value(value) if not isinstance(value, (list, tuple)) else list(value)
        return (
            f"the script did not use --{name}: nbtune passed {shown}, but its 'hyperparameters' "
            f"text summary reports {name.replace('-', '_')} = {text}. The flag did not reach the "
            "script's arguments (CleanRL's own tuner dropped the first flag of every trial this "
            "way, cleanrl#533): check how the script parses its command line."
        )
    return None


def _same_value(value: Any, text: str) -> bool:
    """Whether a passed value and the script's text of it mean the same."""
    import ast

    if isinstance(value, (list, tuple)):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed = text.split()
        if not isinstance(parsed, (list, tuple)) or len(parsed) != len(value):
            return False
        return all(_same_value(v, str(p)) for v, p in zip(value, parsed, strict=True))
    if value is None:
        return text in ("None", "null", "")
    if isinstance(value, bool):
        return text.lower() in (("true", "1") if value else ("false", "0"))
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, (int, float)):
        try:
            number = float(text)
        except ValueError:
            return False
        return math.isclose(number, float(value), rel_tol=1e-6, abs_tol=1e-12)
    return text == str(value)


def build_argv(
    interpreter: str,
    script: str | os.PathLike[str],
    params: Mapping[str, Any],
    env_id: str,
    seed: int,
    *,
    env_flag: str = "env-id",
    seed_flag: str = "seed",
) -> list[str]:
    """The exact argv of one experiment: ``[python, script, --key=value..., --env-id=E, --seed=S]``.

    Every parameter arrives: CleanRL's tuner runs the script with ``runpy``, which overwrites
    ``sys.argv[0]`` and so silently drops the first parameter; an explicit argv list cannot.

    Example:
        >>> build_argv("python", "ppo.py", {"learning-rate": 0.001}, "CartPole-v1", 2)
        ['python', 'ppo.py', '--learning-rate=0.001', '--env-id=CartPole-v1', '--seed=2']

    """
    argv = [str(interpreter), str(script)]
    for key, value in params.items():
        if key.lstrip("-") in (env_flag, seed_flag):
            raise ConfigError(
                f"params_fn returned {key!r}, which nbtune sets itself for each experiment; "
                "list environments in target_scores and choose seeds with num_seeds."
            )
        argv += format_flag(key, value)
    argv += [f"--{env_flag}={env_id}", f"--{seed_flag}={seed}"]
    return argv


@dataclass
class Experiment:
    """One run of the training script, in its own directory and process group.

    Args:
        argv: The full command, interpreter first.
        run_dir: Working directory; created if missing. The script's ``runs/`` lands here.
        env: Environment variables layered over ``os.environ`` and :data:`DEFAULT_ENV`.
        timeout: Seconds after which the experiment is stopped and counts as failed.
        env_id: Environment id, kept for reports.
        seed: Seed, kept for reports.

    """

    argv: Sequence[str]
    run_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    env_id: str = ""
    seed: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    returncode: int | None = None
    timed_out: bool = False
    stopped: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _liveness_fd: int | None = field(default=None, repr=False)
    _paused_at: float | None = field(default=None, repr=False)
    _paused_seconds: float = field(default=0.0, repr=False)

    @property
    def stdout_path(self) -> Path:
        """File that receives the script's standard output."""
        return self.run_dir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        """File that receives the script's standard error."""
        return self.run_dir / "stderr.log"

    @property
    def running(self) -> bool:
        """Whether the experiment has started and not yet ended."""
        return self._proc is not None and self.returncode is None

    @property
    def seconds(self) -> float | None:
        """Wall-clock duration so far (or in total once ended), time spent paused excluded."""
        if self.started_at is None:
            return None
        end = self.ended_at or self._paused_at or time.monotonic()
        return end - self.started_at - self._paused_seconds

    @property
    def paused(self) -> bool:
        """Whether the experiment is paused."""
        return self._paused_at is not None

    def pause(self) -> None:
        """Freeze the script and everything it started (SIGSTOP), keeping its memory."""
        if not self.running or self._paused_at is not None:
            return
        assert self._proc is not None
        self._signal_group(signal.SIGSTOP)
        # The guard itself keeps running, so it can still kill the group if the tuner dies.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._proc.pid, signal.SIGCONT)
        self._paused_at = time.monotonic()

    def resume(self) -> None:
        """Continue a paused experiment (SIGCONT)."""
        if self._paused_at is None:
            return
        self._paused_seconds += time.monotonic() - self._paused_at
        self._paused_at = None
        if self.running:
            self._signal_group(signal.SIGCONT)

    def start(self) -> None:
        """Start the script under the guard, in a new process group."""
        if self._proc is not None:
            raise RuntimeError("experiment already started")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **DEFAULT_ENV, **self.env}
        read_end, write_end = os.pipe()
        try:
            with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", _GUARD, *self.argv],
                    cwd=self.run_dir,
                    env=env,
                    stdin=read_end,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        # Only this process holds the write end: if it dies, the guard sees EOF.
        self._liveness_fd = write_end
        self.started_at = time.monotonic()

    def poll(self) -> int | None:
        """Return the exit code once ended, else ``None``; enforce the timeout."""
        if self._proc is None:
            return None
        if self.returncode is not None:
            return self.returncode
        code = self._proc.poll()
        if code is None:
            if (
                self.timeout is not None
                and self.seconds is not None
                and self.seconds > self.timeout
            ):
                self.timed_out = True
                self.stop()
                return self.returncode
            return None
        self._finish(code)
        return code

    def stop(self, grace: float = 0.5) -> None:
        """Stop the experiment: SIGTERM to its process group, SIGKILL after ``grace`` seconds."""
        if self._proc is None or self.returncode is not None:
            return
        self.stopped = True
        self.resume()  # a stopped process would not act on SIGTERM
        self._signal_group(signal.SIGTERM)
        try:
            code = self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            code = self._proc.wait()
        self._finish(code)

    def stderr_tail(self, max_bytes: int = 4000) -> str:
        """The last ``max_bytes`` of the script's standard error."""
        return _tail(self.stderr_path, max_bytes)

    def _finish(self, code: int) -> None:
        self.returncode = code
        self.ended_at = time.monotonic()
        # Anything the script left in its group goes too.
        self._signal_group(signal.SIGKILL)
        if self._liveness_fd is not None:
            os.close(self._liveness_fd)
            self._liveness_fd = None

    def _signal_group(self, sig: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)


def _tail(path: Path, max_bytes: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes:
        # Start at a line boundary so the tail reads cleanly.
        text = text.split("\n", 1)[-1]
    return text
