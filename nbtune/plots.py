"""The data behind every live chart, computed from a :class:`~nbtune.StudyView`, then drawn.

Each chart comes in two steps, in the style of Optuna's visualization module:

* ``get_X_info(view, ...) -> XInfo``: a small frozen dataclass of numpy arrays, computed without
  plotly (the CLI and tests use these directly). They read the view's numpy columns, so their cost
  is a few vectorized passes, not Python work per trial.
* ``plot_X(info) -> go.Figure`` and ``update_X_figure(fig, info)``: draw with plotly. Updating
  replaces the data of the existing traces (inside ``fig.batch_update()``, one message for a
  ``go.FigureWidget``) and creates them on first use, so a live figure is built once and its trace
  objects are kept. Arrays are handed to plotly as numpy arrays (sent as binary buffers).

plotly is imported only when drawing; without it, drawing raises an :class:`ImportError` that
says ``pip install "nbtune[widgets]"``.

Charts:

* history: each trial's objective value and the best so far, with states;
* parallel coordinates: one ``go.Parcoords`` trace, log axes for log-scaled parameters,
  categorical parameters as indexed ticks, plus the score;
* per-environment scores of the best trial and the top-k (``normalized_scores`` and
  ``raw_scores`` trial user attributes, averaged over seeds);
* learning curves (intermediate values) of running and recently finished trials;
* status counts and an ETA (text, see :func:`format_status`);
* the winner's curse: each validated configuration's tuning score beside its fresh-seed IQM and
  95% interval (a validation study, see :class:`~nbtune.ValidationReport`);
* parameter importance from ``optuna.importance`` (its default evaluator), with the number of
  complete trials it rests on.

Example:
    >>> import optuna
    >>> from nbtune._study_view import StudyView
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(study_name="plots-demo", direction="maximize")
    >>> study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=4)
    >>> view = StudyView.from_study(study)
    >>> info = get_history_info(view)
    >>> len(info.numbers), bool(info.best[-1] == study.best_value)
    (4, True)
    >>> fig = plot_history(info)
    >>> [trace.name for trace in fig.data]
    ['Complete', 'Pruned', 'Best so far']

"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import TrialState

from nbtune import _attrs
from nbtune._attrs import TOTAL_TRIALS
from nbtune._budget import counts_as_finished
from nbtune._study_view import StudyView

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from optuna.trial import FrozenTrial

__all__ = [
    "EnvScoresInfo",
    "HistoryInfo",
    "ImportanceInfo",
    "LearningCurve",
    "LearningCurvesInfo",
    "ParcoordsDimension",
    "ParcoordsInfo",
    "StatusInfo",
    "TrialEnvScores",
    "WinnersCurseInfo",
    "format_duration",
    "format_status",
    "get_env_scores_info",
    "get_history_info",
    "get_importance_info",
    "get_learning_curves_info",
    "get_parcoords_info",
    "get_status_info",
    "get_winners_curse_info",
    "plot_env_scores",
    "plot_history",
    "plot_importance",
    "plot_learning_curves",
    "plot_parcoords",
    "plot_winners_curse",
    "top_trials",
    "update_env_scores_figure",
    "update_history_figure",
    "update_importance_figure",
    "update_learning_curves_figure",
    "update_parcoords_figure",
    "update_winners_curse_figure",
]

_RUNNING = int(TrialState.RUNNING)
_COMPLETE = int(TrialState.COMPLETE)
_PRUNED = int(TrialState.PRUNED)
_FAIL = int(TrialState.FAIL)
_FINISHED = (_COMPLETE, _PRUNED, _FAIL)
# The study's trial budget as nbtune's scheduler records it (``nbtune._attrs.TOTAL_TRIALS``).
_INSTALL_HINT = 'drawing nbtune charts needs plotly: pip install "nbtune[widgets]"'


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _objective_name(view: StudyView, objective: int) -> str:
    names = view.metric_names
    if names and objective < len(names):
        return names[objective]
    if view.is_multi_objective:
        return f"Objective {objective}"
    # An nbtune study's value is the normalized score (the raw metric with a None target).
    return "Normalized score" if view.spec is not None else "Objective value"


def _objective_note(view: StudyView, objective: int) -> str | None:
    if not view.is_multi_objective:
        return None
    return (
        f"multi-objective study: showing objective {objective} of {len(view.directions)} "
        f"({view.directions[objective].name.lower()})"
    )


def _check_objective(view: StudyView, objective: int) -> None:
    if not 0 <= objective < len(view.directions):
        raise ValueError(
            f"objective {objective} out of range: the study has {len(view.directions)} objective(s)"
        )


def _sign(direction: StudyDirection) -> float:
    # Multiply by the sign so that smaller is always better.
    return -1.0 if direction == StudyDirection.MAXIMIZE else 1.0


def _complete_finite(view: StudyView, objective: int) -> tuple[np.ndarray, np.ndarray]:
    cols = view.columns
    values = cols.values[:, objective]
    return (cols.state == _COMPLETE) & np.isfinite(values), values


def _top_k_positions(view: StudyView, objective: int, k: int) -> np.ndarray:
    """Rows of the ``k`` best complete trials with finite values, best first (ties: by number)."""
    ok, values = _complete_finite(view, objective)
    rows = np.flatnonzero(ok)
    if k <= 0 or rows.size == 0:
        return rows[:0]
    keys = _sign(view.directions[objective]) * values[rows]
    if rows.size > k:
        part = np.argpartition(keys, k - 1)[:k]
        rows, keys = rows[part], keys[part]
    order = np.lexsort((rows, keys))  # rows ascend with trial numbers: ties go to the earliest
    return rows[order]


def top_trials(view: StudyView, k: int, objective: int = 0) -> list[FrozenTrial]:
    """The ``k`` best complete trials with finite values, best first (ties: the earliest).

    Example:
        >>> import optuna
        >>> from nbtune._study_view import StudyView
        >>> study = optuna.create_study(study_name="top-demo", direction="maximize")
        >>> study.add_trials([optuna.trial.create_trial(value=v) for v in (0.2, 0.9, 0.5)])
        >>> [t.value for t in top_trials(StudyView.from_study(study), 2)]
        [0.9, 0.5]
    """
    numbers = view.columns.number[_top_k_positions(view, objective, k)]
    return [view.trial(int(n)) for n in numbers]


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryInfo:
    """Each trial's objective value and the best value so far, in trial-number order.

    Attributes:
        numbers: Trial numbers of all trials.
        states: ``int(TrialState)`` of each trial.
        values: The objective value (NaN if the trial has none: running, failed, most pruned).
        best: Best value among complete trials with finite values up to and including each
            trial (NaN before the first one).
        direction: The objective's direction.
        objective: Which objective (0 for single-objective studies).
        objective_name: Axis label.
        note: Set for multi-objective studies (which objective is shown).

    """

    numbers: np.ndarray
    states: np.ndarray
    values: np.ndarray
    best: np.ndarray
    direction: StudyDirection
    objective: int = 0
    objective_name: str = "Objective value"
    note: str | None = None

    @property
    def best_value(self) -> float | None:
        """The best value so far, or ``None``."""
        if self.best.size == 0 or math.isnan(self.best[-1]):
            return None
        return float(self.best[-1])


def get_history_info(view: StudyView, objective: int = 0) -> HistoryInfo:
    """Compute the optimization history of a study view.

    Args:
        view: The study view (refresh it first).
        objective: Which objective to show (multi-objective studies; the note says so).

    Returns:
        The history: values and best-so-far for every trial that started (waiting ones, queued
        or reserved, are left out).

    Example:
        >>> import optuna
        >>> from nbtune._study_view import StudyView
        >>> study = optuna.create_study(study_name="history-demo")
        >>> for v in (3.0, 1.0, 2.0):
        ...     study.add_trial(optuna.trial.create_trial(value=v))
        >>> get_history_info(StudyView.from_study(study)).best.tolist()
        [3.0, 1.0, 1.0]

    """
    _check_objective(view, objective)
    cols = view.columns
    ok, values = _complete_finite(view, objective)
    direction = view.directions[objective]
    sign = _sign(direction)
    keyed = np.where(ok, sign * values, np.inf)
    best = np.minimum.accumulate(keyed) * sign if keyed.size else keyed.copy()
    best[~np.isfinite(best)] = np.nan
    # Waiting trials (queued, or nbtune's budget reservations) have not happened yet: leaving
    # them in would draw the best-so-far line on to the last reservation.
    started = cols.state != int(TrialState.WAITING)
    return HistoryInfo(
        numbers=cols.number[started],
        states=cols.state[started],
        values=values[started],
        best=best[started],
        direction=direction,
        objective=objective,
        objective_name=_objective_name(view, objective),
        note=_objective_note(view, objective),
    )


# --------------------------------------------------------------------------------------------
# Parallel coordinates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParcoordsDimension:
    """One axis of the parallel-coordinates chart.

    Attributes:
        label: Axis title (the parameter name, or the objective name).
        values: One value per shown trial: ``log10`` of the value for log-scaled parameters, the
            index of the choice for categorical ones, the value otherwise.
        range: ``(low, high)`` of the axis, in the same units as ``values``.
        is_log: Whether the parameter's distribution is log-scaled.
        is_categorical: Whether it is categorical.
        tickvals: Where ticks go (log and categorical axes), else ``None``.
        ticktext: Tick labels, in real units (aligned with ``tickvals``), else ``None``.

    """

    label: str
    values: np.ndarray
    range: tuple[float, float]
    is_log: bool = False
    is_categorical: bool = False
    tickvals: tuple[float, ...] | None = None
    ticktext: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ParcoordsInfo:
    """Columns of a parallel-coordinates chart: the score, then one per parameter.

    Only complete trials with a finite objective value that have every shown parameter are
    rows (as in Optuna's ``plot_parallel_coordinate``); ``n_skipped`` counts the complete trials
    left out for lacking a parameter.

    Attributes:
        numbers: Trial number of each row.
        score: The objective column (also the line color).
        dimensions: One column per parameter, sorted by name.
        direction: The objective's direction (the color scale is reversed when minimizing).
        objective: Which objective.
        n_skipped: Complete trials left out because they lack a shown parameter.
        note: Set for multi-objective studies.

    """

    numbers: np.ndarray
    score: ParcoordsDimension
    dimensions: tuple[ParcoordsDimension, ...]
    direction: StudyDirection
    objective: int = 0
    n_skipped: int = 0
    note: str | None = None


def _range(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return (0.0, 1.0)
    return (float(values.min()), float(values.max()))


def _log_ticks(low: float, high: float) -> tuple[tuple[float, ...], tuple[str, ...]]:
    # Ticks at each power of ten inside the range, plus the ends (Optuna's choice too).
    ticks = [float(t) for t in range(math.ceil(low), math.floor(high) + 1)]
    if not ticks or ticks[0] != low:
        ticks.insert(0, low)
    if ticks[-1] != high:
        ticks.append(high)
    return tuple(ticks), tuple(f"{10**t:.3g}" for t in ticks)


def _param_dimension(
    name: str, dist: BaseDistribution | None, column: np.ndarray
) -> ParcoordsDimension:
    if isinstance(dist, CategoricalDistribution):
        ticks = tuple(float(i) for i in range(len(dist.choices)))
        return ParcoordsDimension(
            label=name,
            values=column,
            range=(0.0, float(max(len(dist.choices) - 1, 0))),
            is_categorical=True,
            tickvals=ticks,
            ticktext=tuple(str(c) for c in dist.choices),
        )
    if isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log:
        with np.errstate(divide="ignore", invalid="ignore"):
            logged = np.log10(column)
        low, high = _range(logged)
        tickvals, ticktext = _log_ticks(low, high)
        return ParcoordsDimension(
            label=name,
            values=logged,
            range=(low, high),
            is_log=True,
            tickvals=tickvals,
            ticktext=ticktext,
        )
    return ParcoordsDimension(label=name, values=column, range=_range(column))


def get_parcoords_info(
    view: StudyView, params: Sequence[str] | None = None, objective: int = 0
) -> ParcoordsInfo:
    """Compute the parallel-coordinates columns of a study view.

    Args:
        view: The study view.
        params: Parameters to show (default: those at least half the complete trials have,
            sorted by name: a flag added to the space late shows once enough trials have it,
            instead of hiding every older trial).
        objective: Which objective is the score (multi-objective studies).

    Returns:
        The columns; trials without one of the shown parameters are left out (counted in
        ``n_skipped``), and the note names what is not shown.

    Raises:
        ValueError: A requested parameter does not exist in the study.

    Example:
        >>> import optuna
        >>> from nbtune._study_view import StudyView
        >>> from optuna.distributions import CategoricalDistribution, FloatDistribution
        >>> study = optuna.create_study(study_name="parcoords-demo")
        >>> dists = {"lr": FloatDistribution(1e-4, 1e-1, log=True),
        ...          "batch": CategoricalDistribution([32, 64])}
        >>> for lr, batch, v in ((1e-3, 64, 0.5), (1e-2, 32, 0.7)):
        ...     study.add_trial(optuna.trial.create_trial(
        ...         params={"lr": lr, "batch": batch}, distributions=dists, value=v))
        >>> info = get_parcoords_info(StudyView.from_study(study))
        >>> [d.label for d in info.dimensions], info.dimensions[1].values.round(6).tolist()
        (['batch', 'lr'], [-3.0, -2.0])
        >>> info.dimensions[0].values.tolist(), info.dimensions[0].ticktext
        ([1.0, 0.0], ('32', '64'))

    """
    _check_objective(view, objective)
    cols = view.columns
    ok, values = _complete_finite(view, objective)
    hidden: list[str] = []
    if params is None:
        n_ok = int(ok.sum())
        have = {n: int((ok & ~np.isnan(cols.params[n])).sum()) for n in cols.params}
        names = sorted(n for n, count in have.items() if 2 * count >= n_ok)
        hidden = [f"{n} (in {have[n]} of {n_ok})" for n in sorted(set(have) - set(names))]
    else:
        names = list(params)
    missing = [n for n in names if n not in cols.params]
    if missing:
        raise ValueError(f"no parameter {missing[0]!r} in the study; it has {sorted(cols.params)}")
    has_all = ok.copy()
    for name in names:
        has_all &= ~np.isnan(cols.params[name])
    rows = np.flatnonzero(has_all)
    score_values = values[rows]
    dims = tuple(
        _param_dimension(name, cols.distributions.get(name), cols.params[name][rows])
        for name in names
    )
    return ParcoordsInfo(
        numbers=cols.number[rows],
        score=ParcoordsDimension(
            label=_objective_name(view, objective),
            values=score_values,
            range=_range(score_values),
        ),
        dimensions=dims,
        direction=view.directions[objective],
        objective=objective,
        n_skipped=int(ok.sum()) - int(rows.size),
        note=_join_notes(
            _objective_note(view, objective),
            f"not shown: {', '.join(hidden)}" if hidden else None,
            f"{int(ok.sum()) - int(rows.size)} trials lack a parameter"
            if int(ok.sum()) > rows.size
            else None,
        ),
    )


def _join_notes(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


# --------------------------------------------------------------------------------------------
# Per-environment scores
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialEnvScores:
    """One trial's scores per environment, averaged over seeds (aligned with ``env_ids``).

    Attributes:
        number: The trial number.
        value: Its objective value.
        normalized: Mean normalized score per environment (NaN where none).
        normalized_std: Standard deviation over seeds (0 for one seed, NaN where none).
        raw: Mean raw score per environment (NaN where none).
        n_seeds: How many seeds have a normalized (else raw) score, per environment.

    """

    number: int
    value: float
    normalized: np.ndarray
    normalized_std: np.ndarray
    raw: np.ndarray
    n_seeds: np.ndarray


@dataclass(frozen=True)
class EnvScoresInfo:
    """Per-environment scores of the top-k trials, best first.

    Empty (no ``env_ids``, no ``trials``) for studies without nbtune's score attributes.

    Attributes:
        env_ids: Environments, in the order they first appear (best trial first).
        trials: The top-k complete trials that have per-environment scores, best first.
        direction: The objective's direction.
        objective: Which objective ranks the trials.
        note: Set for multi-objective studies.

    """

    env_ids: tuple[str, ...]
    trials: tuple[TrialEnvScores, ...]
    direction: StudyDirection
    objective: int = 0
    note: str | None = None

    @property
    def best(self) -> TrialEnvScores | None:
        """The best trial's scores, or ``None``."""
        return self.trials[0] if self.trials else None


def _seed_scores(value: Any) -> list[float]:
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item):
            out.append(float(item))
    return out


