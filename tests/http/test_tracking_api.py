"""Segment's tracking-API rules, unit by unit."""

from __future__ import annotations

import base64
import gzip
from datetime import datetime, timezone

import pytest

from engine.errors import BadRequest
from engine.http.tracking_api import decode_body, messages_of, write_key_from
from engine.normalize import enrich

RECEIVED = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


def test_write_key_from_basic_auth_or_body() -> None:
    assert write_key_from(basic("wk"), {"writeKey": "other"}) == "wk"
    assert write_key_from(None, {"writeKey": "wk"}) == "wk"
    assert write_key_from("Bearer x", {"writeKey": "wk"}) == "wk"
    assert write_key_from(None, {}) is None
    assert write_key_from(basic(""), {}) is None
    with pytest.raises(BadRequest, match="not valid Basic auth"):
        write_key_from("Basic !!!", {})


def test_batch_context_and_integrations_merge_under_the_message() -> None:
    body = {"batch": [{"type": "track", "context": {"ip": "1"}, "integrations": {"Calixa": False}},
                      {"type": "track"}],
            "context": {"ip": "0", "locale": "fr"}, "integrations": {"All": True}}
    (first, ok1), (second, ok2) = messages_of(body, None)
    assert first["context"] == {"ip": "1", "locale": "fr"}
    assert first["integrations"] == {"All": True, "Calixa": False}
    assert second["context"] == {"ip": "0", "locale": "fr"}
    assert ok1 is ok2 is None


def test_single_calls_take_their_type_from_the_path() -> None:
    assert messages_of({"type": "page", "event": "x"}, "track") == [({"type": "track", "event": "x"}, None)]


def test_a_batchs_shared_parts_are_measured_once_and_count_in_each_message() -> None:
    pad = {"pad": "x" * 20_000}
    body = {"batch": [
        {"type": "track", "properties": {"p": "y" * 15_000}},  # with the context: over 32 KB
        {"type": "track", "context": pad},  # its own pad replaces the batch's: 20 KB in all
        {"type": "track"},
        7,
    ], "context": pad}
    assert [problem for _, problem in messages_of(body, None)] == [
        "the message is larger than 32 KB", None, None, "a message must be a JSON object"]
    with pytest.raises(BadRequest, match="the batch's context takes more than 32 KB: no message can carry it"):
        messages_of({"batch": [{"type": "track"}], "context": {f"k{i}": 1 for i in range(30_000)}}, None)
    deep: dict[str, object] = {}
    for _ in range(70):
        deep = {"a": deep}
    with pytest.raises(BadRequest, match="the batch's context and integrations nest more than 64 levels"):
        messages_of({"batch": [{"type": "track"}], "context": deep, "integrations": {}}, None)


@pytest.mark.parametrize(("message", "timestamp"), [
    ({"timestamp": "2020-05-05T00:00:00Z"}, "2020-05-05T00:00:00Z"),  # kept as sent
    ({"originalTimestamp": "2024-01-01T11:00:00Z", "sentAt": "2024-01-01T11:00:30Z"}, "2024-01-01T11:59:30.000Z"),
    ({"originalTimestamp": "2024-01-01T11:00:00Z"}, "2024-01-01T11:00:00.000Z"),
    ({}, "2024-01-01T12:00:00.000Z"),
])
def test_timestamp_as_segment_computes_it(message: dict, timestamp: str) -> None:
    out = enrich({"type": "track", **message}, "web", RECEIVED)
    assert out["timestamp"] == timestamp
    assert out["receivedAt"] == "2024-01-01T12:00:00.000Z"


def test_batch_sent_at_is_used_for_messages_without_their_own() -> None:
    out = enrich({"type": "track", "originalTimestamp": "2024-01-01T11:00:00Z"}, "web", RECEIVED,
                 sent_at="2024-01-01T11:00:10Z")
    assert out["timestamp"] == "2024-01-01T11:59:50.000Z"


def test_message_ids_are_kept_or_derived_from_the_content() -> None:
    assert enrich({"messageId": "m1"}, "web", RECEIVED)["messageId"] == "m1"
    a = enrich({"type": "track", "event": "x"}, "web", RECEIVED)["messageId"]
    again = enrich({"event": "x", "type": "track"}, "web", datetime.now(timezone.utc))["messageId"]
    other_source = enrich({"type": "track", "event": "x"}, "mobile", RECEIVED)["messageId"]
    assert a == again != other_source
    assert a.startswith("engine-")


def test_write_key_is_never_passed_on() -> None:
    assert "writeKey" not in enrich({"writeKey": "wk", "type": "track"}, "web", RECEIVED)


def test_decode_body_limits() -> None:
    assert decode_body(gzip.compress(b'{"a": 1}'), "gzip") == {"a": 1}
    assert decode_body(b'{"a": 1}', "identity") == {"a": 1}
    with pytest.raises(BadRequest, match="larger than 1 KB"):
        decode_body(gzip.compress(b" " * 5000 + b"{}"), "gzip", limit=1024)
    with pytest.raises(BadRequest) as caught:
        decode_body(b"{}", "compress")
    assert caught.value.status == 415
