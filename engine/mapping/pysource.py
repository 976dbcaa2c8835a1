"""Python source for a compiled value: the templates and trees of a mapping, as statements.

The code generator (codegen.py) writes one function per rule; this module writes the part
of it that computes one value (a body, a header, a condition) from the Jinja nodes and
tree shapes templates.py recorded (shapes.py). What the source does is what the render
closures do, step by step, calling the same functions: the sandbox's attribute and item
access (`_attr`, `_item`, `_step`), the filters and tests Jinja's sandboxed environment
holds (the same function objects the closures call, size checks included), the bounded
arithmetic of bounds.py, and `_leaf` and the error handling of templates._guard. Names a
template reads become Python locals; values that depend on settings alone are computed once
per settings (by the closures themselves) and read from there.

Nothing a mapping file says becomes code: names of values and keys appear in the source as
string literals (repr) or as numbered locals, and any object a value needs (a constant
tree, a filter, a fallback renderer) is a global of the generated module, by number.

A template the translator does not take (a `{% %}` block; an expression with a filter that
needs Jinja's context, such as `map` or `selectattr`) is rendered by its closure, which
runs Jinja's sandboxed compiler, with a scope built as the interpreted path builds it:
`fallbacks` lists each such template, for `validate` to report.
"""

from __future__ import annotations

import hashlib
import keyword
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from json.encoder import encode_basestring
from typing import Any, Sequence

from jinja2 import Undefined, nodes
from jinja2.exceptions import SecurityError, TemplateError

from ..errors import RenderError
from ..serialization import to_json
from . import budget
from .bounds import MAX_OUTPUT, bounded_binop
from .functions import FILTERS, TESTS, _template_json_default
from .missing import MISSING, Missing, MissingValue
from .shapes import DictShape, DirectiveShape, LeafShape, ListShape
from .templates import (
    _ARITH,
    _COMPARE,
    Compiled,
    _absent,
    _as_path,
    _attr,
    _directive_stopped,
    _EmptiedDict,
    _EmptiedList,
    _item,
    _leaf,
    _operand,
    _shown,
    _step,
    _text,
    _Untranslatable,
    _weigh,
    call_target,
    keeps_missing_items,
    raw_call_target,
    without_missing,
)

__all__ = ["SourceWriter", "Env", "HELPERS", "Unhoisted"]


class Unhoisted:
    """The value of a settings-only part that could not be computed from the settings (it
    fails each event instead, as its template does)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNHOISTED"


UNHOISTED = Unhoisted()


class Unset:
    """A part of the message not read yet (see SourceWriter.shared)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()

_IMPURE_FILTERS = frozenset({"random"})
"""Filters whose result is not a function of their arguments: never computed once for many
events."""

_REMEMBERED_FILTERS = frozenset({"datetime", "add_days", "days_between", "isoformat",
                                 "format_date", "unix", "unix_ms", "unix_us", "digest", "sha256",
                                 "b64encode", "tojson"})
"""Filters worth computing once when a function calls them twice with the same arguments
(Callexa's `created_at | datetime`): each a function of its arguments alone, at least a
microsecond's work, with a result nothing changes (text, a number, a time)."""

_TIME_FILTERS = frozenset({"add_days", "days_between", "isoformat", "format_date", "unix",
                           "unix_ms", "unix_us"})
"""Filters whose subject is read as a time by functions.parse_time, first thing (see
SourceWriter._time_subject)."""

_FINAL_FILTERS = frozenset({"digest", "sha256", "b64encode", "tojson", "isoformat", "format_date",
                            "unix", "unix_ms", "unix_us", "path_segment"})
"""Filters whose result is text within the size bound, or a number, or missing: what
templates._guard would make of it is that result itself (see SourceWriter._final)."""

_TEXT_FILTERS = _FINAL_FILTERS - {"unix", "unix_ms", "unix_us"}
"""Those of _FINAL_FILTERS whose result is text (or missing)."""


def _inline_digest(subject: str, args: Sequence[nodes.Node]) -> str | None:
    """functions._f_digest with no length or a constant whole-number one, written out (a
    Python call and its checks of the length less, per event)."""
    if not args:
        cut = ""
    elif len(args) == 1 and isinstance(args[0], nodes.Const) and type(args[0].value) is int:
        length = args[0].value
        cut = "" if length >= 64 else f"[:{max(length, 1)}]"
    else:
        return None
    return f"_sha256(({subject} if type({subject}) is str else str({subject})).encode()).hexdigest(){cut}"


def _inline_sha256(subject: str, args: Sequence[nodes.Node]) -> str | None:
    """functions._f_sha256, written out."""
    return None if args else f"_sha256(str({subject}).encode()).hexdigest()"


_INLINE_FILTERS = {FILTERS["digest"]: _inline_digest, FILTERS["sha256"]: _inline_sha256}
"""Filters whose call the source writes out, by the function raw_call_target gives: each
of them a few calls of the standard library on a value that is not missing."""

_TOJSON = FILTERS["tojson"]

_OTHER_PATTERNS = ("f", "m", "j")
"""Stems SourceWriter.local may not use: other names of the generated code use them."""


def _failed(exc: Exception, shown: str) -> Any:
    """What templates._guard makes of an exception a template raised: missing for a
    missing value, else a RenderError naming the template (`shown`)."""
    if isinstance(exc, MissingValue):
        return MISSING
    if isinstance(exc, SecurityError):
        raise RenderError(f"{shown} was stopped by the sandbox: {exc}") from None
    if isinstance(exc, (TemplateError, TypeError, ValueError, ArithmeticError, LookupError)):
        raise RenderError(f"{shown} failed: {exc}") from None
    raise exc


