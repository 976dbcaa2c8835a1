"""The outbox on SQLite: one file in WAL mode, `synchronous=FULL`, one row per job.

It keeps every guarantee of the `Outbox` protocol (outbox.py). A commit is fsync'd before
`enqueue` returns. One process delivers a file at a time (a lock file beside it), so a
process that starts delivering frees the leases of one that died at once.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import sqlite3
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, ParamSpec, Sequence, TypeVar

import orjson

from ..errors import DeliveryLocked, StoreUnavailable
from .outbox import (DEDUPE_WINDOW, MAX_STORED_BODY, ONCE_RECHECK, ROW_COLUMNS, Delivered,
                     EnqueueResult, Job, JobOutcome, JobStatus, NewJob, Retry, readable_rows)

__all__ = ["SQLiteOutbox"]

_STRAYS_RECHECK = 30.0
"""Seconds between two looks for destinations with jobs that the lease is not asked about."""

BUSY_TIMEOUT = 10.0
"""Seconds a write waits for another process's transaction before the store counts as
locked (StoreUnavailable): the engine's own transactions take milliseconds."""

_KEYS_PER_QUERY = 400
"""(destination, messageId) pairs looked up per query: two parameters each, well under
SQLite's limit on parameters."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    destination   TEXT NOT NULL,
    rule          TEXT NOT NULL,
    message_id    TEXT,
    request       BLOB NOT NULL,        -- JSON: method, url, headers (no auth), encoding, body
    status        TEXT NOT NULL,        -- pending | delivered | dead | suppressed | recorded
    attempts      INTEGER NOT NULL DEFAULT 0,
    accepted_at   REAL NOT NULL,
    window_start  REAL NOT NULL,        -- max_age counts from here (reset by a replay)
    due_at        REAL NOT NULL,
    leased_until  REAL,
    once_key      TEXT,
    once_window   REAL,
    waiting_on    INTEGER,              -- the job holding this job's once key, while it is tried
    last_status   INTEGER,
    last_error    TEXT,
    last_body     TEXT,
    finished_at   REAL,
    batch_item    BLOB                  -- JSON [list name, item]: its part of a bulk request
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, due_at);
CREATE INDEX IF NOT EXISTS outbox_due_by_destination ON outbox (status, destination, due_at);
-- Nothing on the per-job path may cost more as the backlog grows: leases and once-key
-- waiters are found through indexes that hold only the few rows concerned.
CREATE INDEX IF NOT EXISTS outbox_leased ON outbox (leased_until) WHERE leased_until IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (waiting_on) WHERE waiting_on IS NOT NULL;
CREATE TABLE IF NOT EXISTS seen (
    destination TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    seen_at     REAL NOT NULL,
    PRIMARY KEY (destination, message_id)
);
CREATE TABLE IF NOT EXISTS once_claims (
    key        TEXT PRIMARY KEY,
    claimed_at REAL NOT NULL,
    outbox_id  INTEGER NOT NULL
);
"""


_P = ParamSpec("_P")
_R = TypeVar("_R")

# Failures of the caller's own making (a bad query or value), not of the store.
_NOT_THE_STORE = (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.DataError,
                  sqlite3.NotSupportedError)
_REASONS = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_BUSY: "the store is locked by another process",
    sqlite3.SQLITE_LOCKED: "the store is locked by another process",
    sqlite3.SQLITE_CORRUPT: "the store is corrupt",
    sqlite3.SQLITE_NOTADB: "the store is corrupt (not a SQLite database)",
    sqlite3.SQLITE_CANTOPEN: "the store cannot be opened",
    sqlite3.SQLITE_READONLY: "the store is read-only",
    sqlite3.SQLITE_IOERR: "the store's disk failed to read or write",
    sqlite3.SQLITE_PERM: "the store may not be written",
}


def _store_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """SQLite's failures, and the OS's, raised as StoreUnavailable, saying which."""
    @functools.wraps(method)
    def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except _NOT_THE_STORE:
            raise
        except (sqlite3.DatabaseError, OSError) as exc:
            if isinstance(exc, OSError):
                reason = ("the disk is full" if exc.errno == errno.ENOSPC
                          else "the store cannot be opened")
            else:
                code = getattr(exc, "sqlite_errorcode", None)
                reason = _REASONS.get(code & 0xFF if isinstance(code, int) else -1, "the store failed")
            raise StoreUnavailable(reason, f"{getattr(args[0], 'path', '?')}: {exc}") from exc
    return translated


