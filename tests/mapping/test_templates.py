"""Rendering YAML trees of Jinja templates: types kept, missing values dropped, sandboxed."""

from __future__ import annotations

from typing import Any

import pytest

from engine.mapping.missing import MISSING
from engine.errors import RenderError
from engine.mapping.templates import Compiled, TemplateProblem, compile_template, compile_tree

SCOPE: dict[str, Any] = {
    "traits": {"employees": 329, "zip": "12345", "name": "Initech", "nothing": None,
               "flag": False, "zero": 0, "tags": ["a", "b"], "address": {"city": "Paris"}},
    "settings": {"client_id": "c-1"},
    "userId": "u1",
}


def render(value: Any, scope: dict[str, Any] = SCOPE) -> Any:
    problems: list[Any] = []
    compiled = compile_tree(value, (), lambda path, problem: problems.append(problem))
    assert not problems, problems
    return compiled.constant if compiled.renderer is None else compiled.renderer(scope)


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ traits.employees }}", 329),
    ("{{ traits.zip }}", "12345"),                  # looks like a number, stays a string
    ("{{ traits.address }}", {"city": "Paris"}),   # a dict stays a dict
    ("{{ traits.tags }}", ["a", "b"]),
    ("{{ traits.flag }}", False),
    ("{{ traits.zero }}", 0),
    ("zip {{ traits.zip }}", "zip 12345"),         # mixed text is a string
    ("{{ traits.employees }}{{ traits.zip }}", "32912345"),
    ("{{ traits.employees * 2 }}", 658),
    ("{{ traits.name | snake_case }}", "initech"),
    ("{{ {'name': traits.name, 'event_name': 'feature'} | tojson }}", '{"name":"Initech","event_name":"feature"}'),
    ("{{ traits.name ~ '/' ~ userId }}", "Initech/u1"),
    ("{{ traits.missing or traits.name }}", "Initech"),
    ("{{ 'yes' if traits.employees > 100 else 'no' }}", "yes"),
    ("{{ traits['zip'] }}", "12345"),
    ("{{ traits.tags[1] }}", "b"),
    ("{{ traits.name is present }}", True),
    ("{{ traits.nothing is missing }}", True),
    ("{% if traits.employees > 100 %}big{% else %}small{% endif %}", "big"),
    ("{% for t in traits.tags %}{{ t }};{% endfor %}", "a;b;"),
    ("{{ '0012' }}", "0012"),
    ("plain text", "plain text"),
    (42, 42),
])
def test_leaf_values(template: Any, expected: Any) -> None:
    result = render({"v": template})
    assert result == {"v": expected}
    assert type(result["v"]) is type(expected)


@pytest.mark.parametrize("template", [
    "{{ traits.missing }}",
    "{{ traits.nothing }}",                      # null drops, never "None"
    "id: {{ traits.missing }}",                  # never "id: "
    "id: {{ traits.nothing }}",                  # never "id: None"
    "{{ traits.missing.deeper.still }}",
    "{{ traits.missing | upper }}",
    "{{ traits.missing ~ 'x' }}",
    "{{ traits.missing + 1 }}",
    "{% if traits.missing %}x{% endif %}",      # renders nothing
    "{% for t in traits.missing %}{{ t }}{% endfor %}",
])
def test_missing_values_drop_their_key(template: str) -> None:
    assert render({"kept": 1, "v": template}) == {"kept": 1}


def test_a_mapping_emptied_by_missing_values_drops_too() -> None:
    body = {"a": {"b": "{{ traits.missing }}"}, "c": ["{{ traits.missing }}"], "d": {}}
    assert render(body) == {"d": {}}


def test_whole_body_missing_is_missing() -> None:
    assert render({"a": "{{ traits.missing }}"}) is MISSING


def test_template_keys() -> None:
    body = {"{{ settings.client_id }}": "{{ traits.employees }}", "{{ traits.missing }}": 1}
    assert render(body) == {"c-1": 329}


def test_constants_are_not_copied_per_render() -> None:
    compiled = compile_tree({"a": [1, 2], "b": "text"}, (), lambda *_: None)
    assert compiled.renderer is None
    assert compiled.constant == {"a": [1, 2], "b": "text"}


def test_settings_and_names_used_are_collected() -> None:
    compiled = compile_template("{{ settings.client_id ~ settings['api_key'] ~ traits.x }}")
    assert isinstance(compiled, Compiled)
    assert compiled.settings_used == {"client_id", "api_key"}
    assert compiled.names_used == {"settings", "traits"}


