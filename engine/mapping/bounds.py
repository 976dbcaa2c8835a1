"""Size bounds on everything a template can grow, checked before the work is done.

A mapping file may come from someone we do not trust: `*`, `**`, `+`, `%` and the filters
that can grow their input (`replace`, `center`, `indent`, `format`) are refused when their
result would pass MAX_OUTPUT; every other result is checked after it is made.
"""

from __future__ import annotations

import operator
import re
from typing import Any, Callable

from jinja2.exceptions import SecurityError

__all__ = ["MAX_OUTPUT", "bounded_binop", "check_size", "check_format", "PRECHECKS"]

MAX_OUTPUT = 1_000_000
"""The most characters (or items) any single template value may grow to."""


def check_size(value: Any) -> Any:
    """`value`, or SecurityError if it is a string or container past MAX_OUTPUT."""
    if isinstance(value, (str, list, dict, tuple)) and len(value) > MAX_OUTPUT:
        raise SecurityError(f"a template value grew past {MAX_OUTPUT} characters or items")
    return value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, bytes)) else 1


_WIDTH = re.compile(r"%[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?|\{[^{}]*:[^{}]*?(\d+)")


def check_format(text: Any) -> None:
    """Refuse printf/format widths that would build a huge string (`"%0999999999d"`)."""
    if not isinstance(text, str):
        return
    for match in _WIDTH.finditer(text):
        for group in match.groups():
            if group == "*" or (group and int(group) > MAX_OUTPUT):
                raise SecurityError("format width or precision too large")


def bounded_binop(op: str, left: Any, right: Any) -> Any:
    """`*`, `**`, `+` and `%` with their results bounded before they are computed."""
    if op == "%":
        check_format(left)
        return left % right
    if op == "**":
        if isinstance(right, (int, float)) and abs(right) > 1000:
            raise SecurityError("exponent too large")
        if isinstance(left, int) and abs(left) > 2**64 and right > 1:
            raise SecurityError("power too large")
        return left**right
    if op == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                if len(seq) * count > MAX_OUTPUT:
                    raise SecurityError(f"repetition would exceed {MAX_OUTPUT} characters or items")
        return left * right
    if op == "+":
        if _size(left) + _size(right) > MAX_OUTPUT:
            raise SecurityError(f"concatenation would exceed {MAX_OUTPUT} characters or items")
        return left + right
    return _BINOPS[op](left, right)


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
}


def _precheck_replace(value: Any, old: Any = "", new: Any = "", count: Any = None) -> None:
    text, old, new = str(value), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * max(len(new) - len(old), 0) > MAX_OUTPUT:
        raise SecurityError(f"replace would exceed {MAX_OUTPUT} characters")


def _precheck_width(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> None:
    width = kwargs.get("width", width)
    if isinstance(width, int) and width > MAX_OUTPUT:
        raise SecurityError("width too large")
    if isinstance(width, str) and len(width) * (str(value).count("\n") + 1) > MAX_OUTPUT:
        raise SecurityError("indent too large")


def _precheck_format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_format(value)


PRECHECKS: dict[str, Callable[..., None]] = {
    "replace": _precheck_replace,
    "center": _precheck_width,
    "indent": _precheck_width,
    "format": _precheck_format,
}
"""Filters whose result can be far larger than their input, checked before they run."""
