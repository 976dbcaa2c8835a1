"""Clients that trickle or give up, against the shim served for real on 127.0.0.1: a head
or a body that does not arrive in time ends the connection; a client that hangs up
mid-body is one log line, never a traceback."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.scripted_server import ScriptedServer
from tests.support.shim import WRITE_KEY, RunningShim, shim_config

HEAD = (b"POST /v1/track HTTP/1.1\r\nHost: shim\r\nContent-Type: application/json\r\n"
        b"Authorization: Basic " + __import__("base64").b64encode(f"{WRITE_KEY}:".encode()) + b"\r\n")


@pytest.fixture
def shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningShim]:
    monkeypatch.setattr("engine.http.server.HEADER_TIMEOUT", 0.5)
    monkeypatch.setattr("engine.http.bodies.BODY_TIMEOUT", 0.5)
    with ScriptedServer() as destinations, RunningShim(shim_config(tmp_path, destinations.url(),
                                                                   dry_run=True)) as running:
        yield running


def connect(shim: RunningShim) -> socket.socket:
    return socket.create_connection(("127.0.0.1", shim.port), timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sent before closing the connection, which it must do in time."""
    deadline = time.monotonic() + seconds
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the connection is still open after {seconds}s ({received!r})")


def test_a_head_trickled_or_never_sent_is_cut_off(shim: RunningShim) -> None:
    silent = connect(shim)
    trickled = connect(shim)
    start = time.monotonic()
    for byte in HEAD[:30]:  # one byte at a time, never the whole head
        try:
            trickled.send(bytes([byte]))
        except OSError:
            break
        time.sleep(0.05)
    assert closed_within(trickled, 3) == b""
    assert closed_within(silent, 3) == b""
    assert time.monotonic() - start < 5
    silent.close()
    trickled.close()


def test_a_body_trickled_gets_a_408_and_the_connection_ends(shim: RunningShim) -> None:
    sock = connect(shim)
    body = json.dumps({"userId": "u1", "event": "Signed Up"}).encode()
    sock.sendall(HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])
    answer = closed_within(sock, 5)
    sock.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(payload) == {"success": False, "code": "timeout",
                                   "message": "the body did not arrive within 0.5 seconds"}


def test_a_kept_alive_connection_gets_a_deadline_for_each_head(shim: RunningShim) -> None:
    sock = connect(shim)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: shim\r\n\r\n")
    time.sleep(0.2)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    sock.sendall(b"GET /health HTTP/1.1\r\n")  # and then nothing more
    assert closed_within(sock, 3) == b""
    sock.close()


def test_a_client_that_hangs_up_mid_body_is_one_line(shim: RunningShim,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(3):
        sock = connect(shim)
        sock.sendall(HEAD + b"Content-Length: 1000\r\n\r\n" + b'{"userId": "u1", ')
        time.sleep(0.1)
        sock.close()
    deadline = time.monotonic() + 5
    while caplog.text.count("went away") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 3
    assert gone[0].getMessage() == ("127.0.0.1 went away before sending all of POST /v1/track; "
                                    "nothing of it was taken in")
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text
    assert shim.config.store.exists()
