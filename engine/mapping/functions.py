"""The functions mapping authors can call: Jinja filters and tests, and JMESPath functions.

docs/mapping-format.md lists them with examples. Each one takes event data and returns
data; none reaches outside the event (no I/O, no Python objects), which is what lets the
sandbox allow them.
"""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any, Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import regex
from jinja2 import Undefined
from jmespath import functions as jp_functions

from ..serialization import format_datetime, json_default, parse_datetime, to_json
from . import budget
from .casing import snake_case, snake_case_keys
from .missing import MISSING, Missing, MissingValue, is_missing

__all__ = ["FILTERS", "TESTS", "JMESPATH_FUNCTIONS", "MISSING_AWARE_FILTERS", "MISSING_AWARE_TESTS"]


# ---- Jinja filters ----------------------------------------------------------------------

EPOCH_MS_FROM = 10**11
"""A number at least this large is epoch milliseconds, not seconds (10^11 seconds is the
year 5138; 10^11 milliseconds is March 1973)."""


def parse_time(value: Any) -> datetime | None:
    """A time from ISO 8601 text, a datetime, or epoch seconds or milliseconds; None for
    anything else (including times outside the years 1 to 9999)."""
    if type(value) is str:  # the commonest: ISO 8601 text
        return parse_datetime(value)
    if type(value) is datetime and value.tzinfo is not None:  # `now`, and filters' results
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= EPOCH_MS_FROM:
        value = value / 1000
    return parse_datetime(value)


def _f_datetime(value: Any) -> datetime | Missing:
    parsed = parse_time(value)
    return MISSING if parsed is None else parsed


_SPANS: dict[int | float, timedelta] = {}  # days -> timedelta: a delay setting, over and over


def _f_add_days(value: Any, days: Any) -> datetime | Missing:
    parsed = parse_time(value)
    if parsed is None or not isinstance(days, (int, float)) or isinstance(days, bool):
        return MISSING
    span = _SPANS.get(days)
    if span is None:
        span = timedelta(days=days)  # 200 ns, each time; an overflow raises before it is kept
        if len(_SPANS) >= 256:
            _SPANS.clear()
        _SPANS[days] = span
    return parsed + span


def _f_days_between(start: Any, end: Any) -> float | Missing:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return MISSING
    return (b - a).total_seconds() / 86400


def _f_isoformat(value: Any) -> str | Missing:
    parsed = parse_time(value)
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
    digest = hashlib.sha256((value if type(value) is str else str(value)).encode()).hexdigest()
    if length == 64:
        return digest
    cut = length if type(length) is int else int(length)  # past 64: the whole digest
    return digest[:cut] if cut > 0 else digest[:1]


def _f_without(value: Any, *keys: str) -> Any:
    if not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if k not in keys}


def _f_merge(value: Any, *others: Any) -> Any:
    """`message | merge({"event": name})`: a new mapping, later keys winning; a missing
    mapping among the others adds nothing."""
    if type(value) is not dict:  # the message itself, the commonest, checked at once
        if is_missing(value):
            return MISSING
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
    return snake_case_keys(value, set(exceptions or ()))


def _f_is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---- time ----

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _since_epoch(value: Any) -> timedelta | None:
    parsed = parse_time(value)
    return None if parsed is None else parsed - _EPOCH


def _f_unix(value: Any) -> int | Missing:
    """Whole seconds since 1970 (exact: integer arithmetic, no float rounding)."""
    delta = _since_epoch(value)
    return MISSING if delta is None else delta.days * 86400 + delta.seconds


def _f_unix_ms(value: Any) -> int | Missing:
    delta = _since_epoch(value)
    if delta is None:
        return MISSING
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _f_unix_us(value: Any) -> int | Missing:
    delta = _since_epoch(value)
    if delta is None:
        return MISSING
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


