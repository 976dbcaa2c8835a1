"""The one way events come in: normalize, route, map, and store the requests durably.

Every entry point uses it: the tracking API, webhooks and inbound replies (engine.http),
and `engine enqueue`. So every event gets the same checks, the same metrics, the same
redaction of secrets in what people read, and settings bound once per source and
destination. Nothing is acknowledged before `accept` returns: by then the requests are
committed to the outbox.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from .config import Config, Source
from .delivery.outbox import EnqueueResult, JobStatus, NewJob, Outbox
from .errors import EventError
from .mapping.destination import BoundDestination
from .metrics import Metrics
from .normalize import normalize_event
from .outcomes import Request, Skip
from .redact import redact
from .route import route

__all__ = ["Intake", "EventResult", "Rejection"]

log = logging.getLogger("engine.intake")
"""One line per event a source sends that is rejected (INFO) or that every destination
skipped (DEBUG): an operator filters by level."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A destination's rule refused the event (the other destinations may still take it)."""

    destination: str
    reason: str


@dataclass
class EventResult:
    """What became of one event: the requests it maps to, the destinations that skipped it,
    those whose rules rejected it, or why it is not a valid event at all (`error`)."""

    requests: list[Request] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    error: str | None = None
    jobs: list[NewJob] = field(default_factory=list)
    """The requests as the outbox stores them (made as each destination maps the event)."""


class Intake:
    """Accepts events from the sources of `config` into `outbox`."""

    def __init__(self, config: Config, outbox: Outbox, metrics: Metrics | None = None) -> None:
        self.config = config
        self.outbox = outbox
        self.metrics = metrics or Metrics()
        self._secrets = config.secrets()
        self._status: JobStatus = "recorded" if config.dry_run else "pending"
        # Each source's destinations, compiled: what routing looks at for every event.
        self._routes = {source.name: [config.destinations[slug] for slug in source.destinations]
                        for source in config.sources}

    def bound(self, source: Source, slug: str) -> BoundDestination:
        """Destination `slug` bound to `source`'s settings for it. Settings do not change
        while a configuration is loaded, so they are checked and rendered once."""
        bound = self.config.bound(source.name, slug)
        assert bound is not None, "the configuration names only destinations it has"
        return bound

    def map(self, source: Source, event: Any, now: datetime | str | None = None) -> EventResult:
        """Map one event for every destination of `source`; nothing is stored."""
        result = EventResult()
        self.metrics.inc("events_received_total", source=source.name)
        if source.kind == "inbound":
            if isinstance(event, dict):
                self._map_for(source, source.name, event, now, result)
            else:
                result.error = "the input must be a JSON object"
        else:
            try:
                message = normalize_event(event)
            except EventError as exc:
                result.error = str(exc)
            else:
                targets, result.skipped = route(message, self._routes[source.name])
                for skip in result.skipped:
                    self.metrics.inc("events_skipped_total", destination=skip.destination,
                                     reason=skip.code)
                for destination in targets:
                    self._map_for(source, destination.slug, message, now, result)
        if result.error is not None:
            self.metrics.inc("events_rejected_total", source=source.name)
        if result.error is not None or result.rejected:
            if log.isEnabledFor(logging.INFO):
                log.info("%s", redact(_event_line(source, event, result), self._secrets))
        elif result.skipped and not result.requests and log.isEnabledFor(logging.DEBUG):
            log.debug("%s", redact(_event_line(source, event, result), self._secrets))
        return result

    def _map_for(self, source: Source, slug: str, message: dict[str, Any],
                 now: datetime | str | None, result: EventResult) -> None:
        try:
            outcomes = self.bound(source, slug).map_message(message, now=now)
            # Serialized here, event by event: a value the outbox cannot store (an integer
            # past 64 bits a template computed) rejects this event for this destination,
            # not the whole batch it came in.
            jobs = [_job(outcome) for outcome in outcomes if isinstance(outcome, Request)]
        except EventError as exc:
            result.rejected.append(Rejection(slug, redact(str(exc), self._secrets)))
            self.metrics.inc("events_skipped_total", destination=slug, reason="rejected")
            return
        result.jobs += jobs
        for outcome in outcomes:
            if isinstance(outcome, Request):
                result.requests.append(outcome)
                self.metrics.inc("requests_mapped_total", destination=slug)
            else:
                result.skipped.append(outcome)
                self.metrics.inc("events_skipped_total", destination=slug, reason=outcome.code)

    def accept(self, source: Source, events: Sequence[Any],
               now: datetime | str | None = None) -> tuple[list[EventResult], EnqueueResult]:
        """Map `events` and store every request they give in one durable transaction."""
        return self.accept_many([(source, events)], now)[0]

    def accept_many(self, groups: Sequence[tuple[Source, Sequence[Any]]],
                    now: datetime | str | None = None,
                    ) -> list[tuple[list[EventResult], EnqueueResult]]:
        """`accept` for the events of several requests at once, stored by one commit.

        What an event holds is stored as it came (a page URL may carry a write key): the
        engine's own secrets cannot be in a request, since only `auth` templates see them
        and auth headers are never stored."""
        mapped = [[self.map(source, event, now) for event in events] for source, events in groups]
        batches = [(source.name, [job for res in results for job in res.jobs])
                   for (source, _), results in zip(groups, mapped, strict=True)]
        out = []
        for results, stored in zip(mapped, self.outbox.enqueue_many(batches, status=self._status),
                                   strict=True):
            if stored.duplicates:
                self.metrics.inc("requests_duplicate_total", stored.duplicates)
            out.append((results, stored))
        return out


def _job(request: Request) -> NewJob:
    try:
        return NewJob.from_request(request)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EventError(f"{request.destination}: rule {request.rule}: the request cannot be "
                         f"stored: {exc}") from None


def _event_line(source: Source, event: Any, result: EventResult) -> str:
    """What became of an event that went nowhere (or was refused), in one line."""
    message_id = event.get("messageId") if isinstance(event, dict) else None
    name = f"event {message_id}" if isinstance(message_id, str) else "an event"
    if result.error is not None:
        return f"source {source.name}: {name} rejected: {result.error}"
    parts = [f"{r.destination} rejected it: {r.reason}" for r in result.rejected]
    parts += [f"{s.destination} skipped it: {s.reason}" for s in result.skipped]
    return f"source {source.name}: {name}: " + "; ".join(parts)
