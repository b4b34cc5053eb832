"""Validation on fresh seeds (issue 18), against a toy script whose true means are known.

``tests/scripts/toy_train.py --noise 0.1`` adds to each run a standard normal draw (times 0.1,
in normalized units) seeded by the seed, the environment and the configuration, so a
configuration's true mean over seeds is known exactly: ``q(learning rate, anneal-lr) + 0.001 *
seed``, less the window's 0.0002 (see the script). Everything is seeded, so every number below is
the same on every run.

The study tunes three configurations on one seed (seed 0). On that seed the truly worst one
(learning rate 5e-4, q = 0.822) scores best (0.861) and the truly best one (1e-3, q = 0.9) worst
(0.818): the winner's curse. Validation on ten fresh seeds must then find the truly best one.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from _support import TOY
from optuna.trial import TrialState

import nbtune
from nbtune import __main__ as cli
from nbtune import _attrs
from nbtune._budget import give_back

sys.path.insert(0, str(TOY.parent))
import toy_train  # the script's own score function: the truth

optuna.logging.set_verbosity(optuna.logging.WARNING)

NOISE = 0.1
WINDOW = 5
#: learning rate -> true quality q (anneal-lr off: q is 0.9 times the bell at 1e-3).
CONFIGS = {5e-4: 0.822, 7e-4: 0.879, 1e-3: 0.9}
SPACE = {
    "learning-rate": {"type": "categorical", "choices": sorted(CONFIGS)},
    "anneal-lr": False,
    "noise": NOISE,
    "log-hparams": True,
    "total-timesteps": 1000,
}


def _tuner(tmp: Path, **kwargs: object) -> nbtune.Tuner:
    options: dict[str, object] = dict(
        script=str(TOY),
        metric="charts/episodic_return",
        target_scores={"EnvA": [0, 100], "EnvB": [-100, 0]},
        params_fn=SPACE,
        metric_last_n_average_window=WINDOW,
        storage=f"sqlite:///{tmp}/study.db",
        study_name="s",
        runs_dir=str(tmp / "runs"),
        pruner=optuna.pruners.NopPruner(),
        n_slots=2,
        verbose=False,
    )
    options.update(kwargs)
    return nbtune.Tuner(**options)


def _validation_trials(tmp: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="s.validation", storage=f"sqlite:///{tmp}/study.db")
    return study.trials


def _true_mean(learning_rate: float, seeds: list[int]) -> float:
    q = toy_train.quality(learning_rate, False, 0)
    return q + 0.001 * sum(seeds) / len(seeds) - 0.005 * (WINDOW - 1) / 100


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study that tuned the three configurations on seed 0 (not yet validated)."""
    tmp = tmp_path_factory.mktemp("validation")
    tuner = _tuner(tmp)
    for lr in CONFIGS:
        tuner.enqueue({"learning-rate": lr})
    tuner.tune(3, num_seeds=1)
    return tmp


@pytest.fixture(scope="module")
def validated(tuned: Path) -> tuple[Path, nbtune.ValidationReport, dict[int, float]]:
    tuner = _tuner(tuned)
    values = {t.number: t.value for t in tuner.study.trials}
    report = tuner.validate(top_k=3, num_seeds=10)
    return tuned, report, values


def test_the_tuning_scores_show_the_winners_curse(validated):
    tmp, report, _ = validated
    by_lr = {t.params["learning-rate"]: t.value for t in _tuner(tmp).study.trials}
    assert max(by_lr, key=by_lr.get) == 5e-4  # the truly worst configuration looks best
    assert min(by_lr, key=by_lr.get) == 1e-3  # the truly best looks worst
    assert report.naive_best is not None and report.naive_best.params["learning-rate"] == 5e-4


def test_validation_recommends_the_truly_better_configuration(validated):
    _, report, _ = validated
    assert report.complete
    rec = report.recommended
    assert rec is not None and rec.params["learning-rate"] == 1e-3
    truth = {
        c.trial: _true_mean(c.params["learning-rate"], list(c.seeds)) for c in report.configurations
    }
    assert truth[rec.trial] == max(truth.values())
    assert report.naive_best.iqm.value < rec.iqm.value  # type: ignore[union-attr]


