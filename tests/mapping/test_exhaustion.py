"""Known ways to exhaust the engine from a mapping file, each refused when the file loads
(a `file:line:col` problem) or stopped within the event's budget (an EventError naming the
template), and measured here: CPU time and the memory Python allocates, under generous
bounds (safety bounds, not speed claims). Issue 11 lists where most of them come from.

A case that is neither refused nor stopped must still map, within the same bounds.
"""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.errors import EventError, SettingsError

BUDGET = "mapping this event took more than"
"""The start of what an event over its budget (steps or CPU time) is rejected with."""

CPU_LIMIT = 2.0
"""Seconds of CPU any case may take, loading and mapping (with tracemalloc's own cost)."""

MEMORY_LIMIT = 200 * 1024 * 1024
"""Bytes Python may have allocated at the peak of any case."""

EVENT = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1",
         "timestamp": "2024-05-06T09:30:00Z",
         "properties": {"total": 30, "tags": ["a", "b"], "products": [{"id": "p1", "price": 10}]},
         "context": {"ip": "203.0.113.9", "traits": {"email": "a@example.com"}}}


@dataclass(frozen=True)
class Case:
    """A mapping file (made by `text`) and what must become of it: refused at "load", the
    event stopped ("event", with `reason` in its message), or "mapped"."""

    name: str
    outcome: str
    body: Any = "{{ message }}"
    extract: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    settings: str = ""
    raw: str = ""
    reason: str = ""
    files: dict[str, str] = field(default_factory=dict)
    located: bool = True
    """An event stopped names the template (file:line:col) that was running; a rule's own
    loop (for_each) names the rule."""

    def text(self) -> str:
        if self.raw:
            return self.raw
        lines = ["destination: Demo", "slug: demo"]
        if self.settings:
            lines += ["settings:", self.settings]
        if self.values:
            lines += ["values:"] + [f"  {k}: {json.dumps(v)}" for k, v in self.values.items()]
        lines += ["rules:", "  - name: all"]
        if self.extract:
            lines += ["    extract:"] + [f"      {k}: {json.dumps(v)}" for k, v in self.extract.items()]
        lines += ["    request:", "      url: https://demo.example/x", f"      body: {json.dumps(self.body)}"]
        return "\n".join(lines) + "\n"


def _doubling(step: str, times: int) -> str:
    return step * times


def _aliases(template: str, count: int) -> str:
    return ("destination: Demo\nslug: demo\nvalues:\n"
            f"  t: &t {json.dumps(template)}\n"
            "rules:\n  - name: all\n    request:\n      url: https://demo.example/x\n"
            f"      body: [{', '.join(['*t'] * count)}]\n")


def _deep_values(count: int) -> dict[str, Any]:
    values: dict[str, Any] = {"v0": "{{ [message, message] }}"}
    for i in range(1, count):
        values[f"v{i}"] = f"{{{{ [v{i - 1}, v{i - 1}] }}}}"
    return values


