"""Parsing what the user types into the panel: literal values only, never code.

Every field is read with :func:`ast.literal_eval` (numbers, strings, booleans, ``None``, lists and
tuples of those); nothing is ever evaluated. A bare word that is not a literal (``CartPole-v1``,
``tanh``) is kept as a string where a string makes sense (fixed values, choices).
"""

from __future__ import annotations

import ast
import math
from typing import Any

from nbtune._errors import ConfigError

_SCALARS = (str, int, float, bool, type(None))


class FieldError(ConfigError):
    """A field's text cannot be used; the message says why, for display beside the field."""


def literal(text: str, *, bare_strings: bool = False) -> Any:
    """Parse ``text`` as a Python literal.

    Args:
        text: What the user typed.
        bare_strings: Return text that is not a literal as a plain string (stripped) instead of
            refusing it.

    Returns:
        The value: a number, string, boolean, ``None``, or a list of those.

    Raises:
        FieldError: The text is empty, is code rather than a literal, or is a literal of another
            kind (a dict, a set, nested lists).

    Example:
        >>> literal("3e-4"), literal("[1, 2, 4]"), literal("CartPole-v1", bare_strings=True)
        (0.0003, [1, 2, 4], 'CartPole-v1')
        >>> literal("__import__('os').getcwd()")
        Traceback (most recent call last):
        ...
        nbtune.widgets._literal.FieldError: not a literal value: "__import__('os').getcwd()" ...

    """
    stripped = text.strip()
    if not stripped:
        raise FieldError("empty")
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if bare_strings and _is_bare_word(stripped):
            return stripped
        raise FieldError(
            f"not a literal value: {stripped!r} (write a number, a quoted string, True, False, "
            "None, or a list of those; nothing is evaluated)"
        ) from None
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list):
        if not all(isinstance(v, _SCALARS) for v in value):
            raise FieldError(f"a list may hold only numbers, strings, booleans or None: {stripped}")
        return value
    if not isinstance(value, _SCALARS):
        raise FieldError(f"{type(value).__name__} values are not supported here: {stripped}")
    return value


def _is_bare_word(text: str) -> bool:
    """Whether text reads as a plain word: no brackets, quotes, calls or operators."""
    return not any(ch in text for ch in "()[]{}'\"\\;=,") and "\n" not in text


def number(text: str, what: str = "value") -> float | int:
    """Parse a finite number (``int`` or ``float``, not a boolean).

    Example:
        >>> number("100"), number("1e-3")
        (100, 0.001)

    """
    try:
        value = literal(text)
    except FieldError:
        value = None  # not a literal at all: the same message as any other non-number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(f"{what} must be a number such as 500, -0.5 or 3e-4; got {text.strip()!r}")
    if not math.isfinite(value):
        raise FieldError(f"{what} must be a finite number, got {text.strip()!r}")
    return value


def optional_number(text: str, what: str = "value") -> float | int | None:
    """A number, or ``None`` for an empty field (or the text ``None``)."""
    if not text.strip() or text.strip() == "None":
        return None
    return number(text, what)


def choices(text: str) -> list[Any]:
    """Parse the choices of a categorical parameter: a list literal, or comma-separated values.

    Example:
        >>> choices("[1, 2, 4]"), choices("tanh, relu"), choices("0.1, 'a b'")
        ([1, 2, 4], ['tanh', 'relu'], [0.1, 'a b'])

    """
    stripped = text.strip()
    if not stripped:
        raise FieldError("give at least one choice")
    try:
        value = literal(stripped)
    except FieldError:
        value = [literal(part, bare_strings=True) for part in _split_commas(stripped)]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise FieldError("give at least one choice")
    if any(isinstance(v, list) for v in items):
        raise FieldError("each choice must be a number, string, boolean or None")
    if len({repr(v) for v in items}) != len(items):
        raise FieldError(f"choices repeat a value: {items}")
    return items


def _split_commas(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if any(not p for p in parts):
        raise FieldError(f"an empty choice in {text!r}")
    return parts


def show(value: Any) -> str:
    """The text of a value as the user would type it back (its ``repr``; empty for ``None``)."""
    return "" if value is None else repr(value)


def params_literal(text: str) -> dict[str, Any]:
    """Parse a dict of parameters typed in the enqueue field, as a literal (never evaluated)."""
    stripped = text.strip()
    if not stripped:
        raise ValueError('enqueue: type a dict, e.g. {"learning-rate": 0.00025}.')
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(
            f"enqueue: not a literal dict: {stripped!r} (nothing is evaluated)."
        ) from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"enqueue: give a dict of flag name to value, got {stripped!r}.")
    return value