def _env_dict(attrs: Mapping[str, Any], key: str) -> dict[str, list[float]]:
    scores = attrs.get(key)
    if not isinstance(scores, Mapping):
        return {}
    return {str(env): _seed_scores(v) for env, v in scores.items()}


def get_env_scores_info(view: StudyView, k: int = 5, objective: int = 0) -> EnvScoresInfo:
    """Compute per-environment scores of the best trial and the top-k.

    Reads the ``normalized_scores`` and ``raw_scores`` trial user attributes
    (``{env_id: [score per seed]}``, ``None`` for a seed without a score) and averages over seeds.

    Args:
        view: The study view.
        k: How many of the best trials to include.
        objective: Which objective ranks the trials (multi-objective studies).

    Returns:
        The scores; empty for studies without these attributes.

    Example:
        >>> import optuna
        >>> from nbtune._study_view import StudyView
        >>> study = optuna.create_study(study_name="env-demo", direction="maximize")
        >>> study.add_trial(optuna.trial.create_trial(value=0.6, user_attrs={
        ...     "normalized_scores": {"CartPole-v1": [0.8, 0.6], "Acrobot-v1": [0.4, None]},
        ...     "raw_scores": {"CartPole-v1": [400, 300], "Acrobot-v1": [-300, None]}}))
        >>> info = get_env_scores_info(StudyView.from_study(study))
        >>> info.env_ids, info.best.normalized.round(3).tolist(), info.best.n_seeds.tolist()
        (('CartPole-v1', 'Acrobot-v1'), [0.7, 0.4], [2, 1])

    """
    _check_objective(view, objective)
    numbers = view.columns.number
    env_ids: dict[str, None] = {}
    per_trial = []
    for row in _top_k_positions(view, objective, k):
        trial = view.trial(int(numbers[row]))
        normalized = _env_dict(trial.user_attrs, _attrs.NORMALIZED_SCORES)
        raw = _env_dict(trial.user_attrs, _attrs.RAW_SCORES)
        if not normalized and not raw:
            continue
        for env in (*normalized, *raw):
            env_ids.setdefault(env, None)
        per_trial.append((trial.number, float(trial.values[objective]), normalized, raw))
    envs = tuple(env_ids)
    trials = []
    for number, value, normalized, raw in per_trial:
        norm_mean = np.full(len(envs), np.nan)
        norm_std = np.full(len(envs), np.nan)
        raw_mean = np.full(len(envs), np.nan)
        n_seeds = np.zeros(len(envs), np.int64)
        for i, env in enumerate(envs):
            seeds = normalized.get(env) or []
            if seeds:
                norm_mean[i] = np.mean(seeds)
                norm_std[i] = np.std(seeds)
            if raw.get(env):
                raw_mean[i] = np.mean(raw[env])
            n_seeds[i] = len(seeds) if seeds else len(raw.get(env) or [])
        trials.append(TrialEnvScores(number, value, norm_mean, norm_std, raw_mean, n_seeds))
    return EnvScoresInfo(
        env_ids=envs,
        trials=tuple(trials),
        direction=view.directions[objective],
        objective=objective,
        note=_objective_note(view, objective),
    )


