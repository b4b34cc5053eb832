"""Editors of the target scores and of the search space, with inline validation.

An editor only turns what the user typed into a value, or into messages beside the fields at
fault; it never applies anything itself. Its owner (the :class:`~nbtune.widgets.TunerWidget`)
applies a valid value when the user clicks *Apply*.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W

from nbtune._scoring import AGGREGATIONS, check_target
from nbtune._space import Param, SearchSpace
from nbtune.widgets._literal import FieldError, choices, literal, number, optional_number, show
from nbtune.widgets._render import message_html

_ROW = W.Layout(align_items="center", flex_flow="row wrap")


def _text(value: str, placeholder: str, width: str, css: str) -> W.Text:
    widget = W.Text(value=value, placeholder=placeholder, layout=W.Layout(width=width))
    widget.add_class(css)
    return widget


def _button(description: str, css: str, tooltip: str = "", **kwargs: Any) -> W.Button:
    # As wide as its words: ipywidgets' fixed 148 px cut "Apply search space" short.
    kwargs.setdefault("layout", W.Layout(width="auto", min_width="fit-content"))
    button = W.Button(description=description, tooltip=tooltip or description, **kwargs)
    button.add_class(css)
    return button


def _header(*cells: tuple[str, str]) -> W.HBox:
    return W.HBox(
        [W.HTML(f"<b>{text}</b>", layout=W.Layout(width=width)) for text, width in cells],
        layout=_ROW,
    )


# --------------------------------------------------------------------------------------------
# Target scores
# --------------------------------------------------------------------------------------------


class _TargetRow:
    """One environment: id, low, high, a remove button and the row's message."""

    def __init__(self, env: str, target: Sequence[float] | None, remove: Callable) -> None:
        low, high = (None, None) if target is None else target
        self.env = _text(env, "environment id", "220px", "nbtune-target-env")
        self.low = _text(show(low), "low", "110px", "nbtune-target-low")
        self.high = _text(show(high), "high", "110px", "nbtune-target-high")
        self.remove = _button("\u2715", "nbtune-target-remove", "Remove this environment")
        self.remove.layout = W.Layout(width="34px")
        self.remove.on_click(lambda _: remove(self))
        self.message = W.HTML()
        self.message.add_class("nbtune-field-message")
        self.box = W.HBox([self.env, self.low, self.high, self.remove, self.message], layout=_ROW)
        self.box.add_class("nbtune-target-row")

    def parse(self) -> tuple[str, list[float] | None]:
        env = self.env.value.strip()
        if not env:
            raise FieldError("give the environment id")
        if not self.low.value.strip() and not self.high.value.strip():
            return env, None  # the raw metric (one environment only)
        low = number(self.low.value, "low")
        high = number(self.high.value, "high")
        try:
            check_target(env, [low, high])  # the core's rule: low != high, both finite
        except ValueError as exc:
            raise FieldError(str(exc)) from None
        return env, [float(low), float(high)]

    def set_disabled(self, disabled: bool) -> None:
        for widget in (self.env, self.low, self.high, self.remove):
            widget.disabled = disabled


