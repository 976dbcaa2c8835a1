"""Real Node client libraries (tests/js: @segment/analytics-node, @rudderstack/rudder-sdk-node,
installed by `make test` from the npm registry), their host changed only, against the shim
served for real on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import skalin
from tests.support.paths import ROOT
from tests.support.scripted_server import ScriptedServer
from tests.support.shim import WRITE_KEY, RunningShim, shim_config, wait_for

SCRIPT = ROOT / "tests" / "js" / "node_sdks.mjs"


@pytest.fixture
def destinations() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.mark.parametrize("library", ["segment", "rudderstack"])
def test_node_clients_reach_the_destinations(tmp_path: Path, destinations: ScriptedServer,
                                             library: str) -> None:
    assert (ROOT / "tests" / "js" / "node_modules").is_dir(), "run `make test`: it installs tests/js"
    with RunningShim(shim_config(tmp_path, destinations.url())) as shim:
        sent = subprocess.run(["node", str(SCRIPT), library, shim.url(), WRITE_KEY],
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        destinations.wait_for("/calixa", 2)
        destinations.wait_for("/callexa", 1)
        wait_for(lambda: len(skalin.hits(destinations)) == 2)
    calixa = {body["type"]: body for body in (json.loads(r.body) for r in destinations.at("/calixa"))}
    assert calixa["identify"]["traits"]["email"] == "john.doe@example.com"  # rudderstack: from context.traits
    assert calixa["track"]["event"] == "Account Created"
    assert "writeKey" not in calixa["identify"]
    (callexa,) = [json.loads(r.body) for r in destinations.at("/callexa")]
    assert callexa["traits"]["email"] == "john.doe@example.com"
    (identity,) = [h for h in skalin.hits(destinations) if h["action"] == "ui"]
    assert identity["identity"] == {"email": "john.doe@example.com"}