def test_every_interval_covers_the_configurations_true_mean(validated):
    _, report, _ = validated
    for c in report.configurations:
        truth = _true_mean(c.params["learning-rate"], list(c.seeds))
        assert c.iqm is not None and c.mean is not None
        assert c.iqm.low <= truth <= c.iqm.high, (c.trial, str(c.iqm), truth)
        assert c.mean.low <= truth <= c.mean.high, (c.trial, str(c.mean), truth)
        assert c.scores.shape == (10, 2) and c.n_done == 20


def test_fresh_seeds_are_disjoint_from_tuning_and_recorded(validated):
    tmp, report, values = validated
    tuning = _tuner(tmp).study
    used = {s for t in tuning.trials for s in t.user_attrs[_attrs.SEEDS]}
    assert used == {0}
    assert report.seeds == tuple(range(1, 11))
    validation = optuna.load_study(study_name="s.validation", storage=f"sqlite:///{tmp}/study.db")
    assert validation.user_attrs[_attrs.VALIDATION_OF]["seeds"] == list(range(1, 11))
    assert tuning.user_attrs[_attrs.VALIDATION_STUDY] == "s.validation"
    for trial in validation.trials:
        assert trial.user_attrs[_attrs.SEEDS] == list(range(1, 11))
        assert trial.user_attrs[_attrs.VALIDATES_TRIAL] in values
        # each validation trial's value is its configuration's fresh-seed IQM
        config = next(c for c in report.configurations if c.validation_trial == trial.number)
        assert trial.value == pytest.approx(config.iqm.value)  # type: ignore[union-attr]


def test_the_tuning_trials_are_untouched(validated):
    tmp, report, values = validated
    tuning = _tuner(tmp).study
    assert {t.number: t.value for t in tuning.trials} == values
    assert len(tuning.trials) == 3
    for c in report.configurations:
        assert c.tuning_score == values[c.trial]


def test_the_statement_says_whether_the_intervals_overlap(validated):
    _, report, _ = validated
    rec, other = report.recommended, report.runner_up
    assert rec is not None and other is not None
    overlap = rec.iqm.overlaps(other.iqm)  # type: ignore[union-attr]
    word = "indistinguishable at 10 seeds" if overlap else "better than the next"
    assert word in report.statement
    assert f"#{rec.trial}" in report.statement and f"#{other.trial}" in report.statement
    assert str(rec.iqm) in report.statement
    naive = report.naive_best
    assert naive is not None
    assert f"tuning said {naive.tuning_score:.3f}, fresh seeds say {naive.iqm}" in report.table()
    assert "**#" in report.markdown() and "stratified bootstrap" in report.markdown()


def test_validating_again_runs_nothing_new(validated):
    tmp, report, _ = validated
    again = _tuner(tmp).validate(top_k=3, num_seeds=10)
    assert len(_validation_trials(tmp)) == 3
    assert again.recommended.trial == report.recommended.trial  # type: ignore[union-attr]
    with pytest.raises(nbtune.ConfigError, match="validated with 10 fresh seeds"):
        _tuner(tmp).validation(top_k=3, num_seeds=5)


def test_a_worker_joins_the_validation_study_with_its_seeds(validated):
    tmp, _, _ = validated
    worker = nbtune.Tuner.from_study(f"sqlite:///{tmp}/study.db", "s.validation", verbose=False)
    config = worker.config
    assert (config.first_seed, config.num_seeds, config.aggregation_type) == (1, 10, "iqm")
    assert isinstance(config.pruner, optuna.pruners.NopPruner)


