"""The generated functions (codegen.py) give what the interpreted path gives, for every
example of every mapping and for events changed in every way a client can change them; and
they reach nothing the sandbox would not let a template reach."""

from __future__ import annotations

import copy
import dataclasses
import re
import hashlib
import types
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine.mapping import functions
from engine.errors import RenderError
from engine.mapping.codegen import RuleCode
from engine.mapping.missing import MISSING
from engine.mapping.pysource import SAFE_BUILTINS, SourceWriter
from engine.mapping.templates import Compiled, compile_template
from tests.support.builders import body_destination, destination, outcomes
from tests.support.paths import MAPPINGS

DESTINATIONS = engine.load(MAPPINGS)


EXAMPLES = [pytest.param(dest, example, id=f"{slug}-{i:02d}")
            for slug, dest in sorted(DESTINATIONS.items())
            for i, example in enumerate(dest.examples, start=1)]


@pytest.mark.parametrize(("dest", "example"), EXAMPLES)
def test_every_example_gives_the_same_on_both_paths(dest: engine.Destination,
                                                    example: engine.Example) -> None:
    assert outcomes(dest, example.event, example.settings, example.now, True) == \
        outcomes(dest, example.event, example.settings, example.now, False)


def test_every_shipped_rule_is_generated() -> None:
    for slug, dest in DESTINATIONS.items():
        assert len(dest.codes) == len(dest.rules)
        missing = [rule.name for rule, code in zip(dest.rules, dest.codes) if code is None]
        assert not missing, f"{slug}: {missing}: {dest.notes}"


# ---- events changed the ways a client can change them --------------------------------------

_ODD = st.sampled_from([None, "", 0, -1, 1.5, True, False, [], {}, "text", [1, "a"], {"a": 1},
                        "2024-01-15T10:00:00Z", "Order Completed", "a@b.example", 10**30])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += _paths(inner, prefix + (i,))
    return found


def _changed(event: Any, path: tuple[Any, ...], how: str, odd: Any) -> Any:
    event = copy.deepcopy(event)
    *parents, last = path
    holder = event
    for key in parents:
        holder = holder[key]
    if how == "drop" and isinstance(holder, dict):
        del holder[last]
    else:
        holder[last] = odd
    return event


@given(st.data())
def test_changed_events_give_the_same_on_both_paths(data: st.DataObject) -> None:
    dest = data.draw(st.sampled_from(sorted(DESTINATIONS.values(), key=lambda d: d.slug)))
    example = data.draw(st.sampled_from(dest.examples))
    event = example.event
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(event)
        if not paths:
            break
        event = _changed(event, data.draw(st.sampled_from(paths)),
                         data.draw(st.sampled_from(["drop", "set"])), data.draw(_ODD))
    assert outcomes(dest, event, example.settings, example.now, True) == \
        outcomes(dest, event, example.settings, example.now, False)


# ---- what the generated code can reach -------------------------------------------------------

# Attributes the generated source reads: of dicts it made or checked to be dicts (get,
# items), of lists and dicts it made (append, update), of the rule's own compiled parts, of
# the text it made and hashlib's hash of it (encode, hexdigest: a digest written out).
_ATTRIBUTES = {"get", "items", "append", "update", "apply", "require", "extract", "auths",
               "headers", "queries", "encode", "hexdigest",
               # and the fields of the Request it made blank (`_blank(Request)`)
               *(f.name for f in dataclasses.fields(engine.Request))}


def _names(code: types.CodeType) -> set[str]:
    found = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _names(const)
    return found


@pytest.mark.parametrize("slug", sorted(DESTINATIONS))
def test_generated_code_names_only_its_helpers(slug: str) -> None:
    """Every global, builtin or attribute the generated code names is one of its helpers
    (the sandbox's own functions, the filters Jinja's sandboxed environment holds, the
    engine's outcome types), a numbered constant, a harmless builtin, or one of the
    attributes above: nothing a template could not reach through the sandbox."""
    dest = DESTINATIONS[slug]
    for code in (*dest.codes, *([dest.values_code] if dest.values else [])):
        assert isinstance(code, RuleCode)
        namespace = code.factory.__globals__
        assert namespace["__builtins__"] is SAFE_BUILTINS
        compiled = compile(code.source, "<test>", "exec")
        unknown = _names(compiled) - set(namespace) - set(SAFE_BUILTINS) - _ATTRIBUTES - {"factory"}
        assert not unknown, unknown


