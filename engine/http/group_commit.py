"""Group commit: the events of concurrent requests are made durable by one commit.

Every acknowledgement waits for an fsync'd commit. One commit per request would cap the
shim at one request per fsync; here requests that arrive while a commit is under way wait
for the next one together, so one fsync (and one hop to a worker thread) covers them all.
A lone request waits for nothing but its own commit.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from ..config import Source
from ..delivery.outbox import EnqueueResult
from ..intake import EventResult, Intake

__all__ = ["GroupCommit"]

Accepted = tuple[list[EventResult], EnqueueResult]
_Waiting = tuple[Source, Sequence[Any], "asyncio.Future[Accepted]"]


class GroupCommit:
    """Accepts events through `intake`, committing what concurrent callers sent together."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self._waiting: list[_Waiting] = []
        self._committing = False

    async def accept(self, source: Source, events: Sequence[Any]) -> Accepted:
        """Map and durably store `events`, as `Intake.accept` does, sharing the commit with
        whoever else is waiting for one."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._waiting.append((source, events, future))
        if not self._committing:
            self._committing = True
            asyncio.get_running_loop().create_task(self._commit_all())
        return await future

    async def _commit_all(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    accepted = await asyncio.to_thread(
                        self.intake.accept_many, [(source, events) for source, events, _ in group])
                except Exception as exc:  # the commit failed: every caller in it hears so
                    for _, _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), outcome in zip(group, accepted, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._committing = False
