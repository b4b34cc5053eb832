"""Validation of a study's best configurations on fresh seeds, and the report a paper can use.

What a tuning study calls its best is the maximum over trials of a noisy estimate (one to three
seeds of an RL run): the winner's curse makes it look better than it is, and a fragile
configuration cannot be told from a robust one. Validation re-runs the ``top_k`` best distinct
configurations on every environment with ``num_seeds`` seeds that no trial of the study used.

How it is stored: a linked study ``<name>.validation`` in the same storage (its study user
attribute ``nbtune:validation_of`` names the tuning study, the seeds and the validated trials;
the tuning study's ``nbtune:validation`` names it). It holds one trial per configuration, enqueued
with the configuration's parameters and the user attributes ``validates_trial`` (the tuning
trial's number) and ``tuning_score`` (its value there); its spec is the tuning study's with
``num_seeds`` fresh seeds from ``first_seed`` (after every seed the tuning study used), no pruner,
and ``iqm`` aggregation, so each trial's value is its configuration's fresh-seed IQM. The tuning
trials are not touched, and the validation study is run by the same scheduler, budget and workers
as tuning: ``nbtune worker --study <name>.validation`` helps, and a crash is resumed like any
study work. ``nbtune show``, ``nbtune export``, :class:`~nbtune.StudyView` and optuna-dashboard
see it as a study of its own.

:class:`ValidationReport` reads a validation study (through a :class:`~nbtune.StudyView`) and
computes, per configuration, the interquartile mean of the normalized scores pooled over
environments x fresh seeds with a 95% stratified bootstrap confidence interval, the mean with its
interval, per-environment means with intervals, and the probability of improvement of the
recommended configuration over each other one (see :mod:`nbtune._stats`, checked against
``rliable``). The recommended configuration is the one with the highest validated IQM.
"""

from __future__ import annotations

import math
import platform
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nbtune import _attrs, _stats
from nbtune._errors import ConfigError
from nbtune._results import trial_config, trial_flags
from nbtune._spec import StudySpec
from nbtune._study_view import StudyView
from nbtune._version import __version__

__all__ = [
    "ValidatedConfiguration",
    "ValidationRecord",
    "ValidationReport",
    "fresh_first_seed",
    "select_configurations",
    "validation_study_name",
]

#: The suffix of a validation study's name.
SUFFIX = ".validation"


def validation_study_name(study_name: str) -> str:
    """The name of the study that validates ``study_name``.

    Example:
        >>> validation_study_name("ppo_cartpole_acrobot")
        'ppo_cartpole_acrobot.validation'
    """
    return study_name + SUFFIX


@dataclass(frozen=True)
class ValidationRecord:
    """What a validation study records about itself (study attribute ``nbtune:validation_of``).

    Attributes:
        study: The tuning study it validates.
        seeds: The fresh seeds.
        trials: The validated tuning trials' numbers, in the order they were chosen.
    """

    study: str
    seeds: tuple[int, ...]
    trials: tuple[int, ...]

    @classmethod
    def read(cls, user_attrs: Mapping[str, Any]) -> ValidationRecord | None:
        """The record in a study's user attributes, or ``None`` if it is not a validation study."""
        info = user_attrs.get(_attrs.VALIDATION_OF)
        if not isinstance(info, Mapping):
            return None
        return cls(
            study=str(info.get("study", "")),
            seeds=tuple(int(s) for s in info.get("seeds") or ()),
            trials=tuple(int(n) for n in info.get("trials") or ()),
        )

    def write(self, study: optuna.Study) -> None:
        """Store it on the validation study."""
        value = {"study": self.study, "seeds": list(self.seeds), "trials": list(self.trials)}
        study.set_user_attr(_attrs.VALIDATION_OF, value)


