"""HTML for the panel's text parts, computed from a :class:`~nbtune.StudyView` (no widgets here).

Every string that comes from the study (parameter values, failure reasons, stderr) is escaped.
"""

from __future__ import annotations

import datetime
import html
import math
import socket
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from nbtune import _attrs, plots
from nbtune._output import stall_note
from nbtune._study_view import StudyView
from nbtune.plots import StatusInfo, format_status

#: Colors of trial states, shared by the progress bar and the table.
STATE_COLORS = {
    "COMPLETE": "#2ca02c",
    "PRUNED": "#9e9e9e",
    "FAIL": "#d62728",
    "RUNNING": "#1f77b4",
    "WAITING": "#e0e0e0",
}

#: The widget's run states and how the panel shows them.
RUN_STATES = {
    "idle": ("ready", "#555"),
    "running": ("running", "#1f77b4"),
    "paused": ("paused", "#ff7f0e"),
    "stopping": ("stopping...", "#ff7f0e"),
    "stopped": ("stopped", "#555"),
    "finished": ("finished", "#2ca02c"),
    "error": ("error", "#d62728"),
    "watching": ("watching (read-only)", "#555"),
}


def esc(value: Any) -> str:
    """Escape any value for HTML."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A short text for a parameter or score value."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def status_html(state: str, status: StatusInfo | None, study_name: str, detail: str = "") -> str:
    """The status line: run state, study, counts, best value and ETA."""
    label, color = RUN_STATES.get(state, (state, "#555"))
    text = format_status(status) if status is not None else "reading the study..."
    extra = f" &middot; {esc(detail)}" if detail else ""
    return (
        f'<span class="nbtune-state nbtune-state-{esc(state)}" style="color:white;'
        f'background:{color};padding:1px 8px;border-radius:8px;font-weight:600">{esc(label)}'
        f"</span> <b>{esc(study_name)}</b> &middot; <span>{esc(text)}</span>{extra}"
    )


def progress_html(status: StatusInfo | None) -> str:
    """A stacked bar of the budget: complete, pruned, failed, running, then what is left."""
    if status is None:
        return ""
    counts = {**status.counts, "FAIL": status.counts.get("FAIL", 0) - status.n_given_back}
    shown = [(name, counts.get(name, 0)) for name in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")]
    used = sum(n for _, n in shown)
    total = max(status.total or 0, used, 1)
    segments = "".join(
        f'<div title="{n} {name.lower()}" class="nbtune-progress-{name.lower()}" '
        f'style="width:{100 * n / total:.3f}%;background:{STATE_COLORS[name]}"></div>'
        for name, n in shown
        if n
    )
    return (
        '<div style="display:flex;height:10px;width:100%;background:var(--jp-layout-color3, #eee);'
        "border-radius:5px;"
        f'overflow:hidden">{segments}</div>'
    )


def _duration(trial: FrozenTrial, now: datetime.datetime) -> str:
    start = trial.datetime_start
    if start is None:
        return ""
    end = trial.datetime_complete or now
    return plots.format_duration(max((end - start).total_seconds(), 0.0))


def state_word(trial: FrozenTrial) -> str:
    """A trial's state in the words every view uses (status line, table, command line).

    A failed trial that its script did not fail (stopped, Ctrl-C, or its process died) is
    "interrupted": it runs again, and does not count against the budget.
    """
    if trial.state == TrialState.FAIL:
        kind = trial.system_attrs.get(_attrs.FAIL_KIND)
        return "interrupted" if kind in ("interrupted", "stale") else "failed"
    return {TrialState.COMPLETE: "complete"}.get(trial.state, trial.state.name.lower())


_CELL = "padding:2px 8px;border-bottom:1px solid var(--jp-border-color2, #ddd);text-align:left"


def trials_table_html(view: StudyView, limit: int = 15) -> str:
    """The most recent trials (newest first): number, state, value, duration, parameters."""
    shown_states = [t for t in view.trials if t.state != TrialState.WAITING]
    trials = shown_states[-limit:]
    waiting = view.count_states()[TrialState.WAITING]
    if not trials:
        return "<i>No trials yet.</i>" + (f" {waiting} waiting." if waiting else "")
    now = datetime.datetime.now()
    names = sorted({name for t in trials for name in t.params})
    head = "".join(
        f'<th style="{_CELL}">{esc(n)}</th>'
        for n in ("#", "state", "score", "time", *names, "note")
    )
    rows = []
    for trial in reversed(trials):
        word = state_word(trial)
        value = fmt(trial.values[0]) if trial.values else ""
        number = str(trial.number)
        parent = trial.system_attrs.get(_attrs.FORKED_FROM)
        if parent is not None and parent != trial.number:
            number += f' <small title="its number in the parent study">(#{esc(parent)})</small>'
        cells = [
            number,
            f'<span style="color:{STATE_COLORS.get(trial.state.name, "inherit")}">{esc(word)}'
            "</span>",
            esc(value),
            esc(_duration(trial, now)),
            *(esc(fmt(trial.params[n])) if n in trial.params else "" for n in names),
            esc(_short(_note(trial), 80)),
        ]
        rows.append(
            f'<tr class="nbtune-trial-row" data-number="{trial.number}">'
            + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells)
            + "</tr>"
        )
    count = (
        f"the latest {len(trials)} of {len(shown_states)} trials"
        if len(shown_states) > len(trials)
        else f"{len(trials)} trial{'s' if len(trials) != 1 else ''}"
    )
    more = f", {waiting} waiting (queued or reserved)" if waiting else ""
    return (
        f'<div class="nbtune-table-count"><i>{count}{more}</i></div>'
        '<div style="overflow-x:auto"><table class="nbtune-table" '
        'style="border-collapse:collapse;font-size:12px">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _note(trial: FrozenTrial) -> str:
    """Why a trial failed, which one it repeats, or where it runs (on another machine)."""
    notes = []
    stuck = _stuck(trial)
    if trial.user_attrs.get(_attrs.FAIL_REASON):
        notes.append(str(trial.user_attrs[_attrs.FAIL_REASON]))
    elif stuck:
        notes.append(stuck)
    if trial.user_attrs.get(_attrs.RETRY_OF) is not None:
        notes.append(f"retry of #{trial.user_attrs[_attrs.RETRY_OF]}")
    owner = trial.system_attrs.get(_attrs.OWNER)
    if trial.state == TrialState.RUNNING and isinstance(owner, dict):
        host = owner.get("host")
        if host and host != socket.gethostname():
            notes.append(f"running on {host}")
    return "; ".join(notes)


def _stuck(trial: FrozenTrial) -> str:
    note = stall_note(trial)
    return f"seems stuck: {note}" if note else ""


def _short(text: Any, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def failures_html(view: StudyView, limit: int = 5) -> str:
    """Why the most recent failed trials failed: ``fail_reason`` and the end of stderr."""
    failed = [
        t
        for t in view.trials
        if t.state == TrialState.FAIL and t.system_attrs.get(_attrs.FAIL_KIND) != "interrupted"
    ]
    if not failed:
        return ""
    parts = []
    for trial in failed[-limit:][::-1]:
        reason = trial.user_attrs.get(_attrs.FAIL_REASON)
        tail = trial.user_attrs.get(_attrs.STDERR_TAIL)
        line = f"<b>trial {trial.number}</b>: " + (esc(reason) if reason else "failed")
        if tail:
            line += (
                f"<details><summary>stderr</summary><pre style='white-space:pre-wrap;"
                f"max-height:12em;overflow:auto'>{esc(tail)}</pre></details>"
            )
        parts.append(f'<div class="nbtune-failure">{line}</div>')
    return f"<div><b>{len(failed)} failed trial(s)</b>, most recent first:</div>" + "".join(parts)


def log_html(lines: Iterable[str]) -> str:
    """The panel's event log, newest last."""
    text = "\n".join(esc(line) for line in lines)
    return (
        "<pre style='margin:0;max-height:9em;overflow:auto;font-size:11px;white-space:pre-wrap'>"
        f"{text}</pre>"
    )


