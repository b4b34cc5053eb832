"""Training scripts shipped with nbtune, to try it out or to start a script of your own from.

They are CleanRL-style single-file scripts: run them as programs (``python ppo.py --help``), not
import them. Running them needs the ``rl`` extra (``pip install "nbtune[rl]"``) and torch, which is
installed separately to choose its build (CPU-only is enough and much smaller, see
https://pytorch.org/get-started/locally/). This module itself imports nothing heavy.
"""

from pathlib import Path

from nbtune._errors import ConfigError

__all__ = ["example_script"]

_DIR = Path(__file__).resolve().parent


def _available() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.py") if not p.name.startswith("_"))


def example_script(name: str = "ppo") -> Path:
    """Return the path of a training script shipped with nbtune.

    Args:
        name: The script's name without ``.py``; ``"ppo"`` is CleanRL's PPO for discrete-action
            gymnasium environments (default environment ``CartPole-v1``).

    Returns:
        The absolute path of the script, to run as ``[sys.executable, str(path), *flags]``.

    Raises:
        ValueError: If no shipped script has that name; the message lists the available ones.

    Examples:
        >>> from nbtune.examples import example_script
        >>> path = example_script("ppo")
        >>> path.name, path.is_absolute(), path.is_file()
        ('ppo.py', True, True)
    """
    available = _available()
    if name not in available:
        raise ConfigError(
            f"no example script named {name!r}; available: {', '.join(map(repr, available))}"
        )
    return _DIR / f"{name}.py"