# --------------------------------------------------------------------------------------------
# Learning curves
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearningCurve:
    """The intermediate values of one trial.

    Attributes:
        number: The trial number.
        state: Its state.
        steps: Steps, ascending.
        values: The intermediate value at each step.
        is_best: Whether it is the best trial.

    """

    number: int
    state: TrialState
    steps: np.ndarray
    values: np.ndarray
    is_best: bool = False


@dataclass(frozen=True)
class LearningCurvesInfo:
    """Learning curves of running trials, recently finished ones and the best, by number.

    Attributes:
        curves: One per trial that has intermediate values.
        checkpoints: For an nbtune study, checkpoints per seed: step ``s * checkpoints + k - 1``
            is checkpoint ``k`` of seed ``s``. ``None`` for other studies (Optuna's steps).

    """

    curves: tuple[LearningCurve, ...]
    checkpoints: int | None = None


def get_learning_curves_info(
    view: StudyView, recent: int = 10, include_best: bool = True, max_running: int = 50
) -> LearningCurvesInfo:
    """Collect the intermediate values of running and recently finished trials.

    Args:
        view: The study view.
        recent: How many of the most recently finished trials to include.
        include_best: Also include the best trial (to compare running trials with it).
        max_running: At most this many running trials (the most recently started).

    Returns:
        The curves, by trial number; trials without intermediate values are left out.

    Example:
        >>> import optuna
        >>> from nbtune._study_view import StudyView
        >>> study = optuna.create_study(study_name="curves-demo")
        >>> trial = study.ask()
        >>> trial.report(0.5, step=1); trial.report(0.25, step=2)
        >>> info = get_learning_curves_info(StudyView.from_study(study))
        >>> [(c.number, c.state.name, c.values.tolist()) for c in info.curves]
        [(0, 'RUNNING', [0.5, 0.25])]

    """
    cols = view.columns
    running = np.flatnonzero(cols.state == _RUNNING)
    if running.size > max_running:
        order = np.argsort(cols.datetime_start[running], kind="stable")
        running = running[order[-max_running:]]
    finished = np.flatnonzero(np.isin(cols.state, _FINISHED) & ~np.isnan(cols.datetime_complete))
    if recent <= 0:
        finished = finished[:0]
    elif finished.size > recent:
        times = cols.datetime_complete[finished]
        finished = finished[np.argpartition(times, finished.size - recent)[-recent:]]
    rows = set(running.tolist()) | set(finished.tolist())
    best = view.best_number(0) if include_best and not view.is_multi_objective else None
    if best is not None:
        rows.add(view.position(best))
    curves = []
    for row in sorted(rows):
        trial = view.trial(int(cols.number[row]))
        if not trial.intermediate_values:
            continue
        steps = np.fromiter(sorted(trial.intermediate_values), np.int64)
        values = np.array([trial.intermediate_values[s] for s in steps.tolist()], float)
        curves.append(LearningCurve(trial.number, trial.state, steps, values, trial.number == best))
    spec = view.spec or {}
    checkpoints = spec.get("checkpoints") if spec.get("reporting", "checkpoint") else None
    if not isinstance(checkpoints, int) or isinstance(checkpoints, bool) or checkpoints < 1:
        checkpoints = None
    return LearningCurvesInfo(curves=tuple(curves), checkpoints=checkpoints)


