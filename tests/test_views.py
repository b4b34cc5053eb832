"""What the views say: the same words everywhere, no blank charts, an ETA that means something."""

from __future__ import annotations

import datetime

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from nbtune import plots
from nbtune._study_view import StudyView

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0)


def _trial(number: int, minutes: float, state: TrialState = TrialState.COMPLETE, **params):
    trial = optuna.trial.create_trial(
        state=state,
        value=0.5 if state == TrialState.COMPLETE else None,
        params=params,
        distributions={k: FloatDistribution(0, 1) for k in params},
    )
    trial.datetime_start = T0 + datetime.timedelta(minutes=number)
    trial.datetime_complete = trial.datetime_start + datetime.timedelta(minutes=minutes)
    return trial


def test_a_flag_added_to_the_space_does_not_blank_the_parameters_chart():
    study = optuna.create_study(study_name="late-flag")
    study.add_trials([_trial(i, 1, lr=0.1 * i) for i in range(8)])
    study.add_trials([_trial(8 + i, 1, lr=0.2, ent=0.5) for i in range(2)])  # "ent" added late
    info = plots.get_parcoords_info(StudyView.from_study(study))
    assert [d.label for d in info.dimensions] == ["lr"]
    assert info.numbers.size == 10
    assert info.note == "not shown: ent (in 2 of 10)"
    study.add_trials([_trial(10 + i, 1, lr=0.3, ent=0.1) for i in range(6)])
    info = plots.get_parcoords_info(StudyView.from_study(study))
    assert [d.label for d in info.dimensions] == ["ent", "lr"]  # now half the trials have it
    assert info.numbers.size == 8 and info.note == "8 trials lack a parameter"
    figure = plots.plot_parcoords(info)
    assert "8 trials lack a parameter" in figure.layout.title.text


def test_empty_charts_say_why_they_are_empty():
    view = StudyView.from_study(optuna.create_study(study_name="empty-charts"))
    for figure, words in (
        (plots.plot_history(plots.get_history_info(view)), "No finished trial yet"),
        (plots.plot_parcoords(plots.get_parcoords_info(view)), "No complete trial yet"),
        (plots.plot_learning_curves(plots.get_learning_curves_info(view)), "No checkpoint"),
        (plots.plot_env_scores(plots.get_env_scores_info(view)), "per-environment scores"),
    ):
        assert [a.text for a in figure.layout.annotations if words in a.text], figure.layout.title


def test_the_note_goes_away_once_there_is_data():
    study = optuna.create_study(study_name="fills-in")
    figure = plots.plot_history(plots.get_history_info(StudyView.from_study(study)))
    study.add_trials([_trial(0, 1, lr=0.1)])
    plots.update_history_figure(figure, plots.get_history_info(StudyView.from_study(study)))
    assert not figure.layout.annotations


def test_learning_curves_speak_of_seeds_and_checkpoints_in_an_nbtune_study(make_tuner):
    tuner = make_tuner(params_fn={"learning-rate": 1e-3, "total-timesteps": 1000}, checkpoints=4)
    tuner.tune(1, num_seeds=2)
    info = plots.get_learning_curves_info(StudyView(tuner.storage, "test"))
    assert info.checkpoints == 4
    figure = plots.plot_learning_curves(info)
    assert figure.layout.xaxis.title.text == "checkpoint (4 per seed, seeds in turn)"
    assert figure.layout.yaxis.title.text == "Score so far"
    assert figure.data[0].text[-1] == "seed 1, checkpoint 4 of 4"
    plain = optuna.create_study(study_name="plain-curves")
    trial = plain.ask()
    trial.report(0.1, step=3)
    figure = plots.plot_learning_curves(plots.get_learning_curves_info(StudyView.from_study(plain)))
    assert figure.layout.xaxis.title.text == "Step"


