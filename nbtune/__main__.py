"""The ``nbtune`` command line: tune, worker, enqueue, validate, show, export.

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
from nbtune._config import MACHINE, PROCESS, STUDY, TunerConfig, add_config_flags, flag_values
from nbtune._errors import NbtuneError, StudyNotFoundError
from nbtune._output import env_seed_hint, plural, stall_note
from nbtune._results import trial_config, trial_flags
from nbtune._spec import StudySpec
from nbtune._study_view import StudyView, list_studies
from nbtune._trust import describe_for_review, signature_problem
from nbtune._tuner import Tuner, sign_stored_spec
from nbtune._validation import ValidationReport
from nbtune.plots import get_status_info, top_trials

#: A worker sets only what belongs to its machine and process; the study defines the rest.
_WORKER_SCOPES = (MACHINE, PROCESS)
#: ... except these: the worker's own --storage/--study say which study it joins.
_WORKER_OWN = ("storage", "study_name", "override_spec")


class CLIError(NbtuneError):
    """A user error: printed as one line."""


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML, YAML or JSON config file holding the Python API's fields.

    Its keys are the fields of :class:`~nbtune.TunerConfig` (``params`` for ``params_fn``),
    plus ``num_trials`` and ``timeout``; they are checked when the Tuner is built.
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
    return dict(data)


def tuner_from_config(
    config: Mapping[str, Any], base: Path | None = None, source: str = "config"
) -> Tuner:
    """Build a Tuner from a config file's table (see :meth:`TunerConfig.from_mapping`)."""
    return Tuner(TunerConfig.from_mapping(config, base=base, source=source))


# ------------------------------------------------------------------------------------ commands
def default_study_name(
    config_path: str | os.PathLike[str],
    config: Mapping[str, Any],
    num_seeds: int | None = None,
) -> tuple[str, str]:
    """The study a config file runs when no ``--study-name`` is given, and where it comes from.

    Running the same command again must continue the same study, so the name is the config
    file's ``study_name`` field or else the file's name without its suffix. A study averages a
    fixed number of seeds per trial: a ``--num-seeds`` other than the file's (a short try) gets
    a study of its own, named with it, instead of being refused by the file's study.

    Args:
        config_path: The config file.
        config: Its fields, as read (before command-line overrides).
        num_seeds: ``--num-seeds``, if given.

    Returns:
        ``(name, origin)``, the origin in words for the line that tells the name.

    Example:
        >>> default_study_name("examples/cartpole_acrobot.toml", {"num_seeds": 3})
        ('cartpole_acrobot', "from the config file's name")
        >>> default_study_name("examples/cartpole_acrobot.toml", {"num_seeds": 3}, num_seeds=1)
        ('cartpole_acrobot_1seed', "from the config file's name and --num-seeds")
        >>> default_study_name("study.toml", {"study_name": "ppo"})
        ('ppo', "the config file's study_name")

    """
    name = config.get("study_name")
    if isinstance(name, str) and name:
        return name, "the config file's study_name"
    name = Path(config_path).stem
    if num_seeds is not None and num_seeds != config.get("num_seeds"):
        return f"{name}_{num_seeds}{'seed' if num_seeds == 1 else 'seeds'}", (
            "from the config file's name and --num-seeds"
        )
    return name, "from the config file's name"


