"""The HTTP shim's app, called in process through httpx.ASGITransport with its lifespan
running; delivery goes to a real scripted server on 127.0.0.1. (The official client, which
needs a host, and the process-level tests are in test_official_client.py and
test_shim_process.py.)"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import logging
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator, Iterator

import httpx
import pytest

from engine.intake import Intake
from engine.serialization import parse_datetime
from tests.support import skalin
from tests.support.scripted_server import Reply, ScriptedServer
from tests.support.paths import MAPPINGS, ROOT
from tests.support.shim import SECRETS, WRITE_KEY, arrived, in_process, shim_config, until

AUTH = (WRITE_KEY, "")


@pytest.fixture
def destinations() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
async def shim(tmp_path: Path, destinations: ScriptedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(shim_config(tmp_path, destinations.url())) as client:
        yield client


async def metrics_show(shim: httpx.AsyncClient, line: str) -> bool:
    return line in (await shim.get("/metrics")).text


def bodies(server: ScriptedServer, path: str) -> list[Any]:
    return [json.loads(r.body) for r in server.at(path)]


@pytest.mark.anyio
async def test_gzip_bodies(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    body = gzip.compress(json.dumps({"userId": "u1", "event": "Signed Up"}).encode())
    reply = await shim.post("/v1/track", content=body, auth=AUTH,
                       headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert reply.json() == {"success": True}
    await arrived(destinations, "/calixa", 1)


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "body", "headers", "status", "message"), [
    ("/v1/track", b"{not json", {}, 400, "the body is not valid JSON"),
    ("/v1/track", b"[1, 2]", {}, 400, "the body must be a JSON object"),
    ("/v1/batch", b'{"batch": 3}', {}, 400, "a batch body needs a 'batch' array"),
    ("/v1/track", json.dumps({"userId": "u", "event": "e", "properties": {"pad": "x" * 33000}}).encode(), {},
     400, "the body is larger than 32 KB"),
    ("/v1/batch", json.dumps({"batch": [{"type": "track", "userId": "u", "event": "e",
                                         "properties": {"pad": "x" * 20000}}] * 30}).encode(), {},
     400, "the body is larger than 500 KB"),
    ("/v1/batch", gzip.compress(b'{"batch": [' + b" " * 2_000_000 + b"]}"), {"Content-Encoding": "gzip"},
     400, "the body is larger than 500 KB"),
    ("/v1/track", b"not gzip at all", {"Content-Encoding": "gzip"}, 400, "the body is not valid gzip"),
    ("/v1/track", b"{}", {"Content-Encoding": "br"}, 415, "unsupported Content-Encoding: br"),
    ("/v1/track", json.dumps({"userId": "u"}).encode(), {}, 400, "a track event needs 'event'"),
])
@pytest.mark.anyio
async def test_bad_requests_get_a_json_error(shim: httpx.AsyncClient, path: str, body: bytes, headers: dict,
                                       status: int, message: str) -> None:
    reply = await shim.post(path, content=body, auth=AUTH, headers=headers)
    assert reply.status_code == status
    assert reply.json()["success"] is False
    assert reply.json()["message"].startswith(message)


@pytest.mark.anyio
async def test_write_keys(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    event = {"userId": "u1", "event": "Signed Up"}
    assert (await shim.post("/v1/track", json=event, auth=("nope", ""))).status_code == 401
    missing = await shim.post("/v1/track", json=event)
    assert (missing.status_code, missing.json()["message"]) == (
        401, "no write key: send it as Basic auth (the username) or as writeKey")
    in_body = await shim.post("/v1/track", json={**event, "writeKey": WRITE_KEY})
    assert in_body.json() == {"success": True}
    await arrived(destinations, "/calixa", 1)
    assert "writeKey" not in bodies(destinations, "/calixa")[0]  # never passed on


@pytest.mark.anyio
async def test_a_batch_with_one_bad_message_keeps_the_others(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    batch = {"batch": [
        {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}, "messageId": "b1"},
        {"type": "track", "userId": "u1", "messageId": "b2"},  # no event: invalid
        {"type": "track", "userId": "u1", "event": "Account Deleted", "messageId": "b3",
         "properties": {"pad": "x" * 40000}},  # over 32 KB
        {"type": "track", "userId": "u1", "event": "Account Deleted", "messageId": "b4"},
    ]}
    reply = await shim.post("/v1/batch", json=batch, auth=AUTH)
    assert reply.status_code == 200
    assert reply.json() == {"success": True, "rejected": [
        {"index": 1, "message": "a track event needs 'event'"},
        {"index": 2, "message": "the message is larger than 32 KB"}]}
    await arrived(destinations, "/calixa", 2)
    assert sorted(b["messageId"] for b in bodies(destinations, "/calixa")) == ["b1", "b4"]


@pytest.mark.anyio
async def test_batch_context_and_integrations_are_merged(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    batch = {"batch": [{"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "i1",
                        "context": {"ip": "203.0.113.9"}}],
             "context": {"groupId": "acct_9", "ip": "198.51.100.1"},
             "integrations": {"All": False, "Skalin": True}}
    assert (await shim.post("/v1/import", json=batch, auth=AUTH)).json() == {"success": True}
    await arrived(destinations, "/skalin", 1)
    form = dict(httpx.QueryParams(destinations.at("/skalin")[0].body.decode()))
    assert form["customer_id"] == "acct_9" and form["cip"] == "203.0.113.9"
    assert destinations.at("/calixa") == []  # turned off by the batch's integrations


@pytest.mark.anyio
async def test_ids_and_timestamps_are_filled_in(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    event = {"userId": "u1", "event": "Signed Up", "originalTimestamp": "2024-01-01T00:00:00Z",
             "sentAt": "2024-01-01T00:00:10Z"}
    await shim.post("/v1/track", json=event, auth=AUTH)
    await shim.post("/v1/track", json=event, auth=AUTH)  # a client's retry: same message
    await arrived(destinations, "/calixa", 1)
    (sent,) = bodies(destinations, "/calixa")
    assert sent["messageId"].startswith("engine-")
    received = sent["receivedAt"]
    # timestamp = receivedAt - (sentAt - originalTimestamp): ten seconds before receipt.
    assert (parse_datetime(received) - parse_datetime(sent["timestamp"])).total_seconds() == pytest.approx(10, abs=0.002)


@pytest.mark.anyio
async def test_webhook_intake_verifies_signatures(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    events = [{"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "w1"},
              {"type": "track", "userId": "u2", "event": "Signed Up", "messageId": "w2"}]
    raw = json.dumps(events).encode()
    good = hmac.new(b"hook-secret-123", raw, hashlib.sha1).hexdigest()
    assert (await shim.post("/webhook/web", content=raw)).status_code == 401
    assert (await shim.post("/webhook/web", content=raw, headers={"X-Signature": "0" * 40})).status_code == 401
    reply = await shim.post("/webhook/web", content=raw, headers={"X-Signature": good})
    assert reply.json() == {"success": True}
    single = {"type": "identify", "userId": "u3", "messageId": "w3"}
    assert (await shim.post("/webhook/open-hooks", json=single)).json() == {"success": True}
    assert (await shim.post("/webhook/nobody", json=single)).status_code == 404
    await arrived(destinations, "/calixa", 3)


@pytest.mark.anyio
async def test_inbound_callexa_sync_back(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    reply = {"id": "r1", "userId": "cus_1", "email": "jane@example.com", "rating": 9,
             "comment": "Great", "date": "2024-03-01T17:45:12Z"}
    assert (await shim.post("/inbound/callexa-sync-back", json=reply)).json() == {
        "success": True, "results": [{"index": 0, "stored": "identify"}]}
    bad = await shim.post("/inbound/callexa-sync-back", json={**reply, "rating": 11})
    assert (bad.status_code, bad.json()["message"]) == (400, "NPS rating must be an integer from 0 to 10, got 11")
    assert (await shim.post("/inbound/nothing", json=reply)).status_code == 404
    await arrived(destinations, "/v1/identify", 1)
    received = destinations.at("/v1/identify")[0]
    assert received.headers["Authorization"] == "Basic " + base64.b64encode(b"sync-write-key-123:").decode()
    sent = json.loads(received.body)
    assert sent["traits"] == {"email": "jane@example.com", "NPS_rating": 9, "NPS_comment": "Great",
                              "NPS_date": "2024-03-01T17:45:12.000Z"}


@pytest.mark.anyio
async def test_preview_redacts_secrets(shim: httpx.AsyncClient) -> None:
    reply = await shim.post("/v1/preview/calixa", auth=AUTH,
                       json={"type": "identify", "userId": "u1", "traits": {"note": "calixa-key-123"}})
    (outcome,) = reply.json()["outcomes"]
    assert outcome["request"]["headers"]["Authorization"] == "[redacted]"
    assert outcome["request"]["json"]["traits"] == {"note": "[redacted]"}
    assert (await shim.post("/v1/preview/nowhere", auth=AUTH, json={})).status_code == 404


@pytest.mark.anyio
async def test_health_and_metrics(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    await shim.post("/v1/track", json={"userId": "u1", "event": "Signed Up"}, auth=AUTH)
    await shim.post("/v1/page", json={"userId": "u1", "name": "Home"}, auth=AUTH)
    await shim.post("/v1/track", json={"userId": "u1"}, auth=AUTH)
    await arrived(destinations, "/calixa", 1)
    await until(lambda: len(skalin.hits(destinations)) == 2)  # in one bulk request, or two
    await until(lambda: metrics_show(shim, 'engine_requests_delivered_total{destination="skalin"} 2'))
    health = (await shim.get("/health")).json()
    assert health["status"] == "ok" and health["delivering"] is True
    text = (await shim.get("/metrics")).text
    for line in ['engine_events_received_total{source="web"} 3',
                 'engine_events_rejected_total{source="web"} 1',
                 'engine_requests_mapped_total{destination="calixa"} 1',
                 'engine_events_skipped_total{destination="calixa",reason="not_accepted"} 1',
                 'engine_requests_delivered_total{destination="calixa"} 1',
                 'engine_outbox_jobs{status="delivered"} 3',
                 'engine_delivery_latency_seconds_count{destination="calixa"} 1']:
        assert line in text, line
    assert "# TYPE engine_delivery_latency_seconds histogram" in text
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.anyio
async def test_retries_and_dead_letters_through_the_shim(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    destinations.script("/calixa", Reply(503), Reply(200))
    destinations.script("/skalin", Reply(400, body=b"bad"))
    await shim.post("/v1/track", json={"userId": "u1", "event": "Signed Up"}, auth=AUTH)
    await until(lambda: metrics_show(shim, 'engine_requests_dead_lettered_total{destination="skalin"} 1'))
    await until(lambda: metrics_show(shim, 'engine_requests_delivered_total{destination="calixa"} 1'))
    assert 'engine_requests_retried_total{destination="calixa"} 1' in (await shim.get("/metrics")).text


@pytest.mark.anyio
async def test_no_secret_reaches_the_outbox_or_the_logs(tmp_path: Path, destinations: ScriptedServer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    destinations.script("/calixa", Reply(400, body=b'{"message": "bad key calixa-key-123"}'))
    async with in_process(shim_config(tmp_path, destinations.url())) as shim:
        reply = await shim.post("/v1/identify", auth=AUTH,
                                json={"userId": "u1", "traits": {"email": "a@example.com"}})
        assert reply.json() == {"success": True}
        await arrived(destinations, "/calixa", 1)
        await arrived(destinations, "/skalin", 1)
        await until(lambda: metrics_show(shim, 'dead_lettered_total{destination="calixa"} 1'))
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.sqlite3*"))
    logged = caplog.text
    for secret in SECRETS:
        assert secret.encode() not in stored, secret
        assert base64.b64encode(f"{secret}:".encode()) not in stored, secret
        assert secret not in logged, secret


@pytest.mark.anyio
async def test_unknown_endpoints_are_404(shim: httpx.AsyncClient) -> None:
    for path in ("/v1/click", "/v2/track", "/"):
        reply = await shim.post(path, json={}, auth=AUTH)
        assert reply.status_code == 404 and reply.json()["code"] == "not_found", path
    assert (await shim.get("/v1/track")).status_code == 405


@pytest.mark.anyio
async def test_more_bad_inputs(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    sign = lambda raw: hmac.new(b"hook-secret-123", raw, hashlib.sha1).hexdigest()  # noqa: E731
    broken = b"{nope"
    reply = await shim.post("/webhook/web", content=broken, headers={"X-Signature": sign(broken)})
    assert (reply.status_code, reply.json()["message"][:26]) == (400, "the body is not valid JSON")
    reply = await shim.post("/inbound/callexa-sync-back", content=b"[1,")
    assert reply.status_code == 400
    mixed = [{"id": "a", "email": "a@example.com", "rating": 5, "date": "2024-03-01T00:00:00Z"},
             {"id": "b", "email": "b@example.com", "rating": "five", "date": "2024-03-01T00:00:00Z"},
             {"id": "c", "rating": 5, "date": "2024-03-01T00:00:00Z"}]
    assert (await shim.post("/inbound/callexa-sync-back", json=mixed)).json() == {"success": True, "results": [
        {"index": 0, "stored": "identify"},
        {"index": 1, "error": 'NPS rating must be an integer from 0 to 10, got "five"'},
        {"index": 2, "error": "the reply names no customer: it has neither email nor userId"}]}
    reply = await shim.post("/v1/preview/calixa", auth=AUTH, json=[1, 2])
    assert (reply.status_code, reply.json()["message"]) == (400, "the body must be one message, a JSON object")
    reply = await shim.post("/v1/batch", auth=AUTH, json={"batch": [{"type": "track"}, 7]})
    assert reply.status_code == 400 and reply.json()["rejected"] == [
        {"index": 0, "message": "a track event needs a userId or an anonymousId"},
        {"index": 1, "message": "a message must be a JSON object"}]
    reply = await shim.post("/v1/track", headers={"Authorization": "Basic ???"},
                       json={"userId": "u", "event": "e"})
    assert (reply.status_code, reply.json()["message"]) == (401, "the Authorization header is not valid Basic auth")
    await arrived(destinations, "/v1/identify", 1)


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "limit"), [("/webhook/open-hooks", 128000), ("/inbound/callexa-sync-back", 500)])
@pytest.mark.anyio
async def test_webhook_and_inbound_bodies_are_bounded(shim: httpx.AsyncClient, path: str, limit: int) -> None:
    reply = await shim.post(path, content=b"[" + b" " * (limit * 1024 + 10) + b"]")
    assert (reply.status_code, reply.json()["message"]) == (400, f"the body is larger than {limit} KB")


@pytest.mark.anyio
async def test_actions_webhooks_put_patch_and_first_event_signatures(shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    events = [{"type": "track", "userId": f"u{i}", "event": "Signed Up", "messageId": f"a{i}"} for i in range(3)]
    first = json.dumps(events[0], separators=(",", ":")).encode()
    raw = b"[" + first + b"," + b",".join(json.dumps(e, separators=(",", ":")).encode() for e in events[1:]) + b"]"
    signature = hmac.new(b"hook-secret-123", first, hashlib.sha1).hexdigest()
    for method in ("PUT", "PATCH"):
        reply = await shim.request(method, "/webhook/web", content=raw, headers={"X-Signature": signature})
        assert reply.json() == {"success": True}, method
    forged = raw.replace(b"u1", b"uX")  # later events are not signed, the first one is
    assert (await shim.post("/webhook/web", content=forged.replace(b"u0", b"uY"),
                      headers={"X-Signature": signature})).status_code == 401
    await arrived(destinations, "/calixa", 3)  # the PATCH repeated the PUT: deduplicated


@pytest.mark.anyio
async def test_every_error_is_json_the_unexpected_ones_too(shim: httpx.AsyncClient,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom: internal detail")

    monkeypatch.setattr(Intake, "accept_many", broken)
    reply = await shim.post("/v1/track", json={"userId": "u1", "event": "Signed Up"}, auth=AUTH)
    assert reply.status_code == 500
    assert reply.json() == {"success": False, "code": "internal_error",
                            "message": "internal error; the request was not accepted"}
    assert "boom" not in reply.text
    wrong_method = await shim.delete("/v1/track")
    assert (wrong_method.status_code, wrong_method.json()) == (405, {
        "success": False, "code": "method_not_allowed", "message": "DELETE is not allowed on /v1/track"})


@pytest.mark.anyio
async def test_a_message_whose_content_holds_the_write_key_is_accepted(shim: httpx.AsyncClient,
                                                                       destinations: ScriptedServer) -> None:
    # analytics.js sends the page's URL, which can carry the write key in its query string.
    page = {"userId": "u1", "name": "Home", "messageId": "p1",
            "context": {"page": {"url": f"https://app.example.com/?writeKey={WRITE_KEY}"}}}
    reply = await shim.post("/v1/page", json=page, auth=AUTH)
    assert (reply.status_code, reply.json()) == (200, {"success": True})
    await until(lambda: len(skalin.hits(destinations)) == 1)
    assert skalin.hits(destinations)[0]["url"].endswith(f"?writeKey={WRITE_KEY}")


@pytest.mark.anyio
async def test_context_ip_is_the_clients_address_when_the_message_has_none(
        shim: httpx.AsyncClient, destinations: ScriptedServer) -> None:
    await shim.post("/v1/track", auth=AUTH, json={"userId": "u1", "event": "Signed Up", "messageId": "a"},
                    headers={"X-Forwarded-For": "6.6.6.6"})  # from no trusted proxy: ignored
    await shim.post("/v1/track", auth=AUTH, json={"userId": "u2", "event": "Signed Up", "messageId": "b",
                                                  "context": {"ip": "198.51.100.1"}})
    received = {b["messageId"]: b["context"].get("ip") for b in
                [json.loads(r.body) for r in await arrived(destinations, "/calixa", 2)]}
    assert received == {"a": "127.0.0.1", "b": "198.51.100.1"}  # ASGITransport's client address


@pytest.mark.anyio
async def test_browsers_get_cors_and_analytics_js_short_paths(shim: httpx.AsyncClient,
                                                              destinations: ScriptedServer) -> None:
    origin = {"Origin": "https://shop.example.com"}
    preflight = await shim.options("/v1/t", headers={
        **origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-retry-count"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "x-retry-count" in preflight.headers["access-control-allow-headers"].lower()
    # analytics.js sends text/plain with the write key inside, to the short paths.
    body = json.dumps({"userId": "u1", "event": "Signed Up", "messageId": "t1", "writeKey": WRITE_KEY})
    reply = await shim.post("/v1/t", content=body, headers={**origin, "Content-Type": "text/plain"})
    assert (reply.status_code, reply.json()) == (200, {"success": True})
    assert reply.headers["access-control-allow-origin"] == "*"
    batch = {"batch": [{"type": "identify", "userId": "u2", "messageId": "i2"}], "writeKey": WRITE_KEY}
    assert (await shim.post("/v1/b", json=batch, headers=origin)).json() == {"success": True}
    assert sorted(b["messageId"] for b in
                  [json.loads(r.body) for r in await arrived(destinations, "/calixa", 2)]) == ["i2", "t1"]


@pytest.mark.anyio
async def test_cors_origins_are_configurable(tmp_path: Path, destinations: ScriptedServer) -> None:
    config = shim_config(tmp_path, destinations.url(),
                         extra="cors: {allow_origins: [\"https://shop.example.com\"]}\n")
    async with in_process(config) as shim:
        allowed = await shim.options("/v1/t", headers={
            "Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"})
        other = await shim.options("/v1/t", headers={
            "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


@pytest.mark.anyio
async def test_cors_is_for_the_tracking_api_alone(shim: httpx.AsyncClient) -> None:
    origin = {"Origin": "https://evil.example"}
    for path in ("/metrics", "/health", "/openapi.json"):
        assert "access-control-allow-origin" not in (await shim.get(path, headers=origin)).headers
    preflight = await shim.options("/v1/recorded", headers={
        **origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert "access-control-allow-origin" not in preflight.headers
    recorded = await shim.get("/v1/recorded", auth=AUTH, headers=origin)
    assert "access-control-allow-origin" not in recorded.headers


@pytest.mark.anyio
async def test_x_forwarded_for_lines_are_read_together_from_a_trusted_proxy(
        tmp_path: Path, destinations: ScriptedServer) -> None:
    config = shim_config(tmp_path, destinations.url(), extra="trusted_proxies: [127.0.0.1]\n")
    async with in_process(config) as shim:  # ASGITransport connects from 127.0.0.1
        # The client sent its own line; the proxy appended the address it saw.
        headers = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7")]
        await shim.post("/v1/track", auth=AUTH, headers=headers,
                        json={"userId": "u1", "event": "Signed Up", "messageId": "x1"})
        (received,) = await arrived(destinations, "/calixa", 1)
    assert json.loads(received.body)["context"]["ip"] == "203.0.113.7"


@pytest.mark.anyio
async def test_ready_says_503_and_why_when_the_store_or_its_disk_fails(
        shim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ((await shim.get("/ready")).status_code, (await shim.get("/ready")).json()) == (200, {"ready": True})
    outbox = shim._transport.app.state.shim.outbox  # type: ignore[attr-defined]

    def unavailable() -> None:
        raise OSError("database is locked")

    monkeypatch.setattr(outbox, "ping", unavailable)
    monkeypatch.setattr("engine.http.app.shutil.disk_usage", lambda path: SimpleNamespace(free=10**6))
    reply = await shim.get("/ready")
    assert reply.status_code == 503
    assert reply.json() == {"ready": False, "problems": [
        "store unavailable: OSError: database is locked", "disk full: 0 MB free under the store"]}
    assert (await shim.get("/health")).status_code == 200  # alive all the same


@pytest.mark.anyio
async def test_recorded_shows_deliver_after_once_and_inbound_requests(tmp_path: Path) -> None:
    config = tmp_path / "dry.yaml"
    config.write_text(f"""\
