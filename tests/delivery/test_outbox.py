"""The outbox on its own, each backend in turn (the `store` fixture): leases, slots,
secrets, once keys, pruning."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import pytest

from engine.delivery import Outbox
from engine.delivery.outbox import DEDUPE_WINDOW, Dead, Delivered, NewJob, Retry
from engine.outcomes import Request

from tests.support.delivery import open_outbox


def request(n: int, destination: str = "calixa", **extra: object) -> NewJob:
    return NewJob.from_request(Request(
        destination=destination, rule="r", method="POST", url="https://x.example/in",
        headers={"A": "1", "Authorization": "Basic c2VjcmV0LWtleTo="}, body={"n": n},
        message_id=f"m{n}", secret_headers=frozenset({"Authorization"}), **extra))  # type: ignore[arg-type]


@pytest.fixture
def clock() -> list[float]:
    return [1_700_000_000.0]


@pytest.fixture
def outbox(store: str, clock: list[float]) -> Outbox:
    return open_outbox(store, clock=lambda: clock[0])


def test_auth_headers_are_not_stored(outbox: Outbox) -> None:
    outbox.enqueue("web", [request(1)])
    (job,) = outbox.lease({}, 4, 30)
    assert job.headers == {"A": "1"}


def test_leases_respect_free_slots_per_destination(outbox: Outbox) -> None:
    outbox.enqueue("web", [request(i) for i in range(5)] + [request(10 + i, "skalin") for i in range(5)])
    outbox.claim_delivery()  # skalin, named by no one below, had jobs then: default_free of it
    jobs = outbox.lease({"calixa": 1}, 2, 30)
    assert sorted(j.destination for j in jobs) == ["calixa", "skalin", "skalin"]
    assert outbox.lease({"calixa": 0, "skalin": 0}, 2, 30) == []


def test_leased_jobs_are_not_leased_twice_until_the_lease_ends(outbox: Outbox, clock: list[float]) -> None:
    outbox.enqueue("web", [request(1)])
    assert len(outbox.lease({}, 4, 30)) == 1
    assert outbox.lease({}, 4, 30) == []
    clock[0] += 31
    assert len(outbox.lease({}, 4, 30)) == 1  # the holder died: at-least-once


def test_once_keys_are_scoped_to_source_and_destination(outbox: Outbox) -> None:
    keyed = [request(1, once_key="k", once_window=3600.0), request(2, once_key="k", once_window=3600.0)]
    outbox.enqueue("web", keyed)
    outbox.enqueue("mobile", [request(3, once_key="k", once_window=3600.0)])
    leased = outbox.lease({}, 10, 30)
    assert sorted(j.message_id for j in leased) == ["m1", "m3"]  # m2 waits on m1; m3 is another source's


def test_deferred_jobs_are_not_due_before_their_time(outbox: Outbox, clock: list[float]) -> None:
    later = datetime.fromtimestamp(clock[0] + 60, timezone.utc)
    outbox.enqueue("web", [request(1, deliver_after=later)])
    assert outbox.lease({}, 4, 30) == []
    assert outbox.next_due(retries_only=True) is None
    assert outbox.next_due() == clock[0] + 60
    clock[0] += 60
    assert len(outbox.lease({}, 4, 30)) == 1


def test_prune_forgets_old_delivered_jobs_and_dedupe_entries(outbox: Outbox, clock: list[float]) -> None:
    outbox.enqueue("web", [request(1), request(2)])
    first, second = outbox.lease({}, 4, 30)
    outbox.record([Delivered(first, 200)])
    outbox.record([Dead(second, 400, "HTTP 400", "no")])
    clock[0] += DEDUPE_WINDOW + 1
    assert outbox.prune() == 1
    assert outbox.counts() == {"dead": 1}  # dead letters stay until purged
    assert outbox.enqueue("web", [request(1)]).stored == 1  # the dedupe entry is gone too


def test_a_once_competitor_waits_for_the_holder_then_follows_its_outcome(outbox: Outbox, clock: list[float]) -> None:
    outbox.enqueue("web", [request(1, once_key="k", once_window=3600.0),
                           request(2, once_key="k", once_window=3600.0)])
    (holder,) = outbox.lease({}, 10, 30)  # job 2 waits: job 1 holds the key and is pending
    assert holder.message_id == "m1" and outbox.counts() == {"pending": 2}
    outbox.record([Retry(holder, clock[0] + 1, 503, "HTTP 503")])
    clock[0] += 2
    (again,) = outbox.lease({}, 10, 30)
    assert again.message_id == "m1"  # still the holder; job 2 still waits
    outbox.record([Dead(again, 400, "HTTP 400", None)])
    clock[0] += 10
    (follower,) = outbox.lease({}, 10, 30)  # the holder failed for good: job 2 goes
    assert follower.message_id == "m2"


def test_a_once_competitor_is_suppressed_after_the_holder_was_delivered(outbox: Outbox, clock: list[float]) -> None:
    outbox.enqueue("web", [request(1, once_key="k", once_window=3600.0),
                           request(2, once_key="k", once_window=3600.0)])
    (holder,) = outbox.lease({}, 10, 30)
    outbox.record([Delivered(holder, 200)])
    clock[0] += 10
    assert outbox.lease({}, 10, 30) == []
    assert outbox.counts() == {"delivered": 1, "suppressed": 1}


def test_waking_once_waiters_leaves_deferred_jobs_deferred(outbox: Outbox, clock: list[float]) -> None:
    later = datetime.fromtimestamp(clock[0] + 3 * 86400, timezone.utc)
    outbox.enqueue("web", [request(1, once_key="k", once_window=3600.0),
                           request(2, once_key="k", once_window=3600.0, deliver_after=later)])
    (holder,) = outbox.lease({}, 10, 30)
    outbox.record([Dead(holder, 400, "HTTP 400", None)])
    assert outbox.lease({}, 10, 30) == []  # job 2 keeps its deliver_after
    assert outbox.next_due() == clock[0] + 3 * 86400


def test_leases_are_asked_per_destination_and_others_are_not_forgotten(outbox: Outbox) -> None:
    outbox.enqueue("web", [request(1), request(2), request(3, "skalin"), request(4, "gone")])
    outbox.claim_delivery()
    leased = outbox.lease({"calixa": 1, "skalin": 0}, 4, 30)
    # calixa: its one free slot; skalin: none; "gone", named by no one, had jobs at claim.
    assert sorted((job.destination, job.message_id) for job in leased) == [("calixa", "m1"), ("gone", "m4")]


def test_destinations_with_jobs_are_looked_up_again_now_and_then(outbox: Outbox,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    backend = sys.modules[type(outbox).__module__]
    outbox.claim_delivery()  # nothing pending yet
    outbox.enqueue("web", [request(1, "new-elsewhere")])  # by a shim with a newer configuration
    assert outbox.lease({"calixa": 1}, 4, 30) == []  # not looked for again yet
    monkeypatch.setattr(backend, "_STRAYS_RECHECK", 0.0)
    (job,) = outbox.lease({"calixa": 1}, 4, 30)
    assert job.destination == "new-elsewhere"


def test_rows_of_a_quiet_source_are_found_after_a_busy_one(outbox: Outbox) -> None:
    outbox.enqueue("quiet", [request(1)], status="recorded")
    outbox.enqueue("busy", [request(100 + n) for n in range(300)], status="recorded")
    (row,) = outbox.rows("recorded", limit=10, sources=["quiet"])
    assert row["message_id"] == "m1"


def test_a_lease_that_names_no_destination_gives_each_job_once(outbox: Outbox) -> None:
    outbox.enqueue("web", [request(1), request(2, "skalin")])
    outbox.claim_delivery()  # both destinations had jobs then
    assert sorted(job.message_id or "" for job in outbox.lease({}, 4, 30)) == ["m1", "m2"]


def test_a_message_id_with_a_nul_is_stored_and_deduplicated(outbox: Outbox) -> None:
    job = NewJob("calixa", "r", "m\x001", request(1).request)
    assert outbox.enqueue("web", [job]).stored == 1  # (PostgreSQL's text holds no NUL: U+FFFD)
    assert outbox.enqueue("web", [job]).duplicates == 1
    assert outbox.counts() == {"pending": 1}