# --------------------------------------------------------------------------------------------
# Status and ETA
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusInfo:
    """Trial counts by state, and an estimate of the time left.

    Attributes:
        counts: Trials per state name (``"RUNNING"``, ``"COMPLETE"``, ...), zeros included.
        n_trials: All trials.
        n_finished: Finished trials as the budget counts them: complete, pruned, and failed
            by their script (not ``n_given_back``).
        total: The trial budget (explicit, or from the study spec), or ``None``.
        remaining: ``total - n_finished`` (not below 0), or ``None``.
        seconds_per_trial: Seconds of wall time per trial at the present pace: the mean run
            time of the recent finished trials divided by the trials running now; ``None``
            when nothing runs or nothing finished yet.
        eta_seconds: Estimated seconds until ``total`` trials are finished (``None`` when
            nothing runs: paused, stopped or idle studies have no ETA).
        elapsed_seconds: Since the first trial started, or ``None``.
        best_value: The best objective value so far (objective 0), or ``None``.
        n_given_back: Failed trials that do not count: interrupted (stopped, Ctrl-C) or whose
            process died; their reservation went back to the queue and runs again.

    """

    counts: Mapping[str, int]
    n_trials: int
    n_finished: int
    total: int | None
    remaining: int | None
    seconds_per_trial: float | None
    eta_seconds: float | None
    elapsed_seconds: float | None
    best_value: float | None = None
    n_given_back: int = 0


def _recorded_total(view: StudyView) -> int | None:
    """The trial budget the study records (nbtune's scheduler), else one in its spec."""
    candidates: list[Any] = [view.user_attrs.get(TOTAL_TRIALS)]
    spec = view.spec or {}
    for scope in (spec, spec.get("budget")):
        if isinstance(scope, Mapping):
            candidates.extend(scope.get(key) for key in ("num_trials", "n_trials"))
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _budget_finished(view: StudyView, counts: Mapping[TrialState, int]) -> int:
    """Finished trials as the budget counts them (see :func:`nbtune._budget.counts_as_finished`).

    Complete and pruned trials count; a failed trial counts unless it was interrupted or its
    process died (it is retried).
    """
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    if not counts[TrialState.FAIL]:
        return finished
    cols = view.columns
    for row in np.flatnonzero(cols.state == _FAIL):
        finished += counts_as_finished(view.trial(int(cols.number[row])))
    return finished


