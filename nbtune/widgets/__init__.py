"""The notebook widget: edit, run and watch an nbtune study live in Jupyter.

``TunerWidget(Tuner(...), num_trials=..., num_seeds=...).display()`` shows a panel to edit the
target scores and the search space, start, pause, resume and stop the study, enqueue known
configurations, and watch it update live from its storage; ``TunerWidget.watch(storage, name)``
attaches read-only to any existing study. Works in JupyterLab, Notebook 7 and Voila.

This package needs the optional notebook stack (``pip install "nbtune[widgets]"``); ``import
nbtune`` alone never imports it.
"""

from __future__ import annotations

_INSTALL_HINT = 'pip install "nbtune[widgets]"'

try:
    import anywidget  # noqa: F401  (plotly's FigureWidget needs it)
    import ipywidgets  # noqa: F401
    import plotly.graph_objects  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    missing = (exc.name or "").partition(".")[0] or str(exc)
    raise ImportError(
        f"nbtune.widgets needs ipywidgets, plotly and anywidget ({missing} is missing): "
        f"{_INSTALL_HINT}"
    ) from exc

from nbtune.widgets._widget import TunerWidget  # noqa: E402

__all__ = ["TunerWidget"]
