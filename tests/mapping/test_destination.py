"""The per-event path of a compiled destination, through the public API."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

import engine
from engine import EventError, Request, SettingsError, Skip

from tests.support.builders import destination
from tests.support.paths import MAPPINGS

DEMO = """\
destination: Demo
slug: demo
accepts: [identify, track, group]
settings:
  api_key: {type: string, required: true, secret: true}
  region: {type: string, default: eu, allowed: [eu, us]}
  delay: {type: integer, default: 0}
snake_case: {paths: [traits], except: [firstName, createdAt]}
request:
  url: "https://{{ settings.region }}.demo.example/{{ type }}"
  headers: {X-Client: demo}
  auth: {Authorization: "Bearer {{ settings.api_key }}"}
  body: "{{ message }}"
rules:
  - name: signup
    when: {type: track, event: [Signed Up], event_match: normalized}
    request:
      body: {event: "{{ matched_event }}", user: "{{ userId }}"}
  - name: vip
    when: {type: track, condition: "properties.revenue > `100`"}
    request:
      encoding: form
      body: {revenue: "{{ properties.revenue }}", vip: true, tags: "{{ properties.tags }}", none: null}
  - name: identify
    when: {type: identify}
    require:
      - {field: traits.email, reason: "no email"}
    extract: {created: traits.createdAt}
    reject_if:
      - {if: "traits.age is present and traits.age < 0", reason: "age {{ traits.age }} is negative"}
    skip_if:
      - {if: "traits.test_user", reason: "{{ userId }} is a test user"}
    request:
      deliver_after: "{{ created | add_days(settings.delay) if settings.delay }}"
      once: {key: "{{ traits.email }}", window_seconds: "{{ 3600 }}"}
unmatched: "Demo takes no {{ type }} like this one"
"""

SETTINGS = {"api_key": "sekrit-key"}
NOW = "2024-01-01T00:00:00Z"


@pytest.fixture
def demo(tmp_path: Path) -> engine.Destination:
    return destination(tmp_path, DEMO)


def test_request_fields(demo: engine.Destination) -> None:
    (request,) = demo.map({"type": "identify", "userId": "u1", "messageId": "m1",
                           "traits": {"email": "a@b.example", "First Name": "A", "firstName": "A"}},
                          settings=SETTINGS, now=NOW)
    assert isinstance(request, Request)
    assert request.method == "POST"
    assert request.url == "https://eu.demo.example/identify"
    assert request.headers == {"X-Client": "demo", "Authorization": "Bearer sekrit-key",
                               "Content-Type": "application/json"}
    assert request.secret_headers == {"Authorization"}
    assert request.body["traits"] == {"email": "a@b.example", "first_name": "A", "firstName": "A"}
    assert request.message_id == "m1"
    assert request.once_key == "a@b.example" and request.once_window == 3600
    assert request.deliver_after is None


def test_normalized_event_names_match_and_keep_the_rule_spelling(demo: engine.Destination) -> None:
    for name in ["Signed Up", "signed_up", "signedUp", "SIGNED-UP", " signed up "]:
        (request,) = demo.map({"type": "track", "event": name, "userId": "u"}, settings=SETTINGS, now=NOW)
        assert request.rule == "signup" and request.body == {"event": "Signed Up", "user": "u"}


def test_jmespath_condition_and_form_encoding(demo: engine.Destination) -> None:
    (request,) = demo.map({"type": "track", "event": "Order", "userId": "u",
                           "properties": {"revenue": 250, "tags": ["a", "b"]}}, settings=SETTINGS, now=NOW)
    assert request.rule == "vip" and request.encoding == "form"
    assert request.body == {"revenue": "250", "vip": "true", "tags": '["a","b"]'}


def test_unmatched_reason(demo: engine.Destination) -> None:
    (skip,) = demo.map({"type": "track", "event": "Order", "userId": "u", "properties": {"revenue": 5}},
                       settings=SETTINGS, now=NOW)
    assert skip == Skip("demo", "Demo takes no track like this one")


def test_not_accepted_type(demo: engine.Destination) -> None:
    (skip,) = demo.map({"type": "page", "userId": "u"}, settings=SETTINGS, now=NOW)
    assert skip.reason == "Demo does not accept page calls (it accepts group, identify, track)"


def test_integrations_object_turns_it_off(demo: engine.Destination) -> None:
    (skip,) = demo.map({"type": "identify", "userId": "u", "integrations": {"All": False}},
                       settings=SETTINGS, now=NOW)
    assert skip.reason == "the event's integrations object turns Demo off"


def test_require_skip_if_and_reject_if(demo: engine.Destination) -> None:
    (skip,) = demo.map({"type": "identify", "userId": "u"}, settings=SETTINGS, now=NOW)
    assert (skip.rule, skip.reason) == ("identify", "no email")
    (skip,) = demo.map({"type": "identify", "userId": "u", "traits": {"email": "e", "test_user": True}},
                       settings=SETTINGS, now=NOW)
    assert skip.reason == "u is a test user"
    with pytest.raises(EventError, match="^age -3 is negative$"):
        demo.map({"type": "identify", "userId": "u", "traits": {"email": "e", "age": -3}},
                 settings=SETTINGS, now=NOW)


def test_deliver_after_in_the_future_only(demo: engine.Destination) -> None:
    settings = {**SETTINGS, "delay": 3}
    event = {"type": "identify", "userId": "u", "traits": {"email": "e", "createdAt": "2023-12-31T00:00:00Z"}}
    (request,) = demo.map(event, settings=settings, now=NOW)
    assert request.deliver_after == datetime(2024, 1, 3, tzinfo=timezone.utc)
    (request,) = demo.map(event, settings=settings, now="2024-02-01T00:00:00Z")
    assert request.deliver_after is None


def test_invalid_events_raise(demo: engine.Destination) -> None:
    with pytest.raises(EventError, match="a track event needs 'event'"):
        demo.map({"type": "track", "userId": "u"}, settings=SETTINGS, now=NOW)


@pytest.mark.parametrize(("settings", "message"), [
    ({}, "Demo: invalid settings: missing required setting 'api_key'"),
    ({"api_key": "k", "region": "mars"}, "Demo: invalid settings: setting 'region': unallowed value mars"),
    ({"api_key": "k", "delay": "3"}, "Demo: invalid settings: setting 'delay': must be of integer type"),
    ({"api_key": "k", "colour": "red"}, "Demo: invalid settings: unknown setting 'colour' (known: api_key, delay, region)"),
])
def test_settings_are_checked(demo: engine.Destination, settings: dict, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        demo.map({"type": "identify", "userId": "u"}, settings=settings, now=NOW)
    assert str(caught.value) == message


def test_settings_errors_never_show_secret_values(tmp_path: Path) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        settings: {key: {type: string, secret: true, allowed: [a, b]}}
        rules: [{name: a, skip: x}]
        """)
    with pytest.raises(SettingsError) as caught:
        dest.bind({"key": "super-secret-value"})
    assert "super-secret-value" not in str(caught.value)


