"""A trial's configuration as the script sees it: flags, a command line, a dict."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nbtune import _attrs
from nbtune._experiment import format_flag
from nbtune._spec import StudySpec


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best completed trial, or ``None`` (Optuna raises instead)."""
    try:
        return study.best_trial
    except ValueError:
        return None


def trial_config(trial: FrozenTrial, spec: StudySpec | None) -> dict[str, Any]:
    """The trial's values by flag name, fixed values included, in the order they are passed.

    With a declarative space the values come from the trial's parameters and the space's fixed
    values; otherwise from the argv the trial's experiments ran with; otherwise the parameters.
    """
    space = spec.search_space if spec is not None else None
    if space is not None:
        out: dict[str, Any] = {}
        for flag, entry in space.entries.items():
            name = getattr(entry, "name", None)
            if name is None:
                out[flag] = entry
            elif name in trial.params:
                out[flag] = trial.params[name]
        return out
    experiments = trial.user_attrs.get(_attrs.EXPERIMENTS) or []
    if experiments:
        return _parse_flags(_strip_env_seed(experiments[0]["argv"][2:], spec))
    return dict(trial.params)


def trial_flags(trial: FrozenTrial, spec: StudySpec | None) -> list[str]:
    """The command line of the trial's configuration: interpreter, script and flags.

    The environment and seed flags are left out: add ``--env-id=...`` and ``--seed=...``.
    """
    experiments = trial.user_attrs.get(_attrs.EXPERIMENTS) or []
    if experiments:
        argv = list(experiments[0]["argv"])
        return argv[:2] + _strip_env_seed(argv[2:], spec)
    head = [spec.interpreter, spec.script] if spec is not None else ["python", "SCRIPT"]
    flags: list[str] = []
    for key, value in trial_config(trial, spec).items():
        flags += format_flag(key, value)
    return head + flags


def _strip_env_seed(flags: list[str], spec: StudySpec | None) -> list[str]:
    env_flag = f"--{spec.env_flag}=" if spec is not None else "--env-id="
    seed_flag = f"--{spec.seed_flag}=" if spec is not None else "--seed="
    return [f for f in flags if not f.startswith((env_flag, seed_flag))]


def _parse_flags(flags: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    key: str | None = None
    for item in flags:
        if item.startswith("--"):
            name, eq, value = item[2:].partition("=")
            if eq:
                out[name] = _value(value)
                key = None
            elif name.startswith("no-"):
                out[name[3:]] = False
                key = None
            else:
                out[name] = True
                key = name
        elif key is not None:
            previous = out[key]
            out[key] = ([] if previous is True else previous) + [_value(item)]
    return out


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"None": None, "True": True, "False": False}.get(text, text)
