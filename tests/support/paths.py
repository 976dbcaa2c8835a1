"""Where the repository's pieces are, for tests run from any directory."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SNAPSHOTS = ROOT / "snapshots"
