"""Delivery: the durable outbox (outbox.py, the interface; sqlite_outbox.py, SQLite), the
sender (sender.py) and the worker that leases jobs and sends them (worker.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .outbox import EnqueueResult, Job, NewJob, Outbox
from .sqlite_outbox import SQLiteOutbox

__all__ = ["Outbox", "NewJob", "Job", "EnqueueResult", "SQLiteOutbox", "open_outbox"]


def open_outbox(store: str | Path, *, clock: Callable[[], float] | None = None) -> Outbox:
    """The outbox a configuration's `store` names: a SQLite file."""
    return SQLiteOutbox(store) if clock is None else SQLiteOutbox(store, clock=clock)