class TargetsEditor:
    """A table of target scores (environment, low, high) and the aggregation across them.

    Args:
        on_apply: Called with ``(targets, aggregation)`` when the user clicks *Apply* and every
            row is valid; it returns a message to show (or raises ``ValueError``).
    """

    def __init__(self, on_apply: Callable[[dict[str, list[float] | None], str], str]) -> None:
        self._on_apply = on_apply
        self.rows: list[_TargetRow] = []
        self.rows_box = W.VBox()
        self.add = _button("+ environment", "nbtune-target-add", "Add an environment")
        self.add.on_click(lambda _: self.add_row("", None))
        self.aggregation = W.Dropdown(
            options=list(AGGREGATIONS),
            value="average",
            description="aggregation",
            layout=W.Layout(width="200px"),
        )
        self.aggregation.add_class("nbtune-aggregation")
        self.apply = _button(
            "Apply targets", "nbtune-apply-targets", "Re-score every finished trial", icon="check"
        )
        self.apply.on_click(lambda _: self.submit())
        self.message = W.HTML()
        self.message.add_class("nbtune-targets-message")
        note = W.HTML(
            "<small>A trial keeps its raw score per environment, so new targets re-score every "
            "finished trial exactly, in a new study linked to this one (a fork); running trials "
            "are stopped and run again there.</small>"
        )
        self.box = W.VBox(
            [
                _header(("environment", "220px"), ("low", "110px"), ("high", "110px")),
                self.rows_box,
                W.HBox([self.add, self.aggregation, self.apply], layout=_ROW),
                self.message,
                note,
            ]
        )
        self.box.add_class("nbtune-targets")

    def set_values(self, targets: Mapping[str, Sequence[float] | None], aggregation: str) -> None:
        """Show these targets and aggregation (the applied ones)."""
        self.rows = []
        for env, target in targets.items():
            self._new_row(env, target)
        self.rows_box.children = [row.box for row in self.rows]
        if aggregation in AGGREGATIONS:
            self.aggregation.value = aggregation

    def add_row(self, env: str, target: Sequence[float] | None) -> _TargetRow:
        """Add a row (the *+ environment* button)."""
        row = self._new_row(env, target)
        self.rows_box.children = [*self.rows_box.children, row.box]
        return row

    def _new_row(self, env: str, target: Sequence[float] | None) -> _TargetRow:
        row = _TargetRow(env, target, self._remove)
        self.rows.append(row)
        return row

    def _remove(self, row: _TargetRow) -> None:
        self.rows.remove(row)
        self.rows_box.children = [r.box for r in self.rows]

    def parse(self) -> dict[str, list[float] | None] | None:
        """The targets typed in, or ``None`` with a message beside each field at fault."""
        out: dict[str, list[float] | None] = {}
        ok = True
        for row in self.rows:
            try:
                env, target = row.parse()
                if env in out:
                    raise FieldError(f"{env!r} is listed twice")
                out[env] = target
                row.message.value = ""
            except FieldError as exc:
                row.message.value = message_html(str(exc))
                ok = False
        if ok and not out:
            self.message.value = message_html("give at least one environment")
            return None
        if ok and len(out) > 1 and any(t is None for t in out.values()):
            self.message.value = message_html(
                "an empty target (the raw metric) is allowed only with a single environment"
            )
            return None
        if not ok:
            self.message.value = message_html(
                "fix the fields with a message beside them: nothing was applied"
            )
            return None
        return out

    def submit(self) -> None:
        """Validate, then hand the targets to ``on_apply`` (the *Apply* button)."""
        targets = self.parse()
        if targets is None:
            return
        _apply_and_report(self.message, lambda: self._on_apply(targets, self.aggregation.value))

    def set_disabled(self, disabled: bool) -> None:
        """Read-only mode."""
        for row in self.rows:
            row.set_disabled(disabled)
        for widget in (self.add, self.aggregation, self.apply):
            widget.disabled = disabled


def _apply_and_report(message: Any, apply: Callable[[], str]) -> None:
    """Run an editor's apply callback; show its answer, or its error, beside the button.

    A click has no caller to raise to, so an error is shown, with nothing applied.
    """
    try:
        text = apply()
    except Exception as exc:
        message.value = message_html(f"{exc} (nothing was applied)")
        return
    message.value = message_html(text, ok=True)


# --------------------------------------------------------------------------------------------
# Search space
# --------------------------------------------------------------------------------------------

KINDS = ("float", "int", "categorical", "fixed")


