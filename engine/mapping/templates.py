"""Compile YAML body trees whose string leaves are Jinja templates into render closures.

Rendering rules (docs/mapping-format.md):
- a leaf that is one expression, `"{{ traits.employees }}"`, keeps the value's type;
- text mixed with expressions gives a string; a string that looks like a number stays one;
- a value that is missing or null drops its key (never "None" or ""), and a mapping or list
  emptied that way drops too;
- keys may be templates as well.

Speed: the common expression forms (names, dotted paths, filters, tests, comparisons, `and`
/`or`/`not`, `~`, arithmetic, literals) are translated into Python closures when the mapping
loads, so rendering makes no Jinja context at all. Anything else (blocks, loops, macros) is
compiled by the sandboxed Jinja compiler once and rendered as text.
"""

from __future__ import annotations

import inspect
import operator
import re
import warnings
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Mapping, NoReturn

import regex
from jinja2 import TemplateSyntaxError, Undefined, meta, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.utils import _PassArg

from ..errors import EngineError, RenderError
from ..serialization import format_datetime
from . import budget
from .bounds import MAX_OUTPUT, bounded_binop, check_weight
from .functions import MISSING_AWARE_FILTERS, compile_regex
from .growth import (
    CHECKED,
    NOTHING,
    Bound,
    analyze_expression,
    analyze_template,
    weight_bound,
)
from .missing import MISSING, Missing, MissingValue
from .sandbox import ENV, INTERNAL_FILTERS
from .shapes import DictShape, DirectiveShape, LeafShape, ListShape, Shape

__all__ = ["Renderer", "TemplateProblem", "Compiled", "Known", "compile_tree",
           "compile_expression", "is_template"]

Scope = dict[str, Any]
Renderer = Callable[[Scope], Any]
"""A compiled value: called with the event's scope, returns the value or MISSING."""


@dataclass(frozen=True)
class TemplateProblem:
    """A template that cannot compile: `line` is 1-based inside the template text."""

    message: str
    line: int = 1


@dataclass(frozen=True)
class Compiled:
    renderer: Renderer | None  # None: the value is a constant
    constant: Any = None
    settings_used: frozenset[str] = frozenset()
    names_used: frozenset[str] = frozenset()
    settings_inserted: frozenset[str] = frozenset()
    """Settings only ever inserted as they are (`{{ settings.token }}`, nothing done to them),
    which delivery can put in at send time."""
    shape: Shape | None = None
    """How the renderer builds the value, for the code generator (shapes.py); None for a
    constant, and for a value that only stands in for one that did not compile."""
    bound: Bound = NOTHING
    """How large the value can be (growth.py): what templates that read it build on."""


Names = Mapping[str, Bound]
"""The bounds of the names templates at one place can read (growth.DEFAULT_NAMES, and the
mapping's own values): what the analysis of each template starts from."""


_MARKERS = ("{{", "{%", "{#")


def is_template(value: Any) -> bool:
    # One scan for "{" first: a long text repeated by YAML aliases is not searched three
    # times per use.
    return isinstance(value, str) and "{" in value and any(m in value for m in _MARKERS)


# ---- expression translation ------------------------------------------------------------

class _Untranslatable(EngineError):
    pass


def _ordering(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    # `traits.age > 18` without an age is missing (false in a condition), not an error.
    def compare(a: Any, b: Any) -> Any:
        if a is None or b is None or isinstance(a, Undefined) or isinstance(b, Undefined):
            return MISSING
        return op(a, b)
    return compare


def _contains(a: Any, b: Any) -> Any:
    if b is None or isinstance(b, Undefined):
        return MISSING
    return a in b


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": _ordering(operator.lt),
    "lteq": _ordering(operator.le), "gt": _ordering(operator.gt), "gteq": _ordering(operator.ge),
    "in": _contains, "notin": lambda a, b: _not(_contains(a, b)),
}


def _not(value: Any) -> Any:
    return value if value is MISSING else not value


class _EmptiedDict(dict[Any, Any]):
    """A dict literal whose every value was missing: `{}` inside an expression (so that
    `{'a': x} | merge(other)` still merges), but as a template's value it drops its key,
    as an emptied mapping of a body does."""

    __slots__ = ()


class _EmptiedList(list[Any]):
    """A list literal whose every item was missing (see _EmptiedDict)."""

    __slots__ = ()


def _absent(value: Any) -> bool:
    # Every undefined value of the mapping environment is a Missing (its `undefined`).
    return value is None or type(value) is Missing


_ARITH = {nodes.Add: "+", nodes.Sub: "-", nodes.Mul: "*", nodes.Div: "/",
          nodes.FloorDiv: "//", nodes.Mod: "%", nodes.Pow: "**"}


def _attr(obj: Any, name: Any) -> Any:
    if type(obj) is dict:
        return obj.get(name, MISSING)
    return ENV.getattr(obj, name)


def _item(obj: Any, key: Any) -> Any:
    if type(obj) is dict:
        return obj.get(key, MISSING) if isinstance(key, (str, int, float)) else MISSING
    return ENV.getitem(obj, key)


def _step(obj: Any, key: Any) -> Any:
    if obj is MISSING:
        return MISSING
    return ENV.getattr(obj, key) if isinstance(key, str) else _item(obj, key)