def test_now_is_injectable_and_defaults_to_the_clock(tmp_path: Path) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        request: {url: "https://x", body: {at: "{{ now }}"}}
        rules: [{name: a}]
        """)
    (request,) = dest.map({"type": "identify", "userId": "u"}, now="2024-05-06T07:08:09.123Z")
    assert request.body == {"at": "2024-05-06T07:08:09.123Z"}
    (request,) = dest.map({"type": "identify", "userId": "u"})
    assert request.body["at"][:4] == str(datetime.now(timezone.utc).year)
    with pytest.raises(ValueError, match="now must be an ISO 8601 time"):
        dest.map({"type": "identify", "userId": "u"}, now="yesterday")


def test_a_render_failure_is_an_event_error(tmp_path: Path) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        request: {url: "https://x", body: {n: "{{ traits.n + 1 }}"}}
        rules: [{name: a}]
        """)
    with pytest.raises(EventError, match=r"^d: rule a: .*demo.yaml:3:39: template .* failed"):
        dest.map({"type": "identify", "userId": "u", "traits": {"n": "text"}})


def test_bind_is_cached_for_equal_settings(demo: engine.Destination) -> None:
    assert demo.bind(dict(SETTINGS)) is demo.bind(dict(SETTINGS))
    assert demo.bind(SETTINGS) is not demo.bind({**SETTINGS, "region": "us"})


def test_auth_headers_render_from_settings_alone(demo: engine.Destination) -> None:
    bound = demo.bind({"api_key": "rotated"})
    assert bound.auth_headers("identify") == {"Authorization": "Bearer rotated"}


