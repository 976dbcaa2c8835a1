"""Property-based attack on everything a client controls: the tracking API's bodies and
headers, batches, webhook and inbound bodies and their signatures.

For any input: never a 500 (nor a 503: the store is fine here), every error a JSON body
`{"success": false, "code", "message"}`, no traceback logged, and every well-formed message
sent alongside the junk either stored or the whole request refused (nothing half-taken).
A short run is part of `make test`; `make fuzz` runs many more cases
(HYPOTHESIS_PROFILE=fuzz, tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import logging
import uuid
from typing import Any, Callable, Iterator

import httpx
import pytest
from hypothesis import given, strategies as st

from engine.config import load_config
from engine.http.app import create_app
from tests.support.shim import WRITE_KEY, shim_config

Send = Callable[[str, str, bytes, dict[str, str]], httpx.Response]
ALLOWED = {200, 400, 401, 404, 405, 408, 413, 415}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR or "Traceback" in record.getMessage():
            self.bad.append(record)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Send, Any, _Records]]:
    """One app for every example (its lifespan running on a loop of its own), and a way to
    call it: starting one per example would leave little time for the examples."""
    tmp = tmp_path_factory.mktemp("fuzz")
    config = load_config(shim_config(tmp, "http://127.0.0.1:9", dry_run=True))
    app = create_app(config)
    loop = asyncio.new_event_loop()
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                               base_url="http://shim")
    records = _Records()
    logging.getLogger().addHandler(records)

    def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return loop.run_until_complete(client.request(method, path, content=body, headers=headers))
    try:
        yield send, app.state.shim.outbox, records
    finally:
        logging.getLogger().removeHandler(records)
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()


# ---- what clients send --------------------------------------------------------------------

_text = st.one_of(st.text(max_size=20), st.sampled_from(["", " ", "\u0000", "\ud800", "🙂" * 3, "1e400"]))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                     st.floats(allow_nan=False, allow_infinity=False), _text,
                     st.sampled_from([1e20, -1e15, 253402300800, 2**64, -(2**63) - 1]))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)), max_leaves=15)
_fields = {"type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "TRACK",
                                    "click", ""]) | _json,
           "userId": _json, "anonymousId": _json, "event": _json, "groupId": _json,
           "messageId": _json, "timestamp": _json, "originalTimestamp": _json, "sentAt": _json,
           "traits": _json, "properties": _json, "context": _json, "integrations": _json,
           "writeKey": st.sampled_from([WRITE_KEY, "nope"]) | _json}
_message = st.one_of(st.fixed_dictionaries({}, optional=_fields), st.fixed_dictionaries({}, optional=_fields),
                     st.fixed_dictionaries({}, optional=_fields), _json)


def _deep(depth: int) -> bytes:
    return b'{"type":"track","userId":"u","event":"e","properties":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


@st.composite
def _raw(draw: st.DrawFn, value: st.SearchStrategy[Any]) -> bytes:
    """JSON as a client might send it, or not quite: as it is, cut short, with bytes
    inserted, nested past any limit, not UTF-8, or no JSON at all."""
    kind = draw(st.sampled_from(["json"] * 6 + ["cut", "spliced", "deep", "bytes"]))
    if kind == "deep":
        return _deep(draw(st.integers(min_value=60, max_value=3000)))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    text = json.dumps(draw(value), ensure_ascii=draw(st.booleans()), allow_nan=False)
    raw = text.encode("utf-8", "surrogatepass")
    if kind == "cut":
        return raw[:draw(st.integers(min_value=0, max_value=len(raw)))]
    if kind == "spliced":
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    return raw


_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@st.composite
def _headers(draw: st.DrawFn, body: bytes) -> tuple[bytes, dict[str, str]]:
    """Headers a client might send with `body` (which they may gzip)."""
    headers: dict[str, str] = {}
    auth = draw(st.sampled_from(["key"] * 6 + ["none", "unknown", "garbage", "bearer"]))
    if auth == "key":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    elif auth == "unknown":
        headers["Authorization"] = "Basic " + base64.b64encode(draw(st.binary(max_size=20))).decode()
    elif auth == "garbage":
        headers["Authorization"] = "Basic " + draw(_header_text)
    elif auth == "bearer":
        headers["Authorization"] = draw(_header_text)
    encoding = draw(st.sampled_from([None] * 6 + ["gzip", "GZIP", "br", "identity", "gzip, br"]) | _header_text)
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        if encoding.strip().lower() == "gzip" and draw(st.booleans()):
            body = gzip.compress(body)
    headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", ""]) | _header_text)
    signature = draw(st.sampled_from(["good", "none", "wrong", "text"]))
    if signature == "good":
        headers["X-Signature"] = hmac.new(b"hook-secret-123", body, hashlib.sha1).hexdigest()
    elif signature == "wrong":
        headers["X-Signature"] = "0" * 40
    elif signature == "text":
        headers["X-Signature"] = draw(_header_text)
    if draw(st.booleans()):
        headers["X-Forwarded-For"] = draw(_header_text)
    return body, headers


def _good(count: int) -> list[dict[str, Any]]:
    """Well-formed identifies, each with a messageId never seen before (Calixa stores each)."""
    return [{"type": "identify", "userId": "fuzz", "messageId": f"good-{uuid.uuid4()}"}
            for _ in range(count)]


# ---- the invariants ---------------------------------------------------------------------

def _check(reply: httpx.Response, records: _Records) -> Any:
    """No 500 (nor 503), a JSON answer (an error says what and why), nothing bad logged."""
    assert reply.status_code in ALLOWED, (reply.status_code, reply.text[:300])
    answer = reply.json()
    assert isinstance(answer, dict)
    if reply.status_code != 200:
        assert answer["success"] is False and isinstance(answer["code"], str), answer
        assert isinstance(answer["message"], str) and answer["message"], answer
    assert not records.bad, [r.getMessage()[:300] for r in records.bad]
    return answer


def _stored(outbox: Any, good: list[dict[str, Any]]) -> set[str]:
    ids = {m["messageId"] for m in good}
    return {row["message_id"] for row in outbox.rows("recorded", limit=100_000) if row["message_id"] in ids}


_CALLS = ["track", "identify", "page", "screen", "group", "alias", "t", "i", "p", "s", "g", "a", "click"]


@given(data=st.data())
def test_single_calls(shim: tuple[Send, Any, _Records], data: st.DataObject) -> None:
    send, _, records = shim
    call = data.draw(st.sampled_from(_CALLS))
    raw = data.draw(_raw(_message))
    body, headers = data.draw(_headers(raw))
    _check(send("POST", f"/v1/{call}", body, headers), records)


@given(data=st.data())
def test_batches_keep_every_good_message_or_refuse_the_request(shim: tuple[Send, Any, _Records],
                                                               data: st.DataObject) -> None:
    send, outbox, records = shim
    good = _good(data.draw(st.integers(min_value=0, max_value=3)))
    junk = data.draw(st.lists(_message, max_size=6))
    messages = data.draw(st.permutations(good + junk))
    batch: dict[str, Any] = {"batch": messages}
    for key in ("context", "integrations", "sentAt", "writeKey"):
        if data.draw(st.booleans()):
            batch[key] = data.draw(_json)
    raw = json.dumps(batch).encode("utf-8", "surrogatepass")
    body, headers = data.draw(_headers(raw))
    headers["Authorization"] = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    path = data.draw(st.sampled_from(["/v1/batch", "/v1/import", "/v1/b"]))
    reply = send("POST", path, body, headers)
    answer = _check(reply, records)
    stored = _stored(outbox, good)
    if reply.status_code == 200:
        rejected = {r["index"] for r in answer.get("rejected", [])}
        kept = {m["messageId"] for i, m in enumerate(messages) if i not in rejected and m in good}
        if any(k in batch for k in ("context", "integrations")):
            # What the batch merges into each message may reject it (too large) or route it
            # away from Calixa (integrations): never store what was rejected.
            assert stored <= kept, answer
        else:
            assert stored == kept == {m["messageId"] for m in good}, answer
    else:
        assert stored == set(), answer  # refused: nothing of it taken in


@given(data=st.data())
def test_webhooks_and_signatures(shim: tuple[Send, Any, _Records], data: st.DataObject) -> None:
    send, outbox, records = shim
    good = _good(data.draw(st.integers(min_value=0, max_value=2)))
    shape = data.draw(st.sampled_from(["list", "one", "raw"]))
    if shape == "list":
        messages = data.draw(st.permutations(good + data.draw(st.lists(_message, max_size=4))))
        raw = json.dumps(messages).encode("utf-8", "surrogatepass")
    elif shape == "one" and good:
        good = good[:1]
        raw = json.dumps(good[0]).encode()
    else:
        good, raw = [], data.draw(_raw(st.lists(_message, max_size=4) | _message))
    body, headers = data.draw(_headers(raw))
    source = data.draw(st.sampled_from(["web", "open-hooks", "nobody"]))  # signed, unsigned, none
    method = data.draw(st.sampled_from(["POST", "PUT", "PATCH"]))
    reply = send(method, f"/webhook/{source}", body, headers)
    answer = _check(reply, records)
    stored = _stored(outbox, good)
    if reply.status_code == 200:  # every good event stored, none of them rejected
        assert stored == {m["messageId"] for m in good}, answer
    else:
        assert stored == set(), answer


@given(data=st.data())
def test_inbound_and_preview(shim: tuple[Send, Any, _Records], data: st.DataObject) -> None:
    send, _, records = shim
    path = data.draw(st.sampled_from(["/inbound/callexa-sync-back", "/inbound/nothing",
                                      "/v1/preview/calixa", "/v1/preview/skalin", "/v1/preview/nowhere"]))
    reply_fields = st.fixed_dictionaries({}, optional={
        "email": _json | st.emails(), "rating": _json | st.integers(-1, 11), "comment": _json,
        "date": _json, "userId": _json, "id": _json})
    raw = data.draw(_raw(reply_fields | _message | st.lists(reply_fields, max_size=3)))
    body, headers = data.draw(_headers(raw))
    _check(send("POST", path, body, headers), records)


@given(limit=st.text(max_size=12) | st.integers().map(str), key=st.sampled_from([WRITE_KEY, "x"]))
def test_recorded(shim: tuple[Send, Any, _Records], limit: str, key: str) -> None:
    send, _, records = shim
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    reply = send("GET", "/v1/recorded?" + httpx.QueryParams({"limit": limit}).__str__(), b"",
                 {"Authorization": auth})
    _check(reply, records)
