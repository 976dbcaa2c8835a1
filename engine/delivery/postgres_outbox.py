"""The outbox on PostgreSQL: one database shared by any number of intake and delivery
processes, on any number of machines.

It keeps every guarantee of the `Outbox` protocol (outbox.py), across processes:
- a commit has reached the server's disk (`synchronous_commit`, PostgreSQL's default)
  before `enqueue_many` returns; dedupe marks are taken with `INSERT .. ON CONFLICT`, so
  two shims accepting the same message at once store it once;
- several delivering processes lease at once: each lease query takes its rows `FOR UPDATE
  SKIP LOCKED`, so none waits for another and no job goes to two of them;
- a delivering process holds a session advisory lock on a random token and stamps its
  leases with it; when the process dies its session ends and the lock with it, and the
  others take its leases back at their next look (every DEAD_RECHECK seconds), or anyone
  once the leases expire;
- once keys: the claim row of a key is taken with `INSERT .. ON CONFLICT` and row locks,
  so exactly one job holds a key in its window, whichever process leased it;
- new jobs are announced with NOTIFY (postgres_listen.py), so delivering processes wake at
  once instead of polling.

Times are the engine's clock (seconds since the epoch), as in the SQLite outbox, not the
server's: tests move the clock, and every process agrees with itself.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from contextlib import contextmanager, suppress
from typing import Any, Callable, Iterator, Sequence

import orjson
import psycopg
from psycopg import errors as pg_errors

from ..errors import StoreError
from ..store import PostgresStore
from .outbox import (DEDUPE_WINDOW, MAX_STORED_BODY, ONCE_RECHECK, ROW_COLUMNS, Delivered,
                     EnqueueResult, Job, JobOutcome, JobStatus, NewJob, Retry, readable_rows)
from .postgres_listen import CHANNEL, Listener
from .postgres_schema import migrate

__all__ = ["PostgresOutbox", "connect"]

log = logging.getLogger("engine.delivery")

DEAD_RECHECK = 5.0
"""Seconds between two looks for leases whose delivering process is gone."""
_STRAYS_RECHECK = 30.0
"""Seconds between two looks for destinations with jobs that the lease is not asked about."""
CONNECT_TIMEOUT = 10
"""Seconds a connection attempt may take before the store is said to be unreachable."""
_RETRIES = 5
"""Times a transaction is tried again after a deadlock or a serialization failure."""

Connection = psycopg.Connection[tuple[Any, ...]]

_JOB_COLUMNS = ("id, source, destination, rule, message_id, request, attempts, accepted_at,"
                " window_start, once_key, once_window, batch_item")
_DUE = ("status = 'pending' AND due_at <= %(now)s"
        " AND (leased_until IS NULL OR leased_until < %(now)s)")
# A token's session lock, as pg_locks shows a one-key (bigint) advisory lock.
_LIVE_TOKENS = ("SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
                " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def connect(store: PostgresStore) -> Connection:
    """A connection to `store` in autocommit mode, or StoreError saying why not (the
    password never in it)."""
    try:
        return psycopg.connect(store.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               application_name="engine")
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the outbox at {store}: {_reason(store, exc)}") from None


def _reason(store: PostgresStore, exc: BaseException) -> str:
    """The driver's message on one line, without the password."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return store.scrub(text.removeprefix("connection failed: "))


