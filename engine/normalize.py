"""Check an incoming message against the Segment spec and fix its known legacy shapes."""

from __future__ import annotations

from typing import Any

from .errors import EventError
from .format import CALL_TYPES

__all__ = ["normalize_event"]

_NEEDS = {"track": "event", "group": "groupId"}


def normalize_event(event: Any) -> dict[str, Any]:
    """Return the message ready for mapping, or raise EventError saying what is wrong.

    - the legacy `action` field is read as `type` (Calixa's documented example uses it);
    - `type` must be one of the six call types;
    - `userId` or `anonymousId` must be present (a non-empty string or a number);
    - track needs `event`, group needs `groupId`.
    The input is never modified: a copy is made when something changes.
    """
    if not isinstance(event, dict):
        raise EventError(f"an event must be a JSON object, got {_kind(event)}")
    call = event.get("type")
    if call is None and "action" in event:
        call = event["action"]
        event = {("type" if k == "action" else k): v for k, v in event.items()}
    if call is None:
        raise EventError("the event has no 'type' (one of: " + ", ".join(CALL_TYPES) + ")")
    if not isinstance(call, str) or call.lower() not in CALL_TYPES:
        raise EventError(f"unknown event type {call!r}; expected one of: " + ", ".join(CALL_TYPES))
    if call != call.lower():
        event = {**event, "type": call.lower()}
        call = call.lower()
    if not (_present(event.get("userId")) or _present(event.get("anonymousId"))):
        raise EventError(f"a {call} event needs a userId or an anonymousId")
    needed = _NEEDS.get(call)
    if needed and not _present(event.get(needed)):
        raise EventError(f"a {call} event needs '{needed}'")
    for name in ("traits", "properties", "context", "integrations"):
        value = event.get(name)
        if value is not None and not isinstance(value, dict):
            raise EventError(f"'{name}' must be an object, got {_kind(value)}")
    return event


def _present(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and value.strip() != ""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
