"""One generated Python function per rule, compiled when the mapping loads.

The interpreted path (destination.BoundDestination._apply and _request) walks a rule's
parts and calls a render closure for every value, looking each name up in a scope dict
made per event. The generated function does the same steps in the same order, written out
for that one rule: names are locals, the message's fields are read once, constant parts
are constants, whatever depends on settings alone is computed once per settings, and a
request is built in place (pysource.py writes the values). It is the interpreted path's
behaviour, not a second definition of it: the interpreted path stays the reference, and
the test suite runs every example of every mapping through both and compares what they
give (tests/mapping/test_codegen.py).

`generate(destination, rule)` gives a RuleCode: its source (what `engine explain SLUG RULE`
prints), and a factory that, given a bound destination's settings and the rule's bound
parts, returns the function. The source is compiled with no builtins but a few harmless
types, and with globals that are the helpers of pysource.py, the sandbox's own functions
and the objects the rule's values need; see pysource.py for what the sandbox guarantees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

from ..errors import EventError, RenderError
from ..outcomes import METHODS, Outcome, Request, Skip
from ..serialization import format_datetime, parse_datetime
from .budget import BudgetExceeded
from .expressions import Expression
from .expressions import _WEIGH
from .expressions import _is_false as _jmespath_false
from .missing import MISSING
from .pysource import SAFE_BUILTINS, UNHOISTED, BuiltDict, Env, SourceWriter
from .templates import Compiled

if TYPE_CHECKING:
    from .destination import Destination, RequestSpec, Rule

__all__ = ["RuleCode", "RuleFunction", "generate", "generate_values"]

RuleFunction = Callable[[dict[str, Any], datetime, "str | bool", "dict[str, Any] | None"],
                        list[Outcome]]
"""A rule that matched, applied: (the message, now, what matched, the scope the file's
values were computed in, if a `when.if` made one) -> outcomes; raises EventError."""


@dataclass(frozen=True)
class RuleCode:
    """A rule's generated function: its Python source, the factory that binds it to one
    set of settings, and the templates it leaves to Jinja (file:line:col, template)."""

    source: str
    factory: Callable[..., Any]
    """Given (public settings, url settings, the bound rule, fill_url): the function."""
    fallbacks: tuple[tuple[str, str], ...]
    made_from: Any = None
    """The very rule (or the file's values) the code was written for: a destination
    changed since (dataclasses.replace) runs a rule whose code was not written for it
    interpreted."""


def _hoist(compiled: Compiled, settings: dict[str, Any]) -> Any:
    """A settings-only value, computed from the settings; UNHOISTED if it fails there
    (it then fails each event, with its reason)."""
    assert compiled.renderer is not None
    try:
        return compiled.renderer({"settings": settings})
    except RenderError:
        return UNHOISTED


def _due(value: datetime) -> tuple[Any, datetime | None]:
    """What `deliver_after` gives for a datetime (with the text it was written as, for an
    error): the interpreted path writes it with format_datetime and reads it back with
    parse_datetime, which is the time in UTC to the millisecond, for years from 1000 on
    (four-digit years, which strftime writes and fromisoformat reads)."""
    utc = value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)
    if utc.year >= 1000:
        extra = utc.microsecond % 1000
        # Most times are whole milliseconds already: replace() costs 400 ns, a subtraction less.
        return value, utc - timedelta(microseconds=extra) if extra else utc
    text = format_datetime(value)
    return text, parse_datetime(text)


def _url_ready(value: Any) -> str | None:
    """A url made of settings alone, as the request takes it; None when it is not one (the
    request renders it, and fails, each time)."""
    if value is UNHOISTED or value is MISSING or not str(value):
        return None
    return str(value)


_GLOBALS: dict[str, Any] = {
    "RenderError": RenderError, "BudgetExceeded": BudgetExceeded, "EventError": EventError, "Request": Request, "Skip": Skip,
    "METHODS": METHODS, "parse_datetime": parse_datetime,
    "_blank": object.__new__, "_hoist": _hoist, "_due": _due, "_url_ready": _url_ready, "datetime": datetime, "_jmespath_false": _jmespath_false,
}


def _jmespath_source(expression: Expression, root: str) -> str | None:
    """Python for a JMESPath expression over `root` made only of fields, sub-expressions
    of fields and `||` (what expressions._compile makes of them, which cannot fail); None
    for any other (its compiled search is called)."""
    if expression.uses_settings or expression.parsed is None:
        return None
    counter = iter(range(10**6))

    def walk(node: dict[str, Any], value: str) -> str | None:
        kind = node["type"]
        if node.get(_WEIGH):  # measured when it runs (expressions._growth): the search does it
            return None
        if kind == "field":
            t = f"_j{next(counter)}"
            return f"({t}.get({node['value']!r}) if type({t} := {value}) is dict else None)"
        if kind == "subexpression" and all(c["type"] == "field" for c in node["children"]):
            for child in node["children"]:
                found = walk(child, value)
                assert found is not None
                value = found
            return value
        if kind == "or_expression":
            left, right = walk(node["children"][0], value), walk(node["children"][1], value)
            if left is None or right is None:
                return None
            t = f"_j{next(counter)}"
            return f"({right} if _jmespath_false({t} := {left}) else {t})"
        return None
    return walk(expression.parsed, root)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


class _RuleWriter:
    def __init__(self, destination: "Destination", rule: "Rule") -> None:
        self.destination = destination
        self.rule = rule
        from .destination import (  # one definition of each, there
            _form_entry,
            _form_value,
            _with_query,
        )
        self.w = SourceWriter()
        self.w.globals.update(_GLOBALS, _form_value=_form_value, _form_entry=_form_entry,
                              _with_query=_with_query)
        self.prologue: list[str] = []  # the factory's per-settings lines
        self.body: list[str] = []
        self.scope_bodies: list[str] = []
        """The locals holding the scope's `body` for a bulk item (dropped when unread)."""
        self.forms: list[tuple[str, str, BuiltDict, str]] = []
        """Form bodies of literals made text (see _form): (marker line, body local, the
        literal, the body's name in the scope), decided once the whole rule is written."""

    def const(self, value: Any) -> str:
        return self.w.const(value)

    def write(self) -> RuleCode:
        rule, dest, w = self.rule, self.destination, self.w
        slug, name = dest.slug, rule.name
        out = self.body
        ind = "            "  # inside the factory, the function and its try
        env = Env({"message": "event", "settings": "settings", "now": "now"})
        for i, (expression, _source, reason) in enumerate(rule.require):
            found = _jmespath_source(expression, "event")
            if found is None:
                self.prologue.append(f"    S_req{i} = bound.require[{i}][0]")
                found = f"S_req{i}(event)"
            # destination._absent, inline: null or empty is missing; false and 0 are values
            req = w.local("req")
            out.append(f"{ind}if ({req} := {found}) is None or isinstance({req}, (str, list, dict)) "
                       f"and not {req}:")
            out.append(f"{ind}    return [Skip({slug!r}, {reason!r}, {name!r}, {name!r})]")
        # The file's values, as the interpreted scope computes them (or reads them from the
        # scope a `when.if` already computed them in).
        values = [(value_name, w.local("fv")) for value_name, _ in dest.values]
        for _, local in values:
            w.stable[local] = len(w.stable)
        if values:
            if rule.snake is None:
                out.append(f"{ind}if pre is not None:")
                for value_name, local in values:
                    out.append(f"{ind}    {local} = pre[{value_name!r}]")
                out.append(f"{ind}else:")
                inner = ind + "    "
            else:
                inner = ind
            file_env = env
            for (value_name, compiled), (_, local) in zip(dest.values, values, strict=True):
                w.value(out, inner, compiled, file_env, local)
                file_env = file_env.bind(value_name, local)
            env = file_env
        for i, (extracted, expression) in enumerate(rule.extract):
            local = w.local("x")
            w.stable[local] = len(w.stable)
            found = _jmespath_source(expression, "event")
            if found is None:
                self.prologue.append(f"    S_ext{i} = bound.extract[{i}][1]")
                found = f"S_ext{i}(event)"
            out.append(f"{ind}{local} = {found}")
            env = env.bind(extracted, local)
        if rule.events is not None:
            env = env.bind("matched_event", "matched")
        for value_name, compiled in rule.values:
            local = w.local("rv")
            w.stable[local] = len(w.stable)
            w.value(out, ind, compiled, env, local)
            env = env.bind(value_name, local)
        for condition in rule.reject_if:
            self._condition(out, ind, condition, env, "reject")
        for condition in rule.skip_if:
            self._condition(out, ind, condition, env, "skip")
        if rule.skip is not None or not rule.requests:
            fallback = f"skipped by rule {name}"
            if rule.skip is None:
                out.append(f"{ind}return [Skip({slug!r}, {fallback!r}, {name!r}, {name!r})]")
            else:
                reason = self._text(out, ind, rule.skip, env, fallback)
                out.append(f"{ind}return [Skip({slug!r}, {reason}, {name!r}, {name!r})]")
        else:
            if any(spec.batch_item is not None and spec.for_each is None for spec in rule.requests):
                # `body` in the scope, as a request with a bulk item sets it for the next.
                local = w.local("body")
                self.scope_bodies.append(local)
                out.append(f"{ind}{local} = {w.lookup(env, 'body')}")
                env = env.bind("body", local)
            only = rule.requests[0]
            if len(rule.requests) == 1 and only.for_each is None and only.condition is None:
                # One request, always made: returned as it is built.
                self._one_request(out, ind, 0, only, env, repr(only.id_suffix or ""),
                                  sink="return [{}]")
                return self._assemble()
            out.append(f"{ind}out = []")
            for i, spec in enumerate(rule.requests):
                self._request(out, ind, i, spec, env)
            out.append(f"{ind}if not out:")
            none = f"rule {name} made no request (its conditions or for_each gave none)"
            out.append(f"{ind}    return [Skip({slug!r}, {none!r}, {name!r}, {name!r})]")
            out.append(f"{ind}return out")
        return self._assemble()

    def _assemble(self) -> RuleCode:
        rule = self.rule
        unread = [local for local in self.scope_bodies if not self._read(local)]
        while unread:  # a `body` kept only for another that nothing reads is not read either
            for local in unread:
                self._drop_assignments(local)
            unread = [local for local in self.scope_bodies if not self._read(local)
                      and self._assigned(local)]
        for marker, body, built, scope_name in self.forms:
            # The body's dict is made text where it is, unless the scope's `body` (which
            # holds it for the bulk item) is read by the rule anywhere but its assignments:
            # then that read sees the values as they were, in a copy.
            at = self.body.index(marker)
            self.body[at:at + 1] = self._form_literal(
                marker[:_indent(marker)], body, built, copy=bool(scope_name) and self._read(scope_name))
        lines = [f"# rule {self.rule.name!r} of {self.destination.slug!r}: generated when the "
                 "mapping loaded",
                 "def factory(settings, url_settings, bound, fill_url):"]
        lines += self._hoisted_lines()
        lines.append("")
        lines.append("    def run(event, now, matched, pre):")
        if rule.snake is not None:
            lines.append(f"        event = {self.const(rule.snake)}.apply(event)")
        lines.append("        try:")
        lines += self._field_lines()
        lines += self.body
        # A render error, or the event's budget spent between two requests of a for_each.
        lines.append("        except (RenderError, BudgetExceeded) as _error:")
        prefix = f"{self.destination.slug}: rule {rule.name}: "
        lines.append(f"            raise EventError({prefix!r} + str(_error)) from None")
        lines.append("    return run")
        return self._compiled("\n".join(lines) + "\n",
                              f"<rule {rule.name!r} of {self.destination.slug}>")

    # Reads and assignments are found in the lines as written: every line is one statement,
    # and a local the generator numbered appears only as itself. A name found anywhere but
    # as the target of its own assignment counts as read (when unsure: kept).

    def _read(self, local: str) -> bool:
        """Does the rule's function read `local` anywhere (not only assign it)?"""
        read = re.compile(rf"\b{re.escape(local)}\b(?! = )")
        return any(read.search(line) for line in self.body)

    def _assigned(self, local: str) -> bool:
        assigned = re.compile(rf"\s*{re.escape(local)} = ")
        return any(assigned.match(line) for line in self.body)

    def _drop_assignments(self, local: str) -> None:
        """The function without its assignments of `local`, which nothing reads: each
        becomes `pass` (no code; the block it was in stays a block)."""
        assigned = re.compile(rf"\s*{re.escape(local)} = ")
        self.body[:] = [line if assigned.match(line) is None else line[:_indent(line)] + "pass"
                        for line in self.body]

    def _hoisted_lines(self) -> list[str]:
        """The factory's lines: what the function needs, once per settings."""
        lines = list(self.prologue)
        for local, compiled, settings in self.w.hoisted:
            lines.append(f"    {local} = _hoist({self.const(compiled)}, {settings})")
        for local, code in self.w.hoisted_expressions:
            lines += ["    try:", f"        {local} = {code}", "    except Exception:",
                      f"        {local} = UNHOISTED"]
        return lines

    def _field_lines(self) -> list[str]:
        """The message's fields read once (those the function reads), and the remembered
        parts not read yet."""
        text = "\n".join(self.body)
        lines = [f"            {local} = event.get({name!r}, M)"
                 for name, local in self.w.fields.items() if re.search(rf"\b{local}\b", text)]
        if self.w.shared:
            lines.append(f"            {' = '.join(self.w.shared.values())} = UNSET")
        return lines

    def _compiled(self, source: str, filename: str) -> RuleCode:
        namespace: dict[str, Any] = {"__builtins__": SAFE_BUILTINS, **self.w.globals}
        module = compile(source, filename, "exec")
        exec(module, namespace)  # noqa: S102 - our own source, of literals and numbered names
        made_from = self.rule if self.rule is not None else self.destination.values
        return RuleCode(source, namespace["factory"], tuple(self.w.fallbacks), made_from)

    # -- parts ------------------------------------------------------------------------

    def _text(self, out: list[str], ind: str, compiled: Compiled, env: Env, fallback: str) -> str:
        """destination._text: the value as text, or `fallback` when it is missing or fails."""
        value = self.w.local("why")
        out.append(f"{ind}try:")
        self.w.value(out, ind + "    ", compiled, env, value)
        out.append(f"{ind}except RenderError:")
        out.append(f"{ind}    {value} = M")
        return f"({fallback!r} if {value} is M else str({value}))"

    def _holds(self, out: list[str], ind: str, compiled: Compiled, env: Env) -> str:
        test = self.w.local("test")
        self.w.value(out, ind, compiled, env, test)
        return f"({test} is not M and {test})"

    def _condition(self, out: list[str], ind: str, condition: Any, env: Env, kind: str) -> None:
        slug, name = self.destination.slug, self.rule.name
        out.append(f"{ind}if {self._holds(out, ind, condition.test, env)}:")
        if kind == "reject":
            reason = self._text(out, ind + "    ", condition.reason, env, f"rejected by rule {name}")
            out.append(f"{ind}    raise EventError({reason})")
        else:
            reason = self._text(out, ind + "    ", condition.reason, env, "skipped")
            out.append(f"{ind}    return [Skip({slug!r}, {reason}, {name!r}, {name!r})]")

    def _request(self, out: list[str], ind: str, i: int, spec: "RequestSpec", env: Env) -> None:
        w = self.w
        if spec.for_each is None:
            suffix = repr(spec.id_suffix or "")
            if spec.condition is None:
                self._one_request(out, ind, i, spec, env, suffix)
            else:
                out.append(f"{ind}if {self._holds(out, ind, spec.condition, env)}:")
                self._one_request(out, ind + "    ", i, spec, env, suffix)
            return
        items, index, item = w.local("items"), w.local("index"), w.local("item")
        w.value(out, ind, spec.for_each, env, items)
        out.append(f"{ind}if {items} is not M:")
        inner = ind + "    "
        item_env = env
        if spec.batch_item is not None:
            # The item scope is one dict for the whole loop: a body one item sets, the next
            # sees, until it sets its own.
            local = w.local("body")
            self.scope_bodies.append(local)
            out.append(f"{inner}{local} = {w.lookup(env, 'body')}")
            item_env = item_env.bind("body", local)
        # Each item is a step of the event's budget (budget.py), as on the interpreted path.
        spend = w.local("spend")
        out.append(f"{inner}{spend} = _spender()")
        out.append(f"{inner}for {index}, {item} in enumerate({items} if isinstance({items}, list) "
                   f"else [{items}]):")
        inner += "    "
        out.append(f"{inner}{spend}()")
        out.append(f"{inner}if {item} is None:")
        out.append(f"{inner}    continue")
        item_env = item_env.bind(spec.item_name, item).bind("index", index)
        if spec.condition is not None:
            test = self._holds(out, inner, spec.condition, item_env)
            out.append(f"{inner}if not {test}:")
            out.append(f"{inner}    continue")
        suffix = '""' if spec.id_suffix is None else f"{spec.id_suffix!r} + ':' + str({index})"
        self._one_request(out, inner, i, spec, item_env, suffix)

    def _one_request(self, out: list[str], ind: str, i: int, spec: "RequestSpec", env: Env,
                     suffix: str, sink: str = "out.append({})") -> None:
        """destination._request, for one request of this rule; `sink` says what is done
        with the Request."""
        if f"    S_auth{i} = bound.auths[{i}]" not in self.prologue:  # what it needs per settings
            self.prologue += [
                f"    S_auth{i} = bound.auths[{i}]",
                f"    S_secret{i} = frozenset(S_auth{i})",
                f"    S_headers{i} = bound.headers[{i}]",
                f"    S_spec{i} = {self.const(spec)}",
                f"    S_query{i} = bound.queries[{i}]",
            ]
        w, slug, name = self.w, self.destination.slug, self.rule.name
        where = f"{slug}: rule {name}: "
        method, url, headers, body = (w.local(s) for s in ("method", "url", "headers", "body"))
        if spec.method.renderer is None:
            method = repr(spec.method.constant)  # checked at load
        else:
            w.value(out, ind, spec.method, env, method)
            out.append(f"{ind}if {method} not in METHODS:")
            out.append(f"{ind}    raise EventError({where!r} + 'the method template rendered ' + "
                       f"('nothing' if {method} is M else repr({method})) + "
                       f"{', not one of ' + ', '.join(METHODS)!r})")
        url_env = env.bind("settings", "url_settings") if spec.url_secrets else env
        if spec.url.renderer is not None and spec.url.names_used <= {"settings"}:
            # Made of settings alone: checked, and made text, once per settings.
            ready = w.local("url_ready")
            self.prologue.append(f"    {ready} = _url_ready(_hoist({self.const(spec.url)}, "
                                 f"{url_env.bindings['settings']}))")
            out.append(f"{ind}if {ready} is not None:")
            out.append(f"{ind}    {url} = {ready}")
            out.append(f"{ind}else:")
            inner = ind + "    "
        else:
            inner = ind
        w.value(out, inner, spec.url, url_env, url)
        out.append(f"{inner}if {url} is M or not str({url}):")
        out.append(f"{inner}    raise EventError({where + 'the url template rendered nothing'!r})")
        out.append(f"{inner}{url} = str({url})")
        if spec.query:
            params = []
            for key, compiled in spec.query:
                local = w.local("q")
                w.value(out, ind, compiled, env, local)
                params.append(f"({key!r}, {local})")
            out.append(f"{ind}{url} = _with_query({url}, [{', '.join(params)}])")
        stored = "None"
        if spec.url_secrets or spec.auth_query:
            stored = w.local("stored")
            out.append(f"{ind}{stored} = {url}")
            out.append(f"{ind}{url} = fill_url(S_spec{i}, {url}, S_query{i})")
        out.append(f"{ind}if S_headers{i} is not None:")
        out.append(f"{ind}    {headers} = dict(S_headers{i})")
        out.append(f"{ind}else:")
        out.append(f"{ind}    {headers} = {{}}")
        for header, compiled in spec.headers:
            local = w.local("hv")
            w.value(out, ind + "    ", compiled, env, local)
            out.append(f"{ind}    if {local} is not M:")
            out.append(f"{ind}        {headers}[{header!r}] = str({local})")
        out.append(f"{ind}    {headers}.update(S_auth{i})")
        out.append(f"{ind}{body} = None")
        item_env = env
        if spec.body is not None:
            w.value(out, ind, spec.body, env, body)
            built = w.built.get(body)
            out.append(f"{ind}if {body} is M:")
            out.append(f"{ind}    {body} = None")
            if spec.content_type is not None or spec.batch_item is not None:
                out.append(f"{ind}else:")
                if spec.content_type is not None:
                    out.append(f"{ind}    {headers}['Content-Type'] = {spec.content_type!r}")
                if spec.batch_item is not None:
                    out.append(f"{ind}    {env.bindings['body']} = {body}")
                    if built is not None and built.never_empty:
                        # The bulk item reads the body's entries from their locals.
                        item_env = env.knowing("body", built)
            if spec.encoding == "form":
                if built is not None and built.never_empty:
                    marker = f"{ind}# form {len(self.forms)}"
                    self.forms.append((marker, body, built, env.bindings.get("body", "")))
                    out.append(marker)
                else:
                    self._form(out, ind, body, where)
        due = "None"
        if spec.deliver_after is not None:
            raw, due = w.local("raw"), w.local("due")
            out.append(f"{ind}{due} = None")
            w.value(out, ind, spec.deliver_after, env, raw, keep_time=True)
            out.append(f"{ind}if {raw} is not M:")
            out.append(f"{ind}    if type({raw}) is datetime:")
            out.append(f"{ind}        {raw}, {due} = _due({raw})")
            out.append(f"{ind}    else:")
            out.append(f"{ind}        {due} = parse_datetime({raw})")
            out.append(f"{ind}    if {due} is None:")
            out.append(f"{ind}        raise EventError({where + 'deliver_after rendered '!r} + "
                       f"repr({raw}) + ', not a date')")
            out.append(f"{ind}    if not {due} > now:")
            out.append(f"{ind}        {due} = None")
        once_key = once_window = "None"
        if spec.once_key is not None and spec.once_window is not None:
            key, window = w.local("key"), w.local("window")
            once_key, once_window = w.local("once_key"), w.local("once_window")
            w.value(out, ind, spec.once_key, env, key)
            w.value(out, ind, spec.once_window, env, window)
            out.append(f"{ind}{once_key} = {once_window} = None")
            out.append(f"{ind}if {key} is not M and {window} is not M:")
            out.append(f"{ind}    try:")
            out.append(f"{ind}        {once_window} = float({window})")
            out.append(f"{ind}    except (TypeError, ValueError):")
            out.append(f"{ind}        raise EventError({where + 'once.window_seconds rendered '!r} + "
                       f"repr({window}) + ', not a number') from None")
            out.append(f"{ind}    {once_key} = str({key})")
        message_id = w.local("message_id")
        w.value(out, ind, spec.message_id, env, message_id)
        if suffix != "''":
            out.append(f"{ind}if {message_id} is not M and {suffix}:")
            out.append(f"{ind}    {message_id} = f'{{{message_id}}}' + {suffix}")
        item = "None"
        if spec.batch_item is not None:
            item = w.local("item")
            out.append(f"{ind}{item} = None")
            inner = ind
            if spec.batch_if is not None:
                out.append(f"{ind}if {self._holds(out, ind, spec.batch_if, item_env)}:")
                inner = ind + "    "
            w.value(out, inner, spec.batch_item, item_env, item)
            out.append(f"{inner}if {item} is M:")
            out.append(f"{inner}    {item} = None")
        into = "None" if spec.batch_into is None else f"({spec.batch_into!r} if {item} is not None else None)"
        secret_query = tuple(query_name for query_name, _ in spec.auth_query)
        given = {
            "destination": repr(slug), "rule": repr(spec.name or name), "method": method,
            "url": url, "headers": headers, "encoding": repr(spec.encoding), "body": body,
            "deliver_after": due, "once_key": once_key, "once_window": once_window,
            "message_id": f"None if {message_id} is M else str({message_id})",
            "secret_headers": f"S_secret{i}", "batch_into": into, "batch_item": item,
            "stored_url": stored, "secret_query": repr(secret_query)}
        # Made blank and each of Request's fields set, read from Request itself so that the
        # two cannot disagree: half the cost of calling the dataclass's __init__ with them.
        request = w.local("request")
        out.append(f"{ind}{request} = _blank(Request)")
        out += [f"{ind}{request}.{f.name} = {given.pop(f.name)}" for f in fields(Request)]
        assert not given, given
        out.append(ind + sink.format(request))

    def _form(self, out: list[str], ind: str, body: str, where: str) -> None:
        """A form body's values made text (destination._form_value), null ones left out,
        into a new mapping: the body the bulk item reads keeps its values."""
        out.append(f"{ind}if {body} is not None:")
        out.append(f"{ind}    if not isinstance({body}, dict):")
        out.append(f"{ind}        raise EventError({where + 'a form body must be a mapping'!r})")
        out.append(f"{ind}    {body} = {{k if type(k) is str else str(k): v if type(v) is str "
                   f"else _form_value(v) for k, v in {body}.items() if v is not None}}")

    def _form_literal(self, ind: str, body: str, built: BuiltDict, copy: bool) -> list[str]:
        """_form for a literal of text keys, never empty (a dict this function made): only
        the entries that may not be text are looked at (constants converted here, once),
        in that dict itself unless `copy`."""
        w, out = self.w, []
        to_text = w.globals["_form_value"]
        changed = [(e.key, w.const(to_text(e.constant))) for e in built.entries
                   if e.is_constant and e.constant is not None and type(e.constant) is not str]
        if copy:
            pairs = ", ".join(f"{key!r}: {text}" for key, text in changed)
            out.append(f"{ind}{body} = {{**{body}, {pairs}}}" if changed else f"{ind}{body} = dict({body})")
        else:
            out += [f"{ind}{body}[{key!r}] = {text}" for key, text in changed]
        for e in built.entries:
            if e.is_constant:
                if e.constant is None:
                    out.append(f"{ind}del {body}[{e.key!r}]")
            elif not e.text:
                out.append(f"{ind}if type({e.expression}) is not str and {e.expression} is not M:")
                out.append(f"{ind}    _form_entry({body}, {e.key!r}, {e.expression})")
        return out


class _ValuesWriter(_RuleWriter):
    """The file's values as one generated function: (message, now) -> the scope the
    interpreted path makes (destination.BoundDestination._scope), for `when.if` and the
    unmatched reason."""

    def __init__(self, destination: "Destination") -> None:
        super().__init__(destination, None)  # type: ignore[arg-type]

    def write(self) -> RuleCode:
        w, out, ind = self.w, self.body, "        "
        env = Env({"message": "event", "settings": "settings", "now": "now"})
        for name, compiled in self.destination.values:
            local = w.local("fv")
            w.stable[local] = len(w.stable)
            w.value(out, ind, compiled, env, local)
            env = env.bind(name, local)
        out.append(f"{ind}scope = dict(event)")
        for name, expression in env.bindings.items():
            out.append(f"{ind}scope[{name!r}] = {expression}")
        out.append(f"{ind}return scope")
        lines = [f"# the values of {self.destination.slug!r}: generated when the mapping loaded",
                 "def factory(settings, url_settings, bound, fill_url):"]
        lines += self._hoisted_lines()
        lines.append("")
        lines.append("    def run(event, now):")
        lines += [line[4:] for line in self._field_lines()]
        lines += out
        lines.append("    return run")
        return self._compiled("\n".join(lines) + "\n", f"<values of {self.destination.slug}>")


def generate_values(destination: "Destination") -> RuleCode | None:
    """The file's values as one generated function, or None when it has none."""
    if not destination.values:
        return None
    first = _ValuesWriter(destination)
    first.write()
    second = _ValuesWriter(destination)
    second.w.shared = {key: f"_m{i}" for i, key in
                       enumerate(k for k, uses in first.w.path_uses.items() if uses > 1)}
    return second.write()


def generate(destination: "Destination", rule: "Rule") -> RuleCode:
    """The rule's generated function (see the module's docstring). Written twice: the
    first writing finds the parts of the message read more than once, which the second
    remembers the first time it reads them."""
    first = _RuleWriter(destination, rule)
    first.write()
    second = _RuleWriter(destination, rule)
    shared = [key for key, uses in first.w.path_uses.items() if uses > 1]
    second.w.shared = {key: f"_m{i}" for i, key in enumerate(shared)}
    return second.write()


assert MISSING is SourceWriter().globals["M"]  # the one missing value, on both paths
