"""How large a template's values can grow, bounded when the mapping loads.

Bounding a value after it is built does not bound the work: `[x, x]` repeated forty times is
forty small lists that weigh (bounds.weight_of) a trillion times `x`, and serializing it never
ends. So every expression of a template gets a Bound when it compiles: how many times it may
hold each part of its input (the event, the settings, the bulk items: the paths it reads),
plus constants, plus parts whose size is checked when they run (each at most MAX_OUTPUT).
Parts of the event at disjoint paths add up to the event at most, so a body of a hundred
fields of one event has a bound of one event; `[message, message]` has two.

An expression whose bound could pass MAX_OUTPUT, or MAX_FACTOR times its input, is checked
when it runs: the compiler puts the filter `_weigh` (bounds.check_weight) around it, and what
uses it sees a checked part. Every other expression cannot grow past its bound, so common
templates pay nothing at run time. The loops of Jinja-rendered templates get the filter
`_steps` around what they iterate, which counts each iteration against the event's budget
(budget.py).

Filters are known by what they can build (FILTER_BOUNDS); a filter missing from that table
is checked when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from jinja2 import nodes

from .bounds import MAX_INT_BITS, MAX_OUTPUT, weight_of

__all__ = ["MAX_FACTOR", "Bound", "CHECKED", "NOTHING", "analyze_template", "analyze_expression",
           "weight_bound", "DEFAULT_NAMES"]

MAX_FACTOR = 64
"""How many times the size of its input a value may be, as far as the compiler can tell,
before it is measured when it runs."""

_MAX_DEPTH = 8
"""Paths are followed this deep; a path stands for everything below it."""

_INT_TEXT = 1 + 14_300 // 3
"""The weight of the largest integer Python reads from text (4,300 digits, 14,300 bits)."""

REPR = 12
"""The most characters the text of a value has per unit of its weight (`'\\U000e0001'`,
an invisible character, prints as twelve)."""

Path = tuple[str, ...]


@dataclass(frozen=True)
class Bound:
    """An upper bound on the weight of a value: `refs` are the parts of the input it may
    hold (a path and how many times), `checked` the parts measured at run time (at most
    MAX_OUTPUT each), `const` the rest."""

    refs: tuple[tuple[Path, int], ...] = ()
    checked: int = 0
    const: int = 0
    text: bool = False
    """The value is text (so printing it adds nothing)."""

    @staticmethod
    def path(*parts: str) -> "Bound":
        return Bound(((tuple(parts), 1),))

    @staticmethod
    def constant(weight: int) -> "Bound":
        return Bound((), 0, weight)

    def __add__(self, other: "Bound") -> "Bound":
        if not other.refs:
            refs = self.refs
        elif not self.refs:
            refs = other.refs
        else:
            merged = dict(self.refs)
            for path, count in other.refs:
                merged[path] = merged.get(path, 0) + count
            refs = tuple(sorted(merged.items()))
        return Bound(refs, self.checked + other.checked, self.const + other.const,
                     self.text and other.text)

    def times(self, factor: int) -> "Bound":
        if factor == 1:
            return self
        return Bound(tuple((p, n * factor) for p, n in self.refs), self.checked * factor,
                     self.const * factor, self.text)

    def as_text(self, factor: int = 1) -> "Bound":
        """The bound of its text, made `factor` times larger (the text of a value other
        than text is up to REPR times its weight)."""
        b = self.times(factor if self.text else factor * REPR)
        return Bound(b.refs, b.checked, b.const, True)

    def at(self, key: Any) -> "Bound":
        """The bound of a part of the value: one key deeper (None: a key not known at load,
        so the whole value, as far as the compiler can tell)."""
        if key is None or not self.refs:
            return self
        merged: dict[Path, int] = {}
        for path, count in self.refs:
            deeper = path + (str(key),) if len(path) < _MAX_DEPTH else path
            merged[deeper] = merged.get(deeper, 0) + count
        return Bound(tuple(sorted(merged.items())), self.checked, self.const, self.text)

    def factor(self) -> int:
        """How many times the input the value may hold: at each point of the input, the
        number of times a path that contains it is held; the most over all points."""
        if not self.refs:
            return 0
        table = dict(self.refs)
        return max(sum(table.get(path[:i], 0) for i in range(1, len(path) + 1))
                   for path, _ in self.refs)

    def too_large(self) -> bool:
        """Could the value pass MAX_FACTOR times its input, hold more than one part checked
        when it runs, or more than MAX_OUTPUT of constants? (So no value left unchecked
        weighs more than MAX_FACTOR times the input plus twice MAX_OUTPUT.)"""
        return self.checked > 1 or self.const > MAX_OUTPUT or \
            (self.checked == 1 and self.const > MAX_OUTPUT // 2) or self.factor() > MAX_FACTOR


NOTHING = Bound()
CHECKED = Bound((), 1, 0)
"""A value measured at run time: at most MAX_OUTPUT."""
CHECKED_TEXT = Bound((), 1, 0, True)


def _sum(bounds: list[Bound]) -> Bound:
    total = NOTHING
    for b in bounds:
        total = total + b
    return total


def weight_bound(value: Any) -> Bound:
    """The bound of a constant (a literal of a template, a constant of a mapping file):
    its weight, measured at load (no further than just past MAX_OUTPUT)."""
    return Bound.constant(weight_of(value, MAX_OUTPUT, counted=False))


DEFAULT_NAMES: Mapping[str, Bound] = {
    "message": Bound.path("event"),
    "settings": Bound.path("settings"),
    "items": Bound.path("items"),
    "now": Bound.constant(32),
    "index": Bound.constant(32),
    "matched_event": Bound.path("event", "event"),
}
"""What the names every template may read hold; any other name not given to the analysis
is a field of the event."""


# ---- filters -----------------------------------------------------------------------------

Rule = Callable[[Bound, list[Bound], dict[str, Bound], nodes.Filter], Bound | None]
"""A filter's bound from its subject's, its arguments' and its keyword arguments' (None: not
known at load, so the result is measured when it runs)."""


def _part(k: int = 1) -> Rule:
    """A part of the subject, or something built from it `k` times its weight."""
    return lambda s, a, kw, node: s.times(k)


def _union(k: int = 1) -> Rule:
    """Made of the subject and the arguments."""
    return lambda s, a, kw, node: _sum([s, *a, *kw.values()]).times(k)


def _const(weight: int) -> Rule:
    return lambda s, a, kw, node: Bound.constant(weight)


def _checked(s: Bound, a: list[Bound], kw: dict[str, Bound], node: nodes.Filter) -> Bound:
    """Text whose length the filter's wrapper checks when it runs (sandbox.py), or that a
    precheck bounds before it is made."""
    return CHECKED_TEXT


def _text(k: int, printed: bool = True) -> Rule:
    """Text `k` times the subject's text at most (its weight, when the filter does not
    print it as Python does: tojson), and checked when it runs: whichever bound is smaller
    (the filters of templates._SMALL_RESULT_FILTERS are not checked, and never need be)."""
    def rule(s: Bound, a: list[Bound], kw: dict[str, Bound], node: nodes.Filter) -> Bound:
        b = s.as_text(k) if printed else Bound(s.times(k).refs, s.checked * k, s.const * k, True)
        return CHECKED_TEXT if b.too_large() else b
    return rule


def _join(s: Bound, a: list[Bound], kw: dict[str, Bound], node: nodes.Filter) -> Bound:
    sep = node.args[0] if node.args else next((k.value for k in node.kwargs if k.key == "d"), None)
    width = len(sep.value) if isinstance(sep, nodes.Const) and isinstance(sep.value, str) else \
        0 if sep is None else None
    if width is None:
        return CHECKED_TEXT  # the separator is data: bounded by the precheck, not at load
    b = s.as_text(1 + width)
    return CHECKED_TEXT if b.too_large() else b


def _groups(s: Bound, a: list[Bound], kw: dict[str, Bound], node: nodes.Filter) -> Bound:
    # batch/slice regroup their input; a fill value is bounded by their precheck.
    filled = len(node.args) > 1 or any(k.key == "fill_with" for k in node.kwargs)
    return s.times(2) + (CHECKED if filled else NOTHING)


def _map(s: Bound, a: list[Bound], kw: dict[str, Bound], node: nodes.Filter) -> Bound | None:
    if not node.args:
        # map(attribute=...): a part of each item.
        return s if any(k.key == "attribute" for k in node.kwargs) else None
    name = node.args[0]
    if not isinstance(name, nodes.Const) or not isinstance(name.value, str):
        return None
    rule = FILTER_BOUNDS.get(name.value)
    if rule is None:
        return None
    if any(b != NOTHING and (b.refs or b.checked) for b in a[1:] + list(kw.values())):
        return None  # every item gets the arguments: as many copies as items
    per_item = rule(s, [], {}, nodes.Filter(None, name.value, [], [], None, None))
    return None if per_item is None else per_item + s


FILTER_BOUNDS: dict[str, Rule] = {
    # parts of the subject, or as large
    "attr": _part(), "first": _part(), "last": _part(), "random": _part(), "max": _part(),
    "min": _part(), "sort": _part(), "unique": _part(), "reverse": _part(), "select": _part(),
    "reject": _part(), "selectattr": _part(), "rejectattr": _part(), "without": _part(),
    "lookup": _part(), "safe": _part(), "_steps": _part(),
    "list": _part(2), "snake_case_keys": _part(2), "dictsort": _part(3), "items": _part(3),
    "groupby": _part(3), "batch": _groups, "slice": _groups, "map": _map,
    # made of the subject and the arguments
    "default": _union(), "d": _union(), "coalesce": _union(), "merge": _union(),
    "sum": _union(), "truncate": lambda s, a, kw, node: _sum([s.as_text(), *a, *kw.values()]),
    # numbers as large as the number they are given
    "abs": _part(), "round": _part(),
    # small whatever they are given (`int` of text: Python reads at most 4,300 digits)
    "count": _const(1), "length": _const(1), "int": _const(_INT_TEXT), "float": _const(1),
    "wordcount": _const(1), "unix": _const(1),
    "unix_ms": _const(1), "unix_us": _const(1), "datetime": _const(1), "add_days": _const(1),
    "days_between": _const(1), "regex_match": _const(1), "isoformat": _const(32),
    "filesizeformat": _const(32), "digest": _const(64), "sha256": _const(64),
    "useragent": _const(8192), "format_date": _const(256 * 32),
    # text made from the subject's text (Unicode case mappings, escapes and percent-encoding
    # of UTF-8 make text longer)
    "string": _text(1), "trim": _text(1), "striptags": _text(1), "regex_search": _text(1),
    "digits": _text(1), "lower": _text(3), "upper": _text(3), "title": _text(3),
    "capitalize": _text(3), "snake_case": _text(2), "b64encode": _text(6), "e": _text(6),
    "escape": _text(6), "forceescape": _text(6), "urlencode": _text(12),
    "path_segment": _text(12), "tojson": _text(8, printed=False), "join": _join,
    # text checked when it is made
    "center": _checked, "indent": _checked, "format": _checked, "replace": _checked,
    "wordwrap": _checked, "urlize": _checked, "xmlattr": _checked, "regex_replace": _checked,
    "_weigh": _checked,
    # keys checked as they are made, values parts of the subject
    "flatten": lambda s, a, kw, node: s + CHECKED,
}
"""What each filter can build. The text filters not in templates._SMALL_RESULT_FILTERS have
their results' length checked when they run, which is what lets `_text` fall back on CHECKED;
the small ones' bounds here are true bounds whatever they are given."""


