"""The Jinja environment every mapping template runs in.

A mapping file may come from someone we do not trust, so templates run in Jinja's immutable
sandbox with more taken away: no globals (`range`, `lipsum`, `cycler`, ... ), no calls of
Python functions or methods (filters do that work), no attributes that start with `_`, and
bounded sizes for everything a template can grow (`*`, `**`, `+`, filter results, output).
With every list bounded, and nested loops, recursive loops and macros refused at load
(templates.py), the work a template can do is bounded too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import operator
import re
from datetime import datetime, timedelta, timezone
from functools import wraps
from typing import Any, Callable

from jinja2 import ChainableUndefined, Undefined, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .casing import snake_case

__all__ = ["MAX_OUTPUT", "MISSING", "Missing", "MissingValue", "MappingEnvironment", "ENV",
           "parse_datetime", "is_missing", "to_json", "format_datetime"]

MAX_OUTPUT = 1_000_000
"""The most characters (or items) any single template value may grow to."""


class MissingValue(UndefinedError):
    """A template used a value the event does not have; the key it renders is dropped."""


class Missing(ChainableUndefined):
    """Undefined that chains (`a.b.c` of nothing is nothing) and refuses to print.

    Printing raises MissingValue, so `"id: {{ userId }}"` without a userId drops its key
    instead of rendering "id: " or "id: None".
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc", MissingValue)
        super().__init__(*args, **kwargs)

    def __str__(self) -> str:
        self._fail_with_undefined_error()
        return ""  # pragma: no cover  (never reached)


MISSING = Missing()


def is_missing(value: Any) -> bool:
    """True for values that drop their key: undefined and None."""
    return value is None or isinstance(value, Undefined)


def _finalize(value: Any) -> Any:
    if value is None:
        raise MissingValue("a value printed into text is null")
    return value


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, dict, tuple)) and len(value) > MAX_OUTPUT:
        raise SecurityError(f"a template value grew past {MAX_OUTPUT} characters or items")
    return value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, bytes)) else 1


_WIDTH = re.compile(r"%[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?|\{[^{}]*:[^{}]*?(\d+)")


def _check_format(text: Any) -> None:
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
        _check_format(left)
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


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 text (a trailing Z allowed) or epoch seconds to an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str) and value:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def format_datetime(value: datetime) -> str:
    """UTC, ISO 8601 with milliseconds and a Z, as Segment writes timestamps."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# ---- project filters -------------------------------------------------------------------

def _f_datetime(value: Any) -> datetime | Missing:
    parsed = parse_datetime(value)
    return MISSING if parsed is None else parsed


def _f_add_days(value: Any, days: Any) -> datetime | Missing:
    parsed = parse_datetime(value)
    if parsed is None or not isinstance(days, (int, float)) or isinstance(days, bool):
        return MISSING
    return parsed + timedelta(days=days)


def _f_days_between(start: Any, end: Any) -> float | Missing:
    a, b = parse_datetime(start), parse_datetime(end)
    if a is None or b is None:
        return MISSING
    return (b - a).total_seconds() / 86400


def _f_isoformat(value: Any) -> str | Missing:
    parsed = parse_datetime(value)
    return MISSING if parsed is None else format_datetime(parsed)


def to_json(value: Any, sort_keys: bool = False) -> str:
    """Compact JSON text, as the `tojson` filter and form bodies write it."""
    return _f_tojson(value, sort_keys)


def _f_tojson(value: Any, sort_keys: bool = False) -> str:
    # Compact and unescaped: these strings go into form fields and headers, not HTML.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys,
                      default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, Undefined):
        raise MissingValue("a value serialized to JSON is missing")
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")


def _f_b64encode(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _f_digest(value: Any, length: int = 64) -> str:
    """A stable hex id from any text: sha256, cut to `length` characters."""
    return hashlib.sha256(str(value).encode("utf-8")).hexdigest()[: max(1, min(int(length), 64))]


def _f_without(value: Any, *keys: str) -> Any:
    if not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if k not in keys}


def _f_merge(value: Any, *others: Any) -> Any:
    """`message | merge({"event": name})`: a new mapping, later keys winning."""
    if not isinstance(value, dict):
        return value
    merged = dict(value)
    for other in others:
        if isinstance(other, dict):
            merged.update(other)
    return merged


def _f_snake_case_keys(value: Any, exceptions: Any = ()) -> Any:
    if not isinstance(value, dict):
        return value
    keep = set(exceptions or ())
    return {(k if k in keep or not isinstance(k, str) else snake_case(k)): v for k, v in value.items()}


def _f_is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


PROJECT_FILTERS: dict[str, Callable[..., Any]] = {
    "snake_case": lambda value: snake_case(str(value)),
    "snake_case_keys": _f_snake_case_keys,
    "datetime": _f_datetime,
    "add_days": _f_add_days,
    "days_between": _f_days_between,
    "isoformat": _f_isoformat,
    "tojson": _f_tojson,
    "b64encode": _f_b64encode,
    "digest": _f_digest,
    "without": _f_without,
    "merge": _f_merge,
}

PROJECT_TESTS: dict[str, Callable[..., bool]] = {
    "integer": _f_is_integer,
    "missing": is_missing,
    "present": lambda value: not is_missing(value),
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


# Filters whose result can be far larger than their input are checked before they run;
# every filter's result is checked after.
_PRECHECKS: dict[str, Callable[..., None]] = {
    "replace": _precheck_replace,
    "center": _precheck_width,
    "indent": _precheck_width,
    "format": lambda value, *args, **kwargs: _check_format(value),
}


def _bounded(func: Callable[..., Any], precheck: Callable[..., None] | None = None) -> Callable[..., Any]:
    pass_arg = getattr(func, "jinja_pass_arg", None)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if precheck is not None:
            # Filters that take the environment or a context get it first.
            precheck(*(args[1:] if pass_arg is not None else args), **kwargs)
        return _check_size(func(*args, **kwargs))

    if pass_arg is not None:
        wrapper.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    wrapper.has_precheck = precheck is not None  # type: ignore[attr-defined]
    return wrapper


class MappingEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, narrowed for untrusted mapping files."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=Missing, autoescape=False, finalize=_finalize,
                         keep_trailing_newline=False, auto_reload=False, cache_size=0)
        self.globals.clear()
        self.filters.update(PROJECT_FILTERS)
        self.tests.update(PROJECT_TESTS)
        self.filters = {name: _bounded(f, _PRECHECKS.get(name)) for name, f in self.filters.items()}

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Mapping data first: `traits.items` is the trait called "items", not dict.items.
        if type(obj) is dict:
            return obj.get(attribute, MISSING)
        if isinstance(obj, Undefined):
            return MISSING
        if attribute.startswith("_"):
            raise SecurityError(f"access to attribute {attribute!r} is not allowed")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is dict:
            try:
                return obj.get(argument, MISSING)
            except TypeError:
                return MISSING
        if isinstance(obj, Undefined):
            return MISSING
        if isinstance(argument, str) and argument.startswith("_"):
            raise SecurityError(f"access to attribute {argument!r} is not allowed")
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return bounded_binop(operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        # Macros and `loop.cycle` are template constructs; any Python callable could be a
        # way out of the sandbox or a way to burn memory (str.center(10**9)).
        if isinstance(__obj, Macro) or getattr(__obj, "__self__", None).__class__ is LoopContext:
            return __context.call(__obj, *args, **kwargs)
        raise SecurityError("calling functions or methods is not allowed in mapping templates; "
                            "use a filter instead")


ENV = MappingEnvironment()
"""The one environment: filters and tests are fixed, so templates can share it."""
