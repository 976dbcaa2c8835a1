"""GET /openapi.json describes the routes that exist, and only those."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Match, Route

from engine.http.app import create_app
from engine.http.tracking_api import CALL_TYPES, SHORT_PATHS
from tests.support.shim import in_process, shim_config

METHODS = ("get", "post", "put", "patch", "delete")


def concrete(path: str) -> str:
    return path.replace("{destination}", "calixa").replace("{source}", "web").replace(
        "{mapping}", "callexa-sync-back").replace("{file}", "tester.js")


@pytest.mark.anyio
@pytest.mark.parametrize("extra", ["", "tester: true\n"], ids=["default", "with the tester"])
async def test_the_document_matches_the_routes(tmp_path: Path, extra: str) -> None:
    config = shim_config(tmp_path, "https://destinations.example", extra=extra)
    async with in_process(config) as shim:
        reply = await shim.get("/openapi.json")
    assert reply.status_code == 200 and reply.json()["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, item in reply.json()["paths"].items()
                  for method in item if method in METHODS}
    assert ("GET", "/tester") in documented if extra else ("GET", "/tester") not in documented
    from engine.config import load_config
    routes = [r for r in create_app(load_config(config)).routes if isinstance(r, Route)]

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
