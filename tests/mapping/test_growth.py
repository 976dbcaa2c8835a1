"""What templates can build is bounded when they load (growth.py), checked when they run
only where the bound cannot say (bounds.check_weight), and every event has a budget
(budget.py)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine.errors import EventError, RenderError
from engine.mapping import bounds, budget
from engine.mapping.growth import CHECKED, MAX_FACTOR, Bound
from engine.mapping.templates import (
    Compiled,
    TemplateProblem,
    compile_template,
    compile_tree,
)
from tests.support.builders import destination, problems
from tests.support.paths import MAPPINGS

SCOPE: dict[str, Any] = {"traits": {"tags": ["b", "a"], "name": "Initech"}, "message": {"a": 1}}


def render(template: str, scope: dict[str, Any] = SCOPE) -> Any:
    compiled = compile_template(template)
    assert isinstance(compiled, Compiled) and compiled.renderer is not None, compiled
    return compiled.renderer(scope)


# ---- bounds ---------------------------------------------------------------------------

def test_parts_of_the_event_at_disjoint_paths_add_up_to_the_event_once() -> None:
    body = Bound.path("event", "traits", "email") + Bound.path("event", "properties") \
        + Bound.path("event", "context", "ip")
    assert body.factor() == 1
    assert (Bound.path("event") + Bound.path("event", "traits")).factor() == 2
    assert Bound.path("event").times(MAX_FACTOR + 1).too_large()
    assert not CHECKED.too_large() and (CHECKED + CHECKED).too_large()


@pytest.mark.parametrize(("template", "factor"), [
    ("{{ traits.email }}", 1),
    ("{{ {'email': traits.email, 'name': traits.name, 'all': properties} }}", 1),
    ("{{ [message, message] }}", 2),
    ("{{ message | merge({'event': matched_event}) }}", 2),   # the event name is in the event
    ("{{ traits | tojson }}", 8),
])
def test_template_bounds(template: str, factor: int) -> None:
    compiled = compile_template(template)
    assert isinstance(compiled, Compiled)
    assert compiled.bound.factor() == factor


def test_weight_counts_every_reference_and_measures_each_part_once() -> None:
    x: Any = ["abc"]
    for _ in range(100):
        x = [x, x]  # 2**100 references to "abc", 201 distinct lists
    budget.fresh()
    assert bounds.weight_of(x) > bounds.MAX_OUTPUT
    assert budget.current().steps < 10
    assert bounds.weight_of({"k": [1, "xy", None]}) == 1 + 1 + 3 + 1 + 2 + 1
    assert bounds.weight_of(2**4095) == 1 + 4096 // 3  # about its digits


def _weight(value: Any) -> int:
    """The weight as the module's docstring defines it, every reference walked."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return len(value) + sum(_weight(k) + _weight(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return len(value) + sum(_weight(v) for v in value)
    if isinstance(value, int):
        return 1 + value.bit_length() // 3
    return 1


_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
                    st.text(max_size=30))


@given(st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=4)),
    max_leaves=40), st.integers(0, 300), st.integers(0, 3))
def test_weight_of_is_the_weight_it_defines(value: Any, limit: int, shared: int) -> None:
    """Measured once per part and counted per reference, walked without recursion: the
    weight, or a number past `limit` exactly when the weight is."""
    value = [value] * shared + [value] if shared else value  # a part held several times
    budget.fresh()
    found = bounds.weight_of(value, limit)
    expected = _weight(value)
    if expected > limit:
        assert found > limit
    else:
        assert found == expected


# ---- only what cannot be bounded at load is measured when it runs ------------------------

@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    real = bounds.weight_of

    def counting(value: Any, *args: Any, **kwargs: Any) -> int:
        calls.append(value)
        return real(value, *args, **kwargs)
    monkeypatch.setattr(bounds, "weight_of", counting)
    return calls


@pytest.mark.parametrize("slug", ["skalin", "calixa", "callexa"])
def test_the_benchmarked_mappings_measure_nothing_per_event(slug: str, measured: list[Any]) -> None:
    found = engine.load(MAPPINGS)[slug]
    for example in found.examples:
        try:
            found.map(copy.deepcopy(example.event), settings=example.settings, now=example.now)
        except EventError:
            pass
    assert measured == []


def test_a_template_that_holds_the_event_many_times_is_measured(measured: list[Any]) -> None:
    template = "{{ [" + ", ".join(["message"] * (MAX_FACTOR + 1)) + "] | length }}"
    assert render(template) == MAX_FACTOR + 1
    assert len(measured) == 1


def test_named_values_carry_their_bounds(tmp_path: Path) -> None:
    values = "".join(f"  v{i}: \"{{{{ [v{i - 1}, v{i - 1}] }}}}\"\n" for i in range(1, 40))
    found = destination(tmp_path, f"""\
        destination: Demo
        slug: demo
        values:
          v0: "{{{{ [message, message] }}}}"
{values}        rules:
          - name: all
            request: {{url: "https://demo.example", body: {{n: "{{{{ v39 | length }}}}"}}}}
        """.replace("\n  v", "\n          v"))
    with pytest.raises(EventError, match=r"demo.yaml:\d+:\d+: .*grew past 1,000,000"):
        found.map({"type": "track", "event": "e", "userId": "u"})


