"""Small builders shared by the unit tests."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import engine

from .paths import MAPPINGS


def write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, name: str = "demo.yaml") -> list[str]:
    """The `file:line:col: message` lines for a mapping text, relative to tmp_path."""
    path = write(tmp_path, text, name)
    _, found = engine.check([path])
    return [str(p).replace(str(tmp_path) + "/", "") for p in found]


def destination(tmp_path: Path, text: str, name: str = "demo.yaml") -> engine.Destination:
    path = write(tmp_path, text, name)
    return next(iter(engine.load(path).values()))


def body_destination(tmp_path: Path, body: str) -> engine.Destination:
    """A destination of raw input and one rule, `r`, posting to https://d.example/in the
    body whose entries `body` writes (YAML, indented as the text's own lines)."""
    entries = textwrap.indent(textwrap.dedent(body), " " * 8)
    return destination(tmp_path, textwrap.dedent("""\
        destination: D
        slug: d
        input: raw
        rules:
          - name: r
            request:
              url: https://d.example/in
              body:
        """) + entries)


def shipped_slugs() -> str:
    """The slugs of the mappings in mappings/, as error messages list them: tests that
    quote such a message must not break when a destination is added."""
    return ", ".join(sorted(engine.load(MAPPINGS)))


def outcomes(dest: engine.Destination, event: Any, settings: Any, now: Any, generated: bool) -> str:
    """Everything a mapping gives, on its generated or its interpreted path, as text that
    keeps the order of every mapping in it (the two paths are compared by it)."""
    bound = dest.bind(settings, generated=generated)
    try:
        found = bound.map(event, now=now)
    except engine.EventError as exc:
        return f"error: {exc}"
    return repr([(type(o).__name__, [(f, getattr(o, f)) for f in o.__slots__]) for o in found])
