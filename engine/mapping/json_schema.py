"""The mapping format as a JSON Schema, made from the Cerberus schema the loader checks files
with (schema.SCHEMA), so that the two cannot drift: editors with the YAML language server
complete and check mapping files with it.

The file is shipped as docs/mapping.schema.json (and, the same file, in the package as
engine/mapping/mapping.schema.json); a test holds it to what `json_schema()` makes now.
Regenerate it with `python -m engine.mapping.json_schema docs/mapping.schema.json`.

The JSON Schema says what Cerberus says about a file's shape; the loader checks more (the
templates, expressions and names), so `engine validate` stays the judge.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .schema import SCHEMA, abstract_schema

__all__ = ["json_schema", "render", "SHIPPED"]

SHIPPED = Path(__file__).resolve().parent / "mapping.schema.json"
"""The JSON Schema in the package (the same file as docs/mapping.schema.json)."""

_TYPES = {"string": "string", "integer": "integer", "float": "number", "number": "number",
          "boolean": "boolean", "dict": "object", "list": "array"}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07) of a mapping file."""
    top = _object(SCHEMA)
    always = set(_required(abstract_schema()))
    named = [key for key in top.pop("required", []) if key not in always]
    out: dict[str, Any] = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Mapping file",
        "description": "One destination of the engine (docs/mapping-format.md). Generated from "
                       "engine/mapping/schema.py; `engine validate` checks the rest.",
        **top,
    }
    if always:
        out["required"] = sorted(always)
    # A base file (abstract: true) need not name a destination; every other file does.
    out["if"] = {"properties": {"abstract": {"const": True}}, "required": ["abstract"]}
    out["else"] = {"required": named}
    return out


def render() -> str:
    """The schema as the shipped file holds it."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def _required(schema: dict[str, Any]) -> list[str]:
    return [key for key, rule in schema.items() if rule.get("required")]


def _object(schema: dict[str, Any]) -> dict[str, Any]:
    """A Cerberus mapping schema: known keys only (Cerberus' default), some required."""
    out: dict[str, Any] = {"type": "object",
                           "properties": {key: _rule(rule) for key, rule in schema.items()},
                           "additionalProperties": False}
    required = _required(schema)
    if required:
        out["required"] = required
    return out


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    """One Cerberus rule set as JSON Schema."""
    types = rule.get("type")
    kinds = [types] if isinstance(types, str) else list(types or [])
    if "allowed" in rule and len(kinds) > 1:
        # `allowed` means one thing for a text and another for a list's items.
        return {**_described(rule), "anyOf": [_rule({**rule, "type": kind}) for kind in kinds]}
    out = _described(rule)
    json_types = [_TYPES[kind] for kind in kinds]
    if rule.get("nullable") and json_types:
        json_types.append("null")
    if json_types:
        out["type"] = json_types[0] if len(json_types) == 1 else json_types
    if "allowed" in rule:
        values = list(rule["allowed"])
        if kinds == ["list"]:
            out["items"] = {"enum": values}
        else:
            out["enum"] = values
    if "regex" in rule:
        out["pattern"] = f"^(?:{rule['regex']})$"  # Cerberus matches the whole text
    for cerberus, key in (("min", "minimum"), ("max", "maximum")):
        if cerberus in rule:
            out[key] = rule[cerberus]
    if rule.get("empty") is False:
        if "string" in kinds:
            out["minLength"] = 1
        if "list" in kinds:
            out["minItems"] = 1
    for cerberus, key in (("minlength", "min"), ("maxlength", "max")):
        if cerberus in rule:
            out[f"{key}Items" if "list" in kinds else f"{key}Properties"] = rule[cerberus]
    if "schema" in rule:
        inner = rule["schema"]
        if "list" in kinds:
            out["items"] = _rule(inner)
        elif "dict" in kinds:
            out.update({k: v for k, v in _object(inner).items() if k != "type"})
    if "keysrules" in rule:
        out["propertyNames"] = _rule(rule["keysrules"])
    if "valuesrules" in rule:
        out["additionalProperties"] = _rule(rule["valuesrules"])
    return out


def _described(rule: dict[str, Any]) -> dict[str, Any]:
    description = (rule.get("meta") or {}).get("description")
    return {"description": description} if description else {}


if __name__ == "__main__":  # python -m engine.mapping.json_schema [FILE]
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(render(), encoding="utf-8")
    else:
        sys.stdout.write(render())
