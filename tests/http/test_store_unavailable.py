"""When the outbox's database is out of reach, the shim acknowledges nothing and says to
try again (503), and it is not ready; once the database is back, it takes events again."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.support.postgres import PostgresServer
from tests.support.shim import WRITE_KEY, in_process, shim_config

AUTH = (WRITE_KEY, "")
EVENT = {"userId": "u1", "messageId": "m1", "traits": {"email": "a@example.com"}}


@pytest.mark.anyio
async def test_a_lost_database_connection_is_a_503_then_the_shim_reconnects(
        postgres: PostgresServer, tmp_path: Path) -> None:
    store = postgres.store()
    config = shim_config(tmp_path, "http://127.0.0.1:9", dry_run=True)  # the intake alone
    config.write_text(config.read_text().replace(f"store: {tmp_path / 'outbox.sqlite3'}",
                                                 f'store: "{store}"'))
    async with in_process(config) as shim:
        with psycopg.connect(store, autocommit=True) as db:  # as when the server restarts
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                       " WHERE application_name = 'engine'")
        reply = await shim.post("/v1/identify", auth=AUTH, json=EVENT)
        assert (reply.status_code, reply.json()) == (503, {
            "success": False, "code": "store_unavailable",
            "message": "the event store is unavailable (the database cannot be used); nothing of "
                       "this request was stored: retry later"})
        reply = await shim.post("/v1/identify", auth=AUTH, json=EVENT)
        assert (reply.status_code, reply.json()) == (200, {"success": True})
        assert (await shim.get("/ready")).json() == {"ready": True}
        assert (await shim.get("/health")).json()["outbox"] == {"recorded": 3}