mappings: {MAPPINGS}
store: {tmp_path / 'outbox.sqlite3'}
dry_run: true
sources:
  - name: web
    write_key: {WRITE_KEY}
    destinations:
      callexa: {{api_key: callexa-key-123, endpoint: "https://callexa.example/in",
                 min_delay_days: 3, max_delay_days: 14}}
inbound:
  callexa-sync-back:  # sends back into `web`: its requests are web's to see
    settings: {{write_key: {WRITE_KEY}, endpoint: "https://api.example/v1/identify"}}
""")
    created = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with in_process(config) as shim:
        await shim.post("/v1/identify", auth=AUTH, json={
            "userId": "u1", "messageId": "s1", "traits": {"email": "a@example.com", "createdAt": created}})
        await shim.post("/inbound/callexa-sync-back", json={
            "email": "a@example.com", "rating": 9, "date": "2024-03-01T17:45:12Z"})
        shown = (await shim.get("/v1/recorded", auth=AUTH)).json()["recorded"]
    by_destination = {r["destination"]: r for r in shown}
    survey = by_destination["callexa"]["request"]
    assert survey["once"] == {"key": "callexa:a@example.com", "window_seconds": 26 * 7 * 86400}
    expected = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ") + timedelta(days=3)
    assert survey["deliver_after"] == expected.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert by_destination["callexa-sync-back"]["source"] == "callexa-sync-back"
    lines = subprocess.run([sys.executable, "-m", "engine", "recorded", "--config", str(config)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60).stdout.splitlines()
    assert {json.loads(line)["destination"] for line in lines} == {"callexa", "callexa-sync-back"}
    assert any("deliver_after" in json.loads(line)["request"] for line in lines)


@pytest.mark.anyio
async def test_hostile_messages_are_rejected_alone_never_a_500(shim: httpx.AsyncClient,
                                                               destinations: ScriptedServer) -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(300):  # orjson reads it, but cannot write it back: it must not get that far
        inner["a"] = {}
        inner = inner["a"]
    batch = {"batch": [
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "ok1"},
        {"type": "track", "userId": "u2", "event": "Signed Up", "messageId": "deep", "properties": deep},
        {"type": "track", "userId": "u3", "event": "Signed Up", "messageId": "t1",
         "originalTimestamp": 1e20, "sentAt": -1e15},  # out of any datetime's range
        {"type": "track", "userId": "u4", "event": "Signed Up", "messageId": "t2",
         "originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"},
        {"type": "track", "userId": "u5", "event": "Signed Up", "messageId": "ok2"},
    ]}
    reply = await shim.post("/v1/batch", json=batch, auth=AUTH)
    assert (reply.status_code, reply.json()) == (200, {"success": True, "rejected": [
        {"index": 1, "message": "the message is nested more than 64 levels deep"}]})
    received = await arrived(destinations, "/calixa", 4)
    assert sorted(json.loads(r.body)["messageId"] for r in received) == ["ok1", "ok2", "t1", "t2"]
    preview = await shim.post("/v1/preview/calixa", json={"type": "track", "userId": "u", "event": "e",
                                                          "properties": deep}, auth=AUTH)
    assert (preview.status_code, preview.json()["code"]) == (400, "invalid_request")
