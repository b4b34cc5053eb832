"""The ``nbtune`` command line: tune, worker, enqueue, show, export.

Argument and input errors print one line (``nbtune: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from nbtune import _attrs
from nbtune._budget import budget_state
from nbtune._results import best_trial, trial_config, trial_flags
from nbtune._scheduler import TuningError
from nbtune._spec import StudySpec, build_component
from nbtune._storage import StorageUnavailableError, describe_storage, open_storage
from nbtune._tuner import Tuner

#: Config-file keys that are Tuner constructor arguments, with their Python names.
_TUNER_KEYS = {
    "script",
    "metric",
    "target_scores",
    "direction",
    "aggregation_type",
    "metric_last_n_average_window",
    "storage",
    "study_name",
    "wandb_kwargs",
    "num_seeds",
    "interpreter",
    "runs_dir",
    "env",
    "experiment_timeout",
    "max_consecutive_failures",
    "heartbeat_interval",
    "env_flag",
    "seed_flag",
    "keep_runs",
    "override_spec",
}
_CONFIG_KEYS = _TUNER_KEYS | {"params", "sampler", "pruner", "num_trials", "timeout"}


class CLIError(Exception):
    """A user error: printed as one line."""


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML, YAML or JSON config file holding the Python API's fields.

    Relative ``script``, ``runs_dir`` and SQLite ``storage`` paths are taken relative to the
    config file's folder, so a config works from any current directory.
    """
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"config file {str(path)!r} does not exist")
    text = file.read_text()
    suffix = file.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise CLIError(f"config file {file.name!r}: use a .toml, .yaml or .json file")
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(
            f"config file {file.name!r} is not valid {suffix[1:].upper()}: {exc}"
        ) from None
    if not isinstance(data, Mapping):
        raise CLIError(f"config file {file.name!r} must hold a table of fields")
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise CLIError(
            f"config file {file.name!r}: unknown field(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(_CONFIG_KEYS))}"
        )
    for key in ("script", "metric", "target_scores", "params"):
        if key not in data:
            raise CLIError(f"config file {file.name!r} needs the field {key!r}")
    config = dict(data)
    base = file.resolve().parent
    for key in ("script", "runs_dir"):
        if key in config and not Path(config[key]).expanduser().is_absolute():
            config[key] = str(base / Path(config[key]).expanduser())
    storage = config.get("storage")
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        db = storage[len("sqlite:///") :]
        if db and not db.startswith(":") and not Path(db).is_absolute():
            config["storage"] = "sqlite:///" + str(base / db)
    return config


def tuner_from_config(config: Mapping[str, Any]) -> Tuner:
    """Build a Tuner from a config mapping (see :func:`load_config`)."""
    kwargs = {k: v for k, v in config.items() if k in _TUNER_KEYS}
    kwargs["params_fn"] = config["params"]
    kwargs["sampler"] = build_component(config.get("sampler"), "samplers")
    kwargs["pruner"] = build_component(config.get("pruner"), "pruners")
    return Tuner(**kwargs)


