"""The shim for a test: in process through httpx.ASGITransport (`in_process`), or served
for real by uvicorn on 127.0.0.1 in a thread (`RunningShim`), for clients that need a host."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import textwrap
import threading
import time
from pathlib import Path
from typing import AsyncIterator, Callable

import httpx
import uvicorn

from engine.config import load_config
from engine.http.app import create_app

from .paths import MAPPINGS
from .scripted_server import Received, ScriptedServer

WRITE_KEY = "web-write-key-123"
SECRETS = ("calixa-key-123", "callexa-key-123", "skalin-key-123", WRITE_KEY, "hook-secret-123",
           "sync-write-key-123")


def shim_config(tmp_path: Path, destinations_url: str, *, dry_run: bool = False, extra: str = "") -> Path:
    path = tmp_path / "shim.yaml"
    path.write_text(textwrap.dedent(f"""\
        mappings: {MAPPINGS}
        store: {tmp_path / 'outbox.sqlite3'}
        dry_run: {str(dry_run).lower()}
        delivery: {{timeout: 2, backoff_initial: 0.01, backoff_max: 0.05, max_attempts: 5, max_age: 60, concurrency: 4}}
        sources:
          - name: web
            write_key: {WRITE_KEY}
            webhook_secret: hook-secret-123
            destinations:
              calixa: {{api_key: calixa-key-123, endpoint: "{destinations_url}/calixa"}}
              callexa: {{api_key: callexa-key-123, endpoint: "{destinations_url}/callexa", max_delay_days: 3650}}
              skalin: {{api_key: skalin-key-123, client_id: client-1, endpoint: "{destinations_url}/skalin"}}
          - name: open-hooks
            write_key: other-write-key-456
            destinations:
              calixa: {{api_key: calixa-key-123, endpoint: "{destinations_url}/calixa"}}
        inbound:
          callexa-sync-back:
            settings: {{write_key: sync-write-key-123, endpoint: "{destinations_url}/v1/identify"}}
        """) + extra)
    return path


class RunningShim:
    """The shim on a free port; `url(path)`; stops (gracefully) on exit."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        app = create_app(self.config)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> "RunningShim":
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the shim did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


@contextlib.asynccontextmanager
async def in_process(config_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The shim's app with its lifespan running (outbox open, delivery started), and a client
    that calls it in process. Delivery reaches real servers: only the shim's socket is
    left out."""
    app = create_app(load_config(config_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://shim") as client:
            yield client


async def until(condition: Callable[[], object], timeout: float = 15.0) -> None:
    """Wait, without blocking the event loop, until `condition()` (or what it awaits) is
    true; for state that announces no event of its own (metrics, outbox counts)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.005)


async def arrived(server: ScriptedServer, path: str, count: int) -> list[Received]:
    """Wait, without blocking the event loop, until `count` requests reached `path`."""
    return await asyncio.to_thread(server.wait_for, path, count)
