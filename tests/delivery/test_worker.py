"""Delivery end to end, against a real HTTP server on 127.0.0.1 scripted to fail; each
test runs on each outbox backend (the `store` fixture)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from engine.config import load_config
from engine.delivery import Outbox

from tests.support.delivery import (accept, drain, identify, open_outbox, setup, stored_content,
                                    write_config)
from tests.support.scripted_server import Reply, ScriptedServer


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def statuses(outbox: Outbox) -> dict[str, int]:
    return outbox.counts()


def test_503_several_times_then_200(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store)
    server.script("/calixa", Reply(503), Reply(503), Reply(503), Reply(200))
    accept(config, outbox, identify(1))
    deliverer = drain(config, outbox)
    assert len(server.at("/calixa")) == 4
    assert statuses(outbox)["delivered"] == 1
    assert deliverer.metrics.value("requests_retried_total", destination="calixa") == 3
    assert deliverer.metrics.value("requests_delivered_total", destination="calixa") == 1


def test_429_honours_retry_after(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store)
    server.script("/calixa", Reply(429, headers={"Retry-After": "1"}), Reply(200))
    accept(config, outbox, identify(1))
    drain(config, outbox)
    first, second = server.at("/calixa")
    assert second.at - first.at >= 0.95  # the backoff alone would be 0.05 s at most
    assert statuses(outbox) == {"delivered": 1}


@pytest.mark.parametrize(("status", "error"), [(400, "HTTP 400"), (501, "HTTP 501 (call type not supported)")])
def test_4xx_and_501_are_dead_letters_at_once(store: str, tmp_path: Path, server: ScriptedServer,
                                              status: int, error: str) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store)
    server.script("/calixa", Reply(status, body=b'{"message": "nope"}'))
    accept(config, outbox, identify(1))
    drain(config, outbox)
    assert len(server.at("/calixa")) == 1
    (dead,) = outbox.rows("dead")
    assert (dead["last_status"], dead["last_error"], dead["last_body"]) == (status, error, '{"message": "nope"}')
    assert dead["request"]["body"]["userId"] == "u1"


def test_a_response_slower_than_the_timeout_is_retried(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store)
    server.script("/calixa", Reply(200, delay=1.5), Reply(200))
    accept(config, outbox, identify(1))
    drain(config, outbox)
    assert len(server.at("/calixa")) == 2
    assert statuses(outbox) == {"delivered": 1}


def test_connection_refused_is_retried_then_dead_lettered(store: str, tmp_path: Path) -> None:
    with ScriptedServer() as gone:
        url = gone.url()
    config, outbox = setup(tmp_path, url, store=store)  # nothing listens there any more
    accept(config, outbox, identify(1))
    drain(config, outbox)
    (dead,) = outbox.rows("dead")
    assert dead["attempts"] == 5
    assert dead["last_error"].startswith("gave up after 5 attempts over ")
    assert "connection error" in dead["last_error"]


def test_max_age_ends_retrying(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store, delivery={"max_attempts": 1000, "max_age": 0.3})
    server.script("/calixa", Reply(503))
    accept(config, outbox, identify(1))
    drain(config, outbox)
    (dead,) = outbox.rows("dead")
    assert dead["last_error"].startswith("gave up after") and dead["last_status"] == 503
    assert 2 <= dead["attempts"] < 1000


def test_auth_is_applied_at_send_time_and_never_stored(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store)
    accept(config, outbox, identify(1))
    # The key is rotated before delivery: pending work uses the new one.
    rotated = load_config(write_config(tmp_path, server.url(), key="calixa-key-two", store=store))
    drain(rotated, outbox)
    (received,) = server.at("/calixa")
    assert received.headers["Authorization"] == "Basic " + base64.b64encode(b"calixa-key-two:").decode()
    outbox.close()
    stored = stored_content(config.store)
    for secret in (b"calixa-key-one", b"calixa-key-two", base64.b64encode(b"calixa-key-one:")):
        assert secret not in stored


def test_duplicates_are_suppressed_for_24_hours(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, _ = setup(tmp_path, server.url(), store=store)
    clock = [1_700_000_000.0]
    outbox = open_outbox(config.store, clock=lambda: clock[0])
    source = config.source("web")
    from engine.intake import Intake
    intake = Intake(config, outbox)
    assert intake.accept(source, [identify(1)])[1].stored == 1
    assert intake.accept(source, [identify(1)])[1].duplicates == 1
    clock[0] += 23.9 * 3600
    assert intake.accept(source, [identify(1)])[1].duplicates == 1
    clock[0] += 0.2 * 3600
    assert intake.accept(source, [identify(1)])[1].stored == 1


def test_deferred_requests_wait_across_restarts(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, _ = setup(tmp_path, server.url(), store=store, only=("callexa",))
    clock = [1_700_000_000.0]
    outbox = open_outbox(config.store, clock=lambda: clock[0])
    source = config.source("web")
    from engine.intake import Intake
    settings = dict(source.destinations["callexa"], min_delay_days=3, max_delay_days=14)
    source.destinations["callexa"] = settings  # type: ignore[index]
    event = identify(7, createdAt="2023-11-14T22:13:20Z")  # the clock's own time
    Intake(config, outbox).accept(source, [event], now="2023-11-14T22:13:20Z")
    drain(config, outbox)
    assert server.at("/callexa") == []
    outbox.close()
    clock[0] += 3 * 86400 + 1
    reopened = open_outbox(config.store, clock=lambda: clock[0])  # a restart
    drain(config, reopened)
    assert len(server.at("/callexa")) == 1


def test_once_per_key_window(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, _ = setup(tmp_path, server.url(), store=store, only=("callexa",))
    clock = [1_700_000_000.0]
    outbox = open_outbox(config.store, clock=lambda: clock[0])
    # Two identifies of one customer (different messages): one survey in 26 weeks.
    accept(config, outbox, identify(1), {**identify(2), "traits": {"email": "USER1@example.com"}})
    drain(config, outbox)
    assert len(server.at("/callexa")) == 1
    assert outbox.counts().get("suppressed") == 1
    clock[0] += 26 * 7 * 86400 + 1
    accept(config, outbox, {**identify(3), "traits": {"email": "user1@example.com"}})
    drain(config, outbox)
    assert len(server.at("/callexa")) == 2


def test_once_key_is_freed_when_its_send_fails_for_good(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store, only=("callexa",))
    server.script("/callexa", Reply(400), Reply(200))
    accept(config, outbox, identify(1))
    drain(config, outbox)
    accept(config, outbox, identify(2) | {"traits": {"email": "user1@example.com"}})
    drain(config, outbox)
    assert [r.path for r in server.at("/callexa")] == ["/callexa", "/callexa"]
    assert len(outbox.rows("delivered")) >= 1


def test_form_requests_arrive_form_encoded(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store, only=("skalin",))
    accept(config, outbox, {"type": "track", "event": "myFeature", "userId": "u1", "messageId": "t1"})
    drain(config, outbox)
    (received,) = server.at("/skalin")
    assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert b"action=ev" in received.body and b"client_id=c1" in received.body


def test_dead_letter_bodies_are_redacted(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store)
    server.script("/calixa", Reply(400, body=b'{"message": "bad key calixa-key-one"}'))
    accept(config, outbox, identify(1))
    drain(config, outbox)
    (dead,) = outbox.rows("dead")
    assert dead["last_body"] == '{"message": "bad key [redacted]"}'


def test_a_destination_that_echoes_the_request_leaves_no_encoded_secret(
        tmp_path: Path, server: ScriptedServer, caplog: pytest.LogCaptureFixture) -> None:
    secret = "p@ss/w+rd &more"
    config, outbox = setup(tmp_path, server.url(), key=json.dumps(secret))
    server.script("/calixa", Reply(400, echo=True))
    accept(config, outbox, identify(1))
    drain(config, outbox)
    (received,) = server.at("/calixa")
    basic = received.headers["Authorization"].split()[1]
    assert base64.b64decode(basic) == f"{secret}:".encode()
    (dead,) = outbox.rows("dead")
    echoed = json.loads(dead["last_body"])
    assert echoed["headers"]["Authorization"].startswith("Basic [redacted]")
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.sqlite3*"))
    for form in (secret, basic[:-2], base64.b64encode(secret.encode()).decode()[:-4]):
        assert form not in dead["last_body"] and form.encode() not in stored, form
        assert form not in caplog.text, form


def test_a_secret_across_the_stored_bodys_cut_is_redacted_before_the_cut(
        tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url())
    server.script("/calixa", Reply(400, body=b"x" * 4090 + b"calixa-key-one" + b"y" * 100))
    accept(config, outbox, identify(1))
    drain(config, outbox)
    (dead,) = outbox.rows("dead")
    assert dead["last_body"] == "x" * 4090 + "[redac"  # 4,096 characters kept


def test_json_bodies_are_the_mapped_message(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), store=store)
    accept(config, outbox, identify(1))
    drain(config, outbox)
    (received,) = server.at("/calixa")
    assert json.loads(received.body)["traits"] == {"email": "user1@example.com"}
    assert received.headers["User-Agent"] == "Segment.io/1.0"


def test_a_job_whose_rule_was_removed_is_a_clear_dead_letter(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    import dataclasses

    config, outbox = setup(tmp_path, server.url(), store=store)
    accept(config, outbox, identify(1))
    calixa = config.destinations["calixa"]
    config.destinations["calixa"] = dataclasses.replace(
        calixa, rules=tuple(r for r in calixa.rules if r.name != "identify"))
    drain(config, outbox)
    assert server.at("/calixa") == []
    (dead,) = outbox.rows("dead")
    assert dead["last_error"] == "rule 'identify' is no longer in calixa's mapping"


def test_a_request_in_flight_is_not_sent_again_when_its_lease_runs_out(store: str, tmp_path: Path,
                                                                       server: ScriptedServer) -> None:
    import asyncio
    import threading

    from engine.delivery.worker import Deliverer

    config, _ = setup(tmp_path, server.url(), store=store, delivery={"timeout": 5}, only=("calixa", "skalin"))
    clock = [1_700_000_000.0]
    outbox = open_outbox(config.store, clock=lambda: clock[0])
    server.script("/calixa", Reply(200, delay=1.0))
    # Skalin's answer comes while Calixa's is still awaited: the loop leases again then.
    server.script("/skalin", Reply(200, delay=0.3))
    accept(config, outbox, identify(1))

    def expire_the_lease_while_in_flight() -> None:
        server.wait_for("/calixa", 1)
        clock[0] += 3600  # the lease (timeout + 30 s) is long over; the send is not

    watcher = threading.Thread(target=expire_the_lease_while_in_flight)
    watcher.start()
    asyncio.run(Deliverer(config, outbox).drain(max_seconds=30))
    watcher.join()
    assert len(server.at("/calixa")) == 1
    assert outbox.counts() == {"delivered": 2}


def test_jobs_of_a_destination_gone_from_the_mappings_are_dead_letters_soon(
        store: str, tmp_path: Path, server: ScriptedServer) -> None:
    from engine.delivery.outbox import NewJob

    config, outbox = setup(tmp_path, server.url(), store=store)
    outbox.enqueue("web", [NewJob("gone", "r", f"g{n}", b'{"method":"POST","url":"http://x",'
                                  b'"headers":{},"encoding":"json","body":{}}') for n in range(40)])
    drain(config, outbox)
    dead = outbox.rows("dead", limit=100)
    assert len(dead) == 40 and outbox.counts() == {"dead": 40}
    assert dead[0]["last_error"] == "destination 'gone' is no longer in the mappings"


def test_a_request_that_cannot_be_sent_is_a_dead_letter_not_a_loop(store: str, tmp_path: Path,
                                                                   server: ScriptedServer) -> None:
    from engine.delivery.outbox import NewJob

    config, outbox = setup(tmp_path, server.url(), store=store)
    # A header value with a line break (say, rendered from event data): aiohttp refuses it.
    request = json.dumps({"method": "POST", "url": server.url("/calixa"), "encoding": "json",
                          "headers": {"X-Id": "a\r\nX-Evil: 1"}, "body": {}}).encode()
    outbox.enqueue("web", [NewJob("calixa", "identify", "h1", request)])
    drain(config, outbox)
    (dead,) = outbox.rows("dead")
    assert dead["last_error"].startswith("cannot send this request: ")
    assert server.at("/calixa") == []


def test_inbound_jobs_stored_by_an_older_version_are_still_delivered(store: str, tmp_path: Path,
                                                                    server: ScriptedServer) -> None:
    from engine.delivery.outbox import NewJob

    config, outbox = setup(tmp_path, server.url(), store=store, extra=(
        "inbound:\n  callexa-sync-back:\n"
        f"    settings: {{write_key: sync-key-1, endpoint: \"{server.url('/v1/identify')}\"}}\n"))
    request = json.dumps({"method": "POST", "url": server.url("/v1/identify"), "encoding": "json",
                          "headers": {}, "body": {"type": "identify"}}).encode()
    outbox.enqueue("inbound", [NewJob("callexa-sync-back", "identify", "old1", request)])
    drain(config, outbox)
    (received,) = server.at("/v1/identify")
    assert received.headers["Authorization"] == "Basic " + base64.b64encode(b"sync-key-1:").decode()
