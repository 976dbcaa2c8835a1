"""Small builders shared by the unit tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

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


def shipped_slugs() -> str:
    """The slugs of the mappings in mappings/, as error messages list them: tests that
    quote such a message must not break when a destination is added."""
    return ", ".join(sorted(engine.load(MAPPINGS)))
