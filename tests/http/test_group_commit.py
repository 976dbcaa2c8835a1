"""Group commit: concurrent requests share one durable commit; a failed commit fails the
callers it held, and the next one works."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.http.group_commit import GroupCommit
from engine.intake import Intake
from tests.support.delivery import open_outbox
from tests.support.shim import shim_config


def track(n: int) -> dict[str, Any]:
    return {"type": "track", "userId": f"u{n}", "event": "Signed Up", "messageId": f"m{n}"}


@pytest.mark.anyio
async def test_concurrent_requests_share_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(shim_config(tmp_path, "https://destinations.example"))
    outbox = open_outbox(config.store)
    commits: list[int] = []
    real = outbox.enqueue_many

    def slow_commit(batches: Any, **kwargs: Any) -> Any:
        commits.append(len(batches))
        time.sleep(0.05)  # an fsync that takes its time: others queue behind it
        return real(batches, **kwargs)

    monkeypatch.setattr(outbox, "enqueue_many", slow_commit)
    web = config.source("web")
    assert web is not None
    group = GroupCommit(Intake(config, outbox))
    accepted = await asyncio.gather(*(group.accept(web, [track(n)]) for n in range(30)))
    assert [stored.stored for _, stored in accepted] == [2] * 30  # to Calixa and Skalin
    assert sum(commits) == 30 and len(commits) <= 3, commits
    assert outbox.counts() == {"pending": 60}


@pytest.mark.anyio
async def test_a_failed_commit_is_every_waiting_callers_error_and_the_next_one_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(shim_config(tmp_path, "https://destinations.example"))
    outbox = open_outbox(config.store)
    real = outbox.enqueue_many
    calls = [0]

    def failing_once(batches: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            time.sleep(0.05)
            raise OSError("disk full")
        return real(batches, **kwargs)

    monkeypatch.setattr(outbox, "enqueue_many", failing_once)
    web = config.source("web")
    assert web is not None
    group = GroupCommit(Intake(config, outbox))
    first = asyncio.ensure_future(group.accept(web, [track(0)]))
    await asyncio.sleep(0.01)  # the first commit is under way; these two wait for the next
    later = await asyncio.gather(group.accept(web, [track(1)]), group.accept(web, [track(2)]))
    with pytest.raises(OSError, match="disk full"):
        await first
    assert [stored.stored for _, stored in later] == [2, 2]
    assert outbox.counts() == {"pending": 4}
