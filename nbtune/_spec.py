"""The study spec: everything needed to continue a study, stored with it as versioned JSON.

A study must be resumable after a kernel restart and joinable from any process or machine, so
what defines it lives in the storage (study user attribute ``nbtune:spec``), not in Python
objects. Opening an existing study compares the stored spec with the one given and refuses a
mismatch with a readable difference; Optuna's ``load_if_exists`` alone would silently ignore,
for example, a different direction.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import optuna

from nbtune._errors import ConfigError, SpecMismatchError
from nbtune._space import SearchSpace

__all__ = ["COMPARED_FIELDS", "SPEC_VERSION", "SpecMismatchError", "StudySpec"]

#: Version 2 added progress_flag, keep_runs, max_consecutive_failures and wandb_kwargs (a version
#: 1 spec is read with their defaults: what a version 1 worker used). first_seed came later within
#: version 2: a spec without it is read with 0, the seeds every older study used.
SPEC_VERSION = 2

#: Fields whose change makes old and new trials incomparable: a mismatch is refused.
COMPARED_FIELDS = (
    "direction",
    "metric",
    "window",
    "targets",
    "aggregation",
    "num_seeds",
    "first_seed",
    "space",
    "script",
    "reporting",
    "checkpoints",
    "progress_flag",
)


@dataclass
class StudySpec:
    """What defines a study (JSON-serializable), as stored with it.

    It is derived from :class:`~nbtune.TunerConfig` (:meth:`TunerConfig.to_spec`): each config
    field whose metadata names a stored key is one attribute here, under that key.

    Attributes:
        script: Absolute path of the training script.
        interpreter: Executable that runs it.
        metric: TensorBoard tag.
        window: Last-N window of the metric.
        direction: ``"maximize"`` or ``"minimize"``.
        aggregation: Aggregation across environments.
        targets: ``{env_id: [low, high] | None}``.
        num_seeds: Seeds per environment, or ``None`` until the first ``tune``.
        first_seed: The first seed of each trial (seeds are ``first_seed .. first_seed +
            num_seeds - 1``); 0 unless the study validates another one.
        space: The declarative search space, or ``None`` when ``params_fn`` is not declarative.
        space_note: Why the space is not declarative.
        sampler: ``{"name": ..., "kwargs": {...}}`` or ``None`` for Optuna's default.
        pruner: Same form, for the pruner.
        reporting: When intermediate values are reported: ``"checkpoint"`` (while experiments
            run) or ``"seed"`` (after each seed).
        checkpoints: Checkpoints per experiment with ``"checkpoint"`` reporting.
        env_flag: Flag receiving the environment id.
        seed_flag: Flag receiving the seed.
        env: Extra environment variables of the experiments.
        experiment_timeout: Seconds per experiment, or ``None``.
        runs_dir: The study folder.
        script_sha256: Hash of the script when the study was created.
        heartbeat_interval: Seconds between heartbeats; every process on the study uses the
            same, since staleness of one process's trials is judged by another.
        progress_flag: The flag holding the training length (checkpoints are judged against it).
        keep_runs: Disk retention of experiment folders.
        max_consecutive_failures: Failed trials in a row that stop a process.
        wandb_kwargs: wandb arguments when trials are tracked, else ``None``.
        version: Spec format version.
    """

    script: str
    interpreter: str
    metric: str
    window: int
    direction: str
    aggregation: str
    targets: dict[str, list[float] | None]
    num_seeds: int | None = None
    first_seed: int = 0
    space: dict[str, Any] | None = None
    space_note: str = ""
    sampler: dict[str, Any] | None = None
    pruner: dict[str, Any] | None = None
    reporting: str = "checkpoint"
    checkpoints: int = 10
    env_flag: str = "env-id"
    seed_flag: str = "seed"
    env: dict[str, str] = field(default_factory=dict)
    experiment_timeout: float | None = None
    runs_dir: str = ""
    script_sha256: str = ""
    heartbeat_interval: int = 60
    progress_flag: str = "total-timesteps"
    keep_runs: str | int = "all"
    max_consecutive_failures: int | None = 5
    wandb_kwargs: dict[str, Any] | None = None
    version: int = SPEC_VERSION

    def to_json(self) -> str:
        """Serialize, keeping the order of environments and flags as the user gave them.

        Views list environments in this order (the parent and its forks alike), and flags are
        passed in it; comparisons of specs do not depend on it.
        """
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> StudySpec:
        """Parse a stored spec; newer versions than this nbtune knows are refused."""
        data = json.loads(text) if isinstance(text, str) else dict(text)
        version = data.get("version", 0)
        if version > SPEC_VERSION:
            raise ConfigError(
                f"the study was written by a newer nbtune (spec version {version}, this nbtune "
                f"reads up to {SPEC_VERSION}): upgrade nbtune."
            )
        known = {f.name for f in fields(cls)}
        spec = cls(**{k: v for k, v in data.items() if k in known})
        spec.version = SPEC_VERSION  # older versions: the new fields hold their defaults
        return spec

    def upgraded(self, given: StudySpec, stored_keys: Mapping[str, Any]) -> StudySpec:
        """The stored spec, with the fields an older version did not store taken from ``given``.

        Args:
            given: The spec of the process opening the study.
            stored_keys: The stored JSON as read (to see which keys it lacked).
        """
        missing = {f.name for f in fields(self)} - set(stored_keys) - {"version"}
        return replace(self, **{name: getattr(given, name) for name in missing})

    @property
    def search_space(self) -> SearchSpace | None:
        """The declarative space as an object."""
        return None if self.space is None else SearchSpace.from_dict(self.space)

    def differences(self, other: StudySpec) -> list[str]:
        """Lines ``field: stored X, given Y`` for each compared field that differs."""
        lines = []
        for name in COMPARED_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "num_seeds" and (mine is None or theirs is None):
                continue
            if name == "space" and (mine is None or theirs is None):
                continue  # a non-declarative params_fn cannot be compared
            if _normalized(mine) != _normalized(theirs):
                lines.append(f"  {name}: stored {_show(mine)}, given {_show(theirs)}")
        return lines


def _normalized(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 300 else text[:297] + "..."


def describe_component(obj: Any) -> dict[str, Any] | None:
    """Record a sampler or pruner by class name and the constructor arguments it keeps.

    Optuna's samplers and pruners keep most constructor arguments as ``_name`` attributes; those
    that are plain JSON values are recorded (a seed or a callable is not recoverable).

    Example:
        >>> import optuna
        >>> desc = describe_component(optuna.pruners.MedianPruner(n_startup_trials=5))
        >>> desc["name"], desc["kwargs"]["n_startup_trials"]
        ('MedianPruner', 5)
    """
    if obj is None:
        return None
    cls = type(obj)
    kwargs: dict[str, Any] = {}
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    for name in params:
        if name == "self":
            continue
        for attr in (f"_{name}", name):
            if hasattr(obj, attr):
                value = getattr(obj, attr)
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    break
                kwargs[name] = value
                break
    return {"name": cls.__name__, "module": cls.__module__, "kwargs": kwargs}


def build_component(desc: Mapping[str, Any] | None, kind: str) -> Any:
    """Build a sampler (``kind="samplers"``) or pruner (``"pruners"``) from its description.

    Args:
        desc: ``{"name": "TPESampler", "kwargs": {...}}``; ``None`` gives ``None`` (Optuna's
            default).
        kind: ``"samplers"`` or ``"pruners"``.

    Raises:
        ValueError: For an unknown name or arguments the class does not take.

    Example:
        >>> build_component({"name": "MedianPruner", "kwargs": {"n_startup_trials": 5}}, "pruners")
        <optuna.pruners._median.MedianPruner object at ...>
    """
    if desc is None:
        return None
    if isinstance(desc, str):
        desc = {"name": desc}
    module = getattr(optuna, kind)
    name = desc.get("name")
    cls = getattr(module, str(name), None)
    if not isinstance(cls, type):
        available = sorted(n for n in dir(module) if n[0].isupper() and not n.startswith("Base"))
        raise ConfigError(f"unknown {kind[:-1]} {name!r}; Optuna has: {', '.join(available)}.")
    kwargs = dict(
        desc.get("kwargs")
        or {k: v for k, v in desc.items() if k not in ("name", "module", "kwargs")}
    )
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