def test_the_cli_validates_shows_and_exports(validated, capsys):
    tmp, report, _ = validated
    url = f"sqlite:///{tmp}/study.db"
    args = ["--storage", url, "--study", "s", "--top-k", "3", "--num-seeds", "10"]
    assert cli.main(["validate", *args, "--no-verbose"]) == 0
    out = capsys.readouterr().out
    assert "validation of 's'" in out and report.statement in out
    assert cli.main(["show", "--storage", url, "--study", "s"]) == 0
    assert "winner's curse" in capsys.readouterr().out
    target = tmp / "best.json"
    assert cli.main(["export", "--storage", url, "--study", "s", "-o", str(target)]) == 0
    data = json.loads(target.read_text())
    validation = data["validation"]
    assert validation["recommended"]["trial"] == report.recommended.trial  # type: ignore[union-attr]
    assert validation["recommended"]["params"] == {"learning-rate": 1e-3}
    for entry in validation["configurations"]:
        for key in ("params", "trial", "tuning_score", "iqm", "ci_low", "ci_high", "mean", "seeds"):
            assert key in entry
        assert entry["ci_low"] <= entry["iqm"] <= entry["ci_high"]
        assert entry["seeds"] == list(range(1, 11))
        assert set(entry["per_env"]) == {"EnvA", "EnvB"}
    assert "--learning-rate=0.001" in validation["recommended"]["command"]
    assert {"nbtune", "optuna", "numpy", "python"} <= set(validation["versions"])
    assert (tmp / "best.validation.md").read_text().startswith("| Configuration |")


def test_validation_resumes_after_a_stop_and_runs_only_the_chosen_configurations(tmp_path):
    tuner = _tuner(tmp_path)
    for lr in CONFIGS:
        tuner.enqueue({"learning-rate": lr})
    tuner.tune(3, num_seeds=1)
    session = _tuner(tmp_path, n_slots=1).session(None)
    events = []
    session.subscribe(events.append)
    session.validate(top_k=2, num_seeds=3, background=True)
    validation = session.validation
    assert validation is not None
    deadline = 120.0
    import time

    start = time.monotonic()
    while time.monotonic() - start < deadline:
        done = validation.study.get_trials(states=(TrialState.RUNNING,))
        if done and done[0].user_attrs.get(_attrs.RAW_SCORES, {}).get("EnvA", [None])[0]:
            break
        time.sleep(0.05)
    validation.stop()
    validation.wait(60)
    assert any(e.kind == "validation" for e in events)
    report = _tuner(tmp_path).validate(top_k=2, num_seeds=3)
    assert report.complete and len(report.configurations) == 2
    trials = _validation_trials(tmp_path)
    assert all(_attrs.VALIDATES_TRIAL in t.user_attrs for t in trials), "a sampled trial ran"
    complete = [
        t.user_attrs[_attrs.VALIDATES_TRIAL] for t in trials if t.state == TrialState.COMPLETE
    ]
    assert sorted(complete) == sorted(c.trial for c in report.configurations)
    assert any(t.state == TrialState.FAIL for t in trials)  # the one the stop interrupted