def test_public_api_is_complete() -> None:
    for name in engine.__all__:
        assert hasattr(engine, name), name
    public = {n for n in dir(engine) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(engine.__all__)


def test_request_json_and_form_accessors(demo: engine.Destination) -> None:
    (as_json,) = demo.map({"type": "identify", "userId": "u", "traits": {"email": "e"}}, settings=SETTINGS, now=NOW)
    assert as_json.json == as_json.body and as_json.form is None
    (as_form,) = demo.map({"type": "track", "event": "Order", "userId": "u", "properties": {"revenue": 250}},
                          settings=SETTINGS, now=NOW)
    assert as_form.form == as_form.body and as_form.json is None


@pytest.mark.parametrize(("value", "skipped"), [
    (None, True), ("", True), ([], True), ({}, True), (0, False), (False, False), ("x", False), ([0], False)])
def test_require_treats_null_and_empty_as_absent(tmp_path: Path, value: object, skipped: bool) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        request: {url: "https://x", body: "{{ message }}"}
        rules: [{name: a, require: [{field: traits.v, reason: no v}]}]
        """)
    (outcome,) = dest.map({"type": "identify", "userId": "u", "traits": {"v": value}})
    assert isinstance(outcome, Skip) is skipped


def test_templates_outside_auth_cannot_see_secret_settings(tmp_path: Path) -> None:
    leaky = destination(tmp_path, """\
        destination: Leaky
        slug: leaky
        settings:
          api_key: {type: string, required: true, secret: true}
          region: {type: string, default: eu}
        request:
          url: "https://x.example/{{ settings | tojson | b64encode }}"
          auth: {Authorization: "Bearer {{ settings.api_key }}"}
          body:
            all: "{{ settings | tojson }}"
            looped: "{% for k, v in settings | dictsort %}{{ k }}={{ v }};{% endfor %}"
        rules:
          - name: all
            when: {type: track}
        """)
    (request,) = leaky.map({"type": "track", "userId": "u", "event": "e"},
                           settings={"api_key": "sk-live-123456"})
    shown = repr((request.url, request.body))
    assert "sk-live-123456" not in shown and "c2stbGl2ZS0xMjM0NTY" not in shown
    assert request.body == {"all": '{"region":"eu"}', "looped": "region=eu;"}
    assert request.headers["Authorization"] == "Bearer sk-live-123456"  # auth alone sees it


def test_skalin_bulks_only_hits_with_an_identity() -> None:
    skalin = engine.load(MAPPINGS)["skalin"].bind({"api_key": "k-123456", "client_id": "c1"})
    (anonymous,) = skalin.map({"type": "page", "anonymousId": "a1", "name": "Home"})
    (known,) = skalin.map({"type": "page", "userId": "u1", "name": "Home"})
    assert anonymous.batch_item is None  # only visitor_id says who: a form of its own
    assert known.batch_into == "features" and known.batch_item["identity"] == {"id": "u1"}


def test_a_template_of_settings_alone_that_fails_rejects_events_instead_of_crashing(tmp_path: Path) -> None:
    broken = destination(tmp_path, """\
        destination: Broken
        slug: broken
        settings:
          key: {type: string, required: true, secret: true}
          divisor: {type: integer, default: 0}
        request:
          url: "https://x.example/{{ 100 // settings.divisor }}"
          auth: {Authorization: "Bearer {{ settings.key }}"}
        rules:
          - name: all
            when: {type: track}
        """)
    with pytest.raises(EventError, match="broken: rule all: .*demo.yaml:7:8: template .* failed"):
        broken.map({"type": "track", "userId": "u", "event": "e"}, settings={"key": "k-123456"})
    bad_auth = destination(tmp_path, """\
        destination: Bad auth
        slug: bad-auth
        settings:
          key: {type: integer, required: true, secret: true}
        request:
          url: "https://x.example/in"
          auth: {Authorization: "{{ 1 // (settings.key - settings.key) }}"}
        rules:
          - name: all
            when: {type: track}
        """, name="bad.yaml")
    with pytest.raises(SettingsError, match="auth header Authorization cannot be made from these settings"):
        bad_auth.bind({"key": 5})


@pytest.mark.parametrize(("request_yaml", "expected"), [
    ('{url: "https://x.example", body: {a: 1}}', "application/json"),
    ('{url: "https://x.example", encoding: form, body: {a: 1}}', "application/x-www-form-urlencoded"),
    ('{url: "https://x.example", headers: {content-type: text/plain}, body: {a: 1}}', None),
    ('{url: "https://x.example", method: GET}', None),                 # no body, no type
    ('{url: "https://x.example", body: {a: "{{ traits.missing }}"}}', None),   # body dropped
])
def test_a_body_is_sent_with_its_content_type(tmp_path: Path, request_yaml: str,
                                              expected: str | None) -> None:
    dest = destination(tmp_path, f"""\
        destination: D
        slug: d
        request: {request_yaml}
        rules: [{{name: a}}]
        """)
    (request,) = dest.map({"type": "identify", "userId": "u1"})
    assert isinstance(request, Request)
    assert request.headers.get("Content-Type") == expected
    if "content-type" in request_yaml:
        assert request.headers == {"content-type": "text/plain"}


def test_callexa_sync_back_sends_only_valid_segment_messages() -> None:
    """What the sync back sends is a Segment message our own shim (and Segment's) takes:
    an empty userId is absent, never sent as ""."""
    from engine.normalize import normalize_event

    dest = engine.load(MAPPINGS)["callexa-sync-back"]
    sent = 0
    for example in dest.examples:
        try:
            outcomes = dest.map(example.event, settings=example.settings, now=example.now)
        except EventError:
            continue
        for outcome in outcomes:
            if isinstance(outcome, Request):
                normalize_event(outcome.body)
                assert outcome.body.get("userId") != ""
                sent += 1
    assert sent >= 5
