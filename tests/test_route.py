"""Routing: the one function that decides which destinations get a message."""

from __future__ import annotations

from dataclasses import dataclass

from engine.route import route


@dataclass(frozen=True)
class Dest:
    name: str
    slug: str
    input: str = "segment"
    accepts: frozenset[str] | None = None


CALIXA = Dest("Calixa", "calixa", accepts=frozenset({"identify", "group", "track"}))
SKALIN = Dest("Skalin", "skalin")
SYNC_BACK = Dest("Callexa sync back", "callexa-sync-back", input="raw")


def test_every_destination_that_accepts_the_call_gets_it() -> None:
    targets, skips = route({"type": "track", "userId": "u"}, [CALIXA, SKALIN])
    assert targets == [CALIXA, SKALIN] and skips == []


def test_a_call_type_left_out_of_accepts_is_a_skip_naming_what_is_accepted() -> None:
    targets, skips = route({"type": "page", "userId": "u"}, [CALIXA, SKALIN])
    assert targets == [SKALIN]
    (skip,) = skips
    assert (skip.destination, skip.code) == ("calixa", "not_accepted")
    assert skip.reason == "Calixa does not accept page calls (it accepts group, identify, track)"


def test_the_integrations_object_turns_destinations_off_by_name() -> None:
    message = {"type": "track", "userId": "u", "integrations": {"All": False, "Skalin": True}}
    targets, skips = route(message, [CALIXA, SKALIN])
    assert targets == [SKALIN]
    assert [(s.destination, s.code, s.reason) for s in skips] == [
        ("calixa", "integrations_off", "the event's integrations object turns Calixa off")]


def test_integrations_decide_before_accepts() -> None:
    _, (skip,) = route({"type": "page", "userId": "u", "integrations": {"Calixa": False}}, [CALIXA])
    assert skip.code == "integrations_off"


def test_raw_input_mappings_never_get_segment_messages() -> None:
    targets, skips = route({"type": "identify", "userId": "u"}, [SYNC_BACK, SKALIN])
    assert targets == [SKALIN] and skips == []