@pytest.mark.parametrize(("template", "message"), [
    ("{{ traits.name | no_such_filter }}", "template error: No filter named 'no_such_filter'."),
    ("{{ traits.name is no_such_test }}", "template error: No test named 'no_such_test'."),
    ("{{ traits.name ", "template error: unexpected end of template, expected 'end of print statement'."),
    ("{% if x %}", "template error: Unexpected end of template. Jinja was looking for the following tags:"),
    ("{% include 'x.html' %}", "'include' is not allowed in mapping templates"),
    ("{% extends 'x.html' %}", "'extends' is not allowed in mapping templates"),
    ("{{ traits.__class__ }}", "attribute '__class__' is not allowed: names starting with '_' are private"),
    ("{{ traits['__class__'] }}", "key '__class__' is not allowed: names starting with '_' are private"),
    ("{% for a in traits.tags %}{% for b in traits.tags %}{% endfor %}{% endfor %}",
     "loops inside loops are not allowed in mapping templates"),
    ("{% for a in traits.tags recursive %}{{ loop(a) }}{% endfor %}",
     "recursive loops are not allowed in mapping templates"),
    ("{% macro m(x) %}{{ x }}{% endmacro %}{{ m(1) }}", "macros are not allowed in mapping templates"),
])
def test_problems_found_at_compile_time(template: str, message: str) -> None:
    result = compile_template(template)
    found = result if isinstance(result, list) else [result]
    assert isinstance(found[0], TemplateProblem)
    assert found[0].message.startswith(message)


def test_problem_lines_inside_multiline_templates() -> None:
    result = compile_template("line one\n{{ ok }}\n{{ broken | nope }}\n")
    assert isinstance(result, TemplateProblem)
    assert result.line == 3


# Known ways out of Jinja's sandbox, and ways to exhaust memory. Each must fail at load or
# stop with a RenderError; none may reach Python internals.
ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ traits.__class__.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    "{{ ''.format.__self__ }}",
    "{{ '{0.__class__}'.format(traits) }}",
    "{{ traits.name.format_map(traits) }}",
    "{{ traits|attr('__class__') }}",
    "{{ (traits|attr('\\x5f\\x5fclass\\x5f\\x5f')) }}",
    "{{ range(10**9)|list }}",
    "{{ 'a' * 10**9 }}",
    "{{ 'x' * 1000 * 1000 * 1000 }}",
    "{{ 10 ** 100000 }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '%0999999999d' | format(1) }}",
    "{{ traits.name | center(999999999) }}",
    "{{ traits.name | indent(999999999) }}",
    "{{ 'x'.center(10**9) }}",
    "{{ traits.name|replace('I', traits.name * 100000)|replace('n', 'nnnnnnnnnn' * 100000) }}",
    "{% for a in range(100) %}{% endfor %}",
    "{{ ''.join(['a'] * 10**8) }}",
    "{% set x = [] %}{{ x.append(1) }}",
    "{{ traits.update({'x': 1}) }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_sandbox_escapes_are_stopped(template: str) -> None:
    result = compile_template(template)
    if not isinstance(result, Compiled):
        return  # refused when the mapping loads: the best outcome
    assert result.renderer is not None
    try:
        value = result.renderer(SCOPE)
    except RenderError as exc:
        assert "sandbox" in str(exc) or "failed" in str(exc)
        return
    # If it rendered at all, it rendered nothing from Python's internals.
    assert value is MISSING or (isinstance(value, str) and len(value) < 10_000
                                and "class" not in value and "module" not in value)


def test_output_size_is_bounded() -> None:
    result = compile_template("{% for i in traits.tags %}{{ traits.name * 900000 }}{% endfor %}")
    assert isinstance(result, Compiled) and result.renderer is not None
    with pytest.raises(RenderError, match="sandbox"):
        result.renderer(SCOPE)


@pytest.mark.parametrize(("template", "expected"), [
    ("{{- traits.employees -}}", 329),
    ("{{ traits.tags | map('upper') | list }}", ["A", "B"]),      # a filter called by name
    ("{{- traits.tags | map('upper') | list -}}", ["A", "B"]),
])
def test_expressions_jinja_compiles_keep_their_type(template: str, expected: Any) -> None:
    assert render({"v": template}) == {"v": expected}


# ---- missing and null are never turned into wrong values ---------------------------------