class PostgresOutbox:
    """The outbox in the PostgreSQL database `store`. Thread-safe: one connection, used
    under a lock (and another, for wake-ups, once `notify_new_jobs` is called)."""

    def __init__(self, store: PostgresStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._token = secrets.randbits(62) + 1  # positive: pg_locks shows it as two halves
        self._registered = False
        self._listener: Listener | None = None
        self._strays: set[str] = set()
        self._strays_checked = 0.0
        self._dead_checked = 0.0
        self._closed = False
        self._db: Connection | None = connect(store)
        try:
            migrate(self._db)
        except psycopg.Error as exc:
            self._db.close()
            raise StoreError(f"cannot prepare the outbox at {store}: {_reason(store, exc)}") from None
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresOutbox({self.store})"

    # -- the connection ------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[Connection]:
        """The connection, under the lock; a lost one is replaced first. Driver errors
        that mean the server is out of reach become StoreError."""
        with self._lock:
            if self._closed:
                raise StoreError("the outbox is closed")
            try:
                if self._db is None or self._db.closed or self._db.broken:
                    self._reconnect()
                assert self._db is not None
                yield self._db
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if isinstance(exc, (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)):
                    raise
                raise StoreError(f"the outbox at {self.store} failed: {_reason(self.store, exc)}") from None

    def _reconnect(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None
        self._db = connect(self.store)
        if self._registered:  # a new session: hold the token again (leases keep it)
            self._db.execute("SELECT pg_advisory_lock(%s)", (self._token,))

    def _transaction(self, work: Callable[[Connection], Any]) -> Any:
        """`work(db)` in one transaction, tried again after a deadlock or serialization
        failure (both roll back everything, so running it again is safe)."""
        for attempt in range(_RETRIES + 1):
            try:
                with self._session() as db, db.transaction():
                    return work(db)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _RETRIES:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connections (and give up the leases this process holds: the others
        take them back). Closing twice is harmless."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            self._closed = True
            if self._db is not None:
                if self._registered and not (self._db.closed or self._db.broken):
                    # The server ends a closed session's locks on its own, but a moment
                    # later; giving the token up first lets the others take the leases
                    # back at once (a killed process relies on the server alone).
                    with suppress(psycopg.Error):
                        self._db.execute("SELECT pg_advisory_unlock(%s)", (self._token,))
                self._db.close()
                self._db = None

    # -- intake --------------------------------------------------------------------------

    def enqueue(self, source: str, jobs: Sequence[NewJob], *,
                status: JobStatus = "pending") -> EnqueueResult:
        """`enqueue_many` for one source's jobs (a convenience for tools and tests)."""
        return self.enqueue_many([(source, jobs)], status=status)[0]

    def enqueue_many(self, batches: Sequence[tuple[str, Sequence[NewJob]]], *,
                     status: JobStatus = "pending") -> list[EnqueueResult]:
        """Store each (source, jobs) batch in one transaction, and say what was stored and
        what was a duplicate; delivering processes are notified at commit."""
        now = self.clock()
        # Sorted, so that two shims taking overlapping keys lock them in one order.
        keys = sorted({(j.destination, _text(j.message_id)) for _, jobs in batches for j in jobs
                       if j.message_id is not None})

        def work(db: Connection) -> list[EnqueueResult]:
            fresh: set[tuple[str, str]] = set()
            if keys:
                # A key is taken when it is new or its mark is older than the window; a
                # shim storing the same key at this moment makes this wait for its commit,
                # then see its mark: one of the two stores the job.
                fresh = set(db.execute(
                    "INSERT INTO engine_seen AS s (destination, message_id, seen_at)"
                    " SELECT d, m, %s FROM unnest(%s::text[], %s::text[]) AS k(d, m)"
                    " ON CONFLICT (destination, message_id) DO UPDATE SET seen_at = EXCLUDED.seen_at"
                    " WHERE s.seen_at <= %s RETURNING destination, message_id",
                    (now, [k[0] for k in keys], [k[1] for k in keys], now - DEDUPE_WINDOW)).fetchall())
            results, rows = [], []
            for source, jobs in batches:
                stored = 0
                for job in jobs:
                    if job.message_id is not None:
                        key = (job.destination, _text(job.message_id))
                        if key not in fresh:
                            continue
                        fresh.discard(key)  # a second copy in the same batch is a duplicate too
                    due = now if job.deliver_after is None else job.deliver_after
                    rows.append((source, job.destination, job.rule, _text(job.message_id),
                                 job.request, status, now, max(now, due), due,
                                 _text(job.once_key), job.once_window,
                                 now if status != "pending" else None, job.batch_item))
                    stored += 1
                results.append(EnqueueResult(stored, len(jobs) - stored))
            if rows:
                with db.cursor().copy(
                        "COPY engine_outbox (source, destination, rule, message_id, request, status,"
                        " accepted_at, window_start, due_at, once_key, once_window, finished_at,"
                        " batch_item) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                if status == "pending":
                    db.execute(f"NOTIFY {CHANNEL}")  # sent at commit, and only if it commits
            return results

        results: list[EnqueueResult] = self._transaction(work)
        return results

    # -- delivery ------------------------------------------------------------------------

    def notify_new_jobs(self, callback: Callable[[], None]) -> bool:
        """Call `callback` (on a thread of its own) each time any process commits jobs to
        deliver: LISTEN on a connection of its own. Returns True."""
        if self._listener is None:
            self._listener = Listener(lambda: connect(self.store), callback)
        return True

    def claim_delivery(self) -> int:
        """Become one of the processes delivering this outbox (any number may), and free
        the leases of those that died. Returns how many leases were freed."""
        with self._session() as db:
            self._register(db)
            self._strays = self._pending_destinations(db)
            return self._free_dead_leases(db)

    def _register(self, db: Connection) -> None:
        """Hold this process's token (a session advisory lock) while it lives."""
        if not self._registered:
            db.execute("SELECT pg_advisory_lock(%s)", (self._token,))
            self._registered = True

    def _free_dead_leases(self, db: Connection) -> int:
        """Free the leases stamped with a token no session holds: their process is gone."""
        self._dead_checked = time.monotonic()
        cursor = db.execute(
            "UPDATE engine_outbox SET leased_until = NULL, leased_by = NULL"
            " WHERE leased_until IS NOT NULL AND status = 'pending'"
            f" AND (leased_by IS NULL OR leased_by NOT IN ({_LIVE_TOKENS}))")
        return cursor.rowcount

    def _pending_destinations(self, db: Connection) -> set[str]:
        self._strays_checked = time.monotonic()
        return {d for (d,) in db.execute(
            "SELECT DISTINCT destination FROM engine_outbox WHERE status = 'pending'")}

    def lease(self, free: dict[str, int], default_free: int, lease_seconds: float) -> list[Job]:
        """Take due jobs for `lease_seconds`: at most `free[destination]` (else
        `default_free`) per destination; jobs another process is taking are skipped, not
        waited for. Jobs whose once key was used inside their window are suppressed here."""
        now = self.clock()
        with self._session() as db:
            self._register(db)
            if time.monotonic() >= self._dead_checked + DEAD_RECHECK:
                freed = self._free_dead_leases(db)
                if freed:
                    log.info("took back %d leases of a delivering process that is gone", freed)

        def work(db: Connection) -> list[Job]:
            return self._lease(db, now, free, default_free, lease_seconds)

        jobs: list[Job] = self._transaction(work)
        return jobs

    def _lease(self, db: Connection, now: float, free: dict[str, int], default_free: int,
               lease_seconds: float) -> list[Job]:
        params = {"now": now}
        query = (f"SELECT {_JOB_COLUMNS} FROM engine_outbox WHERE destination = %(destination)s"
                 f" AND {_DUE} ORDER BY due_at, id LIMIT %(count)s FOR UPDATE SKIP LOCKED")
        rows: list[tuple[Any, ...]] = []
        for destination, count in free.items():
            if count > 0:
                rows += db.execute(query, {**params, "destination": destination, "count": count}).fetchall()
        if not free:
            rows += db.execute(f"SELECT {_JOB_COLUMNS} FROM engine_outbox WHERE {_DUE}"
                               " ORDER BY due_at, id LIMIT %(count)s FOR UPDATE SKIP LOCKED",
                               {**params, "count": default_free}).fetchall()
        # Destinations not named (none in this process's configuration, say) get theirs
        # too: those with jobs, looked up at claim time and every _STRAYS_RECHECK seconds.
        if free and time.monotonic() >= self._strays_checked + _STRAYS_RECHECK:
            self._strays = self._pending_destinations(db)
        for destination in sorted(self._strays - set(free)) if free else ():  # else all are asked
            found = db.execute(query, {**params, "destination": destination,
                                       "count": default_free}).fetchall()
            rows += found
            if not found and db.execute("SELECT 1 FROM engine_outbox WHERE status = 'pending'"
                                        " AND destination = %s LIMIT 1", (destination,)).fetchone() is None:
                self._strays.discard(destination)
        slots = dict(free)
        taken = []
        for row in rows:
            if slots.setdefault(row[2], default_free) <= 0:
                continue
            slots[row[2]] -= 1
            taken.append(row)
        # Once keys are claimed in one order in every process, so that two leases never
        # wait for each other's claims.
        keyed = sorted((row for row in taken if row[9] is not None),
                       key=lambda row: (_claim_key(row[1], row[2], row[9]), row[0]))
        refused = {row[0] for row in keyed if not self._claim(db, row, now)}
        jobs = [_job(row) for row in taken if row[0] not in refused]
        if jobs:
            db.execute("UPDATE engine_outbox SET leased_until = %s, leased_by = %s WHERE id = ANY(%s)",
                       (now + lease_seconds, self._token, [job.id for job in jobs]))
        return jobs

    def _claim(self, db: Connection, row: tuple[Any, ...], now: float) -> bool:
        """Claim the once key of job `row` for it; False when another job holds it (the job
        then waits for that one's outcome, or is suppressed if it was delivered)."""
        job_id, once_window = row[0], row[10] or 0
        # A key is scoped to its source and destination: one customer in two sources'
        # accounts is two customers.
        key = _claim_key(row[1], row[2], row[9])
        if db.execute("INSERT INTO engine_once_claims (key, claimed_at, outbox_id) VALUES (%s, %s, %s)"
                      " ON CONFLICT (key) DO NOTHING RETURNING 1", (key, now, job_id)).fetchone():
            return True
        # Locked to the end of the transaction: no other process judges this key meanwhile.
        claim = db.execute("SELECT claimed_at, outbox_id FROM engine_once_claims WHERE key = %s"
                           " FOR UPDATE", (key,)).fetchone()
        if claim is not None and claim[1] != job_id and claim[0] > now - once_window:
            holder = db.execute("SELECT status FROM engine_outbox WHERE id = %s", (claim[1],)).fetchone()
            if holder is not None and holder[0] == "pending":
                # The key's holder is still being tried: wait for its outcome rather than
                # guess it (if it dead-letters, this job goes).
                db.execute("UPDATE engine_outbox SET due_at = %s, waiting_on = %s WHERE id = %s",
                           (now + ONCE_RECHECK, claim[1], job_id))
                return False
            db.execute("UPDATE engine_outbox SET status = 'suppressed', finished_at = %s, last_error = %s"
                       " WHERE id = %s", (now, f"once: key already used at {claim[0]:.0f} "
                                               f"(job {claim[1]}), inside its window", job_id))
            return False
        db.execute("INSERT INTO engine_once_claims (key, claimed_at, outbox_id) VALUES (%s, %s, %s)"
                   " ON CONFLICT (key) DO UPDATE SET claimed_at = EXCLUDED.claimed_at,"
                   " outbox_id = EXCLUDED.outbox_id", (key, now, job_id))
        return True

    def record(self, outcomes: Sequence[JobOutcome]) -> None:
        """Record what became of leased jobs, in one transaction. A delivery counts
        whoever made it; a retry or a dead letter counts only while this process still
        holds the job's lease (if another took it back, that one's outcome will)."""
        if not outcomes:
            return
        now = self.clock()
        delivered: list[tuple[int, int]] = []
        retried: list[tuple[int, float, int | None, str]] = []
        dead: list[tuple[int, int | None, str, str | None]] = []
        once = {o.job.id: o.job for o in outcomes if o.job.once_key is not None}
        for outcome in outcomes:
            job = outcome.job
            if isinstance(outcome, Delivered):
                delivered.append((job.id, outcome.status))
            elif isinstance(outcome, Retry):
                retried.append((job.id, outcome.due_at, outcome.status, outcome.error))
            else:
                dead.append((job.id, outcome.status, outcome.error,
                             (outcome.body or "")[:MAX_STORED_BODY] or None))

        def work(db: Connection) -> None:
            settled: list[int] = []
            if delivered:
                settled += [i for (i,) in db.execute(
                    "UPDATE engine_outbox j SET status = 'delivered', attempts = j.attempts + 1,"
                    " last_status = o.st, leased_until = NULL, leased_by = NULL, finished_at = %s,"
                    " last_error = NULL FROM unnest(%s::bigint[], %s::integer[]) AS o(id, st)"
                    " WHERE j.id = o.id AND j.status = 'pending' RETURNING j.id",
                    (now, [d[0] for d in delivered], [d[1] for d in delivered]))]
            if retried:
                db.execute(
                    "UPDATE engine_outbox j SET attempts = j.attempts + 1, due_at = o.due,"
                    " leased_until = NULL, leased_by = NULL, last_status = o.st, last_error = o.err"
                    " FROM unnest(%s::bigint[], %s::float8[], %s::integer[], %s::text[])"
                    " AS o(id, due, st, err)"
                    " WHERE j.id = o.id AND j.status = 'pending' AND j.leased_by = %s",
                    ([r[0] for r in retried], [r[1] for r in retried], [r[2] for r in retried],
                     [r[3] for r in retried], self._token))
            if dead:
                gone = [i for (i,) in db.execute(
                    "UPDATE engine_outbox j SET status = 'dead', attempts = j.attempts + 1,"
                    " leased_until = NULL, leased_by = NULL, last_status = o.st, last_error = o.err,"
                    " last_body = o.body, finished_at = %s"
                    " FROM unnest(%s::bigint[], %s::integer[], %s::text[], %s::text[])"
                    " AS o(id, st, err, body)"
                    " WHERE j.id = o.id AND j.status = 'pending' AND j.leased_by = %s RETURNING j.id",
                    (now, [d[0] for d in dead], [d[1] for d in dead], [d[2] for d in dead],
                     [d[3] for d in dead], self._token))]
                settled += gone
                # A key whose send failed for good is free again.
                freed = sorted((_claim_key(once[i].source, once[i].destination, once[i].once_key or ""), i)
                               for i in gone if i in once)
                if freed:
                    db.execute("DELETE FROM engine_once_claims c USING unnest(%s::text[], %s::bigint[])"
                               " AS f(key, id) WHERE c.key = f.key AND c.outbox_id = f.id",
                               ([f[0] for f in freed], [f[1] for f in freed]))
            # Jobs waiting on a settled job's once key learn its outcome now, not at their
            # next check.
            waited = [i for i in settled if i in once]
            if waited:
                db.execute("UPDATE engine_outbox SET due_at = %s, waiting_on = NULL"
                           " WHERE waiting_on = ANY(%s) AND status = 'pending'", (now, waited))

        self._transaction(work)

    def next_due(self, *, retries_only: bool = False) -> float | None:
        """When the next pending job is due (leases included, any process's), or None.
        `retries_only` leaves out deferred jobs that were never attempted (deliver_after)."""
        query = ("SELECT min(due_at) FROM engine_outbox WHERE status = 'pending' AND leased_until IS NULL"
                 + (" AND (attempts > 0 OR due_at <= %s)" if retries_only else ""))
        with self._session() as db:
            first = db.execute(query, (self.clock(),) if retries_only else ()).fetchone()
            lease = db.execute("SELECT min(leased_until) FROM engine_outbox"
                               " WHERE leased_until IS NOT NULL").fetchone()
        times = [t for t in (first[0] if first else None, lease[0] if lease else None) if t is not None]
        return min(times) if times else None

    # -- inspection and repair -----------------------------------------------------------

    def ping(self) -> None:
        with self._session() as db:
            db.execute("SELECT 1 FROM engine_outbox LIMIT 1").fetchall()

    def counts(self) -> dict[str, int]:
        with self._session() as db:
            return dict(db.execute("SELECT status, count(*) FROM engine_outbox GROUP BY status").fetchall())

    def rows(self, status: JobStatus, limit: int = 100, ids: Sequence[int] = (),
             sources: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Stored rows with a status, newest first, as dictionaries for people to read."""
        query = f"SELECT {', '.join(ROW_COLUMNS)} FROM engine_outbox WHERE status = %s"
        params: list[Any] = [status]
        if ids:
            query += " AND id = ANY(%s)"
            params.append(list(ids))
        if sources:
            query += " AND source = ANY(%s)"
            params.append(list(sources))
        query += " ORDER BY id DESC LIMIT %s"
        params.append(limit)
        with self._session() as db:
            return readable_rows(db.execute(query, params).fetchall())

    def replay(self, ids: Sequence[int] = (), *, all_dead: bool = False) -> int:
        """Make dead letters pending again, due now, with a fresh retry budget."""
        if not ids and not all_dead:
            return 0
        now = self.clock()

        def work(db: Connection) -> int:
            where, params = _dead(ids, all_dead)
            count: int = db.execute(
                "UPDATE engine_outbox SET status = 'pending', attempts = 0, due_at = %s,"
                " window_start = %s, leased_until = NULL, leased_by = NULL, finished_at = NULL"
                f" WHERE {where}", [now, now, *params]).rowcount
            if count:
                db.execute(f"NOTIFY {CHANNEL}")
            return count

        replayed: int = self._transaction(work)
        return replayed

    def purge(self, ids: Sequence[int] = (), *, all_dead: bool = False) -> int:
        """Delete dead letters for good."""
        if not ids and not all_dead:
            return 0
        where, params = _dead(ids, all_dead)
        with self._session() as db:
            return db.execute(f"DELETE FROM engine_outbox WHERE {where}", params).rowcount

    def prune(self, older_than: float = DEDUPE_WINDOW) -> int:
        """Forget delivered and suppressed jobs, and dedupe marks, older than `older_than`
        (24 hours: what dedupe needs). Once claims are kept for their own windows; dead
        letters and dry-run recordings are kept until purged."""
        now = self.clock()

        def work(db: Connection) -> int:
            count: int = db.execute("DELETE FROM engine_outbox WHERE status IN ('delivered', 'suppressed')"
                                    " AND finished_at < %s", (now - older_than,)).rowcount
            db.execute("DELETE FROM engine_seen WHERE seen_at < %s", (now - DEDUPE_WINDOW,))
            return count

        pruned: int = self._transaction(work)
        return pruned


def _dead(ids: Sequence[int], everything: bool) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) for these dead letters, or all of them."""
    if everything:
        return "status = 'dead'", []
    return "status = 'dead' AND id = ANY(%s)", [list(ids)]


def _text(value: str | None) -> str | None:
    """`value` as PostgreSQL text can hold it: a NUL (which SQLite keeps, and an event may
    carry in its messageId) becomes U+FFFD, rather than failing the whole commit."""
    return value if value is None or "\x00" not in value else value.replace("\x00", "\ufffd")


def _claim_key(source: str, destination: str, key: str) -> str:
    return f"{source}\x1f{destination}\x1f{key}"


def _job(row: tuple[Any, ...]) -> Job:
    data = orjson.loads(row[5])
    item = orjson.loads(row[11]) if row[11] is not None else None
    return Job(row[0], row[1], row[2], row[3], row[4], data["method"], data["url"],
               data["headers"], data["encoding"], data["body"], row[6], row[7], row[8],
               row[9], row[10], (item[0], item[1]) if item is not None else None,
               len(row[11]) if row[11] is not None else 0)
