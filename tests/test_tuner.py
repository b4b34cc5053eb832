"""End-to-end tests of the Tuner on the tiny training script (tests/scripts/toy_train.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import nbtune
from nbtune import TuningError

TOY = Path(__file__).parent / "scripts" / "toy_train.py"
sys.path.insert(0, str(TOY.parent))
import toy_train  # noqa: E402


def ran(tuner) -> list:
    """Trials that ran: reservations left by a stopped study wait in the queue."""
    return [t for t in tuner.study.trials if t.state != TrialState.WAITING]


def expected_raw(lr: float, env: str, seed: int, window: int, timesteps: int, anneal=True) -> float:
    """The last-`window` mean the toy logs, with float32 rounding as TensorBoard stores it."""
    n = timesteps // 100
    base = toy_train.score(lr, anneal, seed, env)
    points = np.array([base - 0.01 * (n - 1 - i) for i in range(n)], dtype=np.float32)
    return float(points[-window:].astype(np.float64).mean())


def fixed_lr(lr: float, **extra):
    return lambda trial: {
        "learning-rate": trial.suggest_categorical("learning-rate", [lr]),
        "total-timesteps": 2000,
        **extra,
    }


def test_value_is_normalized_aggregated_and_seed_averaged(make_tuner):
    lr = 3e-4
    tuner = make_tuner(params_fn=fixed_lr(lr), aggregation_type="min")
    best = tuner.tune(num_trials=1, num_seeds=2)
    targets = {"EnvA": (0, 100), "EnvB": (-100, 0)}
    per_seed = []
    for seed in (0, 1):
        norm = [
            (expected_raw(lr, env, seed, 10, 2000) - lo) / (hi - lo)
            for env, (lo, hi) in targets.items()
        ]
        per_seed.append(min(norm))
    assert best.value == pytest.approx(np.mean(per_seed), rel=1e-12)
    raw = best.user_attrs["raw_scores"]
    assert raw["EnvB"][1] == pytest.approx(expected_raw(lr, "EnvB", 1, 10, 2000), rel=1e-12)
    assert best.user_attrs["seeds"] == [0, 1]
    # In-run reporting: 10 checkpoints per seed, the last one is the final value.
    assert set(best.intermediate_values) == set(range(20))
    assert best.intermediate_values[19] == pytest.approx(best.value)


def test_seed_reporting_reports_once_per_seed(make_tuner):
    tuner = make_tuner(params_fn=fixed_lr(3e-4), reporting="seed")
    best = tuner.tune(num_trials=1, num_seeds=2)
    assert best.intermediate_values.keys() == {0, 1}
    assert best.intermediate_values[1] == pytest.approx(best.value)
    assert json.loads(tuner.study.user_attrs["nbtune:spec"])["reporting"] == "seed"


def test_iqm_pools_every_environment_and_seed(make_tuner):
    tuner = make_tuner(
        params_fn=fixed_lr(1e-3),
        aggregation_type="iqm",
        target_scores={"EnvA": [0, 100], "EnvB": [-100, 0], "Other": [0, 50]},
    )
    best = tuner.tune(num_trials=1, num_seeds=2)
    pooled = [x for scores in best.user_attrs["normalized_scores"].values() for x in scores]
    assert len(pooled) == 6
    assert best.value == pytest.approx(np.mean(np.sort(pooled)[1:5]))


def test_none_target_uses_the_raw_metric(make_tuner):
    tuner = make_tuner(params_fn=fixed_lr(1e-3), target_scores={"EnvB": None})
    best = tuner.tune(num_trials=1, num_seeds=1)
    assert best.value == pytest.approx(expected_raw(1e-3, "EnvB", 0, 10, 2000))


def test_every_flag_reaches_the_script_in_the_form_it_expects(make_tuner, tmp_path):
    # The first parameter is the one CleanRL's runpy-based tuner silently dropped.
    params_fn = lambda trial: {  # noqa: E731
        "learning-rate": trial.suggest_float("learning-rate", 0.002, 0.002),
        "anneal-lr": trial.suggest_categorical("anneal-lr", [False]),
        "layers": [32, 16],
        "num-minibatches": 8,
        "total-timesteps": 1000,
    }
    tuner = make_tuner(
        params_fn=params_fn, target_scores={"EnvA": [0, 100]}, env={"TOY_EXTRA": "x"}
    )
    best = tuner.tune(num_trials=1, num_seeds=1)
    (experiment,) = best.user_attrs["experiments"]
    received = json.loads((Path(experiment["run_dir"]) / "received.json").read_text())
    assert received["args"]["learning_rate"] == 0.002
    assert received["args"]["anneal_lr"] is False
    assert received["args"]["layers"] == [32, 16]
    assert received["args"]["num_minibatches"] == 8
    assert received["args"]["env_id"] == "EnvA" and received["args"]["seed"] == 0
    assert received["OMP_NUM_THREADS"] == "1" and received["TOY_EXTRA"] == "x"
    assert experiment["argv"][0] == sys.executable
    assert experiment["argv"][2:] == [
        "--learning-rate=0.002",
        "--no-anneal-lr",
        "--layers",
        "32",
        "16",
        "--num-minibatches=8",
        "--total-timesteps=1000",
        "--env-id=EnvA",
        "--seed=0",
    ]
    assert received["argv"][1:] == experiment["argv"][2:]
    assert best.value == pytest.approx(expected_raw(0.002, "EnvA", 0, 10, 1000, anneal=False) / 100)


def test_experiments_never_share_a_directory(make_tuner):
    tuner = make_tuner()
    tuner.tune(num_trials=3, num_seeds=2)
    dirs = [e["run_dir"] for t in tuner.study.trials for e in t.user_attrs["experiments"]]
    assert len(dirs) == 12 and len(set(dirs)) == 12
    for d in dirs:
        assert Path(d).is_relative_to(tuner.runs_dir)
        assert len(list((Path(d) / "runs").iterdir())) == 1


def test_the_optimizer_moves_toward_the_optimum(make_tuner):
    tuner = make_tuner(
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
        target_scores={"EnvA": [0, 100]},
    )
    best = tuner.tune(num_trials=25, num_seeds=1)
    assert abs(math.log10(best.params["learning-rate"]) + 3) < 0.5
    values = [t.value for t in tuner.study.trials]
    # Sampling uniformly in log space would give a median quality of exp(-1) = 0.37.
    assert np.median(values[-10:]) > 0.6


def test_cleanrl_documented_example_runs_with_only_the_import_changed(tmp_path, monkeypatch):
    """CleanRL's documented example, verbatim but for the script path and a smaller budget.

    Its deprecated suggest_loguniform / suggest_uniform calls stay: users paste them.
    """
    monkeypatch.chdir(tmp_path)  # the default storage and runs folder land in the cwd
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecated suggest_* spellings warn nothing
        from nbtune import Tuner

        tuner = Tuner(
            script=str(TOY),
            metric="charts/episodic_return",
            metric_last_n_average_window=50,
            direction="maximize",
            aggregation_type="average",
            target_scores={
                "CartPole-v1": [0, 500],
                "Acrobot-v1": [-500, 0],
            },
            params_fn=lambda trial: {
                "learning-rate": trial.suggest_loguniform("learning-rate", 0.0003, 0.003),
                "num-minibatches": trial.suggest_categorical("num-minibatches", [1, 2, 4]),
                "update-epochs": trial.suggest_categorical("update-epochs", [1, 2, 4, 8]),
                "num-steps": trial.suggest_categorical("num-steps", [5, 16, 32, 64, 128]),
                "vf-coef": trial.suggest_uniform("vf-coef", 0, 5),
                "max-grad-norm": trial.suggest_uniform("max-grad-norm", 0, 5),
                "total-timesteps": 10000,
                "num-envs": 16,
            },
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
            sampler=optuna.samplers.TPESampler(),
            verbose=False,
        )
        best = tuner.tune(num_trials=2, num_seeds=2)
    assert (tmp_path / "cleanrl_hpopt.db").exists()
    assert set(best.params) == {
        "learning-rate",
        "num-minibatches",
        "update-epochs",
        "num-steps",
        "vf-coef",
        "max-grad-norm",
    }
    assert 0 < best.value < 1.1
    assert tuner.study_name.startswith("tuner_")


@pytest.mark.parametrize("example", ["unknown_scales", "wandb"])
def test_cleanrl_documented_other_examples_run(tmp_path, monkeypatch, request, example):
    """CleanRL's documented "w/o knowing the reward scales" and "w/ Weights and Biases" examples."""
    monkeypatch.chdir(tmp_path)
    extra = {}
    if example == "wandb":
        wandb_dir = request.getfixturevalue("wandb_offline")
        extra["wandb_kwargs"] = {"project": "cleanrl"}
    from nbtune import Tuner

    tuner = Tuner(
        script=str(TOY),
        metric="charts/episodic_return",
        metric_last_n_average_window=50,
        direction="maximize",
        aggregation_type="average",
        target_scores={
            "CartPole-v1": None,
        },
        params_fn=lambda trial: {
            "learning-rate": trial.suggest_loguniform("learning-rate", 0.0003, 0.003),
            "num-minibatches": trial.suggest_categorical("num-minibatches", [1, 2, 4]),
            "update-epochs": trial.suggest_categorical("update-epochs", [1, 2, 4, 8]),
            "num-steps": trial.suggest_categorical("num-steps", [5, 16, 32, 64, 128]),
            "vf-coef": trial.suggest_uniform("vf-coef", 0, 5),
            "max-grad-norm": trial.suggest_uniform("max-grad-norm", 0, 5),
            "total-timesteps": 10000,
            "num-envs": 16,
        },
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
        sampler=optuna.samplers.TPESampler(),
        verbose=False,
        **extra,
    )
    best = tuner.tune(
        num_trials=2,
        num_seeds=1,
    )
    # None target: the value is the raw metric, CartPole's return (0 to 500 in the toy)
    raw = best.user_attrs["raw_scores"]["CartPole-v1"][0]
    assert best.value == raw and 0 < raw <= 505
    if example == "wandb":
        assert len(list(wandb_dir.glob("offline-run-*"))) == 2


