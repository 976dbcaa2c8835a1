"""Real storage failures for the tests: a full disk, a lock held by another connection, a
corrupt file."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Iterator

from engine.delivery import SQLiteOutbox


@contextlib.contextmanager
def locked(store: Path) -> Iterator[None]:
    """Another connection holds the store's write lock (BEGIN EXCLUSIVE) until the end."""
    other = sqlite3.connect(store, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def corrupt(store: Path) -> None:
    """Garbage where the store's file was."""
    for stale in (store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
        stale.unlink(missing_ok=True)
    store.write_bytes(b"this is not a database, and never was\n" * 200)


class SmallDisk:
    """A directory on a disk that can be filled up, for a store to live in.

    Where this process may mount one (root on Linux), it is a tmpfs of 1 MB, and `fill`
    writes a file until the disk has no space left: SQLite then fails as it does on any
    full disk. Elsewhere `fill` sets SQLite's own limit on the file's pages
    (`PRAGMA max_page_count`) on the outbox's connection: its next write needing a page
    fails with the same SQLITE_FULL."""

    def __init__(self, directory: Path, *, mount: bool = True) -> None:
        self.path = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.mounted = mount and os.geteuid() == 0 and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory)],
            capture_output=True).returncode == 0
        self._filler = directory / "filler"

    def fill(self, outbox: SQLiteOutbox) -> None:
        if self.mounted:
            handle = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                while True:
                    os.write(handle, b"\0" * 4096)
            except OSError:  # no space left on the device
                pass
            finally:
                os.close(handle)
        else:
            with outbox._lock:
                pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
                outbox._db.execute(f"PRAGMA max_page_count={pages}")

    def free(self, outbox: SQLiteOutbox) -> None:
        if self.mounted:
            self._filler.unlink()
        else:
            with outbox._lock:
                outbox._db.execute("PRAGMA max_page_count=1073741823")

    def close(self) -> None:
        if self.mounted:  # lazily: a file the test left open must not keep it mounted
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False