def test_an_interrupted_enqueued_trial_is_queued_again_as_it_was(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/q.db")
    study.enqueue_trial(
        {"x": 1.5}, user_attrs={_attrs.VALIDATES_TRIAL: 7, _attrs.TUNING_SCORE: 0.5}
    )
    trial = study.ask()
    trial.suggest_float("x", 0, 2)
    study.tell(trial, state=TrialState.FAIL)
    give_back(study, study.trials[0])
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1
    assert waiting[0].system_attrs[_attrs.OPTUNA_FIXED_PARAMS] == {"x": 1.5}
    assert waiting[0].user_attrs == {_attrs.VALIDATES_TRIAL: 7, _attrs.TUNING_SCORE: 0.5}
    give_back(study, optuna.trial.create_trial(state=TrialState.FAIL))  # a sampled one: blank
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 2 and _attrs.RESERVED in waiting[1].system_attrs
    assert not waiting[1].params


def test_a_study_without_a_complete_trial_cannot_be_validated(tmp_path):
    with pytest.raises(nbtune.ConfigError, match="no complete trial"):
        _tuner(tmp_path).validate()


# --------------------------------------------------------------------------------------------
# The argument witness
# --------------------------------------------------------------------------------------------


def test_a_flag_the_script_did_not_use_fails_the_trial_naming_it(tmp_path):
    space = dict(SPACE, **{"ignore-flag": "learning-rate", "noise": 0.0})
    tuner = _tuner(tmp_path, params_fn=space, max_consecutive_failures=None)
    tuner.enqueue({"learning-rate": 1e-3})
    with pytest.raises(nbtune.TuningError):
        tuner.tune(1, num_seeds=1)
    (trial,) = tuner.study.trials
    assert trial.state == TrialState.FAIL
    reason = trial.user_attrs[_attrs.FAIL_REASON]
    assert "did not use --learning-rate" in reason
    assert "nbtune passed 0.001" in reason and "learning_rate = 0.00025" in reason


def test_a_script_that_reports_every_flag_as_passed_completes(tuned):
    trials = _tuner(tuned).study.trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(not math.isnan(t.value) for t in trials)


# --------------------------------------------------------------------------------------------
# The charts: compute, then draw
# --------------------------------------------------------------------------------------------


def test_the_winners_curse_chart_shows_tuning_scores_beside_fresh_iqms(validated):
    from nbtune import plots

    tmp, report, _ = validated
    with nbtune.StudyView(f"sqlite:///{tmp}/study.db", "s.validation") as view:
        info = plots.get_winners_curse_info(view, reps=2000)
    assert info.numbers.tolist() == [c.trial for c in report.configurations]
    assert info.tuning_scores.tolist() == [c.tuning_score for c in report.configurations]
    assert info.iqm.tolist() == [c.iqm.value for c in report.configurations]  # type: ignore[union-attr]
    assert np.all(info.ci_low <= info.iqm) and np.all(info.iqm <= info.ci_high)
    assert info.recommended == report.recommended.trial  # type: ignore[union-attr]
    assert info.n_done.tolist() == [20, 20, 20] and info.n_seeds == 10
    assert info.lines[0].startswith(f"#{report.naive_best.trial}: tuning said")  # type: ignore[union-attr]
    fig = plots.plot_winners_curse(info)
    assert [t.name for t in fig.data] == ["Tuning score", "Fresh-seed IQM (10 seeds), 95% CI"]
    assert "tuning said" in fig.layout.title.text
    assert list(fig.data[1].marker.symbol).count("star") == 1
    again = plots.update_winners_curse_figure(fig, info)
    assert again is fig and len(fig.data) == 2


def test_the_winners_curse_chart_of_a_study_not_validated_is_empty(tuned):
    from nbtune import plots

    with nbtune.StudyView(f"sqlite:///{tuned}/study.db", "s") as view:
        info = plots.get_winners_curse_info(view)
    assert info.numbers.size == 0 and info.statement == "not validated yet"
    assert len(plots.plot_winners_curse(info).data) == 2


def test_parameter_importance_says_how_many_trials_it_rests_on(tmp_path):
    from nbtune import plots

    study = optuna.create_study(
        study_name="imp",
        storage=f"sqlite:///{tmp_path}/imp.db",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    view = nbtune.StudyView(f"sqlite:///{tmp_path}/imp.db", "imp")
    assert plots.get_importance_info(view).note is not None  # no trial yet
    study.optimize(
        lambda t: t.suggest_float("lr", 0, 1) + 0.01 * t.suggest_int("layers", 1, 3), n_trials=30
    )
    study.optimize(lambda t: 1 / 0, n_trials=1, catch=(ZeroDivisionError,))  # a failed trial
    view.refresh()
    info = plots.get_importance_info(view)
    assert info.params[0] == "lr" and set(info.params) == {"lr", "layers"}
    assert info.n_trials == 30 and info.importances.sum() == pytest.approx(1.0)
    # Optuna's default evaluator, and the chart names the one it used.
    expected = optuna.importance.get_param_importances(study)
    assert dict(zip(info.params, info.importances, strict=True)) == pytest.approx(expected)
    assert info.evaluator == "PedAnovaImportanceEvaluator"
    fig = plots.plot_importance(info)
    assert "30 complete trials" in fig.layout.title.text
    assert list(fig.data[0].y) == ["layers", "lr"]  # the most important on top