# ---- the analysis ------------------------------------------------------------------------

def _wrap(node: nodes.Node, name: str) -> nodes.Filter:
    wrapped = nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
    if node.environment is not None:
        wrapped.set_environment(node.environment)
    return wrapped


_ARITH_SCALAR = (nodes.Sub, nodes.Div, nodes.FloorDiv, nodes.Pow)


class _Analysis:
    """One template's analysis: the names it can read with their bounds (its own `set`s
    added as it goes), and the `_weigh` and `_steps` filters put into its tree."""

    def __init__(self, names: Mapping[str, Bound]) -> None:
        self.names: dict[str, Bound] = dict(names)
        self.loops = 0
        self.output = NOTHING

    # -- expressions ----------------------------------------------------------------------

    def child(self, parent: nodes.Node, field: str) -> Bound:
        """Analyze `parent.<field>`, wrapped in `_weigh` if its bound is too large."""
        node = getattr(parent, field)
        if node is None:
            return NOTHING
        bound, replaced = self.checked(node)
        if replaced is not node:
            setattr(parent, field, replaced)
        return bound

    def children(self, items: list[Any]) -> list[Bound]:
        out = []
        for i, node in enumerate(items):
            if isinstance(node, nodes.Keyword):
                out.append(self.child(node, "value"))
            elif isinstance(node, nodes.Pair):
                out.append(self.child(node, "key") + self.child(node, "value"))
            else:
                bound, items[i] = self.checked(node)
                out.append(bound)
        return out

    def checked(self, node: nodes.Expr) -> tuple[Bound, nodes.Expr]:
        bound = self.expr(node)
        if bound.too_large() and not isinstance(node, nodes.Const):
            return CHECKED, _wrap(node, "_weigh")
        return bound, node

    def expr(self, node: nodes.Node) -> Bound:
        if isinstance(node, nodes.Name):
            found = self.names.get(node.name)
            return found if found is not None else Bound.path("event", node.name)
        if isinstance(node, nodes.Const):
            found = weight_bound(node.value)
            return Bound((), 0, found.const, True) if isinstance(node.value, str) else found
        if isinstance(node, nodes.TemplateData):
            return Bound((), 0, len(node.data), True)
        if isinstance(node, nodes.Getattr):
            return self.child(node, "node").at(node.attr)
        if isinstance(node, nodes.Getitem):
            self.child(node, "arg")
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            return self.child(node, "node").at(key)
        if isinstance(node, nodes.Slice):
            for field in ("start", "stop", "step"):
                self.child(node, field)
            return NOTHING
        if isinstance(node, (nodes.List, nodes.Tuple)):
            return _sum(self.children(node.items)) + Bound.constant(len(node.items))
        if isinstance(node, nodes.Dict):
            return _sum(self.children(node.items)) + Bound.constant(len(node.items))
        if isinstance(node, nodes.Filter):
            return self.filter(node, self.child(node, "node"))
        if isinstance(node, nodes.Test):
            self.child(node, "node")
            self.arguments(node)
            return Bound.constant(1)
        if isinstance(node, (nodes.And, nodes.Or)):
            return self.child(node, "left") + self.child(node, "right")
        if isinstance(node, nodes.Not):
            self.child(node, "node")
            return Bound.constant(1)
        if isinstance(node, nodes.Compare):
            self.child(node, "expr")
            for op in node.ops:
                self.child(op, "expr")
            return Bound.constant(1)
        if isinstance(node, (nodes.Neg, nodes.Pos)):
            return self.child(node, "node")
        if isinstance(node, nodes.CondExpr):
            self.child(node, "test")
            return self.child(node, "expr1") + self.child(node, "expr2")
        if isinstance(node, nodes.Concat):
            return _sum([b.as_text() for b in self.children(node.nodes)])
        if isinstance(node, nodes.Add):
            return self.child(node, "left") + self.child(node, "right")
        if isinstance(node, nodes.Mul):
            left, right = self.child(node, "left"), self.child(node, "right")
            for seq, count in ((left, node.right), (right, node.left)):
                if isinstance(count, nodes.Const) and type(count.value) is int \
                        and 0 <= count.value <= MAX_FACTOR:
                    return seq.times(count.value) + Bound.constant(1)
            return CHECKED  # bounded_binop measures the repetition before it makes it
        if isinstance(node, nodes.Mod):
            self.child(node, "left")
            self.child(node, "right")
            return CHECKED_TEXT  # bounded_binop checks the format and the text's length
        if isinstance(node, _ARITH_SCALAR):
            # A number: `-` and `//` of integers are no larger than the larger of the two,
            # and `**` makes at most MAX_INT_BITS (bounds.py).
            return self.child(node, "left") + self.child(node, "right") + \
                Bound.constant(1 + MAX_INT_BITS // 3)
        if isinstance(node, nodes.Call):
            # Only `loop.cycle(a, b)` may be called (sandbox.py): it gives one of its arguments.
            self.child(node, "node")
            return _sum(self.arguments(node))
        if isinstance(node, (nodes.MarkSafe, nodes.MarkSafeIfAutoescape)):
            return self.child(node, "expr")
        # Anything else (none of which a mapping template can reach today): as large as
        # everything in it.
        return _sum([self.expr(child) for child in node.iter_child_nodes()])

    def arguments(self, node: nodes.Filter | nodes.Test | nodes.Call) -> list[Bound]:
        bounds = self.children(node.args) + self.children(node.kwargs)
        for field in ("dyn_args", "dyn_kwargs"):
            if getattr(node, field) is not None:
                bounds.append(self.child(node, field))
        return bounds

    def filter(self, node: nodes.Filter, subject: Bound) -> Bound:
        args = self.children(node.args)
        kwargs = {str(k.key): b for k, b in zip(node.kwargs, self.children(node.kwargs))}
        rule = FILTER_BOUNDS.get(node.name)
        dynamic = node.dyn_args is not None or node.dyn_kwargs is not None
        for field in ("dyn_args", "dyn_kwargs"):
            if getattr(node, field) is not None:
                self.child(node, field)
        found = None if rule is None or dynamic else rule(subject, args, kwargs, node)
        if found is None:
            # Not known at load: the result is measured when it runs.
            return _sum([subject, *args, *kwargs.values()]) + Bound((), 0, MAX_OUTPUT + 1)
        return found

    # -- statements (templates Jinja renders) ---------------------------------------------

    def body(self, statements: list[nodes.Node]) -> None:
        for node in statements:
            self.statement(node)

    def statement(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Output):
            for i, part in enumerate(node.nodes):
                if isinstance(part, nodes.TemplateData):
                    bound = Bound.constant(len(part.data))
                else:
                    bound, node.nodes[i] = self.checked(part)
                    bound = bound.as_text()
                # Text printed in a loop is printed once per iteration: only rendering, which
                # measures the text as it goes, knows how much there is.
                self.output = self.output + (CHECKED if self.loops else bound)
        elif isinstance(node, nodes.If):
            self.child(node, "test")
            before = dict(self.names)
            branches: list[list[nodes.Node]] = [node.body, node.else_]
            branches[1:1] = [[elif_] for elif_ in node.elif_]
            after: dict[str, Bound] = {}
            for branch in branches:
                self.names = dict(before)
                self.body(branch)
                for name, bound in self.names.items():
                    if before.get(name) != bound:
                        after[name] = after.get(name, before.get(name, NOTHING)) + bound
            self.names = {**before, **after}
        elif isinstance(node, nodes.For):
            items = self.child(node, "iter")
            node.iter = _wrap(node.iter, "_steps")
            before = dict(self.names)
            self.assign(node.target, items)
            self.names["loop"] = items + Bound.constant(32)
            if node.test is not None:
                self.child(node, "test")
            self.loops += 1
            self.body(node.body)
            self.loops -= 1
            self.names = before  # what a loop sets stays in the loop (Jinja's scoping)
            self.body(node.else_)
        elif isinstance(node, nodes.Assign):
            self.assign(node.target, self.child(node, "node"))
        elif isinstance(node, (nodes.AssignBlock, nodes.FilterBlock)):
            outer, self.output = self.output, NOTHING
            self.body(node.body)
            text = self.output
            self.output = outer
            if node.filter is not None:
                text = self.filter(node.filter, text)
            if isinstance(node, nodes.AssignBlock):
                self.assign(node.target, text)
            else:
                self.output = self.output + text
        elif isinstance(node, nodes.With):
            before = dict(self.names)
            values = self.children(node.values)
            for target, bound in zip(node.targets, values):
                self.assign(target, bound)
            self.body(node.body)
            self.names = before
        elif isinstance(node, nodes.ExprStmt):
            self.child(node, "node")
        elif isinstance(node, (nodes.Scope, nodes.OverlayScope, nodes.ScopedEvalContextModifier)):
            self.body(node.body)

    def assign(self, target: nodes.Node, bound: Bound) -> None:
        if isinstance(target, nodes.Name):
            self.names[target.name] = bound
        elif isinstance(target, nodes.Tuple):
            for item in target.items:
                self.assign(item, bound.at(None))


def _names(given: Mapping[str, Bound] | None) -> dict[str, Bound]:
    return {**DEFAULT_NAMES, **(given or {})}


def analyze_expression(node: nodes.Expr, names: Mapping[str, Bound] | None
                       ) -> tuple[Bound, nodes.Expr]:
    """The bound of one expression (a template that is a single `{{ ... }}`), with the
    expression as it must run: `_weigh` around what cannot be bounded at load."""
    return _Analysis(_names(names)).checked(node)


def analyze_template(tree: nodes.Template, names: Mapping[str, Bound] | None) -> Bound:
    """Analyze a whole template (text, blocks, loops) in place; its bound is that of its
    text, which rendering also measures as it goes (templates._block)."""
    analysis = _Analysis(_names(names))
    analysis.body(tree.body)
    if analysis.output.too_large():
        return CHECKED_TEXT
    return analysis.output.as_text()
