"""The mapping language's constructs: settings in rules, values, templated methods, and the
load-time checks on the names templates read."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import engine
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
     "demo.yaml:6:11: secret setting 'token' may be used in request.auth, request.auth_query "
     "or inserted as it is in the url only (requests are stored without them)"),
    ('{if: "settings.token == \'x\'"}',
     "demo.yaml:6:11: secret setting 'token' may be used in request.auth, request.auth_query "
     "or inserted as it is in the url only (requests are stored without them)"),
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


# ---- several requests, fan-out, query parameters, deep merge ----------------------------

SEVERAL = """\
    destination: D
    slug: d
    settings:
      token: {type: string, secret: true, default: sekrit}
      event_map: {type: list, default: [{from: Order Completed, to: Purchase}, {from: Order Completed, to: Sale}]}
    request:
      url: "https://d.example/track"
      auth: {Authorization: "Bearer {{ settings.token }}"}
      body: {envelope: {source: engine, user: "{{ userId }}"}}
    rules:
      - name: mapped
        when: {type: track, if: "settings.event_map | lookup(event)"}
        requests:
          - name: per-mapped-event
            for_each: "{{ settings.event_map | lookup(event) }}"
            as: mapped
            body_merge: deep
            body: {envelope: {event: "{{ mapped }}"}, revenue: "{{ properties.revenue }}"}
          - name: products
            method: PUT
            url: "https://d.example/products"
            auth: {Authorization: "Products {{ settings.token }}"}
            for_each: "{{ properties.products }}"
            message_id: "{{ messageId }}-{{ item.id }}"
            query: {id: "{{ item.id }}", tag: "{{ item.missing }}", ids: "{{ properties.products | map(attribute='id') | list }}"}
            body: "{{ item }}"
          - name: audit
            url: "https://d.example/audit?v=1"
            query: {q: "a b&c/d", flag: true}
            body: {envelope: {only: this}}
"""


def test_a_rule_makes_several_requests_each_with_its_own_dedupe_id(tmp_path: Path) -> None:
    dest = destination(tmp_path, SEVERAL)
    outcomes = requests(dest.map(TRACK))
    assert [(r.rule, r.message_id) for r in outcomes] == [
        ("mapped/per-mapped-event", "m1:0"), ("mapped/per-mapped-event", "m1:1"),
        ("mapped/products", "m1-p1"), ("mapped/products", "m1-p2"),
        ("mapped/audit", "m1#audit"),
    ]
    first, second, p1, _, audit = outcomes
    assert first.body == {"envelope": {"source": "engine", "user": "u1", "event": "Purchase"},
                          "revenue": 42}
    assert second.body["envelope"]["event"] == "Sale"
    assert (p1.method, p1.body) == ("PUT", {"id": "p1"})
    assert p1.url == "https://d.example/products?id=p1&ids=p1&ids=p2"
    assert audit.url == "https://d.example/audit?v=1&q=a%20b%26c%2Fd&flag=true"
    assert audit.body == {"envelope": {"only": "this"}}   # no body_merge: keys replace
    # Each request's auth is found again at send time by the name it is stored under.
    bound = dest.bind({})
    assert bound.auth_headers("mapped/products") == {"Authorization": "Products sekrit"}
    assert bound.auth_headers("mapped/audit") == {"Authorization": "Bearer sekrit"}
    assert all("sekrit" not in r.url for r in outcomes)


INHERITED_PARTS = """\
    destination: D
    slug: d
    settings:
      token: {type: string, secret: true, default: sekrit}
    request:
      url: "https://d.example/in"
      headers: {X-Api-Version: "2", Content-Type: text/plain, X-Trace: "on"}
      auth: {Authorization: "Bearer {{ settings.token }}", X-Key: "{{ settings.token }}"}
      query: {v: "2", debug: "1"}
      body: {event: "{{ event }}"}
    rules:
      - name: lean
        when: {type: track}
        request:
          headers: {x-api-version: null, content-type: application/json, X-New: "1"}
          auth: {x-key: null}
          query: {debug: null}