def _path_renderer(root: str, attrs: tuple[Any, ...]) -> Renderer:
    """`a.b.c` over dicts, the commonest leaf, with no per-step dispatch."""
    if not attrs:
        return lambda s: s.get(root, MISSING)
    if len(attrs) == 1:
        (a,) = attrs

        def one(s: Scope) -> Any:
            v = s.get(root, MISSING)
            if type(v) is dict:
                return v.get(a, MISSING)
            return MISSING if v is MISSING else _step(v, a)
        return one

    def many(s: Scope) -> Any:
        v = s.get(root, MISSING)
        for a in attrs:
            if type(v) is dict:
                v = v.get(a, MISSING)
            elif v is MISSING:
                return MISSING
            else:
                v = _step(v, a)
        return v
    return many


def _as_path(node: nodes.Node) -> tuple[str, tuple[Any, ...]] | None:
    attrs: list[Any] = []
    while True:
        if isinstance(node, nodes.Getattr):
            attrs.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            attrs.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            return node.name, tuple(reversed(attrs))
        else:
            return None


class _ByNameContext:
    """What Jinja's map, select, reject, selectattr and rejectattr read of a template's
    context: the environment, to call a filter or test by name (`map('trim')`), and the
    evaluation context such a filter may take. With it they run outside a template."""

    environment = ENV
    eval_ctx = nodes.EvalContext(ENV)


_BY_NAME_FILTERS = frozenset({"map", "select", "reject", "selectattr", "rejectattr"})
"""The filters that take a template context only for _ByNameContext's two parts (Jinja 3.1:
filters.prepare_map, prepare_select_or_reject)."""

_BY_NAME_CONTEXT = _ByNameContext()


def _callable_of(table: dict[str, Any], name: str, kind: str) -> Callable[..., Any]:
    func = table[name]
    pass_arg = _PassArg.from_obj(func)
    if pass_arg is _PassArg.environment:
        return lambda *a, **k: func(ENV, *a, **k)
    if pass_arg is _PassArg.eval_context:
        ctx = nodes.EvalContext(ENV)
        return lambda *a, **k: func(ctx, *a, **k)
    if pass_arg is _PassArg.context:
        if kind == "filter" and name in _BY_NAME_FILTERS:
            return lambda *a, **k: func(_BY_NAME_CONTEXT, *a, **k)
        raise _Untranslatable(f"{kind} {name} needs a template context")
    plain: Callable[..., Any] = func
    return plain


def keeps_missing_items(node: nodes.Node) -> bool:
    """Can the expression's value hold missing values inside it (`map(attribute='id')`
    over items without an id)? Its result is cleaned of them, as Jinja's is
    (without_missing)."""
    return any(f.name == "map" for f in node.find_all(nodes.Filter)) or \
        isinstance(node, nodes.Filter) and node.name == "map"


def _translate(node: nodes.Node) -> Renderer:
    path = _as_path(node)
    if path is not None:
        return _path_renderer(*path)
    if isinstance(node, nodes.Const):
        value = node.value
        return lambda s: value
    if isinstance(node, nodes.Getattr):
        inner, attr = _translate(node.node), node.attr
        return lambda s: _attr(inner(s), attr)
    if isinstance(node, nodes.Getitem):
        inner, key = _translate(node.node), _translate(node.arg)
        return lambda s: _item(inner(s), key(s))
    if isinstance(node, nodes.Slice):
        parts = [_translate(n) if n is not None else (lambda s: None)
                 for n in (node.start, node.stop, node.step)]
        start, stop, step = parts
        return lambda s: slice(start(s), stop(s), step(s))
    if isinstance(node, nodes.Tuple):
        members = [_translate(i) for i in node.items]
        return lambda s: tuple(i(s) for i in members)
    if isinstance(node, nodes.List):
        # A missing (or null) item of a list literal is left out, as a body key is.
        items = [_translate(i) for i in node.items]

        def literal_list(s: Scope) -> Any:
            out = []
            for item in items:
                v = item(s)
                if not _absent(v):
                    out.append(v)
            return out if out or not items else _EmptiedList()
        return literal_list
    if isinstance(node, nodes.Dict):
        # A missing (or null) value of a dict literal drops its key, as in a body.
        pairs = [(_translate(p.key), _translate(p.value)) for p in node.items]

        def literal_dict(s: Scope) -> Any:
            out = {}
            for key, value in pairs:
                k, v = key(s), value(s)
                if not _absent(v) and not _absent(k):
                    out[k] = v
            return out if out or not pairs else _EmptiedDict()
        return literal_dict
    if isinstance(node, (nodes.Filter, nodes.Test)):
        return _translate_call(node)
    if isinstance(node, nodes.And):
        left, right = _translate(node.left), _translate(node.right)
        return lambda s: left(s) and right(s)
    if isinstance(node, nodes.Or):
        left, right = _translate(node.left), _translate(node.right)
        return lambda s: left(s) or right(s)
    if isinstance(node, nodes.Not):
        inner = _translate(node.node)
        return lambda s: not inner(s)  # `not missing` is true: missing is falsy
    if isinstance(node, nodes.Neg):
        inner = _translate(node.node)
        return lambda s: -inner(s)
    if isinstance(node, nodes.CondExpr):
        test, yes = _translate(node.test), _translate(node.expr1)
        no = _translate(node.expr2) if node.expr2 is not None else (lambda s: MISSING)
        return lambda s: yes(s) if test(s) else no(s)
    if isinstance(node, nodes.Compare):
        first = _translate(node.expr)
        ops = [(_COMPARE[o.op], _translate(o.expr)) for o in node.ops]
        if len(ops) == 1:
            (op, right), = ops
            return lambda s: op(first(s), right(s))

        def chain(s: Scope) -> Any:
            left = first(s)
            for op, expr in ops:
                right = expr(s)
                if not op(left, right):
                    return False
                left = right
            return True
        return chain
    if isinstance(node, nodes.Concat):
        parts = [_translate(n) for n in node.nodes]

        def concat(s: Scope) -> str:
            out = "".join(_text(p(s)) for p in parts)
            if len(out) > MAX_OUTPUT:
                raise SecurityError(f"a template value grew past {MAX_OUTPUT} characters")
            return out
        return concat
    for klass, symbol in _ARITH.items():
        if type(node) is klass:
            left, right = _translate(node.left), _translate(node.right)
            return lambda s: bounded_binop(symbol, _operand(left(s)), _operand(right(s)))
    raise _Untranslatable(type(node).__name__)