def cmd_tune(args: argparse.Namespace) -> int:
    """`nbtune tune CONFIG`: run (or with --reserve-only, record) a study."""
    config = load_config(args.config)
    if args.study_name is None:
        # Without a name the same command continues the same study when run again.
        name, origin = default_study_name(args.config, config, args.num_seeds)
        config["study_name"] = name
        print(
            f"nbtune: study {name!r} ({origin}; running this command again continues it, "
            "--study-name NAME starts another)",
            flush=True,
        )
    config.update(flag_values(args, (STUDY, MACHINE, PROCESS)))
    for key in ("num_trials", "timeout"):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    if "num_trials" not in config:
        raise CLIError("give the number of trials: num_trials in the config or --num-trials")
    file = Path(args.config)
    tuner = tuner_from_config(
        config, base=file.resolve().parent, source=f"config file {file.name!r}"
    )
    if args.reserve_only:
        total = tuner.reserve(config["num_trials"], config.get("num_seeds"))
        print(
            f"nbtune: study {tuner.config.study_name!r} recorded with a total of "
            f"{plural(total, 'trial')}"
        )
        return 0
    # Tuner.tune prints the best trial and its command line.
    tuner.tune(config["num_trials"], config.get("num_seeds"), timeout=config.get("timeout"))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """`nbtune worker`: join a study and work until its total is reached."""
    overrides = flag_values(args, _WORKER_SCOPES, exclude=_WORKER_OWN)
    session = Tuner.from_study(args.storage, args.study, **overrides).session(
        None, timeout=args.timeout
    )
    info = session.status()
    where = StudyView.describe(args.storage)
    print(
        f"nbtune worker: study {args.study!r} in {where}: "
        f"{info.n_finished} of {info.total} trials finished",
        flush=True,
    )
    summary = session.run()
    info = session.status()
    print(
        f"nbtune worker: done ({summary.finished} trials here); study at {info.n_finished} of "
        f"{info.total}",
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


def cmd_validate(args: argparse.Namespace) -> int:
    """`nbtune validate`: run (or resume) the validation of a study's best configurations."""
    overrides = flag_values(args, _WORKER_SCOPES, exclude=_WORKER_OWN)
    tuner = Tuner.from_study(args.storage, args.study, **overrides)
    report = tuner.validate(args.top_k, args.num_seeds, timeout=args.timeout)
    if not tuner.config.verbose:  # a verbose Tuner printed it
        print(report.table())
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    """`nbtune trust`: show what a study's stored definition runs, then sign it with this key.

    A study's definition is signed with a key that never enters its database, so a worker runs
    only definitions its owner made (see the README's Security section). A study written by an
    older nbtune, or one whose definition was changed in the database, is refused until its
    owner has looked at what it runs and signed it here.
    """
    with StudyView(args.storage, args.study) as view:
        raw = view.user_attrs.get(_attrs.STUDY_SPEC)
        if raw is None:
            raise CLIError(f"study {args.study!r} has no nbtune definition to sign")
        problem = signature_problem(args.study, dict(view.user_attrs))
    print(f"study {args.study!r} in {StudyView.describe(args.storage)} runs:")
    for line in describe_for_review(raw):
        print("  " + line)
    if problem is None:
        print("nbtune: its definition is signed with this machine's key already")
        return 0
    print(f"nbtune: {problem}")
    if not args.yes:
        print("nbtune: if you recognize all of the above, sign it with: nbtune trust ... --yes")
        return 1
    sign_stored_spec(args.storage, args.study, raw)
    print("nbtune: signed with this machine's key; workers with the same key will run it")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """`nbtune show`: list studies, or summarize one with its best configuration.

    It reads the study through :class:`~nbtune.StudyView` and the same status info as the
    widget's status line (:func:`nbtune.plots.get_status_info`).
    """
    if args.study is None:
        studies = list_studies(args.storage)
        if not studies:
            print(f"no study in {StudyView.describe(args.storage)}")
        for name, n_trials in studies:
            print(f"{name}\t{plural(n_trials, 'trial')}")
        return 0
    with StudyView(args.storage, args.study) as view:
        _print_summary(view, args.top)
        report = _validation_of(args.storage, view)
    if report is not None:
        print()
        print(report.table())
    return 0


def _validation_of(storage: str, view: StudyView) -> ValidationReport | None:
    """The validation report of a study (a tuning study or a validation study), if it has one."""
    if _attrs.VALIDATION_OF in view.user_attrs:
        return ValidationReport.from_view(view)
    name = view.user_attrs.get(_attrs.VALIDATION_STUDY)
    if not isinstance(name, str):
        return None
    try:
        validation = StudyView(storage, name)
    except StudyNotFoundError:  # deleted since: the study shows as not validated
        return None
    with validation:
        return ValidationReport.from_view(validation)


def _print_objectives(view: StudyView) -> None:
    """A study of several objectives (a plain Optuna one): counts and each objective's best."""
    directions = ", ".join(d.name.lower() for d in view.directions)
    print(f"study {view.study_name!r} in {view.storage_description} ({directions})")
    info = get_status_info(view)
    counts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(info.counts.items()) if n)
    print(f"  {plural(view.n_trials, 'trial')}: {counts or 'none yet'}")
    names = view.metric_names or tuple(f"objective {i}" for i in range(len(view.directions)))
    for i, name in enumerate(names):
        number = view.best_number(i)
        if number is None:
            print(f"  best {name}: no completed trial yet")
            continue
        values = ", ".join(_fmt(v) for v in view.trial(number).values)
        print(f"  best {name}: trial {number} ({values})")
    print(
        "  nbtune scores one objective; this study has several: export a trial with "
        "nbtune export --trial N"
    )


