"""nbtune: tune the hyperparameters of training scripts across several tasks with Optuna.

The core is headless: ``import nbtune`` never imports ipywidgets, IPython or plotly; the
notebook widget lives in ``nbtune.widgets`` and the charts' drawing functions in
``nbtune.plots``.

Every error nbtune raises on purpose derives from :class:`NbtuneError`.

``nbtune.TunerWidget`` is the notebook panel of ``nbtune.widgets``, imported on first use (it
needs ``pip install "nbtune[widgets]"``), so ``import nbtune`` stays headless; it is left out of
``__all__`` for the same reason.
"""

from typing import Any as _Any

from nbtune._config import TunerConfig
from nbtune._errors import (
    ConfigError,
    NbtuneError,
    SpecMismatchError,
    StorageUnavailableError,
    StudyNotFoundError,
    TuningError,
)
from nbtune._rescore import fork_study
from nbtune._scoring import interquartile_mean
from nbtune._session import SessionEvent, TuningSession
from nbtune._space import Param, SearchSpace
from nbtune._spec import StudySpec
from nbtune._study_view import StudyView
from nbtune._trust import UntrustedSpecError
from nbtune._tuner import Tuner, trials_dataframe
from nbtune._validation import ValidationReport
from nbtune._version import __version__
from nbtune.examples import example_script

__all__ = [
    "ConfigError",
    "NbtuneError",
    "Param",
    "SearchSpace",
    "SessionEvent",
    "SpecMismatchError",
    "StorageUnavailableError",
    "StudyNotFoundError",
    "StudySpec",
    "StudyView",
    "Tuner",
    "TunerConfig",
    "TuningError",
    "TuningSession",
    "UntrustedSpecError",
    "ValidationReport",
    "__version__",
    "example_script",
    "fork_study",
    "interquartile_mean",
    "trials_dataframe",
]

#: Names imported on first use from the optional parts that need extra packages.
_LAZY = {"TunerWidget": "nbtune.widgets"}


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nbtune' has no attribute {name!r}")