def get_status_info(
    view: StudyView, total: int | None = None, window: int = 20, now: float | None = None
) -> StatusInfo:
    """Count trials by state and estimate the time left.

    The pace is the mean run time of the last ``window`` finished trials divided by the trials
    running now; the ETA is the trials left (running ones counted as half done) at that pace.
    With nothing running there is no ETA: a paused, stopped or idle study does not count down.

    Args:
        view: The study view.
        total: The trial budget; default: the one the study records (``nbtune:total_trials``),
            else ``num_trials``/``n_trials`` in the study spec (at its top level or under
            ``budget``), else unknown (no ETA). Finished trials count against it as nbtune's
            scheduler counts them: a trial failed because its process died is retried, and
            does not count.
        window: How many recent completions give the rate.
        now: The current POSIX time (for tests); default ``time.time()``.

    Returns:
        Counts, rate and ETA.

    Example:
        >>> import datetime, optuna
        >>> from nbtune._study_view import StudyView
        >>> study = optuna.create_study(study_name="status-demo")
        >>> t0 = datetime.datetime(2025, 1, 1, 12, 0, 0)
        >>> def finished(minutes):
        ...     trial = optuna.trial.create_trial(value=1.0)
        ...     trial.datetime_start = t0
        ...     trial.datetime_complete = t0 + datetime.timedelta(minutes=minutes)
        ...     return trial
        >>> study.add_trials([finished(10), finished(20), finished(30)])
        >>> _ = study.ask()
        >>> info = get_status_info(StudyView.from_study(study), total=10,
        ...                        now=(t0 + datetime.timedelta(minutes=30)).timestamp())
        >>> info.counts["COMPLETE"], info.counts["RUNNING"], info.remaining
        (3, 1, 7)
        >>> info.seconds_per_trial, info.eta_seconds  # trials took 20 min on average, 1 runs
        (1200.0, 7800.0)

    """
    cols = view.columns
    now = time.time() if now is None else now
    counts = view.count_states()
    n_finished = _budget_finished(view, counts)
    n_given_back = sum(counts[TrialState(code)] for code in _FINISHED) - n_finished
    if total is None:
        total = _recorded_total(view)
    remaining = None if total is None else max(total - n_finished, 0)
    # The rate comes from how long recent trials took to run, divided among the trials running
    # now: idle time between runs (a pause, a stopped kernel) never inflates it.
    finished = np.isin(cols.state, _FINISHED) & ~np.isnan(cols.datetime_complete)
    finished &= ~np.isnan(cols.datetime_start)
    durations = (cols.datetime_complete - cols.datetime_start)[finished]
    ends = cols.datetime_complete[finished]
    if durations.size > window >= 1:
        recent = np.argpartition(ends, ends.size - window)[-window:]
        durations = durations[recent]
    running = counts[TrialState.RUNNING]
    seconds_per_trial = None
    if durations.size and running:
        seconds_per_trial = float(np.mean(np.maximum(durations, 0.0))) / running
    eta = None
    if remaining == 0:
        eta = 0.0
    elif remaining is not None and seconds_per_trial is not None:
        # Running trials are part done: count each as half a trial left.
        eta = max(remaining - running / 2, 0.5) * seconds_per_trial
    starts = cols.datetime_start[~np.isnan(cols.datetime_start)]
    elapsed = max(now - float(starts.min()), 0.0) if starts.size else None
    best = None if view.is_multi_objective else view.best_number(0)
    return StatusInfo(
        counts={state.name: n for state, n in counts.items()},
        n_trials=view.n_trials,
        n_finished=n_finished,
        total=total,
        remaining=remaining,
        seconds_per_trial=seconds_per_trial,
        eta_seconds=eta,
        elapsed_seconds=elapsed,
        best_value=None if best is None else float(view.trial(best).values[0]),
        n_given_back=n_given_back,
    )


def format_duration(seconds: float) -> str:
    """A duration as people read it: ``42s``, ``3m07s``, ``2h05m``.

    Example:
        >>> format_duration(42.4), format_duration(187), format_duration(7500)
        ('42s', '3m07s', '2h05m')
    """
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_status(info: StatusInfo) -> str:
    """One line of text for a status: counts, progress, best value and ETA.

    The finished trials (complete, pruned, failed by their script) add up to the finished count;
    running, interrupted (given back: stopped, or their process died; they run again) and
    waiting trials follow. The same words as the trial table and the command line.

    Example:
        >>> info = StatusInfo(counts={"RUNNING": 2, "COMPLETE": 10, "PRUNED": 1, "FAIL": 1,
        ...                           "WAITING": 0}, n_trials=14, n_finished=11, total=50,
        ...                   remaining=39, seconds_per_trial=30.0, eta_seconds=1170.0,
        ...                   elapsed_seconds=330.0, best_value=0.8123, n_given_back=1)
        >>> for part in format_status(info).split(" | "):
        ...     print(part)
        11/50 finished: 10 complete, 1 pruned
        2 running, 1 interrupted (run again)
        best 0.8123
        ETA 19m30s

    """
    counts = dict(info.counts)
    failed = counts.get("FAIL", 0) - info.n_given_back
    # What counts against the budget first (it adds up to the finished count), then the rest.
    done_parts = [
        f"{n} {word}"
        for n, word in (
            (counts.get("COMPLETE", 0), "complete"),
            (counts.get("PRUNED", 0), "pruned"),
            (failed, "failed"),
        )
        if n
    ]
    other_parts = [
        f"{n} {word}"
        for n, word in (
            (counts.get("RUNNING", 0), "running"),
            (info.n_given_back, "interrupted (run again)"),
            (counts.get("WAITING", 0), "waiting"),
        )
        if n
    ]
    done = f"{info.n_finished}/{info.total}" if info.total is not None else f"{info.n_finished}"
    text = f"{done} finished"
    if done_parts:
        text += ": " + ", ".join(done_parts)
    if other_parts:
        text += " | " + ", ".join(other_parts)
    if not done_parts and not other_parts:
        text += ": no trials"
    if info.best_value is not None:
        text += f" | best {info.best_value:.4g}"
    if info.eta_seconds is not None and info.remaining:
        text += f" | ETA {format_duration(info.eta_seconds)}"
    return text


# --------------------------------------------------------------------------------------------
# The winner's curse (a validation study)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WinnersCurseInfo:
    """Each validated configuration's tuning score beside its fresh-seed IQM and interval.

    Empty (no ``numbers``) for a study that is not a validation study, or one with nothing
    queued yet. While validation runs, the IQM and interval of a configuration are over the runs
    done so far (``n_done`` of ``n_runs``).

    Attributes:
        numbers: The tuning study's trial numbers, best tuning score first.
        tuning_scores: Each one's value in the tuning study (NaN if unknown).
        iqm: Its fresh-seed IQM (NaN before any seed is done in every environment).
        ci_low: Lower end of the 95% stratified bootstrap interval (NaN likewise).
        ci_high: Upper end.
        n_done: Runs (seed x environment) scored so far.
        n_runs: Runs in all.
        recommended: The recommended configuration's trial number, once one is fully validated.
        n_seeds: Fresh seeds per environment.
        lines: Per configuration, ``#N: tuning said 0.920, fresh seeds say 0.874 [...]``.
        statement: The recommendation in words (see :attr:`ValidationReport.statement`).
    """

    numbers: np.ndarray
    tuning_scores: np.ndarray
    iqm: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_done: np.ndarray
    n_runs: np.ndarray
    recommended: int | None
    n_seeds: int
    lines: tuple[str, ...]
    statement: str

    @classmethod
    def empty(cls, statement: str = "not validated yet") -> WinnersCurseInfo:
        """No configuration: a study not validated (yet)."""
        floats, ints = np.array([], float), np.array([], np.int64)
        return cls(ints, floats, floats, floats, floats, ints, ints, None, 0, (), statement)