class SQLiteOutbox:
    """The outbox in the SQLite file at `path`. Thread-safe: one connection, used under a
    lock."""

    @_store_errors
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._lock = threading.Lock()
        self._delivery_lock: IO[str] | None = None
        self._strays: set[str] = set()
        self._strays_checked = 0.0
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=BUSY_TIMEOUT)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "batch_item" not in columns:  # an outbox written before bulk requests
            self._db.execute("ALTER TABLE outbox ADD COLUMN batch_item BLOB")

    def close(self) -> None:
        """Close the database (and give up delivering it). Closing twice is harmless."""
        with self._lock:
            self._db.close()
        if self._delivery_lock is not None:
            self._delivery_lock.close()
            self._delivery_lock = None

    def notify_new_jobs(self, callback: Callable[[], None]) -> bool:
        """SQLite cannot tell other processes of a commit: False (the one delivering
        process looks now and then, and `serve` wakes its own through a pipe)."""
        return False

    @_store_errors
    def claim_delivery(self) -> int:
        """Become the one process that delivers this outbox, and free the leases left by a
        process that died (the OS releases its lock when it dies, so they are stale).
        Returns how many leases were freed; raises DeliveryLocked if another process
        delivers this outbox now."""
        if self._delivery_lock is None:
            handle = open(self.path.with_name(self.path.name + ".deliver.lock"), "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise DeliveryLocked(f"another process is delivering {self.path}") from None
            self._delivery_lock = handle
        with self._transaction() as db:
            # Every destination with work (one scan, once): lease() also serves those its
            # caller does not name.
            self._strays = self._pending_destinations(db)
            return db.execute("UPDATE outbox SET leased_until=NULL WHERE status='pending'"
                              " AND leased_until IS NOT NULL").rowcount

    def _pending_destinations(self, db: sqlite3.Connection) -> set[str]:
        self._strays_checked = time.monotonic()
        return {d for (d,) in db.execute("SELECT DISTINCT destination FROM outbox WHERE status='pending'")}

    def _transaction(self) -> "_Tx":
        return _Tx(self._db, self._lock)

    # -- intake --------------------------------------------------------------------------

    def enqueue(self, source: str, jobs: Sequence[NewJob], *,
                status: JobStatus = "pending") -> EnqueueResult:
        """`enqueue_many` for one source's jobs (a convenience for tools and tests)."""
        return self.enqueue_many([(source, jobs)], status=status)[0]

    @_store_errors
    def enqueue_many(self, batches: Sequence[tuple[str, Sequence[NewJob]]], *,
                     status: JobStatus = "pending") -> list[EnqueueResult]:
        """`enqueue` for several sources' batches in one transaction (one fsync)."""
        now = self.clock()
        results = []
        with self._transaction() as db:
            seen = self._seen_since(db, now - DEDUPE_WINDOW,
                                    {(j.destination, j.message_id) for _, jobs in batches
                                     for j in jobs if j.message_id is not None})
            rows, marks = [], []
            for source, jobs in batches:
                stored = 0
                for job in jobs:
                    if job.message_id is not None:
                        key = (job.destination, job.message_id)
                        if key in seen:
                            continue
                        seen.add(key)  # a second copy in the same batch is a duplicate too
                        marks.append((job.destination, job.message_id, now))
                    due = now if job.deliver_after is None else job.deliver_after
                    rows.append((source, job.destination, job.rule, job.message_id, job.request,
                                 status, now, max(now, due), due, job.once_key, job.once_window,
                                 now if status != "pending" else None, job.batch_item))
                    stored += 1
                results.append(EnqueueResult(stored, len(jobs) - stored))
            db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?, ?)", marks)
            db.executemany(
                "INSERT INTO outbox (source, destination, rule, message_id, request, status,"
                " accepted_at, window_start, due_at, once_key, once_window, finished_at,"
                " batch_item) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return results

    @staticmethod
    def _seen_since(db: sqlite3.Connection, since: float,
                    keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of `keys` (destination, message_id) were accepted after `since`."""
        found: set[tuple[str, str]] = set()
        pending = sorted(keys)
        for start in range(0, len(pending), _KEYS_PER_QUERY):
            chunk = pending[start:start + _KEYS_PER_QUERY]
            values = ",".join("(?, ?)" for _ in chunk)
            params = [part for key in chunk for part in key]
            found.update(db.execute(
                f"SELECT destination, message_id FROM seen WHERE (destination, message_id) IN"
                f" (VALUES {values}) AND seen_at > ?", [*params, since]).fetchall())
        return found

    # -- delivery ------------------------------------------------------------------------

    @_store_errors
    def lease(self, free: dict[str, int], default_free: int, lease_seconds: float) -> list[Job]:
        """Take due jobs for `lease_seconds`: at most `free[destination]` (else `default_free`)
        per destination, so that nothing leased waits behind a busy destination. Jobs whose
        `once` key was used inside their window are suppressed here and not returned."""
        now = self.clock()
        jobs = []
        slots = dict(free)
        columns = ("SELECT id, source, destination, rule, message_id, request, attempts, accepted_at,"
                   " window_start, once_key, once_window, batch_item FROM outbox")
        due = "status='pending' AND due_at<=? AND (leased_until IS NULL OR leased_until<?)"
        with self._transaction() as db:
            # One indexed query per destination, for as many jobs as it can take: the cost
            # follows what is leased, not how many jobs wait.
            rows = []
            for destination, count in free.items():
                if count > 0:
                    rows += db.execute(f"{columns} WHERE destination=? AND {due}"
                                       f" ORDER BY due_at, id LIMIT ?",
                                       (destination, now, now, count)).fetchall()
            if not free:
                rows += db.execute(f"{columns} WHERE {due} ORDER BY due_at, id LIMIT ?",
                                   (now, now, default_free)).fetchall()
            # Destinations not named (none in the configuration any more, say) get theirs
            # too: those with jobs, looked up when delivery is claimed and every
            # _STRAYS_RECHECK seconds (a scan of the pending jobs).
            if free and time.monotonic() >= self._strays_checked + _STRAYS_RECHECK:
                self._strays = self._pending_destinations(db)
            for destination in sorted(self._strays - set(free)) if free else ():  # else all are asked
                found = db.execute(f"{columns} WHERE destination=? AND {due}"
                                   f" ORDER BY due_at, id LIMIT ?",
                                   (destination, now, now, default_free)).fetchall()
                rows += found
                if not found and db.execute("SELECT 1 FROM outbox WHERE status='pending'"
                                            " AND destination=? LIMIT 1", (destination,)).fetchone() is None:
                    self._strays.discard(destination)
            for row in rows:
                job_id, once_key, once_window = row[0], row[9], row[10]
                if slots.setdefault(row[2], default_free) <= 0:
                    continue
                slots[row[2]] -= 1
                if once_key is not None:
                    # A key is scoped to its source and destination: one customer in two
                    # sources' accounts is two customers.
                    claim_key = _claim_key(row[1], row[2], once_key)
                    claim = db.execute("SELECT claimed_at, outbox_id FROM once_claims WHERE key=?",
                                       (claim_key,)).fetchone()
                    if claim is not None and claim[1] != job_id and claim[0] > now - (once_window or 0):
                        holder = db.execute("SELECT status FROM outbox WHERE id=?", (claim[1],)).fetchone()
                        if holder is not None and holder[0] == "pending":
                            # The key's holder is still being tried: wait for its outcome
                            # rather than guess it (if it dead-letters, this job goes).
                            db.execute("UPDATE outbox SET due_at=?, waiting_on=? WHERE id=?",
                                       (now + ONCE_RECHECK, claim[1], job_id))
                            slots[row[2]] += 1
                            continue
                        db.execute("UPDATE outbox SET status='suppressed', finished_at=?, last_error=?"
                                   " WHERE id=?", (now, f"once: key already used at {claim[0]:.0f} "
                                                        f"(job {claim[1]}), inside its window", job_id))
                        continue
                    db.execute("INSERT OR REPLACE INTO once_claims VALUES (?, ?, ?)",
                               (claim_key, now, job_id))
                data = orjson.loads(row[5])
                item = orjson.loads(row[11]) if row[11] is not None else None
                jobs.append(Job(job_id, row[1], row[2], row[3], row[4], data["method"], data["url"],
                                data["headers"], data["encoding"], data["body"], row[6], row[7],
                                row[8], once_key, once_window,
                                (item[0], item[1]) if item is not None else None,
                                len(row[11]) if row[11] is not None else 0))
            db.executemany("UPDATE outbox SET leased_until=? WHERE id=?",
                           [(now + lease_seconds, job.id) for job in jobs])
        return jobs

    @_store_errors
    def record(self, outcomes: Sequence[JobOutcome]) -> None:
        """Record what became of leased jobs, in one transaction."""
        if not outcomes:
            return
        now = self.clock()
        delivered, retried, dead, freed, settled = [], [], [], [], []
        for outcome in outcomes:
            job = outcome.job
            if isinstance(outcome, Delivered):
                delivered.append((outcome.status, now, job.id))
            elif isinstance(outcome, Retry):
                retried.append((outcome.due_at, outcome.status, outcome.error, job.id))
            else:
                dead.append((outcome.status, outcome.error,
                             (outcome.body or "")[:MAX_STORED_BODY] or None, now, job.id))
                if job.once_key is not None:  # a key whose send failed for good is free again
                    freed.append((_claim_key(job.source, job.destination, job.once_key), job.id))
            if job.once_key is not None and not isinstance(outcome, Retry):
                settled.append((now, job.id))
        with self._transaction() as db:
            db.executemany("UPDATE outbox SET status='delivered', attempts=attempts+1, last_status=?,"
                           " leased_until=NULL, finished_at=?, last_error=NULL WHERE id=?", delivered)
            db.executemany("UPDATE outbox SET attempts=attempts+1, due_at=?, leased_until=NULL,"
                           " last_status=?, last_error=? WHERE id=?", retried)
            db.executemany("UPDATE outbox SET status='dead', attempts=attempts+1, leased_until=NULL,"
                           " last_status=?, last_error=?, last_body=?, finished_at=? WHERE id=?", dead)
            db.executemany("DELETE FROM once_claims WHERE key=? AND outbox_id=?", freed)
            # Jobs waiting on a settled job's once key learn its outcome now, not at their
            # next check.
            db.executemany("UPDATE outbox SET due_at=?, waiting_on=NULL WHERE waiting_on=?"
                           " AND status='pending'", settled)

    @_store_errors
    def next_due(self, *, retries_only: bool = False) -> float | None:
        """When the next pending job is due (leases included), or None. `retries_only`
        leaves out deferred jobs that were never attempted (deliver_after)."""
        query = ("SELECT due_at FROM outbox WHERE status='pending' AND leased_until IS NULL"
                 + (" AND (attempts > 0 OR due_at <= ?)" if retries_only else "")
                 + " ORDER BY due_at LIMIT 1")
        with self._lock:
            first = self._db.execute(query, (self.clock(),) if retries_only else ()).fetchone()
            # Only pending jobs hold a lease (an outcome ends it): the partial index has them.
            lease = self._db.execute("SELECT MIN(leased_until) FROM outbox INDEXED BY outbox_leased"
                                     " WHERE leased_until IS NOT NULL").fetchone()
        times: list[float] = [t for t in (first[0] if first else None, lease[0]) if t is not None]
        return min(times) if times else None

    # -- inspection and repair -----------------------------------------------------------

    @_store_errors
    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1 FROM outbox LIMIT 1").fetchall()

    @_store_errors
    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        return dict(rows)

    @_store_errors
    def rows(self, status: JobStatus, limit: int = 100, ids: Sequence[int] = (),
             sources: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Stored rows with a status, newest first, as dictionaries for people to read."""
        query = f"SELECT {', '.join(ROW_COLUMNS)} FROM outbox WHERE status=?"
        params: list[Any] = [status]
        if ids:
            query += f" AND id IN ({','.join('?' * len(ids))})"
            params += list(ids)
        if sources:
            query += f" AND source IN ({','.join('?' * len(sources))})"
            params += list(sources)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            found = self._db.execute(query, params).fetchall()
        return readable_rows(found)

    def replay(self, ids: Sequence[int] = (), *, all_dead: bool = False) -> int:
        """Make dead letters pending again, due now, with a fresh retry budget."""
        return self._reset("dead", ids, all_dead, replay=True)

    def purge(self, ids: Sequence[int] = (), *, all_dead: bool = False) -> int:
        """Delete dead letters for good."""
        return self._reset("dead", ids, all_dead, replay=False)

    @_store_errors
    def _reset(self, status: JobStatus, ids: Sequence[int], everything: bool, *, replay: bool) -> int:
        if not ids and not everything:
            return 0
        now = self.clock()
        where = "status=?" + ("" if everything else f" AND id IN ({','.join('?' * len(ids))})")
        params: list[Any] = [status] + ([] if everything else list(ids))
        with self._transaction() as db:
            if replay:
                cursor = db.execute("UPDATE outbox SET status='pending', attempts=0, due_at=?,"
                                    " window_start=?, leased_until=NULL, finished_at=NULL"
                                    f" WHERE {where}", [now, now] + params)
            else:
                cursor = db.execute(f"DELETE FROM outbox WHERE {where}", params)
            return cursor.rowcount

    @_store_errors
    def prune(self, older_than: float = DEDUPE_WINDOW) -> int:
        """Forget delivered and suppressed jobs, and dedupe entries, older than `older_than`
        (24 hours: what dedupe needs). Once claims are kept for their own windows; dead
        letters and dry-run recordings are kept until purged."""
        now = self.clock()
        cutoff = now - older_than
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM outbox WHERE status IN ('delivered', 'suppressed')"
                                " AND finished_at < ?", (cutoff,))
            db.execute("DELETE FROM seen WHERE seen_at < ?", (now - DEDUPE_WINDOW,))
            return cursor.rowcount


def _claim_key(source: str, destination: str, key: str) -> str:
    return f"{source}\x1f{destination}\x1f{key}"


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT under the outbox lock; ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db = db
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        try:
            if kind is None:
                try:
                    self.db.execute("COMMIT")
                except BaseException:  # a full disk, say: the transaction is still open
                    self._rollback()
                    raise
            else:
                self._rollback()
        finally:
            self.lock.release()

    def _rollback(self) -> None:
        if self.db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the error that brought us here says more
