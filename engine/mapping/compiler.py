"""Turn a checked mapping document into a Destination, finding every problem in one pass."""

from __future__ import annotations

from typing import Any

import regex

from ..errors import Location, Problem
from ..normalize import MESSAGE_FIELDS
from ..outcomes import METHODS
from ..serialization import parse_datetime
from .codegen import RuleCode, generate, generate_values
from .destination import (
    FORM_TYPE,
    JSON_TYPE,
    BatchSpec,
    Condition,
    Destination,
    Example,
    RequestSpec,
    Rule,
    SnakeCaseRule,
    example_key,
)
from .dispatch import normalize_name
from .expressions import Expression, ExpressionProblem, compile_jmespath
from .functions import compile_regex
from .growth import Bound
from .schema import Renumbering, check_document, original_path, usable_part
from .settings import SettingsSchema
from .templates import (
    Compiled,
    Known,
    Names,
    TemplateProblem,
    compile_expression,
    compile_tree,
    is_template,
)
from .yaml_reader import Path_, SourceDocument

__all__ = ["compile_destination", "SourceView"]

_RESERVED = {"message", "settings", "now", "matched_event", "body", "items"}


class SourceView:
    """Where each path of a (possibly merged) document was written: the first document in
    `docs` that has the path wins, so a file's own values shadow its base's."""

    def __init__(self, docs: list[SourceDocument], renumbered: Renumbering | None = None) -> None:
        self.docs = docs
        self.renumbered = renumbered or {}
        """Lists that lost items before compiling (schema.usable_part): positions are
        translated back to the document as written."""

    def _doc_for(self, path: Path_) -> tuple[SourceDocument, Path_]:
        probe = path
        while True:
            for doc in self.docs:
                if probe in doc.values:
                    return doc, probe
            if not probe:
                return self.docs[0], ()
            probe = probe[:-1]

    def locate(self, path: Path_, *, key: bool = False) -> Location:
        path = original_path(path, self.renumbered)
        doc, found = self._doc_for(path)
        if key and found in doc.keys:
            return doc.keys[found]
        return doc.locate(found)

    def locate_inside(self, path: Path_, line: int = 1, offset: int = 0) -> Location:
        """A position inside a scalar: `line` (1-based) and `offset` within the text."""
        path = original_path(path, self.renumbered)
        doc, found = self._doc_for(path)
        base = doc.locate(found)
        style = doc.styles.get(found)
        if found != path:
            return base
        if style in ("|", ">"):
            # Block scalars start on the line after their indicator.
            number = base.line + line
            lines = doc.text.splitlines()
            text = lines[number - 1] if 0 < number <= len(lines) else ""
            indent = len(text) - len(text.lstrip(" "))
            return Location(base.file, number, indent + 1 + offset)
        if line > 1:
            return Location(base.file, base.line + line - 1, 1)
        quote = 1 if style in ('"', "'") else 0
        return Location(base.file, base.line, base.column + quote + offset)


