"""Chart data computed from a study view (checked against the storage), then drawn."""

from __future__ import annotations

import datetime
import doctest
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from nbtune import plots
from nbtune._study_view import StudyView
from nbtune.plots import (
    format_status,
    get_env_scores_info,
    get_history_info,
    get_learning_curves_info,
    get_parcoords_info,
    get_status_info,
    plot_env_scores,
    plot_history,
    plot_learning_curves,
    plot_parcoords,
    update_env_scores_figure,
    update_history_figure,
    update_learning_curves_figure,
    update_parcoords_figure,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTS = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "batch": CategoricalDistribution([16, 32, 64]),
    "layers": IntDistribution(1, 4),
    "clip": FloatDistribution(0.0, 1.0),
}
T0 = datetime.datetime(2025, 3, 1, 12, 0, 0)


def _trial(rng: random.Random, i: int, state: TrialState, value: float | None) -> FrozenTrial:
    params = {
        "lr": 10 ** rng.uniform(-5, -1),
        "batch": rng.choice([16, 32, 64]),
        "layers": rng.randint(1, 4),
    }
    if i % 3:  # a conditional parameter, absent from every third trial
        params["clip"] = rng.random()
    attrs = {}
    if value is not None:
        attrs = {
            "seeds": [1, 2, 3],
            "normalized_scores": {"CartPole-v1": [value, value / 2, None], "Acrobot-v1": [value]},
            "raw_scores": {"CartPole-v1": [500 * value, 250 * value, None], "Acrobot-v1": [-1.0]},
        }
    trial = optuna.trial.create_trial(
        state=state,
        value=value,
        params=params,
        distributions={k: DISTS[k] for k in params},
        user_attrs=attrs,
        intermediate_values={0: 0.0, 1: (value or 0.0) / 2, 2: float("nan")} if i % 2 else {},
    )
    trial.datetime_start = T0 + datetime.timedelta(minutes=i)
    if state.is_finished():
        trial.datetime_complete = T0 + datetime.timedelta(minutes=2 * i + 5)
    return trial


