"""Reading a request's body within bounds, whoever sends it.

- **Size**: a body whose Content-Length is over its limit is refused before a byte of it is
  read; one that turns out larger (chunked, or lying) is refused as soon as it does.
- **Time**: the whole body must arrive within BODY_TIMEOUT seconds: a client that trickles
  it, or stops sending, holds its connection no longer (408).
- **Memory**: the large bodies being read and handled at once (webhooks) hold at most a
  budget of bytes between them; a request that would go past it waits up to BUDGET_WAIT
  seconds for room, then gets a 503 with Retry-After.
- **Signatures**: a webhook's HMAC is computed as the body arrives, not in a second pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import AsyncIterator

from starlette.requests import Request

from ..errors import BadRequest

__all__ = ["BODY_TIMEOUT", "BUDGET_WAIT", "BodyBudget", "read_body", "declared_length",
           "size_text"]

BODY_TIMEOUT = 60.0
"""Seconds within which a request's whole body must have arrived."""
BUDGET_WAIT = 10.0
"""Seconds a request waits for room in the body budget before it is refused (503)."""


def size_text(size: int) -> str:
    """A size as people read limits: "500 KB", "16 MB"."""
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    return f"{size // 1024} KB"


def declared_length(request: Request) -> int | None:
    """The body's Content-Length (the server has checked it is a number), or None."""
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


async def read_body(request: Request, limit: int, *, too_large: int = 400,
                    signer: hmac.HMAC | None = None) -> bytearray:
    """The body as sent, never more than `limit` bytes (else BadRequest with status
    `too_large`), within BODY_TIMEOUT seconds (else 408); fed to `signer` as it arrives."""
    declared = declared_length(request)
    refusal = f"the body is larger than {size_text(limit)}"
    if declared is not None and declared > limit:
        raise BadRequest(refusal, too_large, "too_large" if too_large == 413 else None)
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise BadRequest(refusal, too_large, "too_large" if too_large == 413 else None)
                if signer is not None:
                    signer.update(chunk)
                body += chunk
    except TimeoutError:
        raise BadRequest(f"the body did not arrive within {BODY_TIMEOUT:g} seconds", 408,
                         "timeout") from None
    return body


class BodyBudget:
    """Bytes of request bodies held at once, across requests: each request holds what it
    may read (its Content-Length, else its limit) while it is handled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._room = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, size: int, wait: float | None = None) -> AsyncIterator[None]:
        """Hold `size` bytes of the budget for the block; wait up to `wait` seconds
        (BUDGET_WAIT) for them, else raise BadRequest (503)."""
        size = min(size, self.total)
        wait = BUDGET_WAIT if wait is None else wait
        async with self._room:
            try:
                await asyncio.wait_for(self._room.wait_for(lambda: self.used + size <= self.total), wait)
            except TimeoutError:
                raise BadRequest("too many large bodies are being read now; retry later", 503,
                                 "busy", retry_after=5) from None
            self.used += size
        try:
            yield
        finally:
            async with self._room:
                self.used -= size
                self._room.notify_all()