class _Compiler:
    def __init__(self, data: dict[str, Any], view: SourceView,
                 original: dict[str, Any] | None = None) -> None:
        self.data = data
        self.view = view
        self.partial = original is not None
        """Parts of the document were left out (refused by the schema, and reported): the
        checks of the whole file do not report what those parts would have given."""
        whole = original or data
        settings = whole.get("settings")
        self.declared = frozenset(settings) if isinstance(settings, dict) else frozenset()
        self.has_rules = bool(whole.get("rules"))
        self.has_batch = "batch" in whole
        self.problems: list[Problem] = []
        self.settings_used: list[tuple[Path_, str]] = []
        # The names templates can read; None for raw input (any field of the object).
        self.known: Known | None = None if data.get("input", "segment") == "raw" else \
            Known(MESSAGE_FIELDS | {"message", "settings", "now"})
        self.file_known = self.known  # with the file's values, once they are compiled
        # The bounds (growth.py) of the names that are not the event's own fields: the
        # file's values, then a rule's extracts and values, an item of for_each, the body.
        self.file_names: dict[str, Bound] = {}
        self.secret_names = frozenset(name for name, rules in (data.get("settings") or {}).items()
                                      if isinstance(rules, dict) and rules.get("secret"))
        self.secret_ok: set[tuple[Path_, str]] = set()  # secrets inserted in a url

    def problem(self, path: Path_, message: str, *, key: bool = False) -> None:
        self.problems.append(Problem(self.view.locate(path, key=key), message))

    def template_problem(self, path: Path_, problem: TemplateProblem) -> None:
        self.problems.append(Problem(self.view.locate_inside(path, problem.line), problem.message))

    # -- pieces ---------------------------------------------------------------------------

    def where(self, path: Path_) -> str:
        """file:line:col of a path, for the errors a template or expression raises."""
        return str(self.view.locate(path))

    def tree(self, value: Any, path: Path_, known: Known | None = None,
             names: Names | None = None) -> Compiled:
        compiled = compile_tree(value, path, self.template_problem, locate=self.where, known=known,
                                names=names)
        self.settings_used += [(path, name) for name in compiled.settings_used]
        return compiled

    def expression(self, source: str, path: Path_, known: Known | None = None,
                   names: Names | None = None) -> Compiled:
        compiled = compile_expression(source, self.where(path), names)
        if isinstance(compiled, Compiled):
            self.settings_used += [(path, name) for name in compiled.settings_used]
            if known is not None:
                for name in sorted(compiled.names_used - known.names):
                    self.template_problem(path, TemplateProblem(known.explain(name)))
            return compiled
        for problem in compiled if isinstance(compiled, list) else [compiled]:
            self.template_problem(path, problem)
        return Compiled(None, False)

    def jmespath(self, source: str, path: Path_) -> Expression:
        compiled = compile_jmespath(source, self.where(path))
        if isinstance(compiled, ExpressionProblem):
            self.problems.append(Problem(self.view.locate_inside(path, 1, compiled.offset),
                                         compiled.message))
            return Expression(source, lambda event: None)
        self.settings_used += [(path, name) for name in compiled.settings_used]
        return compiled

    def values(self, spec: dict[str, Any] | None, path: Path_, known: Known | None,
               bounds: dict[str, Bound]
               ) -> tuple[tuple[tuple[str, Compiled], ...], Known | None, dict[str, Bound]]:
        """Named values, computed in order: each sees the ones before it. Returns them with
        what the templates after them can read, and the bounds of those names."""
        out = []
        bounds = dict(bounds)
        names = list(spec or {})
        for i, name in enumerate(names):
            where = path + (name,)
            if name in _RESERVED:
                self.problem(where, f"'{name}' is a reserved name in templates; pick another", key=True)
            later = frozenset(names[i:])
            here = None if known is None else Known(known.names | frozenset(names[:i]), later)
            compiled = self.tree(spec[name] if spec else None, where, here, bounds)
            if known is None:
                for used in sorted(compiled.names_used & later):
                    self.problem(where, Known(frozenset(), later).explain(used))
            out.append((name, compiled))
            bounds[name] = compiled.bound
        after = None if known is None else known.with_names(*names)
        return tuple(out), after, bounds

    def snake(self, spec: Any, path: Path_) -> SnakeCaseRule | None:
        if not spec:
            return None
        if spec is True:
            return SnakeCaseRule((("traits",),), frozenset())
        paths = _as_list(spec.get("paths"))
        for i, p in enumerate(paths):
            if not all(part.strip() for part in p.split(".")):
                self.problem(path + ("paths", i), f"'{p}' is not a dotted path like traits or context.traits")
        return SnakeCaseRule(tuple(tuple(p.split(".")) for p in paths),
                             frozenset(_as_list(spec.get("except"))))

    def conditions(self, items: list[dict[str, Any]] | None, path: Path_,
                   known: Known | None, names: Names) -> tuple[Condition, ...]:
        out = []
        for i, item in enumerate(items or []):
            out.append(Condition(self.expression(item["if"], path + (i, "if"), known, names),
                                 self.tree(item["reason"], path + (i, "reason"), known, names)))
        return tuple(out)

    def request(self, defaults: dict[str, Any], own: dict[str, Any], own_path: Path_,
                known: Known | None, names: dict[str, Bound], request_name: str,
                id_suffix: str = "") -> RequestSpec:
        """One request of a rule: the file's defaults merged with `own` (the rule's `request`,
        or one entry of its `requests`, written at `own_path`)."""
        def origin(key: str) -> Path_:
            return own_path + (key,) if key in own else ("request", key)

        merged = {**defaults, **own}
        merged["headers"] = merge_named(defaults.get("headers"), own.get("headers"), fold_case=True)
        merged["auth"] = merge_named(defaults.get("auth"), own.get("auth"), fold_case=True)
        merged["auth_query"] = merge_named(defaults.get("auth_query"), own.get("auth_query"))
        if "url" not in merged:
            self.problem(own_path[:-1] if own_path[-1] == "request" else own_path,
                         "no url: set request.url here or in the file's request defaults")
        headers = tuple((name, self.tree(value if isinstance(value, str) else str(value),
                                         origin_in(own_path, own, "headers", name), known, names))
                        for name, value in merged["headers"].items())
        method = merged.get("method", "POST")
        if not is_template(method) and method not in METHODS:
            self.problem(origin("method"), f"method '{method}' is not one of {', '.join(METHODS)}")
        auth = []
        for name, value in merged["auth"].items():
            path = origin_in(own_path, own, "auth", name)
            compiled = self.tree(value, path)
            stray = compiled.names_used - {"settings"}
            if stray:
                self.problem(path, "auth may use settings only (it is rendered again at send "
                                   f"time, without the event); found: {', '.join(sorted(stray))}")
            auth.append((name, compiled))
        auth_query = []
        for name, value in merged["auth_query"].items():
            path = origin_in(own_path, own, "auth_query", name)
            compiled = self.tree(value if isinstance(value, str) else str(value), path)
            stray = compiled.names_used - {"settings"}
            if stray:
                self.problem(path, "auth_query may use settings only (it is rendered again at "
                                   f"send time, without the event); found: {', '.join(sorted(stray))}")
            auth_query.append((name, compiled))
        url = self.tree(merged.get("url", ""), origin("url"), known, names)
        # Secret settings may be inserted into the url as they are: the url is stored with a
        # placeholder for each, and delivery puts the current value in at send time.
        url_secrets = frozenset(url.settings_used & self.secret_names)
        for name in sorted(url_secrets):
            self.secret_ok.add((origin("url"), name))  # reported here, if at all
            if name not in url.settings_inserted:
                self.problem(origin("url"), f"secret setting '{name}' may be used in the url only "
                                            f"as it is, {{{{ settings.{name} }}}} (it is inserted, "
                                            "percent-encoded, at send time)")
        once = merged.get("once")
        batch_item = merged.get("batch_item")
        if batch_item is not None and not self.has_batch:
            self.problem(origin("batch_item"), "batch_item needs a file-level 'batch' that says "
                                               "how the bulk request is made", key=True)
        encoding = merged.get("encoding", "json")
        item_name = own.get("as", "item")
        for_each = None
        if "for_each" in own:
            for_each = self.tree(own["for_each"], own_path + ("for_each",), known, names)
            if known is not None:
                known = known.with_names(item_name, "index")
            # Each item makes a request of its own: what it holds is a part of the list.
            names = {**names, item_name: for_each.bound}
        elif "as" in own:
            self.problem(own_path + ("as",), "'as' names the item of for_each, and there is no "
                                             "for_each here", key=True)
        condition = self.expression(own["if"], own_path + ("if",), known, names) \
            if "if" in own else None
        query = tuple((key, self.tree(value, origin_in(own_path, own, "query", key), known, names))
                      for key, value in merge_named(defaults.get("query"), own.get("query")).items())
        named = {name.lower() for name in (*merged["headers"], *merged["auth"])}
        body = self.body(defaults, own, own_path, known, names)
        with_body = {**names, "body": body.bound if body is not None else Bound()}
        return RequestSpec(
            method=self.tree(method, origin("method"), known, names),
            url=url,
            url_secrets=url_secrets,
            auth_query=tuple(auth_query),
            headers=headers,
            auth=tuple(auth),
            encoding=encoding,
            body=body,
            deliver_after=self.tree(merged["deliver_after"], origin("deliver_after"), known, names)
            if "deliver_after" in merged else None,
            once_key=self.tree(once["key"], origin("once") + ("key",), known, names)
            if once else None,
            once_window=self.tree(once["window_seconds"], origin("once") + ("window_seconds",),
                                  known, names) if once else None,
            message_id=self.tree(merged.get("message_id", "{{ messageId }}"), origin("message_id"),
                                 known, names),
            batch_into=batch_item["into"] if batch_item else None,
            batch_item=self.tree(batch_item["value"], origin("batch_item") + ("value",),
                                 known.with_names("body") if known else None, with_body)
            if batch_item else None,
            batch_if=self.expression(batch_item["if"], origin("batch_item") + ("if",),
                                     known.with_names("body") if known else None, with_body)
            if batch_item and "if" in batch_item else None,
            content_type=None if "content-type" in named
            else FORM_TYPE if encoding == "form" else JSON_TYPE,
            name=request_name,
            query=query,
            condition=condition,
            for_each=for_each,
            item_name=item_name,
            # A request that says its own message_id keeps it as it is, item by item.
            id_suffix=None if "message_id" in own else id_suffix,
        )

    def batch(self, rules: list[Rule]) -> BatchSpec | None:
        """The bulk request, rendered at send time from settings and the jobs' items."""
        spec = self.data.get("batch")
        if spec is None:
            return None
        if not self.partial and not any(q.batch_item is not None for r in rules for q in r.requests):
            self.problem(("batch",), "'batch' is declared but no rule's request has a batch_item",
                         key=True)
        request = spec["request"]
        path: Path_ = ("batch", "request")
        lists = {q.batch_into for r in rules for q in r.requests if q.batch_into}
        if "failed_items" in spec and len(lists) > 1:
            self.problem(("batch", "failed_items"), "failed_items counts the items of one list, "
                         f"and the rules' batch_items go into several ({', '.join(sorted(lists))})")

        def part(value: Any, where: Path_, allowed: set[str]) -> Compiled:
            compiled = self.tree(value if isinstance(value, (str, dict, list)) else str(value), where)
            stray = compiled.names_used - allowed
            if stray:
                self.problem(where, f"the bulk request is rendered at send time from "
                                    f"{' and '.join(sorted(allowed))} only; found: {', '.join(sorted(stray))}")
            return compiled
        return BatchSpec(
            max_items=spec["max_items"],
            max_bytes=spec.get("max_bytes", 1_000_000),
            max_wait=float(spec.get("max_wait", 0)),
            method=request.get("method", "POST"),
            url=part(request["url"], path + ("url",), {"settings"}),
            headers=tuple((name, part(value, path + ("headers", name), {"settings"}))
                          for name, value in merge_named(None, request.get("headers")).items()),
            auth=tuple((name, part(value, path + ("auth", name), {"settings"}))
                       for name, value in (request.get("auth") or {}).items()),
            body=part(request["body"], path + ("body",), {"settings", "items"}),
            failed_items=self.jmespath(spec["failed_items"], ("batch", "failed_items")).search
            if "failed_items" in spec else None,
        )

    def body(self, defaults: dict[str, Any], own: dict[str, Any], own_path: Path_,
             known: Known | None, names: Names) -> Compiled | None:
        if "body" not in own:
            return self.tree(defaults["body"], ("request", "body"), known, names) \
                if "body" in defaults else None
        base, mine = defaults.get("body"), own["body"]
        mine_path = own_path + ("body",)
        if isinstance(base, dict) and isinstance(mine, dict):
            # Merged once, here: the rule's keys win, a key the rule sets to null is removed,
            # and each key is compiled (and its problems located) where it was written.
            # `body_merge: deep` merges nested mappings the same way, key by key.
            merged = _merge_bodies(base, mine, deep=own.get("body_merge") == "deep")
            key_paths = {k: mine_path + (k,) for k in mine}
            compiled = compile_tree(merged, ("request", "body"), self.template_problem, key_paths,
                                    locate=self.where, known=known, names=names)
            self.settings_used += [(mine_path, name) for name in compiled.settings_used]
            return compiled
        return self.tree(mine, mine_path, known, names)


    def rule(self, spec: dict[str, Any], index: int, defaults: dict[str, Any],
             snake: SnakeCaseRule | None) -> Rule:
        path: Path_ = ("rules", index)
        when = spec.get("when", {})
        types = _as_list(when.get("type")) if "type" in when else None
        normalized = when.get("event_match", "exact") == "normalized"
        events = None
        if "event" in when:
            names = _as_list(when["event"])
            events = {(normalize_name(n) if normalized else n): n for n in names}
        accepts = self.data.get("accepts")
        if types and accepts:
            for t in types:
                if t not in accepts:
                    self.problem(path + ("when", "type"),
                                 f"rule '{spec['name']}' matches {t} calls, which 'accepts' leaves out")
        extract = []
        for name, source in (spec.get("extract") or {}).items():
            if name in _RESERVED:
                self.problem(path + ("extract", name),
                             f"'{name}' is a reserved name in templates; pick another", key=True)
            extract.append((name, self.jmespath(source, path + ("extract", name))))
        require = []
        for i, item in enumerate(spec.get("require") or []):
            require.append((self.jmespath(item["field"], path + ("require", i, "field")),
                            item["field"], item.get("reason") or f"'{item['field']}' is missing"))
        # Before the rule matches, templates see the message, settings and the file's
        # values; after, the extracted names, matched_event and the rule's own values too.
        file_known = self.file_known
        known = file_known.with_names("matched_event", *(n for n, _ in extract)) \
            if file_known is not None else None
        bounds = {**self.file_names, **{name: e.bound for name, e in extract}}
        values, known, bounds = self.values(spec.get("values"), path + ("values",), known, bounds)
        has_request = "request" in spec or "requests" in spec or bool(defaults)
        skip = self.tree(spec["skip"], path + ("skip",), known, bounds) if "skip" in spec else None
        requests: list[RequestSpec] = []
        if skip is None and has_request:
            if "requests" in spec:
                if "request" in spec:
                    self.problem(path + ("requests",), "a rule has 'request' or 'requests', "
                                                       "not both", key=True)
                labels: set[str] = set()
                for i, entry in enumerate(spec["requests"]):
                    label = str(entry.get("name", i))
                    if label in labels:
                        self.problem(path + ("requests", i, "name"), f"duplicate request name '{label}'")
                    labels.add(label)
                    requests.append(self.request(
                        defaults, {k: v for k, v in entry.items() if k != "name"},
                        path + ("requests", i), known, bounds, f"{spec['name']}/{label}",
                        "" if i == 0 else f"#{label}"))
            else:
                requests.append(self.request(defaults, spec.get("request", {}),
                                             path + ("request",), known, bounds, spec["name"]))
        rule_snake = snake
        if "snake_case" in spec:
            rule_snake = self.snake(spec["snake_case"], path + ("snake_case",))
        return Rule(
            name=spec["name"],
            types=frozenset(types) if types is not None else None,
            events=events,
            normalized=normalized,
            condition=self.jmespath(when["condition"], path + ("when", "condition"))
            if "condition" in when else None,
            require=tuple(require),
            extract=tuple(extract),
            reject_if=self.conditions(spec.get("reject_if"), path + ("reject_if",), known, bounds),
            skip_if=self.conditions(spec.get("skip_if"), path + ("skip_if",), known, bounds),
            skip=skip,
            snake=rule_snake if rule_snake is not snake else None,
            requests=tuple(requests),
            when_if=self.expression(when["if"], path + ("when", "if"), file_known, self.file_names)
            if "if" in when else None,
            values=values,
            description=spec.get("description"),
            when_if_source=when.get("if"),
        )

    def examples(self, file: str) -> tuple[Example, ...]:
        """The examples, each identified by its name: two names that are the same, or that
        give the same snapshot file name, are a problem at the second."""
        out = []
        seen: dict[str, tuple[str, Path_]] = {}  # key -> the first name with it, where
        for i, spec in enumerate(self.data.get("examples") or []):
            name, where = spec["name"], ("examples", i, "name")
            key = example_key(name)
            if key in seen:
                first, first_where = seen[key]
                line = self.view.locate(first_where).line
                if first == name:
                    self.problem(where, f"duplicate example name '{name}' (the first is at "
                                        f"line {line}); examples are identified by name")
                else:
                    self.problem(where, f"example name '{name}' gives the same snapshot file "
                                        f"name ({key}) as '{first}' at line {line}; make them "
                                        "differ in their letters or digits")
            else:
                seen[key] = (name, where)
            if spec.get("now") is not None and parse_datetime(spec["now"]) is None:
                self.problem(("examples", i, "now"), f"an example's now must be an ISO 8601 "
                                                     f"time, got {spec['now']!r}")
            out.append(Example(name, spec["event"], spec.get("settings") or {},
                               spec.get("now"), spec.get("source"),
                               self.view.locate(("examples", i)), spec.get("expect")))
        return tuple(out)

    def run(self) -> Destination:
        data = self.data
        settings = SettingsSchema(data.get("destination", "?"), data.get("settings") or {})
        for name, spec in settings.spec.items():
            if "regex" in spec:
                try:
                    compile_regex(spec["regex"])
                except regex.error as exc:
                    self.problem(("settings", name, "regex"), f"bad pattern: {exc}")
            if "schema" in spec:
                problem = settings.schema_problem(name)
                if problem is not None:
                    self.problem(("settings", name, "schema"), problem)
            if "default" in spec and spec.get("required"):
                self.problem(("settings", name), f"setting '{name}' is required and has a default; "
                                                 "keep one of the two")
        snake = self.snake(data.get("snake_case"), ("snake_case",))
        values, self.file_known, self.file_names = self.values(data.get("values"), ("values",),
                                                               self.known, {})
        defaults = data.get("request") or {}
        for key in ("for_each", "as", "if"):
            if key in defaults:
                self.problem(("request", key), f"'{key}' belongs to a rule's request, not to the "
                                               "file's request defaults", key=True)
        rules = []
        names: set[str] = set()
        for i, spec in enumerate(data.get("rules") or []):
            if spec["name"] in names:
                self.problem(("rules", i, "name"), f"duplicate rule name '{spec['name']}'")
            names.add(spec["name"])
            rules.append(self.rule(spec, i, defaults, snake))
        if not rules and not self.has_rules:
            self.problem(("rules",), "a destination needs at least one rule")
        unmatched = self.tree(data["unmatched"], ("unmatched",), self.file_known, self.file_names) \
            if "unmatched" in data else None
        batch = self.batch(rules)
        secret = settings.secret_names
        for path, name in self.settings_used:
            if name in secret and not _in_auth(path) and (path, name) not in self.secret_ok:
                self.problem(path, f"secret setting '{name}' may be used in request.auth, "
                                   "request.auth_query or inserted as it is in the url only "
                                   "(requests are stored without them)")
            if name not in settings.spec and name not in self.declared:
                declared = ", ".join(sorted(settings.spec)) or "none"
                self.problem(path, f"setting '{name}' is used but not declared (declared: {declared})")
        accepts = data.get("accepts")
        return Destination(
            name=data["destination"], slug=data["slug"], file=self.view.docs[0].path,
            docs=data.get("docs"), input=data.get("input", "segment"),
            accepts=frozenset(accepts) if accepts is not None else None,
            settings_schema=settings, rules=tuple(rules), snake=snake, unmatched=unmatched,
            examples=self.examples(self.view.docs[0].path), batch=batch, values=values,
            description=data.get("description"),
        )