def _operand(value: Any) -> Any:
    if isinstance(value, Undefined):
        raise MissingValue("arithmetic on a missing value")
    return value


def _text(value: Any) -> str:
    if value is None:
        raise MissingValue("a value printed into text is null")
    return str(value)  # Missing raises MissingValue here


# Filters whose result is never larger than a fixed size or than what they were given.
_SMALL_RESULT_FILTERS = frozenset({
    "digest", "lower", "upper", "trim", "snake_case", "length", "count", "int", "float",
    "abs", "round", "first", "last", "default", "d", "bool", "datetime", "add_days",
    "days_between", "isoformat", "without", "truncate", "capitalize", "title",
})


def call_target(node: nodes.Filter | nodes.Test) -> tuple[Callable[..., Any], bool]:
    """The function a filter or test call runs, and whether a missing (or null) subject or
    argument makes it missing without calling it (the translator and the code generator
    both call this one)."""
    func, sized, propagate = raw_call_target(node)
    if sized:
        raw = func

        def checked(*args: Any, **kwargs: Any) -> Any:
            result = raw(*args, **kwargs)
            if type(result) is str and len(result) > MAX_OUTPUT:
                raise SecurityError(f"a template value grew past {MAX_OUTPUT} characters")
            return result
        func = checked
    return func, propagate


def raw_call_target(node: nodes.Filter | nodes.Test) -> tuple[Callable[..., Any], bool, bool]:
    """call_target, for a caller that checks sizes itself: the function, whether its text
    result must be checked against MAX_OUTPUT (the check the sandbox's wrapper makes), and
    whether a missing subject or argument makes the call missing."""
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        raise _Untranslatable("dynamic arguments")
    table: dict[str, Any]
    is_filter = isinstance(node, nodes.Filter)
    table, kind = (ENV.filters, "filter") if is_filter else (ENV.tests, "test")
    if node.name not in table:
        raise _Untranslatable(f"unknown {kind}")  # reported by Jinja's own compile
    func = _callable_of(table, node.name, kind)
    propagate = is_filter and node.name not in MISSING_AWARE_FILTERS
    raw = getattr(func, "__wrapped__", None)
    if raw is not None and not getattr(func, "has_precheck", False) and \
            getattr(raw, "jinja_pass_arg", None) is None:
        # The bound check of the sandbox's wrapper is made by the caller, inline: one
        # Python call less per filter (and the missing check too).
        # Tests give true or false: nothing to check.
        return raw, is_filter and node.name not in _SMALL_RESULT_FILTERS, propagate
    return func, False, propagate


def _translate_call(node: nodes.Filter | nodes.Test) -> Renderer:
    func, propagate = call_target(node)
    subject = _translate(node.node) if node.node is not None else (lambda s: MISSING)
    args = [_translate(a) for a in node.args]
    kwargs = [(str(k.key), _translate(k.value)) for k in node.kwargs]
    if not propagate:
        if not args and not kwargs:
            return lambda s: func(subject(s))
        return lambda s: func(subject(s), *[a(s) for a in args], **{k: v(s) for k, v in kwargs})
    # A filter given a missing or null value yields missing: `phone | digest` without a
    # phone drops its key, never sends sha256("None").
    if not args and not kwargs:
        def call0(s: Scope) -> Any:
            v = subject(s)
            return MISSING if v is None or type(v) is Missing else func(v)
        return call0
    if not kwargs and len(args) == 1:
        (arg,) = args

        def call1(s: Scope) -> Any:
            v = subject(s)
            if v is None or type(v) is Missing:
                return MISSING
            a = arg(s)
            return MISSING if type(a) is Missing else func(v, a)
        return call1

    def call(s: Scope) -> Any:
        v = subject(s)
        if v is None or isinstance(v, Undefined):
            return MISSING
        values = [a(s) for a in args]
        named = {k: f(s) for k, f in kwargs}
        if any(isinstance(a, Undefined) for a in values) or \
                any(isinstance(a, Undefined) for a in named.values()):
            return MISSING
        return func(v, *values, **named)
    return call


# ---- checks on the parsed template -----------------------------------------------------

_FORBIDDEN = {nodes.Extends: "extends", nodes.Include: "include", nodes.Import: "import",
              nodes.FromImport: "from ... import"}