def test_no_eta_while_nothing_runs_and_none_inflated_by_idle_time():
    study = optuna.create_study(study_name="eta")
    study.set_user_attr("nbtune:total_trials", 10)
    # Two trials of 2 minutes each, then the study sat idle for a day.
    study.add_trials([_trial(0, 2, lr=0.1), _trial(2, 2, lr=0.2)])
    later = (T0 + datetime.timedelta(days=1)).timestamp()
    idle = plots.get_status_info(StudyView.from_study(study), now=later)
    assert idle.eta_seconds is None and "ETA" not in plots.format_status(idle)
    running = study.ask()  # one trial runs again
    del running
    info = plots.get_status_info(StudyView.from_study(study), now=later)
    assert info.seconds_per_trial == pytest.approx(120.0)
    assert info.eta_seconds == pytest.approx((8 - 0.5) * 120.0)  # 15 minutes, not a day
    assert plots.format_status(info).endswith("ETA 15m00s")


def test_the_status_line_adds_up_and_uses_the_tables_words():
    study = optuna.create_study(study_name="words")
    study.set_user_attr("nbtune:total_trials", 4)
    study.add_trials([_trial(0, 1, lr=0.1), _trial(1, 1, TrialState.PRUNED, lr=0.2)])
    interrupted = study.ask()
    study._storage.set_trial_system_attr(interrupted._trial_id, "nbtune:fail_kind", "interrupted")
    study.tell(interrupted, state=TrialState.FAIL)
    text = plots.format_status(plots.get_status_info(StudyView.from_study(study)))
    # 2 finished = 1 complete + 1 pruned; the interrupted one is apart (it runs again).
    assert text.startswith("2/4 finished: 1 complete, 1 pruned | 1 interrupted (run again)")
    pytest.importorskip("ipywidgets")
    from nbtune.widgets import _render

    view = StudyView.from_study(study)
    assert [_render.state_word(t) for t in view.trials] == ["complete", "pruned", "interrupted"]
    table = _render.trials_table_html(view, limit=2)
    assert "the latest 2 of 3 trials" in table
    assert "padding:2px 8px" in table and ">interrupted<" in table


def test_a_number_field_asks_for_a_number():
    pytest.importorskip("ipywidgets")
    from nbtune.widgets._literal import FieldError, number

    with pytest.raises(
        FieldError, match=r"^low must be a number such as 500, -0.5 or 3e-4; got 'abc'$"
    ):
        number("abc", "low")
    with pytest.raises(FieldError, match="must be a number such as"):
        number("'0.5'", "low")  # a string is not a number either


def test_environments_keep_the_users_order_in_the_parent_and_its_fork(make_tuner):
    tuner = make_tuner(
        target_scores={"EnvB": [-100, 0], "EnvA": [0, 100]},
        params_fn={"learning-rate": 1e-3, "total-timesteps": 1000},
    )
    session = tuner.session(num_trials=1, num_seeds=1)
    session.run()
    parent = plots.get_env_scores_info(StudyView(tuner.storage, "test"))
    session.retarget({"EnvB": [-100, 0], "EnvA": [0, 50]})
    fork = plots.get_env_scores_info(StudyView(tuner.storage, "test.r1"))
    assert parent.env_ids == fork.env_ids == ("EnvB", "EnvA")


def test_the_forks_table_shows_each_trials_number_in_the_parent(make_tuner):
    pytest.importorskip("ipywidgets")
    from nbtune._rescore import fork_study
    from nbtune.widgets import _render

    tuner = make_tuner(params_fn={"learning-rate": 1e-3, "total-timesteps": 1000})
    tuner.tune(1, num_seeds=1)
    study = tuner.study
    study.ask()  # trial 1 runs: it stays with the parent
    (done,) = study.get_trials(states=(TrialState.COMPLETE,))
    study.add_trial(  # trial 2, finished: the fork's trial 1
        optuna.trial.create_trial(value=done.value, user_attrs=done.user_attrs)
    )
    fork = fork_study(study, target_scores={"EnvA": [0, 50], "EnvB": [-100, 0]})
    table = _render.trials_table_html(StudyView(tuner.storage, fork.study_name))
    assert '1 <small title="its number in the parent study">(#2)</small>' in table
    assert "(#0)" not in table  # the same number in both: nothing to say
