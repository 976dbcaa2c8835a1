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

import aiohttp
import orjson

from ..config import Config
from ..errors import SettingsError
from ..metrics import Metrics
from ..redact import redact
from .outbox import Dead, Delivered, Job, JobOutcome, Outbox, Retry
from .sender import Attempt, backoff, client_session, send

__all__ = ["Deliverer", "run_forever"]

log = logging.getLogger("engine.delivery")

PRUNE_INTERVAL = 600.0
"""Seconds between two prunings of delivered jobs and old dedupe entries."""


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
        self._outcomes: list[JobOutcome] = []

    def _client(self) -> aiohttp.ClientSession:
        # Slots per destination are the worker's to count; destinations may share a host.
        per_destination = self.config.delivery.concurrency
        return client_session(per_destination * max(1, len(self.config.destinations)), 0)

    def _flush(self) -> None:
        """Record the outcomes of the sends that finished, in one transaction."""
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            self.outbox.record(outcomes)

    async def run(self, stop: asyncio.Event, *, drain_timeout: float = 30.0) -> None:
        """Deliver until `stop` is set; then let requests in flight finish (up to
        `drain_timeout` seconds; what is cut off stays leased and is retried later).
        Raises DeliveryLocked if another process delivers this outbox."""
        self.outbox.claim_delivery()
        tasks: set[asyncio.Task[None]] = set()
        next_prune = 0.0
        async with self._client() as client:
            while not stop.is_set():
                if time.monotonic() >= next_prune:  # keep the outbox from growing forever
                    self.outbox.prune()
                    next_prune = time.monotonic() + PRUNE_INTERVAL
                started = self._start(client, tasks)
                if started:
                    await asyncio.sleep(0)
                    continue
                await self._idle(stop)
            if tasks:
                await asyncio.wait(tasks, timeout=drain_timeout)
            self._flush()

    async def drain(self, *, max_seconds: float = 60.0) -> None:
        """Deliver until nothing is in flight or waiting for a retry (for tests and
        `deliver --until-idle`); deferred jobs (deliver_after) are left for later."""
        self.outbox.claim_delivery()
        tasks: set[asyncio.Task[None]] = set()
        deadline = time.monotonic() + max_seconds
        async with self._client() as client:
            while time.monotonic() < deadline:
                self._start(client, tasks)
                if not tasks:
                    self._flush()
                    due = self.outbox.next_due(retries_only=True)
                    if due is None:
                        return
                    await asyncio.sleep(min(0.25, max(0.0, due - self.outbox.clock())))
                    continue
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self._flush()

    def _start(self, client: aiohttp.ClientSession, tasks: set[asyncio.Task[None]]) -> int:
        self._flush()
        limit = self.config.delivery.concurrency
        free = {slug: limit - count for slug, count in self._in_flight.items()}
        leased = self.outbox.lease(free, limit, self.config.delivery.timeout + 30)
        # A job still in flight here is never sent a second time, even if its lease ran out
        # (its outcome is on its way).
        jobs = [job for job in leased if job.id not in self._sending]
        for job in jobs:
            self._sending.add(job.id)
            self._in_flight[job.destination] = self._in_flight.get(job.destination, 0) + 1
            task = asyncio.create_task(self._deliver(client, job))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return len(jobs)

    async def _idle(self, stop: asyncio.Event) -> None:
        due = self.outbox.next_due()
        wait = 1.0 if due is None else min(1.0, max(0.01, due - self.outbox.clock()))
        self.wakeup.clear()
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self.wakeup.wait())]
        try:
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _deliver(self, client: aiohttp.ClientSession, job: Job) -> None:
        try:
            await self._attempt(client, job)
        except Exception:  # never lose the worker; the lease expires and the job comes back
            log.exception("delivery of job %s failed unexpectedly", job.id)
        finally:
            self._in_flight[job.destination] -= 1
            self._sending.discard(job.id)
            # A slot is free, and a retry may now be due sooner than the loop's next look.
            self.wakeup.set()

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
            auth = destination.bind(settings).auth_headers(job.rule)
        except SettingsError as exc:
            self._failed(job, Attempt(False, True, None, redact(str(exc), self._secrets)))
            return
        if auth is None:  # the mapping changed since the job was stored
            self._dead(job, Attempt(False, False, None, f"rule '{job.rule}' is no longer in "
                                                        f"{job.destination}'s mapping"))
            return
        attempt = await send(client, job, auth, self.config.delivery.timeout)
        if attempt.delivered:
            self._outcomes.append(Delivered(job, attempt.status or 200))
            self.metrics.inc("requests_delivered_total", destination=job.destination)
            self.metrics.observe_latency(job.destination, max(0.0, self.outbox.clock() - job.accepted_at))
        else:
            self._failed(job, attempt)

    def _failed(self, job: Job, attempt: Attempt) -> None:
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
        self._outcomes.append(Dead(job, attempt.status, redact(attempt.error, self._secrets),
                                   redact(attempt.body, self._secrets) if attempt.body else None))
        self.metrics.inc("requests_dead_lettered_total", destination=job.destination)
        log.warning("job %s to %s is a dead letter: %s", job.id, job.destination,
                    redact(attempt.error, self._secrets))


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