def merge_named(base: dict[str, Any] | None, mine: dict[str, Any] | None, *,
                fold_case: bool = False) -> dict[str, Any]:
    """Named parts (headers, auth headers, query parameters): the defaults' in their order,
    a rule's own over them, then the rule's new ones. A name set to null is left out, so a
    rule can remove what it inherits. Header names compare without case (HTTP's rule): a
    rule's `content-type` replaces a default `Content-Type`, under the rule's spelling."""
    def same(name: str) -> str:
        return name.lower() if fold_case else name

    own = {same(name): (name, value) for name, value in (mine or {}).items()}
    merged: dict[str, Any] = {}
    for name, value in (base or {}).items():
        name, value = own.pop(same(name), (name, value))
        merged[name] = value
    merged.update(own.values())
    return {name: value for name, value in merged.items() if value is not None}


def origin_in(own_path: Path_, own: dict[str, Any], part: str, name: str) -> Path_:
    """Where a header, auth header or query parameter was written: in the rule's own request
    if it names it there, else in the file's request defaults."""
    if name in (own.get(part) or {}):
        return own_path + (part, name)
    return ("request", part, name)


def _merge_bodies(base: dict[str, Any], mine: dict[str, Any], *, deep: bool) -> dict[str, Any]:
    merged = {k: v for k, v in base.items() if k not in mine}
    for key, value in mine.items():
        if value is None:
            continue  # a key set to null removes the default's key
        if deep and isinstance(value, dict) and isinstance(base.get(key), dict) \
                and "$each" not in value and "$entries" not in value:
            merged[key] = _merge_bodies(base[key], value, deep=True)
        else:
            merged[key] = value
    return merged


