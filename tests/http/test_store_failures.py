"""The shim when its outbox fails for real (a full disk, a lock held elsewhere): a JSON 503
with Retry-After and nothing acknowledged that was not stored; /health and /ready say why;
one log line, no traceback; it takes events again once the store works."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from engine.delivery import SQLiteOutbox
from tests.support.scripted_server import ScriptedServer
from tests.support.shim import WRITE_KEY, in_process, shim_config
from tests.support.storage import SmallDisk, locked

AUTH = (WRITE_KEY, "")
BATCH = {"batch": [{"type": "track", "userId": f"u{i}", "event": "Signed Up", "messageId": f"s{i}",
                    "properties": {"pad": "x" * 2000}} for i in range(20)]}


@pytest.fixture
def destinations() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture(params=["tmpfs", "max_page_count"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    small = SmallDisk(tmp_path / "disk", mount=request.param == "tmpfs")
    # Mounting needs root: where it is refused, the "tmpfs" case runs on SQLite's own page
    # limit (a real SQLITE_FULL too; SmallDisk falls back by itself) rather than not at all.
    try:
        yield small
    finally:
        small.close()


def outbox_of(shim: httpx.AsyncClient) -> SQLiteOutbox:
    outbox: SQLiteOutbox = shim._transport.app.state.shim.outbox  # type: ignore[attr-defined]
    return outbox


def assert_unavailable(reply: httpx.Response, reason: str) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.headers["Retry-After"] == "10"
    assert reply.json() == {"success": False, "code": "store_unavailable", "message":
                            f"the event store is unavailable ({reason}); nothing of this request "
                            f"was stored: retry later"}


@pytest.mark.anyio
async def test_a_full_disk(tmp_path: Path, disk: SmallDisk, destinations: ScriptedServer,
                           caplog: pytest.LogCaptureFixture) -> None:
    config = shim_config(tmp_path, destinations.url(), dry_run=True)
    config.write_text(config.read_text().replace(str(tmp_path / "outbox.sqlite3"),
                                                 str(disk.path / "outbox.sqlite3")))
    async with in_process(config) as shim:
        outbox = outbox_of(shim)
        disk.fill(outbox)
        for _ in range(3):
            assert_unavailable(await shim.post("/v1/batch", json=BATCH, auth=AUTH), "the disk is full")
        hook = await shim.post("/webhook/open-hooks", json=BATCH["batch"])
        assert_unavailable(hook, "the disk is full")
        assert outbox.counts() == {}  # nothing stored: nothing acknowledged
        health = await shim.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "store unavailable"
        assert health.json()["problem"].startswith("the disk is full: ")
        ready = await shim.get("/ready")
        assert ready.status_code == 503 and "store unavailable: the disk is full" in ready.text
        assert (await shim.get("/metrics")).status_code == 200

        disk.free(outbox)
        assert (await shim.post("/v1/batch", json=BATCH, auth=AUTH)).json() == {"success": True}
        assert outbox.counts() == {"recorded": 20 * 2}  # Calixa and Skalin each
        assert (await shim.get("/health")).json()["status"] == "ok"
    errors = [r for r in caplog.records if r.name == "engine.http"]
    assert [r.levelno for r in errors] == [logging.ERROR, logging.WARNING]  # one line, not one a request
    assert "the outbox cannot take events: the disk is full" in errors[0].getMessage()
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text


@pytest.mark.anyio
async def test_a_store_locked_by_another_process(tmp_path: Path, destinations: ScriptedServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.delivery.sqlite_outbox.BUSY_TIMEOUT", 0.2)
    config = shim_config(tmp_path, destinations.url(), dry_run=True)
    async with in_process(config) as shim:
        with locked(tmp_path / "outbox.sqlite3"):
            reply = await shim.post("/v1/track", auth=AUTH,
                                    json={"userId": "u1", "event": "Signed Up", "messageId": "l1"})
            assert_unavailable(reply, "the store is locked by another process")
            assert (await shim.get("/health")).status_code == 503
        reply = await shim.post("/v1/track", auth=AUTH,
                                json={"userId": "u1", "event": "Signed Up", "messageId": "l1"})
        assert reply.json() == {"success": True}  # the retry is stored, not a duplicate
        recorded = (await shim.get("/v1/recorded", auth=AUTH)).json()["recorded"]
        assert {json.dumps(r["message_id"]) for r in recorded} == {'"l1"'}