_STRFTIME = regex.compile(r"%[-#]?[a-zA-Z%]")
_STRFTIME_ALLOWED = set("aAbBcdHIjmMpSUwWxXyYzZfGuVe%")


MAX_DATE_FORMAT = 256
"""The longest format_date format (a directive such as %c writes 24 characters)."""


_ZONE_NAME_LIMIT = 64  # the longest IANA name is 32 characters


@lru_cache(maxsize=512)
def _zone(name: str) -> tzinfo | None:
    """The IANA time zone called `name` ("Asia/Kolkata", "UTC"), or None. Event data names
    it, so failures are cached too and the cache is bounded."""
    if len(name) > _ZONE_NAME_LIMIT:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, or not a zone's key
        return None


def _f_format_date(value: Any, fmt: str = "%Y-%m-%dT%H:%M:%S", zone: str = "UTC") -> str | Missing:
    """strftime over the time in UTC, or in the IANA time zone `zone`:
    `ts | format_date('%Y-%m-%d')`, `ts | format_date('%H:%M %Z', context.timezone)`.
    An unknown zone gives missing, like an unreadable time."""
    parsed = parse_time(value)
    if parsed is None or not isinstance(fmt, str) or not isinstance(zone, str):
        return MISSING
    if len(fmt) > MAX_DATE_FORMAT:
        raise ValueError(f"format_date: the format is longer than {MAX_DATE_FORMAT} characters")
    for directive in _STRFTIME.findall(fmt):
        if directive[-1] not in _STRFTIME_ALLOWED:
            raise ValueError(f"format_date: unknown directive {directive!r}")
    where = timezone.utc if zone == "UTC" else _zone(zone)
    if where is None:
        return MISSING
    return parsed.astimezone(where).strftime(fmt)


# ---- hashing and normalizing ----

def _f_sha256(value: Any) -> str:
    """sha256 hex of the text (or of the JSON of a number: 42 hashes as "42")."""
    return hashlib.sha256(str(value).encode("utf-8")).hexdigest()


def _f_digits(value: Any) -> str | Missing:
    """Only the digits: `'+1 (555) 010-9999' | digits` is "15550109999" (missing if none)."""
    out = "".join(ch for ch in str(value) if "0" <= ch <= "9")
    return out or MISSING


_EMAIL = regex.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def _t_email(value: Any) -> bool:
    """`x is email`: one @, no spaces, a dot in the domain (what APIs that take an email
    check; not the full RFC 5322 grammar)."""
    return isinstance(value, str) and len(value) <= 320 and _EMAIL.match(value) is not None


# ---- regular expressions, bounded in time ----

REGEX_TIMEOUT = 0.05
"""Seconds a regular expression may run on one value: a pattern that backtracks
catastrophically (`(a+)+$`) fails the event instead of holding the process."""


@lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Any:
    """A compiled pattern (the `regex` module, which can be stopped by a timeout)."""
    return regex.compile(pattern)


REGEX_MAX_OUTPUT = 1_000_000
"""The longest text regex_replace may make (as bounds.MAX_OUTPUT: functions.py sits below
the sandbox and does not import it)."""


def _replace_within(compiled: Any, replacement: str, text: str, count: int) -> str:
    """`compiled.sub(replacement, text, count)`, stopped as soon as the text it builds
    passes REGEX_MAX_OUTPUT (an empty pattern inserts the replacement at every position)."""
    size = len(text)

    def expand(match: Any) -> str:
        nonlocal size
        piece = str(match.expand(replacement))
        size += len(piece) - (match.end() - match.start())
        if size > REGEX_MAX_OUTPUT:
            raise ValueError(f"regex_replace: the text would grow past {REGEX_MAX_OUTPUT:,} "
                             "characters")
        return piece
    return str(compiled.sub(expand, text, count=count, timeout=REGEX_TIMEOUT))