def _print_summary(view: StudyView, top: int) -> None:
    if view.is_multi_objective:
        _print_objectives(view)
        return
    raw_spec = view.spec
    spec = None if raw_spec is None else StudySpec.from_json(raw_spec)
    info = get_status_info(view)
    print(
        f"study {view.study_name!r} in {view.storage_description} ({view.direction.name.lower()})"
    )
    if spec is not None:
        targets = ", ".join(f"{e} {t}" for e, t in spec.targets.items())
        print(
            f"  metric {spec.metric} (last {spec.window}), {spec.aggregation} over {targets}; "
            f"{plural(spec.num_seeds, 'seed') if spec.num_seeds else 'seeds not set yet'}"
        )
    total = f" of {info.total}" if info.total is not None else ""
    counts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(info.counts.items()) if n)
    print(f"  {info.n_finished}{total} finished; {counts}")
    for trial in view.trials:
        note = stall_note(trial)
        if note:
            print(f"  trial {trial.number} (running) seems stuck: {note}")
    best = top_trials(view, top)
    if not best:
        print("  no completed trial yet")
        return
    envs = list(spec.targets) if spec is not None else []
    names = sorted(best[0].params)
    header = ["trial", "value", *envs, *names]
    rows = []
    for t in best:
        per_env = t.user_attrs.get(_attrs.NORMALIZED_SCORES) or {}
        rows.append(
            [
                str(t.number),
                _fmt(t.value),
                *(_fmt(_mean(per_env.get(e))) for e in envs),
                *(_fmt(t.params.get(k)) for k in names),
            ]
        )
    _print_table(header, rows)
    print(f"\nbest configuration as a command line ({env_seed_hint(spec)}):")
    print("  " + shlex.join(trial_flags(best[0], spec)))


def cmd_export(args: argparse.Namespace) -> int:
    """`nbtune export`: the best (or a given) trial's configuration as JSON."""
    with StudyView(args.storage, args.study) as view:
        spec = None if view.spec is None else StudySpec.from_json(view.spec)
        if args.trial is not None:
            try:
                trial = view.trial(args.trial)
            except KeyError:
                raise CLIError(f"study {args.study!r} has no trial {args.trial}") from None
        elif view.is_multi_objective:
            raise CLIError(
                f"study {args.study!r} has {len(view.directions)} objectives, so it has no single "
                "best trial: give --trial N (nbtune show lists the best trial of each objective)"
            )
        else:
            trial = view.best_trial
            if trial is None:
                raise CLIError(f"study {args.study!r} has no completed trial yet")
        report = _validation_of(args.storage, view)
    out = {
        "study": args.study,
        "trial": trial.number,
        "value": trial.value if len(trial.values or ()) <= 1 else None,
        "values": trial.values,
        "state": trial.state.name,
        "params": trial.params,
        "config": trial_config(trial, spec),
        "command": trial_flags(trial, spec),
        _attrs.RAW_SCORES: trial.user_attrs.get(_attrs.RAW_SCORES),
        _attrs.NORMALIZED_SCORES: trial.user_attrs.get(_attrs.NORMALIZED_SCORES),
    }
    if report is not None:
        out["validation"] = report.to_dict()
    text = json.dumps(out, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"nbtune: wrote {args.output}")
        if report is not None:
            table = Path(args.output).with_suffix(".validation.md")
            table.write_text(report.markdown() + "\n")
            print(f"nbtune: wrote {table} (the validation as a Markdown table)")
            print(f"nbtune: {report.statement}")
    else:
        print(text)
    return 0