def get_winners_curse_info(view: StudyView, *, reps: int | None = None) -> WinnersCurseInfo:
    """Compute the winner's-curse chart of a validation study.

    Args:
        view: A view of the validation study (``<name>.validation``).
        reps: Bootstrap resamples per interval (default: rliable's 50,000; fewer for a live
            chart of many configurations).

    Returns:
        The info; empty when the view's study is not a validation study.

    Example:
        >>> import optuna
        >>> from nbtune._study_view import StudyView
        >>> study = optuna.create_study(study_name="not-validated")
        >>> get_winners_curse_info(StudyView.from_study(study)).statement
        'not validated yet'
    """
    from nbtune._stats import DEFAULT_REPS
    from nbtune._validation import ValidationRecord, ValidationReport

    if ValidationRecord.read(view.user_attrs) is None:
        return WinnersCurseInfo.empty()
    report = ValidationReport.from_view(view, reps=reps or DEFAULT_REPS)
    configs = report.configurations

    def column(get: Callable[[Any], float | None]) -> np.ndarray:
        return np.array([np.nan if (v := get(c)) is None else v for c in configs], float)

    return WinnersCurseInfo(
        numbers=np.array([c.trial for c in configs], np.int64),
        tuning_scores=column(lambda c: c.tuning_score),
        iqm=column(lambda c: c.iqm.value if c.iqm else None),
        ci_low=column(lambda c: c.iqm.low if c.iqm else None),
        ci_high=column(lambda c: c.iqm.high if c.iqm else None),
        n_done=np.array([c.n_done for c in configs], np.int64),
        n_runs=np.array([c.scores.size for c in configs], np.int64),
        recommended=None if report.recommended is None else report.recommended.trial,
        n_seeds=len(report.seeds),
        lines=tuple(report.gap_lines()),
        statement=report.statement,
    )


# --------------------------------------------------------------------------------------------
# Parameter importance
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportanceInfo:
    """How much each parameter matters, from ``optuna.importance``'s default evaluator.

    Attributes:
        params: Parameter names, most important first.
        importances: Their importances (normalized to sum to 1).
        n_trials: The complete trials (finite values) the importances rest on.
        evaluator: The evaluator's class name.
        note: Why there are no importances (too few trials, one parameter, ...), or ``None``.
    """

    params: tuple[str, ...]
    importances: np.ndarray
    n_trials: int
    evaluator: str
    note: str | None = None


def get_importance_info(
    view: StudyView, objective: int = 0, *, min_trials: int = 2
) -> ImportanceInfo:
    """Compute parameter importances of a study's complete trials with Optuna.

    ``optuna.importance.get_param_importances`` with its default evaluator (PED-ANOVA in Optuna
    5, named in the info) runs on an in-memory copy of the view's complete trials (finite
    values), so nothing is written to the storage.

    Args:
        view: The study view.
        objective: Which objective (multi-objective studies).
        min_trials: Fewer complete trials than this give no importances (a note says why).

    Example:
        >>> import optuna
        >>> from nbtune._study_view import StudyView
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(
        ...     study_name="importance-demo", direction="maximize",
        ...     sampler=optuna.samplers.RandomSampler(seed=0))
        >>> study.optimize(lambda t: t.suggest_float("x", 0, 1) + 0 * t.suggest_float("y", 0, 1),
        ...                n_trials=20)
        >>> info = get_importance_info(StudyView.from_study(study))
        >>> info.params[0], info.n_trials
        ('x', 20)
    """
    import warnings

    import optuna

    _check_objective(view, objective)
    ok, _ = _complete_finite(view, objective)
    numbers = view.columns.number[ok]
    trials = [view.trial(int(n)) for n in numbers]
    # Optuna 5's default evaluator, passed by name so that the chart says what it used.
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    evaluator_name = type(evaluator).__name__

    def empty(note: str) -> ImportanceInfo:
        return ImportanceInfo((), np.array([], float), len(trials), evaluator_name, note)

    if len(trials) < min_trials:
        return empty(f"{len(trials)} complete trial(s): importances need at least {min_trials}")
    names = {name for t in trials for name in t.distributions}
    if not names:
        return empty("the trials have no parameters")
    from nbtune._output import quiet_optuna

    with quiet_optuna():  # no "A new study created in memory" line on every refresh
        study = optuna.create_study(directions=list(view.directions))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            study.add_trials(trials)
            target = None
            if view.is_multi_objective:
                target = lambda t: t.values[objective]  # noqa: E731
            importances = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=target
            )
        except (ValueError, RuntimeError) as exc:
            return empty(f"optuna.importance: {exc}")
    if not importances:
        return empty("no parameter varies across the complete trials")
    ordered = sorted(importances.items(), key=lambda kv: -kv[1])
    return ImportanceInfo(
        params=tuple(k for k, _ in ordered),
        importances=np.array([v for _, v in ordered], float),
        n_trials=len(trials),
        evaluator=evaluator_name,
    )


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _go() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return go


def _empty_note(fig: Any, text: str | None) -> None:
    """Say in the middle of an empty chart why it is empty (instead of bare axes)."""
    kept = [a for a in fig.layout.annotations if getattr(a, "name", None) != "nbtune-empty"]
    if text:
        kept.append(
            {
                "name": "nbtune-empty",
                "text": text,
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "font": {"size": 14, "color": "#888"},
            }
        )
    if len(kept) != len(fig.layout.annotations) or text:
        fig.layout.annotations = kept


@contextlib.contextmanager
def _batch(fig: Any) -> Iterator[None]:
    # One message to the browser for a FigureWidget; harmless on a plain Figure.
    batch = getattr(fig, "batch_update", None)
    if batch is None:
        yield
    else:
        with batch():
            yield


def _sync_traces(fig: Any, kinds: Sequence[type], make: Callable[[int], Any]) -> list[Any]:
    """Make ``fig.data`` hold traces of these kinds, keeping the existing ones that fit."""
    data = list(fig.data)
    keep = 0
    while keep < min(len(data), len(kinds)) and type(data[keep]) is kinds[keep]:
        keep += 1
    if keep < len(data):
        fig.data = tuple(data[:keep])
    if keep < len(kinds):
        fig.add_traces([make(i) for i in range(keep, len(kinds))])
    return list(fig.data)


