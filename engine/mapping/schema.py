"""The schema of a mapping file, checked with Cerberus; docs/mapping-format.md explains it."""

from __future__ import annotations

import copy
from typing import Any, Iterator

from cerberus import Validator

from ..normalize import CALL_TYPES
from ..outcomes import METHODS

__all__ = ["CALL_TYPES", "abstract_schema", "check_document", "flatten_errors", "usable_part", "original_path", "Renumbering",
           "SETTING_TYPES", "SCHEMA"]

SETTING_TYPES = ("string", "integer", "float", "number", "boolean", "dict", "list")


def _about(text: str) -> dict[str, Any]:
    """A rule's description for people (Cerberus ignores `meta`): the JSON Schema made from
    this schema (json_schema.py) shows it in editors."""
    return {"meta": {"description": text}}


_STRINGS = {"type": ["string", "list"], "schema": {"type": "string"}}
_TEMPLATE = {"type": "string", "empty": False}
_SCALAR_TEMPLATE = {"type": ["string", "integer", "float"]}

_VALUES = {"type": "dict", "keysrules": {"type": "string", "regex": r"[A-Za-z_][A-Za-z0-9_]*"}}

_REQUEST = {
    # One of GET, POST, PUT, PATCH, DELETE, or a template (checked by the compiler).
    "method": {"type": "string", "empty": False,
               **_about("GET, POST (the default), PUT, PATCH, DELETE, or a template giving one")},
    "url": {**_TEMPLATE, **_about("the request's url (a template)")},
    # In headers, auth and auth_query (and query), a name set to null removes the default's.
    "headers": {"type": "dict", "keysrules": {"type": "string"},
                "valuesrules": {**_SCALAR_TEMPLATE, "nullable": True},
                **_about("header name -> template; merged by name (any case) over the defaults; "
                         "null removes an inherited one")},
    "auth": {"type": "dict", "keysrules": {"type": "string"},
             "valuesrules": {**_TEMPLATE, "nullable": True},
             **_about("secret headers, from settings only: rendered at send time, never stored")},
    # Query parameters made from (secret) settings, added at send time.
    "auth_query": {"type": "dict", "keysrules": {"type": "string"},
                   "valuesrules": {**_TEMPLATE, "nullable": True},
                   **_about("query parameters from secret settings, added at send time")},
    "encoding": {"type": "string", "allowed": ["json", "form"],
                 **_about("json (the default) or form")},
    "body": {"nullable": True, **_about("a YAML tree whose string leaves are Jinja templates")},
    "deliver_after": {**_TEMPLATE, **_about("a time: delivery waits until then")},
    "once": {"type": "dict", **_about("at most one request with this key in window_seconds"),
             "schema": {
        "key": {**_TEMPLATE, "required": True},
        "window_seconds": {**_SCALAR_TEMPLATE, "required": True},
    }},
    "message_id": _TEMPLATE,
    # Query parameters, added to the url (encoded; missing ones left out).
    "query": {"type": "dict", "keysrules": {"type": "string"},
              **_about("query parameters added to the url, encoded; missing ones left out")},
    # One request per item of a list (a template), each item named `as` (default item).
    "for_each": {**_TEMPLATE, **_about("one request per item of this list (a template)")},
    "as": {"type": "string", "regex": r"[A-Za-z_][A-Za-z0-9_]*"},
    "body_merge": {"type": "string", "allowed": ["keys", "deep"]},
    # A condition: when it is false the request is not made (per item with for_each).
    "if": {**_TEMPLATE, **_about("a condition: when false, this request is not made")},
    # This request's part of a bulk request (see `batch`): joins the list `into`.
    "batch_item": {"type": "dict", "schema": {
        "into": {"type": "string", "required": True, "regex": r"[A-Za-z_][A-Za-z0-9_]*"},
        "value": {"required": True},
        "if": _TEMPLATE,
    }},
}

_BATCH = {"type": "dict", "schema": {
    "max_items": {"type": "integer", "min": 2, "max": 10000, "required": True},
    "max_bytes": {"type": "integer", "min": 1024, "max": 50_000_000},
    "max_wait": {"type": "number", "min": 0, "max": 10},
    "failed_items": _TEMPLATE,
    "request": {"type": "dict", "required": True, "schema": {
        "method": {"type": "string", "allowed": list(METHODS)},
        "url": {**_TEMPLATE, "required": True},
        "headers": _REQUEST["headers"],
        "auth": _REQUEST["auth"],
        "encoding": {"type": "string", "allowed": ["json"]},
        "body": {"required": True},
    }},
}}

_SNAKE_CASE = {"type": ["dict", "boolean"], "schema": {
    "paths": {**_STRINGS, "required": True},
    "except": _STRINGS,
}}

