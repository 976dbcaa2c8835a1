"""Tests here render templates directly, not through a destination's per-event path: each
test starts with a fresh budget (budget.py), as each event does."""

from __future__ import annotations

from typing import Iterator

import pytest

from engine.mapping import budget


@pytest.fixture(autouse=True)
def _fresh_budget() -> Iterator[None]:
    budget.fresh()
    yield
