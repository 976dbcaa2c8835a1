"""The worker on PostgreSQL: woken by NOTIFY when another process stores jobs, and
carrying on when its database connection is lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg

from engine.delivery.worker import Deliverer

from tests.support.delivery import accept, identify, open_outbox, setup
from tests.support.postgres import PostgresServer
from tests.support.scripted_server import ScriptedServer


def test_a_running_worker_is_woken_by_other_processes_and_outlives_a_lost_connection(
        postgres: PostgresServer, tmp_path: Path) -> None:
    with ScriptedServer() as server:
        config, outbox = setup(tmp_path, server.url(), store=postgres.store())
        intake = open_outbox(config.store)  # another process's, as a shim elsewhere
        deliverer = Deliverer(config, outbox)

        async def scenario() -> None:
            stop = asyncio.Event()
            running = asyncio.create_task(deliverer.run(stop))
            await asyncio.sleep(0.5)  # idle now: only a NOTIFY wakes it before its 5 s look
            started = time.monotonic()
            accept(config, intake, identify(1))
            await asyncio.to_thread(server.wait_for, "/calixa", 1)
            assert time.monotonic() - started < 2.0
            with psycopg.connect(config.store.url, autocommit=True) as db:  # type: ignore[union-attr]
                db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE application_name = 'engine' AND pid <> pg_backend_pid()")
            accept(config, open_outbox(config.store), identify(2), identify(3))
            await asyncio.to_thread(server.wait_for, "/calixa", 3, 20)
            stop.set()
            await running

        asyncio.run(scenario())
        assert open_outbox(config.store).counts() == {"delivered": 3}
