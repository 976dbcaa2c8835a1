"""Send one stored request with aiohttp and say what to do next: done, retry, or dead letter.

The retry rule is Segment's: timeouts, connection errors, 408, 429 and 5xx other than 501
are temporary; 501 ("this call type is not supported") and every other 4xx are not.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Mapping

import aiohttp
import orjson

from ..config import DeliveryConfig
from ..serialization import form_encode
from .outbox import Job

__all__ = ["Attempt", "send", "exchange", "client_session", "backoff", "retry_after_seconds", "is_retryable",
           "MAX_RESPONSE_BODY"]


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


async def _read_up_to(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's body up to `limit` bytes, however many chunks it comes in."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


MAX_RESPONSE_BODY = 65536
"""Bytes of a response body read at the most: enough for a dead letter (which keeps
outbox.MAX_STORED_BODY characters), never a whole large body in memory."""

_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


def _body(job: Job, headers: dict[str, str]) -> bytes | None:
    """The request body as bytes. Mapping adds the body's content type unless the mapping
    set one; a job stored before it did gets it here."""
    if job.body is None:
        return None
    form = job.encoding == "form"
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = _FORM if form else _JSON
    return form_encode(job.body) if form else orjson.dumps(job.body)


def client_session(connections: int, per_destination: int) -> aiohttp.ClientSession:
    """The HTTP client delivery uses: keep-alive connections, `per_destination` at most to
    one host and `connections` in all; no redirects followed, no cookies kept, and no
    headers of its own but Host and Content-Length."""
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=per_destination)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                 skip_auto_headers=_NO_AUTO_HEADERS, auto_decompress=False)


# What aiohttp would add by itself: a request carries the headers its mapping wrote.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


async def send(session: aiohttp.ClientSession, job: Job, auth_headers: Mapping[str, str],
               timeout: float, url: str | None = None) -> Attempt:
    """One attempt at `job`, with `auth_headers` and `url` (the stored url with its secret
    parts put back: both rendered from the current settings). `timeout` bounds the whole
    exchange, from connecting to the last byte of the answer, so a destination that
    trickles its answer cannot hold a slot past it."""
    headers = {**job.headers, **auth_headers}
    return await exchange(session, job.method, url or job.url, headers, _body(job, headers),
                          timeout)


async def exchange(session: aiohttp.ClientSession, method: str, url: str,
                   headers: Mapping[str, str], body: bytes | None, timeout: float) -> Attempt:
    """One HTTP exchange, classified. The answer's body is read up to MAX_RESPONSE_BODY bytes
    (kept in the Attempt, cut to what a dead letter keeps)."""
    try:
        async with session.request(method, url, headers=headers, data=body,
                                   allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            status = response.status
            text = (await _read_up_to(response, MAX_RESPONSE_BODY)).decode("utf-8", "replace")
            retry_after = response.headers.get("Retry-After")
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:  # not an http(s) URL
        return Attempt(False, False, None, f"bad url: {exc}")
    except ValueError as exc:  # a header aiohttp refuses to send (a line break in it): for good
        return Attempt(False, False, None, f"cannot send this request: {exc}")
    except asyncio.TimeoutError:
        return Attempt(False, True, None, f"timeout after {timeout:g}s")
    except aiohttp.ClientError as exc:
        return Attempt(False, True, None, f"connection error: {type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Attempt(True, False, status, "", text)
    reason = f"HTTP {status}" + (" (call type not supported)" if status == 501 else "")
    # Whole (up to MAX_RESPONSE_BODY): cut before redaction, a secret split at the cut
    # would be kept in part.
    return Attempt(False, is_retryable(status), status, reason, text,
                   retry_after_seconds(retry_after))
