"""The body budget: large bodies read at once hold a bounded number of bytes between them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import AsyncIterator

import httpx
import pytest

from engine.errors import BadRequest
from engine.http.bodies import BodyBudget, size_text
from tests.support.scripted_server import ScriptedServer
from tests.support.shim import in_process, shim_config


@pytest.mark.anyio
async def test_a_hold_waits_for_room_then_gives_up() -> None:
    budget = BodyBudget(100)
    order: list[str] = []

    async def second() -> None:
        async with budget.hold(60, wait=5):
            order.append("second in")

    async with budget.hold(60):
        task = asyncio.create_task(second())
        await asyncio.sleep(0.05)
        assert order == [] and budget.used == 60  # waiting for room
        with pytest.raises(BadRequest) as refused:
            async with budget.hold(50, wait=0.05):
                pass
        assert (refused.value.status, refused.value.retry_after) == (503, 5)
        order.append("first out")
    await task
    assert order == ["first out", "second in"] and budget.used == 0
    async with budget.hold(10**9, wait=0.05):  # more than the whole budget: all of it, alone
        assert budget.used == 100


def test_sizes_read_as_limits_are_written() -> None:
    assert [size_text(n) for n in (500 * 1024, 16 * 1024 * 1024, 1536 * 1024)] == ["500 KB", "16 MB", "1536 KB"]


@pytest.fixture
async def shim(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    with ScriptedServer() as destinations:
        async with in_process(shim_config(tmp_path, destinations.url(), dry_run=True)) as client:
            yield client


@pytest.mark.anyio
async def test_a_webhook_that_finds_the_budget_spent_gets_a_503(shim: httpx.AsyncClient,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.http.bodies.BUDGET_WAIT", 0.1)
    budget: BodyBudget = shim._transport.app.state.shim.bodies  # type: ignore[attr-defined]
    event = {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "b1"}
    async with budget.hold(budget.total):  # others' bodies fill it
        reply = await shim.post("/webhook/open-hooks", json=event)
    assert (reply.status_code, reply.headers["Retry-After"], reply.json()) == (503, "5", {
        "success": False, "code": "busy", "message": "too many large bodies are being read now; retry later"})
    assert (await shim.post("/webhook/open-hooks", content=json.dumps(event))).json() == {"success": True}
    assert budget.used == 0
