"""The outbox: where mapped requests wait, durably, until they are delivered.

The intake and the delivery worker talk to it only through the `Outbox` protocol below;
two backends implement it: SQLite (sqlite_outbox.py, one machine) and PostgreSQL
(postgres_outbox.py, any number of processes on any number of machines).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

import orjson

from ..errors import StoreUnavailable
from ..outcomes import Request
from ..serialization import format_datetime

__all__ = ["Outbox", "NewJob", "Job", "EnqueueResult", "Delivered", "Retry", "Dead",
           "JobOutcome", "JobStatus", "recorded_view", "job_counts", "DEDUPE_WINDOW", "ONCE_RECHECK", "MAX_STORED_BODY",
           "ROW_COLUMNS", "readable_rows"]

DEDUPE_WINDOW = 24 * 3600.0
"""Seconds during which a second request with the same (destination, messageId) is a
duplicate."""
ONCE_RECHECK = 5.0
"""Seconds a job waits while another job holding its once key is still being retried."""
MAX_STORED_BODY = 4096
"""The most characters of a failed response's body kept with a dead letter."""

JobStatus = Literal["pending", "delivered", "dead", "suppressed", "recorded"]


@dataclass(frozen=True, slots=True)
class NewJob:
    """A request as it is stored: never with its secret (auth) headers.

    `request` is the stored form, JSON bytes of {method, url, headers, encoding, body}."""

    destination: str
    rule: str
    message_id: str | None
    request: bytes
    deliver_after: float | None = None
    once_key: str | None = None
    once_window: float | None = None
    batch_item: bytes | None = None
    """JSON `[list name, item]`: the request's part of its destination's bulk request."""

    @classmethod
    def from_request(cls, request: Request) -> NewJob:
        """The stored form of a mapped request, without the headers rendered from secret
        settings (delivery renders them again from the current settings)."""
        headers = {k: v for k, v in request.headers.items() if k not in request.secret_headers}
        url = request.url if request.stored_url is None else request.stored_url
        blob = orjson.dumps({"method": request.method, "url": url, "headers": headers,
                             "encoding": request.encoding, "body": request.body})
        due = request.deliver_after.timestamp() if request.deliver_after is not None else None
        item = None if request.batch_into is None else orjson.dumps([request.batch_into,
                                                                    request.batch_item])
        return cls(request.destination, request.rule, request.message_id, blob, due,
                   request.once_key, request.once_window, item)


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What happened to the requests of one enqueue call."""

    stored: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Job:
    """A stored request, as the sender needs it (never with auth headers)."""

    id: int
    source: str
    destination: str
    rule: str
    message_id: str | None
    method: str
    url: str
    headers: dict[str, str]
    encoding: str
    body: Any
    attempts: int
    accepted_at: float
    window_start: float
    once_key: str | None
    once_window: float | None
    batch_item: tuple[str, Any] | None = None
    """The job's part of its destination's bulk request: (list name, item)."""
    batch_size: int = 0
    """Bytes of that part as stored (what a bulk's max_bytes counts)."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination took the job (a 2xx `status`)."""

    job: Job
    status: int


@dataclass(frozen=True, slots=True)
class Retry:
    """The attempt failed for now: try again at `due_at` (epoch seconds)."""

    job: Job
    due_at: float
    status: int | None
    error: str


@dataclass(frozen=True, slots=True)
class Dead:
    """The job failed for good: keep it as a dead letter, with what the destination said
    (`body` is cut to MAX_STORED_BODY characters)."""

    job: Job
    status: int | None
    error: str
    body: str | None = None


JobOutcome = Delivered | Retry | Dead


class Outbox(Protocol):
    """The durable outbox: one record per request to deliver.

    Every implementation guarantees (README, "Delivery"):
    - **durable before it returns**: `enqueue_many` commits (to disk, or to a server that has
      it on disk) before returning, so an event is acknowledged only once what it maps to
      is stored; a batch is stored whole or not at all;
    - **leases**: a job given out by `lease` is not given out again until its lease expires
      or its outcome is recorded, to this process or any other; a lease left by a process
      that died is taken back (at the latest when it expires), so delivery is
      at-least-once;
    - **dedupe**: a job whose (destination, message_id) was accepted in the last
      DEDUPE_WINDOW seconds is a duplicate and is not stored;
    - **deferral**: a job with `deliver_after` is not leased before that time, across
      restarts;
    - **once keys**: among jobs with the same once key (scoped to source and destination),
      one is sent per window, whichever process leases them: a job is suppressed when another with its key was delivered
      inside the window; while that other one is still being tried, it waits for the
      outcome, and goes ahead if the other one dead-lettered;
    - **dead letters** are kept, with their last status, error and response body, until
      replayed or purged; delivered and suppressed jobs are pruned after DEDUPE_WINDOW.
    It never sees secrets: jobs come without their auth headers (see NewJob).

    A store that cannot be used (a full disk, a lock held too long, a corrupt file, a
    server that cannot be reached) raises `engine.errors.StoreUnavailable` from any method,
    with a transaction rolled back whole: callers answer 503, print one line, or wait and
    try again.
    """

    clock: Callable[[], float]
    """Seconds since the epoch; replaced in tests."""

    def enqueue_many(self, batches: Sequence[tuple[str, Sequence[NewJob]]], *,
                     status: JobStatus = "pending") -> list[EnqueueResult]:
        """Store each (source, jobs) batch durably, all in one transaction (what concurrent
        requests accepted is made durable by one commit); say for each batch how many jobs
        were stored and how many were duplicates. `status="recorded"` keeps them without
        sending (dry run)."""
        ...

    def notify_new_jobs(self, callback: Callable[[], None]) -> bool:
        """Have `callback` called (from any thread) each time any process commits jobs to
        deliver, until `close`. Returns False when the backend cannot tell (the caller then
        looks now and then; `serve` wakes its own delivery process through a pipe)."""
        ...

    def claim_delivery(self) -> int:
        """Become a delivering process of this outbox; free the leases of processes that
        died. Returns how many leases were freed; raises DeliveryLocked when the backend
        allows one delivering process and another one has it."""
        ...

    def lease(self, free: dict[str, int], default_free: int, lease_seconds: float) -> list[Job]:
        """Take due jobs for `lease_seconds`: at most `free[destination]` per destination
        named, so that nothing leased waits behind a busy destination, and at most
        `default_free` of each other destination with jobs (one no longer configured, say;
        looked up at claim time and every half minute); when `free` names none,
        `default_free` jobs of any.
        Jobs suppressed by their once key are settled here, not returned."""
        ...

    def record(self, outcomes: Sequence[JobOutcome]) -> None:
        """Record what became of leased jobs, in one transaction; the jobs' leases end."""
        ...

    def next_due(self, *, retries_only: bool = False) -> float | None:
        """When the next pending job is due (leases included), or None. `retries_only`
        leaves out deferred jobs that were never attempted (deliver_after)."""
        ...

    def counts(self) -> dict[str, int]:
        """How many jobs there are in each status."""
        ...

    def ping(self) -> None:
        """Raise if the store cannot be read now (a cheap check, for readiness probes)."""
        ...

    def rows(self, status: JobStatus, limit: int = 100, ids: Sequence[int] = (),
             sources: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Stored jobs with a status (of these `ids`, from these `sources`, when given),
        newest first, as dictionaries for people to read."""
        ...

    def replay(self, ids: Sequence[int] = (), *, all_dead: bool = False) -> int:
        """Make dead letters pending again, due now, with a fresh retry budget."""
        ...

    def purge(self, ids: Sequence[int] = (), *, all_dead: bool = False) -> int:
        """Delete dead letters for good."""
        ...

    def prune(self, older_than: float = DEDUPE_WINDOW) -> int:
        """Forget delivered and suppressed jobs, and dedupe entries, older than `older_than`
        seconds. Dead letters and dry-run recordings are kept until purged."""
        ...

    def close(self) -> None:
        """Release the store (and the right to deliver it). Closing twice is harmless."""
        ...


ROW_COLUMNS = ("id", "source", "destination", "rule", "message_id", "request", "attempts",
               "accepted_at", "due_at", "last_status", "last_error", "last_body", "finished_at",
               "once_key", "once_window")
"""The columns `Outbox.rows` reads, in order, on every backend."""


def readable_rows(found: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows of ROW_COLUMNS as `Outbox.rows` returns them: dictionaries, the stored request
    read back from its JSON."""
    out = []
    for row in found:
        item = dict(zip(ROW_COLUMNS, row, strict=True))
        item["request"] = orjson.loads(item["request"])
        out.append(item)
    return out


def job_counts(outbox: Outbox) -> dict[str, float]:
    """`outbox.counts()` for a metrics gauge: none while the outbox cannot be read (what
    /health and the logs say)."""
    try:
        return {status: float(count) for status, count in outbox.counts().items()}
    except StoreUnavailable:
        return {}


def recorded_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of `Outbox.rows` as `/v1/recorded` and `engine recorded` show it: the request
    as `engine map` prints it (body under "json" or "form", `deliver_after` and `once` when
    it has them)."""
    request = dict(row["request"])
    body = request.pop("body")
    if body is not None:
        request["form" if request.pop("encoding") == "form" else "json"] = body
    else:
        request.pop("encoding")
    if row.get("due_at") is not None and row["due_at"] > row.get("accepted_at", row["due_at"]):
        request["deliver_after"] = format_datetime(datetime.fromtimestamp(row["due_at"], timezone.utc))
    if row.get("once_key") is not None:
        window = row.get("once_window")
        request["once"] = {"key": row["once_key"],
                           "window_seconds": int(window) if isinstance(window, float)
                           and window.is_integer() else window}
    return {"id": row["id"], "destination": row["destination"], "rule": row["rule"],
            "message_id": row["message_id"], "request": request}
