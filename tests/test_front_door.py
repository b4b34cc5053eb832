"""The front door, tried as a new user would: the README's commands, its example, the output.

* CI runs the README's own install and test commands (``.ci/readme_block.py`` extracts them), and
  the install command installs every extra the tests use.
* ``nbtune tune CONFIG`` run twice continues one study, named after the config file.
* The Python path and the command line print the best trial once, rounded, with its command
  line and what it lacks; Optuna's ``[I ...]`` lines stay out; every option has a help text.
* A plain ``postgresql://`` URL that nbtune prints opens in Optuna and optuna-dashboard as it is.
* No "seed" + "'s" in what a user reads: CleanRL's documented example is called that.
"""

from __future__ import annotations

import doctest
import importlib.util
import logging
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from _support import TOY, get_json, serve_dashboard, skip_or_fail
from _support import postgres_database as support_postgres_database
from optuna.trial import TrialState

from nbtune import __main__ as cli
from nbtune import _output

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
READ_BLOCK = ROOT / ".ci" / "readme_block.py"
SCORE = re.compile(r"score (-?[0-9.e+-]+);")


def nbtune_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nbtune", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def readme_block(name: str, readme: Path = README) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(READ_BLOCK), name, str(readme)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def significant_digits(number: str) -> int:
    mantissa = number.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa)


# --------------------------------------------------------------------------------------------
# The README's commands are CI's
# --------------------------------------------------------------------------------------------


def test_ci_runs_the_readme_install_and_test_commands():
    install = readme_block("install")
    assert install.returncode == 0, install.stderr
    (command,) = install.stdout.splitlines()
    assert command.startswith("pip install ") and '"torch==2.13.0"' in command
    assert "nbtune tune" not in command  # the study is a command of its own, not CI's
    # Everything the tests use that pip can install: every extra of pyproject.toml.
    extras = set(re.search(r'-e "\.\[([^\]]+)\]"', command).group(1).split(","))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert extras == set(pyproject["project"]["optional-dependencies"])
    test = readme_block("test")
    assert test.returncode == 0, test.stderr
    assert test.stdout.splitlines() == ["python -m pytest"]
    # .ci/run takes the install command from the README and installs nothing of nbtune on its
    # own; it runs `python -m pytest` itself and fails when the README says anything else.
    run = (ROOT / ".ci" / "run").read_text()
    assert ".ci/readme_block.py install" in run and ".ci/readme_block.py test" in run
    assert '-e ".[' not in run
    assert '[ "$readme_test" != "python -m pytest" ]' in run
    assert re.search(r"^python -m pytest$", run, re.M)


