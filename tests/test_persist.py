"""The study spec, safe resume, the shared budget, baselines, provenance and retention."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import nbtune
from nbtune import SpecMismatchError
from nbtune._budget import budget_state
from nbtune._spec import SPEC_VERSION
from nbtune._storage import open_storage, record_heartbeat

TOY = Path(__file__).parent / "scripts" / "toy_train.py"

SPACE = {
    "learning-rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "total-timesteps": 1000,
}


def ran(study):
    return [t for t in study.trials if t.state != TrialState.WAITING]


def test_the_spec_is_stored_with_the_study(make_tuner):
    tuner = make_tuner(
        pruner=optuna.pruners.MedianPruner(n_startup_trials=7),
        sampler=optuna.samplers.TPESampler(n_startup_trials=3),
    )
    tuner.tune(num_trials=1, num_seeds=2)
    spec = json.loads(tuner.study.user_attrs["nbtune:spec"])
    assert spec["version"] == SPEC_VERSION
    assert spec["metric"] == "charts/episodic_return"
    assert spec["targets"] == {"EnvA": [0.0, 100.0], "EnvB": [-100.0, 0.0]}
    assert spec["num_seeds"] == 2
    assert spec["script"] == str(TOY.resolve())
    assert spec["space"]["learning-rate"] == {
        "type": "float",
        "low": 1e-5,
        "high": 1e-1,
        "log": True,
    }
    assert spec["pruner"]["name"] == "MedianPruner"
    assert spec["pruner"]["kwargs"]["n_startup_trials"] == 7
    assert spec["sampler"]["kwargs"]["n_startup_trials"] == 3
    assert (spec["reporting"], spec["checkpoints"]) == ("checkpoint", 10)
    assert tuner.study.user_attrs["nbtune:total_trials"] == 1


def test_a_mismatched_spec_is_refused_with_a_readable_diff(make_tuner):
    make_tuner().tune(num_trials=1, num_seeds=1)
    with pytest.raises(SpecMismatchError) as info:
        make_tuner(
            target_scores={"EnvA": [0, 200], "EnvB": [-100, 0]}, aggregation_type="median"
        ).tune(num_trials=1, num_seeds=1)
    message = str(info.value)
    assert "study 'test'" in message
    assert "targets: stored" in message and "[0.0, 200.0]" in message
    assert 'aggregation: stored "average", given "median"' in message
    assert "another study_name" in message and "override_spec=True" in message


def test_override_spec_continues_and_keeps_the_history(make_tuner):
    make_tuner().tune(num_trials=1, num_seeds=1)
    tuner = make_tuner(metric_last_n_average_window=5, override_spec=True)
    tuner.tune(num_trials=1, num_seeds=1)
    assert json.loads(tuner.study.user_attrs["nbtune:spec"])["window"] == 5
    (old,) = tuner.study.user_attrs["nbtune:spec_history"]
    assert json.loads(old)["window"] == 10
    assert len(ran(tuner.study)) == 2


def test_direction_cannot_be_overridden(make_tuner):
    make_tuner().tune(num_trials=1, num_seeds=1)
    with pytest.raises(SpecMismatchError, match="direction: stored"):
        make_tuner(direction="minimize", override_spec=True).tune(num_trials=1, num_seeds=1)


def test_a_study_never_mixes_reporting_modes(make_tuner):
    make_tuner().tune(num_trials=1, num_seeds=1)
    with pytest.raises(SpecMismatchError, match='reporting: stored "checkpoint", given "seed"'):
        make_tuner(reporting="seed").tune(num_trials=1, num_seeds=1)


def test_num_seeds_is_part_of_the_study(make_tuner):
    make_tuner().tune(num_trials=1, num_seeds=2)
    with pytest.raises(SpecMismatchError, match="num_seeds: stored 2, given 3"):
        make_tuner().tune(num_trials=1, num_seeds=3)
    # Left out, the study's own number is used.
    best = make_tuner().tune(num_trials=1)
    assert best.user_attrs["seeds"] == [0, 1]


def test_a_plain_optuna_study_of_the_same_name_is_adopted(make_tuner, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="test", storage=storage, direction="maximize")
    study.optimize(lambda t: t.suggest_float("learning-rate", 1e-5, 1e-1, log=True), n_trials=2)
    tuner = make_tuner()
    tuner.tune(num_trials=1, num_seeds=1)
    assert len(tuner.study.trials) == 3
    assert "nbtune:spec" in tuner.study.user_attrs


def test_a_large_budget_reserves_ahead_and_the_rest_on_demand(make_tuner, monkeypatch):
    # Thousands of WAITING trials would be re-read on every look at the study's open trials.
    monkeypatch.setattr(nbtune._budget, "RESERVE_AHEAD", 3)
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    assert tuner.reserve(1000, num_seeds=1) == 1000
    assert (budget_state(tuner.study).total, budget_state(tuner.study).waiting) == (1000, 3)
    tuner.reserve(7)  # total = 0 finished + 7; the 3 reservations are reused
    tuner.work()  # 4 more are reserved as trials are claimed, and not one beyond the total
    state = budget_state(tuner.study)
    assert (state.total, state.finished, state.running, state.waiting) == (7, 7, 0, 0)
    assert len(tuner.study.trials) == 7  # complete or pruned, each one claimed once


def test_two_claims_racing_for_the_last_trial_leave_one_running(tmp_path, monkeypatch):
    # Two processes pop the last two reservations at once, then both count two trials running
    # against a total of 1 and give theirs back. Giving up there would leave the study one
    # trial short; one of them must run it.
    url = f"sqlite:///{tmp_path}/race.db"
    study = optuna.create_study(storage=open_storage(url), study_name="race")
    study.set_user_attr(nbtune._budget.TOTAL_TRIALS, 1)
    nbtune._budget.reserve_slot(study)
    nbtune._budget.reserve_slot(study)
    both_popped, both_counted = threading.Barrier(2, timeout=10), threading.Barrier(2, timeout=10)
    counted = threading.local()
    real_budget_state = nbtune._budget.budget_state

    def budget_state_after_both_pops(study):
        if getattr(counted, "once", False):
            return real_budget_state(study)
        counted.once = True
        both_popped.wait()
        state = real_budget_state(study)
        both_counted.wait()  # neither gives back before both saw two trials running
        return state

    monkeypatch.setattr(nbtune._budget, "budget_state", budget_state_after_both_pops)
    claims: list[optuna.Trial | None] = []

    def claim() -> None:
        own = optuna.load_study(storage=open_storage(url), study_name="race")
        trial = nbtune._budget.claim_trial(own)
        if trial is not None:
            record_heartbeat(own, trial._trial_id)  # as the scheduler does right after a claim
        claims.append(trial)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(c is not None for c in claims) == 1
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert sorted(s.name for s in states) == ["RUNNING", "WAITING"]


def test_budget_counts_finished_trials_and_reuses_leftover_reservations(make_tuner):
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    assert tuner.reserve(5, num_seeds=1) == 5
    assert budget_state(tuner.study).waiting == 5
    tuner.tune(num_trials=2)  # total = 0 finished + 2: only 2 of the 5 reservations run
    state = budget_state(tuner.study)
    assert (state.total, state.finished, state.running) == (2, 2, 0)
    tuner.tune(num_trials=4)
    state = budget_state(tuner.study)
    assert (state.total, state.finished) == (6, 6)
    assert len(tuner.study.trials) == 6  # the leftover reservations were used, none created


def test_timeout_stops_starting_trials(make_tuner):
    tuner = make_tuner(params_fn={**SPACE, "sleep": 0.5}, target_scores={"EnvA": [0, 100]})
    t = time.monotonic()
    tuner.tune(num_trials=50, num_seeds=1, timeout=1.0)
    assert time.monotonic() - t < 10
    assert 1 <= budget_state(tuner.study).finished < 5


def _worker(tmp_path: Path, name: str = "shared") -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nbtune",
            "worker",
            "--storage",
            f"sqlite:///{tmp_path / 'study.db'}",
            "--study",
            name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_workers_finish_a_study_at_exactly_its_total(make_tuner, tmp_path):
    tuner = make_tuner(
        study_name="shared",
        params_fn={**SPACE, "sleep": 0.3},
        target_scores={"EnvA": [0, 100]},
    )
    tuner.reserve(8, num_seeds=1)
    workers = [_worker(tmp_path), _worker(tmp_path)]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'study.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 8  # exactly the total: complete, or pruned by the default pruner
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert all("study at 8 of 8" in out for out in outputs), outputs
    # Both worked, in their own experiment folders.
    dirs = {e["run_dir"] for t in study.trials for e in t.user_attrs["experiments"]}
    assert len(dirs) == 8


def test_a_worker_and_tune_share_the_budget(make_tuner, tmp_path):
    tuner = make_tuner(
        study_name="shared", params_fn={**SPACE, "sleep": 0.3}, target_scores={"EnvA": [0, 100]}
    )
    tuner.reserve(1, num_seeds=1)
    worker = _worker(tmp_path)
    tuner.tune(num_trials=5)  # total = finished so far + 5, whoever runs them
    worker.communicate(timeout=120)
    state = budget_state(tuner.study)
    assert state.finished == state.total and len(tuner.study.trials) == state.total


def test_resume_after_the_tuning_process_was_killed(tmp_path):
    program = textwrap.dedent(
        f"""
        import nbtune, optuna
        nbtune.Tuner(
            script={str(TOY)!r}, metric="charts/episodic_return",
            target_scores={{"EnvA": [0, 100]}},
            params_fn={{**{SPACE!r}, "sleep": 1.0}}, storage="sqlite:///{tmp_path / "study.db"}",
            study_name="resume", runs_dir={str(tmp_path / "runs")!r}, heartbeat_interval=1,
            pruner=optuna.pruners.NopPruner(), n_slots=1,
        ).tune(num_trials=4, num_seeds=1)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until one trial finished and the next one runs
        if "trial 1 started" in line:
            break
    proc.kill()
    proc.wait()
    # "Restart the kernel" and run the same cell again, asking for 2 more trials.
    tuner = nbtune.Tuner(
        script=TOY,
        metric="charts/episodic_return",
        target_scores={"EnvA": [0, 100]},
        params_fn={**SPACE, "sleep": 1.0},
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        study_name="resume",
        runs_dir=tmp_path / "runs",
        heartbeat_interval=1,
        verbose=False,
        pruner=optuna.pruners.NopPruner(),
        n_slots=1,
    )
    tuner.tune(num_trials=2)
    trials = tuner.study.trials
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 3  # 1 before the kill + 2 asked now
    killed = trials[1]
    assert killed.state == TrialState.FAIL  # its heartbeat went stale
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == killed.params
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_enqueued_baselines_run_first_and_count_in_the_budget(make_tuner):
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    tuner.enqueue({"learning-rate": 0.001})
    tuner.tune(num_trials=2, num_seeds=1)
    first, _ = tuner.study.trials
    assert first.params == {"learning-rate": 0.001}
    assert len(tuner.study.trials) == 2