_HISTORY_TRACES = (
    {"name": "Complete", "mode": "markers", "marker": {"color": "#1f77b4", "size": 6}},
    {"name": "Pruned", "mode": "markers", "marker": {"color": "#b0b0b0", "size": 6}},
    {"name": "Best so far", "mode": "lines", "line": {"color": "#d62728", "shape": "hv"}},
)


def _history_trace(i: int) -> Any:
    return _go().Scatter(
        **_HISTORY_TRACES[i],
        hovertemplate="trial %{x}<br>%{y:.4g}<extra>%{fullData.name}</extra>",
    )


def update_history_figure(fig: Any, info: HistoryInfo) -> Any:
    """Draw (first call) or update in place an optimization-history figure.

    Args:
        fig: A ``go.Figure`` or ``go.FigureWidget`` (empty, or drawn by this function).
        info: From :func:`get_history_info`.

    Returns:
        ``fig``, with three traces: complete trials, pruned trials that have a value, and the
        best value so far.

    """
    go = _go()
    first = len(fig.data) == 0
    finite = np.isfinite(info.values)
    complete = finite & (info.states == _COMPLETE)
    pruned = finite & (info.states == _PRUNED)
    has_best = ~np.isnan(info.best)
    with _batch(fig):
        traces = _sync_traces(fig, (go.Scatter, go.Scatter, go.Scatter), _history_trace)
        traces[0].x, traces[0].y = info.numbers[complete], info.values[complete]
        traces[1].x, traces[1].y = info.numbers[pruned], info.values[pruned]
        traces[2].x, traces[2].y = info.numbers[has_best], info.best[has_best]
        fig.update_xaxes(dtick=_integer_dtick(info.numbers))
        if first:
            fig.update_layout(
                title={"text": "Optimization history" + (f" ({info.note})" if info.note else "")},
                xaxis_title="Trial",
                yaxis_title=info.objective_name,
                legend={"orientation": "h", "y": -0.2},
            )
        _empty_note(fig, None if finite.any() else "No finished trial yet")
    return fig


def _integer_dtick(xs: np.ndarray) -> int | None:
    """Ticks at every integer over a short range (trial numbers, checkpoints), else automatic.

    Plotly's automatic ticks over a range of a few units fall between integers (0.2, 0.4, ...).
    """
    if xs.size == 0:
        return None
    return 1 if float(np.max(xs)) - float(np.min(xs)) <= 10 else None


def plot_history(info: HistoryInfo) -> go.Figure:
    """A new optimization-history figure (see :func:`update_history_figure`)."""
    return update_history_figure(_go().Figure(), info)


def _dimension_dict(dim: ParcoordsDimension) -> dict[str, Any]:
    out: dict[str, Any] = {"label": dim.label, "values": dim.values, "range": list(dim.range)}
    if dim.tickvals is not None:
        out["tickvals"] = list(dim.tickvals)
        out["ticktext"] = list(dim.ticktext or ())
    return out


def update_parcoords_figure(fig: Any, info: ParcoordsInfo) -> Any:
    """Draw (first call) or update in place a parallel-coordinates figure: one ``go.Parcoords``.

    Args:
        fig: A ``go.Figure`` or ``go.FigureWidget`` (empty, or drawn by this function).
        info: From :func:`get_parcoords_info`.

    Returns:
        ``fig``, with one ``go.Parcoords`` trace colored by the score.

    """
    go = _go()
    with _batch(fig):
        (trace,) = _sync_traces(fig, (go.Parcoords,), lambda i: go.Parcoords())
        trace.dimensions = [_dimension_dict(d) for d in (info.score, *info.dimensions)]
        # Slanted axis titles: level ones overlap from about six parameters in a narrow panel.
        slanted = len(info.dimensions) >= 4
        trace.labelangle = (-45 if len(info.dimensions) >= 7 else -25) if slanted else 0
        trace.domain = {"y": [0.0, 0.85 if slanted else 1.0]}  # room for them under the title
        trace.line = {
            "color": info.score.values,
            "colorscale": "Blues",
            "reversescale": info.direction == StudyDirection.MINIMIZE,
            "showscale": True,
            "colorbar": {"title": {"text": info.score.label}},
        }
        # The note (parameters not shown, trials left out) changes as trials come in.
        fig.update_layout(title={"text": "Parameters" + (f" ({info.note})" if info.note else "")})
        _empty_note(fig, None if info.numbers.size else "No complete trial yet")
    return fig


def plot_parcoords(info: ParcoordsInfo) -> go.Figure:
    """A new parallel-coordinates figure (see :func:`update_parcoords_figure`)."""
    return update_parcoords_figure(_go().Figure(), info)


def update_env_scores_figure(fig: Any, info: EnvScoresInfo) -> Any:
    """Draw (first call) or update in place the per-environment scores: grouped bars.

    One bar trace per trial (best first, fully opaque; the others lighter), the mean normalized
    score per environment with the seed standard deviation as error bars, and the raw score in the
    hover text. An empty ``info`` leaves no traces.

    Args:
        fig: A ``go.Figure`` or ``go.FigureWidget`` (empty, or drawn by this function).
        info: From :func:`get_env_scores_info`.

    Returns:
        ``fig``.

    """
    go = _go()
    first = len(fig.data) == 0
    envs = list(info.env_ids)
    with _batch(fig):
        traces = _sync_traces(fig, [go.Bar] * len(info.trials), lambda i: go.Bar())
        for i, (trace, scores) in enumerate(zip(traces, info.trials, strict=True)):
            trace.x = envs
            trace.y = scores.normalized
            trace.error_y = {"type": "data", "array": scores.normalized_std, "visible": True}
            trace.customdata = np.stack([scores.raw, scores.n_seeds.astype(float)], axis=-1)
            trace.name = ("best " if i == 0 else "") + f"#{scores.number} ({scores.value:.4g})"
            trace.opacity = 1.0 if i == 0 else 0.55
            trace.hovertemplate = (
                "%{x}<br>normalized %{y:.3f}<br>raw %{customdata[0]:.4g}"
                "<br>%{customdata[1]} seed(s)<extra>%{fullData.name}</extra>"
            )
        if first:
            fig.update_layout(
                title={"text": "Scores per environment (top trials)"},
                barmode="group",
                yaxis_title="Normalized score (mean over seeds)",
            )
        _empty_note(
            fig,
            None
            if fig.data and any(len(t.x or ()) for t in fig.data)
            else "No complete trial with per-environment scores yet",
        )
    return fig


def plot_env_scores(info: EnvScoresInfo) -> go.Figure:
    """A new per-environment scores figure (see :func:`update_env_scores_figure`)."""
    return update_env_scores_figure(_go().Figure(), info)


