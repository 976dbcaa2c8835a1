"""The sender's decisions, with httpx.MockTransport (no network)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime, timezone

import httpx
import pytest

from engine.config import DeliveryConfig
from engine.delivery.sender import backoff, retry_after_seconds, send
from engine.delivery.outbox import Job

JOB = Job(1, "web", "calixa", "identify", "m1", "POST", "https://partner.example/in",
          {"Content-Type": "application/json"}, "json", {"type": "identify"}, 0, 0.0, 0.0, None, None)


def attempt(handler, job: Job = JOB, timeout: float = 1.0):
    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await send(client, job, {"Authorization": "Basic xyz"}, timeout)
    return asyncio.run(go())


@pytest.mark.parametrize(("status", "delivered", "retryable"), [
    (200, True, False), (202, True, False), (204, True, False),
    (400, False, False), (401, False, False), (403, False, False), (404, False, False),
    (408, False, True), (410, False, False), (429, False, True),
    (500, False, True), (501, False, False), (502, False, True), (503, False, True), (504, False, True),
    (301, False, False),
])
def test_classification(status: int, delivered: bool, retryable: bool) -> None:
    result = attempt(lambda request: httpx.Response(status, text="body"))
    assert (result.delivered, result.retryable, result.status) == (delivered, retryable, status)
    if not delivered:
        assert result.body == "body"


def test_request_carries_auth_and_body() -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(headers=dict(request.headers), body=request.content, method=request.method)
        return httpx.Response(200)
    attempt(handler)
    assert seen["method"] == "POST"
    assert seen["headers"]["authorization"] == "Basic xyz"
    assert seen["body"] == b'{"type":"identify"}'


def test_form_bodies_are_url_encoded() -> None:
    seen = {}
    form = dataclasses.replace(JOB, headers={}, encoding="form", body={"a": "1", "event": '{"x":1}'})

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = request.content
        seen["type"] = request.headers["content-type"]
        return httpx.Response(200)
    attempt(handler, form)
    assert seen == {"body": b"a=1&event=%7B%22x%22%3A1%7D", "type": "application/x-www-form-urlencoded"}


def test_timeouts_and_connection_errors_are_retryable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)
    assert attempt(slow).retryable and "timeout" in attempt(slow).error
    assert attempt(refused).retryable and "connection error" in attempt(refused).error


def test_retry_after_is_read() -> None:
    result = attempt(lambda r: httpx.Response(429, headers={"Retry-After": "7"}))
    assert result.retry_after == 7.0


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
