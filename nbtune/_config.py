"""``TunerConfig``: every argument of a study, declared once.

Each field of :class:`TunerConfig` is one argument of :class:`~nbtune.Tuner`, and its metadata
says everywhere else it goes, so nothing else lists the arguments by hand:

* ``doc``: the one-line documentation (the class docstring, ``--help`` texts);
* ``stored``: the key under which the study spec (:class:`~nbtune.StudySpec`) keeps it, or
  ``None`` when it is not stored (it belongs to one process: slots, output, the storage itself);
* ``scope``: ``"study"`` (the stored value is what every process runs with), ``"machine"`` (stored
  as the creating process's value; a worker on another machine may set its own with a flag) or
  ``"process"`` (never stored; each process sets its own);
* ``cli``: the type of the command-line flag ``--field-name`` (``None``: only in a config file or
  from Python, for tables such as ``target_scores``).

From these follow the Tuner's keyword arguments (:meth:`TunerConfig.__init__`), the stored spec
(:meth:`TunerConfig.to_spec` and :meth:`TunerConfig.from_spec`), the config-file schema
(:meth:`TunerConfig.from_mapping`), the CLI flags (:func:`add_config_flags`) and the live edits of
the widget (``tuner.replace(**changes)``).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from nbtune._cluster import check_cluster
from nbtune._errors import ConfigError
from nbtune._resources import DEFAULT_MEMORY_PER_EXPERIMENT, default_slots
from nbtune._retention import check_keep_runs
from nbtune._scoring import check_aggregation, check_target_scores
from nbtune._space import ParamsFn, SearchSpace, record_space
from nbtune._spec import StudySpec, build_component, describe_component
from nbtune._storage import DEFAULT_STORAGE, describe_storage

STUDY, MACHINE, PROCESS = "study", "machine", "process"
#: Config-file keys that name a field differently from Python.
FILE_ALIASES = {"params": "params_fn"}
#: Config-file keys that are not part of the study's definition but of one run of it.
RUN_KEYS = ("num_trials", "timeout")


def _arg(
    default: Any = MISSING,
    *,
    doc: str,
    stored: str | None = None,
    scope: str = STUDY,
    cli: Callable[[str], Any] | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    meta = {"doc": doc, "stored": stored, "scope": scope, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _keep_runs_flag(text: str) -> str | int:
    return int(text) if text.isdigit() else text


@dataclass(frozen=True)
class TunerConfig:
    """Everything that defines a study and how this process runs it."""

    script: str | os.PathLike[str] = _arg(
        doc="Path of the training script.", stored="script", cli=str
    )
    metric: str = _arg(
        doc="TensorBoard scalar tag the script logs, e.g. 'charts/episodic_return'.",
        stored="metric",
        cli=str,
    )
    target_scores: Mapping[str, Sequence[float] | None] = _arg(
        doc="{env_id: [low, high]}: the normalized score is (x - low) / (high - low); "
        "low > high for a metric where lower is better; {env_id: None} (one environment only) "
        "keeps the raw metric.",
        stored="targets",
    )
    params_fn: ParamsFn | SearchSpace | Mapping[str, Any] = _arg(
        doc="params_fn(trial) -> dict of flag to value, sampled with trial.suggest_* or fixed; "
        "or a SearchSpace, or its dict form (the 'params' table of a config file).",
        stored="space",
    )
    direction: str = _arg("maximize", doc="'maximize' or 'minimize'.", stored="direction", cli=str)
    aggregation_type: str = _arg(
        "average",
        doc="How environments combine: 'average', 'median', 'max', 'min', or 'iqm' (the "
        "interquartile mean of all environment x seed scores pooled, as rliable computes it).",
        stored="aggregation",
        cli=str,
    )
    metric_last_n_average_window: int = _arg(
        50,
        doc="How many of the metric's last points make an experiment's score.",
        stored="window",
        cli=int,
    )
    sampler: optuna.samplers.BaseSampler | None = _arg(
        None,
        doc="An Optuna sampler (default: Optuna's, TPE); in a file {name = 'TPESampler', ...}.",
        stored="sampler",
    )
    pruner: optuna.pruners.BasePruner | None = _arg(
        None,
        doc="An Optuna pruner (default: Optuna's, median); in a file {name = 'MedianPruner', ...}.",
        stored="pruner",
    )
    storage: str | os.PathLike[str] | BaseStorage = _arg(
        DEFAULT_STORAGE,
        doc="Where the study is stored: a database URL (sqlite:///cleanrl_hpopt.db, "
        "postgresql://user@host/db, mysql://user@host/db), a journal file (study.log), or an "
        "Optuna storage; SQLite paths are made absolute.",
        scope=PROCESS,
        cli=str,
    )
    study_name: str = _arg(
        "",
        doc="The study to create or continue (if it was defined the same way). Default from "
        "Python: tuner_<unix time>; from a config file: its study_name, else the file's name.",
        scope=PROCESS,
        cli=str,
    )
    wandb_kwargs: Mapping[str, Any] | None = _arg(
        None,
        doc="When given, each trial is tracked as a wandb run with these arguments.",
        stored="wandb_kwargs",
    )
    num_seeds: int | None = _arg(
        None,
        doc="Seeds per environment (first_seed .. first_seed + num_seeds - 1) averaged in each "
        "trial.",
        stored="num_seeds",
        cli=int,
    )
    _: KW_ONLY
    first_seed: int = _arg(
        0,
        doc="The first seed of each trial (0, as CleanRL); a validation study starts after every "
        "seed its tuning study used.",
        stored="first_seed",
        cli=int,
    )
    interpreter: str | os.PathLike[str] | None = _arg(
        None,
        doc="Executable that runs the script (default: this Python); another virtual "
        "environment's Python keeps the script's pinned dependencies apart.",
        stored="interpreter",
        scope=MACHINE,
        cli=str,
    )
    runs_dir: str | os.PathLike[str] | None = _arg(
        None,
        doc="Study folder with one directory per experiment (default nbtune_runs/<study_name>); "
        "usable as tensorboard --logdir.",
        stored="runs_dir",
        scope=MACHINE,
        cli=str,
    )
    env: Mapping[str, str] = _arg(
        doc="Environment variables of the experiments, over the defaults (OMP_NUM_THREADS=1).",
        stored="env",
        factory=dict,
    )
    experiment_timeout: float | None = _arg(
        None,
        doc="Seconds after which one experiment is stopped and fails its trial (default: no "
        "limit; stall_warning says when one seems stuck).",
        stored="experiment_timeout",
        cli=float,
    )
    stall_warning: float | None = _arg(
        600.0,
        doc="Seconds an experiment may write nothing (no output, no TensorBoard record) before "
        "the log, the widget and nbtune show say it seems stuck; 0 or None: never. It only "
        "warns: experiment_timeout stops such experiments.",
        scope=PROCESS,
        cli=float,
    )
    max_consecutive_failures: int | None = _arg(
        5,
        doc="Stop the study after this many failed trials in a row.",
        stored="max_consecutive_failures",
        cli=int,
    )
    heartbeat_interval: int = _arg(
        60,
        doc="Seconds between heartbeats of running trials; a trial whose process died is failed "
        "after twice this and retried.",
        stored="heartbeat_interval",
        cli=int,
    )
    env_flag: str = _arg(
        "env-id", doc="Flag that receives the environment id.", stored="env_flag", cli=str
    )
    seed_flag: str = _arg("seed", doc="Flag that receives the seed.", stored="seed_flag", cli=str)
    keep_runs: str | int = _arg(
        "all",
        doc="Disk retention of experiment folders: 'all', 'logs' (stdout, stderr and TensorBoard "
        "files only), or k (the k best trials' folders whole, logs only for the others).",
        stored="keep_runs",
        cli=_keep_runs_flag,
    )
    n_slots: int | None = _arg(
        None,
        doc="Experiments run at once (default: one per CPU this process may use, from its "
        "affinity and cgroup quota, fewer if memory is short).",
        scope=PROCESS,
        cli=int,
    )
    reporting: str = _arg(
        "checkpoint",
        doc="'checkpoint' reports the trial's value while experiments run, at each of "
        "`checkpoints` steps of training progress, so a pruner can stop a bad trial early; "
        "'seed' reports after each seed, as CleanRL's tuner.",
        stored="reporting",
        cli=str,
    )
    checkpoints: int = _arg(
        10,
        doc="Checkpoints per experiment (10: every 10% of training).",
        stored="checkpoints",
        cli=int,
    )
    progress_flag: str = _arg(
        "total-timesteps",
        doc="The flag holding the training length in steps (checkpoints are judged against it).",
        stored="progress_flag",
        cli=str,
    )
    slot_env: Sequence[Mapping[str, str]] = _arg(
        doc="Environment variables per slot, e.g. [{CUDA_VISIBLE_DEVICES = '0'}, "
        "{CUDA_VISIBLE_DEVICES = '1'}].",
        scope=PROCESS,
        factory=tuple,
    )
    cluster: Any = _arg(
        None,
        doc="A Dask cluster to run the experiments on: a scheduler address (tcp://host:8786), "
        "a distributed.Client or a cluster object (LocalCluster, SLURMCluster); each Dask worker "
        "runs an nbtune worker with one slot per thread. None: they run in this process.",
        scope=PROCESS,
        cli=str,
    )
    local_slots: int = _arg(
        0,
        doc="With a cluster, experiments this process runs too (0: the cluster runs them all).",
        scope=PROCESS,
        cli=int,
    )
    memory_per_experiment: int | None = _arg(
        DEFAULT_MEMORY_PER_EXPERIMENT,
        doc="Bytes one experiment needs: fewer default slots if memory is short, and no new "
        "experiment while less is available.",
        scope=PROCESS,
        cli=int,
    )
    progress_bar: bool | None = _arg(
        None,
        doc="Show a terminal progress bar (default: when stderr is a terminal).",
        scope=PROCESS,
        cli=bool,
    )
    override_spec: bool = _arg(
        False,
        doc="Continue an existing study though it was defined differently, storing the new "
        "definition (the old one is kept in its history).",
        scope=PROCESS,
        cli=bool,
    )
    verbose: bool = _arg(
        True, doc="Print one line per experiment and trial.", scope=PROCESS, cli=bool
    )

    # ------------------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        set_ = object.__setattr__
        script = Path(self.script).expanduser()
        if not script.is_file():
            raise ConfigError(
                f"script: {str(self.script)!r} is not a file (looked for {script.resolve()}). "
                "Give the path of the training script, relative to the current directory or "
                "absolute."
            )
        set_(self, "script", script.resolve())
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(
                "metric must be the TensorBoard tag the script logs, such as "
                f"'charts/episodic_return'; got {self.metric!r}."
            )
        params_fn = self.params_fn
        if isinstance(params_fn, Mapping):
            params_fn = SearchSpace.from_dict(params_fn)
            set_(self, "params_fn", params_fn)
        if not callable(params_fn):
            raise ConfigError(
                "params_fn must be a function of an Optuna trial returning a dict, or a "
                "SearchSpace."
            )
        direction = self.direction
        if isinstance(direction, optuna.study.StudyDirection):
            direction = direction.name.lower()
            set_(self, "direction", direction)
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"direction must be 'maximize' or 'minimize'; got {direction!r}.")
        set_(self, "target_scores", check_target_scores(self.target_scores))
        set_(self, "aggregation_type", check_aggregation(self.aggregation_type))
        for name in ("metric_last_n_average_window", "heartbeat_interval", "checkpoints"):
            check_positive_int(name, getattr(self, name))
        if isinstance(self.first_seed, bool) or not isinstance(self.first_seed, int):
            raise ConfigError(f"first_seed must be a whole number >= 0; got {self.first_seed!r}.")
        if self.first_seed < 0:
            raise ConfigError(f"first_seed must be a whole number >= 0; got {self.first_seed!r}.")
        for name in ("num_seeds", "max_consecutive_failures", "n_slots"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        if self.experiment_timeout is not None and not self.experiment_timeout > 0:
            raise ConfigError(
                "experiment_timeout must be a positive number of seconds or None; "
                f"got {self.experiment_timeout!r}."
            )
        if self.stall_warning is not None:
            if isinstance(self.stall_warning, bool) or not isinstance(
                self.stall_warning, (int, float)
            ):
                raise ConfigError(
                    f"stall_warning must be a number of seconds, or 0 or None for no warning; "
                    f"got {self.stall_warning!r}."
                )
            if not self.stall_warning >= 0:
                raise ConfigError(f"stall_warning must be >= 0; got {self.stall_warning!r}.")
            set_(self, "stall_warning", float(self.stall_warning) or None)
        if self.reporting not in ("checkpoint", "seed"):
            raise ConfigError(f"reporting must be 'checkpoint' or 'seed'; got {self.reporting!r}.")
        if self.reporting == "seed":
            set_(self, "checkpoints", 1)
        set_(self, "keep_runs", check_keep_runs(self.keep_runs))
        for name in ("env_flag", "seed_flag", "progress_flag"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(
                    f"{name} must be a flag name such as 'seed'; got {getattr(self, name)!r}."
                )
        if self.memory_per_experiment is not None:
            check_positive_int("memory_per_experiment", self.memory_per_experiment)
        set_(self, "cluster", check_cluster(self.cluster))
        if isinstance(self.local_slots, bool) or not isinstance(self.local_slots, int):
            raise ConfigError(f"local_slots must be a whole number >= 0; got {self.local_slots!r}.")
        if self.local_slots < 0:
            raise ConfigError(f"local_slots must be a whole number >= 0; got {self.local_slots!r}.")
        set_(self, "study_name", self.study_name or f"tuner_{int(time.time())}")
        set_(self, "wandb_kwargs", dict(self.wandb_kwargs) if self.wandb_kwargs else None)
        set_(self, "interpreter", str(self.interpreter or sys.executable))
        runs_dir = self.runs_dir
        if runs_dir is None:
            runs_dir = Path("nbtune_runs") / folder_name(self.study_name)
        set_(self, "runs_dir", Path(runs_dir).expanduser().resolve())
        set_(self, "env", {str(k): str(v) for k, v in (self.env or {}).items()})
        set_(self, "slot_env", tuple({str(k): str(v) for k, v in e.items()} for e in self.slot_env))
        if self.n_slots is None:
            set_(self, "n_slots", default_slots(self.memory_per_experiment or 0))
        space, note = record_space(params_fn)  # type: ignore[arg-type]
        set_(self, "_space", space)
        set_(self, "_space_note", note)

    def __repr__(self) -> str:
        # The dataclass's own repr would print the storage URL with its password.
        parts = []
        for f in config_fields():
            value = getattr(self, f.name)
            if f.name != "storage":
                parts.append(f"{f.name}={value!r}")
            elif isinstance(value, BaseStorage):
                parts.append(f"storage=<{type(value).__name__} {describe_storage(value)}>")
            else:
                parts.append(f"storage={describe_storage(value)!r}")
        return f"TunerConfig({', '.join(parts)})"

    # ------------------------------------------------------------------------------ derived
    @property
    def space(self) -> SearchSpace | None:
        """The declarative search space, or ``None`` when ``params_fn`` is not declarative."""
        return self._space  # type: ignore[attr-defined, no-any-return]

    @property
    def space_note(self) -> str:
        """Why ``params_fn`` is not declarative ("" when it is)."""
        return self._space_note  # type: ignore[attr-defined, no-any-return]

    def replace(self, **changes: Any) -> TunerConfig:
        """A copy with some fields changed, validated like a new one."""
        unknown = sorted(set(changes) - field_names())
        if unknown:
            raise ConfigError(_unknown_message("TunerConfig", unknown, field_names()))
        return replace(self, **changes)

    # ------------------------------------------------------------------------------ the spec
    def to_spec(self) -> StudySpec:
        """The study spec stored with the study: every field whose metadata names a key."""
        values: dict[str, Any] = {}
        for f in config_fields():
            key = f.metadata["stored"]
            if key is not None:
                values[key] = _to_stored(f.name, getattr(self, f.name), self)
        return StudySpec(
            **values,
            space_note=self.space_note,
            script_sha256=hashlib.sha256(Path(self.script).read_bytes()).hexdigest(),
        )

    @classmethod
    def from_spec(cls, spec: StudySpec, **process: Any) -> TunerConfig:
        """The config a stored spec defines, with this process's own fields from ``process``.

        Raises:
            ConfigError: When the spec's search space is not declarative (only the process that
                has the ``params_fn`` can run it).
        """
        if spec.space is None:
            raise ConfigError(
                f"the study samples its parameters with a params_fn that is not declarative "
                f"({spec.space_note}), so only the process that has that function can run its "
                "trials. Write the space as a table (nbtune.SearchSpace or the 'params' table "
                "of a config file) to let workers join."
            )
        kwargs: dict[str, Any] = {}
        for f in config_fields():
            key = f.metadata["stored"]
            if key is not None:
                kwargs[f.name] = _from_stored(f.name, getattr(spec, key))
        if not kwargs.get("runs_dir"):
            kwargs["runs_dir"] = None
        unknown = sorted(set(process) - field_names())
        if unknown:
            raise ConfigError(_unknown_message("from_spec", unknown, field_names()))
        kwargs.update(process)
        return cls(**kwargs)

    # ------------------------------------------------------------------------------ files
    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base: Path | None = None, source: str = "config"
    ) -> TunerConfig:
        """Build from a config file's table (keys are field names; ``params`` for params_fn).

        Relative ``script``, ``runs_dir`` and SQLite ``storage`` paths are taken relative to
        ``base`` (the config file's folder), so a config works from any current directory.

        Raises:
            ConfigError: For an unknown key (naming the closest valid one) or a missing field.
        """
        known = file_keys()
        unknown = sorted(set(data) - known - set(RUN_KEYS))
        if unknown:
            raise ConfigError(_unknown_message(source, unknown, known | set(RUN_KEYS)))
        kwargs = {FILE_ALIASES.get(k, k): v for k, v in data.items() if k not in RUN_KEYS}
        for f in config_fields():
            if f.default is MISSING and f.default_factory is MISSING and f.name not in kwargs:
                raise ConfigError(f"{source} needs the field {_file_key(f.name)!r}")
        if base is not None:
            for key in ("script", "runs_dir"):
                if kwargs.get(key) is not None and not Path(kwargs[key]).expanduser().is_absolute():
                    kwargs[key] = str(base / Path(kwargs[key]).expanduser())
            storage = kwargs.get("storage")
            if isinstance(storage, str) and storage.startswith("sqlite:///"):
                db = storage[len("sqlite:///") :]
                if db and not db.startswith(":") and not Path(db).is_absolute():
                    kwargs["storage"] = "sqlite:///" + str(base / db)
        for key, kind in (("sampler", "samplers"), ("pruner", "pruners")):
            value = kwargs.get(key)
            if value is not None and not isinstance(
                value, (optuna.samplers.BaseSampler, optuna.pruners.BasePruner)
            ):
                kwargs[key] = build_component(value, kind)
        return cls(**kwargs)


# ---------------------------------------------------------------------------------- helpers
def config_fields() -> tuple[Any, ...]:
    """The fields of :class:`TunerConfig`, in order."""
    return fields(TunerConfig)


def field_names() -> set[str]:
    """The names of :class:`TunerConfig`'s fields."""
    return {f.name for f in config_fields()}


def file_keys() -> set[str]:
    """The keys a config file may use for the study's definition."""
    return {_file_key(f.name) for f in config_fields()}


def _file_key(name: str) -> str:
    return next((k for k, v in FILE_ALIASES.items() if v == name), name)


def _unknown_message(source: str, unknown: Sequence[str], known: set[str]) -> str:
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        parts.append(key + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"{source}: unknown field(s) {', '.join(parts)}; known: {', '.join(sorted(known))}"


def folder_name(study_name: str) -> str:
    """A study's name as one folder name: never a path (``/``, ``..``), unicode and spaces kept.

    Separators and ``%`` are percent-encoded, so different names give different folders.

    Example:
        >>> folder_name("ppo cartpole é"), folder_name("../../x"), folder_name("/etc")
        ('ppo cartpole é', '..%2F..%2Fx', '%2Fetc')
        >>> folder_name(".."), folder_name("live.r1")
        ('%2E%2E', 'live.r1')
    """
    name = study_name.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    name = name.replace("\0", "%00")
    if name in ("", ".", ".."):
        name = name.replace(".", "%2E") or "%00"
    return name


def check_positive_int(name: str, value: object) -> None:
    """Refuse anything but a whole number >= 1, naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1; got {value!r}.")


def _to_stored(name: str, value: Any, config: TunerConfig) -> Any:
    if name == "target_scores":
        return {k: None if v is None else list(v) for k, v in value.items()}
    if name == "params_fn":
        return None if config.space is None else config.space.to_dict()
    if name in ("sampler", "pruner"):
        return describe_component(value)
    if name in ("script", "runs_dir"):
        return str(value)
    if name in ("env", "wandb_kwargs"):
        return None if value is None else dict(value)
    return value


def _from_stored(name: str, value: Any) -> Any:
    if name == "params_fn":
        return SearchSpace.from_dict(value)
    if name == "sampler":
        return build_component(value, "samplers")
    if name == "pruner":
        return build_component(value, "pruners")
    return value


def add_config_flags(
    parser: argparse.ArgumentParser, scopes: Sequence[str], exclude: Sequence[str] = ()
) -> None:
    """Add a ``--field-name`` flag for each field of the given scopes that has one.

    Flags default to ``None`` (not given), so a config file's value stands unless overridden;
    :func:`flag_values` collects what was given.
    """
    for f in config_fields():
        kind = f.metadata["cli"]
        if kind is None or f.metadata["scope"] not in scopes or f.name in exclude:
            continue
        text = _help_text(f.metadata["doc"])
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        else:
            parser.add_argument(
                flag,
                dest=f.name,
                type=kind,
                default=None,
                help=text,
                metavar=f.name.upper(),
            )


def _help_text(doc: str) -> str:
    """A field's documentation as argparse help: lower case like argparse's own, ``%`` escaped."""
    if len(doc) > 1 and doc[0].isupper() and doc[1].islower():
        doc = doc[0].lower() + doc[1:]
    return doc.replace("%", "%%")


def flag_values(
    args: argparse.Namespace, scopes: Sequence[str], exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """The config fields given as flags (those not given are left out)."""
    out = {}
    for f in config_fields():
        if f.metadata["cli"] is None or f.name in exclude:
            continue
        if f.metadata["scope"] in scopes:
            value = getattr(args, f.name, None)
            if value is not None:
                out[f.name] = value
    return out


def _docstring() -> str:
    lines = [
        "Everything that defines a study and how this process runs it (frozen; see",
        ":meth:`replace`).",
        "",
        "``nbtune.Tuner`` takes exactly these arguments; a config file holds them as keys",
        "(``params`` for ``params_fn``), the command line as ``--field-name`` flags.",
        "",
        "Attributes:",
    ]
    for f in config_fields():
        where = {
            STUDY: "stored with the study",
            MACHINE: "stored; a worker may set its own",
            PROCESS: "this process only",
        }[f.metadata["scope"]]
        lines.append(f"    {f.name}: {f.metadata['doc']} ({where})")
    return "\n".join(lines)


TunerConfig.__doc__ = _docstring()
