"""Outcomes as the records people see (CLI lines, snapshots, the preview endpoint).

Secrets are redacted here unless asked otherwise: secret headers are replaced whole, and
any other place a secret setting's value appears is replaced where it stands.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import EventError
from ..outcomes import REDACTED, Request
from ..redact import redact
from .destination import BoundDestination

__all__ = ["preview"]


def preview(bound: BoundDestination, event: Any, *, now: datetime | str | None = None,
            show_secrets: bool = False, explain: bool = False) -> list[dict[str, Any]]:
    """Map `event` and return one record per outcome:
    `{"destination", "rule", "request": {...}}`, `{"destination", "skipped"}`, or `{"error"}`.
    With `explain`, a skip a rule decided names it too (`"rule"`), for the tester page."""
    secrets = [] if show_secrets else bound.secrets
    slug = bound.destination.slug
    try:
        outcomes = bound.map(event, now=now)
    except EventError as exc:
        return [{"error": redact(str(exc), secrets)}]
    records = []
    for outcome in outcomes:
        record: dict[str, Any] = {"destination": slug}
        if isinstance(outcome, Request):
            record["rule"] = outcome.rule
            request = outcome.to_dict()
            if not show_secrets:
                for name in outcome.secret_headers:
                    request["headers"][name] = REDACTED
                request["url"] = outcome.shown_url
                request = redact(request, secrets)
            record["request"] = request
        else:
            if explain and outcome.rule is not None:
                record["rule"] = outcome.rule
            record["skipped"] = redact(outcome.reason, secrets)
        records.append(record)
    return records
