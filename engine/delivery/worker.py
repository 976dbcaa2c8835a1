"""The delivery worker: lease due jobs from the outbox, send them, record what happened.

Authentication is applied here, at send time, from the current configuration: stored jobs
never hold it, and a rotated key is used for pending work. Outcomes are recorded in batches:
those of every send that finished since the loop last looked go in one transaction, before
the next lease (a job stays leased until its outcome is recorded, so it is never sent twice
by this process; a crash before the record sends it again: at least once).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import aiohttp
import orjson

from ..config import Config
from ..errors import EventError, SettingsError, StoreError, StoreUnavailable
from ..metrics import Metrics
from ..redact import redact
from .outbox import MAX_STORED_BODY, Dead, Delivered, Job, JobOutcome, Outbox, Retry
from .sender import Attempt, backoff, client_session, exchange, send

if TYPE_CHECKING:  # the worker runs compiled destinations; it imports none of their making
    from ..mapping.destination import BoundDestination

__all__ = ["Deliverer", "run_forever"]

log = logging.getLogger("engine.delivery")

PRUNE_INTERVAL = 600.0
"""Seconds between two prunings of delivered jobs and old dedupe entries."""
IDLE_RECHECK = 0.1
"""Seconds between two looks while due jobs wait for a slot (a finished send also wakes)."""
STORE_RETRY_MAX = 30.0
"""The longest wait, in seconds, between two tries of an outbox that cannot be used (a full
disk, a lock held elsewhere): the wait doubles from one second up to it."""
IDLE_MAX = 1.0
"""The longest an idle loop waits before it looks at the outbox again, when the outbox
cannot say that another process committed jobs (SQLite, written by a shim run apart)."""
IDLE_MAX_NOTIFIED = 5.0
"""The same when it can (PostgreSQL's NOTIFY wakes the loop at once): the loop still looks
this often, for the leases of processes that died (taken back by `lease`)."""


class Deliverer:
    """Delivers the outbox of `config`, `config.delivery.concurrency` requests at a time per
    destination."""

    def __init__(self, config: Config, outbox: Outbox, *, metrics: Metrics | None = None) -> None:
        self.config = config
        self.outbox = outbox
        self.metrics = metrics or Metrics()
        self.wakeup = asyncio.Event()
        self._secrets = config.secrets()
        self._in_flight: dict[str, int] = {}
        self._sending: set[int] = set()
        self._decided: set[int] = set()  # jobs of sends under way whose outcome is known
        self._outcomes: list[JobOutcome] = []
        # Leased jobs not sent yet: units (one job, or a bulk of several) waiting for a slot
        # of their destination, and bulk items still gathering, per (source, destination).
        self._queued: dict[str, deque[list[Job]]] = {}
        self._forming: dict[tuple[str, str], tuple[float, list[Job]]] = {}
        self._store_down: str | None = None  # why the outbox failed, until it works again
        self._store_waits = 0
        self._idle_max = IDLE_MAX

    def _client(self) -> aiohttp.ClientSession:
        # Slots per destination are the worker's to count; destinations may share a host.
        per_destination = self.config.delivery.concurrency
        return client_session(per_destination * max(1, len(self.config.destinations)), 0)

    def _flush(self) -> None:
        """Record the outcomes of the sends that finished, in one transaction. If the outbox
        cannot take them now, they are kept for the next try (their jobs stay leased, and
        this process does not send them again meanwhile)."""
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            try:
                self.outbox.record(outcomes)
            except StoreUnavailable:
                self._outcomes = outcomes + self._outcomes
                raise

    async def _wait_for_store(self, exc: StoreUnavailable, stop: asyncio.Event) -> None:
        """The outbox failed: say so once (not once a turn), and wait before the next try,
        longer each time, up to STORE_RETRY_MAX seconds, or until `stop`."""
        if self._store_down != str(exc):
            log.error("the outbox cannot be used: %s; delivery tries again, waiting up to %gs "
                      "between tries", exc, STORE_RETRY_MAX)
        self._store_down = str(exc)
        delay = min(STORE_RETRY_MAX, 2.0 ** self._store_waits)
        self._store_waits += 1
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass

    def _store_works(self) -> None:
        if self._store_down is not None:
            log.warning("the outbox works again (it failed: %s); delivery goes on", self._store_down)
            self._store_down = None
            self._store_waits = 0

    async def run(self, stop: asyncio.Event, *, drain_timeout: float = 30.0) -> None:
        """Deliver until `stop` is set; then let requests in flight finish (up to
        `drain_timeout` seconds; what is cut off stays leased and is retried later).
        Raises DeliveryLocked if another process delivers this outbox. An outbox that cannot
        be used (StoreUnavailable, or a database's StoreError) is logged once and tried
        again, ever less often; what was leased stays leased meanwhile."""
        while True:
            try:
                self.outbox.claim_delivery()
                break
            except StoreUnavailable as exc:
                if stop.is_set():
                    return
                await self._wait_for_store(exc, stop)
        claimed = True
        loop = asyncio.get_running_loop()

        def woken() -> None:  # on the outbox's thread
            loop.call_soon_threadsafe(self.wakeup.set)

        if self.outbox.notify_new_jobs(woken):
            self._idle_max = IDLE_MAX_NOTIFIED
        tasks: set[asyncio.Task[None]] = set()
        next_prune = 0.0
        async with self._client() as client:
            while not stop.is_set():
                try:
                    if not claimed:  # a database came back: a new session claims again
                        self.outbox.claim_delivery()
                        claimed = True
                    if time.monotonic() >= next_prune:  # keep the outbox from growing forever
                        self.outbox.prune()
                        next_prune = time.monotonic() + PRUNE_INTERVAL
                    started = self._start(client, tasks, force=False)
                    if not started:
                        await self._idle(stop)
                except StoreUnavailable as exc:
                    # A database's connection is new when it comes back, and its session
                    # claims delivery again (SQLite's file lock stays held meanwhile).
                    claimed = not isinstance(exc, StoreError)
                    await self._wait_for_store(exc, stop)
                    continue
                self._store_works()
                if started:
                    await asyncio.sleep(0)
            if tasks:
                await asyncio.wait(tasks, timeout=drain_timeout)
            try:
                self._flush()
            except StoreUnavailable as exc:
                log.error("the outcomes of %d sends could not be recorded (%s): their jobs are "
                          "sent again by the next delivering process", len(self._outcomes), exc)

    async def drain(self, *, max_seconds: float = 60.0) -> None:
        """Deliver until nothing is in flight or waiting for a retry (for tests and
        `deliver --until-idle`); deferred jobs (deliver_after) are left for later."""
        self.outbox.claim_delivery()
        tasks: set[asyncio.Task[None]] = set()
        deadline = time.monotonic() + max_seconds
        async with self._client() as client:
            while time.monotonic() < deadline:
                self._start(client, tasks, force=True)
                if not tasks:
                    self._flush()
                    due = self.outbox.next_due(retries_only=True)
                    if due is None:
                        return
                    await asyncio.sleep(min(0.25, max(IDLE_RECHECK / 10, due - self.outbox.clock())))
                    continue
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self._flush()

    def _start(self, client: aiohttp.ClientSession, tasks: set[asyncio.Task[None]], *,
               force: bool) -> int:
        """Record finished outcomes, lease what the free slots can take, and start sending;
        `force` sends bulk items without waiting for more. Returns how many sends started."""
        self._flush()
        limit = self.config.delivery.concurrency
        free: dict[str, int] = {}
        for slug, compiled in self.config.destinations.items():
            held = sum(len(unit) for unit in self._queued.get(slug, ()))
            held += sum(len(jobs) for (_, d), (_, jobs) in self._forming.items() if d == slug)
            per_slot = compiled.batch.max_items if compiled.batch is not None else 1
            free[slug] = max(0, (limit - self._in_flight.get(slug, 0)) * per_slot - held)
        leased = self.outbox.lease(free, limit, self.config.delivery.timeout + 30)
        now = time.monotonic()
        for job in leased:
            # A job still in flight here is never sent a second time, even if its lease ran
            # out (its outcome is on its way).
            if job.id in self._sending:
                continue
            self._sending.add(job.id)
            destination = self.config.destinations.get(job.destination)
            if job.batch_item is not None and destination is not None and destination.batch is not None:
                key = (job.source, job.destination)
                self._forming.setdefault(key, (now, []))[1].append(job)
            else:
                self._queued.setdefault(job.destination, deque()).append([job])
        self._cut_bulks(now, force)
        started = 0
        for slug, units in self._queued.items():
            while units and self._in_flight.get(slug, 0) < limit:
                unit = units.popleft()
                self._in_flight[slug] = self._in_flight.get(slug, 0) + 1
                task = asyncio.create_task(self._deliver(client, unit))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                started += 1
        return started

    def _cut_bulks(self, now: float, force: bool) -> None:
        """Move gathered bulk items into units: full ones (max_items, or max_bytes of items)
        at once, the rest when they have waited max_wait (or when `force`)."""
        for key, (since, jobs) in list(self._forming.items()):
            batch = self.config.destinations[key[1]].batch
            assert batch is not None
            units = self._queued.setdefault(key[1], deque())
            unit: list[Job] = []
            size = 0
            for job in jobs:
                item_size = job.batch_size
                if unit and (len(unit) >= batch.max_items or size + item_size > batch.max_bytes):
                    units.append(unit)
                    unit, size = [], 0
                unit.append(job)
                size += item_size
            if unit and (force or len(unit) >= batch.max_items or now - since >= batch.max_wait):
                units.append(unit)
                unit = []
            if unit:
                self._forming[key] = (since, unit)
            else:
                del self._forming[key]

    def _next_bulk_deadline(self) -> float | None:
        """Seconds until gathered bulk items must go, or None when none are gathering."""
        if not self._forming:
            return None
        now = time.monotonic()
        return min(max(0.0, since + self.config.destinations[dest].batch.max_wait - now)  # type: ignore[union-attr]
                   for (_, dest), (since, _) in self._forming.items())

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait for new jobs or a finished send (a wake-up), the next due time, gathered bulk
        items' time, or `stop`. Jobs due now that the last lease did not take wait for a
        slot of their destination: a finished send wakes the loop; meanwhile it looks again
        every IDLE_RECHECK seconds, for other destinations' retries due soon after."""
        due = self.outbox.next_due()
        now = self.outbox.clock()
        if due is None:
            wait = self._idle_max
        elif due <= now:
            wait = IDLE_RECHECK
        else:
            wait = min(self._idle_max, max(0.01, due - now))
        bulk = self._next_bulk_deadline()
        if bulk is not None:
            wait = min(wait, max(0.001, bulk))
        self.wakeup.clear()
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self.wakeup.wait())]
        try:
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _deliver(self, client: aiohttp.ClientSession, unit: list[Job]) -> None:
        try:
            if len(unit) == 1:
                await self._attempt(client, unit[0])
            else:
                await self._attempt_bulk(client, unit)
        except Exception as exc:  # never lose the worker, nor a job: it counts as an attempt
            log.exception("delivery of job %s failed unexpectedly", ", ".join(str(j.id) for j in unit))
            for job in unit:
                if job.id not in self._decided:
                    self._failed(job, Attempt(False, True, None, f"unexpected error while sending: "
                                                                 f"{type(exc).__name__}: {exc}"))
        finally:
            self._in_flight[unit[0].destination] -= 1
            self._sending.difference_update(job.id for job in unit)
            self._decided.difference_update(job.id for job in unit)
            # A slot is free, and a retry may now be due sooner than the loop's next look.
            self.wakeup.set()

    async def _attempt_bulk(self, client: aiohttp.ClientSession, jobs: list[Job]) -> None:
        """Send `jobs` as one bulk request; each job gets the outcome of its item."""
        first = jobs[0]
        destination = self.config.destinations.get(first.destination)
        settings = self.config.settings(first.source, first.destination)
        if destination is None or destination.batch is None or settings is None:
            for job in jobs:  # the configuration changed: each goes on its own, or says why
                await self._attempt(client, job)
            return
        try:
            bulk = self._bound(first).bulk_request(
                [job.batch_item for job in jobs if job.batch_item is not None])
        except (EventError, SettingsError) as exc:
            for job in jobs:
                self._failed(job, Attempt(False, True, None, redact(str(exc), self._secrets)))
            return
        headers = bulk.headers
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        attempt = await exchange(client, bulk.method, bulk.url, headers, orjson.dumps(bulk.body),
                                 self.config.delivery.timeout)
        if not attempt.delivered:
            for job in jobs:
                self._failed(job, attempt)
            return
        failed = _failed_items(destination.batch.failed_items, attempt.body, len(jobs))
        for index, job in enumerate(jobs):
            if index in failed:
                self._failed(job, Attempt(False, True, attempt.status,
                                          f"item {index} of a bulk request of {len(jobs)} failed",
                                          attempt.body or None))
            else:
                self._delivered(job, attempt.status or 200)

    async def _attempt(self, client: aiohttp.ClientSession, job: Job) -> None:
        destination = self.config.destinations.get(job.destination)
        if destination is None:
            self._dead(job, Attempt(False, False, None,
                                    f"destination '{job.destination}' is no longer in the mappings"))
            return
        settings = self.config.settings(job.source, job.destination)
        if settings is None:
            self._failed(job, Attempt(False, True, None, f"no settings for {job.destination} in "
                                                         f"source '{job.source}' (configuration changed?)"))
            return
        try:
            bound = self._bound(job)
            auth = bound.auth_headers(job.rule)
            url = bound.send_url(job.rule, job.url)
        except SettingsError as exc:
            self._failed(job, Attempt(False, True, None, redact(str(exc), self._secrets)))
            return
        if auth is None or url is None:  # the mapping changed since the job was stored
            self._dead(job, Attempt(False, False, None, f"rule '{job.rule}' is no longer in "
                                                        f"{job.destination}'s mapping"))
            return
        attempt = await send(client, job, auth, self.config.delivery.timeout, url)
        if attempt.delivered:
            self._delivered(job, attempt.status or 200)
        else:
            self._failed(job, attempt)

    def _bound(self, job: Job) -> BoundDestination:
        """The job's destination bound to its source's settings (both checked present)."""
        bound = self.config.bound(job.source, job.destination)
        assert bound is not None
        return bound

    def _delivered(self, job: Job, status: int) -> None:
        self._decided.add(job.id)
        self._outcomes.append(Delivered(job, status))
        self.metrics.inc("requests_delivered_total", destination=job.destination)
        self.metrics.observe_latency(job.destination, max(0.0, self.outbox.clock() - job.accepted_at))

    def _failed(self, job: Job, attempt: Attempt) -> None:
        self._decided.add(job.id)
        if not attempt.retryable:
            self._dead(job, attempt)
            return
        cfg = self.config.delivery
        attempts = job.attempts + 1
        now = self.outbox.clock()
        delay = backoff(attempts, cfg, attempt.retry_after)
        if attempts >= cfg.max_attempts or now + delay - job.window_start > cfg.max_age:
            why = (f"gave up after {attempts} attempt{'s' if attempts != 1 else ''} over "
                   f"{now - job.window_start:.0f}s: {attempt.error}")
            self._dead(job, Attempt(False, False, attempt.status, why, attempt.body))
            return
        self._outcomes.append(Retry(job, now + delay, attempt.status, redact(attempt.error, self._secrets)))
        self.metrics.inc("requests_retried_total", destination=job.destination)
        log.info("job %s to %s: %s; retry in %.1fs", job.id, job.destination,
                 redact(attempt.error, self._secrets), delay)

    def _dead(self, job: Job, attempt: Attempt) -> None:
        self._decided.add(job.id)
        # Redacted whole, then cut: a secret across the cut would be kept in part.
        body = redact(attempt.body, self._secrets)[:MAX_STORED_BODY] if attempt.body else None
        self._outcomes.append(Dead(job, attempt.status, redact(attempt.error, self._secrets), body))
        self.metrics.inc("requests_dead_lettered_total", destination=job.destination)
        log.warning("job %s to %s is a dead letter: %s", job.id, job.destination,
                    redact(attempt.error, self._secrets))