def _arity_problem(node: nodes.Filter | nodes.Test) -> str | None:
    """A filter or test called with arguments its function cannot take, found at load."""
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        return None
    kind = "filter" if isinstance(node, nodes.Filter) else "test"
    func: Any = (ENV.filters if kind == "filter" else ENV.tests).get(node.name)
    if func is None:
        return None  # unknown: Jinja's own compile says so
    target: Any = getattr(func, "checked_test", None) or inspect.unwrap(func)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    given = 1 + len(node.args) + (1 if getattr(target, "jinja_pass_arg", None) is not None else 0)
    try:
        signature.bind(*([None] * given), **{str(k.key): None for k in node.kwargs})
    except TypeError as exc:
        return f"{kind} '{node.name}' cannot take these arguments: {exc}"
    return None


def _settings_inserted(tree: nodes.Template) -> set[str]:
    """The settings a template only ever prints as they are: `{{ settings.token }}`."""
    direct: dict[str, int] = {}
    for output in tree.find_all(nodes.Output):
        for part in output.nodes:
            if isinstance(part, nodes.Getattr) and isinstance(part.node, nodes.Name) \
                    and part.node.name == "settings":
                direct[part.attr] = direct.get(part.attr, 0) + 1
    everywhere: dict[str, int] = {}
    for name in tree.find_all(nodes.Name):
        if name.name == "settings":
            everywhere["*"] = everywhere.get("*", 0) + 1
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "settings":
            everywhere[attr.attr] = everywhere.get(attr.attr, 0) + 1
    # Any other use of `settings` (a loop over it, settings['x'], | tojson) disqualifies all.
    if everywhere.get("*", 0) != sum(v for k, v in everywhere.items() if k != "*"):
        return set()
    return {name for name, count in direct.items() if everywhere.get(name) == count}


_TIME_PARTS = frozenset({"year", "month", "day", "hour", "minute", "second", "microsecond"})


def _check(tree: nodes.Template) -> tuple[list[TemplateProblem], set[str], set[str]]:
    problems: list[TemplateProblem] = []
    settings: set[str] = set()
    names = meta.find_undeclared_variables(tree)  # not the template's own set and loop names
    for klass, word in _FORBIDDEN.items():
        for found in tree.find_all(klass):
            problems.append(TemplateProblem(f"'{word}' is not allowed in mapping templates",
                                            found.lineno))
    # Every list a template can reach is bounded (MAX_OUTPUT items), so a loop is bounded;
    # loops inside loops (or in macros, which loops can call) multiply, so they are refused.
    for block in tree.find_all((nodes.Macro, nodes.CallBlock)):
        problems.append(TemplateProblem("macros are not allowed in mapping templates", block.lineno))
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            problems.append(TemplateProblem("recursive loops are not allowed in mapping templates",
                                            loop.lineno))
        inner = next(loop.find_all(nodes.For), None)
        if inner is not None:
            problems.append(TemplateProblem("loops inside loops are not allowed in mapping templates",
                                            inner.lineno))
    # Text captured by `{% set x %}...{% endset %}` or `{% filter %}` is not measured as it
    # is printed, as a template's own text is: a loop there could build any amount of it.
    for capture in tree.find_all((nodes.AssignBlock, nodes.FilterBlock)):
        looped = next(capture.find_all(nodes.For), None)
        if looped is not None:
            word = "set" if isinstance(capture, nodes.AssignBlock) else "filter"
            problems.append(TemplateProblem(f"loops are not allowed inside a {{% {word} %}} block",
                                            looped.lineno))
    for used in tree.find_all(nodes.Filter):
        # `map('_steps')` names one too, as the filter map calls.
        named = used.args[0].value if used.name == "map" and used.args \
            and isinstance(used.args[0], nodes.Const) else used.name
        if isinstance(named, str) and named in INTERNAL_FILTERS:
            problems.append(TemplateProblem(f"filter '{named}' is the engine's own; a "
                                            "mapping cannot use it", used.lineno))
    for attr in tree.find_all(nodes.Getattr):
        # `now` is a time: its parts are numbers; anything else of it (a method, a class,
        # the time zone object) is nothing a request can hold.
        if isinstance(attr.node, nodes.Name) and attr.node.name == "now" \
                and attr.attr not in _TIME_PARTS:
            problems.append(TemplateProblem(
                f"'now.{attr.attr}' is not a value: a time's parts are "
                f"{', '.join(sorted(_TIME_PARTS))} (or use a filter: now | isoformat)", attr.lineno))
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        assert isinstance(node, (nodes.Filter, nodes.Test))
        problem = _arity_problem(node)
        if problem is not None:
            problems.append(TemplateProblem(problem, node.lineno))
    for call in tree.find_all(nodes.Filter):
        # A constant pattern is compiled at load, so a bad one is found by validate.
        if call.name.startswith("regex_") and call.args and isinstance(call.args[0], nodes.Const) \
                and isinstance(call.args[0].value, str):
            try:
                compile_regex(call.args[0].value)
            except regex.error as exc:
                problems.append(TemplateProblem(
                    f"{call.name}: bad pattern {call.args[0].value!r}: {exc}", call.lineno))
    for attr in tree.find_all(nodes.Getattr):
        if attr.attr.startswith("_"):
            problems.append(TemplateProblem(
                f"attribute '{attr.attr}' is not allowed: names starting with '_' are private",
                attr.lineno))
        if isinstance(attr.node, nodes.Name) and attr.node.name == "settings":
            settings.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
            if item.arg.value.startswith("_"):
                problems.append(TemplateProblem(
                    f"key '{item.arg.value}' is not allowed: names starting with '_' are private",
                    item.lineno))
            if isinstance(item.node, nodes.Name) and item.node.name == "settings":
                settings.add(item.arg.value)
    return problems, settings, names


