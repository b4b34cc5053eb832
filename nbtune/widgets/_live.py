"""Reading the study's storage live, for :class:`~nbtune.widgets.TunerWidget`.

The storage is the one source of truth: the panel shows what a :class:`~nbtune.StudyView`
read from it, never the tuning thread's state. :class:`LiveStudy` is that reading, in one place:
the view of the study shown (replaced when a target edit moves to a fork), the lock-protected
refresh with its rules (say a failed read once, not every tick; draw everything on the first read
of a study; log each trial that finished since the last read), the panel's log lines, the
check of the stored definition's signature (cached: it reads the key file), and the refresher
thread that reads every ``interval`` seconds.

It draws nothing itself: after each read it hands the result to the widget, which knows what to
redraw. It shares the widget's lock, so a read and every change of the panel's widgets never
overlap.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from nbtune._attrs import SPEC_SIGNATURE, STUDY_SPEC
from nbtune._spec import StudySpec
from nbtune._study_view import RefreshResult, StudyView
from nbtune._trust import signature_problem
from nbtune.widgets import _render
from nbtune.widgets._kernel import bind_thread_output, current_parent


class LiveStudy:
    """The study shown, read live from its storage; calls back to draw what it read.

    Args:
        view: The study to read.
        lock: The widget's lock: each read, and each call back, happens under it.
        interval: Seconds between reads of the refresher thread.
        draw: Called after each successful read with its result, and whether to draw everything
            (a forced read, or the first read of a study).
        draw_log: Called with all the log lines each time one is added.
    """

    def __init__(
        self,
        view: StudyView,
        lock: threading.RLock,
        interval: float,
        draw: Callable[[RefreshResult, bool], None],
        draw_log: Callable[[Iterable[str]], None],
    ) -> None:
        self.view = view
        self.lock = lock
        self._interval = interval
        self._draw = draw
        self._draw_log = draw_log
        self._refresher: threading.Thread | None = None
        self._closed = threading.Event()
        self._log_lines: collections.deque[str] = collections.deque(maxlen=200)
        self._first_refresh = True
        self._last_refresh_error = ""
        self._warning_key: tuple[Any, ...] | None = None
        self._warning = ""

    def follow(self, storage: Any, study_name: str) -> bool:
        """Read the study ``study_name`` from now on (a fork after a target edit).

        Returns:
            Whether it is another study than the one shown (then its first read draws all).
        """
        with self.lock:
            if study_name == self.view.study_name:
                return False
            self.view = StudyView(storage, study_name)
            self._first_refresh = True
            return True

    def tick(self, force: bool = False) -> None:
        """Read the storage once and hand what changed to ``draw``.

        Args:
            force: Draw everything, even if nothing changed.
        """
        with self.lock:
            view = self.view
            try:
                result = view.refresh()
            except Exception as exc:
                message = f"cannot read the study: {type(exc).__name__}: {exc}"
                if message != self._last_refresh_error:
                    self._last_refresh_error = message
                    self.log(message)
                return
            self._last_refresh_error = ""
            first = self._first_refresh
            self._first_refresh = False
            if not first:
                for number in result.finished:
                    self.log(_render.trial_event(view.trial(number)))
            self._draw(result, force or first)

    def log(self, line: str) -> None:
        """Add a line, with the time, to the panel's log."""
        with self.lock:
            self._log_lines.append(f"{time.strftime('%H:%M:%S')} {line}")
            self._draw_log(self._log_lines)

    def spec(self) -> StudySpec | None:
        """The study's stored definition, or ``None`` when it has none or it cannot be read."""
        raw = self.view.spec
        if raw is None:
            return None
        try:
            return StudySpec.from_json(raw)
        except (TypeError, ValueError):
            return None

    def definition_warning(self) -> str:
        """What to say above the best command when the study's definition is not signed.

        Checked again only when the stored definition or its signature changes: the check reads
        the key file, and this runs on every redraw.
        """
        if self.view.spec is None:
            return ""
        attrs = dict(self.view.user_attrs)
        key = (
            self.view.study_name,
            attrs.get(STUDY_SPEC),
            repr(attrs.get(SPEC_SIGNATURE)),
        )
        if key != self._warning_key:
            problem = signature_problem(self.view.study_name, attrs)
            self._warning_key = key
            self._warning = (
                ""
                if problem is None
                else (
                    f"Not checked: {problem}. The command below comes from the study's database; "
                    "read it before you run it."
                )
            )
        return self._warning

    # ----------------------------------------------------------------------------------------
    # The refresher thread
    # ----------------------------------------------------------------------------------------
    def ensure_refresher(self) -> None:
        """Start the refresher thread unless it runs; its output is bound to the current request.

        See :mod:`nbtune.widgets._kernel`: output of a thread never lands in another cell.
        """
        with self.lock:
            if self._refresher is not None and self._refresher.is_alive():
                return
            self._refresher = threading.Thread(
                target=_refresh_loop,
                args=(weakref.ref(self), self._interval, self._closed, current_parent()),
                name="nbtune-refresher",
                daemon=True,
            )
            self._refresher.start()

    def close(self) -> None:
        """Stop the refresher thread (it ends at its next tick)."""
        self._closed.set()


def _refresh_loop(
    ref: weakref.ReferenceType[LiveStudy],
    interval: float,
    closed: threading.Event,
    parent: dict[str, Any] | None,
) -> None:
    """Refresh the study every ``interval`` seconds until it is closed or collected."""
    bind_thread_output(parent)
    while not closed.wait(interval):
        live = ref()
        if live is None:
            return
        try:
            live.tick()
        except Exception as exc:  # keep refreshing; say it once in the panel
            with contextlib.suppress(Exception):
                live.log(f"refresh failed: {type(exc).__name__}: {exc}")
        del live