def test_enqueue_checks_names_and_choices(make_tuner):
    tuner = make_tuner(
        params_fn={**SPACE, "mode": {"type": "categorical", "choices": ["ok"]}},
        target_scores={"EnvA": [0, 100]},
    )
    with pytest.raises(ValueError, match="'learning_rate' is not a sampled parameter"):
        tuner.enqueue({"learning_rate": 0.001})
    with pytest.raises(ValueError, match="fixed by the search space"):
        tuner.enqueue({"total-timesteps": 10})
    with pytest.raises(ValueError, match="must be one of"):
        tuner.enqueue({"mode": "crash"})


def test_enqueue_defaults_reads_the_script_help(make_tuner):
    tuner = make_tuner(
        params_fn={**SPACE, "num-minibatches": {"type": "int", "low": 1, "high": 8}},
        target_scores={"EnvA": [0, 100]},
    )
    assert tuner.enqueue_defaults() == {"learning-rate": 2.5e-4, "num-minibatches": 4}
    tuner.tune(num_trials=1, num_seeds=1)
    assert tuner.study.trials[0].params == {"learning-rate": 2.5e-4, "num-minibatches": 4}


def test_trials_record_versions_and_a_changed_script_is_warned_once(make_tuner, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TOY.read_text())
    tuner = make_tuner(script=script, params_fn=SPACE, target_scores={"EnvA": [0, 100]})
    tuner.tune(num_trials=1, num_seeds=1)
    versions = tuner.study.trials[0].user_attrs["versions"]
    assert versions["nbtune"] == nbtune.__version__
    assert versions["optuna"] == optuna.__version__
    assert versions["interpreter"].startswith("Python 3.")
    script.write_text(TOY.read_text() + "\n# changed\n")
    with pytest.warns(UserWarning, match="changed since this study began") as record:
        make_tuner(script=script, params_fn=SPACE, target_scores={"EnvA": [0, 100]}).tune(
            num_trials=2, num_seeds=1
        )
    assert len([w for w in record if "changed since" in str(w.message)]) == 1
    hashes = {t.user_attrs["script_sha256"] for t in ran(tuner.study)}
    assert len(hashes) == 2