def test_a_request_made_blank_by_generated_code_misses_nothing_init_would_do() -> None:
    """Generated code makes a Request blank and sets each of its fields (half the cost of
    calling __init__): that is all __init__ does as long as Request has no __post_init__
    and every field is a slot."""
    assert not hasattr(engine.Request, "__post_init__")
    assert set(engine.Request.__slots__) == {f.name for f in dataclasses.fields(engine.Request)}


def test_text_from_the_mapping_never_becomes_code(tmp_path: Any) -> None:
    """Keys and texts of a mapping file appear in the source as literals only."""
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        input: raw
        rules:
          - name: r
            extract: {"y": "a"}
            request:
              url: "https://d.example/{{ a }}"
              headers: {"X-'); import os #": "\\n'); import os #"}
              body: {"k\\"ey\\n": "{{ y }}", "{{ b }}": "v'); import os #"}
        """)
    code = dest.codes[0]
    assert code is not None and "\nimport" not in code.source and "; import" not in code.source.replace(
        "'); import os #", "")
    (request,) = dest.map({"a": "1", "b": "kb"})
    assert isinstance(request, engine.Request)
    assert request.body == {'k"ey\n': "1", "kb": "v'); import os #"}
    assert request.headers["X-'); import os #"] == "\n'); import os #"


def test_a_destination_changed_after_load_runs_its_rules_interpreted() -> None:
    """Code runs only for the very rule it was written for (not by position)."""
    calixa = DESTINATIONS["calixa"]
    changed = dataclasses.replace(calixa, rules=tuple(r for r in calixa.rules if r.name != "identify"))
    event = {"type": "group", "groupId": "g1", "userId": "u1", "messageId": "m1"}
    settings = {"api_key": "k", "endpoint": "https://c.example/in"}
    bound = changed.bind(settings)
    assert all(b.run is not None for b in bound._rules)  # the others keep their code
    assert outcomes(changed, event, settings, None, True) == outcomes(changed, event, settings, None, False)
    assert outcomes(changed, dict(event, type="identify"), settings, None, True).startswith("[('Skip'")


def test_a_call_made_twice_with_the_same_arguments_is_computed_once(tmp_path: Any) -> None:
    """A filter of _REMEMBERED_FILTERS called twice on names that hold one value for the
    whole function is computed once; over a loop's item, or `body` (a different value in
    each request), it is computed each time: the outcomes are those of the interpreted path."""
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        input: raw
        batch:
          max_items: 10
          request:
            url: https://d.example/bulk
            body: {all: "{{ items.all }}"}
        rules:
          - name: r
            extract: {created: created}
            skip_if:
              - if: created | datetime is missing
                reason: "not a date: {{ created | tojson }}"
            request:
              url: https://d.example/in
              body:
                a: "{{ created | datetime | isoformat }}"
                b: "{{ (created | datetime) | isoformat }}"
                ids:
                  $each: "{{ items }}"
                  value: "{{ item | digest(8) }}-{{ item | digest(8) }}"
                again: "{{ items[0] | digest(8) }}"
              batch_item:
                into: all
                value: {id: "{{ body.a | digest(8) }}", same: "{{ body.a | digest(8) }}"}
        """)
    code = dest.codes[0]
    assert code is not None
    # `created | datetime` (three times), `... | isoformat` (twice): two remembered calls.
    assert code.source.count("is not UNSET else (_m") == 5
    for event in ({"created": "2024-01-02T03:04:05Z", "items": ["x", "y", "z"]},
                  {"created": 1704164645, "items": "x"},
                  {"created": "soon", "items": ["x"]},
                  {"items": ["x", "y"]}):
        generated = outcomes(dest, event, {}, None, True)
        assert generated == outcomes(dest, event, {}, None, False)
    (request,) = dest.map({"created": "2024-01-02T03:04:05Z", "items": ["x", "y"]})
    assert isinstance(request, engine.Request) and isinstance(request.body, dict)
    x, y = (hashlib.sha256(t.encode()).hexdigest()[:8] for t in "xy")
    assert request.body["ids"] == [f"{x}-{x}", f"{y}-{y}"]


def test_orderings_with_a_constant_side_give_the_same_on_both_paths(tmp_path: Any) -> None:
    dest = body_destination(tmp_path, """\
        right: "{{ a > 0 }}"
        left: "{{ 0 <= a }}"
        both: "{{ a < b }}"
        chained: "{{ 0 < a < 10 }}"
        text: "{{ a > 'm' }}"
        """)
    for a in (None, 1, -1, 0, 2.5, "z", [1]):
        for event in ({"a": a, "b": 1}, {"b": 1}, {"a": a}):
            assert outcomes(dest, event, {}, None, True) == outcomes(dest, event, {}, None, False)


