"""The one intake path: normalize once, route once, map, store durably; the same metrics,
redaction and bound settings for Segment sources and inbound ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import engine.intake
import engine.mapping.destination
from engine.config import Config, load_config
from engine.delivery import Outbox
from engine.intake import Intake
from engine.mapping.destination import Destination
from tests.support.delivery import open_outbox, write_config
from tests.support.shim import shim_config

IDENTIFY = {"type": "identify", "userId": "u1", "messageId": "m1",
            "traits": {"email": "a@example.com"}}
REPLY = {"id": "r1", "email": "jane@example.com", "rating": 9, "date": "2024-03-01T17:45:12Z"}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(shim_config(tmp_path, "https://destinations.example"))


@pytest.fixture
def outbox(config: Config) -> Outbox:
    return open_outbox(config.store)


def test_an_event_is_normalized_once_for_all_its_destinations(
        config: Config, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = engine.intake.normalize_event

    def counting(event: Any) -> Any:
        calls.append(event)
        return real(event)

    def never(event: Any) -> Any:
        raise AssertionError("the destination normalized the message again")

    monkeypatch.setattr(engine.intake, "normalize_event", counting)
    monkeypatch.setattr(engine.mapping.destination, "normalize_event", never)
    web = config.source("web")
    assert web is not None
    (result,), stored = Intake(config, outbox).accept(web, [IDENTIFY])
    assert len(calls) == 1
    assert sorted(r.destination for r in result.requests) == ["calixa", "callexa", "skalin"]
    assert stored.stored == 3


def test_settings_are_bound_once_per_source_and_destination(
        config: Config, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    bound: list[str] = []
    real = Destination.bind

    def counting(self: Destination, settings: Any) -> Any:
        bound.append(self.slug)
        return real(self, settings)

    monkeypatch.setattr(Destination, "bind", counting)
    intake = Intake(config, outbox)
    web, sync_back = config.source("web"), config.inbound["callexa-sync-back"]
    assert web is not None
    for n in range(3):
        intake.accept(web, [{**IDENTIFY, "messageId": f"m{n}"}])
        intake.accept(sync_back, [{**REPLY, "id": f"r{n}"}])
        intake.bound(web, "calixa")  # the preview endpoint's way in
    assert sorted(bound) == ["calixa", "callexa", "callexa-sync-back", "skalin"]


def test_inbound_replies_take_the_same_path_with_the_same_metrics(config: Config, outbox: Outbox) -> None:
    intake = Intake(config, outbox)
    sync_back = config.inbound["callexa-sync-back"]
    results, stored = intake.accept(sync_back, [REPLY, {**REPLY, "rating": 11}, [1, 2]])
    assert [r.rule for r in results[0].requests] == ["identify"]
    assert [(r.destination, r.reason) for r in results[1].rejected] == [
        ("callexa-sync-back", "NPS rating must be an integer from 0 to 10, got 11")]
    assert results[2].error == "the input must be a JSON object"
    assert stored.stored == 1
    # Stored under the inbound source's own name, which delivery finds settings for.
    (row,) = outbox.rows("pending")
    assert row["source"] == "callexa-sync-back"
    assert config.settings(row["source"], row["destination"]) == sync_back.settings
    metrics = intake.metrics
    assert metrics.value("events_received_total", source="callexa-sync-back") == 3
    assert metrics.value("events_rejected_total", source="callexa-sync-back") == 1
    assert metrics.value("requests_mapped_total", destination="callexa-sync-back") == 1
    assert metrics.value("events_skipped_total", destination="callexa-sync-back", reason="rejected") == 1


def test_a_rejection_by_one_destination_leaves_the_others(config: Config, outbox: Outbox) -> None:
    web = config.source("web")
    assert web is not None
    event = {**IDENTIFY, "traits": {"email": "a@example.com", "createdAt": "not a date"}}
    (result,), stored = Intake(config, outbox).accept(web, [event])
    assert [(r.destination, r.reason) for r in result.rejected] == [
        ("callexa", "traits.createdAt is not a date (ISO 8601, or epoch seconds or "
                    'milliseconds), and the survey delays need it: "not a date"')]
    assert sorted(r.destination for r in result.requests) == ["calixa", "skalin"]
    assert stored.stored == 2


def test_rejection_reasons_are_redacted_with_every_secret_of_the_configuration(tmp_path: Path) -> None:
    path = write_config(tmp_path, "https://destinations.example", only=("callexa",))
    # A max delay: callexa reads createdAt (and rejects one that is not a date) only then.
    path.write_text(path.read_text().replace("callexa-key-one,", "callexa-key-one, max_delay_days: 30,"))
    config = load_config(path)
    web = config.source("web")
    assert web is not None
    # The destination's own key, and the write key, which no destination's settings hold.
    event = {**IDENTIFY, "traits": {"email": "a@example.com",
                                    "createdAt": "callexa-key-one web-write-key"}}
    (result,), _ = Intake(config, open_outbox(config.store)).accept(web, [event])
    (rejection,) = result.rejected
    assert rejection.reason.endswith('the survey delays need it: "[redacted] [redacted]"')


def test_invalid_events_are_errors_and_store_nothing(config: Config, outbox: Outbox) -> None:
    web = config.source("web")
    assert web is not None
    intake = Intake(config, outbox)
    (result,), stored = intake.accept(web, [{"type": "track", "userId": "u1"}])
    assert result.error == "a track event needs 'event'" and result.requests == []
    assert stored.stored == 0 and outbox.counts() == {}
    assert intake.metrics.value("events_rejected_total", source="web") == 1


def test_routing_skips_are_counted_by_reason(config: Config, outbox: Outbox) -> None:
    web = config.source("web")
    assert web is not None
    intake = Intake(config, outbox)
    (result,), _ = intake.accept(web, [{"type": "page", "userId": "u1", "name": "Home",
                                        "integrations": {"Skalin": False}}])
    assert sorted((s.destination, s.code) for s in result.skipped) == [
        ("calixa", "not_accepted"), ("callexa", "not_accepted"), ("skalin", "integrations_off")]
    assert intake.metrics.value("events_skipped_total", destination="skalin",
                                reason="integrations_off") == 1


def test_an_event_that_happens_to_hold_a_secret_is_taken_like_any_other(config: Config,
                                                                        outbox: Outbox) -> None:
    # analytics.js sends the page URL, which may carry the write key; a trait may hold
    # anything. Secrets are kept out of requests by construction, not by refusing content.
    web = config.source("web")
    assert web is not None
    event = {**IDENTIFY, "traits": {"email": "a@example.com", "note": "calixa-key-123"},
             "context": {"page": {"url": "https://app.example.com/?writeKey=web-write-key-123"}}}
    (result,), stored = Intake(config, outbox).accept(web, [event])
    assert result.error is None and stored.stored == 3
    (calixa,) = [r for r in result.requests if r.destination == "calixa"]
    assert calixa.body["traits"]["note"] == "calixa-key-123"
    assert "calixa-key-123" not in calixa.headers.get("Authorization", "")  # base64, auth only


def test_dry_run_records_instead_of_queueing(tmp_path: Path) -> None:
    config = load_config(shim_config(tmp_path, "https://destinations.example", dry_run=True))
    outbox = open_outbox(config.store)
    web = config.source("web")
    assert web is not None
    Intake(config, outbox).accept(web, [IDENTIFY])
    assert outbox.counts() == {"recorded": 3}


def test_a_request_the_outbox_cannot_store_rejects_its_event_alone(tmp_path: Path) -> None:
    # A template may compute an integer past 64 bits, which the outbox's JSON cannot hold:
    # that event is rejected for that destination, and the batch it came in is stored.
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "square.yaml").write_text(
        "destination: Square\nslug: square\nrules:\n  - name: all\n    request:\n"
        "      url: https://square.example\n      body: {n: \"{{ traits.n * traits.n }}\"}\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"mappings: {tmp_path / 'mappings'}\nstore: {tmp_path / 'outbox.sqlite3'}\n"
                    "sources:\n  - name: web\n    write_key: k\n    destinations: {square: {}}\n")
    config = load_config(path)
    web = config.source("web")
    assert web is not None
    events = [{"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"n": 2**40}},
              {"type": "identify", "userId": "u2", "messageId": "m2", "traits": {"n": 3}}]
    results, stored = Intake(config, open_outbox(config.store)).accept(web, events)
    assert [r.reason for r in results[0].rejected] == [
        "square: rule all: the request cannot be stored: Integer exceeds 64-bit range"]
    assert results[1].rejected == [] and stored.stored == 1
