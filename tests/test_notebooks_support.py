"""What the notebooks and Binder rely on: target tables, optuna-dashboard, committed files."""

from __future__ import annotations

import doctest
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from _support import get_json, serve_dashboard, skip_or_fail

import nbtune
import nbtune.targets
from nbtune.targets import atari_games, atari_human_normalized

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BINDER = ROOT / "binder"
DEMO = NOTEBOOKS / "data" / "demo_study.log"


# ------------------------------------------------------------------------------------------------
# nbtune.targets
# ------------------------------------------------------------------------------------------------
def test_atari_table_has_the_49_games_of_mnih_et_al_2015() -> None:
    table = atari_human_normalized()
    assert len(table) == 49 == len(atari_games())
    assert list(table) == [f"{game}-v5" for game in atari_games()]
    # The first five of CleanRL's documented Atari example, and a few more read from Extended
    # Data Table 2.
    assert atari_human_normalized(["Alien", "Amidar", "Assault", "Asterix", "Asteroids"]) == {
        "Alien-v5": [227.8, 6875.0],
        "Amidar-v5": [5.8, 1676.0],
        "Assault-v5": [222.4, 1496.0],
        "Asterix-v5": [210.0, 8503.0],
        "Asteroids-v5": [719.1, 13157.0],
    }
    assert table["Pong-v5"] == [-20.7, 9.3]
    assert table["VideoPinball-v5"] == [16257.0, 17298.0]
    assert table["Tutankham-v5"] == [11.4, 167.6]
    assert table["MontezumaRevenge-v5"] == [0.0, 4367.0]
    assert all(high > low for low, high in table.values())


def test_atari_names_are_matched_loosely_and_ids_formatted() -> None:
    ids = ["pong", "ALE/Breakout-v5", "SpaceInvadersNoFrameskip-v4", "Ms Pacman"]
    out = atari_human_normalized(ids, env_id="ALE/{game}-v5")
    assert list(out) == [
        "ALE/Pong-v5",
        "ALE/Breakout-v5",
        "ALE/SpaceInvaders-v5",
        "ALE/MsPacman-v5",
    ]
    with pytest.raises(ValueError, match="not one of the 49 games"):
        atari_human_normalized(["Skiing"])  # one of the 57, not of the 49


def test_atari_table_works_as_target_scores(tmp_path: Path, toy_script: Path) -> None:
    tuner = nbtune.Tuner(
        script=toy_script,
        metric="charts/episodic_return",
        target_scores=atari_human_normalized(["Pong", "Breakout"]),
        params_fn={"learning-rate": 0.001},
        aggregation_type="median",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        verbose=False,
    )
    assert tuner.spec.targets == {"Pong-v5": [-20.7, 9.3], "Breakout-v5": [1.7, 31.8]}


def test_targets_docstring_examples_run() -> None:
    result = doctest.testmod(nbtune.targets, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# ------------------------------------------------------------------------------------------------
# optuna-dashboard opens nbtune's storage
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_optuna_dashboard_shows_scores_and_per_env_attrs(
    kind: str, make_tuner: Any, tmp_path: Path
) -> None:
    if importlib.util.find_spec("optuna_dashboard") is None:
        skip_or_fail('optuna-dashboard is not installed (pip install "nbtune[test]")')
    storage = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else str(tmp_path / "j.log")
    tuner = make_tuner(storage=storage, study_name="dash")
    tuner.tune(num_trials=2, num_seeds=2)
    trials = {t.number: t for t in tuner.study.trials}

    with serve_dashboard(storage, tmp_path / "dashboard.log") as base:
        studies = get_json(f"{base}/api/studies")["study_summaries"]
        (summary,) = [s for s in studies if s["study_name"] == "dash"]
        assert summary["directions"] == ["maximize"]
        assert "nbtune:spec" in {a["key"] for a in summary["user_attrs"]}

        detail = get_json(f"{base}/api/studies/{summary['study_id']}?after=0")
        assert len(detail["trials"]) == 2
        for shown in detail["trials"]:
            trial = trials[shown["number"]]
            assert shown["state"] == "Complete"
            assert shown["values"] == pytest.approx([trial.value])
            # The dashboard cuts values after 1024 characters (``experiments`` is longer).
            attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
            assert {"seeds", "experiments", "versions"} <= set(attrs)
            attrs = {k: json.loads(attrs[k]) for k in ("normalized_scores", "raw_scores")}
            assert attrs["normalized_scores"] == trial.user_attrs["normalized_scores"]
            assert set(attrs["raw_scores"]) == {"EnvA", "EnvB"}
            assert len(attrs["raw_scores"]["EnvA"]) == 2  # one score per seed
            assert shown["intermediate_values"]  # nbtune reports while training: pruner input


# ------------------------------------------------------------------------------------------------
# The committed notebooks, their pre-recorded study, and binder/
# ------------------------------------------------------------------------------------------------
def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_notebooks_are_committed_clean() -> None:
    import nbformat

    paths = _notebooks()
    assert {p.name for p in paths} >= {
        "tune_cartpole_acrobot.ipynb",
        "quickstart_headless.ipynb",
        "watch_workers.ipynb",
        "unknown_reward_scales.ipynb",
        "atari_human_normalized.ipynb",
    }
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path.name} has outputs: strip them with "
                    f"jupyter nbconvert --clear-output --inplace {path}"
                )
        source = "\n".join(cell.source for cell in nb.cells)
        assert "NBTUNE_SMOKE" in source, f"{path.name} has no smoke budget"
        assert path.stat().st_size < 30_000, f"{path.name} is large: does it hold outputs?"