def test_digests_written_out_give_what_the_filters_give(tmp_path: Any) -> None:
    """digest and sha256 are written into the generated source (not called) for the
    lengths known when the mapping loads: every length and every kind of value gives what
    the filter function gives, and what the interpreted path gives."""
    dest = body_destination(tmp_path, """\
        whole: "{{ a | digest }}"
        d16: "{{ a | digest(16) }}"
        d1: "{{ a | digest(1) }}"
        d0: "{{ a | digest(0) }}"
        negative: "{{ a | digest(-3) }}"
        d64: "{{ a | digest(64) }}"
        past: "{{ a | digest(100) }}"
        given: "{{ a | digest(n) }}"
        float: "{{ a | digest(8.0) }}"
        sha: "{{ a | sha256 }}"
        joined: "{{ a | digest(4) }}-{{ a | sha256 }}"
        """)
    source = dest.codes[0].source
    assert "_sha256(" in source and "hexdigest()[:16]" in source
    for a in ("x", "", "é ✓", 7, 2.5, True, None, {"k": [1]}, [1, "2"], "x" * 200):
        for event in ({"a": a, "n": 5}, {"a": a}, {"n": 3}):
            generated = outcomes(dest, event, {}, None, True)
            assert generated == outcomes(dest, event, {}, None, False)
            if a is None or "a" not in event:
                continue
            body = dest.bind({}).map(event)[0].body
            assert isinstance(body, dict)
            for key, length in (("whole", 64), ("d16", 16), ("d1", 1), ("d0", 0),
                                ("negative", -3), ("d64", 64), ("past", 100)):
                assert body[key] == functions.FILTERS["digest"](a, length)
            assert body["sha"] == functions.FILTERS["sha256"](a)


_ODD_VALUES = ("x", "", 'a "quoted" \\ back', "tab\there\nline\x01", "é ✓ \u2028", "\ud800",
               "</script>", 7, -0.0, 1e-05, 2.5, float("nan"), True, None, [], [1, "2"],
               {"k": "v"}, {"k": 1e-07})


def test_tojson_of_a_mapping_literal_written_as_text_gives_what_the_filter_gives(
        tmp_path: Any) -> None:
    """`{...} | tojson` of constant text keys is written as text when the values turn out
    to be text, and by the filter otherwise: whatever the values (text that JSON escapes,
    numbers the json module writes its own way, missing, null...), the text is the
    filter's, on both paths; every value is computed even when an earlier one is not
    text."""
    dest = body_destination(tmp_path, """\
        one: "{{ {'a': a} | tojson }}"
        two: "{{ {'a': a, 'b': b} | tojson }}"
        constants: "{{ {'n': 1.5, 'a': a, 'flag': true, 'word': 'w\\"x', 'big': 10**20} | tojson }}"
        second: "{{ {'b': b, 'a': a | string} | tojson }}"
        chosen: "{{ ({'a': a} if b else {'b': b}) | tojson }}"
        maybe: "{{ {'a': a} | tojson if b }}"
        repeated: "{{ {'a': a, 'a': b} | tojson }}"
        nulled: "{{ {'a': a, 'z': none} | tojson }}"
        """)
    source = dest.codes[0].source
    # One per value computed (10**20 among them), none for `repeated` nor `nulled`.
    assert source.count("_json_str(") == 10
    for a in _ODD_VALUES:
        for b in ("y", 3, None, [1], 1e-05):
            for event in ({"a": a, "b": b}, {"a": a}, {"b": b}, {}):
                generated = outcomes(dest, event, {}, None, True)
                assert generated == outcomes(dest, event, {}, None, False), (a, b, event)
    tojson = functions.FILTERS["tojson"]
    for a in _ODD_VALUES:
        if a is None:
            continue
        body = dest.bind({}).map({"a": a, "b": "y"})[0].body
        assert isinstance(body, dict)
        assert body["one"] == tojson({"a": a})
        assert body["two"] == tojson({"a": a, "b": "y"})
        assert body["constants"] == tojson({"n": 1.5, "a": a, "flag": True, "word": 'w"x',
                                            "big": 10**20})
        assert body["chosen"] == body["maybe"] == body["one"]