@pytest.mark.parametrize("template", [
    "{{ traits.nothing | string | digest(64) }}",   # never sha256("None")
    "{{ traits.nothing | lower }}",                 # never "none"
    "{{ traits.missing | string }}",
    "{{ traits.missing | length }}",                # never 0
    "{{ traits.missing | tojson }}",
    "{{ traits.missing | list }}",
    "{{ traits.nothing | trim | lower | digest(64) }}",
    "{{ traits.name | replace('I', traits.missing) }}",   # a missing argument, too
    "{{ traits.name | truncate(traits.missing) }}",
    "{{ traits.missing > 3 }}",                     # an ordering with nothing is missing
    "{{ 'a' in traits.missing }}",
    "{{ traits.tags | map('upper') | join(traits.missing) }}",
    "{{ '-eu' if traits.missing }}",                # alone in a leaf: missing
])
def test_missing_propagates_through_filters(template: str) -> None:
    assert render({"kept": 1, "v": template}) == {"kept": 1}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ traits.missing is sequence }}", False),
    ("{{ traits.missing is iterable }}", False),
    ("{{ traits.missing is string }}", False),
    ("{{ traits.missing is mapping }}", False),
    ("{{ traits.missing is not sequence }}", True),
    ("{{ traits.missing is defined }}", False),
    ("{{ traits.missing is undefined }}", True),
    ("{{ traits.nothing is none }}", True),
    ("{{ traits.nothing is present }}", False),
    ("{{ traits.missing | default('x') }}", "x"),
    ("{{ traits.nothing | default('x') }}", "x"),   # null counts as missing for default
    ("{{ traits.name | default('x') }}", "Initech"),
    ("{{ traits.missing == 'a' }}", False),
    ("{{ traits.missing != 'a' }}", True),
    ("{{ not traits.missing }}", True),
])
def test_tests_of_missing_values(template: str, expected: Any) -> None:
    assert render({"v": template}) == {"v": expected}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ {'name': traits.name, 'plan': traits.plan, 'n': traits.nothing} }}", {"name": "Initech"}),
    ("{{ [traits.name, traits.missing, traits.nothing, 1] }}", ["Initech", 1]),
    ("{{ {'name': traits.name, 'plan': traits.plan} | tojson }}", '{"name":"Initech"}'),
    ("{{ {'a': {'b': traits.missing, 'c': 1}} }}", {"a": {"c": 1}}),
    # A filter that calls another by name: no Undefined leaks.
    ("{{ {'tags': traits.tags | map('upper') | list, 'x': traits.missing} }}", {"tags": ["A", "B"]}),
])
def test_missing_values_inside_literals_are_left_out(template: str, expected: Any) -> None:
    assert render({"v": template}) == {"v": expected}


@pytest.mark.parametrize(("template", "expected"), [
    ("https://api{{ '-eu' if traits.missing }}.example.com", "https://api.example.com"),
    ("https://api{{ '-eu' if traits.name }}.example.com", "https://api-eu.example.com"),
    ("{% if traits.name %}{{ 'a' if traits.missing }}b{% endif %}", "b"),
    ("x{{ traits.name if traits.flag }}", "x"),
])
def test_a_conditional_without_else_is_an_empty_part_of_text(template: str, expected: Any) -> None:
    assert render({"v": template}) == {"v": expected}


def test_other_missing_parts_of_text_still_drop_the_key() -> None:
    assert render({"kept": 1, "v": "https://api{{ traits.missing }}.example.com"}) == {"kept": 1}


def test_a_render_failure_names_where_the_template_was_written() -> None:
    problems: list[Any] = []
    compiled = compile_tree({"v": "{{ traits.name + 1 }}"}, ("body",), lambda *p: problems.append(p),
                            locate=lambda path: f"demo.yaml:7:{len(path)}")
    assert compiled.renderer is not None
    with pytest.raises(RenderError, match=r"^demo.yaml:7:2: template '\{\{ traits.name \+ 1 \}\}' failed"):
        compiled.renderer(SCOPE)


# ---- the functions destinations need ---------------------------------------------------

