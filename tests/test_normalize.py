"""Incoming messages: legacy shapes fixed, invalid ones rejected with a reason."""

import pytest

from engine import EventError, is_enabled, normalize_event


def test_legacy_action_is_read_as_type() -> None:
    event = {"userId": "u", "action": "track", "event": "Signed Up"}
    assert normalize_event(event) == {"userId": "u", "type": "track", "event": "Signed Up"}
    assert "action" in event  # the caller's dict is not modified


def test_type_is_lowercased() -> None:
    assert normalize_event({"type": "Identify", "userId": "u"})["type"] == "identify"


def test_valid_messages_are_returned_as_they_are() -> None:
    event = {"type": "identify", "anonymousId": "a"}
    assert normalize_event(event) is event


@pytest.mark.parametrize(("event", "reason"), [
    ([], "an event must be a JSON object, got an array"),
    ("x", "an event must be a JSON object, got a string"),
    ({"userId": "u"}, "the event has no 'type' (one of: identify, track, page, screen, group, alias)"),
    ({"type": "click", "userId": "u"}, "unknown event type 'click'; expected one of: identify, track, page, screen, group, alias"),
    ({"type": 3, "userId": "u"}, "unknown event type 3; expected one of: identify, track, page, screen, group, alias"),
    ({"type": "identify"}, "an identify event needs a userId or an anonymousId"),
    ({"type": "identify", "userId": "", "anonymousId": None}, "an identify event needs a userId or an anonymousId"),
    ({"type": "identify", "userId": True}, "an identify event needs a userId or an anonymousId"),
    ({"type": "track", "userId": "u"}, "a track event needs 'event'"),
    ({"type": "group", "userId": "u"}, "a group event needs 'groupId'"),
    ({"type": "identify", "userId": "u", "traits": []}, "'traits' must be an object, got an array"),
    ({"type": "track", "userId": "u", "event": "e", "properties": "x"}, "'properties' must be an object, got a string"),
])
def test_invalid_messages(event: object, reason: str) -> None:
    with pytest.raises(EventError) as caught:
        normalize_event(event)
    assert str(caught.value) == reason


def test_numeric_user_ids_are_accepted() -> None:
    assert normalize_event({"type": "identify", "userId": 42})["userId"] == 42


@pytest.mark.parametrize(("integrations", "enabled"), [
    (None, True),
    ({}, True),
    ({"All": False}, False),
    ({"All": False, "Calixa": True}, True),
    ({"Calixa": False}, False),
    ({"calixa": False}, True),  # keys are case-sensitive
    ({"All": True, "Calixa": False}, False),
    ({"All": False, "Calixa": {"some": "option"}}, True),
    ({"Skalin": False}, True),
])
def test_integrations_object(integrations: dict | None, enabled: bool) -> None:
    assert is_enabled(integrations, "Calixa") is enabled


def test_an_identify_with_traits_only_in_context_traits_is_read_with_them() -> None:
    # RudderStack's SDKs (rudder-sdk-python, @rudderstack/rudder-sdk-node) send them so.
    rudder = {"type": "identify", "userId": "u1", "context": {"traits": {"email": "a@example.com"}}}
    assert normalize_event(rudder)["traits"] == {"email": "a@example.com"}
    assert "traits" not in rudder  # the caller's dict is not modified
    own = {"type": "identify", "userId": "u1", "traits": {"email": "own@example.com"},
           "context": {"traits": {"email": "context@example.com"}}}
    assert normalize_event(own)["traits"] == {"email": "own@example.com"}  # its own win
    track = {"type": "track", "userId": "u1", "event": "e", "context": {"traits": {"plan": "pro"}}}
    assert "traits" not in normalize_event(track)  # other calls keep context.traits as context
