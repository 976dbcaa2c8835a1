"""Make what a client sent a Segment message ready for routing and mapping, in one place.

Three steps, each applied once per message:
- `apply_batch_defaults`: a batch's top-level `context` and `integrations` apply to each of
  its messages (the message's own keys win), as Segment's tracking API does;
- `enrich`: `messageId`, `receivedAt` and `timestamp` filled in as Segment fills them, and
  `writeKey` dropped (the shim does this for what clients send);
- `normalize_event`: checked against the spec, legacy shapes fixed (every input does this).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Sequence

import orjson

from .errors import EventError
from .serialization import format_datetime, parse_datetime

__all__ = ["CALL_TYPES", "MESSAGE_FIELDS", "normalize_event", "normalized_object", "apply_batch_defaults",
           "batch_defaults", "with_batch_defaults", "enrich"]

CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
"""The six call types of the Segment spec."""

MESSAGE_FIELDS = frozenset({
    "type", "userId", "anonymousId", "messageId", "timestamp", "originalTimestamp", "sentAt",
    "receivedAt", "context", "integrations", "version", "channel", "event", "properties",
    "traits", "groupId", "name", "category", "previousId", "projectId", "writeKey",
})
"""The top-level fields of a Segment message (its custom data lives in properties and
traits): the names a mapping's templates may read from a message."""

_NEEDS = {"track": "event", "group": "groupId"}
_CALLS = frozenset(CALL_TYPES)
_BATCH_DEFAULTS = ("context", "integrations")


def normalize_event(event: Any) -> dict[str, Any]:
    """Return the message ready for mapping, or raise EventError saying what is wrong.

    - the legacy `action` field is read as `type` (Calixa's documented example uses it);
    - `type` must be one of the six call types;
    - `userId` or `anonymousId` must be present (a non-empty string or a number);
    - track needs `event`, group needs `groupId`;
    - an identify whose traits sit only in `context.traits` is read with them as its
      `traits`: the spec puts an identify's traits in `traits` (and `context.traits` is for
      the user's traits on other calls), but RudderStack's SDKs send an identify's traits in
      `context.traits` alone.
    The input is never modified: a copy is made when something changes.
    """
    if not isinstance(event, dict):
        raise EventError(f"an event must be a JSON object, got {_kind(event)}")
    message: dict[str, Any] = event
    return normalized_object(message)


def normalized_object(event: dict[str, Any]) -> dict[str, Any]:
    """normalize_event for an event already known to be a dict (one call less per event
    on the mapping path)."""
    call = event.get("type")
    if type(call) is not str or call not in _CALLS:  # else: the commonest case, at once
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
    user_id = event.get("userId")
    if not ((type(user_id) is str and user_id.strip() != "") or _present(user_id)
            or _present(event.get("anonymousId"))):
        article = "an" if call[:1] in "aeiou" else "a"
        raise EventError(f"{article} {call} event needs a userId or an anonymousId")
    needed = _NEEDS.get(call)
    if needed:
        value = event.get(needed)
        if not ((type(value) is str and value.strip() != "") or _present(value)):
            raise EventError(f"a {call} event needs '{needed}'")
    # The four objects, read once each and checked together (a loop over their names cost
    # a tenth of this function); which one is wrong is looked for only when one is.
    traits, properties = event.get("traits"), event.get("properties")
    context, integrations = event.get("context"), event.get("integrations")
    if not ((traits is None or type(traits) is dict) and (context is None or type(context) is dict)
            and (properties is None or type(properties) is dict)
            and (integrations is None or type(integrations) is dict)):
        for name in ("traits", "properties", "context", "integrations"):
            value = event.get(name)
            if value is not None and not isinstance(value, dict):
                raise EventError(f"'{name}' must be an object, got {_kind(value)}")
    if call == "identify" and not traits:
        context_traits = (context or {}).get("traits")
        if isinstance(context_traits, dict) and context_traits:
            event = {**event, "traits": context_traits}
    return event


def apply_batch_defaults(messages: Sequence[Any], batch: dict[str, Any]) -> list[Any]:
    """The messages of a batch with its top-level `context` and `integrations` merged into
    each one (the message's own keys win). Messages that are not objects are left as they
    are, for `normalize_event` to reject."""
    shared = batch_defaults(batch)
    return [with_batch_defaults(message, shared) for message in messages] if shared else list(messages)


def batch_defaults(batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What a batch shares with each of its messages: its `context` and `integrations`."""
    return {k: batch[k] for k in _BATCH_DEFAULTS if isinstance(batch.get(k), dict)}


def with_batch_defaults(message: Any, shared: dict[str, dict[str, Any]]) -> Any:
    """`message` with the batch's `shared` parts merged in (its own keys win). The shared
    dictionaries are not copied when the message has none of its own: every message of the
    batch refers to the same one (nothing downstream modifies a message)."""
    if not shared or not isinstance(message, dict):
        return message
    message = dict(message)
    for key, value in shared.items():
        own = message.get(key)
        message[key] = {**value, **own} if isinstance(own, dict) else value
    return message


def enrich(message: dict[str, Any], source: str, received_at: datetime,
           sent_at: Any = None, ip: str | None = None) -> dict[str, Any]:
    """Fill in messageId, receivedAt and timestamp as Segment does, and `context.ip` (from
    `ip`, the client's address) when the message has none; drop `writeKey` (it is a secret
    and must not travel on to destinations).

    `timestamp = receivedAt - (sentAt - originalTimestamp)`, correcting the client's clock.
    """
    out = {k: v for k, v in message.items() if k != "writeKey"}
    if not out.get("messageId"):
        # Derived from the content, so that a client's retry of the same message is
        # recognised as a duplicate.
        digest = hashlib.sha256(source.encode() + b"\0" + orjson.dumps(out, option=orjson.OPT_SORT_KEYS))
        out["messageId"] = f"engine-{uuid.UUID(bytes=digest.digest()[:16])}"
    out["receivedAt"] = format_datetime(received_at)
    if not out.get("timestamp"):
        original = parse_datetime(out.get("originalTimestamp"))
        sent = parse_datetime(out.get("sentAt") or sent_at)
        if original is not None and sent is not None:
            try:
                stamp = received_at - (sent - original)
            except OverflowError:  # a client clock too far off to correct: take our own
                stamp = received_at
        elif original is not None:
            stamp = original
        else:
            stamp = received_at
        out["timestamp"] = format_datetime(stamp)
    context = out.get("context")
    if ip and (context is None or (isinstance(context, dict) and not context.get("ip"))):
        out["context"] = {**(context or {}), "ip": ip}
    return out


def _present(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and value.strip() != ""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
