"""JMESPath expressions compiled once, with the project's functions, checked at load.

`jmespath.compile(...).search()` builds a tree interpreter per call; the common node types
(fields, sub-expressions, `||`, `&&`, `!`, comparisons, literals, function calls, pipes,
multi-selects) are turned into closures here, and the rest is handed to one shared
interpreter, node by node.

JMESPath has no loops of its own, but it can copy: `[@, @]` holds its input twice, and
forty of them in a pipe hold it a trillion times (bounds.weight_of). So every node gets a
bound at load (`_growth`): how many times the input (the event, the settings) its value can
weigh, plus a constant. A node whose bound could pass MAX_FACTOR times the input, or
MAX_OUTPUT, is marked, and its value is measured each time it is made (bounds.check_weight):
past MAX_OUTPUT the search fails, and the event is rejected. Every other node costs at most
a few times the input, with no check at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jmespath
from jinja2.exceptions import SecurityError
from jmespath import exceptions as jp_errors
from jmespath.visitor import Options, TreeInterpreter

from ..errors import RenderError
from .bounds import MAX_OUTPUT, check_weight, weight_of
from .functions import JMESPATH_FUNCTIONS
from .growth import MAX_FACTOR, Bound

__all__ = ["Expression", "ExpressionProblem", "compile_jmespath", "FUNCTIONS"]


FUNCTIONS = JMESPATH_FUNCTIONS

_WEIGH = "weigh"
"""Set in a parsed node whose value is measured when it is made (see `_growth`)."""


class _Interpreter(TreeInterpreter):  # type: ignore[misc]  # jmespath is untyped
    """JMESPath's interpreter, measuring the values of the nodes marked _WEIGH."""

    def visit(self, node: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        value = super().visit(node, *args, **kwargs)
        return check_weight(value) if node.get(_WEIGH) else value


_OPTIONS = Options(custom_functions=FUNCTIONS)
_INTERPRETER = _Interpreter(_OPTIONS)

Getter = Callable[[Any], Any]


@dataclass(frozen=True)
class ExpressionProblem:
    """Why an expression does not compile; `offset` is 0-based in the expression text."""

    message: str
    offset: int = 0


@dataclass(frozen=True)
class Expression:
    """A compiled JMESPath expression: call `search(data)`.

    `settings` in an expression (`event == settings.event_name`, inside filters too) is the
    destination's settings, never a field of the message: `with_settings(values)` gives the
    search with those settings folded in as constants, compiled once per settings.
    `settings_used` names them (checked at load)."""

    source: str
    search: Getter
    parsed: dict[str, Any] | None = None
    origin: str = ""
    settings_used: frozenset[str] = frozenset()
    uses_settings: bool = False
    bound: Bound = Bound()
    """How large its value can be (growth.py), for the templates that read it."""

    def with_settings(self, settings: dict[str, Any]) -> Getter:
        """The search, with `settings` (the public ones) in place of `settings.NAME`."""
        if not self.uses_settings or self.parsed is None:
            return self.search
        folded = _fold_settings(self.parsed, settings)
        return _reporting(_compile(folded), self.source, self.origin)


def compile_jmespath(source: str, origin: str = "") -> Expression | ExpressionProblem:
    """Parse, check functions and arity, and compile `source`. A search that fails at run
    time (a function given the wrong type) raises RenderError naming `origin`."""
    if not isinstance(source, str) or not source.strip():
        return ExpressionProblem("a JMESPath expression must be a non-empty string")
    try:
        parsed = jmespath.compile(source)
    except RecursionError:
        # jmespath parses recursively: a thousand nested parentheses or `!`s go deeper than
        # Python allows.
        return ExpressionProblem("JMESPath error: the expression nests too deeply")
    except jp_errors.LexerError as exc:
        return ExpressionProblem(f"JMESPath syntax error: {exc.msg}: {exc.message}",
                                 exc.lexer_position or 0)
    except jp_errors.ParseError as exc:
        near = f" near {exc.token_value!r}" if exc.token_value else ""
        return ExpressionProblem(f"JMESPath syntax error: {exc.msg}{near}", exc.lex_position or 0)
    except jp_errors.JMESPathError as exc:
        return ExpressionProblem(f"JMESPath error: {exc}")
    try:
        problem = _check_functions(parsed.parsed, source)
        if problem:
            return problem
        growth = _growth(parsed.parsed)
        names: set[str] = set()
        uses = _find_settings(parsed.parsed, names)
        search = _reporting(_compile(parsed.parsed), source, origin)
    except RecursionError:
        return ExpressionProblem("JMESPath error: the expression nests too deeply")
    except _Refused as exc:
        return ExpressionProblem(str(exc))
    return Expression(source, search, parsed.parsed, origin, frozenset(names), uses,
                      _bound(parsed.parsed, growth, uses))


# ---- what an expression can build -------------------------------------------------------

class _Refused(Exception):
    pass


Growth = tuple[int, int]
"""(factor, constant): a value weighs at most factor * (its input's weight) + constant."""

_SMALL = (0, 16)
_SCALAR_FUNCTIONS = {"abs", "avg", "ceil", "contains", "ends_with", "floor", "length",
                     "starts_with", "sum", "to_number", "type"}
_PART_FUNCTIONS = {"keys", "values", "max", "min", "max_by", "min_by", "reverse", "sort",
                   "sort_by", "not_null", "coalesce", "merge"}
_TEXT_FUNCTIONS = {"to_string": 8, "lower": 3, "upper": 3, "snake_case": 2,
                   "snake_case_keys": 2}


def _growth(node: dict[str, Any]) -> Growth:
    """The node's growth (see Growth). A node that could pass MAX_FACTOR times its input or
    MAX_OUTPUT is marked _WEIGH: measured when it runs, it is then at most MAX_OUTPUT."""
    kind = node["type"]
    children = [c for c in node.get("children", ()) if isinstance(c, dict)]
    grown = [_growth(c) for c in children]
    if kind in ("field", "current", "identity", "index", "slice"):
        found: Growth = (1, 0)
    elif kind == "literal":
        found = (0, weight_of(node["value"], MAX_OUTPUT, counted=False))
    elif kind in ("subexpression", "pipe", "index_expression"):
        found = grown[0]
        for factor, const in grown[1:]:
            found = (found[0] * factor, found[1] * factor + const)
    elif kind in ("projection", "value_projection", "filter_projection"):
        # The right side runs on each element of the left's value, and there are at most
        # as many elements as the left's value weighs.
        (left_a, left_c), (right_a, right_c) = grown[0], grown[1]
        per = right_a + right_c + 1
        found = (left_a * per, left_c * per + 1)
    elif kind in ("multi_select_list", "multi_select_dict"):
        found = (sum(a for a, _ in grown), sum(c for _, c in grown) + len(grown) + 1)
    elif kind == "key_val_pair":
        found = (grown[0][0], grown[0][1] + len(str(node.get("value", ""))))
    elif kind in ("or_expression", "and_expression"):
        found = (max(a for a, _ in grown), max(c for _, c in grown))  # one side or the other
    elif kind in ("not_expression", "comparator"):
        found = (0, 1)
    elif kind in ("flatten", "expref"):
        found = grown[0]
    elif kind == "function_expression":
        found = _function_growth(node, children, grown)
    else:
        found = (sum(a for a, _ in grown), sum(c for _, c in grown))
    if found[0] > MAX_FACTOR or found[1] > MAX_OUTPUT:
        node[_WEIGH] = True
        return (0, MAX_OUTPUT)
    node.pop(_WEIGH, None)
    return found


def _function_growth(node: dict[str, Any], children: list[dict[str, Any]],
                     grown: list[Growth]) -> Growth:
    name = node["value"]
    values = [g for c, g in zip(children, grown) if c["type"] != "expref"]
    if name in _SCALAR_FUNCTIONS:
        return _SMALL
    if name in _PART_FUNCTIONS:
        return (sum(a for a, _ in values), sum(c for _, c in values))
    if name in _TEXT_FUNCTIONS:
        k = _TEXT_FUNCTIONS[name]
        return (sum(a for a, _ in values) * k, sum(c for _, c in values) * k + 2)
    if name == "to_array":
        return (values[0][0], values[0][1] + 1)
    if name == "map":
        (expr_a, expr_c), (arr_a, arr_c) = grown[0], grown[1]
        per = expr_a + expr_c + 1
        return (arr_a * per, arr_c * per + 1)
    if name == "join":
        (sep_a, sep_c), (arr_a, arr_c) = grown[0], grown[1]
        if sep_a:
            # One separator per item: a separator taken from the event makes the text grow
            # with the square of the event.
            raise _Refused("join's separator must be a literal (`join(', ', tags)`), not "
                            "a value of the event")
        return (arr_a * (sep_c + 1), arr_c * (sep_c + 1))
    return (sum(a for a, _ in values), sum(c for _, c in values))


def _bound(node: dict[str, Any], growth: Growth, uses_settings: bool) -> Bound:
    """What templates that read the expression's value build on: the paths it reads when it
    is a path or a `||` of paths (the usual extract), else the whole input `factor` times."""
    paths = _paths(node)
    if paths is not None:
        bound = Bound()
        for path in paths:
            bound = bound + (Bound.path(*path) if path[0] == "settings" and uses_settings
                             else Bound.path("event", *path))
        return bound
    bound = Bound(((("event",), growth[0]),), 0, growth[1])
    if uses_settings:
        bound = bound + Bound(((("settings",), growth[0]),))
    return bound


def _paths(node: dict[str, Any]) -> list[tuple[str, ...]] | None:
    kind = node["type"]
    if kind == "field":
        return [(node["value"],)]
    if kind == "subexpression" and all(c["type"] == "field" for c in node["children"]):
        return [tuple(c["value"] for c in node["children"])]
    if kind == "or_expression":
        left, right = _paths(node["children"][0]), _paths(node["children"][1])
        return None if left is None or right is None else left + right
    return None


def _settings_name(node: dict[str, Any]) -> tuple[bool, str | None]:
    """(is `settings` or `settings.NAME...`, NAME) for a node."""
    if node.get("type") == "field" and node.get("value") == "settings":
        return True, None
    if node.get("type") == "subexpression":
        first = node["children"][0]
        if first.get("type") == "field" and first.get("value") == "settings":
            second = node["children"][1]
            return True, second.get("value") if second.get("type") == "field" else None
    return False, None


def _find_settings(node: dict[str, Any], names: set[str]) -> bool:
    is_settings, name = _settings_name(node)
    if is_settings:
        if name is not None:
            names.add(name)
        return True
    found = False
    for child in node.get("children", ()):
        if isinstance(child, dict):
            found = _find_settings(child, names) or found
    return found


def _fold_settings(node: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The expression with every `settings` field (a name path's first step, anywhere,
    inside filters too) replaced by the settings as a literal."""
    is_settings, _ = _settings_name(node)
    if is_settings:
        literal = {"type": "literal", "value": settings, "children": []}
        if node["type"] == "field":
            return literal
        return {**node, "children": [literal, *node["children"][1:]]}
    children = [_fold_settings(c, settings) if isinstance(c, dict) else c
                for c in node.get("children", ())]
    return {**node, "children": children}


def _reporting(search: Getter, source: str, origin: str) -> Getter:
    where = f"{origin}: " if origin else ""

    def guarded(value: Any) -> Any:
        try:
            return search(value)
        except jp_errors.JMESPathError as exc:
            raise RenderError(f"{where}JMESPath {source!r} failed: {_one_line(exc)}") from None
        except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            raise RenderError(f"{where}JMESPath {source!r} failed: {exc}") from None
        except SecurityError as exc:
            raise RenderError(f"{where}JMESPath {source!r} was stopped: {exc}") from None
    return guarded


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _check_functions(node: dict[str, Any], source: str) -> ExpressionProblem | None:
    if node.get("type") == "function_expression":
        name = node["value"]
        table = FUNCTIONS.FUNCTION_TABLE
        offset = max(source.find(name + "("), 0)
        if name not in table:
            known = ", ".join(sorted(table))
            return ExpressionProblem(f"unknown JMESPath function '{name}' (known: {known})", offset)
        signature = table[name]["signature"]
        given = len(node["children"])
        variadic = bool(signature) and signature[-1].get("variadic")
        expected = len(signature)
        if (variadic and given < expected) or (not variadic and given != expected):
            wanted = f"at least {expected}" if variadic else str(expected)
            return ExpressionProblem(
                f"JMESPath function '{name}' takes {wanted} argument"
                f"{'' if expected == 1 else 's'}, got {given}", offset)
    for child in node.get("children", ()):
        if isinstance(child, dict):
            problem = _check_functions(child, source)
            if problem:
                return problem
    return None


def _is_false(value: Any) -> bool:
    return value is None or value is False or value == "" or value == [] or value == {}


def _compile(node: dict[str, Any]) -> Getter:
    getter = _compile_node(node)
    if node.get(_WEIGH):
        return lambda v: check_weight(getter(v))
    return getter


def _compile_node(node: dict[str, Any]) -> Getter:
    kind = node["type"]
    children = node.get("children", [])
    if kind == "field":
        key = node["value"]
        return lambda v: v.get(key) if type(v) is dict else None
    if kind == "subexpression":
        fields = [c["value"] for c in children if c["type"] == "field"]
        if len(fields) == len(children):
            return _field_path(tuple(fields))
        steps = [_compile(c) for c in children]

        def sub(v: Any) -> Any:
            for step in steps:
                v = step(v)
                if v is None:
                    return None
            return v
        return sub
    if kind == "literal":
        value = node["value"]
        return lambda v: value
    if kind in ("current", "identity"):
        return lambda v: v
    if kind == "or_expression":
        left, right = _compile(children[0]), _compile(children[1])

        def either(v: Any) -> Any:
            found = left(v)
            return right(v) if _is_false(found) else found
        return either
    if kind == "and_expression":
        left, right = _compile(children[0]), _compile(children[1])

        def both(v: Any) -> Any:
            found = left(v)
            return found if _is_false(found) else right(v)
        return both
    if kind == "not_expression":
        inner = _compile(children[0])
        return lambda v: _is_false(inner(v))
    if kind == "comparator" and node["value"] in ("eq", "ne"):
        left, right = _compile(children[0]), _compile(children[1])
        if node["value"] == "eq":
            return lambda v: _json_equal(left(v), right(v))
        return lambda v: not _json_equal(left(v), right(v))
    if kind == "pipe":
        first, then = _compile(children[0]), _compile(children[1])
        return lambda v: then(first(v))
    if kind == "function_expression":
        name = node["value"]
        args = [_compile(c) if c["type"] != "expref" else _fallback(c) for c in children]
        call = FUNCTIONS.call_function
        return lambda v: call(name, [a(v) for a in args])
    if kind == "multi_select_dict":
        pairs = [(c["value"], _compile(c["children"][0])) for c in children]
        return lambda v: None if v is None else {k: g(v) for k, g in pairs}
    if kind == "multi_select_list":
        items = [_compile(c) for c in children]
        return lambda v: None if v is None else [g(v) for g in items]
    return _fallback(node)


def _json_equal(a: Any, b: Any) -> bool:
    # JMESPath equality: true is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _field_path(keys: tuple[str, ...]) -> Getter:
    if len(keys) == 2:
        a, b = keys

        def two(v: Any) -> Any:
            if type(v) is not dict:
                return None
            v = v.get(a)
            return v.get(b) if type(v) is dict else None
        return two

    def path(v: Any) -> Any:
        for k in keys:
            if type(v) is not dict:
                return None
            v = v.get(k)
        return v
    return path


def _fallback(node: dict[str, Any]) -> Getter:
    visit = _INTERPRETER.visit
    return lambda v: visit(node, v)
