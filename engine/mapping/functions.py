"""The functions mapping authors can call: Jinja filters and tests, and JMESPath functions.

docs/mapping-format.md lists them with examples. Each one takes event data and returns
data; none reaches outside the event (no I/O, no Python objects), which is what lets the
sandbox allow them.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from typing import Any, Callable

from jinja2 import Undefined
from jmespath import functions as jp_functions

from ..serialization import json_default, parse_datetime, format_datetime, to_json
from .casing import snake_case
from .missing import MISSING, Missing, MissingValue, is_missing

__all__ = ["FILTERS", "TESTS", "JMESPATH_FUNCTIONS", "MISSING_AWARE_FILTERS", "MISSING_AWARE_TESTS"]


# ---- Jinja filters ----------------------------------------------------------------------

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


def _template_json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        raise MissingValue("a value serialized to JSON is missing")
    return json_default(value)


def _f_tojson(value: Any, sort_keys: bool = False) -> str:
    return to_json(value, sort_keys, _template_json_default)


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


def _f_default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's `default`, with null counted as missing (a null drops its key everywhere)."""
    if value is None or isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


FILTERS: dict[str, Callable[..., Any]] = {
    "default": _f_default,
    "d": _f_default,
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
"""The project's filters, added to Jinja's built-in ones."""

MISSING_AWARE_FILTERS = frozenset({"default", "d"})
"""Filters that exist to handle missing values; every other filter given a missing (or
null) value yields missing."""

MISSING_AWARE_TESTS = frozenset({"defined", "undefined", "missing", "present", "none"})
"""Tests that ask about missing values; every other test of a missing value is false."""

TESTS: dict[str, Callable[..., bool]] = {
    "integer": _f_is_integer,
    "missing": is_missing,
    "present": lambda value: not is_missing(value),
}
"""The project's tests, added to Jinja's built-in ones."""


# ---- JMESPath functions -----------------------------------------------------------------

class _ProjectFunctions(jp_functions.Functions):  # type: ignore[misc]  # jmespath is untyped
    """JMESPath's built-ins plus snake_case, snake_case_keys, coalesce, lower, upper."""

    @jp_functions.signature(  # type: ignore[untyped-decorator]
        {"types": ["string"]})
    def _func_snake_case(self, value: str) -> str:
        return snake_case(value)

    @jp_functions.signature(  # type: ignore[untyped-decorator]
        {"types": ["object"]}, {"types": ["array"]})
    def _func_snake_case_keys(self, value: dict[str, Any], exceptions: list[Any]) -> dict[str, Any]:
        keep = set(exceptions)
        return {(k if k in keep else snake_case(k)): v for k, v in value.items()}

    @jp_functions.signature(  # type: ignore[untyped-decorator]
        {"types": [], "variadic": True})
    def _func_coalesce(self, *values: Any) -> Any:
        return next((v for v in values if v is not None and v != ""), None)

    @jp_functions.signature(  # type: ignore[untyped-decorator]
        {"types": ["string"]})
    def _func_lower(self, value: str) -> str:
        return value.lower()

    @jp_functions.signature(  # type: ignore[untyped-decorator]
        {"types": ["string"]})
    def _func_upper(self, value: str) -> str:
        return value.upper()


JMESPATH_FUNCTIONS = _ProjectFunctions()
"""JMESPath's functions and the project's, as one table."""
