"""Delivery when its outbox fails for real (a lock another process holds, a full disk): one
log line, a wait that grows, and every job delivered once the store works again; outcomes
that could not be recorded are kept, not lost nor sent twice."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest

from engine.delivery.worker import Deliverer
from tests.support.delivery import accept, identify, setup
from tests.support.scripted_server import Reply, ScriptedServer
from tests.support.storage import locked


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with ScriptedServer() as running:
        yield running


def test_a_store_locked_for_a_while(tmp_path: Path, server: ScriptedServer,
                                    monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("engine.delivery.sqlite_outbox.BUSY_TIMEOUT", 0.05)
    config, outbox = setup(tmp_path, server.url())
    accept(config, outbox, *(identify(i) for i in range(5)))
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with locked(config.store):
            held.set()
            release.wait(10)
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(Deliverer(config, outbox).run(stop, drain_timeout=5))
        await asyncio.sleep(1.5)  # at least two tries, while the lock is held
        assert server.at("/calixa") == [] and not task.done()
        release.set()
        await asyncio.to_thread(server.wait_for, "/calixa", 5, 15.0)
        deadline = time.monotonic() + 15
        while outbox.counts().get("delivered") != 5:
            assert time.monotonic() < deadline, outbox.counts()
            await asyncio.sleep(0.05)
        stop.set()
        await task

    try:
        asyncio.run(run())
    finally:
        release.set()
        holder.join()
    lines = [r for r in caplog.records if r.name == "engine.delivery" and r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in lines] == [
        "the outbox cannot be used", "the outbox works again (it failed"]
    assert "the store is locked by another process" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert len(server.at("/calixa")) == 5  # each sent once


def test_outcomes_the_store_cannot_take_are_kept_for_the_next_try(
        tmp_path: Path, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.delivery.sqlite_outbox.BUSY_TIMEOUT", 0.05)
    config, outbox = setup(tmp_path, server.url())
    server.script("/calixa", Reply(200, delay=0.3))  # answered once the lock below is held
    accept(config, outbox, identify(1))
    deliverer = Deliverer(config, outbox)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(deliverer.run(stop, drain_timeout=5))
        await asyncio.to_thread(server.wait_for, "/calixa", 1, 15.0)
        with locked(config.store):  # the outcome comes back while the lock is held
            await asyncio.sleep(1.2)
            assert outbox.counts() == {"pending": 1}
        deadline = time.monotonic() + 15
        while outbox.counts() != {"delivered": 1}:
            assert time.monotonic() < deadline, outbox.counts()
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(run())
    assert len(server.at("/calixa")) == 1
