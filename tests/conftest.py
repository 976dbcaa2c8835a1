"""Shared fixtures: snapshots live in snapshots/ at the top of the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"
SNAPSHOTS = ROOT / "snapshots"


class ProjectSnapshots(JSONSnapshotExtension):
    """One JSON file per snapshot, under snapshots/<test module>/."""

    @classmethod
    def dirname(cls, *, test_location) -> str:  # type: ignore[override]
        return str(SNAPSHOTS / Path(test_location.filepath).stem)


@pytest.fixture
def snapshot(snapshot):  # noqa: F811 - syrupy's fixture, narrowed to our directory
    return snapshot.use_extension(ProjectSnapshots)


@pytest.fixture(autouse=True)
def _close_outboxes():
    from .delivery_helpers import OPEN
    yield
    while OPEN:
        OPEN.pop().close()