# ---- compiling one template ------------------------------------------------------------

def _leaf(result: Any) -> Any:
    if result is None or isinstance(result, (Undefined, _EmptiedDict, _EmptiedList)):
        return MISSING
    if isinstance(result, datetime):
        return format_datetime(result)
    if isinstance(result, str) and len(result) > MAX_OUTPUT:
        raise SecurityError(f"a template value grew past {MAX_OUTPUT} characters")
    return result


def _guard(fn: Renderer, source: str, origin: str) -> Renderer:
    where = f"{origin}: " if origin else ""

    def render(scope: Scope) -> Any:
        try:
            result = fn(scope)
            if type(result) is str and len(result) <= MAX_OUTPUT:
                return result  # the commonest case, decided without another call
            return _leaf(result)
        except MissingValue:
            return MISSING
        except SecurityError as exc:
            raise RenderError(f"{where}template {_shown(source)} was stopped by the sandbox: "
                              f"{exc}") from None
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise RenderError(f"{where}template {_shown(source)} failed: {exc}") from None
    return render


def _shown(source: str) -> str:
    return repr(source if len(source) <= 120 else source[:117] + "...")


def _empty_when_false(tree: nodes.Template) -> None:
    """`{{ '-eu' if eu }}` among other text is an empty part when the test is false, as
    Jinja users expect (alone in a leaf it stays missing, and drops its key)."""
    for output in tree.find_all(nodes.Output):
        if output is tree.body[0] and len(tree.body) == 1 and len(output.nodes) == 1:
            continue
        for part in output.nodes:
            if isinstance(part, nodes.CondExpr) and part.expr2 is None:
                part.expr2 = nodes.Const("", lineno=part.lineno)


def compile_template(source: str, origin: str = "", names: Names | None = None
                     ) -> Compiled | TemplateProblem | list[TemplateProblem]:
    """Compile one template string (a leaf, a key, a URL, ...). `origin` (file:line:col)
    prefixes the errors it raises when it renders; `names` holds the bounds of the names it
    may read (growth.py; the defaults when not given).

    The same text at the same place with the same names compiles once: a YAML alias repeats
    a node, not its compilation."""
    key = tuple(sorted(names.items())) if names else ()
    found = _compile_cached(source, origin, key)
    return list(found) if isinstance(found, tuple) else found


@lru_cache(maxsize=1024)
def _compile_cached(source: str, origin: str, names: tuple[tuple[str, Bound], ...]
                    ) -> Compiled | TemplateProblem | tuple[TemplateProblem, ...]:
    try:
        found = _compile(source, origin, dict(names))
    except RecursionError:
        # Jinja parses, optimizes and generates code recursively: a thousand nested
        # parentheses or `1 + 1 + ...` terms go deeper than Python allows.
        return TemplateProblem("template error: the template nests too deeply (too many "
                               "parentheses, brackets, terms or blocks inside each other)")
    except (SyntaxError, MemoryError) as exc:
        # Python refuses to compile what Jinja generated ("too many statically nested
        # blocks", "too many levels of indentation").
        reason = exc.msg if isinstance(exc, SyntaxError) else "out of memory"
        return TemplateProblem(f"template error: the template is too complex to compile ({reason})")
    return tuple(found) if isinstance(found, list) else found


def _compile(source: str, origin: str, names: Names
             ) -> Compiled | TemplateProblem | list[TemplateProblem]:
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Jinja reads string literals as Python does: `'\{'` is an invalid escape that
            # Python only warns about (and a stricter run turns into an error).
            warnings.simplefilter("always")
            tree = ENV.parse(source)
            ENV.compile(tree, raw=True)  # raises for unknown filters and tests, at load
        for warning in caught:
            if issubclass(warning.category, (DeprecationWarning, SyntaxWarning)):
                return TemplateProblem(f"template error: {warning.message} in a string "
                                       "(write a backslash as \\\\ inside a template's quotes)")
    except TemplateSyntaxError as exc:
        return TemplateProblem(f"template error: {exc.message}", exc.lineno or 1)
    except TemplateError as exc:
        return TemplateProblem(f"template error: {exc}")
    problems, settings, used = _check(tree)
    if problems:
        return problems
    inserted = frozenset(_settings_inserted(tree))  # before the analysis adds its filters
    _empty_when_false(tree)
    body = tree.body
    fn: Renderer | None = None
    translated: tuple[Any, ...] | None = None
    single = len(body) == 1 and isinstance(body[0], nodes.Output) and len(body[0].nodes) == 1 \
        and not isinstance(body[0].nodes[0], nodes.TemplateData)
    if single:
        output = body[0]
        assert isinstance(output, nodes.Output)
        bound, output.nodes[0] = analyze_expression(output.nodes[0], names)
    else:
        bound = analyze_template(tree, names)
    if len(body) == 1 and isinstance(body[0], nodes.Output):
        parts = body[0].nodes
        try:
            if single:
                fn = _translate(parts[0])
                if keeps_missing_items(parts[0]):
                    fn = _cleaned(fn)
            else:
                fn = _mixed([p.data if isinstance(p, nodes.TemplateData) else _translate(p)
                             for p in parts])
            translated = tuple(p.data if isinstance(p, nodes.TemplateData) else p for p in parts)
        except _Untranslatable:
            fn = None
        if fn is None and single:
            fn = _native_expression(parts[0])
    if fn is None:
        template = ENV.from_string(tree)
        fn = _block(template)
    # The shape holds the expressions as the analysis left them: with its `_weigh` checks,
    # which the generated code calls where the closures do.
    return Compiled(_guard(fn, source, origin), None, frozenset(settings), frozenset(used),
                    inserted, shape=LeafShape(source, origin, translated), bound=bound)


