"""Size bounds on everything a template can grow, checked before the work is done.

A mapping file may come from someone we do not trust. Values are measured by their weight
(`weight_of`): characters of text, about the digits of an integer, one for every other
scalar, and one for every item and key of a container plus the weight of what it holds,
counting every reference. So a list
that holds one 200,000-character string a million times weighs 200 billion, however little
memory it takes: that is what serializing it would cost.

`*`, `**`, `+`, `%` and the filters that can grow their input far past it (`replace`,
`center`, `indent`, `format`, `join`, `batch`, `slice`) are refused when their result would
pass MAX_OUTPUT (or, for integers, MAX_INT_BITS) before they are computed; other results are
bounded when the mapping loads (growth.py), or checked after they are made.
"""

from __future__ import annotations

import operator
import re
from typing import Any, Callable

from jinja2.exceptions import SecurityError

from .budget import spend_units

__all__ = ["MAX_OUTPUT", "MAX_INT_BITS", "bounded_binop", "check_size", "check_format",
           "check_weight", "weight_of", "PRECHECKS"]

MAX_OUTPUT = 1_000_000
"""The largest weight (characters, plus items and keys, counting every reference) any
single value of a template may have."""

MAX_INT_BITS = 4_096
"""The largest integer `*` and `**` may make (2**4096 has 1,234 digits)."""


def check_size(value: Any) -> Any:
    """`value`, or SecurityError if it is a string or container longer than MAX_OUTPUT."""
    if isinstance(value, (str, list, dict, tuple)):
        size = len(value)
        if size > MAX_OUTPUT:
            raise SecurityError(f"a template value grew past {MAX_OUTPUT:,} characters or items")
        spend_units(size)
    return value


