"""Shared fixtures: snapshots live in snapshots/ at the top of the repository; async tests
run on asyncio (anyio's pytest plugin, which comes with httpx); `store` is an empty outbox
of each backend in turn (a SQLite file, then a schema on a throwaway PostgreSQL server), for
the tests whose behaviour must not depend on it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings
from syrupy.extensions.json import JSONSnapshotExtension

from tests.support.delivery import OPEN
from tests.support.postgres import PostgresServer
from tests.support.paths import SNAPSHOTS


# The fuzz suite (tests/http/test_fuzz.py): a few seconds in `make test`, many more cases in
# `make fuzz` (HYPOTHESIS_PROFILE=fuzz). One app serves every example of a test, on purpose.
_SHARED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("default", max_examples=60, deadline=None, suppress_health_check=_SHARED)
settings.register_profile("fuzz", max_examples=5000, deadline=None, suppress_health_check=_SHARED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# Modules whose tests start engine processes, a browser or Node: they exercise the same code
# as the in-process tests, through a process boundary, and are the slow part of the suite.
# `make test` runs them under the main Python only (`-m "not processes"` elsewhere).
_PROCESS_MODULES = frozenset({
    "tests/cli/test_command_line.py", "tests/cli/test_delivery_process.py",
    "tests/cli/test_mapping_commands.py", "tests/cli/test_outbox_commands.py",
    "tests/delivery/test_scale_out.py", "tests/delivery/test_worker_crash.py",
    "tests/http/test_browser.py", "tests/http/test_node_clients.py",
    "tests/http/test_shim_process.py", "tests/http/test_slow_clients.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        if Path(str(item.path)).relative_to(root).as_posix() in _PROCESS_MODULES:
            item.add_marker(pytest.mark.processes)


class ProjectSnapshots(JSONSnapshotExtension):
    """One JSON file per snapshot, under snapshots/<test module>/."""

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:  # type: ignore[override]
        return str(SNAPSHOTS / Path(test_location.filepath).stem)


@pytest.fixture
def snapshot(snapshot: Any) -> Any:  # noqa: F811 - syrupy's fixture, narrowed to our directory
    return snapshot.use_extension(ProjectSnapshots)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _close_outboxes() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """This worker's PostgreSQL server (started on first use, stopped at the end)."""
    server = PostgresServer()
    yield server
    server.stop()


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each outbox backend in turn."""
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty outbox of `backend`, as a configuration's `store:` names it."""
    if backend == "sqlite":
        return str(tmp_path / "outbox.sqlite3")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.store()
