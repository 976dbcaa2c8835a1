"""A compiled destination: rules ready to run, and the per-event mapping path."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Sequence
from urllib.parse import quote

from ..errors import EventError, Location, RenderError, SettingsError
from ..normalize import CALL_TYPES, normalize_event, normalized_object
from ..outcomes import METHODS, SECRET_PLACEHOLDER, Outcome, Request, Skip
from ..route import skip_for
from ..serialization import parse_datetime, query_encode, to_json
from . import budget
from .budget import CURRENT as _BUDGET
from .casing import snake_case_keys
from .dispatch import Dispatch, normalize_name
from .expressions import Expression, Getter
from .missing import MISSING
from .settings import SettingsSchema
from .templates import Compiled

if TYPE_CHECKING:
    from .codegen import RuleCode, RuleFunction

__all__ = ["Destination", "BoundDestination", "Example", "BatchSpec", "BulkRequest", "example_key"]

Scope = dict[str, Any]

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Example:
    """A documented event with the settings and clock it is mapped with."""

    name: str
    event: Any
    settings: Mapping[str, Any]
    now: str | None
    source: str | None
    location: Location
    expect: Sequence[Mapping[str, Any]] | None = None
    """The outcomes the example must give (from the destination's docs or a public test
    suite), when the file says them."""

    @property
    def key(self) -> str:
        """What identifies the example among its destination's: its snapshot's file name."""
        return example_key(self.name)


_KEY_PART = re.compile(r"[^a-z0-9]+")
_MAX_KEY = 120


def example_key(name: str) -> str:
    """An example's name as a file name: lowercase ASCII letters and digits joined by '-'
    ("Track: analytics.track('Signed Up')" -> "track-analytics-track-signed-up"). A long
    one is cut and ends with a digest of the whole name, so that it stays unique; a name
    with no letter or digit is its digest alone."""
    key = _KEY_PART.sub("-", name.lower()).strip("-")
    if key and len(key) <= _MAX_KEY:
        return key
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return f"{key[:_MAX_KEY - 11].rstrip('-')}-{digest}" if key else f"example-{digest}"


@dataclass(frozen=True)
class SnakeCaseRule:
    """Rename the keys of the objects at `paths` to snake_case, except `keep`."""

    paths: tuple[tuple[str, ...], ...]
    keep: frozenset[str]

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event with the keys renamed; the event itself when no key changes."""
        keep = self.keep
        for path in self.paths:
            # Down the path without copying (most events have nothing to rename there); the
            # one and two key paths (traits, context.traits) without a loop.
            top = event.get(path[0])
            if not isinstance(top, dict):
                continue
            if len(path) == 1:
                renamed = snake_case_keys(top, keep)
                if renamed is not top:
                    event = {**event, path[0]: renamed}
            elif len(path) == 2:
                inner = top.get(path[1])
                if isinstance(inner, dict):
                    renamed = snake_case_keys(inner, keep)
                    if renamed is not inner:
                        event = {**event, path[0]: {**top, path[1]: renamed}}
            else:
                event = self._deep(event, path)
        return event

    def _deep(self, event: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        holders: list[dict[str, Any]] = []
        inner: Any = event
        for key in path:
            holders.append(inner)
            inner = inner.get(key)
            if not isinstance(inner, dict):
                return event
        renamed = snake_case_keys(inner, self.keep)
        if renamed is inner:
            return event
        for holder, key in zip(reversed(holders), reversed(path)):  # copies, innermost out
            renamed = {**holder, key: renamed}
        return renamed


@dataclass(frozen=True)
class RequestSpec:
    """The compiled request part of a rule (defaults merged in)."""

    method: Compiled
    url: Compiled
    headers: tuple[tuple[str, Compiled], ...]
    auth: tuple[tuple[str, Compiled], ...]
    encoding: str
    body: Compiled | None
    deliver_after: Compiled | None
    once_key: Compiled | None
    once_window: Compiled | None
    message_id: Compiled
    batch_into: str | None = None
    batch_item: Compiled | None = None
    batch_if: Compiled | None = None
    content_type: str | None = None
    """The Content-Type a body is sent with when the mapping sets none itself."""
    name: str = ""
    """What the requests it makes are called (Request.rule): the rule's name, or
    `rule/request` for one of a rule's several requests. Delivery finds the auth by it."""
    query: tuple[tuple[str, Compiled], ...] = ()
    for_each: Compiled | None = None
    item_name: str = "item"
    condition: Compiled | None = None
    """`if`: when false, this request is not made (tested per item with for_each)."""
    url_secrets: frozenset[str] = frozenset()
    """Secret settings inserted in the url: stored as placeholders, put in at send time."""
    auth_query: tuple[tuple[str, Compiled], ...] = ()
    """Query parameters made from settings (secret ones too), added at send time."""
    id_suffix: str | None = ""
    """Added to the dedupe id of the requests after a rule's first (and `:index` to each
    item of a for_each), so that each has its own; None when the request sets message_id."""

    def templates(self) -> list[Compiled]:
        """Every compiled value of the request except auth (which is rendered apart)."""
        found = [self.method, self.url, *(c for _, c in self.headers), *(c for _, c in self.query),
                 self.for_each, self.condition, self.body, self.deliver_after,
                 self.once_key, self.once_window, self.message_id, self.batch_item, self.batch_if]
        return [c for c in found if c is not None]


@dataclass(frozen=True)
class BatchSpec:
    """How several stored requests of one destination and source go as one bulk request:
    at most `max_items` items and `max_bytes` of them, a due item waiting at most `max_wait`
    seconds for others. The request is rendered at send time from settings and `items`
    (each item list by name); `failed_items` reads the indexes of failed items from the
    response."""

    max_items: int
    max_bytes: int
    max_wait: float
    method: str
    url: Compiled
    headers: tuple[tuple[str, Compiled], ...]
    auth: tuple[tuple[str, Compiled], ...]
    body: Compiled
    failed_items: Getter | None


@dataclass(frozen=True)
class BulkRequest:
    """A bulk request ready to send (its auth headers included: it is never stored)."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Condition:
    test: Compiled
    reason: Compiled


@dataclass(frozen=True)
class Rule:
    name: str
    types: frozenset[str] | None
    events: Mapping[str, str] | None  # as compared -> as written in the rule
    normalized: bool
    condition: Expression | None
    require: tuple[tuple[Expression, str, str], ...]
    extract: tuple[tuple[str, Expression], ...]
    reject_if: tuple[Condition, ...]
    skip_if: tuple[Condition, ...]
    skip: Compiled | None
    snake: SnakeCaseRule | None
    requests: tuple[RequestSpec, ...]
    when_if: Compiled | None = None
    values: tuple[tuple[str, Compiled], ...] = ()
    description: str | None = None
    when_if_source: str | None = None
    """`when.if` as written, for people (`engine describe`)."""

    def matches_call(self, event: dict[str, Any], call: str | None) -> str | bool:
        """The type and event-name matchers: False, or True; for an event-name matcher,
        the name as the rule spells it. (Conditions are tested by the bound destination;
        the per-event path finds the rules that match by a Dispatch table, which gives
        what this gives, for every rule at once.)"""
        matched: str | bool = True
        if self.types is not None and call not in self.types:
            return False
        if self.events is not None:
            name = event.get("event")
            if not isinstance(name, str):
                return False
            matched = self.events.get(normalize_name(name) if self.normalized else name, False)
            if not matched:
                return False
        return matched


@dataclass(frozen=True, slots=True)
class _BoundRule:
    """A rule with its JMESPath expressions bound to the settings, and its auth headers."""

    rule: Rule
    condition: Getter | None
    require: tuple[tuple[Getter, str], ...]
    extract: tuple[tuple[str, Getter], ...]
    auths: tuple[dict[str, str], ...]
    """The auth headers of each of the rule's requests."""
    queries: tuple[tuple[tuple[str, Any], ...], ...] = ()
    """The auth query parameters of each of the rule's requests."""
    headers: tuple[dict[str, str] | None, ...] = ()
    """The headers of each of the rule's requests, auth included, when they depend on
    settings alone (rendered here, once); None for a request whose headers read the event."""
    run: "RuleFunction | None" = None
    """The rule's generated function bound to these settings (None: interpreted)."""
    direct: "RuleFunction | None" = None
    """`run`, when nothing is left to check before calling it (no condition, no `when.if`,
    no snake_case of its own): the commonest rule, called at once."""


def _absent(value: Any) -> bool:
    """Missing for `require`: null or empty; false and 0 are values."""
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def _is_false(value: Any) -> bool:
    return value is None or value is False or value == "" or value == [] or value == {}


def _value(compiled: Compiled, scope: Scope) -> Any:
    return compiled.constant if compiled.renderer is None else compiled.renderer(scope)


def _text(compiled: Compiled, scope: Scope, fallback: str) -> str:
    try:
        value = _value(compiled, scope)
    except RenderError:
        return fallback
    return fallback if value is MISSING else str(value)


def _form_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return to_json(value)
    return str(value)


def _form_entry(form: dict[str, Any], key: str, value: Any) -> None:
    """One value of a form body that is not text (generated code): made text, or left
    out when it is null, as _form_value's callers do."""
    if value is None:
        del form[key]
    else:
        form[key] = _form_value(value)


@dataclass(eq=False)
class Destination:
    """One destination, compiled from its mapping file. Thread-safe and reusable."""

    name: str
    slug: str
    file: str
    docs: str | None
    input: str
    accepts: frozenset[str] | None
    settings_schema: SettingsSchema
    rules: tuple[Rule, ...]
    snake: SnakeCaseRule | None
    unmatched: Compiled | None
    examples: tuple[Example, ...] = ()
    batch: BatchSpec | None = None
    values: tuple[tuple[str, Compiled], ...] = ()
    """Named values computed for each event before rules match, in order."""
    description: str | None = None
    codes: "tuple[RuleCode | None, ...]" = ()
    """Each rule's generated function (codegen.py), in the rules' order; None for a rule
    the generator could not write (it is interpreted; `notes` says why)."""
    notes: tuple[str, ...] = ()
    """Warnings for `validate`: templates Jinja renders instead of generated code."""
    values_code: "RuleCode | None" = None
    """The file's values as one generated function (None: no values, or interpreted)."""
    generated: bool = field(default_factory=lambda: generated_by_default())
    """Run the generated functions; False runs the interpreted path (the reference)."""
    _last: tuple[Any, "BoundDestination"] | None = field(default=None, init=False, repr=False)

    def bind(self, settings: Mapping[str, Any] | None, *,
             generated: bool | None = None) -> "BoundDestination":
        """Check `settings` against the schema (raises SettingsError) and return a mapper
        with everything that depends only on settings already rendered. `generated`
        (default: the destination's) chooses the generated functions or the interpreted
        path."""
        use = self.generated if generated is None else generated
        last = self._last
        if last is not None and last[0] == (settings or {}, use):
            return last[1]
        checked = self.settings_schema.validate(settings)
        bound = BoundDestination(self, checked, generated=use)
        self._last = ((dict(settings or {}), use), bound)
        return bound

    def map(self, event: Any, *, settings: Mapping[str, Any] | None = None,
            now: datetime | str | None = None) -> list[Outcome]:
        """Map one event: a list of Request and Skip outcomes.

        Raises EventError for an event that is not a valid message (or that a rule rejects),
        and SettingsError for settings that fail the destination's schema."""
        return self.bind(settings).map(event, now=now)

    def secret_values(self, settings: Mapping[str, Any] | None) -> list[str]:
        """The values of this destination's secret settings, for redaction."""
        names = self.settings_schema.secret_names
        return [str(v) for k, v in (settings or {}).items() if k in names and v not in (None, "")]


def generated_by_default() -> bool:
    """Whether destinations run their generated functions: yes, unless the environment
    says ENGINE_GENERATED=0 (the interpreted path, for comparison)."""
    return os.environ.get("ENGINE_GENERATED", "1").strip().lower() not in ("0", "false", "no", "off")


class BoundDestination:
    """A destination with checked settings: `map(event, now=...)` is the per-event path.

    Secret settings are seen by `auth` templates alone, which delivery renders at send time:
    every other template sees the settings without them (`settings | tojson`, a loop over
    `settings`, whatever it does), so no request can carry a secret into the outbox."""

    def __init__(self, destination: Destination, settings: dict[str, Any], *,
                 generated: bool = False) -> None:
        budget.fresh()  # what is rendered from settings alone, here, has its own budget
        self.destination = destination
        self.settings = settings
        self.secrets = destination.secret_values(settings)
        secret = destination.settings_schema.secret_names
        self._public = {k: v for k, v in settings.items() if k not in secret}
        base: Scope = {"settings": self._public}
        with_secrets: Scope = {"settings": settings}
        self._resolved: dict[int, Compiled] = {}
        public = self._public
        self._rules: list[_BoundRule] = []
        # What delivery asks for by a stored request's name, found once, not per send.
        self._by_name: dict[str, tuple[RequestSpec, dict[str, str], tuple[tuple[str, Any], ...]]] = {}
        # The url's view of the settings: a secret one is a placeholder, put in at send time.
        self._url_settings = {**public, **{name: f"{{secret:{name}}}" for name in secret}}
        url_base: Scope = {"settings": self._url_settings}
        # Each rule's code, found by the rule itself (not its position: a destination made
        # by dataclasses.replace may hold other rules than those the code was written for).
        codes = {id(c.made_from): c for c in destination.codes if c is not None} \
            if generated else {}
        for rule in destination.rules:
            auths, queries = [], []
            for spec in rule.requests:
                headers = {}
                for name, compiled in spec.auth:
                    value = _settings_value(destination, f"auth header {name}", compiled,
                                            with_secrets)
                    if value is not MISSING:
                        headers[name] = str(value)
                auths.append(headers)
                queries.append(tuple(
                    (name, _settings_value(destination, f"auth query parameter {name}",
                                           compiled, with_secrets))
                    for name, compiled in spec.auth_query))
            for spec, auth, query in zip(rule.requests, auths, queries, strict=True):
                self._by_name[spec.name] = (spec, auth, query)
            for spec in rule.requests:
                if spec.url_secrets and spec.url.renderer is not None \
                        and spec.url.names_used <= {"settings"}:
                    try:
                        self._resolved[id(spec.url)] = Compiled(None, spec.url.renderer(url_base))
                    except RenderError:
                        pass
            for compiled in (c for spec in rule.requests for c in spec.templates()
                             if not (c is spec.url and spec.url_secrets)):
                if compiled.renderer is not None and compiled.names_used <= {"settings"}:
                    # Depends on settings alone: render it once, here. One that fails stays a
                    # template, and fails each event it maps (a rejection, with its reason).
                    try:
                        self._resolved[id(compiled)] = Compiled(None, compiled.renderer(base))
                    except RenderError:
                        continue
            bound = _BoundRule(
                rule,
                rule.condition.with_settings(public) if rule.condition is not None else None,
                tuple((e.with_settings(public), reason) for e, _, reason in rule.require),
                tuple((name, e.with_settings(public)) for name, e in rule.extract),
                tuple(auths), tuple(queries),
                tuple(self._static_headers(spec, auth)
                      for spec, auth in zip(rule.requests, auths, strict=True)))
            code = codes.get(id(rule))
            if code is not None and code.made_from is rule:
                run = code.factory(public, self._url_settings, bound, self._fill_url)
                plain = bound.condition is None and rule.when_if is None and rule.snake is None
                bound = replace(bound, run=run, direct=run if plain else None)
            self._rules.append(bound)
        self._dispatch = Dispatch(destination.rules, self._rules)
        # Per call type, the generated function that takes every event of that type when
        # the first rule tried for it names no event and has no condition: it decides,
        # without the dispatch table.
        self._sole: dict[str | None, RuleFunction] = {}
        for call in CALL_TYPES:
            first = self._dispatch.first_whatever_the_name(call)
            if first is not None and first.direct is not None:
                self._sole[call] = first.direct
        # The file's values, for `when.if` and the unmatched reason: generated, or the
        # interpreted path's.
        self._make_scope = self._scope
        if generated and destination.values_code is not None \
                and destination.values_code.made_from is destination.values:
            self._make_scope = destination.values_code.factory(public, self._url_settings, None,
                                                               self._fill_url)
        self._segment = destination.input == "segment"
        self._accepts = destination.accepts
        self._bulk: tuple[str, dict[str, str]] | None = None
        batch = destination.batch
        if batch is not None:
            headers = {}
            for name, compiled in batch.headers:
                value = _settings_value(destination, f"batch header {name}", compiled, base)
                if value is not MISSING:
                    headers[name] = str(value)
            for name, compiled in batch.auth:
                value = _settings_value(destination, f"batch auth header {name}", compiled,
                                        with_secrets)
                if value is not MISSING:
                    headers[name] = str(value)
            url = _settings_value(destination, "batch url", batch.url, base)
            self._bulk = ("" if url is MISSING else str(url), headers)

    def _static_headers(self, spec: RequestSpec, auth: dict[str, str]) -> dict[str, str] | None:
        """A request's headers and auth headers, when every one is a constant or was
        rendered from settings here (else None: they are rendered per event)."""
        headers: dict[str, str] = {}
        for name, compiled in spec.headers:
            compiled = self._c(compiled)
            if compiled.renderer is not None:
                return None
            if compiled.constant is not MISSING:
                headers[name] = str(compiled.constant)
        headers.update(auth)
        return headers

    def bulk_request(self, items: Sequence[tuple[str, Any]]) -> BulkRequest:
        """The destination's bulk request for `items` (each a list name and its item, in
        order), rendered from the current settings; raises EventError if it cannot be."""
        batch, bulk = self.destination.batch, self._bulk
        if batch is None or bulk is None:
            raise EventError(f"{self.destination.slug} declares no batch")
        budget.fresh()
        lists: dict[str, list[Any]] = {}
        for into, item in items:
            lists.setdefault(into, []).append(item)
        try:
            body = _value(batch.body, {"settings": self._public, "items": lists})
        except RenderError as exc:
            raise EventError(f"{self.destination.slug}: batch: {exc}") from None
        if not bulk[0]:
            raise EventError(f"{self.destination.slug}: batch: the url template rendered nothing")
        headers = dict(bulk[1])
        if body is not MISSING and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = JSON_TYPE
        return BulkRequest(batch.method, bulk[0], headers, None if body is MISSING else body)

    def send_url(self, rule_name: str, stored_url: str) -> str | None:
        """The url a stored request is sent to: its secret placeholders filled in and its
        auth query parameters added, from the current settings; None when the destination
        has no such rule (any more)."""
        found = self._by_name.get(rule_name)
        return None if found is None else self._fill_url(found[0], stored_url, found[2])

    def _fill_url(self, spec: RequestSpec, url: str, query: tuple[tuple[str, Any], ...]) -> str:
        if spec.url_secrets:
            settings = self.settings
            url = SECRET_PLACEHOLDER.sub(
                lambda m: quote(str(settings.get(m.group(1), "")), safe="")
                if m.group(1) in spec.url_secrets else m.group(0), url)
        return _with_query(url, list(query)) if query else url

    def auth_headers(self, rule_name: str) -> dict[str, str] | None:
        """The secret headers of a rule, rendered from the current settings; None when the
        destination has no such rule (any more)."""
        found = self._by_name.get(rule_name)
        return None if found is None else dict(found[1])

    def _c(self, compiled: Compiled) -> Compiled:
        return self._resolved.get(id(compiled), compiled)

    def map(self, event: Any, *, now: datetime | str | None = None) -> list[Outcome]:
        """Map one event; see Destination.map. Normalizes and routes the event first, so
        that the library is safe to use alone."""
        if self._segment:
            message = normalized_object(event) if type(event) is dict else normalize_event(event)
            if message.get("integrations") or self._accepts is not None \
                    and message["type"] not in self._accepts:  # else nothing can skip it
                skip = skip_for(message, self.destination)
                if skip is not None:
                    return [skip]
            return self.map_message(message, now=now)
        if not isinstance(event, dict):
            raise EventError("the input must be a JSON object")
        return self.map_message(event, now=now)

    def map_message(self, event: dict[str, Any], *, now: datetime | str | None = None) -> list[Outcome]:
        """Apply the rules to a message that is already normalized and routed here (the
        intake does both once for all of a source's destinations), or to a raw input
        object. Raises EventError when a rule rejects it."""
        dest = self.destination
        _BUDGET.budget = None  # budget.fresh(): the steps and CPU time this event may take
        when = now if type(now) is datetime and now.tzinfo is not None else _clock(now)
        call = event["type"] if self._segment else None
        if dest.snake is not None:
            event = dest.snake.apply(event)
        sole = self._sole.get(call)
        if sole is not None:
            return sole(event, when, True, None)
        scope: Scope | None = None  # made once, when a rule's `if` or the reason needs it
        for bound, matched in self._dispatch.candidates(call, event.get("event")):
            direct = bound.direct
            if direct is not None:
                return direct(event, when, matched, scope)
            rule = bound.rule
            try:
                if bound.condition is not None and _is_false(bound.condition(event)):
                    continue
                if rule.when_if is not None:
                    if scope is None:
                        scope = self._make_scope(event, when)
                    if not _holds(self._c(rule.when_if), scope):
                        continue
            except RenderError as exc:
                raise EventError(f"{dest.slug}: rule {rule.name}: {exc}") from None
            if bound.run is not None:
                return bound.run(event, when, matched, scope if rule.snake is None else None)
            return self._apply(bound, event, when, matched, scope)
        default = f"no rule of {dest.name} matches this {call or 'input'}" + (
            f" event ('{event.get('event')}')" if call == "track" else " call" if call else "")
        if dest.unmatched is None:
            return [Skip(dest.slug, default)]
        try:
            reason = _text(dest.unmatched, scope or self._make_scope(event, when), default)
        except RenderError:
            reason = default
        return [Skip(dest.slug, reason)]

    def _scope(self, event: dict[str, Any], now: datetime) -> Scope:
        """What templates see: the message's fields, `message`, `settings` (without the
        secret ones), `now`, and the file's `values`, computed in order."""
        scope = dict(event)
        scope["message"] = event
        scope["settings"] = self._public
        scope["now"] = now
        for name, compiled in self.destination.values:
            scope[name] = _value(self._c(compiled), scope)
        return scope

    def _apply(self, bound: _BoundRule, event: dict[str, Any], now: datetime,
               matched: str | bool, scope: Scope | None) -> list[Outcome]:
        dest, rule = self.destination, bound.rule
        if rule.snake is not None:
            event = rule.snake.apply(event)
            scope = None  # the rule reads the event renamed its way
        try:
            for getter, reason in bound.require:
                if _absent(getter(event)):
                    return [Skip(dest.slug, reason, rule.name, rule.name)]
            if scope is None:
                scope = self._scope(event, now)
            for name, getter in bound.extract:
                scope[name] = getter(event)
            if isinstance(matched, str):
                scope["matched_event"] = matched
            for name, compiled in rule.values:
                scope[name] = _value(self._c(compiled), scope)
            for condition in rule.reject_if:
                if _holds(condition.test, scope):
                    raise EventError(_text(condition.reason, scope, f"rejected by rule {rule.name}"))
            for condition in rule.skip_if:
                if _holds(condition.test, scope):
                    return [Skip(dest.slug, _text(condition.reason, scope, "skipped"), rule.name,
                                 rule.name)]
            if rule.skip is not None or not rule.requests:
                reason = _text(rule.skip, scope, f"skipped by rule {rule.name}") if rule.skip \
                    else f"skipped by rule {rule.name}"
                return [Skip(dest.slug, reason, rule.name, rule.name)]
            out: list[Outcome] = []
            for i, spec in enumerate(rule.requests):
                auth = bound.auths[i]
                if spec.for_each is None:
                    if spec.condition is None or _holds(self._c(spec.condition), scope):
                        out.append(self._request(rule, spec, auth, scope, now,
                                                 spec.id_suffix or "", bound.queries[i],
                                                 bound.headers[i]))
                    continue
                items = _value(self._c(spec.for_each), scope)
                if items is MISSING:
                    continue
                item_scope = dict(scope)
                spend = budget.current().spend
                for index, item in enumerate(items if isinstance(items, list) else [items]):
                    spend()
                    if item is None:
                        continue
                    item_scope[spec.item_name] = item
                    item_scope["index"] = index
                    if spec.condition is not None and not _holds(self._c(spec.condition),
                                                                 item_scope):
                        continue
                    suffix = "" if spec.id_suffix is None else f"{spec.id_suffix}:{index}"
                    out.append(self._request(rule, spec, auth, item_scope, now, suffix,
                                             bound.queries[i], bound.headers[i]))
            if not out:
                return [Skip(dest.slug, f"rule {rule.name} made no request (its conditions "
                                        "or for_each gave none)", rule.name, rule.name)]
            return out
        except RenderError as exc:
            raise EventError(f"{dest.slug}: rule {rule.name}: {exc}") from None
        except budget.BudgetExceeded as exc:  # for_each, between two of its requests
            raise EventError(f"{dest.slug}: rule {rule.name}: {exc}") from None

    def _request(self, rule: Rule, spec: RequestSpec, auth: dict[str, str], scope: Scope,
                 now: datetime, id_suffix: str, secret_query: tuple[tuple[str, Any], ...],
                 static_headers: dict[str, str] | None) -> Request:
        dest = self.destination
        # A constant method was checked at load; only a templated one is checked here.
        method = spec.method.constant if spec.method.renderer is None \
            else _value(self._c(spec.method), scope)
        if spec.method.renderer is not None and method not in METHODS:
            raise EventError(f"{dest.slug}: rule {rule.name}: the method template rendered "
                             f"{'nothing' if method is MISSING else repr(method)}, not one of "
                             f"{', '.join(METHODS)}")
        if spec.url_secrets:
            shown_settings, scope["settings"] = scope["settings"], self._url_settings
            try:
                url = _value(self._c(spec.url), scope)
            finally:
                scope["settings"] = shown_settings
        else:
            url = _value(self._c(spec.url), scope)
        if url is MISSING or not str(url):
            raise EventError(f"{dest.slug}: rule {rule.name}: the url template rendered nothing")
        url = str(url)
        if spec.query:
            url = _with_query(url, [(k, _value(self._c(c), scope)) for k, c in spec.query])
        stored_url = None
        if spec.url_secrets or secret_query:
            stored_url, url = url, self._fill_url(spec, url, secret_query)
        if static_headers is not None:
            headers = dict(static_headers)
        else:
            headers = {}
            for name, compiled in spec.headers:
                value = _value(self._c(compiled), scope)
                if value is not MISSING:
                    headers[name] = str(value)
            headers.update(auth)
        body = None
        if spec.body is not None:
            body = _value(self._c(spec.body), scope)
            if body is MISSING:
                body = None
            else:
                if spec.content_type is not None:
                    headers["Content-Type"] = spec.content_type
                if spec.batch_item is not None:
                    scope["body"] = body  # the item may reuse what the body computed
            if body is not None and spec.encoding == "form":
                if not isinstance(body, dict):
                    raise EventError(f"{dest.slug}: rule {rule.name}: a form body must be a mapping")
                body = {k if type(k) is str else str(k): v if type(v) is str else _form_value(v)
                        for k, v in body.items() if v is not None}
        deliver_after = None
        if spec.deliver_after is not None:
            raw = _value(self._c(spec.deliver_after), scope)
            if raw is not MISSING:
                due = parse_datetime(raw)
                if due is None:
                    raise EventError(f"{dest.slug}: rule {rule.name}: deliver_after rendered "
                                     f"{raw!r}, not a date")
                deliver_after = due if due > now else None
        once_key = once_window = None
        if spec.once_key is not None and spec.once_window is not None:
            key = _value(self._c(spec.once_key), scope)
            window = _value(self._c(spec.once_window), scope)
            if key is not MISSING and window is not MISSING:
                try:
                    once_window = float(window)
                except (TypeError, ValueError):
                    raise EventError(f"{dest.slug}: rule {rule.name}: once.window_seconds "
                                     f"rendered {window!r}, not a number") from None
                once_key = str(key)
        message_id = _value(self._c(spec.message_id), scope)
        if message_id is not MISSING and id_suffix:
            message_id = f"{message_id}{id_suffix}"
        batch_item = None
        if spec.batch_item is not None and (spec.batch_if is None
                                            or _holds(self._c(spec.batch_if), scope)):
            batch_item = _value(self._c(spec.batch_item), scope)
            if batch_item is MISSING:
                batch_item = None
        return Request(
            destination=dest.slug, rule=spec.name or rule.name, method=method, url=url,
            headers=headers, encoding=spec.encoding, body=body, deliver_after=deliver_after,
            once_key=once_key, once_window=once_window,
            message_id=None if message_id is MISSING else str(message_id),
            secret_headers=frozenset(auth),
            batch_into=spec.batch_into if batch_item is not None else None,
            batch_item=batch_item,
            stored_url=stored_url,
            secret_query=tuple(name for name, _ in spec.auth_query),
        )


def _query_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return to_json(value)
    return str(value)


def _with_query(url: str, params: list[tuple[str, Any]]) -> str:
    """The url with the query parameters added, encoded; missing ones left out, a list
    repeating its key (`ids=1&ids=2`)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params:
        if value is MISSING or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if item is not MISSING and item is not None:
                pairs.append((key, _query_text(item)))
    if not pairs:
        return url
    base, _, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        joiner = ""
    return base + joiner + query_encode(pairs) + ("#" + fragment if fragment else "")


def _settings_value(destination: Destination, what: str, compiled: Compiled, scope: Scope) -> Any:
    """A value made of settings alone, or SettingsError saying which setting-made part fails
    (so that a configuration with such settings is refused where it is loaded)."""
    try:
        return _value(compiled, scope)
    except RenderError as exc:
        raise SettingsError(destination.settings_schema.destination,
                            [f"{what} cannot be made from these settings: {exc}"]) from None


def _holds(test: Compiled, scope: Scope) -> bool:
    value = _value(test, scope)
    return value is not MISSING and bool(value)


def _clock(now: datetime | str | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    parsed = parse_datetime(now)
    if parsed is None:
        raise ValueError(f"now must be an ISO 8601 time, got {now!r}")
    return parsed