def _scalar_weight(value: Any) -> int | None:
    """The weight of a value that holds nothing; None for a container."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (dict, list, tuple)):
        return None
    if isinstance(value, int):
        return 1 + value.bit_length() // 3  # about its digits: 2**4096 has 1,234
    return 1


def _items(value: Any) -> Any:
    return (*value.keys(), *value.values()) if isinstance(value, dict) else value


def weight_of(value: Any, limit: int = MAX_OUTPUT, *, counted: bool = True) -> int:
    """The weight of `value` (see the module's docstring), or a number past `limit` as
    soon as it is known to be larger. A part held several times is measured once and
    counted each time, so the work is that of the distinct parts (forty nested `[x, x]` are
    eighty steps), without recursion. The work counts against the event's budget, unless
    not `counted` (a constant measured at load)."""
    weight = _scalar_weight(value)
    if weight is not None:
        return weight
    measured: dict[int, int] = {}
    # The container being walked (its items left, its weight so far), and the ones it is
    # inside of, as (container, items left, weight so far).
    outer: list[tuple[Any, Any, int]] = []
    here, items = value, _items(value)
    steps = len(items)  # the items looked at: counted as each container is entered
    left, total = iter(items), len(value)
    while True:
        for child in left:
            kind = type(child)
            # The commonest scalars first, without a call (what _scalar_weight says).
            if kind is str:
                total += len(child)
            elif kind is int:
                total += 1 + child.bit_length() // 3
            elif kind is float or kind is bool or child is None:
                total += 1
            else:
                weight = _scalar_weight(child)
                if weight is None:
                    weight = measured.get(id(child))
                    if weight is None:
                        # Measured first; until then it counts as past the limit, so that a
                        # container inside itself stops the walk instead of looping.
                        measured[id(child)] = limit + 1
                        outer.append((here, left, total))
                        here, items = child, _items(child)
                        steps += len(items)
                        if counted and steps > 0xFFFF:
                            spend_units(steps)  # a long walk is looked at as it goes
                            steps = 0
                        left, total = iter(items), len(child)
                        break
                total += weight
            if total > limit:
                break  # a part weighs more than the limit: so does the whole
        else:
            measured[id(here)] = total
            if outer:
                weight = total
                here, left, total = outer.pop()
                total += weight
                if total <= limit:
                    continue
            break
        if total > limit:
            break
    if counted:
        spend_units(steps)
    return total


def check_weight(value: Any) -> Any:
    """`value`, or SecurityError if it weighs more than MAX_OUTPUT. The mapping's compiler
    puts this check (as the filter `_weigh`) where its bounds cannot say a value is small."""
    if weight_of(value) > MAX_OUTPUT:
        raise SecurityError(f"a value grew past {MAX_OUTPUT:,} characters and items "
                            "(every reference to a shared part counted)")
    return value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, bytes)) else 1


# A printf conversion: `%`, an optional mapping key `(name)`, flags, width, precision.
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_format(text: Any) -> None:
    """Refuse printf widths that would build a huge string (`"%0999999999d"`,
    `"%(a)900000000d"`), and widths given as arguments (`"%*d"`)."""
    if not isinstance(text, str) or "%" not in text:
        return
    for match in _PRINTF.finditer(text):
        for group in match.groups():
            if group == "*" or (group and int(group) > MAX_OUTPUT):
                raise SecurityError("format width or precision too large")


def _int_bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) else 0


def bounded_binop(op: str, left: Any, right: Any) -> Any:
    """`*`, `**`, `+` and `%` with their results bounded before they are computed."""
    if op == "%":
        check_format(left)
        return check_size(left % right)
    if op == "**":
        if isinstance(right, (int, float)) and abs(right) > 1000:
            raise SecurityError("exponent too large")
        if isinstance(left, int) and isinstance(right, int) and right > 1 \
                and left.bit_length() * right > MAX_INT_BITS:
            raise SecurityError(f"power too large (more than {MAX_INT_BITS} bits)")
        return left**right
    if op == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                if count > 0 and weight_of(seq) * count > MAX_OUTPUT:
                    raise SecurityError(f"repetition would exceed {MAX_OUTPUT:,} characters "
                                        "or items")
                spend_units(len(seq) * max(count, 0))
                return left * right
        if _int_bits(left) + _int_bits(right) > MAX_INT_BITS:
            raise SecurityError(f"product too large (more than {MAX_INT_BITS} bits)")
        return left * right
    if op == "+":
        if _size(left) + _size(right) > MAX_OUTPUT:
            raise SecurityError(f"concatenation would exceed {MAX_OUTPUT:,} characters or items")
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
        raise SecurityError(f"replace would exceed {MAX_OUTPUT:,} characters")


def _precheck_width(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> None:
    width = kwargs.get("width", width)
    if isinstance(width, int) and width > MAX_OUTPUT:
        raise SecurityError("width too large")
    if isinstance(width, str) and len(width) * (str(value).count("\n") + 1) > MAX_OUTPUT:
        raise SecurityError("indent too large")


def _precheck_format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_format(value)


def _precheck_join(value: Any, d: Any = "", attribute: Any = None) -> None:
    # The items are bounded already; what a join adds is one separator per item.
    if isinstance(value, (list, tuple, str, dict)) and isinstance(d, str) \
            and len(d) * len(value) > MAX_OUTPUT:
        raise SecurityError(f"join would exceed {MAX_OUTPUT:,} characters")


def _precheck_groups(value: Any, count: Any = 1, fill_with: Any = None) -> None:
    # `batch(n, fill)` pads its last group to n items, `slice(n)` makes n groups: n is how
    # much they build whatever the input, so it is bounded before either runs.
    if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= MAX_OUTPUT:
        raise SecurityError(f"the group count must be a whole number from 1 to {MAX_OUTPUT:,}")
    if fill_with is not None and weight_of(fill_with) * count > MAX_OUTPUT:
        raise SecurityError(f"filling the groups would exceed {MAX_OUTPUT:,} characters or items")


def _precheck_wordwrap(value: Any, width: Any = 79, *args: Any, **kwargs: Any) -> None:
    wrapstring = kwargs.get("wrapstring", args[2] if len(args) > 2 else None)
    if isinstance(wrapstring, str) and len(wrapstring) * (len(str(value)) + 1) > MAX_OUTPUT:
        raise SecurityError(f"wordwrap would exceed {MAX_OUTPUT:,} characters")


PRECHECKS: dict[str, Callable[..., None]] = {
    "replace": _precheck_replace,
    "center": _precheck_width,
    "indent": _precheck_width,
    "format": _precheck_format,
    "join": _precheck_join,
    "batch": _precheck_groups,
    "slice": _precheck_groups,
    "wordwrap": _precheck_wordwrap,
}
"""Filters whose result can be far larger than their input, checked before they run."""