CASES = [
    # ---- values that weigh far more than the memory they take -----------------------
    Case("a million references to one string", "event",
         "{{ ['x' * 200000] * 1000000 }}", reason="repetition would exceed"),
    Case("a million references, through set", "event",
         "{% set s = 'x' * 200000 %}{{ [s] * 1000000 }}", reason="repetition would exceed"),
    Case("[x, x] doubling in sets, then tojson", "event",
         "{% set x = [message] %}" + _doubling("{% set x = [x, x] %}", 40) + "{{ x | tojson }}",
         reason="grew past"),
    Case("[x, x] doubling across named values, then tojson", "event",
         "{{ v39 | tojson }}", values=_deep_values(40), reason="grew past"),
    Case("~ doubling in sets", "event",
         "{% set x = 'ab' %}" + _doubling("{% set x = x ~ x %}", 40) + "{{ x | length }}",
         reason="grew past"),
    Case("string of a list of references", "event",
         "{% set s = 'x' * 1000 %}{{ ([s] * 1000000) | string | length }}",
         reason="repetition would exceed"),
    Case("a list of shared lists, summed", "mapped",
         "{{ ([[1]] * 30000) | sum(start=[]) | length }}"),
    Case("a million characters exactly", "mapped", "{{ ('x' * 1000000) | length }}"),
    Case("a million and one characters", "event", "{{ 'x' * 1000001 }}",
         reason="repetition would exceed"),
    # ---- work that is small to write and long to run --------------------------------
    Case("range", "load", "{{ range(100000000) | list }}", reason="unknown name 'range'"),
    Case("slice into a hundred million lists", "event", "{{ [1] | slice(100000000) | list }}",
         reason="group count"),
    Case("slice into a million lists", "event", "{{ message | slice(1000000) | list }}",
         reason=BUDGET),
    Case("batch(3e8, 0)", "event", "{{ [1] | batch(3e8, 0) | list }}", reason="group count"),
    Case("batch(300000000, 0)", "event", "{{ [1] | batch(300000000, 0) | list }}",
         reason="group count"),
    Case("a loop with a heavy body", "event",
         "{% for x in [0] * 400000 %}{{ (x ~ 'a' * 900000) | length }}{% endfor %}",
         reason=BUDGET),
    Case("a loop of many cheap iterations", "event",
         "{% for x in [0] * 400000 %}{% if x == 1 %}.{% endif %}{% endfor %}x", reason=BUDGET),
    Case("map with an argument, over many items", "event",
         "{{ ([0] * 300000) | map('replace', 0, 'x' * 100) | list | length }}", reason=BUDGET),
    Case("$each over many items, each holding the message", "event",
         {"$each": "{{ [0] * 300000 }}", "value": "{{ message }}"}, reason="sandbox"),
    # The loops and the measured structures of a body, which the generated code writes out
    # itself (codegen.py, pysource.py): the same steps and checks as the closures.
    Case("$each over many items, none kept", "event",
         {"$each": "{{ [userId] * 300000 }}", "if": "false"}, reason=BUDGET),
    Case("for_each over many items, none kept", "event", located=False, reason=BUDGET,
         raw="destination: Demo\nslug: demo\nrules:\n  - name: all\n    request:\n"
             "      url: https://demo.example/x\n      for_each: \"{{ [userId] * 300000 }}\"\n"
             "      if: \"false\"\n"),
    Case("a list of sixty references to a 20,000-character value", "event",
         ["{{ big }}"] * 60, values={"big": "{{ userId ~ 'x' * 20000 }}"},
         reason="this value was stopped by the sandbox"),
    Case("a mapping of sixty references to a 20,000-character value", "event",
         {f"k{i}": "{{ big }}" for i in range(60)}, values={"big": "{{ userId ~ 'x' * 20000 }}"},
         reason="this value was stopped by the sandbox"),
    Case("$each of sixty references to a 20,000-character value", "event",
         {"$each": "{{ [0] * 60 }}", "value": "{{ big }}"},
         values={"big": "{{ userId ~ 'x' * 20000 }}"}, reason="grew past 1,000,000"),
    Case("'%(a)900000000d' % {...}", "event", "{{ '%(a)900000000d' % {'a': 1} }}",
         reason="format width"),
    Case("format with a width", "event", "{{ '%0999999999d' | format(1) }}",
         reason="format width"),
    Case("big-integer squaring", "event",
         "{% set x = 3 ** 1000 %}" + _doubling("{% set x = x * x %}", 24) + "{{ x % 10 }}",
         reason="bits"),
    Case("big-integer product", "event", "{{ (10 ** 1000) * (10 ** 1000) }}", reason="bits"),
    Case("regex_replace of an empty pattern", "event",
         "{{ ('x' * 1000) | regex_replace('', 'y' * 2000) }}", reason="grow past"),
    Case("join with a long separator", "event",
         "{{ ([0] * 100000) | join('x' * 1000) }}", reason="join would exceed"),
    Case("format_date with a long format", "event",
         "{{ timestamp | format_date('%c' * 100000) }}", reason="format is longer"),
    Case("center", "event", "{{ 'x' | center(999999999) }}", reason="width too large"),
    Case("wordwrap into single characters", "mapped",
         "{{ ('x' * 40000) | wordwrap(1) | length }}"),
    Case("pprint", "load", "{{ message | pprint }}", reason="No filter named 'pprint'"),
    # ---- JMESPath ----------------------------------------------------------------------
    Case("JMESPath [@, @] doubling, then to_string", "event", "{{ v }}",
         extract={"v": _doubling("[@, @] | ", 40) + "to_string(@)"}, reason="grew past"),
    Case("JMESPath doubling compared with itself", "event", "{{ v }}",
         extract={"v": "(" + _doubling("[@, @] | ", 40) + "@) == (" + _doubling("[@, @] | ", 40) + "@)"},
         reason="grew past"),
    Case("JMESPath doubling, flattened", "event", "{{ v }}",
         extract={"v": _doubling("[@, @] | ", 25) + "[][][][][][][][][][] | length(@)"},
         reason="grew past"),
    Case("JMESPath join with a separator from the event", "load", "{{ v }}",
         extract={"v": "join(event, properties.tags)"}, reason="separator must be a literal"),
    Case("JMESPath deep parentheses", "load", "{{ v }}",
         extract={"v": "(" * 1000 + "event" + ")" * 1000}, reason="nests too deeply"),
    Case("JMESPath a thousand nots", "load", "{{ v }}", extract={"v": "!" * 2000 + "event"},
         reason="nests too deeply"),
    Case("JMESPath a wide projection", "mapped", "{{ v }}",
         extract={"v": "properties.products[*].{" + ", ".join(
             f"field_number_{i}: id" for i in range(12)) + "}"}),
    # ---- settings ----------------------------------------------------------------------
    Case("settings regex (a+)+$ with a matching default", "settings",
         settings="  code: {type: string, regex: '(a+)+$', default: '" + "a" * 5000 + "!'}",
         reason="took too long"),
    Case("a settings-only template that fails", "event", {"a": 1},
         raw="destination: Demo\nslug: demo\nrules:\n  - name: all\n    request:\n"
             "      url: https://demo.example/x\n      headers: {X-A: '{{ 1 / 0 }}'}\n",
         reason="division by zero"),
    # ---- what cannot reach a request -----------------------------------------------------
    Case("now.fromtimestamp", "load", "{{ now.fromtimestamp }}",
         reason="'now.fromtimestamp' is not a value"),
    Case("a method of a time the event gives", "event",
         "{{ (timestamp | datetime).fromtimestamp }}", reason="is not a value a mapping can use"),
    Case("a !!binary constant", "load", raw="destination: Demo\nslug: demo\nrules:\n"
         "  - name: all\n    request:\n      url: https://demo.example/x\n"
         "      body: {v: !!binary aGVsbG8=}\n", reason="a bytes value"),
    # ---- files validate cannot read ------------------------------------------------------
    Case("extends a list", "load", raw="destination: D\nslug: d\nextends: list.yaml\n"
         "rules: [{name: a}]\n", files={"list.yaml": "- a\n- b\n"},
         reason="must be a YAML mapping"),
    Case("extends /etc/passwd", "load", raw="destination: D\nslug: d\nextends: /etc/passwd\n"
         "rules: [{name: a}]\n", reason="is elsewhere"),
    Case("extends /dev/zero", "load", raw="destination: D\nslug: d\nextends: /dev/zero\n"
         "rules: [{name: a}]\n", reason="is elsewhere"),
    Case("deep YAML nesting", "load", raw="destination: D\nslug: d\nrules: "
         + "[" * 5000 + "]" * 5000 + "\n", reason="nested more than 100 levels"),
    Case("deep Jinja parentheses", "load", "{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}",
         reason="nests too deeply"),
    Case("1 + 1 + ... with 1,000 terms", "load", "{{ " + " + ".join(["1"] * 1000) + " }}",
         reason="nests too deeply"),
    Case("500 nested ifs", "load", "{% if true %}" * 500 + "x" + "{% endif %}" * 500,
         reason="template"),
    Case("a loop inside a set block", "load",
         "{% set x %}{% for i in properties.tags %}{{ i }}{% endfor %}{% endset %}{{ x }}",
         reason="loops are not allowed inside a {% set %} block"),
    Case("!!float abc", "load", raw="destination: D\nslug: d\nrules: [{name: a}]\n"
         "examples: !!float abc\n", reason="not a valid float"),
    Case("!!int", "load", raw="destination: D\nslug: d\nrules: [{name: a}]\n"
         "examples: !!int abc\n", reason="not a valid int"),
    Case("1,000 YAML aliases of one template", "event", reason=BUDGET,
         raw=_aliases("{% if properties.total %}" + "{{ properties.total | default(0) * 2 }}" * 60
                      + "{% endif %}", 1000)),
    Case("1,000 YAML aliases of a 200 KB text", "load",
         raw=_aliases("x" * 200_000, 1000), reason="weighs more than 1,000,000"),
]