def fresh_first_seed(trials: Sequence[FrozenTrial], spec: StudySpec) -> int:
    """The first seed after every seed the study's trials used (or would use).

    Reads each trial's ``seeds`` attribute; trials that never started count with the seeds the
    study's spec gives them, so a tuning trial queued now cannot take a validation seed.

    Example:
        >>> import optuna
        >>> spec = StudySpec("s", "p", "m", 5, "maximize", "average", {"A": [0, 1]}, num_seeds=2)
        >>> trial = optuna.trial.create_trial(value=1.0, user_attrs={"seeds": [0, 1, 7]})
        >>> fresh_first_seed([trial], spec)
        8
    """
    last = spec.first_seed + (spec.num_seeds or 1) - 1
    for trial in trials:
        for seed in trial.user_attrs.get(_attrs.SEEDS) or ():
            if isinstance(seed, int) and not isinstance(seed, bool):
                last = max(last, seed)
    return last + 1


def select_configurations(
    trials: Sequence[FrozenTrial], direction: StudyDirection, top_k: int
) -> list[FrozenTrial]:
    """The ``top_k`` best complete trials with distinct parameters, best first.

    Trials with a value that is not finite are left out; of trials with the same parameters (an
    enqueued configuration run twice) the best one stands for them. Ties go to the earliest.

    Example:
        >>> import optuna
        >>> from optuna.distributions import FloatDistribution
        >>> d = {"lr": FloatDistribution(0, 1)}
        >>> trials = [optuna.trial.create_trial(value=v, params={"lr": p}, distributions=d)
        ...           for v, p in [(0.5, 0.1), (0.9, 0.2), (0.8, 0.2), (0.7, 0.3)]]
        >>> for i, t in enumerate(trials): t.number = i
        >>> [t.number for t in select_configurations(trials, StudyDirection.MAXIMIZE, 2)]
        [1, 3]
    """
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    ok = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    ok.sort(key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]
    chosen: list[FrozenTrial] = []
    seen: set[str] = set()
    for trial in ok:
        key = repr(sorted(trial.params.items()))
        if key in seen:
            continue
        seen.add(key)
        chosen.append(trial)
        if len(chosen) == top_k:
            break
    return chosen


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidatedConfiguration:
    """One configuration's fresh-seed scores and statistics.

    Attributes:
        trial: The number of the tuning study's trial whose configuration this is.
        validation_trial: The number of the validation study's trial that re-ran it.
        state: The validation trial's state (``"COMPLETE"``, ``"RUNNING"``, ``"WAITING"``,
            ``"FAIL"``, ...).
        params: The configuration's sampled parameters, by Optuna name.
        config: Every value it passes to the script, by flag, fixed values included.
        command: Its command line (interpreter, script, flags; add the environment and seed).
        tuning_score: Its value in the tuning study (what the sampler saw).
        seeds: The fresh seeds.
        env_ids: The environments, in the order of ``scores``' columns.
        scores: Normalized scores, ``(seeds, environments)``; NaN where none (yet).
        raw_scores: Raw scores, same shape.
        iqm: IQM of the scores pooled over environments x seeds, with its 95% stratified
            bootstrap interval; over the seeds done so far while it runs (``None`` before).
        mean: The mean with its interval, likewise.
        per_env: Per environment, the mean over seeds with its bootstrap interval.
        probability_of_improvement: P(recommended > this), per environment the probability that a
            run of the recommended configuration beats a run of this one, averaged; ``None`` for
            the recommended one itself and for configurations not fully validated.
        fail_reason: Why the validation trial failed ("" otherwise).
    """

    trial: int
    validation_trial: int
    state: str
    params: Mapping[str, Any]
    config: Mapping[str, Any]
    command: tuple[str, ...]
    tuning_score: float | None
    seeds: tuple[int, ...]
    env_ids: tuple[str, ...]
    scores: np.ndarray = field(repr=False)
    raw_scores: np.ndarray = field(repr=False)
    iqm: _stats.Estimate | None
    mean: _stats.Estimate | None
    per_env: Mapping[str, _stats.Estimate]
    probability_of_improvement: float | None = None
    fail_reason: str = ""

    @property
    def n_done(self) -> int:
        """How many (seed, environment) runs have a score."""
        return int(np.isfinite(self.scores).sum())

    @property
    def complete(self) -> bool:
        """Whether every seed of every environment has a score and the trial completed."""
        return self.state == "COMPLETE" and self.n_done == self.scores.size > 0

    @property
    def gap(self) -> float | None:
        """Fresh-seed IQM minus tuning score (negative: tuning was optimistic)."""
        if self.iqm is None or self.tuning_score is None:
            return None
        return self.iqm.value - self.tuning_score

    def gap_line(self) -> str:
        """``#30: tuning said 0.920, fresh seeds say 0.874 [0.850, 0.900]``."""
        said = "-" if self.tuning_score is None else f"{self.tuning_score:.3f}"
        if self.iqm is None:
            fresh = "no fresh-seed score yet"
        else:
            partial = "" if self.complete else f" (after {self.n_done} of {self.scores.size} runs)"
            fresh = f"fresh seeds say {self.iqm}{partial}"
        return f"#{self.trial}: tuning said {said}, {fresh}"