def test_num_seeds_in_the_constructor_is_the_default(make_tuner):
    tuner = make_tuner(num_seeds=3, target_scores={"EnvA": [0, 100]})
    best = tuner.tune(num_trials=1)
    assert best.user_attrs["seeds"] == [0, 1, 2]
    with pytest.raises(ValueError, match="num_seeds"):
        make_tuner().tune(num_trials=1)


def test_tune_adds_trials_to_an_existing_study(make_tuner):
    make_tuner(target_scores={"EnvA": [0, 100]}).tune(num_trials=2, num_seeds=1)
    tuner = make_tuner(target_scores={"EnvA": [0, 100]})
    tuner.tune(num_trials=3, num_seeds=1)
    assert len(tuner.study.trials) == 5


def test_storage_path_is_absolute_and_printed(make_tuner, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tuner = make_tuner(
        storage="sqlite:///rel/study.db", target_scores={"EnvA": [0, 100]}, verbose=True
    )
    tuner.tune(num_trials=1, num_seeds=1)
    out = capsys.readouterr().out
    assert f"sqlite:///{tmp_path / 'rel' / 'study.db'}" in out
    assert (tmp_path / "rel" / "study.db").exists()


def test_trials_dataframe_has_a_column_per_environment_and_seed(make_tuner):
    tuner = make_tuner(params_fn=fixed_lr(1e-3))
    tuner.tune(num_trials=1, num_seeds=2)
    df = tuner.trials_dataframe()
    for env in ("EnvA", "EnvB"):
        for seed in (0, 1):
            assert f"raw_score/{env}/seed{seed}" in df
            assert f"normalized_score/{env}/seed{seed}" in df
    assert df.loc[0, "normalized_score/EnvB/seed1"] == pytest.approx(
        (expected_raw(1e-3, "EnvB", 1, 10, 2000) + 100) / 100
    )
    assert len(df.loc[0, "script_sha256"]) == 64


# ------------------------------------------------------------------------------- failures
def test_a_crash_fails_the_trial_with_reason_and_stderr_and_the_study_goes_on(make_tuner):
    params_fn = lambda trial: {  # noqa: E731
        "learning-rate": 1e-3,
        "mode": "crash" if trial.number == 0 else "ok",
        "total-timesteps": 1000,
    }
    tuner = make_tuner(params_fn=params_fn, target_scores={"EnvA": [0, 100]})
    best = tuner.tune(num_trials=2, num_seeds=1)
    failed = tuner.study.trials[0]
    assert failed.state == TrialState.FAIL
    assert "exited with code 3" in failed.user_attrs["fail_reason"]
    assert "toy crash on purpose" in failed.user_attrs["stderr_tail"]
    assert best.number == 1


def test_a_rejected_flag_is_named_as_such(make_tuner):
    tuner = make_tuner(
        params_fn=lambda trial: {"learnin-rate": 1e-3},
        target_scores={"EnvA": [0, 100]},
        max_consecutive_failures=1,
    )
    with pytest.raises(TuningError, match="rejected its arguments"):
        tuner.tune(num_trials=3, num_seeds=1)
    (trial,) = ran(tuner)
    assert trial.state == TrialState.FAIL
    assert "unrecognized arguments: --learnin-rate" in trial.user_attrs["stderr_tail"]


def test_a_missing_metric_names_the_tag_and_lists_the_logged_ones(make_tuner):
    tuner = make_tuner(
        params_fn=lambda trial: {"mode": "nometric", "total-timesteps": 500},
        target_scores={"EnvA": [0, 100]},
        max_consecutive_failures=1,
    )
    with pytest.raises(TuningError, match="charts/episodic_return"):
        tuner.tune(num_trials=1, num_seeds=1)
    reason = tuner.study.trials[0].user_attrs["fail_reason"]
    assert "'charts/episodic_return'" in reason and "losses/value_loss" in reason


def test_a_run_that_logged_nothing_fails(make_tuner):
    tuner = make_tuner(
        params_fn=lambda trial: {"total-timesteps": 50},  # below one logging interval
        target_scores={"EnvA": [0, 100]},
        max_consecutive_failures=1,
    )
    with pytest.raises(TuningError, match="no scalar at all"):
        tuner.tune(num_trials=1, num_seeds=1)


def test_nan_metric_fails_the_trial(make_tuner):
    tuner = make_tuner(
        params_fn=lambda trial: {"mode": "nan", "total-timesteps": 500},
        target_scores={"EnvA": [0, 100]},
        max_consecutive_failures=1,
    )
    with pytest.raises(TuningError, match="is nan"):
        tuner.tune(num_trials=1, num_seeds=1)


def test_experiment_timeout_fails_the_trial(make_tuner):
    tuner = make_tuner(
        params_fn=lambda trial: {"mode": "hang"},
        target_scores={"EnvA": [0, 100]},
        experiment_timeout=1.0,
        max_consecutive_failures=1,
    )
    t = time.monotonic()
    with pytest.raises(TuningError, match="timed out after 1 s"):
        tuner.tune(num_trials=1, num_seeds=1)
    assert time.monotonic() - t < 10


def test_consecutive_failures_stop_the_study_with_a_clear_message(make_tuner):
    tuner = make_tuner(
        params_fn=lambda trial: {"mode": "crash"},
        target_scores={"EnvA": [0, 100]},
        max_consecutive_failures=3,
    )
    with pytest.raises(TuningError, match="3 trials in a row failed"):
        tuner.tune(num_trials=10, num_seeds=1)
    assert [t.state for t in ran(tuner)] == [TrialState.FAIL] * 3
    assert len(tuner.study.trials) == 10  # the rest of the budget stays reserved


def test_a_bug_in_params_fn_fails_the_trial_and_is_raised(make_tuner):
    tuner = make_tuner(params_fn=lambda trial: {"lr": 1 / 0})
    with pytest.raises(ZeroDivisionError):
        tuner.tune(num_trials=2, num_seeds=1)
    (trial,) = ran(tuner)
    assert trial.state == TrialState.FAIL
    assert "ZeroDivisionError" in trial.user_attrs["fail_reason"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"target_scores": {"EnvA": [1, 1]}}, "target_scores"),
        ({"aggregation_type": "mean"}, "aggregation_type"),
        ({"target_scores": {"EnvA": None, "EnvB": [0, 1]}}, "target_scores"),
        ({"script": "no/such/script.py"}, "script"),
        ({"metric_last_n_average_window": 0}, "metric_last_n_average_window"),
        ({"direction": "up"}, "direction"),
        ({"metric": ""}, "metric"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_field(make_tuner, tmp_path, overrides, field):
    with pytest.raises(ValueError, match=field):
        make_tuner(**overrides).tune(num_trials=1, num_seeds=1)
    assert not (tmp_path / "runs").exists()  # raised before any experiment started


@pytest.mark.parametrize(
    ("num_trials", "num_seeds", "field"),
    [(0, 1, "num_trials"), (1, 0, "num_seeds"), (2.5, 1, "num_trials")],
)
def test_bad_tune_arguments(make_tuner, tmp_path, num_trials, num_seeds, field):
    with pytest.raises(ValueError, match=field):
        make_tuner().tune(num_trials=num_trials, num_seeds=num_seeds)
    assert not (tmp_path / "runs").exists()


def test_a_study_with_another_direction_is_refused(make_tuner):
    make_tuner(target_scores={"EnvA": [0, 100]}).tune(num_trials=1, num_seeds=1)
    with pytest.raises(ValueError, match="direction"):
        make_tuner(direction="minimize").tune(num_trials=1, num_seeds=1)


# ----------------------------------------------------------------- interruptions and kills
def _tuner_program(tmp_path: Path, mode: str, heartbeat: int = 60) -> str:
    return textwrap.dedent(
        f"""
        import sys
        import nbtune
        tuner = nbtune.Tuner(
            script={str(TOY)!r}, metric="charts/episodic_return",
            target_scores={{"EnvA": [0, 100]}},
            params_fn=lambda t: {{
                "mode": t.suggest_categorical("mode", [{mode!r}]), "spawn-child": True
            }},
            storage="sqlite:///{tmp_path / "study.db"}", study_name="kill",
            runs_dir={str(tmp_path / "runs")!r}, heartbeat_interval={heartbeat},
        )
        tuner.tune(num_trials=1, num_seeds=1)
        """
    )


def _wait_for_script(tmp_path: Path) -> tuple[int, int]:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        pids = list(tmp_path.glob("runs/*/*/grandchild.pid"))
        if pids:
            received = json.loads((pids[0].parent / "received.json").read_text())
            return received["pid"], int(pids[0].read_text())
        time.sleep(0.05)
    raise AssertionError("the experiment never started")


def _alive(pid: int) -> bool:
    from test_experiment import alive

    return alive(pid)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_leave_no_trial_running(tmp_path, sig):
    import signal

    proc = subprocess.Popen([sys.executable, "-c", _tuner_program(tmp_path, "hang")])
    script, grandchild = _wait_for_script(tmp_path)
    proc.send_signal(getattr(signal, sig))
    code = proc.wait(timeout=20)
    assert code != 0
    study = optuna.load_study(study_name="kill", storage=f"sqlite:///{tmp_path / 'study.db'}")
    (trial, reservation) = study.trials
    assert reservation.state == TrialState.WAITING  # the interrupted trial's budget is given back
    assert trial.state == TrialState.FAIL
    assert "interrupted" in trial.user_attrs["fail_reason"]
    assert trial.system_attrs["nbtune:fail_kind"] == "interrupted"
    assert not _alive(script) and not _alive(grandchild)


def test_a_hard_killed_tuner_leaves_no_orphans_and_its_trial_is_retried(tmp_path, make_tuner):
    proc = subprocess.Popen([sys.executable, "-c", _tuner_program(tmp_path, "hang", heartbeat=1)])
    script, grandchild = _wait_for_script(tmp_path)
    proc.kill()
    proc.wait()
    end = time.monotonic() + 5
    while time.monotonic() < end and (_alive(script) or _alive(grandchild)):
        time.sleep(0.05)
    assert not _alive(script) and not _alive(grandchild)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    (trial,) = optuna.load_study(study_name="kill", storage=storage).trials
    assert trial.state == TrialState.RUNNING  # nobody could fail it yet
    time.sleep(2.5)  # past the grace period (2 heartbeats)
    # A new process joins the study from its stored spec, with a short experiment timeout.
    tuner = nbtune.Tuner.from_study(
        storage, "kill", heartbeat_interval=1, experiment_timeout=0.5, verbose=False
    )
    # The stale trial is failed and queued again; this tune() runs the retry first.
    with pytest.raises(TuningError):
        tuner.tune(num_trials=1, num_seeds=1)
    trials = tuner.study.trials
    assert trials[0].state == TrialState.FAIL
    assert trials[1].system_attrs.get("failed_trial") == 0
    assert all(t.state != TrialState.RUNNING for t in trials)


def test_after_a_restart_the_dead_kernels_trial_is_failed_at_once_and_linked_to_its_retry(
    tmp_path,
):
    """A kernel killed mid-trial leaves it RUNNING; the next session on the same machine sees
    that its process is gone (no waiting for the heartbeat), fails it with the reason, and the
    retry names the trial it repeats."""
    # A long heartbeat: without the owner check the trial would stay RUNNING for 2 minutes.
    proc = subprocess.Popen([sys.executable, "-c", _tuner_program(tmp_path, "hang", heartbeat=60)])
    _wait_for_script(tmp_path)
    proc.kill()
    proc.wait()
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    (trial,) = optuna.load_study(study_name="kill", storage=storage).trials
    assert trial.state.name == "RUNNING"
    session = nbtune.Tuner.from_study(storage, "kill", verbose=False).session(None)
    assert session.notes == [
        "trial 0: its process stopped (kernel restart or kill): it runs again as a new trial"
    ]
    dead, retry = session.study.get_trials(deepcopy=False)
    assert dead.state.name == "FAIL"
    assert dead.user_attrs["fail_reason"].startswith("its process stopped")
    assert retry.state.name == "WAITING" and retry.user_attrs["nbtune:retry_of"] == 0
