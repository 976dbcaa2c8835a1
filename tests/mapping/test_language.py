"""The mapping language's constructs: settings in rules, values, templated methods, and the
load-time checks on the names templates read."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine import EventError, Request, Skip

from tests.support.builders import destination, problems

TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1",
         "properties": {"revenue": 42, "currency": "EUR", "products": [{"id": "p1"}, {"id": "p2"}]}}


def requests(outcomes: list[Any]) -> list[Request]:
    assert all(isinstance(o, Request) for o in outcomes), outcomes
    return outcomes


# ---- settings in rules ---------------------------------------------------------------------

SETTINGS_IN_RULES = """\
    destination: D
    slug: d
    settings:
      tracked_event: {type: string, default: Order Completed}
      min_revenue: {type: integer, default: 10}
      token: {type: string, secret: true, default: t}
    request: {url: "https://d.example/in", body: {event: "{{ event }}"}}
    rules:
      - name: by-jmespath
        when: {type: track, condition: "event == settings.tracked_event && properties.revenue > settings.min_revenue"}
      - name: by-jinja
        when: {type: track, if: "event == settings.tracked_event ~ ' Late'"}
        request: {body: {late: true}}
    """


def test_conditions_read_settings_in_jmespath_and_jinja(tmp_path: Path) -> None:
    dest = destination(tmp_path, SETTINGS_IN_RULES)
    (first,) = requests(dest.map(TRACK))
    assert first.rule == "by-jmespath"
    (low,) = dest.map({**TRACK, "properties": {"revenue": 5}})
    assert isinstance(low, Skip)
    (late,) = requests(dest.map({**TRACK, "event": "Order Completed Late"}))
    assert late.rule == "by-jinja" and late.body == {"event": "Order Completed Late", "late": True}
    # Other settings, other matches: the expressions are bound to each settings once.
    (other,) = requests(dest.map({**TRACK, "event": "Signed Up"},
                                 settings={"tracked_event": "Signed Up", "min_revenue": 0}))
    assert other.rule == "by-jmespath"


def test_a_message_field_called_settings_is_not_read_as_the_settings(tmp_path: Path) -> None:
    dest = destination(tmp_path, SETTINGS_IN_RULES)
    event = {**TRACK, "event": "Nope", "settings": {"tracked_event": "Nope", "min_revenue": 0}}
    assert isinstance(dest.map(event)[0], Skip)


def test_settings_in_jmespath_inside_a_filter(tmp_path: Path) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        settings: {wanted: {type: string, default: p2}}
        request: {url: "https://d.example/in"}
        rules:
          - name: a
            extract: {ids: "properties.products[?id == settings.wanted].id"}
            request: {body: {ids: "{{ ids }}"}}
        """)
    (request,) = requests(dest.map(TRACK))
    assert request.body == {"ids": ["p2"]}


@pytest.mark.parametrize(("when", "expected"), [
    ('{condition: "event == settings.nope"}',
     "demo.yaml:6:11: setting 'nope' is used but not declared (declared: token, tracked_event)"),
    ('{if: "event == settings.nope"}',
     "demo.yaml:6:11: setting 'nope' is used but not declared (declared: token, tracked_event)"),
    ('{condition: "event == settings.token"}',
     "demo.yaml:6:11: secret setting 'token' may be used in request.auth only (requests are "
     "stored without their auth headers)"),
    ('{if: "settings.token == \'x\'"}',
     "demo.yaml:6:11: secret setting 'token' may be used in request.auth only (requests are "
     "stored without their auth headers)"),
    ('{if: "event == userid"}',
     "demo.yaml:6:11: unknown name 'userid' (templates here can read: anonymousId, category, "
     "channel, context, event, groupId, integrations, message, messageId, name, now, "
     "originalTimestamp, previousId, projectId, properties, receivedAt, sentAt, settings, "
     "timestamp, traits, type, userId, version, writeKey)"),
])
def test_settings_and_names_in_conditions_are_checked_at_load(tmp_path: Path, when: str,
                                                              expected: str) -> None:
    found = problems(tmp_path, f"""\
        destination: D
        slug: d
        settings: {{tracked_event: {{type: string}}, token: {{type: string, secret: true}}}}
        request: {{url: "https://d.example/in"}}
        rules:
          - when: {when}
            name: a
        """)
    # The column depends on the matcher's length: the line and the message are the point.
    line, message = expected.split(": ", 1)
    assert len(found) == 1 and found[0].startswith(line.rsplit(":", 1)[0] + ":"), found
    assert found[0].endswith(": " + message)