def test_a_form_body_and_the_bulk_item_that_reads_it_give_the_same_on_both_paths(
        tmp_path: Any) -> None:
    """A form body of constant keys is made text entry by entry (constants once, when the
    mapping loads), and its bulk item reads the body's entries from the locals that hold
    them: whatever each entry turns out to be (missing, null, a number, a mapping...), the
    outcomes are those of the interpreted path."""
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        input: raw
        settings:
          client: {type: string, default: c1}
        batch:
          max_items: 10
          request:
            url: https://d.example/bulk
            body: {all: "{{ items.all }}", settings_only: "{{ items.s }}"}
        rules:
          - name: r
            request:
              url: https://d.example/in
              encoding: form
              body:
                rec: 1
                flag: true
                gone: null
                ratio: 0.5
                client: "{{ settings.client }}"
                value: "{{ value }}"
                joined: "v={{ value }}"
                digest: "{{ value | digest(8) }}"
                nested: {a: "{{ value }}", b: 2}
              batch_item:
                if: body.value is present or body.rec
                into: all
                value:
                  rec: "{{ body.rec }}"
                  flag: "{{ body.flag }}"
                  gone: "{{ body.gone }}"
                  value: "{{ body.value }}"
                  joined: "{{ body.joined }}"
                  deeper: "{{ body.nested.a }}"
                  absent: "{{ body.absent }}"
                  whole: "{{ body | tojson }}"
                  same: "{{ body }}"
          - name: s
            when: {condition: only_settings}
            request:
              url: https://d.example/in
              encoding: form
              body: {client: "{{ settings.client }}", rec: 1}
              batch_item: {into: s, value: {client: "{{ body.client }}"}}
        """)
    code, settings_only = dest.codes
    assert code is not None and settings_only is not None
    assert "_form_value(v) for k, v in" not in code.source  # made text entry by entry
    # The item of r reads the whole body: made text in a copy. That of s reads entries
    # only: made text where it is.
    assert "= {**_body" in code.source and "= {**_body" not in settings_only.source
    for value in ("text", "", 0, 7, 2.5, True, False, None, [], [1, "a"], {}, {"a": 1},
                  "2024-01-15T10:00:00Z", 10**30, "a" * 300):
        for event in ({"value": value}, {"value": value, "only_settings": True}):
            assert outcomes(dest, event, {}, None, True) == \
                outcomes(dest, event, {}, None, False), (value, event)
    for event in ({}, {"only_settings": True}):
        assert outcomes(dest, event, {"client": "c 2"}, None, True) == \
            outcomes(dest, event, {"client": "c 2"}, None, False)
    (request,) = dest.map({"value": 7})
    assert isinstance(request, engine.Request)
    assert request.body == {"rec": "1", "flag": "true", "ratio": "0.5", "client": "c1",
                            "value": "7", "joined": "v=7",
                            "digest": hashlib.sha256(b"7").hexdigest()[:8],
                            "nested": '{"a":7,"b":2}'}
    assert request.batch_item is not None
    assert request.batch_item["rec"] == 1 and request.batch_item["value"] == 7
    assert "gone" not in request.batch_item and "absent" not in request.batch_item


def test_the_scope_body_is_kept_only_where_something_reads_it(tmp_path: Any) -> None:
    """A request with a bulk item keeps its body in the scope's `body` for the item; when
    the item reads only entries of a body literal (from their locals), that `body` is not
    kept, nor the message's own `body` field read: same outcomes either way."""
    dest = destination(tmp_path, """\
        destination: D
        slug: d
        input: raw
        batch:
          max_items: 10
          request: {url: https://d.example/bulk, body: {all: "{{ items.all }}"}}
        rules:
          - name: entries
            when: {condition: entries}
            request:
              url: https://d.example/in
              headers: {Content-Type: application/json}
              body: {a: "{{ a }}", n: 1}
              batch_item: {into: all, value: {a: "{{ body.a }}", n: "{{ body.n }}"}}
          - name: whole
            request:
              url: https://d.example/in
              headers: {Content-Type: application/json}
              body: {a: "{{ a }}", n: 1}
              batch_item: {into: all, value: {body: "{{ body }}"}}
        """)
    entries, whole = dest.codes
    assert entries is not None and whole is not None
    kept = re.compile(r"_body\d+ = _f")  # the scope's `body`, the message's until a request sets it
    assert kept.search(whole.source) and "event.get('body', M)" in whole.source
    assert not kept.search(entries.source) and "event.get('body', M)" not in entries.source
    assert "else:\n                pass\n" in entries.source  # all its block was that `body`
    for event in ({"a": 1, "entries": True}, {"entries": True}, {"a": "x"}, {"body": {"b": 2}},
                  {"body": 3, "a": None, "entries": True}):
        assert outcomes(dest, event, {}, None, True) == outcomes(dest, event, {}, None, False)