@pytest.fixture(scope="module")
def rich_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite study with every state, a conditional parameter, scores and curves."""
    path = tmp_path_factory.mktemp("rich") / "rich.db"
    study = optuna.create_study(
        storage=f"sqlite:///{path}", study_name="rich", direction="maximize"
    )
    rng = random.Random(7)
    trials = [_trial(rng, i, TrialState.COMPLETE, rng.random()) for i in range(12)]
    trials.append(_trial(rng, 12, TrialState.PRUNED, 0.05))  # pruned with a value
    trials.append(_trial(rng, 13, TrialState.PRUNED, None))
    trials.append(_trial(rng, 14, TrialState.FAIL, None))
    trials.append(_trial(rng, 15, TrialState.RUNNING, None))
    trials.append(_trial(rng, 16, TrialState.RUNNING, None))
    study.add_trials(trials)
    study.enqueue_trial({"lr": 1e-3})
    study.set_user_attr("nbtune:spec", json.dumps({"budget": {"n_trials": 40}}))
    return path


@pytest.fixture
def rich(rich_template: Path, tmp_path: Path) -> tuple[str, optuna.Study]:
    """A private copy of the template study (tests may add trials to it)."""
    shutil.copy(rich_template, tmp_path / "rich.db")
    url = f"sqlite:///{tmp_path / 'rich.db'}"
    return url, optuna.load_study(study_name="rich", storage=url)


def _stored(url: str, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


# --------------------------------------------------------------------------------------------
# Chart infos against values computed directly from the storage
# --------------------------------------------------------------------------------------------


def test_history_matches_storage(rich: tuple[str, optuna.Study]) -> None:
    url, _ = rich
    info = get_history_info(StudyView(url, "rich"))
    stored = _stored(url, "rich")
    trials = [t for t in stored if t.state != TrialState.WAITING]  # not started: no history
    assert len(trials) < len(stored)
    assert info.numbers.tolist() == [t.number for t in trials]
    assert info.states.tolist() == [int(t.state) for t in trials]
    expected = [math.nan if t.value is None else t.value for t in trials]
    np.testing.assert_array_equal(info.values, expected)
    best, running_best = [], -math.inf
    for t in trials:
        if t.state == TrialState.COMPLETE:
            running_best = max(running_best, t.value)
        best.append(running_best)
    np.testing.assert_array_equal(info.best, best)
    assert info.best_value == max(t.value for t in trials if t.state == TrialState.COMPLETE)
    # An nbtune study (it has a spec) calls its value what the panel and notebooks call it.
    assert info.note is None and info.objective_name == "Normalized score"
    study = optuna.create_study(study_name="plain")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert get_history_info(StudyView.from_study(study)).objective_name == "Objective value"


def test_parcoords_matches_storage(rich: tuple[str, optuna.Study]) -> None:
    url, _ = rich
    view = StudyView(url, "rich")
    trials = _stored(url, "rich")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]

    info = get_parcoords_info(view)
    assert [d.label for d in info.dimensions] == ["batch", "clip", "layers", "lr"]
    with_clip = [t for t in complete if "clip" in t.params]
    assert info.numbers.tolist() == [t.number for t in with_clip]
    assert info.n_skipped == len(complete) - len(with_clip) > 0
    assert info.score.values.tolist() == [t.value for t in with_clip]

    info = get_parcoords_info(view, params=["lr", "batch", "layers"])
    assert info.numbers.tolist() == [t.number for t in complete]
    lr, batch, layers = info.dimensions
    # log-scaled: log10 of the values, ticks at powers of ten labelled in real units
    assert lr.is_log and not lr.is_categorical
    np.testing.assert_allclose(lr.values, [math.log10(t.params["lr"]) for t in complete])
    assert lr.range == (min(lr.values), max(lr.values))
    inner = [v for v in lr.tickvals if float(v).is_integer()]
    assert inner and all(f"{10**v:.3g}" in lr.ticktext for v in inner)
    # categorical: the index of the choice, ticks at every index
    assert batch.is_categorical and batch.ticktext == ("16", "32", "64")
    assert batch.tickvals == (0.0, 1.0, 2.0)
    assert batch.values.tolist() == [[16, 32, 64].index(t.params["batch"]) for t in complete]
    assert layers.values.tolist() == [t.params["layers"] for t in complete]
    assert layers.tickvals is None
    with pytest.raises(ValueError, match="no parameter 'nope'"):
        get_parcoords_info(view, params=["nope"])


def test_env_scores_match_storage(rich: tuple[str, optuna.Study]) -> None:
    url, _ = rich
    info = get_env_scores_info(StudyView(url, "rich"), k=3)
    complete = [t for t in _stored(url, "rich") if t.state == TrialState.COMPLETE]
    top = sorted(complete, key=lambda t: (-t.value, t.number))[:3]
    assert [s.number for s in info.trials] == [t.number for t in top]
    assert info.best is info.trials[0]
    assert info.env_ids == ("CartPole-v1", "Acrobot-v1")
    for scores, trial in zip(info.trials, top, strict=True):
        assert scores.value == trial.value
        norm = trial.user_attrs["normalized_scores"]
        raw = trial.user_attrs["raw_scores"]
        cart = [x for x in norm["CartPole-v1"] if x is not None]
        np.testing.assert_allclose(scores.normalized, [np.mean(cart), norm["Acrobot-v1"][0]])
        np.testing.assert_allclose(scores.normalized_std, [np.std(cart), 0.0])
        np.testing.assert_allclose(
            scores.raw, [np.mean([x for x in raw["CartPole-v1"] if x is not None]), -1.0]
        )
        assert scores.n_seeds.tolist() == [2, 1]


def test_learning_curves_of_running_recent_and_best(rich: tuple[str, optuna.Study]) -> None:
    url, _ = rich
    view = StudyView(url, "rich")
    trials = _stored(url, "rich")
    info = get_learning_curves_info(view, recent=3)
    by_number = {c.number: c for c in info.curves}
    running = [t.number for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
    assert running and set(running) <= set(by_number)
    finished = [t for t in trials if t.state.is_finished()]
    recent = sorted(finished, key=lambda t: t.datetime_complete)[-3:]
    expected = set(running) | {t.number for t in recent if t.intermediate_values}
    best = view.best_trial
    assert best is not None
    if best.intermediate_values:
        expected.add(best.number)
        assert by_number[best.number].is_best
    assert set(by_number) == expected
    assert [c.number for c in info.curves] == sorted(expected)
    for curve in info.curves:
        stored = trials[curve.number].intermediate_values
        assert curve.steps.tolist() == sorted(stored)
        np.testing.assert_array_equal(curve.values, [stored[s] for s in sorted(stored)])
    only_running = get_learning_curves_info(view, recent=0, include_best=False)
    assert [c.number for c in only_running.curves] == running


def test_status_counts_and_eta(rich: tuple[str, optuna.Study]) -> None:
    url, _ = rich
    view = StudyView(url, "rich")
    trials = _stored(url, "rich")
    now = (T0 + datetime.timedelta(hours=1)).timestamp()
    info = get_status_info(view, now=now, window=5)
    assert info.counts == {
        "RUNNING": 2,
        "COMPLETE": 12,
        "PRUNED": 2,
        "FAIL": 1,
        "WAITING": 1,
    }
    assert info.n_finished == 15 and info.n_trials == 18
    assert info.total == 40 and info.remaining == 25  # from the spec's budget
    finished = sorted(
        (t for t in trials if t.state.is_finished() and t.datetime_start is not None),
        key=lambda t: t.datetime_complete,
    )[-5:]
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished]
    # The mean run time of the last 5, shared by the 2 trials running now.
    assert info.seconds_per_trial == pytest.approx(sum(durations) / 5 / 2)
    assert info.eta_seconds == pytest.approx((25 - 2 / 2) * info.seconds_per_trial)
    assert info.elapsed_seconds == pytest.approx(now - T0.timestamp())
    text = format_status(info)
    assert text.startswith("15/40 finished: 12 complete, 2 pruned, 1 failed | 2 running, 1 waiting")
    assert "ETA" in text and "best" in text
    explicit = get_status_info(view, total=15, now=now)
    assert explicit.remaining == 0 and explicit.eta_seconds == 0.0
    assert "ETA" not in format_status(explicit)


def test_status_reads_the_recorded_budget(rich: tuple[str, optuna.Study]) -> None:
    url, study = rich
    study.set_user_attr("nbtune:total_trials", 20)
    # A trial whose process died is retried: it does not count against the budget.
    stale = study.ask()
    study._storage.set_trial_system_attr(stale._trial_id, "nbtune:fail_kind", "stale")
    study.tell(stale, state=TrialState.FAIL)
    info = get_status_info(StudyView(url, "rich"))
    assert info.total == 20 and info.n_finished == 15 and info.n_given_back == 1
    assert info.remaining == 20 - 15
    assert format_status(info).startswith(
        "15/20 finished: 12 complete, 2 pruned, 1 failed | 2 running, 1 interrupted (run again)"
    )


def test_status_without_budget_or_trials() -> None:
    study = optuna.create_study(study_name="empty")
    info = get_status_info(StudyView.from_study(study))
    assert info.n_trials == 0 and info.total is None and info.eta_seconds is None
    assert info.elapsed_seconds is None and info.best_value is None
    assert format_status(info) == "0 finished: no trials"
    assert get_history_info(StudyView.from_study(study)).best_value is None
    assert get_parcoords_info(StudyView.from_study(study)).numbers.size == 0


# --------------------------------------------------------------------------------------------
# Studies nbtune did not create, odd values, several objectives
# --------------------------------------------------------------------------------------------


def test_plain_optuna_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(
        storage=url, study_name="plain", sampler=optuna.samplers.RandomSampler(0)
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        trial.report(x, 0)
        return x + (kind == "b")

    study.optimize(objective, n_trials=4)
    view = StudyView(url, "plain")
    env = get_env_scores_info(view)
    assert env.env_ids == () and env.trials == () and env.best is None
    assert get_history_info(view).best_value == study.best_value
    parcoords = get_parcoords_info(view)
    assert [d.label for d in parcoords.dimensions] == ["kind", "x"]
    assert parcoords.dimensions[0].ticktext == ("a", "b")
    assert len(update_env_scores_figure(plot_env_scores(env), env).data) == 0
    assert len(get_learning_curves_info(view).curves) > 0


def test_non_finite_values_are_left_out(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="inf")
    dist = {"x": FloatDistribution(0, 1)}
    for x, v in ((0.1, float("inf")), (0.2, 1.0), (0.3, -float("inf")), (0.4, 0.5)):
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist, value=v))
    view = StudyView.from_study(study)
    history = get_history_info(view)
    assert history.best.tolist() == [pytest.approx(math.nan, nan_ok=True), 1.0, 1.0, 0.5] or (
        math.isnan(history.best[0]) and history.best[1:].tolist() == [1.0, 1.0, 0.5]
    )
    assert get_parcoords_info(view).numbers.tolist() == [1, 3]
    assert [s.number for s in get_env_scores_info(view).trials] == []
    fig = plot_history(history)
    assert fig.data[0].y.tolist() == [1.0, 0.5]  # plotly gets no infinities


def test_multi_objective(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="mo", directions=["minimize", "maximize"])
    for values in ([3.0, 1.0], [1.0, 0.5], [2.0, 4.0]):
        study.add_trial(optuna.trial.create_trial(values=values))
    view = StudyView.from_study(study)
    first = get_history_info(view)
    assert first.best.tolist() == [3.0, 1.0, 1.0]
    assert first.note is not None and "objective 0 of 2" in first.note
    second = get_history_info(view, objective=1)
    assert second.best.tolist() == [1.0, 1.0, 4.0]
    assert "maximize" in (second.note or "")
    with pytest.raises(ValueError, match="out of range"):
        get_history_info(view, objective=2)
    status = get_status_info(view)
    assert status.best_value is None and status.counts["COMPLETE"] == 3
    assert "Objective 0" in plot_history(first).layout.yaxis.title.text


# --------------------------------------------------------------------------------------------
# Drawing and updating in place
# --------------------------------------------------------------------------------------------


def test_figures_update_in_place(rich: tuple[str, optuna.Study]) -> None:
    url, study = rich
    view = StudyView(url, "rich")
    figures = {
        "history": (plot_history, update_history_figure, get_history_info),
        "parcoords": (plot_parcoords, update_parcoords_figure, get_parcoords_info),
        "env": (plot_env_scores, update_env_scores_figure, get_env_scores_info),
        "curves": (plot_learning_curves, update_learning_curves_figure, get_learning_curves_info),
    }
    drawn = {name: plot(compute(view)) for name, (plot, _, compute) in figures.items()}
    traces = {name: list(fig.data) for name, fig in drawn.items()}
    assert len(traces["history"]) == 3 and len(traces["parcoords"]) == 1
    assert isinstance(drawn["parcoords"].data[0], __import__("plotly").graph_objects.Parcoords)

    study.add_trial(_trial(random.Random(1), 31, TrialState.COMPLETE, 2.0))
    assert view.refresh().new == (18,)
    for name, (_, update, compute) in figures.items():
        fig = drawn[name]
        assert update(fig, compute(view)) is fig
        kept = min(len(traces[name]), len(fig.data))
        assert all(fig.data[i] is traces[name][i] for i in range(kept)), name
    history = drawn["history"]
    assert history.data[0].x[-1] == 18 and history.data[2].y[-1] == 2.0
    assert drawn["parcoords"].data[0].dimensions[0].values.max() == 2.0
    assert drawn["env"].data[0].name.startswith("best #18")


def test_traces_follow_a_changing_number_of_curves() -> None:
    study = optuna.create_study(study_name="curves")
    trials = [study.ask() for _ in range(3)]
    for t in trials:
        t.report(1.0, 0)
    view = StudyView.from_study(study)
    fig = plot_learning_curves(get_learning_curves_info(view))
    first = list(fig.data)
    assert len(first) == 3
    study.tell(trials[2], 0.0)
    study.tell(trials[1], 1.0)
    view.refresh()
    update_learning_curves_figure(fig, get_learning_curves_info(view, recent=0, include_best=False))
    assert list(fig.data) == first[:1]
    assert fig.data[0].name == "#0 (running)"
    update_learning_curves_figure(fig, get_learning_curves_info(view, recent=5))
    assert len(fig.data) == 3 and fig.data[0] is first[0]


def test_arrays_go_to_plotly_as_numpy_and_one_parcoords_trace() -> None:
    study = optuna.create_study(study_name="big", sampler=optuna.samplers.RandomSampler(0))
    dist = {"a": FloatDistribution(1e-4, 1, log=True), "b": CategoricalDistribution(["x", "y"])}
    rng = random.Random(0)
    study.add_trials(
        optuna.trial.create_trial(
            params={"a": 10 ** rng.uniform(-4, 0), "b": rng.choice("xy")},
            distributions=dist,
            value=rng.random(),
        )
        for _ in range(300)
    )
    fig = plot_parcoords(get_parcoords_info(StudyView.from_study(study)))
    assert len(fig.data) == 1
    assert isinstance(fig.data[0].dimensions[1].values, np.ndarray)
    ours = len(fig.to_json())
    theirs = optuna.visualization.plot_parallel_coordinate(study)
    assert len(theirs.data) > 100 and ours < len(theirs.to_json()) / 5


def test_figure_widget_updates_in_place(rich: tuple[str, optuna.Study]) -> None:
    pytest.importorskip(
        "anywidget", reason="anywidget is not installed (pip install -e '.[widgets]')"
    )
    pytest.importorskip(
        "ipywidgets", reason="ipywidgets is not installed (pip install -e '.[widgets]')"
    )
    import plotly.graph_objects as go

    url, _ = rich
    view = StudyView(url, "rich")
    widget = go.FigureWidget()
    update_history_figure(widget, get_history_info(view))
    update_parcoords_figure(widget_p := go.FigureWidget(), get_parcoords_info(view))
    before = widget.data[0], widget_p.data[0]
    update_history_figure(widget, get_history_info(view))
    update_parcoords_figure(widget_p, get_parcoords_info(view))
    assert (widget.data[0], widget_p.data[0]) == before
    assert widget.data[0] is before[0] and widget_p.data[0] is before[1]


def test_missing_plotly_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    info = get_history_info(StudyView.from_study(optuna.create_study(study_name="np")))
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ImportError, match=r'pip install "nbtune\[widgets\]"'):
        plot_history(info)


def test_importing_does_not_import_plotly_or_widgets() -> None:
    code = (
        "import sys, nbtune._study_view, nbtune.plots\n"
        "bad = [m for m in ('plotly', 'ipywidgets', 'IPython', 'anywidget') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(plots, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("n_trials", "dtick"), [(3, 1), (40, None)])
def test_history_ticks_whole_trial_numbers(n_trials: int, dtick: int | None) -> None:
    pytest.importorskip("plotly", reason="plotly is not installed (pip install -e '.[widgets]')")
    study = optuna.create_study(study_name=f"ticks-{n_trials}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n_trials)
    fig = plots.plot_history(plots.get_history_info(StudyView.from_study(study)))
    assert fig.layout.xaxis.dtick == dtick  # no ticks at 0.2, 0.4, ... over a few trials