def _native_expression(expression: nodes.Expr) -> Renderer:
    """A single `{{ expression }}` that could not be translated, compiled by Jinja as an
    expression so that its value keeps its type (what Environment.compile_expression does,
    from the tree the analysis put its checks into)."""
    assign = nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)
    template = ENV.from_string(nodes.Template([assign], lineno=1))
    run = TemplateExpression(template, False)
    return lambda s: without_missing(run(**s))


def _cleaned(fn: Renderer) -> Renderer:
    return lambda s: without_missing(fn(s))


def without_missing(value: Any) -> Any:
    """A value Jinja computed, with the missing values inside its lists and mappings left
    out (so that no Undefined reaches a body)."""
    if isinstance(value, dict):
        return {k: without_missing(v) for k, v in value.items() if not isinstance(v, Undefined)}
    if isinstance(value, (list, tuple)):
        return [without_missing(v) for v in value if not isinstance(v, Undefined)]
    return value


def _mixed(parts: list[str | Renderer]) -> Renderer:
    def render(scope: Scope) -> str:
        return "".join(p if isinstance(p, str) else _text(p(scope)) for p in parts)
    return render


def _block(template: Any) -> Renderer:
    def render(scope: Scope) -> Any:
        size = 0
        chunks = []
        for chunk in template.generate(scope):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"template output grew past {MAX_OUTPUT} characters")
            chunks.append(chunk)
        text = "".join(chunks)
        return text if text.strip() else MISSING
    return render


def compile_expression(source: str, origin: str = "", names: Names | None = None
                       ) -> Compiled | TemplateProblem | list[TemplateProblem]:
    """Compile a bare Jinja expression (a condition): `traits.email is present`."""
    return compile_template("{{ " + source + " }}", origin, names)


# ---- trees -------------------------------------------------------------------------------

Locate = Callable[[tuple[Any, ...]], str]


@dataclass(frozen=True)
class Known:
    """The names a template may read at one place of a mapping file, and what to say of
    the others (`later`: names defined after this place, so used before they are)."""

    names: frozenset[str]
    later: frozenset[str] = frozenset()

    def explain(self, name: str) -> str:
        if name in self.later:
            return f"'{name}' is used before it is defined (values are computed in order)"
        return f"unknown name '{name}' (templates here can read: {', '.join(sorted(self.names))})"

    def with_names(self, *names: str) -> "Known":
        return Known(self.names | frozenset(names), self.later - frozenset(names))


def compile_tree(value: Any, path: tuple[Any, ...],
                 report: Callable[[tuple[Any, ...], TemplateProblem], None],
                 key_paths: dict[Any, tuple[Any, ...]] | None = None,
                 locate: Locate | None = None, known: Known | None = None,
                 names: Names | None = None) -> Compiled:
    """Compile a YAML value whose string leaves (and keys) may be templates.

    `report(path, problem)` is called for every template that does not compile; the result
    is still a usable Compiled so that every problem in a file is found in one pass.
    `key_paths` gives, for a mapping assembled from several places, where each key was written;
    `locate(path)` says where a path is (file:line:col) for the errors templates raise;
    `known` (when given) holds the names templates may read, and any other is reported;
    `names` the bounds of the names (growth.py) that are not the event's own fields.
    """
    return _Tree(report, locate, known, names).compile(value, path, key_paths or {})


def _merge_usage(parts: list[Compiled]) -> tuple[frozenset[str], frozenset[str]]:
    settings: set[str] = set()
    names: set[str] = set()
    for p in parts:
        settings |= p.settings_used
        names |= p.names_used
    return frozenset(settings), frozenset(names)


def _weighed(render: Renderer, origin: str) -> Renderer:
    """`render`, its value measured (bounds.check_weight): for the mappings and lists of a
    body whose bound, known at load, is too large to trust."""
    where = f"{origin}: " if origin else ""

    def weighed(scope: Scope) -> Any:
        return _weigh(render(scope), where)
    return weighed


def _weigh(value: Any, where: str) -> Any:
    """`value` measured (see _weighed; the generated code calls this where the closures
    do); `where` is "file:line:col: " or ""."""
    try:
        return value if value is MISSING else check_weight(value)
    except SecurityError as exc:
        raise RenderError(f"{where}this value was stopped by the sandbox: {exc}") from None


_TOO_HEAVY = (f"this value weighs more than {MAX_OUTPUT:,} characters and items (a YAML "
              "alias counts each time it is used)")


