"""What mapping one event gives: requests to send, or a skip with its reason."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from .serialization import format_datetime

__all__ = ["Request", "Skip", "Outcome", "REDACTED", "SECRET_PLACEHOLDER", "METHODS"]

REDACTED = "[redacted]"

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
"""The HTTP methods a request may use."""

SECRET_PLACEHOLDER = re.compile(r"\{secret:([A-Za-z_][A-Za-z0-9_]*)\}")
"""How a secret setting inserted in a url is stored: `{secret:NAME}`."""


@dataclass(slots=True)
class Request:
    """One outbound HTTP request, ready to preview or deliver. Read-only by convention
    (not frozen, because a frozen dataclass sets each of its sixteen fields through
    object.__setattr__, which tripled the cost of making one on the per-event path).

    `secret_headers` names the headers rendered from secret settings (authentication): they
    are never stored, and delivery renders them again from the current settings.
    `body` is JSON data when `encoding` is "json", and a str->str mapping when it is "form".
    `batch_item` is this request's item in the destination's bulk request (and `batch_into`
    the list it joins), when the destination has one: delivery sends several due requests
    as one bulk request, and a lone one as itself.
    """

    destination: str
    rule: str
    method: str
    url: str
    headers: Mapping[str, str]
    encoding: str = "json"
    body: Any = None
    deliver_after: datetime | None = None
    once_key: str | None = None
    once_window: float | None = None
    message_id: str | None = None
    secret_headers: frozenset[str] = field(default_factory=frozenset)
    batch_into: str | None = None
    batch_item: Any = None
    stored_url: str | None = None
    """The url as it is stored, when secrets are part of `url`: each secret setting as a
    `{secret:NAME}` placeholder, and without the query parameters made from secrets
    (`secret_query` names them). Delivery puts them back from the current settings."""
    secret_query: tuple[str, ...] = ()

    @property
    def shown_url(self) -> str:
        """The url with every secret part shown as [redacted]."""
        if self.stored_url is None:
            return self.url
        url = SECRET_PLACEHOLDER.sub(REDACTED, self.stored_url)
        if self.secret_query:
            joiner = "&" if "?" in url else "?"
            url += joiner + "&".join(f"{name}={REDACTED}" for name in self.secret_query)
        return url

    @property
    def json(self) -> Any:
        """The JSON body (None for a form body)."""
        return self.body if self.encoding == "json" else None

    @property
    def form(self) -> Mapping[str, str] | None:
        """The form body (None for a JSON body)."""
        return self.body if self.encoding == "form" else None

    def to_dict(self) -> dict[str, Any]:
        """The request as the CLI and the preview endpoint print it (not redacted)."""
        out: dict[str, Any] = {"method": self.method, "url": self.url, "headers": dict(self.headers)}
        if self.body is not None:
            out["form" if self.encoding == "form" else "json"] = self.body
        if self.deliver_after is not None:
            out["deliver_after"] = format_datetime(self.deliver_after)
        if self.once_key is not None:
            window = self.once_window
            if isinstance(window, float) and window.is_integer():
                window = int(window)
            out["once"] = {"key": self.once_key, "window_seconds": window}
        return out


@dataclass(frozen=True, slots=True)
class Skip:
    """The destination does not take this event; `reason` says why in a sentence.

    `code` is a short stable name for the kind of skip (for metrics labels): `not_accepted`,
    `integrations_off`, `unmatched`, or the name of the rule that skipped."""

    destination: str
    reason: str
    rule: str | None = None
    code: str = "unmatched"

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": self.reason}


Outcome = Request | Skip
