"""The event tester: a page the shim serves (config `tester: true`) for people writing or
configuring destinations. Pick one of the source's destinations, edit an event, and see as
you type what it maps to with the source's settings (requests with secrets redacted, skip
reasons, the rule that decided, located errors), and the requests recently recorded or
dead-lettered.

This module holds the page's files and what its API answers; engine/http/app.py routes to
them behind the source's write key (the tracking API's own check). The page is plain HTML,
CSS and one script (engine/http/tester/), with no build step.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import Config, SourceConfig
from ..mapping.describe import describe
from ..mapping.destination import BoundDestination
from ..mapping.preview import preview
from ..normalize import enrich
from ..redact import redact
from .tracking_api import message_problem

__all__ = ["FILES", "HEADERS", "destinations_view", "preview_text", "read_file"]

_HERE = Path(__file__).resolve().parent / "tester"

FILES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "tester.js": ("tester.js", "text/javascript; charset=utf-8"),
    "tester.css": ("tester.css", "text/css; charset=utf-8"),
}
"""The page's files by their path under /tester/ ("" is /tester itself): name, media type."""

HEADERS = {
    # Only the page's own script, styles and API: an event's content shown on the page can
    # never run as code, and no other site may frame it.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def read_file(name: str) -> bytes:
    """One of the page's files."""
    return (_HERE / name).read_bytes()


def destinations_view(config: Config, source: SourceConfig) -> dict[str, Any]:
    """The source's destinations as the page lists them: what each accepts, its settings
    (names and kinds, never values) and rules, and an event to start from (its first
    example's)."""
    out = []
    for slug in source.destinations:
        destination = config.destinations.get(slug)
        if destination is None:
            continue
        described = describe(destination)
        sample = next((e.event for e in destination.examples if isinstance(e.event, dict)), None)
        out.append({
            "slug": slug,
            "name": described["name"],
            "accepts": described["accepts"],
            "settings": [{k: v for k, v in s.items() if k != "default"} for s in described["settings"]],
            "rules": described["rules"],
            "sample": sample,
        })
    return {"source": source.name, "dry_run": config.dry_run, "destinations": out}


def preview_text(config: Config, source: SourceConfig, bound: BoundDestination,
                 text: str) -> dict[str, Any]:
    """What the event in `text` (the page's editor) maps to: `{"outcomes": [...]}`, each with
    the rule that decided when one did; or `{"event_error": {"message", "line"?, "column"?}}`
    when it is not a message the tracking API would take. Secrets are redacted."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        return {"event_error": {"message": f"not JSON: {exc.msg}", "line": exc.lineno,
                                "column": exc.colno}}
    except RecursionError:
        return {"event_error": {"message": "the event is nested too deeply"}}
    problem = message_problem(event)
    if problem is not None:
        return {"event_error": {"message": problem}}
    message = enrich(event, source.name, datetime.now(timezone.utc))
    try:
        records = preview(bound, message, explain=True)
    except (TypeError, ValueError, RecursionError) as exc:  # what `engine map` reports too
        records = [{"error": f"the event cannot be mapped: {exc}"}]
    return {"outcomes": redact(records, config.secrets())}