class _Tree:
    """One compile_tree call: where problems go, and the names templates can read."""

    def __init__(self, report: Callable[[tuple[Any, ...], TemplateProblem], None],
                 locate: Locate | None, known: Known | None, names: Names | None) -> None:
        self.report = report
        self.locate = locate
        self.known = known
        self.names = names

    def inner(self, known: Known | None, names: Names | None) -> "_Tree":
        return _Tree(self.report, self.locate, known, names)

    def where(self, path: tuple[Any, ...]) -> str:
        return self.locate(path) if self.locate is not None else ""

    def compile(self, value: Any, path: tuple[Any, ...],
                key_paths: dict[Any, tuple[Any, ...]] | None = None) -> Compiled:
        if isinstance(value, dict):
            if "$each" in value or "$entries" in value:
                return self.directive(value, path)
            return self.mapping(value, path, key_paths or {})
        if isinstance(value, list):
            return self.sequence(value, path)
        if is_template(value):
            return self.template(value, path)
        return Compiled(None, value, bound=weight_bound(value))

    def template(self, source: str, path: tuple[Any, ...], *, expression: bool = False) -> Compiled:
        where = self.where(path)
        compiled = compile_expression(source, where, self.names) if expression \
            else compile_template(source, where, self.names)
        if isinstance(compiled, Compiled):
            if self.known is not None:
                for name in sorted(compiled.names_used - self.known.names):
                    self.report(path, TemplateProblem(self.known.explain(name)))
            return compiled
        for problem in compiled if isinstance(compiled, list) else [compiled]:
            self.report(path, problem)
        return Compiled(lambda s: MISSING)

    def composed(self, value: Any, path: tuple[Any, ...], parts: list[Compiled],
                 render: Renderer | None, size: int,
                 shape: DictShape | ListShape | None = None) -> Compiled:
        """A mapping or list of `parts`: a constant when they all are, with its bound (and
        `shape`, how `render` builds it, for the code generator)."""
        settings, names = _merge_usage(parts)
        bound = Bound.constant(size)
        for part in parts:
            bound = bound + part.bound
        constant = sum(p.bound.const for p in parts if p.renderer is None) + size
        if constant > MAX_OUTPUT:
            # Heavy whatever the event: a problem of the file, not of each event.
            self.report(path, TemplateProblem(_TOO_HEAVY))
            return Compiled(render, None if render else value, settings, names)
        if render is None:
            return Compiled(None, value, settings, names, bound=bound)
        if bound.too_large():
            where = self.where(path)
            render, bound = _weighed(render, where), CHECKED
            if shape is not None:  # the generated code measures it too
                shape = replace(shape, weighed=where)
        return Compiled(render, None, settings, names, shape=shape, bound=bound)

    def mapping(self, value: dict[Any, Any], path: tuple[Any, ...],
                key_paths: dict[Any, tuple[Any, ...]]) -> Compiled:
        entries: list[tuple[Any, Renderer | None, Any, Renderer | None]] = []
        parts: list[Compiled] = []
        pairs: list[tuple[Compiled, Compiled]] = []
        for key, item in value.items():
            where = key_paths.get(key, path + (key,))
            key_c = self.compile(key, where) if is_template(key) \
                else Compiled(None, key, bound=weight_bound(key))
            item_c = self.compile(item, where)
            parts += [key_c, item_c]
            pairs.append((key_c, item_c))
            entries.append((key_c.constant, key_c.renderer, item_c.constant, item_c.renderer))
        if all(k is None and v is None for _, k, _, v in entries):
            return self.composed(value, path, parts, None, len(entries))
        nonempty = bool(entries)

        def render(scope: Scope) -> Any:
            out = {}
            for key, key_fn, const, fn in entries:
                if key_fn is not None:
                    key = key_fn(scope)
                    if key is MISSING:
                        continue
                    key = str(key)
                if fn is None:
                    out[key] = const
                else:
                    v = fn(scope)
                    if v is not MISSING:
                        out[key] = v
            return out if out or not nonempty else MISSING
        return self.composed(value, path, parts, render, len(entries), DictShape(tuple(pairs)))

    def sequence(self, value: list[Any], path: tuple[Any, ...]) -> Compiled:
        items = [self.compile(item, path + (i,)) for i, item in enumerate(value)]
        if all(c.renderer is None for c in items):
            return self.composed(value, path, items, None, len(items))
        pairs = [(c.constant, c.renderer) for c in items]
        nonempty = bool(pairs)

        def render(scope: Scope) -> Any:
            out = []
            for const, fn in pairs:
                if fn is None:
                    out.append(const)
                else:
                    v = fn(scope)
                    if v is not MISSING:
                        out.append(v)
            return out if out or not nonempty else MISSING
        return self.composed(value, path, items, render, len(items), ListShape(tuple(items)))

    # -- directives: structure built from the event's arrays and objects ------------------

    def directive(self, spec: dict[Any, Any], path: tuple[Any, ...]) -> Compiled:
        """`$each` (a list, one value per item) or `$entries` (a mapping, one key and value
        per entry of another mapping); docs/mapping-format.md, "Building structure"."""
        kind = "$each" if "$each" in spec else "$entries"
        if "$each" in spec and "$entries" in spec:
            self.report(path, TemplateProblem("a mapping can hold $each or $entries, not both"))
            return Compiled(lambda s: MISSING)
        stray = sorted(str(k) for k in spec if k not in _DIRECTIVE_KEYS[kind])
        if stray:
            self.report(path, TemplateProblem(
                f"{kind} takes {', '.join(sorted(_DIRECTIVE_KEYS[kind]))}; unknown: {', '.join(stray)}"))
        source = spec[kind]
        if not is_template(source):
            self.report(path + (kind,), TemplateProblem(
                f"{kind} must be a template giving {'a list' if kind == '$each' else 'a mapping'}"))
            return Compiled(lambda s: MISSING)
        if kind == "$each":
            name = spec.get("as", "item")
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                self.report(path + ("as",), TemplateProblem(f"'as' must be a name, got {name!r}"))
                name = "item"
            names: tuple[str, ...] = (name, "index")
        else:
            names = ("key", "value")
        known = self.known.with_names(*names) if self.known is not None else None
        # The items are analyzed as a root of their own, so that what each value takes from
        # its item is told apart from what it takes from elsewhere (once per item).
        per_item = {**(self.names or {}), **{n: Bound.path(_ITEM, n) for n in names}}
        if kind == "$each":
            per_item["index"] = Bound.constant(32)
        inner = self.inner(known, per_item)
        parts = [self.compile(source, path + (kind,))]
        value_c = inner.compile(spec.get("value", "{{ value }}" if kind == "$entries"
                                         else "{{ " + names[0] + " }}"), path + ("value",))
        key_c = inner.compile(spec.get("key", "{{ key }}"), path + ("key",)) \
            if kind == "$entries" else None
        test_c = inner.template(str(spec["if"]), path + ("if",), expression=True) \
            if "if" in spec else None
        parts += [c for c in (value_c, key_c, test_c) if c is not None]
        settings, used = _merge_usage(parts)
        used = frozenset(used - set(names)) | parts[0].names_used
        bound = _each_bound(parts[0].bound, [c.bound for c in (value_c, key_c) if c is not None])
        get_source = _renderer_of(parts[0])
        get_value = _renderer_of(value_c)
        get_key = _renderer_of(key_c) if key_c is not None else None
        test = test_c.renderer if test_c is not None else None

        def items(scope: Scope) -> Any:
            found = get_source(scope)
            if found is MISSING or found is None:
                return None
            if kind == "$entries":
                return list(found.items()) if isinstance(found, dict) else None
            return found if isinstance(found, list) else [found]

        def render(scope: Scope) -> Any:
            pairs = items(scope)
            if pairs is None:
                return MISSING
            if len(pairs) > MAX_OUTPUT:
                raise SecurityError(f"{kind} over more than {MAX_OUTPUT} items")
            spend = budget.current().spend
            inner_scope = dict(scope)
            out_list: list[Any] = []
            out_dict: dict[str, Any] = {}
            for index, pair in enumerate(pairs):
                spend()
                if kind == "$each":
                    inner_scope[names[0]] = pair
                    inner_scope["index"] = index
                else:
                    inner_scope["key"], inner_scope["value"] = pair
                if test is not None:
                    passed = test(inner_scope)
                    if passed is MISSING or not passed:
                        continue
                v = get_value(inner_scope)
                if v is MISSING:
                    continue
                if get_key is None:
                    out_list.append(v)
                    continue
                k = get_key(inner_scope)
                if k is not MISSING:
                    out_dict[k if type(k) is str else str(k)] = v
            result = out_list if get_key is None else out_dict
            return result if result else MISSING
        where = self.where(path)
        weighed = bound.too_large()
        shape = DirectiveShape(kind, parts[0], value_c, key_c, test_c, names, where, weighed)
        if weighed:
            return Compiled(_directive_errors(_weighed(render, where), kind, where), None,
                            settings, used, shape=shape, bound=CHECKED)
        return Compiled(_directive_errors(render, kind, where), None, settings, used,
                        shape=shape, bound=bound)


