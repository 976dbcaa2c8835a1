"""The rules of Segment's HTTP tracking API for a request, before its messages are
normalized (engine.normalize) and taken in (engine.intake).

Source: segment-docs, connections/sources/catalog/libraries/server/http-api. Limits: 32 KB
per message, 500 KB per batch, 2,500 messages per batch. The write key comes as Basic auth
(the username) or as `writeKey` in the body. Webhook and inbound calls are signed with
X-Signature, the hex HMAC-SHA1 of the body with a shared secret (or, for a source that asks
for it, of a batch's first event, as Segment's Actions Webhooks sign batches).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from typing import Any

import orjson

from ..errors import BadRequest
from ..normalize import CALL_TYPES, batch_defaults, with_batch_defaults

__all__ = ["MAX_MESSAGE", "MAX_BATCH", "MAX_BATCH_MESSAGES", "MAX_WEBHOOK_MESSAGES",
           "MAX_DEPTH", "CALL_TYPES", "SHORT_PATHS", "decode_body",
           "write_key_from", "Checked", "messages_of", "message_problem", "body_signer", "verify_signature"]

SHORT_PATHS = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group",
               "a": "alias", "b": "batch"}
"""analytics.js (analytics-next) posts to /v1/t, /v1/i, ... rather than the full names."""

MAX_MESSAGE = 32 * 1024
MAX_BATCH = 500 * 1024
MAX_BATCH_MESSAGES = 2500
# Segment's Actions Webhooks batch up to 4,000 events (their bytes: a source's webhook_max_body).
MAX_WEBHOOK_MESSAGES = 4000


def decode_body(raw: bytes | bytearray, encoding: str | None, limit: int = MAX_BATCH) -> Any:
    """The JSON body, gunzipped when `Content-Encoding: gzip`, never past `limit` bytes."""
    if encoding and encoding.strip().lower() not in ("identity", ""):
        if encoding.strip().lower() not in ("gzip", "x-gzip"):
            raise BadRequest(f"unsupported Content-Encoding: {encoding}", 415)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise BadRequest(f"the body is not valid gzip: {exc}") from None
        if len(raw) > limit or inflater.unconsumed_tail:
            raise BadRequest(f"the body is larger than {limit // 1024} KB")
    if len(raw) > limit:
        raise BadRequest(f"the body is larger than {limit // 1024} KB")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def write_key_from(authorization: str | None, body: Any) -> str | None:
    """The write key: Basic auth's username, else `writeKey` in the body."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the Authorization header is not valid Basic auth", 401) from None
        return decoded.split(":", 1)[0] or None
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        return body["writeKey"] or None
    return None


Checked = tuple[Any, "str | None"]
"""A message of a request, and why it is refused before it is read as an event (or None)."""


def messages_of(body: Any, call: str | None) -> list[Checked]:
    """The messages of a request, each checked (`message_problem`): one for /v1/<call>; the
    batch's for /v1/batch, with the batch's `context` and `integrations` merged into each.

    Those shared parts are measured once per batch, not once per message (a batch of small
    messages sharing a huge context would cost its size times theirs): a batch whose shared
    parts alone are too large or too deep for any message is refused whole."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if call is not None:
        message = {**body, "type": call}
        return [(message, message_problem(message))]
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise BadRequest("a batch body needs a 'batch' array")
    if len(batch) > MAX_BATCH_MESSAGES:
        raise BadRequest(f"a batch holds at most {MAX_BATCH_MESSAGES} messages")
    shared = batch_defaults(body)
    shared_size = 0
    if shared:
        what, s = "the batch's " + " and ".join(shared), "" if len(shared) > 1 else "s"
        if _depth(shared) > MAX_DEPTH:
            raise BadRequest(f"{what} nest{s} more than {MAX_DEPTH} levels deep")
        shared_size = len(orjson.dumps(shared))
        if shared_size > MAX_MESSAGE:
            raise BadRequest(f"{what} take{s} more than {MAX_MESSAGE // 1024} KB: no message "
                             f"can carry {'them' if len(shared) > 1 else 'it'}")
    checked: list[Checked] = []
    for message in batch:
        problem, size = _measure(message)
        merged = with_batch_defaults(message, shared)
        # Merged, it nests no deeper than the deeper of the two, and its text is no longer
        # than both texts: only when that sum is over the limit is it measured itself.
        if problem is None and size + shared_size > MAX_MESSAGE \
                and len(orjson.dumps(merged)) > MAX_MESSAGE:
            problem = _TOO_LARGE
        checked.append((merged, problem))
    return checked


MAX_DEPTH = 64
"""Levels of nesting a message may have (Segment's have a handful); deeper ones are refused."""
_TOO_DEEP = f"the message is nested more than {MAX_DEPTH} levels deep"
_TOO_LARGE = f"the message is larger than {MAX_MESSAGE // 1024} KB"


def message_problem(message: Any) -> str | None:
    """Why a message is refused before it is even read as an event (not an object, too
    large, or nested too deeply to be one), or None."""
    return _measure(message)[0]


def _measure(message: Any) -> tuple[str | None, int]:
    """Why a message is refused (see message_problem), and the size of its JSON text."""
    if not isinstance(message, dict):
        return "a message must be a JSON object", 0
    if _depth(message) > MAX_DEPTH:
        return _TOO_DEEP, 0
    size = len(orjson.dumps(message))
    return (_TOO_LARGE if size > MAX_MESSAGE else None), size


def _depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """How deeply `value` nests, counted no further than `limit` (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level >= limit:
                return level
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def body_signer(secret: str) -> "hmac.HMAC":
    """An HMAC-SHA1 with `secret`, to feed the body to as it is read (`update`)."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha1)


def verify_signature(secret: str | None, raw: bytes | bytearray, signature: str | None, *,
                     first_event: bool = False, body_digest: str | None = None) -> None:
    """Raise BadRequest (401) unless X-Signature is the hex HMAC-SHA1 of the whole body with
    the shared secret. With `first_event` (only for a source that asks for it: Segment's
    Actions Webhooks sign a batch so), the HMAC of a batch's first event as sent is accepted
    too, and the events after it are then not authenticated. `body_digest`: the body's hex
    HMAC, computed while it was read. Nothing is checked when there is no secret."""
    if not secret:
        return
    given = (signature or "").strip().lower()
    if given:
        whole = body_digest if body_digest is not None else hmac.new(
            secret.encode(), raw, hashlib.sha1).hexdigest()
        if hmac.compare_digest(whole, given):
            return
        first = _first_element(raw) if first_event else None
        if first is not None and hmac.compare_digest(
                hmac.new(secret.encode(), first, hashlib.sha1).hexdigest(), given):
            return
    what = "the body, or of a batch's first event" if first_event else "the whole body"
    raise BadRequest(f"missing or wrong X-Signature (hex HMAC-SHA1 of {what})", 401)


def _first_element(raw: bytes | bytearray) -> bytes | None:
    """The exact bytes of the first element of a JSON array body, or None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    start = len(text) - len(text.lstrip())
    if not text[start:start + 1] == "[":
        return None
    rest = text[start + 1:]
    offset = len(rest) - len(rest.lstrip())
    try:
        _, end = json.JSONDecoder().raw_decode(rest, offset)
    except (ValueError, RecursionError):  # not JSON, or nested past what it reads
        return None
    return rest[offset:end].encode("utf-8")
