"""uvicorn, configured for clients that do not play fair.

uvicorn times out idle keep-alive connections, but a client that sends its request line and
headers a byte at a time, or stops halfway, holds its connection (a file descriptor, a
parser) forever. Here a connection must deliver a complete request head within
HEADER_TIMEOUT seconds of opening (or of its previous response), else it is closed; the
body's own deadline is the app's (engine/http/bodies.py). Values are in the README.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEADER_TIMEOUT", "KEEP_ALIVE_TIMEOUT", "GuardedH11Protocol", "server_config"]

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send a complete request line and headers."""
KEEP_ALIVE_TIMEOUT = 5
"""Seconds an idle keep-alive connection is kept open (uvicorn's default, stated here)."""

log = logging.getLogger("engine.http")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on each request's head."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is in: the app takes it from here
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on this connection gets a deadline of its own

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            # Debug: under attack, one line a connection would flood the log.
            log.debug("%s sent no complete request head in %gs; connection closed",
                      self.client[0] if self.client else "a client", HEADER_TIMEOUT)
            self.transport.close()


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """A uvicorn configuration for `app` with the guarded protocol and the timeouts above."""
    return uvicorn.Config(app, http=GuardedH11Protocol, timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
                          **options)
