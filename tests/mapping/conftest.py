"""The behaviour tests of the mapping language run twice: through the generated functions
(codegen.py, the default) and through the interpreted path (the reference), so that the
two cannot drift apart; the hostile-input tests too, so that the generated code keeps the
sandbox's bounds and budget.

Tests here also render templates directly, not through a destination's per-event path:
each test starts with a fresh budget (budget.py), as each event does."""

from __future__ import annotations

from typing import Iterator

import pytest

from engine.mapping import budget

_BOTH = {"test_language", "test_destination", "test_exhaustion", "test_growth"}
"""Modules whose tests run on both paths; test_fuzz_mapping and test_codegen map each case
through both themselves, and compare what they give."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rpartition(".")[2] in _BOTH:
        metafunc.parametrize("mapping_path", ["generated", "interpreted"], indirect=True)


@pytest.fixture(autouse=True)
def mapping_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which path the destinations a test loads run (ENGINE_GENERATED)."""
    path = getattr(request, "param", "generated")
    monkeypatch.setenv("ENGINE_GENERATED", "1" if path == "generated" else "0")
    return str(path)


@pytest.fixture(autouse=True)
def _fresh_budget() -> Iterator[None]:
    budget.fresh()
    yield