def test_the_function_s_own_names_never_hide_those_set_per_settings(tmp_path: Any) -> None:
    """The factory's per-settings names (a request's headers, a require's getter) and the
    function's numbered locals never meet: each request keeps its own headers, and a
    require that is not a plain path keeps its getter, however many come before."""
    requests = destination(tmp_path, """\
        destination: D
        slug: d
        input: raw
        rules:
          - name: r
            requests:
              - url: https://d.example/0
                headers: {X-Zero: "0"}
              - url: https://d.example/1
              - url: https://d.example/2
              - url: https://d.example/3
                headers: {X-Three: "3"}
        """, name="requests.yaml")
    made = requests.bind({}).map({"a": 1})
    assert [dict(r.headers) for r in made if isinstance(r, engine.Request)] == \
        [{"X-Zero": "0"}, {}, {}, {"X-Three": "3"}]
    assert outcomes(requests, {"a": 1}, {}, None, True) == \
        outcomes(requests, {"a": 1}, {}, None, False)
    required = destination(tmp_path, """\
        destination: D
        slug: d
        input: raw
        rules:
          - name: r
            require:
              - {field: "a[0]", reason: "no a"}
              - {field: "b[0]", reason: "no b"}
            request: {url: https://d.example/0}
        """, name="required.yaml")
    for event in ({"a": [1], "b": [2]}, {"a": [1]}, {"b": [1]}, {}):
        assert outcomes(required, event, {}, None, True) == \
            outcomes(required, event, {}, None, False)


def test_a_local_cannot_take_the_form_of_another_kind_of_name() -> None:
    writer = SourceWriter()
    assert writer.local() == "_t1" and writer.local("body") == "_body2"
    for stem in ("f", "m", "j", "Headers"):
        with pytest.raises(ValueError, match="a local's stem"):
            writer.local(stem)


def test_a_time_read_by_several_filters_is_parsed_once(tmp_path: Any) -> None:
    """`created | add_days(2)`, `created | days_between(now)`... each read `created` as a
    time first: the generated code parses it once, and gives what the interpreted path
    gives for times, epoch numbers, text that is no time, and nothing."""
    dest = body_destination(tmp_path, """\
        parsed: "{{ created | datetime }}"
        later: "{{ created | add_days(2) }}"
        age: "{{ created | days_between(now) }}"
        iso: "{{ created | isoformat }}"
        unix: "{{ created | unix }}"
        ms: "{{ created | unix_ms }}"
        year: "{{ created | format_date('%Y') }}"
        again: "{{ created | datetime | isoformat }}"
        """)
    texts_parsed: list[Any] = []
    real = functions.parse_datetime

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            texts_parsed.append(value)
        return real(value)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(functions, "parse_datetime", parse)
        dest.bind({}).map({"created": "2024-01-02T03:04:05Z"}, now="2024-05-06T12:00:00Z")
        assert texts_parsed == ["2024-01-02T03:04:05Z"]  # `now` is a time already
    for created in ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05", " 2024-01-02 ", 1704164645,
                    1704164645123, 2.5, "soon", "", None, True, [], {}, 10**30, -10**12):
        for event in ({"created": created}, {}):
            assert outcomes(dest, event, {}, "2024-05-06T12:00:00Z", True) == \
                outcomes(dest, event, {}, "2024-05-06T12:00:00Z", False), created


_CONDITIONS = ["a is present", "a is string", "a == b", "a != 'x'", "a > 0", "0 <= a < 10",
               "'x' in a", "a not in b", "not a", "a is present and b > 1",
               "a is missing or not (b == 2)", "a is divisibleby 2", "a is email", "true"]


@pytest.mark.parametrize("condition", _CONDITIONS)
def test_a_condition_is_true_false_or_missing_whatever_it_is_given(condition: str,
                                                                   tmp_path: Any) -> None:
    """Why the generated code does not check a condition's result as it checks other
    template results (SourceWriter._yes_or_no): it can only be True, False or missing."""
    compiled = compile_template("{{ " + condition + " }}", "f.yaml:1:1")
    assert isinstance(compiled, Compiled) and compiled.renderer is not None
    dest = destination(tmp_path, f"""\
        destination: D
        slug: d
        input: raw
        rules:
          - name: r
            skip_if: [{{if: "{condition}", reason: skipped}}]
            request: {{url: https://d.example/in, body: {{v: "{{{{ {condition} }}}}", k: 1}}}}
        """)
    for a in (None, "", "x", "a@b.example", 0, 4, 2.5, True, [], ["x"], {}, {"x": 1}, 10**30):
        for event in ({"a": a, "b": 2}, {"a": a}, {"b": a}):
            try:
                value = compiled.renderer(event)
            except RenderError:
                pass
            else:
                assert value is MISSING or type(value) is bool, (condition, event, value)
            assert outcomes(dest, event, {}, None, True) == outcomes(dest, event, {}, None, False)
