"""How values are read and written as text: ISO 8601 times and compact JSON.

One module, with no dependency on the mapping language, so that the outcomes, the HTTP
layer and the command line share these rules without loading Jinja.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

__all__ = ["parse_datetime", "format_datetime", "to_json", "json_default"]


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 text (a trailing Z allowed) or epoch seconds to an aware UTC datetime;
    None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):  # outside the years 1 to 9999
            return None
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


def json_default(item: Any) -> Any:
    """What `to_json` writes for values JSON has no type for: datetimes as
    `format_datetime` writes them; anything else is a TypeError naming the type."""
    if isinstance(item, datetime):
        return format_datetime(item)
    raise TypeError(f"cannot serialize {type(item).__name__} to JSON")


def to_json(value: Any, sort_keys: bool = False,
            default: Callable[[Any], Any] = json_default) -> str:
    """Compact, unescaped JSON text (these strings go into form fields and headers, not
    HTML). `default` writes values JSON has no type for (see `json_default`)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys,
                      default=default)