# ---- templated method ----------------------------------------------------------------------

def test_a_method_may_be_a_template(tmp_path: Path) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        request:
          method: "{{ 'DELETE' if event == 'Account Deleted' else 'PUT' }}"
          url: "https://d.example/in"
          body: {e: "{{ event }}"}
        rules: [{name: a}]
        """)
    (put,) = requests(dest.map(TRACK))
    (delete,) = requests(dest.map({**TRACK, "event": "Account Deleted"}))
    assert (put.method, delete.method) == ("PUT", "DELETE")


def test_a_method_template_that_renders_no_method_rejects_the_event(tmp_path: Path) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        request: {method: "{{ properties.currency }}", url: "https://d.example/in"}
        rules: [{name: a}]
        """)
    with pytest.raises(EventError, match=r"^d: rule a: the method template rendered 'EUR', "
                                         r"not one of GET, POST, PUT, PATCH, DELETE$"):
        dest.map(TRACK)


def test_a_constant_method_is_checked_at_load(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        destination: D
        slug: d
        request: {method: FETCH, url: "https://d.example/in"}
        rules: [{name: a}]
        """) == ["demo.yaml:3:19: method 'FETCH' is not one of GET, POST, PUT, PATCH, DELETE"]


# ---- values --------------------------------------------------------------------------------

VALUES = """\
    destination: D
    slug: d
    settings: {prefix: {type: string, default: "shop"}}
    values:
      email: "{{ traits.email or context.traits.email }}"
      hashed_email: "{{ email | trim | lower | digest(64) }}"
      label: "{{ settings.prefix }}-{{ type }}"
    request: {url: "https://d.example/in"}
    rules:
      - name: with-email
        when: {if: "hashed_email is present"}
        extract: {revenue: properties.revenue}
        values:
          cents: "{{ revenue * 100 }}"
          summary: {label: "{{ label }}", cents: "{{ cents }}"}
        request:
          body: {em: "{{ hashed_email }}", summary: "{{ summary }}"}
      - name: anonymous
        skip: "no email ({{ label }})"
    """


def test_values_are_computed_once_in_order_and_usable_everywhere(tmp_path: Path) -> None:
    dest = destination(tmp_path, VALUES)
    event = {**TRACK, "context": {"traits": {"email": "  Jane@Example.com "}}}
    (request,) = requests(dest.map(event))
    assert request.body == {
        "em": "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d",
        "summary": {"label": "shop-track", "cents": 4200},
    }
    (skip,) = dest.map(TRACK)
    assert skip == Skip("d", "no email (shop-track)", "anonymous", "anonymous")


@pytest.mark.parametrize(("text", "expected"), [
    ("""\
        values:
          a: "{{ b }}"
          b: "{{ userId }}"
        """, "demo.yaml:5:7: 'b' is used before it is defined (values are computed in order)"),
    ("""\
        values:
          message: "{{ userId }}"
        """, "demo.yaml:5:3: 'message' is a reserved name in templates; pick another"),
    ("""\
        rules:
          - name: x
            values: {a: "{{ later }}", later: "{{ userId }}"}
        """, "demo.yaml:6:18: 'later' is used before it is defined (values are computed in order)"),
    ("""\
        rules:
          - name: x
            when: {if: "rule_value is present"}
            values: {rule_value: "{{ userId }}"}
        """, "demo.yaml:6:17: unknown name 'rule_value'"),
])
def test_values_problems_are_found_at_load(tmp_path: Path, text: str, expected: str) -> None:
    head = """\
        destination: D
        slug: d
        request: {url: "https://d.example/in"}
        """
    body = textwrap.dedent(text)
    if not body.startswith("rules"):
        body += "rules: [{name: r}]\n"
    found = problems(tmp_path, head.rstrip(" ") + textwrap.indent(body, " " * 8))
    assert any(p.startswith(expected) for p in found), found


def test_unknown_names_in_a_request_are_found_at_load(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        destination: D
        slug: d
        request: {url: "https://d.example/in", body: {a: "{{ propertes.x }}"}}
        rules: [{name: r}]
        """)
    assert len(found) == 1 and found[0].startswith("demo.yaml:3:51: unknown name 'propertes'")


def test_raw_input_templates_may_read_any_field(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        destination: D
        slug: d
        input: raw
        request: {url: "https://d.example/in", body: {a: "{{ anything.x }}"}}
        rules: [{name: r}]
        """) == []