# ---- the sandbox ---------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("{{ traits.tags | reverse }}", ["a", "b"]),
    ("{{ traits.tags | map('upper') }}", ["B", "A"]),
    ("{{ traits.tags | select('ne', 'a') }}", ["b"]),
    ("{{ traits.tags | unique }}", ["b", "a"]),
    ("{{ [[1], [2, 3]] | sum(start=[]) }}", [1, 2, 3]),
    ("{{ [1, 2, 3] | sum }}", 6),
    ("{{ [{'n': 1}, {'n': 2}] | sum(attribute='n') }}", 3),
    ("{{ traits.tags | batch(1) }}", [["b"], ["a"]]),
    ("{{ now.year }}", 2024),
])
def test_filters_that_returned_iterators_return_lists(template: str, expected: Any) -> None:
    from datetime import datetime, timezone
    assert render(template, {**SCOPE, "now": datetime(2024, 5, 6, tzinfo=timezone.utc)}) == expected


@pytest.mark.parametrize("template", [
    "{{ traits.tags.count }}",
    "{{ traits.name.upper }}",
    "{{ (traits.ts | datetime).fromtimestamp }}",
    "{{ traits.name | attr('upper') }}",
])
def test_attributes_that_are_not_data_are_refused(template: str) -> None:
    with pytest.raises(RenderError, match="is not a value a mapping can use"):
        render(template, {"traits": {"tags": [1], "name": "x", "ts": "2024-01-01T00:00:00Z"}})


@pytest.mark.parametrize(("template", "message"), [
    ("{{ now.tzinfo }}", "'now.tzinfo' is not a value"),
    ("{{ traits | _weigh }}", "filter '_weigh' is the engine's own"),
    ("{% set x %}{% for t in traits.tags %}{{ t }}{% endfor %}{% endset %}{{ x }}",
     "loops are not allowed inside a {% set %} block"),
    ("{% filter upper %}{% for t in traits.tags %}{{ t }}{% endfor %}{% endfilter %}",
     "loops are not allowed inside a {% filter %} block"),
    ("{{ traits | pprint }}", "template error: No filter named 'pprint'"),
    ("{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}", "template error: the template nests too deeply"),
])
def test_refused_at_load(template: str, message: str) -> None:
    result = compile_template(template)
    found = result if isinstance(result, list) else [result]
    assert isinstance(found[0], TemplateProblem), found
    assert found[0].message.startswith(message), found[0].message


def test_a_template_repeated_by_yaml_aliases_compiles_once() -> None:
    first = compile_template("{% if a %}{{ a }}{% endif %}", "f.yaml:1:1")
    assert compile_template("{% if a %}{{ a }}{% endif %}", "f.yaml:1:1") is first
    assert compile_template("{% if a %}{{ a }}{% endif %}", "f.yaml:2:1") is not first


# ---- the budget -----------------------------------------------------------------------------

@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> int:
    """A budget of 1,000 steps and all the CPU time these tests could want: the steps alone
    decide, however busy the machine."""
    monkeypatch.setattr(budget, "MAX_STEPS", 1000)
    monkeypatch.setattr(budget, "MAX_CPU", 60.0)
    return 1000


