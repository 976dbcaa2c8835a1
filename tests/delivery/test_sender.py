"""The sender's decisions, against a real scripted HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime, timezone
from typing import Iterator

import pytest

from engine.config import DeliveryConfig
from engine.delivery.outbox import Job
from engine.delivery.sender import Attempt, backoff, client_session, retry_after_seconds, send
from tests.support.scripted_server import Reply, ScriptedServer


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def job(server: ScriptedServer, path: str, **changes: object) -> Job:
    base = Job(1, "web", "calixa", "identify", "m1", "POST", server.url(path),
               {"Content-Type": "application/json"}, "json", {"type": "identify"}, 0, 0.0, 0.0,
               None, None)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def attempt(target: Job, timeout: float = 2.0) -> Attempt:
    async def go() -> Attempt:
        async with client_session(4, 0) as session:
            return await send(session, target, {"Authorization": "Basic xyz"}, timeout)
    return asyncio.run(go())


@pytest.mark.parametrize(("status", "delivered", "retryable"), [
    (200, True, False), (202, True, False), (204, True, False),
    (400, False, False), (401, False, False), (403, False, False), (404, False, False),
    (408, False, True), (410, False, False), (429, False, True),
    (500, False, True), (501, False, False), (502, False, True), (503, False, True), (504, False, True),
    (301, False, False),
])
def test_classification(server: ScriptedServer, status: int, delivered: bool, retryable: bool) -> None:
    path = f"/status/{status}"
    server.script(path, Reply(status, body=b"" if status == 204 else b"body",
                              headers={"Location": "/elsewhere"} if status == 301 else {}))
    result = attempt(job(server, path))
    assert (result.delivered, result.retryable, result.status) == (delivered, retryable, status)
    if not delivered:
        assert result.body == "body"


def test_request_carries_auth_and_body_and_no_headers_of_the_clients_own(server: ScriptedServer) -> None:
    attempt(job(server, "/auth"))
    (received,) = server.at("/auth")
    assert received.method == "POST" and received.body == b'{"type":"identify"}'
    assert received.headers["Authorization"] == "Basic xyz"
    assert received.headers["Content-Type"] == "application/json"
    assert {k.lower() for k in received.headers} <= {"host", "content-length", "content-type", "authorization"}


def test_form_bodies_are_url_encoded(server: ScriptedServer) -> None:
    attempt(job(server, "/form", headers={}, encoding="form", body={"a": "1", "event": '{"x":1}'}))
    (received,) = server.at("/form")
    assert received.body == b"a=1&event=%7B%22x%22%3A1%7D"
    assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_a_slow_answer_is_a_retryable_timeout_over_the_whole_exchange(server: ScriptedServer) -> None:
    server.script("/slow", Reply(200, delay=1.0))
    result = attempt(job(server, "/slow"), timeout=0.3)
    assert (result.delivered, result.retryable, result.error) == (False, True, "timeout after 0.3s")


def test_a_refused_connection_is_retryable() -> None:
    with ScriptedServer() as gone:
        url = gone.url("/gone")
    result = attempt(Job(1, "web", "calixa", "identify", None, "POST", url, {}, "json", {}, 0, 0.0, 0.0,
                         None, None))
    assert result.retryable and result.error.startswith("connection error: ")


def test_a_url_that_is_not_http_is_not_retried(server: ScriptedServer) -> None:
    result = attempt(job(server, "/x", url="ftp://example.com/in"))
    assert (result.retryable, result.error[:8]) == (False, "bad url:")


def test_large_answers_are_read_only_up_to_a_bound(server: ScriptedServer) -> None:
    server.script("/huge", Reply(400, body=b"x" * 5_000_000))
    result = attempt(job(server, "/huge"))
    assert result.status == 400 and result.body is not None and len(result.body) == 65536  # read up to 64 KB; a dead letter keeps 4 KB of it


def test_retry_after_is_read(server: ScriptedServer) -> None:
    server.script("/busy", Reply(429, headers={"Retry-After": "7"}))
    assert attempt(job(server, "/busy")).retry_after == 7.0


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), ("0", 0.0), ("-5", 0.0), (None, None), ("soon", None),
    ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
])
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
    assert retry_after_seconds(value, now) == expected


def test_backoff_grows_is_capped_and_jittered() -> None:
    config = DeliveryConfig(backoff_initial=1, backoff_max=60)
    rng = random.Random(1)
    for attempt_number, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (30, 60)]:
        delays = [backoff(attempt_number, config, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered
    assert backoff(1, config, retry_after=90, rng=rng) == 90  # never less than Retry-After
