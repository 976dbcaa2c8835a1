"""The behaviour tests of the mapping language run twice: through the generated functions
(codegen.py, the default) and through the interpreted path (the reference), so that the
two cannot drift apart."""

from __future__ import annotations

import pytest

_BOTH = {"test_language", "test_destination"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rpartition(".")[2] in _BOTH:
        metafunc.parametrize("mapping_path", ["generated", "interpreted"], indirect=True)


@pytest.fixture(autouse=True)
def mapping_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which path the destinations a test loads run (ENGINE_GENERATED)."""
    path = getattr(request, "param", "generated")
    monkeypatch.setenv("ENGINE_GENERATED", "1" if path == "generated" else "0")
    return str(path)