def _too_long() -> Any:
    raise SecurityError(f"a template value grew past {MAX_OUTPUT} characters")


def _lit_list(values: tuple[Any, ...]) -> Any:
    """A list literal: its missing (and null) items left out (templates._translate)."""
    out = [v for v in values if not _absent(v)]
    return out if out or not values else _EmptiedList()


def _keyed_dict(keys: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    """A dict literal whose keys are constant text (the commonest): _lit_dict, faster."""
    out = {k: v for k, v in zip(keys, values) if v is not None and type(v) is not Missing}
    return out if out else _EmptiedDict()


def _lit_dict(flat: tuple[Any, ...]) -> Any:
    """A dict literal from (key, value, key, value, ...): missing keys and values left out."""
    out = {}
    for i in range(0, len(flat), 2):
        k, v = flat[i], flat[i + 1]
        if not _absent(v) and not _absent(k):
            out[k] = v
    return out if out or not flat else _EmptiedDict()


def _call(func: Any, subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A filter of several arguments: missing when one of them is missing."""
    if any(isinstance(a, Undefined) for a in args) or \
            any(isinstance(a, Undefined) for a in kwargs.values()):
        return MISSING
    return func(subject, *args, **kwargs)


def _too_many(kind: str) -> Any:
    raise SecurityError(f"{kind} over more than {MAX_OUTPUT} items")


HELPERS: dict[str, Any] = {
    "M": MISSING, "Missing": Missing, "Undefined": Undefined, "UNHOISTED": UNHOISTED,
    "MAX_OUTPUT": MAX_OUTPUT, "_failed": _failed, "_leaf": _leaf, "_text": _text,
    "_attr": _attr, "_item": _item, "_step": _step, "_operand": _operand,
    "_binop": bounded_binop, "_too_long": _too_long, "_lit_list": _lit_list,
    "_lit_dict": _lit_dict, "_call": _call, "_EmptiedDict": _EmptiedDict,
    "_EmptiedList": _EmptiedList, "_too_many": _too_many, "_absent": _absent,
    "PLAIN": frozenset({dict, list, int, float, bool}),
    "PLAIN_OR_TIME": frozenset({dict, list, int, float, bool, datetime}),
    "UNSET": UNSET, "_keyed_dict": _keyed_dict, "_weigh": _weigh,
    "_directive_stopped": _directive_stopped, "SecurityError": SecurityError,
    "_spender": budget.spender, "_without_missing": without_missing,
    "_sha256": hashlib.sha256, "_json_str": encode_basestring,
}
"""What every generated module may call besides its own numbered constants."""

SAFE_BUILTINS: dict[str, Any] = {
    "dict": dict, "list": list, "str": str, "type": type, "len": len, "isinstance": isinstance,
    "float": float, "enumerate": enumerate, "slice": slice, "tuple": tuple, "frozenset": frozenset,
    "repr": repr, "TypeError": TypeError, "ValueError": ValueError,
    "Exception": Exception, "None": None, "True": True, "False": False,
}
"""The builtins a generated module sees (all it uses)."""

_LITERALS = (str, int, bool, type(None))
_ORDERINGS = {"lt": "<", "lteq": "<=", "gt": ">", "gteq": ">="}
_PRESENT = TESTS["present"]
_MISSING_TEST = TESTS["missing"]


def _is_value(node: nodes.Node) -> bool:
    """A constant that is not null: never missing, nothing to compute."""
    return isinstance(node, nodes.Const) and node.value is not None


@dataclass
class Env:
    """Where each name a template reads lives at one place of the generated function:
    the Python expression of every name bound there (the message, `settings`, `now`,
    values, extracted names, loop names...), in the order the interpreted scope binds them.
    Any other name is a field of the message."""

    bindings: dict[str, str] = field(default_factory=dict)
    known: dict[str, "BuiltDict"] = field(default_factory=dict)
    """Bound names known to hold a mapping this function built (a request's body read by
    its bulk item): each key's value is read from the local that holds it."""

    def bind(self, name: str, expression: str) -> "Env":
        """A new Env with `name` bound (the interpreted scope's `scope[name] = ...`)."""
        bindings = {k: v for k, v in self.bindings.items() if k != name}
        bindings[name] = expression
        return Env(bindings, {k: v for k, v in self.known.items() if k != name})

    def knowing(self, name: str, built: "BuiltDict") -> "Env":
        """The same bindings, with `name`'s value known to be the mapping `built` made."""
        return Env(self.bindings, {**self.known, name: built})


@dataclass(frozen=True)
class BuiltEntry:
    """One entry of a mapping literal as the generated code builds it."""

    key: str
    expression: str
    """The local holding its value (MISSING when it is left out), or a constant's literal."""
    constant: Any = None
    is_constant: bool = False
    text: bool = False
    """Its value is text or MISSING: nothing to convert for a form."""


@dataclass(frozen=True)
class BuiltDict:
    """A mapping literal of constant text keys, as built: its entries in order, and whether
    it is certainly not empty (a constant entry: never made MISSING)."""

    entries: tuple[BuiltEntry, ...]

    @property
    def never_empty(self) -> bool:
        return any(e.is_constant for e in self.entries)

    def get(self, key: Any) -> BuiltEntry | None:
        return next((e for e in self.entries if e.key == key), None)


class SourceWriter:
    """Writes the statements of one generated module: numbered globals for the objects it
    needs, numbered locals, and values hoisted to once per settings."""

    def __init__(self) -> None:
        self.globals: dict[str, Any] = dict(HELPERS)
        self._by_id: dict[int, str] = {}
        self._count = 0
        self.fields: dict[str, str] = {}
        """Message fields read, each read once into a local: name -> local."""
        self.hoisted: list[tuple[str, Compiled, str]] = []
        """Settings-only values: local name, the compiled value, the settings it reads."""
        self.fallbacks: list[tuple[str, str]] = []
        """Templates rendered by Jinja: (file:line:col, template)."""
        self.hoisted_expressions: list[tuple[str, str]] = []
        """Settings-only parts of expressions: local name, Python expression."""
        self._hoisting = False  # writing a settings-only part: its own parts are not hoisted
        self.path_uses: Counter[tuple[Any, ...]] = Counter()
        """How often each part of the message (a field and keys under it) is read, and each
        call of _REMEMBERED_FILTERS made (see `shared`)."""
        self.shared: dict[tuple[Any, ...], str] = {}
        """The parts read more than once, and the calls of _REMEMBERED_FILTERS made more
        than once with the same arguments (from an earlier writing of the same function),
        each remembered in a local the first time it is computed."""
        self.built: dict[str, BuiltDict] = {}
        """Targets set to a mapping literal of constant text keys, with its entries."""
        self.stable: dict[str, int] = {"event": 0, "settings": 1, "now": 2, "matched": 3}
        """Expressions that hold one value for a whole run (the message, the settings, the
        time, the file's values and the rule's extracted names and values, each set once
        before any template reads it), numbered in the order they are bound: a template
        made of these alone gives one value wherever it is in the function."""

    # -- names --------------------------------------------------------------------------

    def local(self, stem: str = "t") -> str:
        """A new local of the generated function: `_{stem}{n}`. Names of other patterns are
        kept apart: the message's fields (`_f{n}`), remembered parts (`_m{n}`), JMESPath's
        temporaries (`_j{n}`), constants (`K{n}`) and the factory's per-settings names
        (`S_...`): a local of the same name would hide them in the whole function."""
        if stem in _OTHER_PATTERNS or not stem.islower():
            raise ValueError(f"a local's stem is lowercase and not one of {_OTHER_PATTERNS}")
        self._count += 1
        return f"_{stem}{self._count}"

    def const(self, value: Any) -> str:
        """An expression for `value`: a literal for text, numbers, booleans and None, else
        a numbered global holding the object itself (shared, as the closures share it)."""
        if type(value) in _LITERALS:
            return repr(value)
        if type(value) is float and value == value and value not in (float("inf"), float("-inf")):
            return repr(value)
        name = self._by_id.get(id(value))
        if name is None:
            name = self._by_id[id(value)] = f"K{len(self._by_id)}"
            self.globals[name] = value
        return name

    def field(self, name: str) -> str:
        local = self.fields.get(name)
        if local is None:
            local = self.fields[name] = f"_f{len(self.fields)}"
        return local

    def lookup(self, env: Env, name: str) -> str:
        found = env.bindings.get(name)
        return found if found is not None else self.field(name)

    # -- values -------------------------------------------------------------------------

    def value(self, out: list[str], indent: str, compiled: Compiled, env: Env, target: str,
              *, hoist: bool = True, keep_time: bool = False) -> None:
        """Statements (appended to `out`) that set `target` to `compiled`'s value in `env`,
        missing included (MISSING). `keep_time`: a template's datetime result is left a
        datetime (its caller reads it as a time; _leaf would write it as text)."""
        if compiled.renderer is None:
            out.append(f"{indent}{target} = {self.const(compiled.constant)}")
            return
        if hoist and compiled.names_used <= {"settings"} \
                and env.bindings.get("settings") in ("settings", "url_settings"):
            # Depends on settings alone: computed once per settings (by the closure, when
            # the rule is bound); one that fails there fails here, each event, as it must.
            hoisted = self.local("h")
            self.hoisted.append((hoisted, compiled, env.bindings["settings"]))
            out.append(f"{indent}if {hoisted} is not UNHOISTED:")
            out.append(f"{indent}    {target} = {hoisted}")
            out.append(f"{indent}else:")
            self.value(out, indent + "    ", compiled, env, target, hoist=False)
            self.built.pop(target, None)  # its entries' locals are not set when hoisted
            return
        shape = compiled.shape
        if isinstance(shape, LeafShape) and shape.parts is not None:
            try:
                self._leaf(out, indent, shape, env, target, keep_time=keep_time)
                return
            except _Untranslatable:  # the closure took it; so should this: never reached
                pass
        if isinstance(shape, DictShape):
            self._dict(out, indent, shape, env, target)
        elif isinstance(shape, ListShape):
            self._list(out, indent, shape, env, target)
        elif isinstance(shape, DirectiveShape):
            self._directive(out, indent, shape, env, target)
        else:
            if isinstance(shape, LeafShape):
                self.fallbacks.append((shape.origin, shape.source))
            scope = self.scope(out, indent, env)
            out.append(f"{indent}{target} = {self.const(compiled.renderer)}({scope})")

    def scope(self, out: list[str], indent: str, env: Env) -> str:
        """A scope dict as the interpreted path would hold it here (for a template Jinja
        renders): the message's fields, then every name bound, in order."""
        scope = self.local("s")
        out.append(f"{indent}{scope} = dict(event)")
        for name, expression in env.bindings.items():
            out.append(f"{indent}{scope}[{name!r}] = {expression}")
        return scope

    def _leaf(self, out: list[str], indent: str, shape: LeafShape, env: Env, target: str,
              keep_time: bool = False) -> None:
        assert shape.parts is not None
        if shape.single:
            expression = self.expression(shape.parts[0], env)
            if keeps_missing_items(shape.parts[0]):
                expression = f"_without_missing({expression})"
        else:
            pieces = []
            for part in shape.parts:
                if isinstance(part, str):
                    pieces.append(repr(part))
                else:
                    t = self.local()
                    pieces.append(f"({t} if type({t} := {self.expression(part, env)}) is str "
                                  f"else _text({t}))")
            expression = " + ".join(pieces) or "''"
        where = f"{shape.origin}: " if shape.origin else ""
        shown = self.const(f"{where}template {_shown(shape.source)}")
        out.append(f"{indent}try:")
        out.append(f"{indent}    {target} = {expression}")
        first = shape.parts[0] if shape.single else None
        message = isinstance(first, nodes.Name) and env.bindings.get(first.name) == "event"
        if not (first is not None and (message or self._final(first) or self._yes_or_no(first)
                                       or self._built_value(first, env))):  # the message: a dict
            # templates._guard's check of a result, with the types _leaf returns unchanged
            # decided here, without the call; and the one missing value, which _leaf
            # returns as it is (other missing values are made that one).
            if not shape.single:  # text joined as it is written: its size only
                out.append(f"{indent}    if len({target}) > MAX_OUTPUT:")
                out.append(f"{indent}        {target} = _too_long()")
            else:
                plain = "PLAIN_OR_TIME" if keep_time else "PLAIN"
                out.append(f"{indent}    if (len({target}) > MAX_OUTPUT if type({target}) is str "
                           f"else {target} is not M and type({target}) not in {plain}):")
                out.append(f"{indent}        {target} = _leaf({target})")
        out.append(f"{indent}except Exception as _e:")
        out.append(f"{indent}    {target} = _failed(_e, {shown})")

    def _dict(self, out: list[str], indent: str, shape: DictShape, env: Env, target: str) -> None:
        built = self.local("d")
        out.append(f"{indent}{built} = {{}}")
        entries: list[BuiltEntry] | None = []  # None: a key is computed
        for key_c, value_c in shape.entries:
            if key_c.renderer is None:
                key = self.const(key_c.constant)
                inner = indent
            else:
                key = self.local("k")
                self.value(out, indent, key_c, env, key)
                out.append(f"{indent}if {key} is not M:")
                out.append(f"{indent}    {key} = str({key})")
                inner = indent + "    "
            if entries is not None and (key_c.renderer is not None or type(key_c.constant) is not str):
                entries = None
            if value_c.renderer is None:
                literal = self.const(value_c.constant)
                out.append(f"{inner}{built}[{key}] = {literal}")
                if entries is not None:
                    entries.append(BuiltEntry(key_c.constant, literal, value_c.constant, True,
                                              type(value_c.constant) is str))
                continue
            item = self.local("v")
            self.value(out, inner, value_c, env, item)
            out.append(f"{inner}if {item} is not M:")
            out.append(f"{inner}    {built}[{key}] = {item}")
            if entries is not None:
                entries.append(BuiltEntry(key_c.constant, item, text=self._text_valued(value_c)))
        self._finish(out, indent, built, bool(shape.entries), shape.weighed, target)
        if entries is not None:
            self.built[target] = BuiltDict(tuple(entries))

    def _list(self, out: list[str], indent: str, shape: ListShape, env: Env, target: str) -> None:
        built = self.local("l")
        out.append(f"{indent}{built} = []")
        for item_c in shape.items:
            if item_c.renderer is None:
                out.append(f"{indent}{built}.append({self.const(item_c.constant)})")
                continue
            item = self.local("v")
            self.value(out, indent, item_c, env, item)
            out.append(f"{indent}if {item} is not M:")
            out.append(f"{indent}    {built}.append({item})")
        self._finish(out, indent, built, bool(shape.items), shape.weighed, target)

    def _finish(self, out: list[str], indent: str, built: str, nonempty: bool,
                weighed: str | None, target: str) -> None:
        """A built mapping or list into `target`: missing when every part of a non-empty
        literal was missing (templates.py's rule), measured when its bound asks for it."""
        if nonempty:
            out.append(f"{indent}{target} = {built} if {built} else M")
        else:
            out.append(f"{indent}{target} = {built}")
        self._weighed(out, indent, weighed, target)

    def _weighed(self, out: list[str], indent: str, origin: str | None, target: str) -> None:
        """templates._weighed: a value whose bound is too large to trust (growth.py),
        measured as it is made (None: its bound is small, nothing to do)."""
        if origin is not None:
            where = f"{origin}: " if origin else ""
            out.append(f"{indent}{target} = _weigh({target}, {where!r})")

    def _directive(self, out: list[str], indent: str, shape: DirectiveShape, env: Env,
                   target: str) -> None:
        found, pairs, index, pair = self.local("src"), self.local("p"), self.local("i"), self.local("x")
        self.value(out, indent, shape.source, env, found)
        out.append(f"{indent}{target} = M")
        out.append(f"{indent}if {found} is not M and {found} is not None:")
        inner = indent + "    "
        if shape.kind == "$entries":
            out.append(f"{inner}{pairs} = list({found}.items()) if isinstance({found}, dict) else None")
        else:
            out.append(f"{inner}{pairs} = {found} if isinstance({found}, list) else [{found}]")
        out.append(f"{inner}if {pairs} is not None:")
        inner += "    "
        # The directive's own work (its size, its items counted against the event's
        # budget) stopped as templates._directive_errors says (a value inside it is a
        # template that says so itself).
        out.append(f"{inner}try:")
        inner += "    "
        out.append(f"{inner}if len({pairs}) > MAX_OUTPUT:")
        out.append(f"{inner}    _too_many({shape.kind!r})")
        spend = self.local("spend")
        out.append(f"{inner}{spend} = _spender()")
        result = self.local("r")
        keyed = shape.key is not None
        out.append(f"{inner}{result} = {{}}" if keyed else f"{inner}{result} = []")
        out.append(f"{inner}for {index}, {pair} in enumerate({pairs}):")
        body = inner + "    "
        out.append(f"{body}{spend}()")
        if shape.kind == "$each":
            item = self.local("item")
            out.append(f"{body}{item} = {pair}")
            loop_env = env.bind(shape.names[0], item).bind("index", index)
        else:
            k, v = self.local("key"), self.local("val")
            out.append(f"{body}{k}, {v} = {pair}")
            loop_env = env.bind("key", k).bind("value", v)
        if shape.test is not None:
            passed = self.local("ok")
            self.value(out, body, shape.test, loop_env, passed)
            out.append(f"{body}if {passed} is M or not {passed}:")
            out.append(f"{body}    continue")
        value = self.local("v")
        self.value(out, body, shape.value, loop_env, value)
        out.append(f"{body}if {value} is M:")
        out.append(f"{body}    continue")
        if shape.key is None:
            out.append(f"{body}{result}.append({value})")
        else:
            key = self.local("k")
            self.value(out, body, shape.key, loop_env, key)
            out.append(f"{body}if {key} is not M:")
            out.append(f"{body}    {result}[{key} if type({key}) is str else str({key})] = {value}")
        out.append(f"{inner}{target} = {result} if {result} else M")
        outer = inner[:-4]
        out.append(f"{outer}except SecurityError as _stop:")
        out.append(f"{outer}    _directive_stopped(_stop, {shape.kind!r}, {shape.origin!r})")
        self._weighed(out, outer, shape.origin if shape.weighed else None, target)

    # -- expressions (templates._translate, as source) -----------------------------------

    def expression(self, node: nodes.Node, env: Env) -> str:
        """A Python expression for one Jinja expression node; _Untranslatable where
        templates._translate would raise it."""
        if not self._hoisting and self._settings_only(node, env):
            # Computed once per settings when the rule is bound; if it fails there, here,
            # each time, as the closure does.
            self._hoisting = True
            try:
                code = self._expression(node, env)
            finally:
                self._hoisting = False
            local = self.local("hx")
            self.hoisted_expressions.append((local, code))
            return f"({local} if {local} is not UNHOISTED else {code})"
        return self._expression(node, env)

    @staticmethod
    def _final(node: nodes.Node) -> bool:
        """Is the expression's value already what templates._guard would make of it? Text
        joined by `~` (its size checked as it is made), and the filters of _FINAL_FILTERS,
        when a missing value makes them missing (text of a bounded size, a number, or
        missing)."""
        if isinstance(node, nodes.Concat):
            return True
        if isinstance(node, nodes.Filter) and node.name in _FINAL_FILTERS:
            try:
                return call_target(node)[1]
            except _Untranslatable:
                return False
        if isinstance(node, nodes.CondExpr):  # no `else`: missing
            return SourceWriter._final(node.expr1) and (
                node.expr2 is None or SourceWriter._final(node.expr2))
        return False

    @staticmethod
    def _yes_or_no(node: nodes.Node) -> bool:
        """Is the expression's value true, false or missing whatever the event (a test, a
        comparison, `not`, and `and`/`or` of these: a condition)? templates._guard leaves
        such a value as it is."""
        if isinstance(node, (nodes.Test, nodes.Compare, nodes.Not)):
            return True
        if isinstance(node, nodes.Const):
            return type(node.value) is bool
        if isinstance(node, (nodes.And, nodes.Or)):
            return SourceWriter._yes_or_no(node.left) and SourceWriter._yes_or_no(node.right)
        return False

    @staticmethod
    def _text_valued(compiled: Compiled) -> bool:
        """Is the value text (or missing) whatever the event? Text with expressions in it,
        text joined by `~`, and the results of _TEXT_FILTERS."""
        shape = compiled.shape
        if not isinstance(shape, LeafShape) or shape.parts is None:
            return False
        return not shape.single or SourceWriter._text_node(shape.parts[0])

    @staticmethod
    def _text_node(node: nodes.Node) -> bool:
        """_text_valued for one expression (a conditional one with no `else` is missing
        when its test fails)."""
        if isinstance(node, nodes.CondExpr):
            return SourceWriter._text_node(node.expr1) and (
                node.expr2 is None or SourceWriter._text_node(node.expr2))
        return isinstance(node, nodes.Concat) or (
            isinstance(node, nodes.Filter) and node.name in _TEXT_FILTERS
            and SourceWriter._final(node))

    @staticmethod
    def _built_value(node: nodes.Node, env: Env) -> bool:
        """Is the expression one entry of a mapping this function built (`body.event_id`)?
        Its value was checked as the entry was made, or is a constant _leaf keeps."""
        path = _as_path(node)
        if path is None or len(path[1]) != 1 or path[0] not in env.known:
            return False
        entry = env.known[path[0]].get(path[1][0])
        if entry is None:
            return False
        value = entry.constant
        return not entry.is_constant or type(value) in (int, float, bool) or (
            type(value) is str and len(value) <= MAX_OUTPUT)

    def _settings_only(self, node: nodes.Node, env: Env) -> bool:
        if isinstance(node, (nodes.Const, nodes.Name)):
            return False  # nothing to save
        names = [node] if isinstance(node, nodes.Name) else list(node.find_all(nodes.Name))
        return bool(names) and all(n.name == "settings" for n in names) \
            and env.bindings.get("settings") in ("settings", "url_settings") \
            and not any(f.name in _IMPURE_FILTERS for f in node.find_all(nodes.Filter))

    def _path(self, env: Env, root: str, attrs: tuple[Any, ...]) -> str:
        built = env.known.get(root)
        if built is not None and attrs and type(attrs[0]) is str:
            # An entry of a mapping built above: the local that holds it (an entry it
            # does not have is missing, as `.get` would find).
            entry = built.get(attrs[0])
            return self._steps("M" if entry is None else entry.expression, attrs[1:])
        code = self.lookup(env, root)
        start = 0
        if root not in env.bindings:  # a part of the message: the same for the whole rule
            for i in range(1, len(attrs) + 1):
                self.path_uses[(code, attrs[:i])] += 1
            for i in range(len(attrs), 0, -1):
                memo = self.shared.get((code, attrs[:i]))
                if memo is not None:
                    inner = self._steps(self.lookup(env, root), attrs[:i])
                    code = f"({memo} if {memo} is not UNSET else ({memo} := {inner}))"
                    start = i
                    break
        return self._steps(code, attrs[start:])

    def _steps(self, code: str, attrs: tuple[Any, ...]) -> str:
        for attr in attrs:
            t = self.local()
            a = self.const(attr)
            code = f"({t}.get({a}, M) if type({t} := {code}) is dict else _step({t}, {a}))"
        return code

    def _expression(self, node: nodes.Node, env: Env) -> str:
        path = _as_path(node)
        if path is not None:
            return self._path(env, *path)
        if isinstance(node, nodes.Const):
            return self.const(node.value)
        if isinstance(node, nodes.Getattr):
            return f"_attr({self.expression(node.node, env)}, {self.const(node.attr)})"
        if isinstance(node, nodes.Getitem):
            inner = self.expression(node.node, env)
            if isinstance(node.arg, nodes.Slice) and all(
                    n is None or isinstance(n, nodes.Const) and type(n.value) is int
                    for n in (node.arg.start, node.arg.stop, node.arg.step)):
                # A constant slice of text or a list (`timestamp[:10]`): what the sandbox's
                # getitem does for them, inline; anything else goes to it.
                o = self.local()
                written = [node.arg.start, node.arg.stop] + ([node.arg.step] if node.arg.step else [])
                bounds = ":".join("" if n is None else repr(n.as_const()) for n in written)
                return (f"({o}[{bounds}] if type({o} := {inner}) is str or type({o}) is list "
                        f"else _item({o}, {self.expression(node.arg, env)}))")
            return f"_item({inner}, {self.expression(node.arg, env)})"
        if isinstance(node, nodes.Slice):
            parts = [self.expression(n, env) if n is not None else "None"
                     for n in (node.start, node.stop, node.step)]
            return f"slice({', '.join(parts)})"
        if isinstance(node, nodes.Tuple):
            items = [self.expression(i, env) for i in node.items]
            return f"({', '.join(items)},)" if items else "()"
        if isinstance(node, nodes.List):
            items = [self.expression(i, env) for i in node.items]
            return f"_lit_list(({', '.join(items)},))" if items else "[]"
        if isinstance(node, nodes.Dict):
            constants = [p.key.value for p in node.items if isinstance(p.key, nodes.Const)]
            if node.items and len(constants) == len(node.items) \
                    and all(type(k) is str for k in constants):
                keys = tuple(constants)
                values = [self.expression(p.value, env) for p in node.items]
                if len(values) == 1:
                    v = self.local()
                    return (f"({{{keys[0]!r}: {v}}} if ({v} := {values[0]}) is not None and "
                            f"type({v}) is not Missing else _EmptiedDict())")
                # The dict as written when no value is missing or null (the commonest),
                # else _keyed_dict, which leaves those out.
                names = [self.local() for _ in values]
                fixed = [_is_value(p.value) for p in node.items]
                given = [v if f else f"({n} := {v})" for n, v, f in zip(names, values, fixed)]
                checks = [f"{n} is None or type({n}) is Missing"
                          for n, f in zip(names, fixed) if not f]
                literal = "{" + ", ".join(f"{k!r}: {g}" for k, g in zip(keys, given)) + "}"
                if not checks:
                    return literal
                kept = [v if f else n for n, v, f in zip(names, values, fixed)]
                built = self.local()
                return (f"({built} if ({built} := {literal}) and not ({' or '.join(checks)}) "
                        f"else _keyed_dict({keys!r}, ({', '.join(kept)},)))")
            flat = [self.expression(x, env) for pair in node.items for x in (pair.key, pair.value)]
            return f"_lit_dict(({', '.join(flat)},))" if flat else "{}"
        if isinstance(node, (nodes.Filter, nodes.Test)):
            return self._call(node, env)
        if isinstance(node, nodes.And):
            return f"({self.expression(node.left, env)} and {self.expression(node.right, env)})"
        if isinstance(node, nodes.Or):
            return f"({self.expression(node.left, env)} or {self.expression(node.right, env)})"
        if isinstance(node, nodes.Not):
            return f"(not {self.expression(node.node, env)})"
        if isinstance(node, nodes.Neg):
            return f"(-{self.expression(node.node, env)})"
        if isinstance(node, nodes.CondExpr):
            test, yes = self.expression(node.test, env), self.expression(node.expr1, env)
            no = self.expression(node.expr2, env) if node.expr2 is not None else "M"
            return f"({yes} if {test} else {no})"
        if isinstance(node, nodes.Compare):
            return self._compare(node, env)
        if isinstance(node, nodes.Concat):
            pieces = []
            for part in node.nodes:
                if isinstance(part, nodes.Const) and type(part.value) is str:
                    pieces.append(repr(part.value))
                    continue
                t = self.local()
                pieces.append(f"({t} if type({t} := {self.expression(part, env)}) is str "
                              f"else _text({t}))")
            t = self.local()
            return f"({t} if len({t} := {' + '.join(pieces)}) <= MAX_OUTPUT else _too_long())"
        for klass, symbol in _ARITH.items():
            if type(node) is klass:
                left, right = self.expression(node.left, env), self.expression(node.right, env)
                return f"_binop({symbol!r}, _operand({left}), _operand({right}))"
        raise _Untranslatable(type(node).__name__)

    def _compare(self, node: nodes.Compare, env: Env) -> str:
        first = self.expression(node.expr, env)
        ops = [(o.op, self.expression(o.expr, env)) for o in node.ops]
        if len(ops) == 1:
            (op, right), = ops
            if op == "eq":
                return f"({first} == {right})"
            if op == "ne":
                return f"({first} != {right})"
            if op in _ORDERINGS:
                # templates._ordering, inline: both sides computed, in order (`|` does not
                # stop early), then missing if either is null or missing; a constant side
                # (`> 0`) is neither, and is not checked.
                a, b = self.local(), self.local()
                symbol = _ORDERINGS[op]
                if _is_value(node.ops[0].expr):
                    return (f"(M if ({a} := {first}) is None or isinstance({a}, Undefined) "
                            f"else ({a} {symbol} {right}))")
                if _is_value(node.expr):
                    return (f"(M if ({b} := {right}) is None or isinstance({b}, Undefined) "
                            f"else ({first} {symbol} {b}))")
                return (f"(M if ((({a} := {first}) is None) | (({b} := {right}) is None) | "
                        f"isinstance({a}, Undefined) | isinstance({b}, Undefined)) "
                        f"else ({a} {_ORDERINGS[op]} {b}))")
            return f"{self.const(_COMPARE[op])}({first}, {right})"
        # A chain: each operand computed only while the comparisons before it hold, and
        # the result is True or False (templates._translate's `chain`).
        left = self.local()
        code = "True"
        names = [left] + [self.local() for _ in ops]
        for i in reversed(range(len(ops))):
            op, right = ops[i]
            a = f"({names[0]} := {first})" if i == 0 else names[i]
            code = f"({code} if {self.const(_COMPARE[op])}({a}, ({names[i + 1]} := {right})) else False)"
        return code

    def _key(self, node: nodes.Node, env: Env) -> tuple[Any, ...] | None:
        """What an expression computes, as a key equal wherever in the function it gives
        the same value: None unless it reads only stable names (see `stable`)."""
        path = _as_path(node)
        if path is not None:
            root, attrs = path
            bound = env.bindings.get(root)
            if bound is None:
                return ("field", root, attrs)
            order = self.stable.get(bound)
            return None if order is None else ("name", root, order, attrs)
        if isinstance(node, nodes.Const):
            return ("const", type(node.value).__name__, node.value) \
                if type(node.value) in _LITERALS or type(node.value) is float else None
        if isinstance(node, nodes.Filter) and node.name in _REMEMBERED_FILTERS \
                and node.dyn_args is None and node.dyn_kwargs is None and node.node is not None:
            parts = [self._key(node.node, env), *(self._key(a, env) for a in node.args),
                     *(self._key(k.value, env) for k in node.kwargs)]
            if any(p is None for p in parts):
                return None
            return ("call", node.name, tuple(k.key for k in node.kwargs), *parts)
        return None

    def _call(self, node: nodes.Filter | nodes.Test, env: Env) -> str:
        key = self._key(node, env) if isinstance(node, nodes.Filter) \
            and node.name in _REMEMBERED_FILTERS else None
        if key is None:
            return self._plain_call(node, env)
        self.path_uses[key] += 1
        memo = self.shared.get(key)
        if memo is None:
            return self._plain_call(node, env)
        # Computed once: the same arguments, the same result (an error is not remembered,
        # and comes again, as it would).
        return f"({memo} if {memo} is not UNSET else ({memo} := {self._plain_call(node, env)}))"

    def _time_subject(self, node: nodes.Filter | nodes.Test, env: Env) -> str | None:
        """The subject of a filter of _TIME_FILTERS, when the function reads the time it
        names more than once (`created_at | datetime`, `created_at | add_days(1)`,
        `created_at | days_between(now)`): that time, parsed once. Each of these filters
        reads its subject as `datetime` does (functions.parse_time), and a time it was given
        as is, so `f(x)` is `f(x | datetime)`, missing when that is. None: the subject as
        written."""
        if not isinstance(node, nodes.Filter) or node.name not in _TIME_FILTERS \
                or node.node is None or isinstance(node.node, nodes.Filter) \
                and node.node.name in ("datetime", *_TIME_FILTERS):
            return None  # none, or a time already
        parsed = nodes.Filter(node.node, "datetime", [], [], None, None, lineno=node.lineno)
        key = self._key(parsed, env)
        if key is None:
            return None
        self.path_uses[key] += 1
        memo = self.shared.get(key)
        if memo is None:
            return None
        return f"({memo} if {memo} is not UNSET else ({memo} := {self._plain_call(parsed, env)}))"

    def _plain_call(self, node: nodes.Filter | nodes.Test, env: Env) -> str:
        func, sized, propagate = raw_call_target(node)
        f = self.const(func)
        t = self.local()
        r = self.local("r")

        def result(call: str) -> str:
            # The sandbox wrapper's size check of a text result, inline (a call less).
            if not sized:
                return call
            return f"({r} if type({r} := {call}) is not str or len({r}) <= MAX_OUTPUT else _too_long())"
        if func is _TOJSON and not node.args and not node.kwargs and node.node is not None:
            written = self._tojson(node.node, env, result)
            if written is not None:
                return written
        subject = self._time_subject(node, env)
        if subject is None:
            subject = self.expression(node.node, env) if node.node is not None else "M"
        args = [self.expression(a, env) for a in node.args]
        kwargs = [(str(k.key), self.expression(k.value, env)) for k in node.kwargs]
        if not all(k.isidentifier() and not keyword.iskeyword(k) for k, _ in kwargs):
            raise _Untranslatable("keyword argument")
        if not propagate:
            if func is _PRESENT and not args and not kwargs:  # functions.is_missing, inline
                return f"(not (({t} := {subject}) is None or isinstance({t}, Undefined)))"
            if func is _MISSING_TEST and not args and not kwargs:
                return f"(({t} := {subject}) is None or isinstance({t}, Undefined))"
            given = ", ".join([subject, *args, *(f"{k}={v}" for k, v in kwargs)])
            return result(f"{f}({given})")
        inline = _INLINE_FILTERS.get(func)
        written = None if inline is None or kwargs else inline(t, node.args)
        if written is not None:
            return f"(M if ({t} := {subject}) is None or type({t}) is Missing else {result(written)})"
        if not args and not kwargs:
            return f"(M if ({t} := {subject}) is None or type({t}) is Missing else {result(f'{f}({t})')})"
        if not kwargs and len(args) == 1:
            if isinstance(node.args[0], nodes.Const):  # a constant is never missing
                return (f"(M if ({t} := {subject}) is None or type({t}) is Missing else "
                        f"{result(f'{f}({t}, {args[0]})')})")
            a = self.local()
            return (f"(M if ({t} := {subject}) is None or type({t}) is Missing else "
                    f"(M if type({a} := {args[0]}) is Missing else {result(f'{f}({t}, {a})')}))")
        named = ", ".join(f"{k!r}: {v}" for k, v in kwargs)
        call = f"_call({f}, {t}, ({', '.join(args)}{',' if args else ''}), {{{named}}})"
        return (f"(M if ({t} := {subject}) is None or isinstance({t}, Undefined) else "
                f"{result(call)})")

    def _tojson(self, subject: nodes.Node, env: Env, result: Any) -> str | None:
        """`subject | tojson` for a mapping literal of constant text keys, as the text
        itself when its values turn out to be text (the commonest): each value written by
        the json module's own string encoder, the constants' text made once, here; any
        other value goes to the filter, with the mapping the literal makes of the same
        values. A conditional subject (with an `else`, whatever its branches) is `tojson`
        of each branch, each written so when it can be. None: the subject is neither."""
        if isinstance(subject, nodes.CondExpr) and subject.expr2 is not None:
            yes, no = (nodes.Filter(branch, "tojson", [], [], None, None, lineno=subject.lineno)
                       for branch in (subject.expr1, subject.expr2))
            return f"({self.expression(yes, env)} if {self.expression(subject.test, env)} " \
                   f"else {self.expression(no, env)})"
        if not isinstance(subject, nodes.Dict) or not subject.items:
            return None
        keys = [p.key.value if isinstance(p.key, nodes.Const) else None for p in subject.items]
        if not all(type(k) is str for k in keys) or len(set(keys)) != len(keys) \
                or any(isinstance(p.value, nodes.Const) and p.value.value is None
                       for p in subject.items):
            return None  # a key computed, repeated, or an entry always left out
        parts: list[tuple[bool, str]] = []  # (constant text?, the text or its source)
        values: list[str] = []
        checks: list[str] = []
        for key, pair in zip(keys, subject.items):
            head = ("{" if not parts else ",") + to_json(key) + ":"
            if isinstance(pair.value, nodes.Const):
                parts.append((True, head + to_json(pair.value.value, default=_template_json_default)))
                values.append(self.const(pair.value.value))
                continue
            v = self.local()
            checks.append(f"(type({v} := {self.expression(pair.value, env)}) is str)")
            parts += [(True, head), (False, f"_json_str({v})")]
            values.append(v)
        if not checks:
            return None  # a constant: folded when the template compiled
        parts.append((True, "}"))
        pieces: list[str] = []
        for constant, group in groupby(parts, key=lambda p: p[0]):
            pieces += [repr("".join(p[1] for p in group))] if constant else [p[1] for p in group]
        r, t = self.local("r"), self.local()
        text = f"({r} if len({r} := {' + '.join(pieces)}) <= MAX_OUTPUT else _too_long())"
        mapping = f"_keyed_dict({tuple(keys)!r}, ({', '.join(values)},))"
        called = result(f"{self.const(_TOJSON)}({t})")
        # `&`, not `and`: every value is computed, as the literal computes them.
        return (f"({text} if {' & '.join(checks)} else "
                f"(M if ({t} := {mapping}) is None or type({t}) is Missing else {called}))")