def test_a_readme_without_the_blocks_fails_ci_loudly(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# nbtune\n\n```bash\npip install nbtune\n```\n")
    out = readme_block("install", readme)
    assert out.returncode == 1 and out.stdout == ""
    assert "0 markers '<!-- ci: install -->'" in out.stderr
    readme.write_text("<!-- ci: install -->\n```bash\n# only a comment\n```\n")
    out = readme_block("install", readme)
    assert out.returncode == 1 and "holds no command" in out.stderr


# --------------------------------------------------------------------------------------------
# The command line: the same command continues the same study; its output
# --------------------------------------------------------------------------------------------

CONFIG = """
script = "train.py"
metric = "charts/episodic_return"
num_trials = 2
num_seeds = 1
metric_last_n_average_window = 10
sampler = { name = "TPESampler", seed = 1 }

[target_scores]
EnvA = [0, 100]
EnvB = [-100, 0]

[params]
learning-rate = { type = "float", low = 1e-5, high = 1e-1, log = true }
total-timesteps = 1000
"""


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    """A config like the shipped one: no study_name, no storage (./cleanrl_hpopt.db)."""
    (tmp_path / "train.py").write_text(TOY.read_text())
    (tmp_path / "toy_study.toml").write_text(CONFIG)
    return tmp_path / "toy_study.toml"


def test_the_same_tune_command_continues_the_same_study(quickstart, tmp_path):
    runs = [nbtune_cli("tune", quickstart.name, cwd=tmp_path) for _ in range(2)]
    for out in runs:
        assert out.returncode == 0, out.stderr
        first = out.stdout.splitlines()[0]
        assert first == (
            "nbtune: study 'toy_study' (from the config file's name; running this command "
            "again continues it, --study-name NAME starts another)"
        )
    assert "(total 2 trials)" in runs[0].stdout and "(total 4 trials)" in runs[1].stdout
    storage = f"sqlite:///{tmp_path / 'cleanrl_hpopt.db'}"
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    assert [s.study_name for s in summaries] == ["toy_study"]
    study = optuna.load_study(study_name="toy_study", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert sorted(p.name for p in (tmp_path / "nbtune_runs" / "toy_study").iterdir()) == [
        f"trial_{n:05d}" for n in range(4)
    ]

    # A short try with other seeds is a study of its own (a study's seeds are fixed) ...
    out = nbtune_cli("tune", quickstart.name, "--num-trials", "1", "--num-seeds", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("nbtune: study 'toy_study_2seeds' (from the config file's name")
    # ... --study-name picks any, and the config's study_name field is the default name.
    out = nbtune_cli(
        "tune", quickstart.name, "--num-trials", "1", "--study-name", "b", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "continues it" not in out.stdout and "nbtune: study 'b' in" in out.stdout
    quickstart.write_text('study_name = "named"\n' + CONFIG)
    out = nbtune_cli("tune", quickstart.name, "--num-trials", "1", cwd=tmp_path)
    assert out.stdout.startswith("nbtune: study 'named' (the config file's study_name;")
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == {"toy_study", "toy_study_2seeds", "b", "named"}


def test_the_command_line_prints_the_best_trial_once_and_what_its_command_lacks(
    quickstart, tmp_path
):
    out = nbtune_cli("tune", quickstart.name, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "[I " not in out.stdout + out.stderr  # Optuna's INFO lines stay out
    assert "The best trial obtains" not in out.stdout
    assert out.stdout.count("best trial") == 1, out.stdout
    lines = out.stdout.splitlines()
    (index,) = [i for i, line in enumerate(lines) if "best trial" in line]
    assert lines[index].startswith("nbtune: best trial ")
    assert lines[index].endswith("its command line (add --env-id=ENV --seed=S):")
    assert significant_digits(SCORE.search(lines[index]).group(1)) <= 4
    assert lines[index + 1].startswith(f"  {sys.executable} ") and "--learning-rate=" in lines[-1]
    assert index + 2 == len(lines)  # nothing after it repeats the best trial

    storage = f"sqlite:///{tmp_path / 'cleanrl_hpopt.db'}"
    out = nbtune_cli("show", "--storage", storage, "--study", "toy_study", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "; 1 seed\n" in out.stdout and "1 seeds" not in out.stdout
    assert "as a command line (add --env-id=ENV --seed=S):" in out.stdout
    out = nbtune_cli("show", "--storage", storage, cwd=tmp_path)
    assert out.stdout == "toy_study\t2 trials\n"


def test_every_option_has_a_help_text():
    parser = cli.build_parser()
    for name, command in parser.commands.items():
        assert command.description, name
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"nbtune {name} {action.option_strings or action.dest}"
    for name in ("tune", "worker", "show"):
        out = subprocess.run(
            [sys.executable, "-m", "nbtune", name, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0
        text = " ".join(out.stdout.split())
        assert "--storage STORAGE where the study is stored" in text, text
        if name == "tune":
            assert "--num-trials NUM_TRIALS trials to add to the study" in text
        else:
            assert "--study STUDY the study's name" in text


@pytest.mark.parametrize(
    ("args", "see"),
    [
        (["tune", "x.toml", "--bogus"], "(see nbtune tune --help)"),
        (["show"], "(see nbtune show --help)"),
        (["frobnicate"], "(see nbtune --help)"),
    ],
)
def test_argument_errors_point_at_the_right_help(args, see, tmp_path):
    out = nbtune_cli(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().endswith(see) and "nbtune nbtune" not in out.stderr


# --------------------------------------------------------------------------------------------
# The Python path: the README's example, as pasted
# --------------------------------------------------------------------------------------------


def readme_python_example() -> str:
    text = README.read_text()
    section = text[text.index("## From Python") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_runs_with_optuna_5s_api_and_prints_the_best_once(
    tmp_path, monkeypatch, capfd
):
    code = readme_python_example()
    assert "suggest_float" in code and "log=True" in code
    assert "suggest_loguniform" not in code and "suggest_uniform" not in code
    assert 'script=example_script("ppo")' in code  # a script that exists: shipped with nbtune
    # The toy script in place of PPO and a small budget; the rest runs as printed.
    code = code.replace('example_script("ppo")', repr(str(TOY)))
    code = code.replace('"total-timesteps": 100000', '"total-timesteps": 2000')
    code = code.replace("num_trials=100, num_seeds=3", "num_trials=2, num_seeds=1")
    monkeypatch.chdir(tmp_path)  # the default storage and runs folder land in the cwd
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.INFO)  # Optuna's default, whatever ran before
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no deprecation warning from the example
            namespace: dict = {}
            exec(compile(code, "README.md", "exec"), namespace)
        assert optuna.logging.get_verbosity() == logging.INFO  # restored after tune
    finally:
        optuna.logging.set_verbosity(before)
    out, err = capfd.readouterr()
    assert "[I " not in out + err
    assert "The best trial obtains" not in out
    assert out.count("best trial") == 1, out
    (line,) = [x for x in out.splitlines() if "best trial" in x]
    assert significant_digits(SCORE.search(line).group(1)) <= 4, line
    assert "(add --env-id=ENV --seed=S)" in line
    tuner = namespace["tuner"]
    assert tuner.study_name == "ppo_cartpole_acrobot" and len(namespace["df"]) == 2
    assert SCORE.search(line).group(1) == _output.format_value(namespace["best"].value)


def test_output_helpers_document_themselves():
    for module in (_output, cli):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# --------------------------------------------------------------------------------------------
# postgresql:// means one thing everywhere
# --------------------------------------------------------------------------------------------


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped after: its plain URL."""
    with support_postgres_database("nbtune_front") as url:
        yield url


def test_the_postgresql_url_nbtune_prints_opens_in_optuna_and_optuna_dashboard(
    postgres_database, quickstart, tmp_path
):
    if importlib.util.find_spec("psycopg") is None:
        skip_or_fail("psycopg 3 is not installed (pip install -e '.[postgres]')")
    if importlib.util.find_spec("optuna_dashboard") is None:
        skip_or_fail("optuna-dashboard is not installed (pip install -e '.[test]')")
    out = nbtune_cli("tune", quickstart.name, "--storage", postgres_database, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # The URL as nbtune prints it, in the line that tells others how to join.
    (join,) = [x for x in out.stdout.splitlines() if "nbtune worker --storage" in x]
    url = join.split("--storage ", 1)[1].split(" ", 1)[0]
    assert url == postgres_database

    rdb = optuna.storages.RDBStorage(url)  # Optuna alone, with the URL as printed
    assert len(optuna.load_study(study_name="toy_study", storage=rdb).trials) == 2
    rdb.engine.dispose()

    with serve_dashboard(url, tmp_path / "dashboard.log") as base:
        studies = get_json(f"{base}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["toy_study"]


# --------------------------------------------------------------------------------------------
# Words: CleanRL's documented example, never "the seed" + "'s"
# --------------------------------------------------------------------------------------------

USER_FACING = [
    "README.md",
    "CHANGELOG.md",
    "benchmarks/README.md",
    "benchmarks/*.py",
    "notebooks/*.ipynb",
    "notebooks/**/*.py",
    "nbtune/**/*.py",
    "nbtune/**/*.toml",
    "tests/**/*.py",
    ".ci/*",
    "binder/*",
]


def test_no_seeds_possessive_in_anything_a_user_reads():
    # A seed, to a user, is a random seed: the example of CleanRL's tuner documentation is
    # called that (or CleanRL's documented example), and "each seed" + "'s" is reworded too.
    word = re.compile("seed" + "['\u2019]s", re.IGNORECASE)
    files = sorted({p for pattern in USER_FACING for p in ROOT.glob(pattern) if p.is_file()})
    assert len(files) > 30
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if word.search(line)
    ]
    assert not found, "\n".join(found)