def test_steps_past_the_budget_stop_the_template(small_budget: int) -> None:
    compiled = compile_template("{% for x in items %}{{ x }}{% endfor %}")
    assert isinstance(compiled, Compiled) and compiled.renderer is not None
    budget.fresh()
    assert compiled.renderer({"items": list(range(small_budget // 2))})
    with pytest.raises(RenderError, match="more than 1,000 steps"):
        compiled.renderer({"items": [""] * small_budget})


def test_cpu_time_past_the_budget_stops_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 ms of CPU, and iterations cheap in steps and dear in time (2,000 hashes of
    # 100,000 characters take tens of milliseconds anywhere).
    monkeypatch.setattr(budget, "MAX_CPU", 0.01)
    compiled = compile_template("{% for x in items %}{{ (x * 100000) | sha256 }}{% endfor %}")
    assert isinstance(compiled, Compiled) and compiled.renderer is not None
    with pytest.raises(RenderError, match="more than 10 ms of CPU time"):
        compiled.renderer({"items": ["a"] * 2000})


def test_cpu_time_taken_before_the_first_clock_reading_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU clock is first read at the first check: what the event took before it is
    counted all the same (as the wall time that passed, never less than the CPU time)."""
    monkeypatch.setattr(budget, "MAX_CPU", 0.01)
    budget.fresh()
    budget.spend()  # the budget is made; no clock read yet
    start = time.thread_time()
    while time.thread_time() - start < 0.03:  # 30 ms of CPU, not one step
        pass
    with pytest.raises(budget.BudgetExceeded, match="more than 10 ms of CPU time"):
        budget.check_time()


def test_each_event_has_a_budget_of_its_own(tmp_path: Path, small_budget: int) -> None:
    # Each event takes two thirds of the budget: together they would be over it.
    found = destination(tmp_path, """\
        destination: Demo
        slug: demo
        rules:
          - name: all
            request:
              url: https://demo.example
              body: {n: "{% for x in properties.items %}.{% endfor %}"}
        """)
    event = {"type": "track", "event": "e", "userId": "u",
             "properties": {"items": [0] * (small_budget * 2 // 3)}}
    for _ in range(2):
        (request,) = found.map(event)
        assert len(request.body["n"]) == small_budget * 2 // 3  # type: ignore[index]


def test_for_each_counts_its_items(tmp_path: Path, small_budget: int) -> None:
    found = destination(tmp_path, """\
        destination: Demo
        slug: demo
        rules:
          - name: all
            request:
              url: https://demo.example
              for_each: "{{ properties.items }}"
              body: {i: "{{ index }}"}
        """)
    event = {"type": "track", "event": "e", "userId": "u",
             "properties": {"items": [0] * (small_budget + 1)}}
    with pytest.raises(EventError, match="rule all: mapping this event took more than 1,000 steps"):
        found.map(event)


@pytest.mark.parametrize("body", [
    {"$each": "{{ properties.items }}", "value": "{{ index }}"},
    {"$each": "{{ properties.items }}", "if": "false"},
    {"$entries": "{{ properties.table }}", "value": "{{ key }}"},
    {"$entries": "{{ properties.table }}", "if": "false"},
    # Two steps per item: its own, and its one entry's.
    {"nested": [{"$each": "{{ properties.half }}", "value": {
        "$entries": "{{ properties.small }}", "key": "{{ key }}{{ index }}"}}]},
])
def test_each_and_entries_count_their_items(tmp_path: Path, small_budget: int,
                                            body: dict[str, Any]) -> None:
    # On both paths (the generated code writes these loops out itself): each item a step,
    # kept or not, and the directive stopped says so where it is written.
    found = destination(tmp_path, f"""\
        destination: Demo
        slug: demo
        rules:
          - name: all
            request: {{url: "https://demo.example", body: {json.dumps(body)}}}
        """)
    items = small_budget * 2 // 3
    event = {"type": "track", "event": "e", "userId": "u",
             "properties": {"items": [0] * items, "table": {f"k{i}": i for i in range(items)},
                            "half": [0] * (items // 2), "small": {"a": 1}}}
    found.map(event)
    over = {**event, "properties": {"items": [0] * (small_budget + 1), "small": {"a": 1},
                                    "table": {f"k{i}": i for i in range(small_budget + 1)},
                                    "half": [0] * (small_budget // 2 + 1)}}
    with pytest.raises(EventError, match=r"rule all: \S*demo.yaml:\d+:\d+: \$(each|entries) was "
                                         "stopped by the sandbox: mapping this event took more "
                                         "than 1,000 steps"):
        found.map(over)


def test_a_body_whose_bound_is_too_large_is_measured(tmp_path: Path) -> None:
    # Forty keys of text each up to forty times one long trait: measured as it is built.
    keys = "".join(f"                k{i}: \"{{{{ traits.x ~ traits.x }}}}\"\n" for i in range(40))
    found = destination(tmp_path, f"""\
        destination: Demo
        slug: demo
        rules:
          - name: all
            request:
              url: https://demo.example
              body:
{keys}""")
    (request,) = found.map({"type": "identify", "userId": "u", "traits": {"x": "y" * 10}})
    assert request.body["k0"] == "y" * 20  # type: ignore[index]
    with pytest.raises(EventError, match=r"demo.yaml:\d+:\d+: this value was stopped"):
        found.map({"type": "identify", "userId": "u", "traits": {"x": "y" * 20_000}})


def test_constants_are_weighed_at_load(tmp_path: Path) -> None:
    text = ("destination: Demo\nslug: demo\nvalues:\n  big: &big \"" + "x" * 300_000 + "\"\n"
            "rules:\n  - name: all\n    request:\n      url: https://demo.example\n"
            "      body: [*big, *big, *big, *big]\n")
    assert problems(tmp_path, text) == [
        "demo.yaml:9:13: this value weighs more than 1,000,000 characters and items (a YAML "
        "alias counts each time it is used)"]


def test_compile_tree_reports_heavy_constants() -> None:
    found: list[Any] = []
    compile_tree({"a": ["x" * 600_000] * 2}, ("body",), lambda path, problem: found.append(path))
    assert found == [("body", "a")]


def test_heavy_constants_beside_templates_are_found_at_load() -> None:
    found: list[Any] = []
    compile_tree({"a": "x" * 600_000, "b": "x" * 600_000, "c": "{{ traits.name }}"}, ("body",),
                 lambda path, problem: found.append((path, problem.message)))
    assert found == [(("body",), "this value weighs more than 1,000,000 characters and items "
                                 "(a YAML alias counts each time it is used)")]