TIMES = {"ts": "2024-01-15T10:00:00.123456Z", "before": "1969-12-31T23:59:59.5Z", "summer": "2024-07-01T12:00:00Z",
         "phone": "+1 (555) 010-9999", "email": "  Jane.Doe@Example.COM ", "bad": "n/a",
         "ua": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
               "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
         "events": [{"from": "Order Completed", "to": "Purchase"},
                    {"from": "Order Completed", "to": "CompletePayment"},
                    {"from": "Signed Up", "to": "CompleteRegistration"}],
         "nested": {"a": {"b": 1, "c": [2, {"d": 3}]}, "e": {}, "f": None}}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ ts | unix }}", 1705312800),
    ("{{ ts | unix_ms }}", 1705312800123),
    ("{{ ts | unix_us }}", 1705312800123456),
    ("{{ before | unix_ms }}", -500),
    ("{{ 1705312800 | unix_ms }}", 1705312800000),       # epoch seconds in
    ("{{ ts | format_date('%Y%m%d') }}", "20240115"),
    ("{{ ts | format_date('%d/%m/%Y %H:%M') }}", "15/01/2024 10:00"),
    ("{{ ts | format_date('%H:%M %Z', 'Asia/Kolkata') }}", "15:30 IST"),   # in a time zone
    ("{{ summer | format_date('%Z', 'Europe/Paris') }}", "CEST"),           # at that time
    ("{{ ts | format_date('%Z', 'Europe/Paris') }}", "CET"),
    ("{{ phone | digits }}", "15550109999"),
    ("{{ email | trim | lower | sha256 }}",
     "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"),
    ("{{ email | trim is email }}", True),
    ("{{ phone is email }}", False),
    ("{{ phone | regex_match('\\\\+1') }}", True),
    ("{{ phone | regex_search('\\\\((\\\\d+)\\\\)', 1) }}", "555"),
    ("{{ phone | regex_replace('[^0-9+]', '') }}", "+15550109999"),
    ("{{ ua | useragent }}", {"browser": "Mobile Safari", "browser_version": "17.2", "os": "iOS",
                              "os_version": "17.2", "device": "iPhone", "device_brand": "Apple",
                              "device_model": "iPhone"}),
    ("{{ events | lookup('Order Completed') }}", ["Purchase", "CompletePayment"]),
    ("{{ events | lookup('Nope') }}", []),
    ("{{ {'a': 'x', 'b': ['y', 'z']} | lookup('b') }}", ["y", "z"]),
    ("{{ nested | flatten }}", {"a.b": 1, "a.c.0": 2, "a.c.1.d": 3, "e": {}, "f": None}),
    ("{{ nested | flatten('_', 'p') }}", {"p_a_b": 1, "p_a_c_0": 2, "p_a_c_1_d": 3, "p_e": {}, "p_f": None}),
    ("{{ 'a/b c?' | path_segment }}", "a%2Fb%20c%3F"),
    ("{{ missing | coalesce(nothing, email) | trim }}", "Jane.Doe@Example.COM"),
    ("{{ '12' | int }}", 12),
    ("{{ '1.5' | float }}", 1.5),
])
def test_functions(template: str, expected: Any) -> None:
    assert render({"v": template}, {**TIMES, "nothing": None}) == {"v": expected}


@pytest.mark.parametrize("template", [
    "{{ bad | unix }}",
    "{{ bad | format_date('%Y') }}",
    "{{ ts | format_date('%Z', 'Nowhere/Atlantis') }}",   # an unknown zone: missing
    "{{ ts | format_date('%Z', '../../etc/passwd') }}",   # never a path
    "{{ ts | format_date('%Z', missing) }}",
    "{{ bad | int }}",                 # never a silent 0
    "{{ bad | float }}",
    "{{ 'no digits' | digits }}",
    "{{ phone | regex_search('x') }}",
    "{{ missing | coalesce(nothing) }}",
])
def test_functions_without_a_value_give_missing(template: str) -> None:
    assert render({"kept": 1, "v": template}, {**TIMES, "nothing": None}) == {"kept": 1}


def test_a_catastrophic_regex_is_stopped_in_time() -> None:
    compiled = compile_template("{{ text | regex_match(pattern) }}")
    assert isinstance(compiled, Compiled) and compiled.renderer is not None
    with pytest.raises(RenderError, match="took too long"):
        compiled.renderer({"text": "a" * 40 + "!", "pattern": "(a|aa)+$"})


