"""Real client libraries, with only their host changed, against the shim served for real by
uvicorn on 127.0.0.1: Segment's Python client (segment-analytics-python) and RudderStack's
(rudder-sdk-python)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from segment.analytics.client import Client

from tests.support.scripted_server import ScriptedServer
from tests.support import skalin
from tests.support.shim import WRITE_KEY, RunningShim, shim_config, wait_for


@pytest.fixture
def destinations() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def shim(tmp_path: Path, destinations: ScriptedServer) -> Iterator[RunningShim]:
    with RunningShim(shim_config(tmp_path, destinations.url())) as running:
        yield running


def bodies(server: ScriptedServer, path: str) -> list[Any]:
    return [json.loads(r.body) for r in server.at(path)]


def test_the_official_python_client_reaches_the_destinations(shim: RunningShim, destinations: ScriptedServer) -> None:
    client = Client(WRITE_KEY, host=shim.url())  # the host changed, nothing else
    client.identify("userId123", {"email": "john.doe@example.com", "createdAt": "2020-01-01T00:00:00Z"})
    client.group("userId123", "0e8c78ea9d97a7b8185e8632",
                 {"name": "Initech", "industry": "Technology", "employees": 329, "total billed": 830})
    client.track("userId123", "Account Created", {"account_name": "Initech"}, context={"groupId": "acct_123"})
    client.track("userId123", "myFeature")
    client.page("userId123", name="myFeature")
    client.flush()
    client.shutdown()

    # Calixa: identify, group and the B2B track; not the other track, not the page.
    destinations.wait_for("/calixa", 3)
    wait_for(lambda: len(skalin.hits(destinations)) == 4)
    destinations.wait_for("/callexa", 1)
    calixa = {b["type"]: b for b in bodies(destinations, "/calixa")}
    assert set(calixa) == {"identify", "group", "track"}
    assert calixa["track"]["event"] == "Account Created"
    assert calixa["track"]["context"]["groupId"] == "acct_123"
    assert calixa["group"]["traits"]["total_billed"] == 830 and calixa["group"]["traits"]["employees"] == 329
    assert calixa["identify"]["traits"]["email"] == "john.doe@example.com"
    assert calixa["identify"]["context"]["library"]["name"] == "analytics-python"
    assert "writeKey" not in calixa["identify"]
    received = destinations.at("/calixa")[0]
    assert received.headers["Authorization"] == "Basic " + base64.b64encode(b"calixa-key-123:").decode()
    assert received.headers["User-Agent"] == "Segment.io/1.0"

    # Callexa: the identify, with its email; surveyed once per customer.
    (callexa,) = bodies(destinations, "/callexa")
    assert callexa["traits"]["email"] == "john.doe@example.com"

    # Skalin: page and track as features, identify as an identity; group skipped. Hits due
    # together go in one bulk request, a lone one as a form.
    found = skalin.hits(destinations)
    assert len(found) == 4
    features = sorted(h["name"] for h in found if h["action"] == "ev")
    assert features == ["Account Created", "myFeature", "myFeature"]
    (identity,) = [h for h in found if h["action"] == "ui"]
    assert identity["identity"] == {"email": "john.doe@example.com"}
    assert all(h["client_id"] == "client-1" and len(h["event_id"]) == 16 for h in found)


def test_the_official_client_with_gzip(shim: RunningShim, destinations: ScriptedServer) -> None:
    client = Client(WRITE_KEY, host=shim.url(), gzip=True)
    client.track("u1", "Signed Up", {"email": "a@example.com"})
    client.flush()
    client.shutdown()
    destinations.wait_for("/calixa", 1)
    assert bodies(destinations, "/calixa")[0]["event"] == "Signed Up"


def test_rudderstacks_python_sdk_reaches_the_destinations(shim: RunningShim,
                                                         destinations: ScriptedServer) -> None:
    from rudderstack.analytics.client import Client as RudderClient

    client = RudderClient(WRITE_KEY, host=shim.url())  # its data plane: the shim
    client.identify("userId123", {"email": "john.doe@example.com", "createdAt": "2020-01-01T00:00:00Z"})
    client.track("userId123", "Account Created", {"account_name": "Initech"})
    client.flush()
    client.shutdown()
    destinations.wait_for("/calixa", 2)
    destinations.wait_for("/callexa", 1)
    calixa = {b["type"]: b for b in bodies(destinations, "/calixa")}
    # It puts an identify's traits in context.traits alone: read as the identify's traits.
    assert calixa["identify"]["traits"]["email"] == "john.doe@example.com"
    assert calixa["track"]["event"] == "Account Created"
    (callexa,) = bodies(destinations, "/callexa")
    assert callexa["traits"]["email"] == "john.doe@example.com"
    wait_for(lambda: len(skalin.hits(destinations)) == 2)
    (identity,) = [h for h in skalin.hits(destinations) if h["action"] == "ui"]
    assert identity["identity"] == {"email": "john.doe@example.com"}
