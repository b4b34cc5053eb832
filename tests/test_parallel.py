"""Parallel slots, in-run (checkpoint) reporting and pruning."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_experiment import alive

from nbtune._resources import available_cpus, cgroup_cpu_quota, default_slots

SLOW = {"total-timesteps": 3000, "log-sleep": 0.1}  # 30 points, about 3 s per experiment


def fixed(lr: float, **extra):
    return lambda trial: {"learning-rate": trial.suggest_float("learning-rate", lr, lr), **extra}


def test_a_bad_configuration_is_pruned_mid_run_and_its_processes_are_gone(make_tuner):
    tuner = make_tuner(
        params_fn=lambda t: {
            "learning-rate": t.suggest_float("learning-rate", 1e-5, 1e-1, log=True),
            **SLOW,
        },
        n_slots=2,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1),
    )
    tuner.enqueue({"learning-rate": 1e-3})  # good: completes
    tuner.enqueue({"learning-rate": 1e-5})  # bad: pruned at an early checkpoint
    tuner.tune(num_trials=2, num_seeds=1)
    good, bad = tuner.study.trials
    assert good.state == TrialState.COMPLETE
    assert bad.state == TrialState.PRUNED
    assert max(bad.intermediate_values) < 9  # stopped before the end of training
    for experiment in bad.user_attrs["experiments"]:
        assert experiment["status"] == "pruned"
        assert experiment["seconds"] < 2.8  # a full run takes about 3 s
        run_dir = Path(experiment["run_dir"])
        assert not alive(json.loads((run_dir / "received.json").read_text())["pid"])
        assert (run_dir / "stdout.log").exists()  # what it logged is kept
        assert list(run_dir.glob("runs/*/events.out.tfevents.*"))
    for value in bad.intermediate_values.values():
        assert math.isfinite(value)


def test_intermediate_values_are_checkpoint_indices_and_end_at_the_final_value(make_tuner):
    tuner = make_tuner(params_fn=fixed(1e-3, **SLOW), n_slots=2, checkpoints=4)
    best = tuner.tune(num_trials=1, num_seeds=2)
    assert sorted(best.intermediate_values) == list(range(8))  # 2 seeds x 4 checkpoints
    assert best.intermediate_values[7] == pytest.approx(best.value)
    # checkpoints of the first seed use only the points logged up to 25%, 50%, ... of training:
    # the toy's return rises by 0.01 per point, so the values rise with the checkpoint
    first_seed = [best.intermediate_values[k] for k in range(4)]
    assert first_seed == sorted(first_seed) and first_seed[0] < first_seed[3]


def test_checkpoints_are_skipped_before_any_point_is_logged(make_tuner):
    # No metric point in the first 35% of training (no episode ended yet): the checkpoints at
    # 10, 20 and 30% are skipped instead of reported as NaN, which would prune at once.
    tuner = make_tuner(params_fn=fixed(1e-3, **SLOW, **{"metric-from": 0.35}), n_slots=2)
    best = tuner.tune(num_trials=1, num_seeds=1)
    assert sorted(best.intermediate_values) == list(range(3, 10))
    assert all(math.isfinite(v) for v in best.intermediate_values.values())


def test_experiments_run_concurrently_and_never_share_a_directory(make_tuner):
    tuner = make_tuner(params_fn=fixed(1e-3, **{"total-timesteps": 1000, "sleep": 1.0}), n_slots=3)
    tuner.tune(num_trials=2, num_seeds=2)
    experiments = [e for t in tuner.study.trials for e in t.user_attrs["experiments"]]
    dirs = [e["run_dir"] for e in experiments]
    assert len(dirs) == 8 and len(set(dirs)) == 8
    starts = sorted(json.loads((Path(d) / "received.json").read_text())["started"] for d in dirs)
    # with 3 slots, some experiments started within the 1 s another one sleeps
    assert any(b - a < 0.9 for a, b in itertools.pairwise(starts))


def test_the_same_configuration_and_seed_score_the_same_whatever_the_slots(make_tuner, tmp_path):
    scores = []
    for n_slots in (1, 3):
        tuner = make_tuner(
            params_fn=fixed(4e-4, **{"total-timesteps": 1500}),
            n_slots=n_slots,
            study_name=f"slots{n_slots}",
            runs_dir=tmp_path / f"runs{n_slots}",
        )
        best = tuner.tune(num_trials=1, num_seeds=3)
        scores.append((best.user_attrs["raw_scores"], best.value, best.intermediate_values))
    assert scores[0] == scores[1]


def test_storage_counts_match_what_ran(make_tuner):
    params_fn = lambda t: {  # noqa: E731
        "learning-rate": t.suggest_float("learning-rate", 1e-5, 1e-1, log=True),
        "mode": "crash" if t.number % 3 == 2 else "ok",
        **SLOW,
    }
    tuner = make_tuner(
        params_fn=params_fn,
        n_slots=2,
        max_consecutive_failures=None,
        target_scores={"EnvA": [0, 100]},
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )
    tuner.tune(num_trials=6, num_seeds=1)
    states = [t.state for t in tuner.study.trials]
    assert len(states) == 6
    assert states.count(TrialState.FAIL) == 2
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 4
    assert TrialState.RUNNING not in states


def test_slot_environment_variables(make_tuner):
    tuner = make_tuner(
        params_fn=fixed(1e-3, **{"total-timesteps": 500, "sleep": 0.5}),
        n_slots=2,
        slot_env=[{"TOY_EXTRA": "gpu0"}, {"TOY_EXTRA": "gpu1"}],
    )
    best = tuner.tune(num_trials=1, num_seeds=1)  # EnvA and EnvB at once, one per slot
    seen = {
        json.loads((Path(e["run_dir"]) / "received.json").read_text())["TOY_EXTRA"]
        for e in best.user_attrs["experiments"]
    }
    assert seen == {"gpu0", "gpu1"}


def test_a_sampler_without_constant_liar_is_warned_about(make_tuner):
    with pytest.warns(UserWarning, match="constant_liar"):
        make_tuner(n_slots=2, sampler=optuna.samplers.TPESampler(constant_liar=False))


def test_default_slots_follow_usable_cpus_and_cgroup_quota(tmp_path):
    assert 1 <= default_slots() <= available_cpus()
    assert default_slots(memory_per_experiment=1 << 60) == 1  # the memory guard
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_progress_bar_shows_the_study_from_the_storage(make_tuner, capsys):
    tuner = make_tuner(
        params_fn=fixed(1e-3, **{"total-timesteps": 500}),
        progress_bar=True,
        verbose=True,
        target_scores={"EnvA": [0, 100]},
    )
    tuner.tune(num_trials=3, num_seeds=1)
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "3/3" in final and "0 running" in final and "0 failed" in final
    assert "best 0.9" in final


def test_pause_freezes_experiments_and_resume_goes_on(make_tuner):
    import threading
    import time

    pause, stop = threading.Event(), threading.Event()
    tuner = make_tuner(params_fn=fixed(1e-3, **SLOW), n_slots=2, experiment_timeout=6.0)
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "best", tuner.tune(num_trials=1, num_seeds=1, pause_event=pause, stop_event=stop)
        )
    )
    thread.start()
    deadline = time.monotonic() + 30
    while len(list(tuner.runs_dir.glob("trial_*/*/runs/*/events*"))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    pause.set()
    time.sleep(0.5)
    dirs = list(tuner.runs_dir.glob("trial_*/*"))
    assert len(dirs) == 2
    sizes = [sum(f.stat().st_size for f in d.rglob("events*")) for d in dirs]
    time.sleep(1.5)  # frozen: nothing more is logged
    assert [sum(f.stat().st_size for f in d.rglob("events*")) for d in dirs] == sizes
    for d in dirs:
        pid = json.loads((d / "received.json").read_text())["pid"]
        with open(f"/proc/{pid}/stat") as f:
            assert f.read().split(")")[-1].split()[0] == "T"  # stopped
    time.sleep(4.0)  # longer than the timeout would allow if paused time counted
    pause.clear()
    thread.join(timeout=30)
    assert result["best"].state == TrialState.COMPLETE