@pytest.mark.parametrize(("template", "message"), [
    ("{{ x | regex_match('(') }}", "regex_match: bad pattern '('"),
    ("{{ x | format_date('%Q') }}", None),   # found when it runs: a rejection, not a crash
])
def test_bad_patterns(template: str, message: str | None) -> None:
    result = compile_template(template)
    if message is None:
        assert isinstance(result, Compiled) and result.renderer is not None
        with pytest.raises(RenderError, match="unknown directive"):
            result.renderer({"x": "2024-01-01T00:00:00Z"})
        return
    found = result if isinstance(result, list) else [result]
    assert isinstance(found[0], TemplateProblem) and found[0].message.startswith(message)


# ---- building structure: $each and $entries ----------------------------------------------

ORDER = {"properties": {"currency": "EUR", "price": 9, "products": [
    {"product_id": "p1", "price": 10, "quantity": 2},
    {"product_id": "p2", "quantity": 1},
    {"sku": "no-id"},
]}, "context": {"campaign": {"source": "news", "medium": "email", "name": None}}}


def test_each_maps_an_array_into_objects_reading_the_enclosing_event() -> None:
    body = {"contents": {
        "$each": "{{ properties.products }}",
        "as": "product",
        "if": "product.product_id is present",
        "value": {"id": "{{ product.product_id }}",
                  "price": "{{ product.price | default(properties.price) }}",
                  "quantity": "{{ product.quantity }}", "position": "{{ index }}"},
    }}
    assert render(body, ORDER) == {"contents": [
        {"id": "p1", "price": 10, "quantity": 2, "position": 0},
        {"id": "p2", "price": 9, "quantity": 1, "position": 1},
    ]}


def test_each_over_nothing_drops_its_key_and_a_single_object_is_one_item() -> None:
    body = {"kept": 1, "ids": {"$each": "{{ properties.missing }}", "value": "{{ item.id }}"}}
    assert render(body, ORDER) == {"kept": 1}
    body = {"ids": {"$each": "{{ properties.one }}", "value": "{{ item.id }}"}}
    assert render(body, {"properties": {"one": {"id": "x"}}}) == {"ids": ["x"]}


def test_entries_builds_an_object_from_another_objects_entries() -> None:
    body = {"utm": {"$entries": "{{ context.campaign }}", "key": "utm_{{ key }}",
                    "value": {"value": "{{ value }}"}, "if": "key != 'medium'"}}
    assert render(body, ORDER) == {"utm": {"utm_source": {"value": "news"}}}


@pytest.mark.parametrize(("body", "message"), [
    ({"$each": "{{ x }}", "value": 1, "extra": 2}, "$each takes $each, as, if, value; unknown: extra"),
    ({"$each": "not a template"}, "$each must be a template giving a list"),
    ({"$each": "{{ x }}", "as": "1bad"}, "'as' must be a name, got '1bad'"),
    ({"$entries": "{{ x }}", "$each": "{{ y }}"}, "a mapping can hold $each or $entries, not both"),
    ({"$each": "{{ x }}", "if": "item is"}, "template error"),
])
def test_directive_problems_are_found_at_load(body: dict[str, Any], message: str) -> None:
    problems: list[Any] = []
    compile_tree(body, (), lambda path, problem: problems.append(problem))
    assert problems and problems[0].message.startswith(message), problems


@pytest.mark.parametrize(("template", "message"), [
    ("{{ x | digest(1, 2, 3) }}", "filter 'digest' cannot take these arguments: too many positional arguments"),
    ("{{ x | replace('a') }}", "filter 'replace' cannot take these arguments: missing a required argument: 'new'"),
    ("{{ x is divisibleby }}", "test 'divisibleby' cannot take these arguments: missing a required argument: 'num'"),
    ("{{ x | tojson(indent=2) }}", "filter 'tojson' cannot take these arguments: got an unexpected keyword argument 'indent'"),
])
def test_wrong_arity_is_found_at_load(template: str, message: str) -> None:
    result = compile_template(template)
    found = result if isinstance(result, list) else [result]
    assert isinstance(found[0], TemplateProblem) and found[0].message == message


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ {'city': traits.missing} }}", None),                       # emptied: missing
    ("{{ [traits.missing] }}", None),
    ("{{ {} }}", {}),                                                # written empty: kept
    ("{{ traits.address | merge({'zip': traits.missing}) }}", {"city": "Paris"}),
    ("{{ traits.missing | merge({'zip': 1}) }}", None),
])
def test_emptied_literals_and_merge(template: str, expected: Any) -> None:
    assert render({"kept": 1, "v": template}) == ({"kept": 1} if expected is None
                                                   else {"kept": 1, "v": expected})
