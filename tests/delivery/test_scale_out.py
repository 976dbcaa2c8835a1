"""Scale-out on PostgreSQL: two shims and two delivery processes share one outbox, as on
several machines; one of each is SIGKILLed while events flow. Every acknowledged event is
delivered, and the once-per-key window holds across the processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx

from tests.support.delivery import identify, open_outbox, write_config
from tests.support.paths import ROOT
from tests.support.postgres import PostgresServer
from tests.support.scripted_server import Reply, ScriptedServer

CUSTOMERS = 12
"""Distinct emails among the events: Callexa surveys each once in its 26-week window."""
BATCH = 20
BATCHES = 60
"""Batches a client sends at most (a bound: the test stops them sooner), one every PACE
seconds."""
PACE = 0.1
AFTER_KILL = 5
"""Batches the living shim acknowledges after the kills before the clients stop."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def engine(log: IO[bytes], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)


def until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Client(threading.Thread):
    """Posts batches of identifies to one shim until told to stop or the shim is gone;
    remembers the messageIds the shim acknowledged."""

    def __init__(self, port: int, first: int) -> None:
        super().__init__(daemon=True)
        self.port, self.next = port, first
        self.acknowledged: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(auth=("web-write-key", ""), timeout=10) as client:
            for _ in range(BATCHES):
                if self.stop.is_set():
                    return
                events = [identify(n, email=f"customer{n % CUSTOMERS}@example.com")
                          for n in range(self.next, self.next + BATCH)]
                self.next += BATCH
                try:
                    reply = client.post(f"http://127.0.0.1:{self.port}/v1/batch", json={"batch": events})
                except httpx.HTTPError:
                    return  # the shim was killed: what it did not acknowledge is not owed
                if reply.json() == {"success": True}:
                    self.acknowledged |= {e["messageId"] for e in events}
                time.sleep(PACE)


def test_two_shims_and_two_deliverers_on_one_outbox_survive_a_sigkill_of_one_of_each(
        postgres: PostgresServer, tmp_path: Path) -> None:
    with ScriptedServer() as destinations, open(tmp_path / "processes.log", "wb") as log:
        # Answers take a moment, so that each delivery process has sends in flight.
        destinations.script("/calixa", Reply(200, delay=0.02))
        destinations.script("/callexa", Reply(200, delay=0.02))
        store = postgres.store()
        config = str(write_config(tmp_path, destinations.url(), store=store, only=("calixa", "callexa"),
                                  delivery={"timeout": 2, "concurrency": 3}))
        ports = [free_port(), free_port()]
        doomed_shim = engine(log, "serve", "--no-deliver", "--config", config, "--port", str(ports[0]))
        # Intake, and a delivery process of its own beside it: the second deliverer.
        shim = engine(log, "serve", "--config", config, "--port", str(ports[1]))
        doomed_deliverer = engine(log, "deliver", "--config", config)
        processes = [doomed_shim, shim, doomed_deliverer]
        try:
            until(lambda: up(ports[0]) and up(ports[1]), 30, "the shims")
            clients = [Client(ports[0], 0), Client(ports[1], 100_000)]  # ranges never meet
            for client in clients:
                client.start()
            until(lambda: len(destinations.at("/calixa")) >= 30 and clients[0].acknowledged,
                  30, "deliveries")
            outbox = open_outbox(store)
            # Both delivery processes hold leases: the kill lands on sends in flight.
            until(lambda: len(leaseholders(store)) == 2, 10, "both deliverers to hold leases")
            os.kill(doomed_shim.pid, signal.SIGKILL)
            os.kill(doomed_deliverer.pid, signal.SIGKILL)
            before = len(clients[1].acknowledged)
            # Events still flow, to the shim that lives.
            until(lambda: len(clients[1].acknowledged) >= before + AFTER_KILL * BATCH, 60,
                  "events after the kills")
            for client in clients:
                client.stop.set()
                client.join(timeout=60)
            acknowledged = clients[0].acknowledged | clients[1].acknowledged
            until(lambda: not outbox.counts().get("pending"), 60, "the outbox to drain")
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)

        calixa = {json.loads(r.body)["messageId"] for r in destinations.at("/calixa")}
        missing = acknowledged - calixa
        assert not missing, (f"{len(missing)} acknowledged events never delivered",
                             (tmp_path / "processes.log").read_text()[-3000:])
        surveys: dict[str, set[str]] = {}
        for received in destinations.at("/callexa"):
            body = json.loads(received.body)
            surveys.setdefault(body["traits"]["email"], set()).add(body["messageId"])
        # One survey per customer: a resend after a kill is the same message, never another.
        assert {email: len(ids) for email, ids in surveys.items()} == {
            f"customer{n}@example.com": 1 for n in range(CUSTOMERS)}
        counts = outbox.counts()
        assert set(counts) <= {"delivered", "suppressed"} and counts.get("suppressed", 0) > 0


def leaseholders(store: str) -> set[int]:
    """The tokens of the delivery processes holding leases now."""
    import psycopg

    with psycopg.connect(store) as db:
        return {token for (token,) in db.execute(
            "SELECT DISTINCT leased_by FROM engine_outbox WHERE leased_until IS NOT NULL")}
