"""A destination described for the people who configure it: what it accepts, its settings
and its rules, from the compiled destination (`engine describe`, and the tester page).

No setting's value appears in a description: only what the file declares, and a secret
setting's default is shown as [redacted].
"""

from __future__ import annotations

from typing import Any

from ..outcomes import REDACTED
from .destination import Destination, Rule

__all__ = ["describe", "rule_matches"]


def describe(destination: Destination) -> dict[str, Any]:
    """The description as data: name, slug, file, docs, description, input, accepts, bulk,
    settings (name, type, required, default, secret, description, allowed) and rules
    (name, description, what they match, what they do), and the examples' names."""
    settings = []
    for name, spec in destination.settings_schema.spec.items():
        secret = bool(spec.get("secret"))
        entry: dict[str, Any] = {"name": name, "type": spec.get("type"),
                                 "required": bool(spec.get("required")), "secret": secret,
                                 "description": spec.get("description")}
        if "default" in spec:
            entry["default"] = REDACTED if secret and spec["default"] not in (None, "") else spec["default"]
        if "allowed" in spec:
            entry["allowed"] = list(spec["allowed"])
        settings.append(entry)
    return {
        "name": destination.name,
        "slug": destination.slug,
        "file": destination.file,
        "docs": destination.docs,
        "description": destination.description,
        "input": destination.input,
        "accepts": sorted(destination.accepts) if destination.accepts is not None else None,
        "bulk": {"max_items": destination.batch.max_items} if destination.batch else None,
        "settings": settings,
        "rules": [{"name": rule.name, "description": rule.description,
                   "matches": rule_matches(rule, destination), "does": _does(rule)}
                  for rule in destination.rules],
        "examples": [example.name for example in destination.examples],
    }


def rule_matches(rule: Rule, destination: Destination) -> str:
    """What a rule matches, in words: 'track calls, named Signed Up or Account Created (in any
    case, with any separators), where "properties.revenue > `100`"'."""
    if destination.input == "raw":
        what = "any input"
    elif rule.types is not None:
        what = f"{_either(sorted(rule.types))} calls"
    else:
        accepted = sorted(destination.accepts) if destination.accepts is not None else None
        what = f"{_either(accepted)} calls" if accepted else "any call"
    parts = [what]
    if rule.events is not None:
        names = _either(list(dict.fromkeys(rule.events.values())))
        parts.append(f"named {names}" + (" (in any case, with any separators)" if rule.normalized else ""))
    if rule.condition is not None:
        parts.append(f'where "{rule.condition.source}"')
    if rule.when_if_source is not None:
        parts.append(f'if "{rule.when_if_source}"')
    if rule.require:
        parts.append("with " + " and ".join(f'"{source}"' for _, source, _ in rule.require))
    return ", ".join(parts)


def _does(rule: Rule) -> str:
    if rule.skip is not None:
        return "skips, saying why"
    if not rule.requests:
        return "no request"
    names = [spec.name.split("/", 1)[1] for spec in rule.requests if "/" in spec.name]
    fans = any(spec.for_each is not None for spec in rule.requests)
    if names:
        return f"{len(rule.requests)} requests ({', '.join(names)})" + (", per item" if fans else "")
    return "1 request per item" if fans else "1 request"


def _either(words: list[str] | None) -> str:
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} or {words[-1]}"
