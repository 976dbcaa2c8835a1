"""Wake-ups through PostgreSQL's LISTEN/NOTIFY: a thread with a connection of its own that
calls back each time any process, on any machine, commits jobs to deliver.

The outbox sends `NOTIFY` in the transaction that stores jobs (PostgreSQL delivers it at
commit, and only then), so a delivering process starts on new work at once instead of
polling the table for it.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import psycopg

from ..errors import StoreError

__all__ = ["Listener", "CHANNEL"]

log = logging.getLogger("engine.delivery")

CHANNEL = "engine_outbox"
"""The notification channel: a NOTIFY on it means "new jobs are committed"."""
WAIT = 0.5
"""Seconds the listening thread waits for notifications before it looks whether to stop."""
RECONNECT_DELAY = 1.0
"""Seconds before the listener connects again after losing its connection."""


class Listener:
    """Calls `callback` (on its own thread) after each NOTIFY on CHANNEL, and once after
    each (re)connection, since what was committed meanwhile was not notified."""

    def __init__(self, connect: Callable[[], psycopg.Connection[tuple[object, ...]]],
                 callback: Callable[[], None]) -> None:
        self._connect = connect
        self._callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-listener", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening (within WAIT seconds)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=WAIT * 4)

    def _call(self) -> None:
        try:
            self._callback()
        except Exception:  # a callback that fails (its loop closed, say) stops no one
            log.debug("an outbox wake-up callback failed", exc_info=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                db = self._connect()
            except StoreError as exc:
                log.warning("outbox wake-ups: %s; trying again in %gs", exc, RECONNECT_DELAY)
                self._stop.wait(RECONNECT_DELAY)
                continue
            try:
                with db:
                    db.execute(f"LISTEN {CHANNEL}")
                    self._call()
                    while not self._stop.is_set():
                        for _ in db.notifies(timeout=WAIT):
                            self._call()
                            if self._stop.is_set():
                                break
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("outbox wake-ups: connection lost (%s); listening again in %gs",
                            type(exc).__name__, RECONNECT_DELAY)
                self._stop.wait(RECONNECT_DELAY)
