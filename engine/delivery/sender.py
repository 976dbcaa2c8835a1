"""Send one stored request with httpx and say what to do next: done, retry, or dead letter.

The retry rule is Segment's: timeouts, connection errors, 408, 429 and 5xx other than 501
are temporary; 501 ("this call type is not supported") and every other 4xx are not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import httpx
import orjson

from ..config import DeliveryConfig
from .outbox import Job

__all__ = ["Attempt", "send", "backoff", "retry_after_seconds", "is_retryable"]


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt. `retry_after` is the server's wish, in seconds."""

    delivered: bool
    retryable: bool
    status: int | None
    error: str
    body: str | None = None
    retry_after: float | None = None


def is_retryable(status: int) -> bool:
    return status in (408, 429) or (status >= 500 and status != 501)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def backoff(attempt: int, config: DeliveryConfig, retry_after: float | None = None,
            rng: random.Random | None = None) -> float:
    """Seconds to wait after the `attempt`-th failure (1-based): exponential from
    backoff_initial, capped at backoff_max, with jitter over its upper half; never less
    than what the server asked for in Retry-After."""
    ceiling = min(config.backoff_max, config.backoff_initial * (2 ** max(attempt - 1, 0)))
    delay: float = ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _content(job: Job) -> dict[str, Any]:
    if job.body is None:
        return {}
    if job.encoding == "form":
        return {"data": job.body}
    return {"content": orjson.dumps(job.body)}


async def send(client: httpx.AsyncClient, job: Job, auth_headers: Mapping[str, str],
               timeout: float) -> Attempt:
    """One attempt at `job`, with `auth_headers` (rendered from the current settings)."""
    headers = {**job.headers, **auth_headers}
    try:
        response = await client.request(job.method, job.url, headers=headers,
                                        timeout=timeout, **_content(job))
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        return Attempt(False, False, None, f"bad url: {exc}")
    except httpx.TimeoutException as exc:
        return Attempt(False, True, None, f"timeout after {timeout:g}s ({type(exc).__name__})")
    except httpx.TransportError as exc:
        return Attempt(False, True, None, f"connection error: {type(exc).__name__}: {exc}")
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(True, False, status, "")
    body = response.text[:4096]
    reason = f"HTTP {status}" + (" (call type not supported)" if status == 501 else "")
    return Attempt(False, is_retryable(status), status, reason, body,
                   retry_after_seconds(response.headers.get("retry-after")))
