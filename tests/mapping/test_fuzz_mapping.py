"""Property-based attack on the mapping language: any event through every shipped mapping
(the library's per-event path), and mapping files, generated and mutated from the shipped
ones, through `check` and `engine validate` (what `load` and the command line run).

For any input: the engine's own errors only (an EventError for an event, `file:line:col:
message` problems for a file), never another exception; what a request holds is JSON. Every
event is mapped through both paths, the generated functions (codegen.py) and the closures
(the reference), which must give the same outcomes or the same error.
A few cases in `make test`, many more in `make fuzz` (tests/support/fuzz.py).
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.cli import main
from engine.errors import EngineError
from engine.mapping.destination import BoundDestination
from engine.mapping import budget
from engine.outcomes import Request
from engine.serialization import to_json
from tests.support.fuzz import TEMPLATE_PIECES, json_values, messages, mutations, share
from tests.support.paths import MAPPINGS

NOW = "2024-05-06T12:00:00Z"
DESTINATIONS = engine.load(MAPPINGS)
BOUND = {slug: (d.bind(d.examples[0].settings if d.examples else {}, generated=True),
                d.bind(d.examples[0].settings if d.examples else {}, generated=False))
         for slug, d in sorted(DESTINATIONS.items())}
EXAMPLE_EVENTS = [e.event for d in DESTINATIONS.values() for e in d.examples]

# The larger shipped files take a few tenths of a second each to compile: `make test` mutates
# the smaller ones, `make fuzz` all of them.
_SMALL = ["calixa.yaml", "skalin.yaml", "callexa.yaml", "callexa-sync-back.yaml", "posthog.yaml"]
FILES = _SMALL if settings.default.max_examples < 1000 else \
    sorted(p.name for p in MAPPINGS.glob("*.yaml") if not p.name.startswith("_"))
_LOCATED = re.compile(r"^\S+:\d+:\d+: \S")


@st.composite
def _changed_example(draw: st.DrawFn) -> Any:
    """A documented event with one field replaced by anything, or removed."""
    event = copy.deepcopy(draw(st.sampled_from(EXAMPLE_EVENTS)))
    if isinstance(event, dict) and event:
        key = draw(st.sampled_from(sorted(event)))
        if draw(st.booleans()):
            event[key] = draw(json_values)
        else:
            del event[key]
    return event


def _mapped(bound: BoundDestination, event: Any, now: Any = NOW) -> Any:
    """What mapping `event` gives (checked to be JSON the outbox can store), or the error."""
    try:
        outcomes = bound.map(copy.deepcopy(event), now=now)
    except EngineError as exc:
        return f"{type(exc).__name__}: {exc}"
    for outcome in outcomes:
        if isinstance(outcome, Request):
            to_json({"url": outcome.url, "headers": outcome.headers, "body": outcome.body})
    return outcomes


@given(event=messages | _changed_example())
def test_any_event_through_every_shipped_mapping(event: Any) -> None:
    for slug, (generated, interpreted) in BOUND.items():
        assert _mapped(generated, event) == _mapped(interpreted, event), slug


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every case (so a template met again compiles from the cache), with
    the base file the shipped mappings extend."""
    directory = tmp_path_factory.mktemp("fuzz-mappings")
    for base in MAPPINGS.glob("_*.yaml"):
        shutil.copy(base, directory / base.name)
    return directory


def _check_file(home: Path, text: str) -> None:
    path = home / "fuzzed.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    budget.fresh()
    destinations, problems = engine.check([path])
    for problem in problems:
        assert _LOCATED.match(str(problem)), problem
    for destination in destinations.values():  # what loads maps its own examples, or says why not
        for example in destination.examples[:3]:
            try:
                both = [destination.bind(example.settings, generated=g) for g in (True, False)]
            except EngineError:
                continue
            generated, interpreted = (_mapped(b, example.event, example.now or NOW) for b in both)
            assert generated == interpreted, example.name


@share(0.35)
@given(data=st.data())
def test_mutated_shipped_mapping_files_load_or_say_where_they_are_wrong(home: Path,
                                                                       data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(FILES))
    text = (MAPPINGS / name).read_text(encoding="utf-8")
    _check_file(home, data.draw(mutations(text)))


_KEYS = ["destination", "slug", "extends", "settings", "values", "request", "rules", "batch",
         "examples", "snake_case", "accepts", "input", "unmatched", "name", "when", "body",
         "url", "extract", "for_each", "$each", "if", "headers", "auth", "query"]


@st.composite
def _yamlish(draw: st.DrawFn) -> str:
    """Text built from mapping keys, values and the pieces attacks are made of."""
    out = ["destination: D", "slug: d"] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        indent = "  " * draw(st.integers(min_value=0, max_value=4))
        key = draw(st.sampled_from(_KEYS) | st.text(max_size=6))
        value = "".join(draw(st.lists(st.sampled_from(TEMPLATE_PIECES) | st.text(max_size=6),
                                      max_size=4)))
        out.append(f"{indent}{draw(st.sampled_from(['', '- ']))}{key}: {value}")
    return "\n".join(out) + "\n"


@share(0.35)
@given(text=_yamlish())
def test_generated_mapping_files_load_or_say_where_they_are_wrong(home: Path, text: str) -> None:
    _check_file(home, text)


@share(0.15)
@given(text=_yamlish() | st.sampled_from(FILES).map(
    lambda name: (MAPPINGS / name).read_text(encoding="utf-8")).flatmap(mutations))
def test_validate_exits_with_problems_never_a_traceback(home: Path, text: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "validated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code in (0, 1), (code, err)
    assert "Traceback" not in out + err
    for line in out.splitlines():
        assert _LOCATED.match(line), line