def test_smoke_mode_is_set_for_nbmake() -> None:
    text = (NOTEBOOKS / "conftest.py").read_text()
    assert 'os.environ.setdefault("NBTUNE_SMOKE", "1")' in text


def test_demo_study_is_small_and_complete() -> None:
    assert DEMO.stat().st_size < 1_000_000
    view = nbtune.StudyView(str(DEMO), "ppo_cartpole_acrobot_demo")
    states = [t.state.name for t in view.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") >= 30  # a few dozen real trials
    assert set(states) <= {"COMPLETE", "PRUNED"}, "record it to the end: nothing left running"
    complete = [t for t in view.trials if t.state.name == "COMPLETE"]
    assert len(complete) >= 10
    assert view.spec is not None and set(view.spec["targets"]) == {"CartPole-v1", "Acrobot-v1"}
    for trial in complete:
        assert set(trial.user_attrs["normalized_scores"]) == {"CartPole-v1", "Acrobot-v1"}
        assert trial.intermediate_values
    assert max(t.value for t in complete) > 0.5  # real PPO learned something


def test_binder_files() -> None:
    lines = [
        line.split("#", 1)[0].strip()
        for line in (BINDER / "requirements.txt").read_text().splitlines()
    ]
    lines = [line for line in lines if line]
    assert "." in lines  # nbtune itself: repo2docker does not install it when binder/ exists
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    torch = [line for line in lines if line.startswith("torch")]
    assert len(torch) == 1 and torch[0].endswith("+cpu"), torch
    packages = {line.split("==")[0].lower(): line for line in lines if "==" in line}
    for needed in ("optuna", "gymnasium", "tyro", "ipywidgets", "plotly", "anywidget", "torch"):
        assert needed in packages, f"binder/requirements.txt must pin {needed}"
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    start = BINDER / "start"
    assert os.access(start, os.X_OK)
    text = start.read_text()
    assert "export NBTUNE_BINDER=1" in text and 'exec "$@"' in text
    assert os.access(BINDER / "check.sh", os.X_OK)


def test_shipped_data_carries_no_machine_paths() -> None:
    """Shipped code, recorded studies, target tables and examples name no machine's folders."""
    root = Path(__file__).resolve().parent.parent
    absolute = re.compile(
        r"""(?:["'\s=]|:///)(/(?:root|home|tmp|work|Users|opt|var|mnt|scratch|runs)/|[A-Z]:\\\\)"""
    )
    shipped = [
        *sorted((root / "notebooks" / "data").iterdir()),
        *sorted((root / "nbtune").rglob("*.py")),
        *sorted((root / "nbtune" / "targets").glob("*.json")),
        *sorted((root / "nbtune" / "examples").glob("*.toml")),
        *sorted((root / "benchmarks").glob("*.py")),
        *sorted((root / ".ci").iterdir()),
        *sorted((root / "binder").iterdir()),
    ]
    assert shipped
    found = []
    for path in shipped:
        if path.is_file():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                match = absolute.search(line)
                if match:
                    found.append(f"{path.relative_to(root)}:{number}: {match.group(1)}...")
    assert not found, "\n".join(found[:20])