def update_learning_curves_figure(fig: Any, info: LearningCurvesInfo) -> Any:
    """Draw (first call) or update in place the learning curves: one line per trial.

    Existing traces are reused in order (their data replaced), extra ones removed, missing ones
    added. Running trials are solid, finished ones dotted, the best one thick.

    Args:
        fig: A ``go.Figure`` or ``go.FigureWidget`` (empty, or drawn by this function).
        info: From :func:`get_learning_curves_info`.

    Returns:
        ``fig``.

    """
    go = _go()
    first = len(fig.data) == 0
    with _batch(fig):
        traces = _sync_traces(
            fig, [go.Scatter] * len(info.curves), lambda i: go.Scatter(mode="lines")
        )
        for trace, curve in zip(traces, info.curves, strict=True):
            running = curve.state == TrialState.RUNNING
            trace.x, trace.y = curve.steps, curve.values
            if info.checkpoints is not None:  # the user's words: seed s, checkpoint k of K
                per = info.checkpoints
                trace.text = [
                    f"seed {s // per}, checkpoint {s % per + 1} of {per}"
                    for s in curve.steps.tolist()
                ]
                trace.hovertemplate = "%{text}: %{y:.4g}<extra>%{fullData.name}</extra>"
            label = "best " if curve.is_best else ""
            trace.name = f"{label}#{curve.number} ({curve.state.name.lower()})"
            trace.line = {
                "dash": "solid" if running or curve.is_best else "dot",
                "width": 3 if curve.is_best else 1.5,
            }
        steps = [c.steps for c in info.curves if len(c.steps)]
        fig.update_xaxes(dtick=_integer_dtick(np.concatenate(steps) if steps else np.array([])))
        if first:
            nbtune_study = info.checkpoints is not None
            fig.update_layout(
                title={"text": "Learning curves"},
                xaxis_title=(
                    f"checkpoint ({info.checkpoints} per seed, seeds in turn)"
                    if nbtune_study
                    else "Step"
                ),
                yaxis_title="Score so far" if nbtune_study else "Intermediate value",
            )
        _empty_note(fig, None if info.curves else "No checkpoint reported yet")
    return fig


def plot_learning_curves(info: LearningCurvesInfo) -> go.Figure:
    """A new learning-curves figure (see :func:`update_learning_curves_figure`)."""
    return update_learning_curves_figure(_go().Figure(), info)


def update_winners_curse_figure(fig: Any, info: WinnersCurseInfo) -> Any:
    """Draw (first call) or update in place the winner's-curse chart.

    Per validated configuration (best tuning score first): its tuning score (an open marker) and
    its fresh-seed IQM with the 95% interval as an error bar (filled; a star for the recommended
    one), the gap written in the hover text and the title naming the naive best's gap.

    Args:
        fig: A ``go.Figure`` or ``go.FigureWidget`` (empty, or drawn by this function).
        info: From :func:`get_winners_curse_info`.

    Returns:
        ``fig``, with two traces: ``Tuning score`` and ``Fresh-seed IQM``.
    """
    go = _go()
    labels = [f"#{n}" for n in info.numbers.tolist()]
    done = [
        "" if d >= r else f" ({d}/{r} runs)"
        for d, r in zip(info.n_done.tolist(), info.n_runs.tolist(), strict=True)
    ]
    symbols = [
        "star" if info.recommended is not None and n == info.recommended else "circle"
        for n in info.numbers.tolist()
    ]
    with _batch(fig):
        tuning, fresh = _sync_traces(
            fig, (go.Scatter, go.Scatter), lambda i: go.Scatter(mode="markers")
        )
        tuning.x, tuning.y = labels, info.tuning_scores
        tuning.name = "Tuning score"
        tuning.marker = {"symbol": "circle-open", "size": 11, "color": "#7f7f7f"}
        tuning.hovertemplate = "%{x}<br>tuning said %{y:.3f}<extra></extra>"
        fresh.x, fresh.y = labels, info.iqm
        fresh.name = f"Fresh-seed IQM ({info.n_seeds} seeds), 95% CI"
        fresh.marker = {"symbol": symbols, "size": 12, "color": "#1f77b4"}
        fresh.error_y = {
            "type": "data",
            "symmetric": False,
            "array": info.ci_high - info.iqm,
            "arrayminus": info.iqm - info.ci_low,
            "visible": True,
        }
        fresh.customdata = np.stack([info.ci_low, info.ci_high, info.tuning_scores], axis=-1)
        fresh.text = done
        fresh.hovertemplate = (
            "%{x}: tuning said %{customdata[2]:.3f}, fresh seeds say %{y:.3f} "
            "[%{customdata[0]:.3f}, %{customdata[1]:.3f}]%{text}<extra></extra>"
        )
        head = info.lines[0] if info.lines else "not validated yet"
        fig.update_layout(
            title={"text": "Winner's curse: " + _render_text(head)},
            xaxis_title="Configuration (tuning trial, best tuning score first)",
            yaxis_title="Normalized score",
            legend={"orientation": "h", "y": -0.25},
        )
    return fig


def _render_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plot_winners_curse(info: WinnersCurseInfo) -> go.Figure:
    """A new winner's-curse figure (see :func:`update_winners_curse_figure`)."""
    return update_winners_curse_figure(_go().Figure(), info)


def update_importance_figure(fig: Any, info: ImportanceInfo) -> Any:
    """Draw (first call) or update in place the parameter importances: horizontal bars.

    Args:
        fig: A ``go.Figure`` or ``go.FigureWidget`` (empty, or drawn by this function).
        info: From :func:`get_importance_info`.

    Returns:
        ``fig``, with one ``go.Bar`` trace (most important at the top), titled with the number
        of complete trials the importances rest on.
    """
    go = _go()
    with _batch(fig):
        (bars,) = _sync_traces(fig, (go.Bar,), lambda i: go.Bar(orientation="h"))
        bars.x = info.importances[::-1]
        bars.y = list(info.params[::-1])
        bars.name = "importance"
        bars.hovertemplate = "%{y}: %{x:.3f}<extra></extra>"
        title = f"Parameter importance ({info.n_trials} complete trials"
        title += f", {info.evaluator})" if info.note is None else f"): {info.note}"
        fig.update_layout(
            title={"text": _render_text(title)},
            xaxis_title="Importance (sums to 1)",
        )
    return fig


def plot_importance(info: ImportanceInfo) -> go.Figure:
    """A new parameter-importance figure (see :func:`update_importance_figure`)."""
    return update_importance_figure(_go().Figure(), info)
