"""analytics.js (@segment/analytics-next, from the npm registry) in headless Chromium (Debian's,
installed by `make test`), on a page served from another origin than the shim: every call
type, in its standard and batching modes, reaches the destinations through CORS."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import sync_playwright

from tests.support import skalin
from tests.support.paths import ROOT
from tests.support.scripted_server import ScriptedServer
from tests.support.shim import WRITE_KEY, RunningShim, shim_config, wait_for

JS = ROOT / "tests" / "js"
BUNDLE = JS / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
CHROMIUM = Path("/usr/bin/chromium")
# Headless, and none of Chromium's own calls home (this machine has no network for them).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Shop(http.server.SimpleHTTPRequestHandler):
    """The shop's site: its page, and analytics.js's files under /analytics-next/."""

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path.startswith("/analytics-next/"):
            return str(BUNDLE / path.removeprefix("/analytics-next/"))
        return str(JS / "browser" / path.lstrip("/"))

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def shop() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Shop)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode", ["standard", "batching"])
def test_analytics_js_in_a_browser_reaches_the_destinations(tmp_path: Path, shop: str, mode: str) -> None:
    assert BUNDLE.is_dir() and CHROMIUM.exists(), "run `make test`: it installs analytics.js and Chromium"
    with ScriptedServer() as destinations, RunningShim(shim_config(tmp_path, destinations.url())) as shim:
        api = shim.url().removeprefix("http://") + "/v1"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(f"{shop}/page.html?key={WRITE_KEY}&api={api}&mode={mode}")
                page.wait_for_function("window.done || window.errors.length > 0", timeout=30_000)
                assert page.evaluate("window.errors") == []
                destinations.wait_for("/calixa", 3)
                destinations.wait_for("/callexa", 1)
                wait_for(lambda: len(skalin.hits(destinations)) == 3)
            finally:
                browser.close()
    # Calixa: identify, the B2B track and group; not the page or the alias (it skips those).
    calixa = {body["type"]: body for body in (json.loads(r.body) for r in destinations.at("/calixa"))}
    assert set(calixa) == {"identify", "track", "group"}
    assert calixa["identify"]["traits"]["email"] == "john.doe@example.com"
    assert calixa["track"]["event"] == "Account Created" and calixa["track"]["context"]["groupId"] == "acct_1"
    assert calixa["group"]["groupId"] == "acct_1"
    assert calixa["identify"]["context"]["library"]["name"] == "analytics.js"
    assert "writeKey" not in calixa["identify"]
    # Callexa: a survey for the identify.
    (callexa,) = [json.loads(r.body) for r in destinations.at("/callexa")]
    assert callexa["traits"]["email"] == "john.doe@example.com"
    # Skalin: the identity, the track and the page as features, each with the browser's
    # address as cip (analytics.js sends none; the shim fills context.ip in).
    hits = skalin.hits(destinations)
    assert sorted((h["action"], h.get("name")) for h in hits) == [
        ("ev", "Account Created"), ("ev", "Reports"), ("ui", None)]
    assert {h["cip"] for h in hits} == {"127.0.0.1"}