def _in_auth(path: Path_) -> bool:
    """Is the path inside a request's `auth` (of a `request`, or of one of `requests`)?"""
    for i, part in enumerate(path[1:], start=1):
        if part in ("auth", "auth_query") and (path[i - 1] == "request" or (
                i >= 2 and isinstance(path[i - 1], int) and path[i - 2] == "requests")):
            return True
    return False


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def compile_destination(data: dict[str, Any], view: SourceView) -> tuple[Destination | None, list[Problem]]:
    """Check `data` against the format and compile it; return it with every problem found.
    When the schema refuses parts of it, the rest is compiled all the same (without them),
    so that one run reports the problems of every stage."""
    problems = [Problem(view.locate(path, key=unknown), message)
                for path, message, unknown in check_document(data)]
    original = None
    if problems:
        usable = usable_part(data)
        if usable is None:
            return None, problems
        original, (data, renumbered) = data, usable
        view = SourceView(view.docs, renumbered)
    if data.get("input", "segment") == "raw" and "accepts" in data:
        problems.append(Problem(view.locate(("accepts",), key=True),
                                "'accepts' is for Segment input; a raw-input mapping has no call types"))
    compiler = _Compiler(data, view, original)
    destination = compiler.run()
    places = {p.location for p in problems}
    # A part the schema refused and its compile problem are one problem, reported once.
    problems += [p for p in compiler.problems if p.location not in places]
    if problems:
        return None, problems
    destination.codes, destination.notes = _generated(destination)
    try:
        destination.values_code = generate_values(destination)
    except Exception as exc:  # noqa: BLE001 - a generator bug must not stop a mapping
        destination.notes += (f"{destination.file}: warning: the file's values are computed "
                              f"interpreted: the code generator failed ({type(exc).__name__}: "
                              f"{exc})",)
    if destination.values_code is not None:
        destination.notes += tuple(
            f"{origin}: warning: rendered by Jinja, not by generated code (values): {source!r}"
            for origin, source in destination.values_code.fallbacks)
    return destination, problems


def _generated(destination: Destination) -> tuple[tuple[RuleCode | None, ...], tuple[str, ...]]:
    """Each rule's generated function, and the notes `validate` shows: which templates
    Jinja renders instead, and any rule the generator could not write (it is interpreted,
    which is always correct, only slower)."""
    codes: list[RuleCode | None] = []
    notes: list[str] = []
    for rule in destination.rules:
        try:
            code = generate(destination, rule)
        except Exception as exc:  # noqa: BLE001 - a generator bug must not stop a mapping
            codes.append(None)
            notes.append(f"{destination.file}: warning: rule {rule.name} runs interpreted: the "
                         f"code generator failed ({type(exc).__name__}: {exc})")
            continue
        codes.append(code)
        for origin, source in code.fallbacks:
            shown = source if len(source) <= 80 else source[:77] + "..."
            notes.append(f"{origin}: warning: rendered by Jinja, not by generated code "
                         f"(rule {rule.name}): {shown!r}")
    return tuple(codes), tuple(dict.fromkeys(notes))

