"""Delivery: the durable outbox (outbox.py, the interface; sqlite_outbox.py, SQLite;
postgres_outbox.py, PostgreSQL), the sender (sender.py) and the worker that leases jobs and
sends them (worker.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import StoreError
from ..store import PostgresStore, Store, parse_store
from .outbox import EnqueueResult, Job, NewJob, Outbox
from .sqlite_outbox import SQLiteOutbox

__all__ = ["Outbox", "NewJob", "Job", "EnqueueResult", "SQLiteOutbox", "open_outbox"]

POSTGRES_DRIVER_MISSING = ("the store is a PostgreSQL database, and the PostgreSQL driver (psycopg 3) "
                           "is not installed: pip install 'engine[postgresql]'")


def open_outbox(store: Store | str, *, clock: Callable[[], float] | None = None) -> Outbox:
    """The outbox a configuration's `store` names: a SQLite file, or a PostgreSQL database
    (its schema created or migrated first). Raises StoreError when the database cannot be
    reached or used, saying why (never with its password)."""
    if isinstance(store, str):
        store = parse_store(store, Path.cwd())
    if isinstance(store, PostgresStore):
        try:
            from .postgres_outbox import PostgresOutbox
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "psycopg":
                raise
            raise StoreError(POSTGRES_DRIVER_MISSING) from None
        return PostgresOutbox(store) if clock is None else PostgresOutbox(store, clock=clock)
    return SQLiteOutbox(store) if clock is None else SQLiteOutbox(store, clock=clock)

