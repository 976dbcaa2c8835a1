"""map, select, reject, selectattr and rejectattr run outside Jinja's templates (with the
two parts of a template context they read): the translated closures and the generated code
give what Jinja itself gives, value for value and error for error (around them, the
engine's own rules apply: a null item of a list literal is left out, where Jinja keeps it)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import RenderError
from engine.mapping import budget, templates
from engine.mapping.budget import BudgetExceeded
from engine.mapping.missing import MISSING
from engine.mapping.templates import Compiled, compile_template
from tests.support.builders import body_destination, outcomes

TEMPLATES = [
    "{{ xs | map(attribute='id') | list }}",
    "{{ xs | map(attribute='id', default='none') | list }}",
    "{{ xs | map(attribute='a.b') | first }}",
    "{{ xs | map(attribute=0) | list }}",
    "{{ xs | map(attribute='id') | first }}",
    "{{ xs | map('string') | map('trim') | map('sha256') | list }}",
    "{{ xs | map('upper') | join(',') }}",
    "{{ xs | map('digest', 8) | list }}",
    "{{ xs | map(name) | list }}",
    "{{ xs | select | list }}",
    "{{ xs | select('string') | list }}",
    "{{ xs | select(test, 1) | list }}",
    "{{ xs | reject('none') | list }}",
    "{{ xs | reject('in', ys) | first }}",
    "{{ xs | selectattr('type', 'equalto', 'x') | map(attribute='id') | first }}",
    "{{ xs | rejectattr('id') | list }}",
    "{{ xs | selectattr('id') | list | length }}",
    "{{ {'ids': xs | map(attribute='id') | list, 'n': nothing} }}",
    "{{ xs | map(attribute='id') | select | list if xs }}",
    "ids: {{ xs | map(attribute='id') | join(',') }}",
]

_SCALARS = st.sampled_from([None, "", " a ", "x", "X y", 0, 1, 2.5, True, False, 10**20])
_ITEM = st.one_of(
    _SCALARS,
    st.fixed_dictionaries({}, optional={
        "id": _SCALARS, "type": st.sampled_from(["x", "y", None]),
        "a": st.one_of(_SCALARS, st.fixed_dictionaries({}, optional={"b": _SCALARS}))}),
    st.lists(_SCALARS, max_size=2),
)
_XS = st.one_of(st.lists(_ITEM, max_size=5), _ITEM)


def _jinja(source: str, monkeypatch: pytest.MonkeyPatch) -> Compiled:
    """The template as Jinja's own compiler runs it (nothing translated)."""
    def untranslatable(node: Any) -> Any:
        raise templates._Untranslatable("forced")
    with monkeypatch.context() as patched:
        patched.setattr(templates, "_translate", untranslatable)
        compiled = templates._compile_cached.__wrapped__(source, "f.yaml:1:1", ())
    assert isinstance(compiled, Compiled) and compiled.renderer is not None
    assert compiled.shape is not None and compiled.shape.parts is None  # type: ignore[union-attr]
    return compiled


def _outcome(compiled: Compiled, scope: dict[str, Any]) -> Any:
    assert compiled.renderer is not None
    budget.fresh()  # each render its own event's budget, as the engine gives it
    try:
        value = compiled.renderer(scope)
    except (RenderError, BudgetExceeded) as exc:
        return ("error", type(exc).__name__, str(exc))
    return ("missing",) if value is MISSING else ("value", repr(value))


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, Compiled, Compiled]]:
    mp = pytest.MonkeyPatch()
    try:
        found = []
        for source in TEMPLATES:
            translated = compile_template(source, "f.yaml:1:1")
            assert isinstance(translated, Compiled)
            assert translated.shape is not None and translated.shape.parts is not None, source  # type: ignore[union-attr]
            found.append((source, translated, _jinja(source, mp)))
        return found
    finally:
        mp.undo()


@given(xs=_XS, ys=st.lists(_SCALARS, max_size=3),
       name=st.sampled_from(["upper", "string", "nope", "_steps", "_weigh", "length"]),
       test=st.sampled_from(["equalto", "sameas", "nope", "divisibleby"]))
def test_the_translation_gives_what_jinja_gives(pairs: list[tuple[str, Compiled, Compiled]],
                                                 xs: Any, ys: Any, name: str, test: str) -> None:
    scope = {"xs": xs, "ys": ys, "name": name, "test": test}
    for source, translated, jinja in pairs:
        assert _outcome(translated, scope) == _outcome(jinja, scope), source


def test_a_missing_list_gives_missing_on_both() -> None:
    for source in TEMPLATES[:17]:
        compiled = compile_template(source, "f.yaml:1:1")
        assert isinstance(compiled, Compiled) and compiled.renderer is not None
        assert compiled.renderer({}) is MISSING, source


def test_the_engines_own_filters_cannot_be_called_by_name() -> None:
    """`_steps` would put a generator into a request; a file cannot name it, and an event
    cannot either (a name given as the event runs)."""
    problem = compile_template("{{ xs | map('_steps') | list }}", "f.yaml:1:1")
    assert not isinstance(problem, Compiled)
    compiled = compile_template("{{ xs | map(name) | list }}", "f.yaml:1:1")
    assert isinstance(compiled, Compiled) and compiled.renderer is not None
    with pytest.raises(RenderError, match="filter '_steps' is the engine's own"):
        compiled.renderer({"xs": [[1]], "name": "_steps"})


def test_generated_code_runs_them_as_the_interpreted_path_does(tmp_path: Any) -> None:
    dest = body_destination(tmp_path, """\
        first_id: "{{ xs | selectattr('type', 'equalto', 'x') | map(attribute='id') | first }}"
        ids: "{{ xs | map(attribute='id') | list }}"
        hashed: "{{ xs | map('string') | map('trim') | map('sha256') | list }}"
        kept: "{{ xs | reject('none') | list }}"
        chosen: "{{ xs | select | list }}"
        """)
    code = dest.codes[0]
    assert code is not None and not code.fallbacks
    for xs in ([{"id": 1, "type": "x"}, {"type": "x"}, {"id": " b ", "type": "y"}],
               [None, "a", 0], "text", {"id": 2}, None, [], [[1], {"id": None}]):
        event = {"xs": xs}
        assert outcomes(dest, event, {}, None, True) == outcomes(dest, event, {}, None, False), xs
