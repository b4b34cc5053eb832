"""How the package is put together: who may import what, and where Optuna's internals live."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nbtune"

#: The engine: what runs trials and writes the study. Views (the widget, the CLI) drive it only
#: through the public API (Tuner, TuningSession) and read through StudyView and nbtune.plots.
ENGINE = {
    "nbtune._budget",
    "nbtune._cluster",
    "nbtune._experiment",
    "nbtune._metrics",
    "nbtune._optuna",
    "nbtune._rescore",
    "nbtune._resources",
    "nbtune._retention",
    "nbtune._scheduler",
    "nbtune._storage",
}


def _imports(path: Path) -> set[str]:
    """Every nbtune module a file imports (``from nbtune import _x`` counts as ``nbtune._x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("nbtune"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nbtune"):
            found.add(node.module)
            if node.module == "nbtune":
                found.update(f"nbtune.{a.name}" for a in node.names if a.name.startswith("_"))
    return found


def _views() -> list[Path]:
    return [*sorted((PACKAGE / "widgets").glob("*.py")), PACKAGE / "__main__.py"]


def test_the_widget_and_the_cli_never_import_the_engine():
    offences = {
        str(path.relative_to(PACKAGE.parent)): sorted(_imports(path) & ENGINE) for path in _views()
    }
    assert {k: v for k, v in offences.items() if v} == {}


def test_the_rule_sees_an_engine_import(tmp_path):
    """The scan itself works: a file importing the engine in each way is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from nbtune._budget import budget_state\n"
        "from nbtune import _storage\n"
        "import nbtune._scheduler\n"
        "def f():\n    from nbtune._rescore import fork_study\n"
    )
    assert _imports(sample) & ENGINE == {
        "nbtune._budget",
        "nbtune._storage",
        "nbtune._scheduler",
        "nbtune._rescore",
    }


def test_the_core_never_imports_the_widget_stack():
    heavy = {"ipywidgets", "IPython", "plotly", "traitlets", "anywidget"}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:  # module level only: plots.py imports plotly lazily
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & heavy, path.name