def _regex_run(kind: str, value: Any, pattern: Any, *args: Any) -> Any:
    if not isinstance(pattern, str):
        raise ValueError(f"{kind}: the pattern must be text")
    try:
        compiled = compile_regex(pattern)
    except regex.error as exc:
        raise ValueError(f"{kind}: bad pattern {pattern!r}: {exc}") from None
    text = value if isinstance(value, str) else str(value)
    started = time.perf_counter()
    try:
        if kind == "regex_replace":
            return _replace_within(compiled, str(args[0]), text, int(args[1]))
        found = (compiled.match if kind == "regex_match" else compiled.search)(
            text, timeout=REGEX_TIMEOUT)
    except TimeoutError:
        raise ValueError(f"{kind}: the pattern {pattern!r} took too long "
                         f"(more than {REGEX_TIMEOUT}s)") from None
    except (regex.error, IndexError) as exc:
        raise ValueError(f"{kind}: {exc}") from None
    finally:
        # Each run has its own time bound; many slow runs in one event count against its
        # budget, which is looked at after any run that took a while.
        budget.spend_units(len(text))
        if time.perf_counter() - started > 0.001:
            budget.check_time()
    if kind == "regex_match":
        return found is not None
    if found is None:
        return MISSING
    group = args[0] if args else 0
    try:
        result = found.group(group)
    except IndexError:
        raise ValueError(f"regex_search: the pattern has no group {group!r}") from None
    return MISSING if result is None else result


def _f_regex_match(value: Any, pattern: Any) -> bool:
    """Does the pattern match at the start of the text?"""
    return bool(_regex_run("regex_match", value, pattern))


def _f_regex_search(value: Any, pattern: Any, group: int | str = 0) -> Any:
    """The first match (or its group), missing when there is none."""
    return _regex_run("regex_search", value, pattern, group)


def _f_regex_replace(value: Any, pattern: Any, replacement: Any = "", count: int = 0) -> Any:
    return _regex_run("regex_replace", value, pattern, replacement, count)


# ---- structure ----

def _f_lookup(table: Any, key: Any, from_key: str = "from", to_key: str = "to") -> list[Any]:
    """Every value `table` maps `key` to, as a list: `settings.event_map | lookup(event)`.

    A table is a mapping (key -> value, or key -> list of values) or a list of
    `{from: ..., to: ...}` rows (the keys renamed with `from_key`, `to_key`): several rows
    with the same key give several values (and, with `for_each`, several requests)."""
    if isinstance(table, dict):
        found = table.get(key) if isinstance(key, (str, int, float)) else None
        if found is None:
            return []
        return list(found) if isinstance(found, list) else [found]
    if isinstance(table, list):
        return [row.get(to_key) for row in table
                if isinstance(row, dict) and row.get(from_key) == key and row.get(to_key) is not None]
    return []


FLATTEN_MAX_OUTPUT = 1_000_000
"""The most characters of keys and items flatten may make: each key spells its whole path,
so the keys of a deep value can be far longer than the value."""


def _f_flatten(value: Any, separator: str = ".", prefix: str = "") -> Any:
    """Nested mappings and lists as one mapping of prefixed keys:
    `{'a': {'b': 1}, 'c': [2]} | flatten('_')` is `{'a_b': 1, 'c_0': 2}`."""
    if not isinstance(value, (dict, list)):
        return value
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [(prefix, value)]
    size = 0
    while stack:  # no recursion: a deep value cannot exhaust the stack
        path, item = stack.pop()
        size += len(path) + 1
        if size > FLATTEN_MAX_OUTPUT:
            raise ValueError(f"flatten: the keys would pass {FLATTEN_MAX_OUTPUT:,} characters")
        if isinstance(item, dict) and item:
            pairs = [(str(k), v) for k, v in item.items()]
        elif isinstance(item, list) and item:
            pairs = [(str(i), v) for i, v in enumerate(item)]
        else:
            if path:
                out[path] = item
            continue
        for key, child in reversed(pairs):
            stack.append((f"{path}{separator}{key}" if path else key, child))
    return out