def error_text(exc: BaseException) -> str:
    """An error as the widget's ``error`` trait holds it: one line, then the traceback."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"{type(exc).__name__}: {exc}\n" + "".join(lines)


def error_html(message: str) -> str:
    """The error box (empty when there is no error)."""
    if not message:
        return ""
    first, _, rest = message.partition("\n")
    details = (
        f"<details><summary>details</summary><pre style='white-space:pre-wrap'>{esc(rest)}</pre>"
        "</details>"
        if rest.strip()
        else ""
    )
    return (
        '<div style="border:1px solid #d62728;background:rgba(214,39,40,0.08);padding:4px 8px;'
        f'border-radius:4px;color:inherit"><b>Error:</b> {esc(first)}{details}</div>'
    )


def code_html(text: str) -> str:
    """A block of copyable text."""
    return (
        "<pre style='margin:0;white-space:pre-wrap;word-break:break-all;font-size:12px;"
        "background:var(--jp-layout-color2, #f6f8fa);color:var(--jp-content-font-color1, #000);"
        f"padding:4px'>{esc(text)}</pre>"
    )


def message_html(text: str, ok: bool = False) -> str:
    """A short message beside a field or button: red for errors, green for success."""
    if not text:
        return ""
    color = "#2ca02c" if ok else "#d62728"
    return f'<span style="color:{color}">{esc(text)}</span>'


def trial_event(trial: FrozenTrial) -> str:
    """One log line for a trial that just finished."""
    state = trial.state.name.lower()
    if trial.state == TrialState.COMPLETE and trial.values:
        return f"trial {trial.number} complete: {fmt(trial.values[0])} {_params(trial.params)}"
    if trial.state == TrialState.FAIL:
        reason = trial.user_attrs.get(_attrs.FAIL_REASON)
        return f"trial {trial.number} failed" + (f": {_short(reason, 120)}" if reason else "")
    return f"trial {trial.number} {state}"


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())
