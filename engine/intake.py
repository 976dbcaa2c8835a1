"""Accept events from a source: map them for each of its destinations and store the
requests durably, in one transaction, before anyone is told they were accepted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from .config import Config, SourceConfig
from .errors import EventError
from .metrics import Metrics
from .normalize import normalize_event
from .outcomes import Request, Skip
from .redact import redact
from .store import EnqueueResult, Outbox

__all__ = ["Intake", "EventResult"]


@dataclass
class EventResult:
    """What became of one event: requests stored, destinations that skipped it, or why it
    was rejected (`error`)."""

    requests: list[Request] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    error: str | None = None


class Intake:
    """Maps events for a source's destinations and stores the requests in the outbox."""

    def __init__(self, config: Config, outbox: Outbox, metrics: Metrics | None = None) -> None:
        self.config = config
        self.outbox = outbox
        self.metrics = metrics or Metrics()
        self._secrets = config.secrets()
        self._status = "recorded" if config.dry_run else "pending"
        self._bound: dict[tuple[str, str], Any] = {}

    def _bind(self, source: SourceConfig, slug: str) -> Any:
        # Settings do not change while the configuration is loaded: check them once.
        key = (source.name, slug)
        bound = self._bound.get(key)
        if bound is None:
            bound = self._bound[key] = self.config.destinations[slug].bind(source.destinations[slug])
        return bound

    def map(self, source: SourceConfig, event: Any, now: datetime | str | None = None) -> EventResult:
        """Map one event for every destination of `source` (nothing is stored)."""
        result = EventResult()
        self.metrics.inc("events_received_total", source=source.name)
        try:
            event = normalize_event(event)
        except EventError as exc:
            result.error = str(exc)
            self.metrics.inc("events_rejected_total", source=source.name)
            return result
        for slug in source.destinations:
            if self.config.destinations[slug].input != "segment":
                continue
            try:
                outcomes = self._bind(source, slug).map(event, now=now)
            except EventError as exc:
                result.skipped.append(Skip(slug, f"rejected: {redact(str(exc), self._secrets)}"))
                self.metrics.inc("events_skipped_total", destination=slug, reason="rejected")
                continue
            for outcome in outcomes:
                if isinstance(outcome, Request):
                    result.requests.append(outcome)
                    self.metrics.inc("events_mapped_total", destination=slug)
                else:
                    result.skipped.append(outcome)
                    self.metrics.inc("events_skipped_total", destination=slug, reason=outcome.code)
        return result

    def accept(self, source: SourceConfig, events: Sequence[Any],
               now: datetime | str | None = None) -> tuple[list[EventResult], EnqueueResult]:
        """Map `events` and store every request they give in one durable transaction."""
        results = [self.map(source, event, now) for event in events]
        requests = [r for result in results for r in result.requests]
        stored = self.store(source.name, requests)
        return results, stored

    def store(self, source: str, requests: Sequence[Request]) -> EnqueueResult:
        stored = self.outbox.enqueue(source, requests, secrets=self._secrets, status=self._status)
        if stored.duplicates:
            self.metrics.inc("requests_duplicate_total", stored.duplicates)
        return stored
