"""Group commit: concurrent requests share one durable commit; one bad request does not
hold back the others."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.errors import SecretInRequest
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
async def test_a_request_that_would_store_a_secret_fails_alone(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(shim_config(tmp_path, "https://destinations.example"))
    outbox = open_outbox(config.store)
    intake = Intake(config, outbox)
    web = config.source("web")
    assert web is not None
    calixa = intake.bound(web, "calixa")
    real = calixa.map_message

    def leaky_for_u0(message: dict[str, Any], **kwargs: Any) -> Any:
        requests = real(message, **kwargs)
        if message["userId"] == "u0":
            return [dataclasses.replace(r, url=r.url + "?k=calixa-key-123") for r in requests]
        return requests

    monkeypatch.setattr(calixa, "map_message", leaky_for_u0)
    group = GroupCommit(intake)
    outcomes = await asyncio.gather(*(group.accept(web, [track(n)]) for n in range(3)),
                                    return_exceptions=True)
    assert isinstance(outcomes[0], SecretInRequest)
    assert [o[1].stored for o in outcomes[1:]] == [2, 2]  # type: ignore[index]
    assert outbox.counts() == {"pending": 4}
