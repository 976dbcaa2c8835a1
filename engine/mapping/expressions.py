"""JMESPath expressions compiled once, with the project's functions, checked at load.

`jmespath.compile(...).search()` builds a tree interpreter per call; the common node types
(fields, sub-expressions, `||`, `&&`, `!`, comparisons, literals, function calls, pipes,
multi-selects) are turned into closures here, and the rest is handed to one shared
interpreter, node by node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jmespath
from jmespath import exceptions as jp_errors
from jmespath.visitor import Options, TreeInterpreter

from ..errors import RenderError
from .functions import JMESPATH_FUNCTIONS

__all__ = ["Expression", "ExpressionProblem", "compile_jmespath", "FUNCTIONS"]


FUNCTIONS = JMESPATH_FUNCTIONS
_OPTIONS = Options(custom_functions=FUNCTIONS)
_INTERPRETER = TreeInterpreter(_OPTIONS)

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
    except jp_errors.LexerError as exc:
        return ExpressionProblem(f"JMESPath syntax error: {exc.msg}: {exc.message}",
                                 exc.lexer_position or 0)
    except jp_errors.ParseError as exc:
        near = f" near {exc.token_value!r}" if exc.token_value else ""
        return ExpressionProblem(f"JMESPath syntax error: {exc.msg}{near}", exc.lex_position or 0)
    except jp_errors.JMESPathError as exc:
        return ExpressionProblem(f"JMESPath error: {exc}")
    problem = _check_functions(parsed.parsed, source)
    if problem:
        return problem
    names: set[str] = set()
    uses = _find_settings(parsed.parsed, names)
    search = _reporting(_compile(parsed.parsed), source, origin)
    return Expression(source, search, parsed.parsed, origin, frozenset(names), uses)


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
