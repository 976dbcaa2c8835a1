"""What Segment's HTTP tracking API does with a request before any mapping happens.

Source: segment-docs, connections/sources/catalog/libraries/server/http-api. Limits: 32 KB
per message, 500 KB per batch. The write key comes as Basic auth (the username) or as
`writeKey` in the body. A batch's top-level `context` and `integrations` apply to each of
its messages. `messageId`, `receivedAt` and `timestamp` are filled in when absent;
`timestamp = receivedAt - (sentAt - originalTimestamp)` as Segment computes it.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
import zlib
from datetime import datetime
from typing import Any

import orjson

from .sandbox import format_datetime, parse_datetime

__all__ = ["BadRequest", "MAX_MESSAGE", "MAX_BATCH", "decode_body", "write_key_from",
           "messages_of", "enrich", "message_size"]

MAX_MESSAGE = 32 * 1024
MAX_BATCH = 500 * 1024


class BadRequest(Exception):
    """The request as a whole is refused: answered with `status` and a JSON error."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


def decode_body(raw: bytes, encoding: str | None, limit: int = MAX_BATCH) -> Any:
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


def messages_of(body: Any, call: str | None) -> list[Any]:
    """The messages of a request: one for /v1/<call>, the batch's for /v1/batch, with the
    batch's `context` and `integrations` merged into each (the message's own keys win)."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if call is not None:
        return [{**body, "type": call}]
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise BadRequest("a batch body needs a 'batch' array")
    shared = {k: body[k] for k in ("context", "integrations") if isinstance(body.get(k), dict)}
    if not shared:
        return list(batch)
    merged = []
    for message in batch:
        if isinstance(message, dict):
            message = dict(message)
            for key, value in shared.items():
                own = message.get(key)
                message[key] = {**value, **own} if isinstance(own, dict) else value
        merged.append(message)
    return merged


def message_size(message: Any) -> int:
    return len(orjson.dumps(message))


def enrich(message: dict[str, Any], source: str, received_at: datetime,
           sent_at: Any = None) -> dict[str, Any]:
    """Fill in messageId, receivedAt and timestamp as Segment does; drop `writeKey` (it is a
    secret and must not travel on to destinations)."""
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
            stamp = received_at - (sent - original)
        elif original is not None:
            stamp = original
        else:
            stamp = received_at
        out["timestamp"] = format_datetime(stamp)
    return out


