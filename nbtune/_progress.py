"""A terminal progress bar for a study, read from the storage like every other live view."""

from __future__ import annotations

import sys
import time
from typing import Any

import optuna


class ProgressBar:
    """tqdm bar: trials finished of the study's total, with running, pruned, failed, best, ETA.

    It reads the study through :class:`~nbtune._study_view.StudyView`, so trials that other
    processes run count too. Lines printed with :meth:`write` appear above the bar.

    Args:
        study: The study.
        min_interval: Seconds between refreshes.
    """

    def __init__(self, study: optuna.Study, min_interval: float = 1.0) -> None:
        from tqdm import tqdm

        from nbtune._study_view import StudyView

        self._view = StudyView.from_study(study)
        self._bar: Any = tqdm(total=None, unit="trial", file=sys.stderr, dynamic_ncols=True)
        self._tqdm = tqdm
        self._min_interval = min_interval
        self._last = 0.0
        self.update(force=True)

    def update(self, force: bool = False) -> None:
        """Refresh from the storage (at most once per ``min_interval`` unless forced)."""
        now = time.monotonic()
        if not force and now - self._last < self._min_interval:
            return
        self._last = now
        from nbtune.plots import format_duration, get_status_info

        self._view.refresh()
        info = get_status_info(self._view)
        counts = info.counts
        self._bar.total = info.total
        self._bar.n = (
            info.total - info.remaining
            if info.total is not None and info.remaining is not None
            else info.n_finished
        )
        parts = [
            f"{counts.get('RUNNING', 0)} running",
            f"{counts.get('PRUNED', 0)} pruned",
            f"{counts.get('FAIL', 0) - info.n_given_back} failed",
        ]
        if info.n_given_back:
            parts.append(f"{info.n_given_back} interrupted")
        if info.best_value is not None:
            parts.append(f"best {info.best_value:.4g}")
        if info.eta_seconds is not None and info.remaining:
            parts.append(f"ETA {format_duration(info.eta_seconds)}")
        self._bar.set_postfix_str(", ".join(parts), refresh=False)
        self._bar.refresh()

    def write(self, line: str) -> None:
        """Print a line above the bar."""
        self._tqdm.write(line, file=sys.stdout)

    def close(self) -> None:
        """Show the final state and release the terminal line."""
        self.update(force=True)
        self._bar.close()
        self._view.close()
