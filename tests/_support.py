"""Helpers shared by the tests (import them from here, not from conftest: the notebooks have a
conftest.py of their own, and two modules named ``conftest`` would shadow each other)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TOY = Path(__file__).parent / "scripts" / "toy_train.py"
IN_CI = os.environ.get("CI") == "true"


def skip_or_fail(reason: str) -> None:
    """Skip locally, but fail under CI=true: CI must not skip what the product promises."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
