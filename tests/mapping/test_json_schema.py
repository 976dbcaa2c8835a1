"""The JSON Schema of the mapping format (docs/mapping.schema.json, and the same file in the
package) is made from the Cerberus schema the loader uses, and every shipped file fits it."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from engine.mapping.json_schema import SHIPPED, json_schema, render
from engine.mapping.schema import check_document
from tests.support.paths import MAPPINGS, ROOT

DOCS = ROOT / "docs" / "mapping.schema.json"
VALIDATOR = jsonschema.Draft7Validator(json_schema())
MODELINE = "# yaml-language-server: $schema=../docs/mapping.schema.json\n"


def test_the_shipped_schema_is_what_the_loaders_schema_makes() -> None:
    jsonschema.Draft7Validator.check_schema(json_schema())
    assert DOCS.read_text(encoding="utf-8") == render(), \
        "regenerate it: python -m engine.mapping.json_schema docs/mapping.schema.json"
    assert SHIPPED.resolve() == DOCS.resolve()  # the package's copy is the same file


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_mapping_fits_the_schema_and_says_so(path: Any) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith(MODELINE), "the first line makes the YAML language server use the schema"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(yaml.safe_load(text))]
    assert errors == []


@pytest.mark.parametrize("document", [
    {"destination": "D", "slug": "d", "rules": [{"name": "a", "skip": "x"}]},
    {"abstract": True, "request": {"url": "https://x.example"}},
    {"destination": "D", "slug": "d", "rules": [{"name": "a", "when": {"type": ["track", "page"]}}],
     "snake_case": True, "settings": {"k": {"type": "string", "secret": True, "default": None}}},
    {"slug": "d", "rules": []},
    {"destination": "D", "slug": "D!", "rules": []},
    {"destination": "D", "slug": "d", "rules": [{"skip": "x"}]},
    {"destination": "D", "slug": "d", "rulez": []},
    {"destination": "D", "slug": "d", "accepts": ["click"]},
    {"destination": "D", "slug": "d", "rules": [{"name": "a", "when": {"type": "clicks"}}]},
    {"destination": "D", "slug": "d", "request": {"encoding": "xml"}},
    {"destination": "D", "slug": "d", "request": {"once": {"key": "k"}}},
    {"destination": "D", "slug": "d", "batch": {"max_items": 1, "request": {"url": "u", "body": 1}}},
    {"destination": "D", "slug": "d", "settings": {"k": {"type": "text"}}},
    {"destination": "D", "slug": "d", "examples": [{"name": "x", "event": {}, "expect": [{"sent": 1}]}]},
    {"destination": "D", "slug": "d", "snake_case": {"except": ["a"]}},
    {"destination": "D", "slug": "d", "rules": [{"name": "a", "requests": []}]},
    {"destination": "", "slug": "d"},
], ids=lambda d: repr(d)[:60])
def test_the_json_schema_and_the_loader_agree(document: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(document) == (list(check_document(document)) == [])
