"""How values are read and written as text: ISO 8601 times, compact JSON and form bodies.

One module, with no dependency on the mapping language, so that the outcomes, the HTTP
layer and the command line share these rules without loading Jinja.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import quote, quote_plus

import orjson

__all__ = ["parse_datetime", "format_datetime", "to_json", "json_default", "form_encode",
           "query_encode"]


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 text (a trailing Z allowed) or epoch seconds to an aware UTC datetime;
    None for anything else."""
    global _last_parsed
    if isinstance(value, str):  # first: the commonest
        if not value:
            return None
        last = _last_parsed
        if last[0] == value:  # the same text again (several filters of one event read it)
            return last[1]
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed: datetime | None = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        else:
            assert parsed is not None
            if not parsed.tzinfo:
                parsed = parsed.replace(tzinfo=timezone.utc)
        # One text and its time, replaced as one tuple (no lock needed): what a datetime
        # is made of cannot change, so any thread may use the other's.
        _last_parsed = (value, parsed)
        return parsed
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):  # outside the years 1 to 9999
            return None
    return None


_last_parsed: tuple[str, datetime | None] = ("", None)


def format_datetime(value: datetime) -> str:
    """UTC, ISO 8601 with milliseconds and a Z, as Segment writes timestamps."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def json_default(item: Any) -> Any:
    """What `to_json` writes for values JSON has no type for: datetimes as
    `format_datetime` writes them; anything else is a TypeError naming the type."""
    if isinstance(item, datetime):
        return format_datetime(item)
    raise TypeError(f"cannot serialize {type(item).__name__} to JSON")


_ORJSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# Where orjson's text can differ from the json module's: floats under 10^-4, which Python
# writes with a two-digit exponent (`1e-05`, `1.5e-06`) and orjson as `0.00001` or
# `1.5e-6`; and NaN or infinity (orjson writes null). Text that merely looks so (a string
# holding "0.00001", or a real null) is written again by the json module: slower, never
# different.
_MAYBE_DIFFERENT = re.compile(r"0\.0000|[0-9]e-[0-9](?![0-9])|null")


def to_json(value: Any, sort_keys: bool = False,
            default: Callable[[Any], Any] = json_default) -> str:
    """Compact, unescaped JSON text (these strings go into form fields and headers, not
    HTML). `default` writes values JSON has no type for (see `json_default`).

    The text is exactly what `json.dumps(value, ensure_ascii=False, separators=(",", ":"),
    sort_keys=sort_keys, default=default)` writes; orjson writes it when it can, which is
    almost always, and the json module the rest (keys that are not text, integers past 64
    bits, lone surrogates, the floats orjson writes another way, values `default` refuses)."""
    try:
        data = orjson.dumps(value, default=default,
                            option=_ORJSON | orjson.OPT_SORT_KEYS if sort_keys else _ORJSON)
    except (TypeError, ValueError):  # orjson.JSONEncodeError among them
        pass
    else:
        # Three searches of the text first (the common JSON has none of them), the regex
        # after. Searching the decoded text: `in` on str is several times cheaper than on
        # bytes, which goes through the buffer protocol.
        text = data.decode()
        if ("null" not in text and "0.0000" not in text and "e-" not in text) \
                or _MAYBE_DIFFERENT.search(text) is None:
            return text
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys,
                      default=default)


def _quoting_table(plus: bool) -> dict[int, str]:
    # What urllib.parse.quote (and quote_plus, which writes a space as +) leaves as it is.
    safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
    return {c: chr(c) if chr(c) in safe else "+" if plus and c == 32 else f"%{c:02X}"
            for c in range(128)}


_FORM = _quoting_table(plus=True)
_QUERY = _quoting_table(plus=False)
_FORM_SAFE = re.compile(r"[A-Za-z0-9_.\-~]*")
_QUOTED: dict[str, str] = {}  # texts that needed quoting: names, JSON of the same events
_QUOTED_MOST = 4096
_QUOTED_LENGTH = 256


def _form_quote(text: str) -> str:
    """quote_plus(text), faster: text with nothing to quote as it is (ids, digests), text
    seen before from a bounded memo, other ASCII text by one str.translate."""
    if text.isalnum() and text.isascii():  # ids, digests, numbers: two C calls
        return text
    found = _QUOTED.get(text)
    if found is not None:
        return found
    if _FORM_SAFE.fullmatch(text) is not None:
        return text
    quoted = text.translate(_FORM) if text.isascii() else quote_plus(text)
    if len(text) <= _QUOTED_LENGTH:
        if len(_QUOTED) >= _QUOTED_MOST:
            _QUOTED.clear()
        _QUOTED[text] = quoted
    return quoted


def form_encode(form: Mapping[Any, Any]) -> bytes:
    """An application/x-www-form-urlencoded body: exactly what
    `urllib.parse.urlencode(form).encode("ascii")` gives (keys and values as text), by
    _form_quote instead of quote_plus's Python loop over bytes."""
    parts = []
    for key, value in form.items():
        k = _form_quote(key if type(key) is str else str(key))
        v = _form_quote(value if type(value) is str else str(value))
        parts.append(f"{k}={v}")
    return "&".join(parts).encode("ascii")


def query_encode(pairs: list[tuple[str, str]]) -> str:
    """Query parameters, `%20` for a space: what `urlencode(pairs, quote_via=quote)` gives."""
    return "&".join(
        f"{k.translate(_QUERY) if k.isascii() else quote(k, safe='')}="
        f"{v.translate(_QUERY) if v.isascii() else quote(v, safe='')}" for k, v in pairs)