class _SpaceRow:
    """One flag: sampled (float, int, categorical) or fixed."""

    def __init__(self, flag: str, entry: Any, remove: Callable) -> None:
        param = entry if isinstance(entry, Param) else None
        self.name = param.name if param is not None and param.name != flag else None
        kind = param.type if param is not None else "fixed"
        self.flag = _text(flag, "flag (without --)", "170px", "nbtune-space-flag")
        self.kind = W.Dropdown(options=list(KINDS), value=kind, layout=W.Layout(width="110px"))
        self.kind.add_class("nbtune-space-kind")
        low = param.low if param is not None and param.type != "categorical" else None
        high = param.high if param is not None and param.type != "categorical" else None
        if param is not None and param.type == "int":
            low, high = _whole(low), _whole(high)
        self.low = _text(show(low), "low", "90px", "nbtune-space-low")
        self.high = _text(show(high), "high", "90px", "nbtune-space-high")
        self.log = W.Checkbox(
            value=bool(param and param.log),
            description="log",
            indent=False,
            layout=W.Layout(width="50px"),
        )
        self.log.add_class("nbtune-space-log")
        step = param.step if param is not None else None
        self.step = _text(
            show(_whole(step) if kind == "int" else step), "step", "70px", "nbtune-space-step"
        )
        self.choices = _text(
            repr(list(param.choices or ())) if param is not None and param.choices else "",
            "choices, e.g. [1, 2, 4]",
            "230px",
            "nbtune-space-choices",
        )
        self.value = _text(
            repr(entry) if param is None and flag else "",
            "value, e.g. 100000",
            "230px",
            "nbtune-space-value",
        )
        self.remove = _button("\u2715", "nbtune-space-remove", "Remove this flag")
        self.remove.layout = W.Layout(width="34px")
        self.remove.on_click(lambda _: remove(self))
        self.message = W.HTML()
        self.message.add_class("nbtune-field-message")
        self.box = W.HBox(
            [
                self.flag,
                self.kind,
                self.low,
                self.high,
                self.log,
                self.step,
                self.choices,
                self.value,
                self.remove,
                self.message,
            ],
            layout=_ROW,
        )
        self.box.add_class("nbtune-space-row")
        self.kind.observe(lambda _: self._show_fields(), "value")
        self._show_fields()

    def _show_fields(self) -> None:
        kind = self.kind.value
        numeric = kind in ("float", "int")
        for widget, shown in (
            (self.low, numeric),
            (self.high, numeric),
            (self.log, numeric),
            (self.step, numeric),
            (self.choices, kind == "categorical"),
            (self.value, kind == "fixed"),
        ):
            widget.layout.display = "" if shown else "none"

    def parse(self) -> tuple[str, Param | Any]:
        flag = self.flag.value.strip()
        if not flag:
            raise FieldError("give the flag name")
        if flag.startswith("-") or any(ch.isspace() for ch in flag) or "=" in flag:
            raise FieldError("write the flag without dashes, spaces or '=', e.g. learning-rate")
        kind = self.kind.value
        name = self.name or flag
        if kind == "fixed":
            try:
                return flag, literal(self.value.value, bare_strings=True)
            except FieldError as exc:
                raise FieldError(f"value: {exc}") from None
        if kind == "categorical":
            try:
                return flag, Param(name, "categorical", choices=tuple(choices(self.choices.value)))
            except FieldError as exc:
                raise FieldError(f"choices: {exc}") from None
            except ValueError as exc:
                raise FieldError(str(exc)) from None
        low = number(self.low.value, "low")
        high = number(self.high.value, "high")
        step = optional_number(self.step.value, "step")
        log = self.log.value
        if low >= high:
            raise FieldError(f"low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise FieldError(f"a log range needs low > 0 (got {low})")
        if log and step is not None:
            raise FieldError("log and step cannot be combined")
        if step is not None and step <= 0:
            raise FieldError("step must be positive")
        if kind == "int":
            for what, x in (("low", low), ("high", high), ("step", step)):
                if x is not None and x != int(x):
                    raise FieldError(f"{what} of an int parameter must be a whole number")
            low, high = int(low), int(high)
            step = None if step in (None, 1) else int(step)
        else:
            low, high = float(low), float(high)
            step = None if step is None else float(step)
        try:
            return flag, Param(name, kind, low, high, log, step)
        except ValueError as exc:
            raise FieldError(str(exc)) from None

    def set_disabled(self, disabled: bool) -> None:
        for widget in (
            self.flag,
            self.kind,
            self.low,
            self.high,
            self.log,
            self.step,
            self.choices,
            self.value,
            self.remove,
        ):
            widget.disabled = disabled


def _whole(x: float | None) -> int | None:
    return None if x is None else int(x)


class SpaceEditor:
    """A table of the search space: per flag, its kind and range, choices or fixed value.

    Args:
        on_apply: Called with the new :class:`~nbtune.SearchSpace` when the user clicks *Apply*
            and every row is valid; it returns a message to show (or raises ``ValueError``).
        reserved: Flags nbtune sets itself (environment and seed), refused in the space.
    """

    NOTE = (
        "A new space applies to trials started from now on; finished trials keep theirs, and the "
        "old definition stays in the study's history. With multivariate TPE, a parameter whose "
        "range changed is no longer part of the space shared by past trials: TPE samples it "
        "independently of the others."
    )

    def __init__(
        self, on_apply: Callable[[SearchSpace], str], reserved: Sequence[str] = ()
    ) -> None:
        self._on_apply = on_apply
        self._reserved = tuple(reserved)
        self.rows: list[_SpaceRow] = []
        self.rows_box = W.VBox()
        self.add = _button("+ flag", "nbtune-space-add", "Add a flag")
        self.add.on_click(lambda _: self.add_row("", Param("x", "float", 0.0, 1.0)))
        self.apply = _button(
            "Apply search space",
            "nbtune-apply-space",
            "Use this space for new trials",
            icon="check",
        )
        self.apply.on_click(lambda _: self.submit())
        self.message = W.HTML()
        self.message.add_class("nbtune-space-message")
        self.note = W.HTML(f"<small>{self.NOTE}</small>")
        self.box = W.VBox(
            [
                _header(("flag", "170px"), ("kind", "110px"), ("range, choices or value", "")),
                self.rows_box,
                W.HBox([self.add, self.apply], layout=_ROW),
                self.message,
                self.note,
            ]
        )
        self.box.add_class("nbtune-space")

    def set_values(self, space: SearchSpace) -> None:
        """Show this space (the applied one)."""
        self.rows = [_SpaceRow(flag, entry, self._remove) for flag, entry in space.entries.items()]
        self.rows_box.children = [row.box for row in self.rows]

    def add_row(self, flag: str, entry: Any) -> _SpaceRow:
        """Add a row (the *+ flag* button)."""
        row = _SpaceRow(flag, entry, self._remove)
        if isinstance(entry, Param) and not flag:
            row.name = None
        self.rows.append(row)
        self.rows_box.children = [*self.rows_box.children, row.box]
        return row

    def _remove(self, row: _SpaceRow) -> None:
        self.rows.remove(row)
        self.rows_box.children = [r.box for r in self.rows]

    def parse(self) -> SearchSpace | None:
        """The space typed in, or ``None`` with a message beside each field at fault."""
        entries: dict[str, Any] = {}
        names: dict[str, str] = {}
        ok = True
        for row in self.rows:
            try:
                flag, entry = row.parse()
                if flag in entries:
                    raise FieldError(f"flag {flag!r} is listed twice")
                if flag in self._reserved:
                    raise FieldError(f"nbtune sets --{flag} itself (environment or seed)")
                if isinstance(entry, Param):
                    if entry.name in names:
                        raise FieldError(
                            f"parameter name {entry.name!r} is also sampled by "
                            f"{names[entry.name]!r}"
                        )
                    names[entry.name] = flag
                entries[flag] = entry
                row.message.value = ""
            except FieldError as exc:
                row.message.value = message_html(str(exc))
                ok = False
        if not ok:
            self.message.value = message_html(
                "fix the fields with a message beside them: nothing was applied"
            )
            return None
        if not names:
            self.message.value = message_html("sample at least one parameter")
            return None
        try:
            return SearchSpace(entries)
        except ValueError as exc:
            self.message.value = message_html(f"{exc} (nothing was applied)")
            return None

    def submit(self) -> None:
        """Validate, then hand the space to ``on_apply`` (the *Apply* button)."""
        space = self.parse()
        if space is None:
            return
        _apply_and_report(self.message, lambda: self._on_apply(space))

    def set_disabled(self, disabled: bool) -> None:
        """Read-only mode."""
        for row in self.rows:
            row.set_disabled(disabled)
        self.add.disabled = disabled
        self.apply.disabled = disabled