@pytest.mark.parametrize(("keep_runs", "kept_whole"), [("logs", 0), (1, 1), ("all", 3)])
def test_retention_of_run_folders(make_tuner, keep_runs, kept_whole):
    tuner = make_tuner(params_fn=SPACE, target_scores={"EnvA": [0, 100]}, keep_runs=keep_runs)
    tuner.tune(num_trials=3, num_seeds=1)
    whole = 0
    for trial in tuner.study.trials:
        run_dir = Path(trial.user_attrs["experiments"][0]["run_dir"])
        assert (run_dir / "stdout.log").exists()
        assert list(run_dir.glob("runs/*/events.out.tfevents.*"))  # logs are always kept
        whole += (run_dir / "received.json").exists()  # what the script wrote besides logs
    assert whole == kept_whole
    if keep_runs == 1:
        best = tuner.study.best_trial
        assert Path(best.user_attrs["experiments"][0]["run_dir"], "received.json").exists()


def test_bad_keep_runs():
    with pytest.raises(ValueError, match="keep_runs"):
        nbtune.Tuner(TOY, "m", {"A": [0, 1]}, SPACE, keep_runs="best")


def test_wandb_tracks_each_trial_offline(make_tuner, wandb_offline):
    tuner = make_tuner(params_fn=SPACE, wandb_kwargs={"project": "nbtune-test"})
    tuner.tune(num_trials=2, num_seeds=1)
    runs = sorted(wandb_offline.glob("offline-run-*"))
    assert len(runs) == 2
