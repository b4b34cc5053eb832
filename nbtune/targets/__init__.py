"""Target score tables shipped as data, ready for ``Tuner(target_scores=...)``.

A table maps each task to ``[low, high]``: a return of ``low`` normalizes to 0 and ``high`` to 1.
The tables are JSON files beside this module (see ``atari_human.json`` for its source), read with
the standard library only.

Example:
    >>> from nbtune.targets import atari_human_normalized
    >>> atari_human_normalized(["Alien", "Pong"])
    {'Alien-v5': [227.8, 6875.0], 'Pong-v5': [-20.7, 9.3]}
    >>> len(atari_human_normalized())
    49
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nbtune._errors import ConfigError

__all__ = ["atari_games", "atari_human_normalized"]

_DIR = Path(__file__).resolve().parent


@functools.cache
def _table(name: str) -> dict[str, Any]:
    with open(_DIR / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


def atari_games() -> list[str]:
    """The 49 games of Mnih et al. (2015) in the table's order, as ALE names (``"BankHeist"``)."""
    return list(_table("atari_human")["games"])


def _game_key(name: str) -> str:
    """``"ALE/Pong-v5"``, ``"PongNoFrameskip-v4"``, ``"pong"`` or ``"Pong"`` -> ``"pong"``."""
    base = name.rsplit("/", 1)[-1]
    base = re.sub(r"-v\d+$", "", base)
    base = re.sub(r"(NoFrameskip|Deterministic)$", "", base)
    return re.sub(r"[^a-z0-9]", "", base.lower())


def atari_human_normalized(
    games: Iterable[str] | None = None, env_id: str = "{game}-v5"
) -> dict[str, list[float]]:
    """Random and human scores of Atari games, as ``target_scores`` for human normalization.

    The scores are those of Mnih et al. (2015), Extended Data Table 2: random play and a
    professional human games tester, for the 49 games of that paper. With them as targets a
    trial's normalized score is the human-normalized score, ``(x - random) / (human - random)``.

    Args:
        games: Which games, in this order; default all 49. Names are matched loosely:
            ``"Pong"``, ``"pong"``, ``"Pong-v5"``, ``"ALE/Pong-v5"`` and
            ``"PongNoFrameskip-v4"`` all name Pong.
        env_id: How to write each game's environment id, with ``{game}`` for the ALE name:
            ``"{game}-v5"`` (envpool, as CleanRL's ``ppo_atari_envpool.py`` takes it),
            ``"ALE/{game}-v5"`` (gymnasium with ale-py) or ``"{game}NoFrameskip-v4"``.

    Returns:
        ``{env_id: [random, human]}`` in the order asked for.

    Raises:
        ValueError: For a game the table does not have; the message lists the 49.

    Example:
        >>> atari_human_normalized(["ALE/Breakout-v5"], env_id="ALE/{game}-v5")
        {'ALE/Breakout-v5': [1.7, 31.8]}
    """
    table = _table("atari_human")["games"]
    by_key = {_game_key(game): game for game in table}
    if games is None:
        chosen = list(table)
    else:
        if isinstance(games, str):
            games = [games]
        chosen = []
        for name in games:
            game = by_key.get(_game_key(name))
            if game is None:
                raise ConfigError(
                    f"{name!r} is not one of the 49 games of Mnih et al. (2015): "
                    + ", ".join(table)
                )
            chosen.append(game)
    return {
        env_id.format(game=game): [float(table[game]["random"]), float(table[game]["human"])]
        for game in chosen
    }