_CONDITIONS = {"type": "list", "schema": {"type": "dict", "schema": {
    "if": {**_TEMPLATE, "required": True},
    "reason": {**_TEMPLATE, "required": True},
}}}

_SETTING = {"type": "dict", "schema": {
    "type": {"type": "string", "allowed": list(SETTING_TYPES), "required": True},
    "required": {"type": "boolean"},
    "default": {"nullable": True},
    "secret": {"type": "boolean",
               **_about("never stored, shown or logged; usable in auth, auth_query and the url")},
    "description": {"type": "string", **_about("for the people who configure the destination")},
    "allowed": {"type": "list"},
    "min": {"type": "number"},
    "max": {"type": "number"},
    "regex": {"type": "string"},
    "empty": {"type": "boolean"},
    "nullable": {"type": "boolean"},
    # The rules of a list's items or a dict's keys (Cerberus' own `schema` rule).
    "schema": {"type": "dict"},
}}

_RULE = {"type": "dict", "schema": {
    "name": {"type": "string", "required": True, "regex": r"[A-Za-z0-9_.-]+",
             **_about("unique in the file; shown with each request the rule makes")},
    "description": {"type": "string"},
    "when": {"type": "dict", **_about("all the matchers given must hold"), "schema": {
        "type": {"type": ["string", "list"], "allowed": list(CALL_TYPES)},
        "event": _STRINGS,
        "event_match": {"type": "string", "allowed": ["exact", "normalized"]},
        "condition": _TEMPLATE,
        "if": _TEMPLATE,
    }},
    "require": {"type": "list", "schema": {"type": "dict", "schema": {
        "field": {**_TEMPLATE, "required": True},
        "reason": _TEMPLATE,
    }}},
    "extract": {"type": "dict", "keysrules": {"type": "string", "regex": r"[A-Za-z_][A-Za-z0-9_]*"},
                "valuesrules": _TEMPLATE, **_about("name -> JMESPath over the message")},
    "values": _VALUES,
    "reject_if": _CONDITIONS,
    "skip_if": _CONDITIONS,
    "skip": {**_TEMPLATE, **_about("this rule always skips, with this reason (a template)")},
    "snake_case": _SNAKE_CASE,
    "request": {"type": "dict", "schema": _REQUEST, **_about("overrides the file's request defaults")},
    "requests": {"type": "list", "empty": False, **_about("several requests, each like request"),
                 "schema": {"type": "dict", "schema": {
        **_REQUEST, "name": {"type": "string", "regex": r"[A-Za-z0-9_.-]+"}}}},
}}

_EXAMPLE = {"type": "dict", "schema": {
    "name": {"type": "string", "required": True,
             **_about("identifies the example (unique in the file): its snapshot's file name")},
    "source": {"type": "string", **_about("where the example comes from")},
    "settings": {"type": "dict"},
    "now": {"type": "string", **_about("a fixed clock (ISO 8601), so that outcomes repeat")},
    "event": {"type": ["dict", "list"], "required": True, **_about("the message (or raw input)")},
    # The outcomes the example must give, as `engine map` prints them (secrets redacted):
    # {request: {...}}, {skipped: reason} or {error: part of the reason}.
    "expect": {"type": "list", **_about("the outcomes it must give: request, skipped or error"),
               "schema": {"type": "dict", "minlength": 1, "maxlength": 2,
                                          "keysrules": {"allowed": ["request", "skipped", "error", "rule"]}}},
}}

SCHEMA: dict[str, Any] = {
    "destination": {"type": "string", "required": True, "empty": False,
                    **_about("display name, as in a message's integrations object")},
    "slug": {"type": "string", "required": True, "regex": r"[a-z0-9][a-z0-9-]*",
             **_about("unique across files; how the CLI, the shim and snapshots name it")},
    "docs": {"type": "string", **_about("the destination's documentation")},
    "description": {"type": "string"},
    "extends": {"type": "string", **_about("a base file beside this one, whose keys this one "
                                           "merges over")},
    "abstract": {"type": "boolean", **_about("a base file: checked, never a destination")},
    "input": {"type": "string", "allowed": ["segment", "raw"],
              **_about("segment (the default): a Segment message; raw: any JSON object")},
    "accepts": {"type": "list", "allowed": list(CALL_TYPES),
                **_about("the call types taken; others are skipped, saying so")},
    "settings": {"type": "dict", "keysrules": {"type": "string", "regex": r"[A-Za-z_][A-Za-z0-9_]*"},
                 "valuesrules": _SETTING,
                 **_about("name -> Cerberus rules, plus secret and description")},
    "request": {"type": "dict", "schema": _REQUEST, **_about("defaults every rule's requests inherit")},
    "batch": {**_BATCH, **_about("the destination's bulk request, if it has one")},
    "snake_case": {**_SNAKE_CASE, **_about("trait keys renamed to snake_case before rules run")},
    "values": {**_VALUES, **_about("named values computed per event before rules match")},
    "rules": {"type": "list", "schema": _RULE,
              **_about("tried in order; the first that matches decides")},
    "unmatched": {**_TEMPLATE, **_about("the skip reason when no rule matches (a template)")},
    "examples": {"type": "list", "schema": _EXAMPLE,
                 **_about("documented events, their settings and what they must give")},
}