def _failed_items(getter: Callable[[Any], Any] | None, body: str | None, count: int) -> set[int]:
    """The indexes of the items a bulk response says failed (none when it does not say)."""
    if getter is None or not body:
        return set()
    try:
        found = getter(orjson.loads(body))
    except (orjson.JSONDecodeError, ValueError, TypeError, LookupError):
        return set()
    if not isinstance(found, list):
        return set()
    return {i for i in found if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < count}


def run_forever(deliverer: Deliverer, *, wake_fd: int | None = None,
                report_fd: int | None = None) -> None:
    """Run `deliverer` until SIGINT or SIGTERM, then drain (the `deliver` command).

    Started by `serve` beside its intake, it also reads wake-ups from `wake_fd` (a byte
    after each commit of new jobs; end of file: the shim is gone, so stop) and writes its
    metrics to `report_fd` as JSON lines, for the shim's /metrics."""
    if wake_fd is not None:
        _die_with_parent()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if wake_fd is not None:
            os.set_blocking(wake_fd, False)

            def woken() -> None:
                try:
                    data = os.read(wake_fd, 4096)
                except BlockingIOError:
                    return
                if not data:
                    loop.remove_reader(wake_fd)
                    stop.set()
                deliverer.wakeup.set()
            loop.add_reader(wake_fd, woken)
        reporter = asyncio.create_task(_report(deliverer.metrics, report_fd, stop)) \
            if report_fd is not None else None
        await deliverer.run(stop)
        if reporter is not None:
            await reporter

    asyncio.run(main())


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when the shim that started it dies (even by
    SIGKILL), as if both were one; its leased jobs are sent again by the next delivering
    process. Elsewhere the process stops when its wake-up pipe closes."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the shim died before the line above
        os.kill(os.getpid(), signal.SIGKILL)


_PR_SET_PDEATHSIG = 1

REPORT_INTERVAL = 0.5
"""Seconds between two metric reports of a delivery process to the shim that started it."""


async def _report(metrics: Metrics, fd: int, stop: asyncio.Event) -> None:
    """Write `metrics` to `fd` every REPORT_INTERVAL seconds, and once more at the end.
    (Blocking writes of a few KB: the shim reads them on a thread of its own.)"""
    while True:
        stopping = stop.is_set()
        line = memoryview(orjson.dumps(metrics.snapshot()) + b"\n")
        try:
            while line:
                line = line[os.write(fd, line):]
        except OSError:  # the shim is gone
            return
        if stopping:
            return
        try:
            await asyncio.wait_for(stop.wait(), REPORT_INTERVAL)
        except asyncio.TimeoutError:
            pass
