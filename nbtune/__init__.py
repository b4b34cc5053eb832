"""nbtune: tune the hyperparameters of training scripts across several tasks with Optuna.

The core is headless: ``import nbtune`` never imports ipywidgets, IPython or plotly.
"""

from nbtune._rescore import fork_study
from nbtune._scheduler import TuningError
from nbtune._scoring import interquartile_mean
from nbtune._space import Param, SearchSpace
from nbtune._spec import SpecMismatchError, StudySpec
from nbtune._tuner import Tuner, trials_dataframe
from nbtune._version import __version__

# from nbtune.examples import example_script  # TODO restore when examples land

__all__ = [
    "Param",
    "SearchSpace",
    "SpecMismatchError",
    "StudySpec",
    "Tuner",
    "TuningError",
    "__version__",
    # "example_script",
    "interquartile_mean",
    "trials_dataframe",
]