"""


def test_a_rule_removes_an_inherited_header_auth_header_or_parameter_with_null(tmp_path: Path) -> None:
    dest = destination(tmp_path, INHERITED_PARTS)
    (request,) = requests(dest.map(TRACK))
    # Header names compare without case: the rule's spelling replaces the default's, in place.
    assert dict(request.headers) == {"content-type": "application/json", "X-Trace": "on", "X-New": "1",
                                     "Authorization": "Bearer sekrit"}
    assert request.url == "https://d.example/in?v=2"
    assert dest.bind({}).auth_headers("lean") == {"Authorization": "Bearer sekrit"}


def test_a_fan_out_over_nothing_is_a_skip_saying_so(tmp_path: Path) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        request: {url: "https://d.example/in"}
        rules:
          - name: per-group
            request: {for_each: "{{ traits.groups }}", body: {group: "{{ item }}"}}
        """)
    (skip,) = dest.map({"type": "identify", "userId": "u1", "messageId": "m1"})
    assert skip == Skip("d", "rule per-group made no request (its conditions or for_each gave none)",
                        "per-group", "per-group")
    found = requests(dest.map({"type": "identify", "userId": "u1", "messageId": "m1",
                               "traits": {"groups": ["g1", "g2"]}}))
    assert [(r.body, r.message_id) for r in found] == [({"group": "g1"}, "m1:0"),
                                                       ({"group": "g2"}, "m1:1")]


@pytest.mark.parametrize(("rule", "expected"), [
    ('{name: a, request: {url: "x"}, requests: [{url: "y"}]}', "a rule has 'request' or 'requests', not both"),
    ('{name: a, requests: [{name: r, url: "x"}, {name: r, url: "y"}]}', "duplicate request name 'r'"),
    ('{name: a, request: {as: thing, url: "x"}}', "'as' names the item of for_each, and there is no for_each here"),
    ('{name: a, request: {url: "x", for_each: "{{ traits.g }}", body: "{{ itme }}"}}', "unknown name 'itme'"),
])
def test_request_shape_problems(tmp_path: Path, rule: str, expected: str) -> None:
    found = problems(tmp_path, f"""\
        destination: D
        slug: d
        rules:
          - {rule}
        """)
    assert any(expected in p for p in found), found


def test_a_request_made_only_when_its_condition_holds(tmp_path: Path) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        request: {url: "https://d.example/in"}
        rules:
          - name: a
            requests:
              - name: always
                body: {u: "{{ userId }}"}
              - name: with-email
                if: "traits.email is present"
                body: {e: "{{ traits.email }}"}
              - name: per-big-item
                for_each: "{{ traits.items }}"
                if: "item > 1"
                body: {i: "{{ item }}"}
        """)
    found = requests(dest.map({"type": "identify", "userId": "u1", "messageId": "m1",
                               "traits": {"items": [1, 2, 3]}}))
    assert [(r.rule, r.body) for r in found] == [
        ("a/always", {"u": "u1"}), ("a/per-big-item", {"i": 2}), ("a/per-big-item", {"i": 3})]


def test_settings_rules_for_list_items_and_a_slow_pattern(tmp_path: Path) -> None:
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        settings:
          event_map:
            type: list
            default: []
            schema: {type: dict, schema: {from: {type: string, required: true}, to: {type: string}}}
          code: {type: string, regex: "(a|aa)+$", default: x}
        request: {url: "https://d.example/in"}
        rules: [{name: a}]
        """)
    with pytest.raises(engine.SettingsError, match="event_map"):
        dest.bind({"event_map": [{"to": "Purchase"}]})
    with pytest.raises(engine.SettingsError, match="took too long"):
        dest.bind({"code": "a" * 40 + "!"})
    assert dest.bind({"event_map": [{"from": "A", "to": "B"}], "code": "aaa"})


def test_bad_setting_rules_are_found_at_load(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        destination: D
        slug: d
        settings:
          a: {type: string, regex: "("}
          b: {type: list, schema: {type: nonsense}}
        request: {url: "https://d.example/in"}
        rules: [{name: r}]
        """)
    assert [p.split(": ", 1)[1][:40] for p in found] == [
        "bad pattern: missing ) at position 1", "not valid setting rules: {'b': [{'schema"]


def test_an_invalid_escape_in_a_template_string_is_found_by_validate(tmp_path: Path) -> None:
    found = problems(tmp_path, r"""
        destination: D
        slug: d
        request: {url: "https://d.example/in", body: {a: "{{ userId | regex_search('\\{') }}"}}
        rules: [{name: r}]
        """)
    assert len(found) == 1 and "invalid escape sequence" in found[0]
