"""Where output from the widget's background threads goes, under ipykernel 6 and 7.

ipykernel 7 routes a thread's ``print``, warnings and log records by the thread's own parent
message, and falls back to the kernel-wide parent: the cell that is running *now*. A background
thread that prints (Optuna's logger, a warning, a ``params_fn`` that prints) would write into
whatever cell the user runs next (ipywidgets issues 4001 and 4020). The widget's threads
therefore bind their output, once at start, to the request that started them (the cell that
called ``start()``/``display()``, or the button click), so it never lands in another cell.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    return get_ipython()


def current_parent() -> dict[str, Any] | None:
    """The kernel request being handled on this thread (a cell or a widget message), if any."""
    kernel = getattr(_ipython(), "kernel", None)
    get_parent = getattr(kernel, "get_parent", None)
    if get_parent is None:
        return None
    with contextlib.suppress(Exception):
        parent = get_parent()
        if parent and parent.get("header"):
            return parent
    return None


def bind_thread_output(parent: dict[str, Any] | None) -> None:
    """Send this thread's stdout, stderr and display output to ``parent``'s cell.

    A no-op outside a kernel, or with a kernel without per-thread parents (ipykernel < 6.?).
    """
    if not parent:
        return
    targets = [sys.stdout, sys.stderr]
    shell = _ipython()
    targets += [getattr(shell, "display_pub", None), getattr(shell, "displayhook", None)]
    for target in targets:
        setter = getattr(target, "set_thread_parent", None)
        if setter is not None:
            with contextlib.suppress(Exception):
                setter(parent)


def execution_count() -> int | None:
    """The running cell's execution count, or ``None`` outside IPython."""
    count = getattr(_ipython(), "execution_count", None)
    return count if isinstance(count, int) else None
