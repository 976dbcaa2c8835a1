"""Where a destination's example snapshots are stored, and the one way they are written.

A snapshot is the JSON record of one example (its input and its outcomes, secrets
redacted), in `<root>/examples/<slug>/<example key>.json`; `<root>` is the `snapshots/`
directory beside the directory of mapping files (`mappings/x.yaml` -> `snapshots/`), unless
a command is told another. The files are the contract of a destination: read in review,
written only on request (`engine test --update`), never in CI.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .destination import Destination, Example

__all__ = ["SnapshotStore", "default_root", "serialize", "SUFFIX"]

SUFFIX = ".json"


def serialize(record: Any) -> str:
    """The text of a snapshot: JSON, keys sorted at every level, two-space indents, non-ASCII
    kept, a final newline (the format the snapshots were first written in, by syrupy)."""
    return json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def default_root(mapping_file: str | Path) -> Path:
    """The snapshots of a mapping file's examples: `snapshots/` beside its directory."""
    return Path(mapping_file).resolve().parent.parent / "snapshots"


@dataclass(frozen=True)
class SnapshotStore:
    """The snapshot files under one root."""

    root: Path

    def folder(self, slug: str) -> Path:
        return self.root / "examples" / slug

    def path(self, slug: str, example: Example) -> Path:
        return self.folder(slug) / f"{example.key}{SUFFIX}"

    def read(self, path: Path) -> str | None:
        """The snapshot's text, or None when there is none."""
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write(self, path: Path, text: str) -> None:
        """Write a snapshot whole (a new file renamed over the old one: never half written)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)

    def orphans(self, destinations: Iterable[Destination], *, whole: bool = False) -> list[Path]:
        """Snapshot files no example has (any longer): in the folders of `destinations`,
        and, when they are `whole` (every destination of the root's mapping files), the
        files of folders that belong to no destination."""
        found: list[Path] = []
        known = {d.slug: {f"{e.key}{SUFFIX}" for e in d.examples} for d in destinations}
        for slug, names in sorted(known.items()):
            folder = self.folder(slug)
            if folder.is_dir():
                found += sorted(p for p in folder.iterdir() if p.is_file() and p.name not in names)
        examples = self.root / "examples"
        if whole and examples.is_dir():
            for folder in sorted(p for p in examples.iterdir() if p.is_dir() and p.name not in known):
                found += sorted(p for p in folder.rglob("*") if p.is_file())
        return found

    def remove(self, path: Path) -> None:
        """Delete a snapshot file, and its folder when that leaves it empty."""
        path.unlink(missing_ok=True)
        folder = path.parent
        if folder.parent == self.root / "examples" and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