def _run(case: Case, tmp_path: Path, mapping_path: str) -> tuple[str, str]:
    """What became of the case: ("load", problems), ("event", reason), ("settings", reason)
    or ("mapped", the outcomes)."""
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "demo.yaml"
    path.write_text(case.text())
    destinations, problems = engine.check([path])
    if problems:
        return "load", "\n".join(str(p).replace(str(tmp_path) + "/", "") for p in problems)
    (destination,) = destinations.values()
    # Each case runs on both paths (tests/mapping/conftest.py): the generated functions
    # must stop what the closures stop, so none of them may fall back on the closures.
    assert destination.generated is (mapping_path == "generated")
    if destination.generated:
        assert all(code is not None for code in destination.codes), destination.notes
    try:
        outcomes = destination.map(EVENT, settings={}, now="2024-05-06T12:00:00Z")
    except EventError as exc:
        return "event", str(exc)
    except SettingsError as exc:
        return "settings", str(exc)
    for outcome in outcomes:
        json.dumps(getattr(outcome, "body", None))  # what the outbox would store
    return "mapped", repr(outcomes)[:300]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_exhaustion_is_refused_at_load_or_stopped_within_budget(case: Case, tmp_path: Path,
                                                                mapping_path: str) -> None:
    tracemalloc.start()
    started = time.process_time()
    try:
        outcome, detail = _run(case, tmp_path, mapping_path)
        cpu = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (outcome, case.reason in detail) == (case.outcome, True), detail
    if outcome == "load":
        for line in detail.splitlines():
            assert re.match(r"^[\w./-]+\.yaml:\d+:\d+: ", line), line
    if outcome == "event" and case.located:
        assert re.search(r"demo\.yaml:\d+:\d+: ", detail), detail  # the template, located
    assert cpu < CPU_LIMIT, f"{cpu:.2f} s of CPU"
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MB at the peak"
