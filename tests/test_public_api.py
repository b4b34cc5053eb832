import subprocess
import sys

import nbtune


def test_all_is_sorted_and_exactly_the_public_names():
    assert nbtune.__all__ == sorted(nbtune.__all__)
    public = {name for name in vars(nbtune) if not name.startswith("_")} - {
        # submodules are reachable as attributes once imported; they are not API
        name
        for name, value in vars(nbtune).items()
        if type(value).__name__ == "module"
    }
    assert public == set(nbtune.__all__) - {"__version__"}


def test_the_widget_is_reachable_from_nbtune_without_importing_it_up_front():
    code = (
        "import sys, nbtune; before = 'ipywidgets' in sys.modules; "
        "widget = nbtune.TunerWidget; "
        "print(before, widget.__module__, 'ipywidgets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "nbtune.widgets._widget", "True"]
    import pytest

    with pytest.raises(AttributeError, match="has no attribute 'TunerWidgett'"):
        nbtune.TunerWidgett  # noqa: B018


def test_import_nbtune_stays_headless():
    """`import nbtune` must not import the notebook stack (ipywidgets, IPython, plotly) or torch."""
    code = (
        "import sys, nbtune; "
        "heavy = [m for m in ('ipywidgets', 'IPython', 'plotly', 'torch', 'gymnasium', 'wandb') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_docstring_examples_run():
    import doctest

    from nbtune import _experiment, _scoring, _space, _stats, _storage

    for module in (_scoring, _experiment, _storage, _space, _stats):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
        assert result.attempted > 0, module.__name__
