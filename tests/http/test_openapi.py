"""GET /openapi.json describes the routes that exist, and only those."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import httpx
import pytest
from starlette.routing import Match, Route

from engine.http.app import create_app
from engine.http.tracking_api import CALL_TYPES, SHORT_PATHS
from tests.support.shim import in_process, shim_config

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
async def shim(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(shim_config(tmp_path, "https://destinations.example")) as client:
        yield client


def concrete(path: str) -> str:
    return path.replace("{destination}", "calixa").replace("{source}", "web").replace(
        "{mapping}", "callexa-sync-back")


@pytest.mark.anyio
async def test_the_document_matches_the_routes(shim: httpx.AsyncClient, tmp_path: Path) -> None:
    reply = await shim.get("/openapi.json")
    assert reply.status_code == 200 and reply.json()["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, item in reply.json()["paths"].items()
                  for method in item if method in METHODS}
    from engine.config import load_config
    routes = [r for r in create_app(load_config(shim_config(tmp_path, "https://x.example"))).routes
              if isinstance(r, Route)]

    def served(method: str, path: str) -> bool:
        scope = {"type": "http", "method": method, "path": concrete(path)}
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    assert sorted(d for d in documented if not served(*d)) == []
    # Every route, and every name /v1/{call} takes, is documented with each of its methods.
    names = set(CALL_TYPES) | set(SHORT_PATHS) | {"import"}
    assert {f"/v1/{n}" for n in names} <= {p for _, p in documented}
    for route in routes:
        for method in route.methods or ():
            if method == "HEAD" or "{call" in route.path:
                continue
            assert any(m == method and served(m, p) and concrete(p) == concrete(route.path)
                       for m, p in documented), (method, route.path)