_ITEM = "$item"
"""The root the analysis gives a directive's item (see _each_bound)."""


def _each_bound(source: Bound, per_item: list[Bound]) -> Bound:
    """The bound of a directive's result: what each value (and key) takes from its item adds
    up to the source; anything else it holds is held once per item, as many times as the
    source has items (at most its weight): a constant part so, the rest is not known at load."""
    from_items = NOTHING
    elsewhere = NOTHING
    for bound in per_item:
        for path, count in bound.refs:
            if path[0] == _ITEM:
                # item.x of an item of the source: the source's paths, one key deeper.
                part = source.times(count)
                for key in path[2:]:
                    part = part.at(key)
                from_items = from_items + part
            else:
                elsewhere = elsewhere + Bound(((path, count),))
        elsewhere = elsewhere + Bound((), bound.checked, 0)
        from_items = from_items + source.times(bound.const + 1)
    if elsewhere != NOTHING:
        return Bound((), 0, MAX_OUTPUT + 1)  # measured when it runs
    return from_items


def _directive_errors(render: Renderer, kind: str, origin: str) -> Renderer:
    def guarded(scope: Scope) -> Any:
        try:
            return render(scope)
        except SecurityError as exc:
            _directive_stopped(exc, kind, origin)
    return guarded


def _directive_stopped(exc: SecurityError, kind: str, origin: str) -> NoReturn:
    """What a directive stopped by the sandbox or the budget raises (the generated code
    calls this where the closures do)."""
    where = f"{origin}: " if origin else ""
    raise RenderError(f"{where}{kind} was stopped by the sandbox: {exc}") from None


_DIRECTIVE_KEYS = {"$each": {"$each", "as", "value", "if"},
                   "$entries": {"$entries", "key", "value", "if"}}


def _renderer_of(compiled: Compiled) -> Renderer:
    if compiled.renderer is not None:
        return compiled.renderer
    constant = compiled.constant
    return lambda s: constant