def _schema_for(data: dict[str, Any], abstract: bool) -> dict[str, Any]:
    if abstract or data.get("abstract") is True:
        # A base file need not name a destination; whoever extends it does.
        return {**SCHEMA, "destination": {**SCHEMA["destination"], "required": False},
                "slug": {**SCHEMA["slug"], "required": False}}
    return SCHEMA


def abstract_schema() -> dict[str, Any]:
    """The schema of a base file (`abstract: true`)."""
    return _schema_for({}, True)


def check_document(data: Any, *, abstract: bool = False) -> Iterator[tuple[tuple[Any, ...], str, bool]]:
    """Yield (path, message, is_unknown_key) for every schema violation in a mapping file."""
    if not isinstance(data, dict):
        yield (), "a mapping file must be a YAML mapping at the top level", False
        return
    validator = Validator(_schema_for(data, abstract))
    if validator.validate(data):
        return
    yield from flatten_errors(validator.errors)


Renumbering = dict[tuple[Any, ...], list[int]]
"""For each list that lost items (by its path in the original document): the original
index of each item kept, in order."""

# What a document without its name or slug is compiled under, to find its other problems.
_PLACEHOLDERS = {"destination": "(unnamed)", "slug": "unnamed"}
_MAX_PASSES = 20


def usable_part(data: Any, *, abstract: bool = False) -> tuple[dict[str, Any], Renumbering] | None:
    """The part of a document the schema accepts, so that the compiler can find the problems
    of the rest of it in the same run: every value the schema refuses is left out (a key, or
    the list item or mapping entry that lacks a required key), and a missing `destination`
    or `slug` is given a placeholder. Returns the copy and how its lists were renumbered,
    or None when nothing usable is left."""
    if not isinstance(data, dict):
        return None
    doc = copy.deepcopy(data)
    kept: Renumbering = {}
    for _ in range(_MAX_PASSES):
        validator = Validator(_schema_for(doc, abstract))
        if validator.validate(doc):
            return doc, kept
        targets = {path[:-1] if required else path for path, required in _error_paths(validator.errors)}
        for target in sorted(targets, key=_deepest_last_index_first):
            if len(target) == 1 and target[0] in _PLACEHOLDERS:
                doc[target[0]] = _PLACEHOLDERS[target[0]]
            elif not target or not _remove(doc, target, kept):
                return None
    return None


def _error_paths(tree: dict[Any, Any], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], bool]]:
    """Cerberus' error tree as (path, is_a_missing_required_key) pairs."""
    for key, messages in tree.items():
        for message in messages:
            if isinstance(message, dict):
                yield from _error_paths(message, prefix + (key,))
            else:
                yield prefix + (key,), message == "required field"


def _deepest_last_index_first(path: tuple[Any, ...]) -> tuple[int, int]:
    # Deeper paths first, and higher list indexes before lower ones, so that removing one
    # never moves another that is still to be removed.
    return -len(path), -(path[-1] if path and isinstance(path[-1], int) else -1)


def _remove(doc: Any, path: tuple[Any, ...], kept: Renumbering) -> bool:
    """Remove the value at `path` (current positions); record list renumbering by the
    list's original path. False when there is nothing there to remove."""
    parent = doc
    for part in path[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return True  # already gone with an ancestor
    last = path[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
        return True
    if isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        original = original_path(path[:-1], kept)
        kept.setdefault(original, list(range(len(parent))))
        del kept[original][last]
        del parent[last]
        return True
    return False


def original_path(path: tuple[Any, ...], kept: Renumbering) -> tuple[Any, ...]:
    """Where a path of the usable part was in the original document."""
    out: tuple[Any, ...] = ()
    for part in path:
        if isinstance(part, int) and out in kept and 0 <= part < len(kept[out]):
            part = kept[out][part]
        out += (part,)
    return out


def flatten_errors(tree: dict[Any, Any], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str, bool]]:
    """Cerberus' error tree as (path, message, is_unknown_key) triples, paths into the document."""
    for key, messages in tree.items():
        for message in messages:
            if isinstance(message, dict):
                yield from flatten_errors(message, prefix + (key,))
            else:
                yield prefix + (key,), _explain(key, message), message == "unknown field"


def _explain(key: Any, message: str) -> str:
    if message == "unknown field":
        return f"unknown key '{key}'"
    if message == "required field":
        return f"'{key}' is required"
    return f"'{key}': {message}"