@dataclass(frozen=True)
class ValidationReport:
    """A validation study read back: each configuration's statistics and the recommendation.

    Build it with :meth:`from_view` (a :class:`~nbtune.StudyView` of the validation study) or
    :meth:`from_storage`; :meth:`nbtune.Tuner.validate` returns one.

    Attributes:
        study_name: The tuning study.
        validation_study: The validation study.
        seeds: The fresh seeds, the same for every configuration and environment.
        env_ids: The environments.
        direction: The tuning study's direction.
        configurations: The validated configurations, in the order of their tuning score (best
            first).
        recommended: The fully validated configuration with the best fresh-seed IQM, or
            ``None`` while none is.
        reps: Bootstrap resamples behind each interval.
        versions: Package versions of the run (nbtune, Optuna, numpy, this Python, and the
            script's interpreter as the trials recorded it).

    Example:
        >>> report = tuner.validate(top_k=5, num_seeds=10)  # doctest: +SKIP
        >>> print(report.statement)  # doctest: +SKIP
        #30 and #15 are indistinguishable at 10 seeds: 0.910 [0.880, 0.930] vs 0.900 [...]
    """

    study_name: str
    validation_study: str
    seeds: tuple[int, ...]
    env_ids: tuple[str, ...]
    direction: StudyDirection
    configurations: tuple[ValidatedConfiguration, ...]
    recommended: ValidatedConfiguration | None
    reps: int = _stats.DEFAULT_REPS
    versions: Mapping[str, str] = field(default_factory=dict)
    spec: StudySpec | None = field(default=None, repr=False)

    # ------------------------------------------------------------------------------ reading
    @classmethod
    def from_storage(
        cls, storage: Any, study_name: str, *, reps: int = _stats.DEFAULT_REPS
    ) -> ValidationReport:
        """Read the validation of ``study_name`` (a tuning study, or its validation study).

        Raises:
            ConfigError: When the study has never been validated.
        """
        with StudyView(storage, study_name) as view:
            if _attrs.VALIDATION_OF in view.user_attrs:
                return cls.from_view(view, reps=reps)
            name = view.user_attrs.get(_attrs.VALIDATION_STUDY)
        if not isinstance(name, str):
            raise ConfigError(
                f"study {study_name!r} has not been validated yet: run "
                f"nbtune validate --storage URL --study {shlex.quote(study_name)} "
                "(or tuner.validate())"
            )
        with StudyView(storage, name) as view:
            return cls.from_view(view, reps=reps)

    @classmethod
    def from_view(cls, view: StudyView, *, reps: int = _stats.DEFAULT_REPS) -> ValidationReport:
        """Compute the report from a (refreshed) view of a validation study.

        Raises:
            ConfigError: When the view's study is not a validation study.
        """
        record = ValidationRecord.read(view.user_attrs)
        if record is None:
            raise ConfigError(f"study {view.study_name!r} is not a validation study")
        raw_spec = view.spec
        spec = None if raw_spec is None else StudySpec.from_json(raw_spec)
        seeds = record.seeds
        envs = tuple(spec.targets) if spec is not None else ()
        direction = view.direction
        sign = 1.0 if direction == StudyDirection.MAXIMIZE else -1.0
        latest: dict[int, FrozenTrial] = {}
        for trial in view.trials:
            number = trial.user_attrs.get(_attrs.VALIDATES_TRIAL)
            if not isinstance(number, int):
                continue
            held = latest.get(number)
            if held is None or _rank(trial) >= _rank(held):
                latest[number] = trial
        versions = _versions(view.trials)
        configs = [_configuration(trial, spec, seeds, envs, reps) for trial in latest.values()]
        configs.sort(
            key=lambda c: (
                c.tuning_score is None,
                -sign * (c.tuning_score or 0.0),
                c.trial,
            )
        )
        done = [c for c in configs if c.complete and c.iqm is not None]
        recommended = None
        if done:
            recommended = max(done, key=lambda c: (sign * c.iqm.value, -c.trial))  # type: ignore[union-attr]
            best = sign * recommended.scores
            configs = [
                c
                if c is recommended or not c.complete
                else _with_poi(c, _stats.probability_of_improvement(best, sign * c.scores))
                for c in configs
            ]
            recommended = next(c for c in configs if c.trial == recommended.trial)
        return cls(
            study_name=record.study,
            validation_study=view.study_name,
            seeds=seeds,
            env_ids=envs,
            direction=direction,
            configurations=tuple(configs),
            recommended=recommended,
            reps=reps,
            versions=versions,
            spec=spec,
        )

    # ------------------------------------------------------------------------------ words
    @property
    def complete(self) -> bool:
        """Whether every configuration is fully validated."""
        return bool(self.configurations) and all(c.complete for c in self.configurations)

    @property
    def runner_up(self) -> ValidatedConfiguration | None:
        """The fully validated configuration with the next best IQM after the recommended."""
        if self.recommended is None:
            return None
        sign = 1.0 if self.direction == StudyDirection.MAXIMIZE else -1.0
        others = [
            c
            for c in self.configurations
            if c.complete and c.iqm is not None and c.trial != self.recommended.trial
        ]
        if not others:
            return None
        return max(others, key=lambda c: (sign * c.iqm.value, -c.trial))  # type: ignore[union-attr]

    @property
    def statement(self) -> str:
        """The recommendation in plain words, with its uncertainty.

        ``"#30 and #15 are indistinguishable at 10 seeds: 0.910 [0.880, 0.930] vs 0.900
        [0.870, 0.930]"`` when the intervals overlap; otherwise that the recommended one is
        better, with the probability of improvement.
        """
        rec = self.recommended
        if rec is None:
            n = len(self.configurations)
            return f"no configuration is fully validated yet ({n} being validated)"
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) != 1 else ''}"
        other = self.runner_up
        if other is None:
            return f"#{rec.trial} is recommended: fresh-seed IQM {rec.iqm} at {seeds}"
        assert rec.iqm is not None and other.iqm is not None
        if rec.iqm.overlaps(other.iqm):
            return (
                f"#{rec.trial} and #{other.trial} are indistinguishable at {seeds}: "
                f"{rec.iqm} vs {other.iqm}; #{rec.trial} is recommended (highest IQM, "
                f"P(#{rec.trial} > #{other.trial}) = {other.probability_of_improvement:.2f})"
            )
        return (
            f"#{rec.trial} is recommended: better than the next, #{other.trial}, at {seeds}: "
            f"{rec.iqm} vs {other.iqm} (the intervals do not overlap; "
            f"P(#{rec.trial} > #{other.trial}) = {other.probability_of_improvement:.2f})"
        )

    @property
    def naive_best(self) -> ValidatedConfiguration | None:
        """The configuration with the best tuning score (what "best trial" means in tuning)."""
        return self.configurations[0] if self.configurations else None

    def gap_lines(self) -> list[str]:
        """One line per configuration: its tuning score beside its fresh-seed IQM."""
        return [c.gap_line() for c in self.configurations]

    def table(self) -> str:
        """A plain-text table of the configurations, the statement and the gaps."""
        header = ["trial", "tuning", "IQM [95% CI]", "mean [95% CI]", *self.env_ids, "P(rec>)"]
        rows = []
        for c in self.configurations:
            mark = "*" if self.recommended is not None and c.trial == self.recommended.trial else ""
            rows.append(
                [
                    f"{mark}#{c.trial}",
                    _fmt(c.tuning_score),
                    _est(c.iqm) + _progress(c),
                    _est(c.mean),
                    *(_est(c.per_env.get(e), 2) for e in self.env_ids),
                    _fmt(c.probability_of_improvement, 2),
                ]
            )
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines = [
            f"validation of {self.study_name!r} ({self.validation_study!r}): "
            f"{len(self.configurations)} configurations x {len(self.env_ids)} environments x "
            f"{len(self.seeds)} fresh seeds ({_seed_range(self.seeds)})"
        ]
        if rows:
            lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
            for row in rows:
                lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
        lines.append(f"  {self.statement}")
        naive = self.naive_best
        if naive is not None and naive.iqm is not None:
            lines.append(f"  winner's curse: {naive.gap_line()}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """A Markdown table a paper can use, with a caption saying how it was computed."""
        envs = list(self.env_ids)
        head = ["Configuration", "Tuning score", "IQM [95% CI]", "Mean [95% CI]", *envs]
        head.append("P(rec. > this)")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in self.configurations:
            rec = self.recommended is not None and c.trial == self.recommended.trial
            name = f"**#{c.trial} (recommended)**" if rec else f"#{c.trial}"
            cells = [
                name,
                _fmt(c.tuning_score, 3),
                _est(c.iqm) + _progress(c),
                _est(c.mean),
                *(_est(c.per_env.get(e)) for e in envs),
                _fmt(c.probability_of_improvement, 2),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(
            f"Normalized scores on {', '.join(envs)}, {len(self.seeds)} fresh seeds per "
            f"environment ({_seed_range(self.seeds)}, never used in tuning). IQM: interquartile "
            "mean over environments x seeds pooled; intervals: 95% stratified bootstrap "
            f"({self.reps:,} resamples, runs resampled within each environment) as in rliable "
            "(Agarwal et al., 2021); P(rec. > this): probability of improvement of the "
            "recommended configuration. Tuning score: the configuration's value during tuning."
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The ``validation`` object of ``nbtune export`` (JSON values)."""
        rec = self.recommended
        out: dict[str, Any] = {
            "study": self.validation_study,
            "seeds": list(self.seeds),
            "env_ids": list(self.env_ids),
            "statistic": "IQM of normalized scores over environments x seeds; 95% stratified "
            f"bootstrap intervals ({self.reps} resamples)",
            "configurations": [_config_dict(c) for c in self.configurations],
            "recommended": None,
            "statement": self.statement,
            "versions": dict(self.versions),
            "markdown": self.markdown(),
        }
        if rec is not None:
            out["recommended"] = {
                "trial": rec.trial,
                "params": dict(rec.params),
                "config": dict(rec.config),
                "command": list(rec.command),
                "iqm": _num(rec.iqm.value if rec.iqm else None),
                "ci_low": _num(rec.iqm.low if rec.iqm else None),
                "ci_high": _num(rec.iqm.high if rec.iqm else None),
            }
        return out


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _rank(trial: FrozenTrial) -> tuple[int, int]:
    """Which of several validation trials of one configuration stands: complete, then newest."""
    order = {TrialState.COMPLETE: 3, TrialState.RUNNING: 2, TrialState.WAITING: 1}
    return order.get(trial.state, 0), trial.number


def _matrix(
    values: Any, seeds: Sequence[int], trial_seeds: Sequence[int], envs: Sequence[str]
) -> np.ndarray:
    out = np.full((len(seeds), len(envs)), np.nan)
    if not isinstance(values, Mapping):
        return out
    row_of = {s: i for i, s in enumerate(seeds)}
    for j, env in enumerate(envs):
        column = values.get(env) or []
        for k, value in enumerate(column):
            if k < len(trial_seeds) and trial_seeds[k] in row_of and value is not None:
                out[row_of[trial_seeds[k]], j] = float(value)
    return out


def _configuration(
    trial: FrozenTrial,
    spec: StudySpec | None,
    seeds: tuple[int, ...],
    envs: tuple[str, ...],
    reps: int,
) -> ValidatedConfiguration:
    trial_seeds = [int(s) for s in trial.user_attrs.get(_attrs.SEEDS) or seeds]
    scores = _matrix(trial.user_attrs.get(_attrs.NORMALIZED_SCORES), seeds, trial_seeds, envs)
    raw = _matrix(trial.user_attrs.get(_attrs.RAW_SCORES), seeds, trial_seeds, envs)
    done = np.all(np.isfinite(scores), axis=1)  # seeds with a score in every environment
    iqm = mean = None
    per_env: dict[str, _stats.Estimate] = {}
    if done.any():
        rows = scores[done]
        iqm = _stats.estimate(rows, "iqm", reps=reps)
        mean = _stats.estimate(rows, "mean", reps=reps)
    for j, env in enumerate(envs):
        column = scores[:, j][np.isfinite(scores[:, j])]
        if column.size:
            per_env[env] = _stats.estimate(column, "mean", reps=reps)
    tuning = trial.user_attrs.get(_attrs.TUNING_SCORE)
    params = dict(trial.params) or dict(trial.system_attrs.get(_attrs.OPTUNA_FIXED_PARAMS) or {})
    probe = trial if trial.params else _with_params(trial, params)
    return ValidatedConfiguration(
        trial=int(trial.user_attrs[_attrs.VALIDATES_TRIAL]),
        validation_trial=trial.number,
        state=trial.state.name,
        params=params,
        config=trial_config(probe, spec),
        command=tuple(trial_flags(probe, spec)),
        tuning_score=float(tuning) if isinstance(tuning, (int, float)) else None,
        seeds=seeds,
        env_ids=envs,
        scores=scores,
        raw_scores=raw,
        iqm=iqm,
        mean=mean,
        per_env=per_env,
        fail_reason=str(trial.user_attrs.get(_attrs.FAIL_REASON) or ""),
    )


def _with_params(trial: FrozenTrial, params: Mapping[str, Any]) -> FrozenTrial:
    """A waiting trial's enqueued parameters, as a trial the result helpers can read."""
    probe = optuna.trial.create_trial(state=TrialState.WAITING, user_attrs=dict(trial.user_attrs))
    probe.params = dict(params)
    return probe


def _with_poi(config: ValidatedConfiguration, poi: float) -> ValidatedConfiguration:
    from dataclasses import replace

    return replace(config, probability_of_improvement=poi)


def _versions(trials: Sequence[FrozenTrial]) -> dict[str, str]:
    out = {
        "nbtune": __version__,
        "optuna": optuna.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for trial in trials:
        recorded = trial.user_attrs.get(_attrs.VERSIONS)
        if isinstance(recorded, Mapping) and recorded.get("interpreter"):
            out["script_interpreter"] = str(recorded["interpreter"])
            break
    return out


def _config_dict(c: ValidatedConfiguration) -> dict[str, Any]:
    return {
        "trial": c.trial,
        "validation_trial": c.validation_trial,
        "state": c.state,
        "params": dict(c.params),
        "config": dict(c.config),
        "command": list(c.command),
        "tuning_score": _num(c.tuning_score),
        "iqm": _num(c.iqm.value if c.iqm else None),
        "ci_low": _num(c.iqm.low if c.iqm else None),
        "ci_high": _num(c.iqm.high if c.iqm else None),
        "mean": _num(c.mean.value if c.mean else None),
        "mean_ci_low": _num(c.mean.low if c.mean else None),
        "mean_ci_high": _num(c.mean.high if c.mean else None),
        "probability_of_improvement": _num(c.probability_of_improvement),
        "seeds": list(c.seeds),
        "per_env": {
            env: {
                "normalized": [_num(v) for v in c.scores[:, j].tolist()],
                "raw": [_num(v) for v in c.raw_scores[:, j].tolist()],
                "mean": _num(c.per_env[env].value) if env in c.per_env else None,
                "ci_low": _num(c.per_env[env].low) if env in c.per_env else None,
                "ci_high": _num(c.per_env[env].high) if env in c.per_env else None,
            }
            for j, env in enumerate(c.env_ids)
        },
        "fail_reason": c.fail_reason or None,
    }


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _est(value: _stats.Estimate | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value.value:.{digits}f} [{value.low:.{digits}f}, {value.high:.{digits}f}]"


def _progress(c: ValidatedConfiguration) -> str:
    if c.complete:
        return ""
    if c.state == "FAIL":
        return " (failed)"
    return f" ({c.n_done}/{c.scores.size} runs)"


def _seed_range(seeds: Sequence[int]) -> str:
    if not seeds:
        return "no seeds"
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}..{seeds[-1]}"
    return "seeds " + ", ".join(str(s) for s in seeds)