# ------------------------------------------------------------------------------------ commands
def cmd_tune(args: argparse.Namespace) -> int:
    """`nbtune tune CONFIG`: run (or with --reserve-only, record) a study."""
    config = load_config(args.config)
    for key in ("study_name", "storage", "num_trials", "num_seeds", "timeout"):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    if "num_trials" not in config:
        raise CLIError("give the number of trials: num_trials in the config or --num-trials")
    tuner = tuner_from_config(config)
    if args.reserve_only:
        total = tuner.reserve(config["num_trials"], config.get("num_seeds"))
        print(f"nbtune: study {tuner.study_name!r} recorded with a total of {total} trials")
        return 0
    best = tuner.tune(config["num_trials"], config.get("num_seeds"), timeout=config.get("timeout"))
    _print_best(tuner.study, best)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """`nbtune worker`: join a study and work until its total is reached."""
    overrides: dict[str, Any] = {}
    if args.interpreter:
        overrides["interpreter"] = args.interpreter
    if args.runs_dir:
        overrides["runs_dir"] = args.runs_dir
    tuner = Tuner.from_study(args.storage, args.study, **overrides)
    state = budget_state(tuner.study)
    print(
        f"nbtune worker: study {args.study!r} in {describe_storage(args.storage)}: "
        f"{state.finished} of {state.total} trials finished",
        flush=True,
    )
    summary = tuner.work(timeout=args.timeout)
    state = budget_state(tuner.study)
    print(
        f"nbtune worker: done ({summary.finished} trials here); study at {state.finished} of "
        f"{state.total}",
        flush=True,
    )
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    """`nbtune enqueue`: queue baselines (JSON parameters or the script's defaults)."""
    tuner = Tuner.from_study(args.storage, args.study, verbose=False)
    if args.defaults:
        values = tuner.enqueue_defaults()
        print(f"nbtune: enqueued the script's defaults: {json.dumps(values)}")
        return 0
    for text in args.params:
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CLIError(
                f"--params must be a JSON object such as '{{\"learning-rate\": 0.001}}': {exc}"
            ) from None
        if not isinstance(params, dict):
            raise CLIError("--params must be a JSON object of flag to value")
        tuner.enqueue(params)
        print(f"nbtune: enqueued {json.dumps(params)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """`nbtune show`: list studies, or summarize one with its best configuration."""
    storage = open_storage(args.storage, must_exist=True, heartbeat_interval=None)
    if args.study is None:
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
        if not summaries:
            print(f"no study in {describe_storage(args.storage)}")
        for s in summaries:
            print(f"{s.study_name}\t{s.n_trials} trials")
        return 0
    study = _load(storage, args.storage, args.study)
    spec = _spec(study)
    state = budget_state(study)
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    print(
        f"study {args.study!r} in {describe_storage(args.storage)} ({study.direction.name.lower()})"
    )
    if spec is not None:
        targets = ", ".join(f"{e} {t}" for e, t in spec.targets.items())
        print(
            f"  metric {spec.metric} (last {spec.window}), {spec.aggregation} over {targets}; "
            f"{spec.num_seeds} seeds"
        )
    total = f" of {state.total}" if state.total is not None else ""
    print(
        f"  {state.finished}{total} finished; "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    )
    done = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.value is not None and t.state.name == "COMPLETE"
    ]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.value, reverse=maximize)  # type: ignore[arg-type, return-value]
    if not done:
        print("  no completed trial yet")
        return 0
    envs = list(spec.targets) if spec is not None else []
    header = ["trial", "value", *envs, *sorted(done[0].params)]
    rows = []
    for t in done[: args.top]:
        per_env = t.user_attrs.get(_attrs.NORMALIZED_SCORES) or {}
        env_cells = [_fmt(_mean(per_env.get(e))) for e in envs]
        rows.append(
            [
                str(t.number),
                _fmt(t.value),
                *env_cells,
                *(_fmt(t.params.get(k)) for k in header[2 + len(envs) :]),
            ]
        )
    _print_table(header, rows)
    best = done[0]
    print("\nbest configuration as a command line (add the environment and seed):")
    print("  " + shlex.join(trial_flags(best, spec)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`nbtune export`: the best (or a given) trial's configuration as JSON."""
    storage = open_storage(args.storage, must_exist=True, heartbeat_interval=None)
    study = _load(storage, args.storage, args.study)
    spec = _spec(study)
    if args.trial is not None:
        matches = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial]
        if not matches:
            raise CLIError(f"study {args.study!r} has no trial {args.trial}")
        trial = matches[0]
    else:
        trial = best_trial(study)
        if trial is None:
            raise CLIError(f"study {args.study!r} has no completed trial yet")
    out = {
        "study": args.study,
        "trial": trial.number,
        "value": trial.value,
        "state": trial.state.name,
        "params": trial.params,
        "config": trial_config(trial, spec),
        "command": trial_flags(trial, spec),
        _attrs.RAW_SCORES: trial.user_attrs.get(_attrs.RAW_SCORES),
        _attrs.NORMALIZED_SCORES: trial.user_attrs.get(_attrs.NORMALIZED_SCORES),
    }
    text = json.dumps(out, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"nbtune: wrote {args.output}")
    else:
        print(text)
    return 0


# ------------------------------------------------------------------------------------- helpers
def _load(storage: Any, url: str, name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [
            s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        ]
        raise CLIError(
            f"no study {name!r} in {describe_storage(url)}; it has: {', '.join(names) or 'none'}"
        ) from None


def _spec(study: optuna.Study) -> StudySpec | None:
    raw = study.user_attrs.get(_attrs.STUDY_SPEC)
    return None if raw is None else StudySpec.from_json(raw)


def _mean(values: Sequence[float | None] | None) -> float | None:
    xs = [v for v in values or [] if v is not None]
    return sum(xs) / len(xs) if xs else None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def _print_best(study: optuna.Study, best: optuna.trial.FrozenTrial) -> None:
    spec = _spec(study)
    print(f"best trial {best.number}: {best.value}")
    print("  " + shlex.join(trial_flags(best, spec)))


# ---------------------------------------------------------------------------------------- main
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"nbtune: error: {message} (see nbtune {self.prog.split()[-1]} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="nbtune", description="Tune training scripts across tasks with Optuna.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("tune", help="run a study from a TOML, YAML or JSON config file")
    p.add_argument("config")
    p.add_argument("--num-trials", type=int)
    p.add_argument("--num-seeds", type=int)
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--study-name")
    p.add_argument("--storage")
    p.add_argument(
        "--reserve-only",
        action="store_true",
        help="record the study and its budget without running: workers run it",
    )
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("worker", help="join a study and work until its total is reached")
    p.add_argument("--storage", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--timeout", type=float)
    p.add_argument("--interpreter", help="Python that runs the script on this machine")
    p.add_argument("--runs-dir", help="experiment folders on this machine")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("enqueue", help="queue known configurations (baselines)")
    p.add_argument("--storage", required=True)
    p.add_argument("--study", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--params", action="append", help="JSON object of flag to value")
    group.add_argument("--defaults", action="store_true", help="the script's own defaults")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("show", help="a summary table and the best configuration")
    p.add_argument("--storage", required=True)
    p.add_argument("--study", help="default: list the studies")
    p.add_argument("--top", type=int, default=10)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="the best (or a given) trial's configuration as JSON")
    p.add_argument("--storage", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--trial", type=int)
    p.add_argument("-o", "--output")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CLIError, ValueError, TuningError, StorageUnavailableError) as exc:
        print(f"nbtune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbtune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