def _f_coalesce(value: Any, *others: Any) -> Any:
    """The first of the values that is present (not missing, not null)."""
    for candidate in (value, *others):
        if not is_missing(candidate):
            return candidate
    return MISSING


def _f_path_segment(value: Any) -> str:
    """Text made safe as one segment of a URL path: every reserved character, `/` too, is
    percent-encoded (`'a/b c' | path_segment` is "a%2Fb%20c")."""
    return quote(str(value), safe="")


def _f_int(value: Any, default: Any = MISSING, base: int = 10) -> Any:
    """Jinja's `int`, except that text that is not a number is missing (not 0)."""
    try:
        if isinstance(value, str):
            text = value.strip()
            try:
                return int(text, base)
            except ValueError:
                return int(float(text))
        if isinstance(value, bool):
            return int(value)
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _f_float(value: Any, default: Any = MISSING) -> Any:
    """Jinja's `float`, except that text that is not a number is missing (not 0.0)."""
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return default if result != result or result in (float("inf"), float("-inf")) else result


def _useragent(value: Any) -> dict[str, Any] | Missing:
    """browser, browser_version, os, os_version, device (and device_brand, device_model)
    parsed from a User-Agent header by ua-parser (the uap-core rules)."""
    if not isinstance(value, str) or not value:
        return MISSING
    from ua_parser import parse  # imported on first use: its rules take a while to load

    result = parse(value[:2048])
    out: dict[str, Any] = {}

    def version(part: Any) -> str | None:
        if part is None or part.major is None:
            return None
        numbers = (part.major, part.minor, part.patch, getattr(part, "patch_minor", None))
        return ".".join(p for p in numbers if p is not None)

    if result.user_agent is not None:
        out["browser"] = result.user_agent.family
        out["browser_version"] = version(result.user_agent)
    if result.os is not None:
        out["os"] = result.os.family
        out["os_version"] = version(result.os)
    if result.device is not None:
        out["device"] = result.device.family
        out["device_brand"] = result.device.brand
        out["device_model"] = result.device.model
    return {k: v for k, v in out.items() if v is not None}


def _f_default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's `default`, with null counted as missing (a null drops its key everywhere)."""
    if value is None or isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


def _f_lower(value: Any) -> str:
    """Jinja's `lower` (`soft_str(value).lower()`) without its call of markupsafe.soft_str:
    an email made a once key, every event."""
    return (value if isinstance(value, str) else str(value)).lower()


def _f_upper(value: Any) -> str:
    """Jinja's `upper`, as `lower` above."""
    return (value if isinstance(value, str) else str(value)).upper()


FILTERS: dict[str, Callable[..., Any]] = {
    "lower": _f_lower,
    "upper": _f_upper,
    "default": _f_default,
    "d": _f_default,
    "coalesce": _f_coalesce,
    "int": _f_int,
    "float": _f_float,
    "unix": _f_unix,
    "unix_ms": _f_unix_ms,
    "unix_us": _f_unix_us,
    "format_date": _f_format_date,
    "sha256": _f_sha256,
    "digits": _f_digits,
    "regex_match": _f_regex_match,
    "regex_search": _f_regex_search,
    "regex_replace": _f_regex_replace,
    "lookup": _f_lookup,
    "flatten": _f_flatten,
    "path_segment": _f_path_segment,
    "useragent": _useragent,
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

MISSING_AWARE_FILTERS = frozenset({"default", "d", "coalesce", "merge"})
"""Filters that exist to handle missing values; every other filter given a missing (or
null) value yields missing."""

MISSING_AWARE_TESTS = frozenset({"defined", "undefined", "missing", "present", "none"})
"""Tests that ask about missing values; every other test of a missing value is false."""

TESTS: dict[str, Callable[..., bool]] = {
    "integer": _f_is_integer,
    "email": _t_email,
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
        return snake_case_keys(value, set(exceptions))

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
