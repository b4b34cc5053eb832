"""nbtune's exceptions: one hierarchy, so ``except nbtune.NbtuneError`` catches every refusal.

Each also derives from the built-in exception it used to be (``ValueError`` for bad input,
``RuntimeError`` for a study that cannot go on, ``LookupError`` for a missing study), so code
written against those keeps working.
"""

from __future__ import annotations


class NbtuneError(Exception):
    """Base class of every error nbtune raises on purpose."""


class ConfigError(NbtuneError, ValueError):
    """A bad argument, config-file field or flag: the message names the field and the fix."""


class SpecMismatchError(ConfigError):
    """An existing study was defined differently from what is given now."""


class TuningError(NbtuneError, RuntimeError):
    """The study cannot go on: for example every recent trial failed the same way."""


class StorageUnavailableError(NbtuneError, RuntimeError):
    """The study's storage stayed unreachable longer than nbtune waits for it."""


class StudyNotFoundError(NbtuneError, LookupError):
    """No study of that name is in the storage."""