# ------------------------------------------------------------------------------------- helpers
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


# ---------------------------------------------------------------------------------------- main
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # prog is "nbtune" or, for a subcommand, "nbtune tune".
        self.exit(2, f"nbtune: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        # An unknown argument after a subcommand is that subcommand's error, not nbtune's.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            commands = getattr(self, "commands", {})
            parser = commands.get(getattr(parsed, "command", None), self)
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


_STORAGE_HELP = (
    "where the study is stored: a database URL (sqlite:///cleanrl_hpopt.db, "
    "postgresql://user@host/db, mysql://user@host/db) or a journal file (study.log)"
)
_STUDY_HELP = "the study's name (nbtune show --storage URL lists them)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="nbtune", description="Tune training scripts across tasks with Optuna.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")

    p = command("tune", "run a study from a TOML, YAML or JSON config file")
    p.add_argument("config", help="the config file: the Tuner's fields and a [params] table")
    p.add_argument(
        "--num-trials", type=int, help="trials to add to the study (default: the config's)"
    )
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    add_config_flags(p, (STUDY, MACHINE, PROCESS))
    p.add_argument(
        "--reserve-only",
        action="store_true",
        help="record the study and its budget without running: workers run it",
    )
    p.set_defaults(func=cmd_tune)

    p = command("worker", "join a study and work until its total is reached")
    p.add_argument("--storage", required=True, help=_STORAGE_HELP)
    p.add_argument("--study", required=True, help=_STUDY_HELP)
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    add_config_flags(p, _WORKER_SCOPES, exclude=_WORKER_OWN)
    p.set_defaults(func=cmd_worker)

    p = command("enqueue", "queue known configurations (baselines)")
    p.add_argument("--storage", required=True, help=_STORAGE_HELP)
    p.add_argument("--study", required=True, help=_STUDY_HELP)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--params", action="append", help="JSON object of flag to value")
    group.add_argument("--defaults", action="store_true", help="the script's own defaults")
    p.set_defaults(func=cmd_enqueue)

    p = command(
        "validate", "re-run a study's best configurations on fresh seeds and report with intervals"
    )
    p.add_argument("--storage", required=True, help=_STORAGE_HELP)
    p.add_argument("--study", required=True, help=_STUDY_HELP + " (the tuning study)")
    p.add_argument(
        "--top-k", type=int, default=5, help="best distinct configurations to validate (default 5)"
    )
    p.add_argument(
        "--num-seeds", type=int, default=10, help="fresh seeds per environment (default 10)"
    )
    p.add_argument("--timeout", type=float, help="stop starting runs after this many seconds")
    add_config_flags(p, _WORKER_SCOPES, exclude=_WORKER_OWN)
    p.set_defaults(func=cmd_validate)

    p = command("trust", "show what a study's stored definition runs, and sign it with this key")
    p.add_argument("--storage", required=True, help=_STORAGE_HELP)
    p.add_argument("--study", required=True, help=_STUDY_HELP)
    p.add_argument("--yes", action="store_true", help="sign it (after reading what it runs)")
    p.set_defaults(func=cmd_trust)

    p = command("show", "a summary table and the best configuration")
    p.add_argument("--storage", required=True, help=_STORAGE_HELP)
    p.add_argument("--study", help=_STUDY_HELP + "; default: list the studies")
    p.add_argument("--top", type=int, default=10, help="trials in the table (default: 10)")
    p.set_defaults(func=cmd_show)

    p = command("export", "the best (or a given) trial's configuration as JSON")
    p.add_argument("--storage", required=True, help=_STORAGE_HELP)
    p.add_argument("--study", required=True, help=_STUDY_HELP)
    p.add_argument("--trial", type=int, help="this trial's number instead of the best")
    p.add_argument("-o", "--output", help="write the JSON to this file instead of printing it")
    p.set_defaults(func=cmd_export)
    parser.commands = dict(sub.choices)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    # Optuna's INFO lines ("[I ...] A new study created") would interleave with nbtune's.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return int(args.func(args))
    except (NbtuneError, ValueError, OSError) as exc:
        print(f"nbtune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbtune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
