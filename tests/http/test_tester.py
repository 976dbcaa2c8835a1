"""The event tester (config `tester: true`): its page in headless Chromium (Debian's, as in
test_browser.py), and its API in process: off by default, behind the source's write key,
every error JSON, secrets redacted, the dead letters it lists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import AsyncIterator

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from engine.config import load_config
from engine.intake import Intake
from tests.http.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.delivery import drain, open_outbox
from tests.support.scripted_server import Reply, ScriptedServer
from tests.support.shim import (
    SECRETS,
    WRITE_KEY,
    RunningShim,
    in_process,
    shim_config,
    until,
)

KEY = (WRITE_KEY, "")
TESTER = "tester: true\n"
IDENTIFY = {"type": "identify", "userId": "u1", "messageId": "dead-1",
            "traits": {"email": "jane@example.com"}}


@pytest.fixture
async def shim(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(shim_config(tmp_path, "https://d.example", dry_run=True, extra=TESTER)) as client:
        yield client


@pytest.mark.anyio
async def test_the_tester_is_off_unless_the_configuration_asks(tmp_path: Path) -> None:
    async with in_process(shim_config(tmp_path, "https://d.example", dry_run=True)) as client:
        for path in ("/tester", "/tester/tester.js", "/tester/api/destinations"):
            reply = await client.get(path, auth=KEY)
            assert reply.status_code == 404
            assert reply.json() == {"success": False, "code": "not_found",
                                    "message": f"no such endpoint: GET {path}"}
    assert load_config(shim_config(tmp_path, "https://d.example")).tester is False


@pytest.mark.anyio
async def test_the_page_is_static_and_locked_down(shim: httpx.AsyncClient) -> None:
    for path, kind in (("/tester", "text/html"), ("/tester/tester.js", "text/javascript"),
                       ("/tester/tester.css", "text/css")):
        reply = await shim.get(path)
        assert reply.status_code == 200 and reply.headers["content-type"].startswith(kind)
        assert "script-src 'self'" in reply.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert not any(secret in reply.text for secret in SECRETS)
    assert "innerHTML" not in (await shim.get("/tester/tester.js")).text
    missing = await shim.get("/tester/other.js")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


@pytest.mark.anyio
async def test_its_api_wants_the_write_key(shim: httpx.AsyncClient) -> None:
    for auth in (None, ("not-a-key", "")):
        for reply in (await shim.get("/tester/api/destinations", auth=auth),
                      await shim.post("/tester/api/preview/calixa", content="{}", auth=auth),
                      await shim.get("/v1/dead-letters", auth=auth)):
            assert reply.status_code == 401 and reply.json()["success"] is False
            assert reply.json()["code"] == "unauthorized"


@pytest.mark.anyio
async def test_destinations_name_settings_never_their_values(shim: httpx.AsyncClient) -> None:
    reply = await shim.get("/tester/api/destinations", auth=KEY)
    assert reply.status_code == 200
    view = reply.json()
    assert view["source"] == "web" and view["dry_run"] is True
    assert [d["slug"] for d in view["destinations"]] == ["calixa", "callexa", "skalin"]
    calixa = view["destinations"][0]
    assert [s["name"] for s in calixa["settings"]] == ["api_key", "endpoint"]
    assert calixa["settings"][0]["secret"] is True and "default" not in calixa["settings"][0]
    assert [r["name"] for r in calixa["rules"]] == ["identify", "group", "b2b-track", "other-track"]
    assert calixa["sample"]["event"] == "Account Created"
    assert not any(secret in reply.text for secret in SECRETS)


@pytest.mark.anyio
async def test_preview_as_typed(shim: httpx.AsyncClient) -> None:
    async def preview(text: str, slug: str = "calixa") -> httpx.Response:
        return await shim.post(f"/tester/api/preview/{slug}", content=text, auth=KEY)

    broken = await preview('{"type": "track",\n  "event": }')
    assert broken.json() == {"event_error": {"message": "not JSON: Expecting value", "line": 2, "column": 12}}
    assert (await preview("[1]")).json() == {"event_error": {"message": "a message must be a JSON object"}}
    (sent,) = (await preview('{"type": "track", "event": "signed_up", "userId": "u1"}')).json()["outcomes"]
    assert sent["rule"] == "b2b-track" and sent["request"]["json"]["event"] == "Signed Up"
    assert sent["request"]["headers"]["Authorization"] == "[redacted]"
    (skipped,) = (await preview('{"type": "track", "event": "Foo", "userId": "u1"}')).json()["outcomes"]
    assert skipped["rule"] == "other-track" and skipped["skipped"].endswith("'Foo' is not one of them")
    (page,) = (await preview('{"type": "page", "userId": "u1"}')).json()["outcomes"]
    assert page == {"destination": "calixa",
                    "skipped": "Calixa does not accept page calls (it accepts group, identify, track)"}
    (rejected,) = (await preview('{"type": "track", "userId": "u1"}')).json()["outcomes"]
    assert rejected == {"error": "a track event needs 'event'"}
    leak = await preview('{"type": "identify", "userId": "calixa-key-123", "traits": {"k": "skalin-key-123"}}')
    assert not any(secret in leak.text for secret in SECRETS)
    other = await preview("{}", "braze")
    assert other.status_code == 404 and other.json()["message"] == "source 'web' does not send to 'braze'"
    binary = await shim.post("/tester/api/preview/calixa", content=b"\xff\xfe", auth=KEY)
    assert binary.status_code == 400 and binary.json()["message"] == "the event must be UTF-8 text"


@pytest.mark.anyio
async def test_dead_letters_are_listed_for_their_source_only(tmp_path: Path) -> None:
    with ScriptedServer() as destinations:
        destinations.script("/calixa", Reply(400, body=b'{"error": "bad key calixa-key-123"}'))
        async with in_process(shim_config(tmp_path, destinations.url(), extra=TESTER)) as client:
            assert (await client.post("/v1/identify", json=IDENTIFY, auth=KEY)).status_code == 200

            async def dead() -> list[dict[str, object]]:
                letters: list[dict[str, object]] = (await client.get("/v1/dead-letters", auth=KEY)).json()["dead_letters"]
                return letters
            await until(dead)
            (letter,) = await dead()
            assert letter["destination"] == "calixa" and letter["rule"] == "identify"
            assert letter["last_status"] == 400 and letter["source"] == "web"
            assert "calixa-key-123" not in str(letter) and "[redacted]" in str(letter["last_body"])
            others = await client.get("/v1/dead-letters", auth=("other-write-key-456", ""))
            assert others.json() == {"dead_letters": []}


def _seed_a_dead_letter(tmp_path: Path, url: str) -> None:
    """Before the dry-run shim starts: a Calixa request that got a 400, in its outbox."""
    config = load_config(shim_config(tmp_path, url))
    outbox = open_outbox(config.store)
    source = config.source("web")
    assert source is not None
    Intake(config, outbox).accept(source, [{**IDENTIFY, "messageId": "seeded-1"}])
    drain(config, outbox)
    assert [r["destination"] for r in outbox.rows("dead")] == ["calixa"]
    outbox.close()


def _editor(page: Page, text: str) -> None:
    page.locator("#event").fill(text)


def test_the_tester_page_in_a_browser(tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "run `make test`: it installs Chromium"
    with ScriptedServer() as destinations:
        destinations.script("/calixa", Reply(400, body=b'{"error": "no"}'))
        _seed_a_dead_letter(tmp_path, destinations.url())
        config = shim_config(tmp_path, destinations.url(), dry_run=True, extra=TESTER)
        with RunningShim(config) as shim, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(shim.url("/tester"))

                # A wrong key says why, and shows nothing else.
                page.locator("#key").fill("not-a-key")
                page.locator("#connect button").click()
                expect(page.locator("#status")).to_have_text("Cannot connect: unknown write key")
                expect(page.locator("#workspace")).to_be_hidden()
                errors.clear()  # the browser logs the 401 itself

                page.locator("#key").fill(WRITE_KEY)
                page.locator("#connect button").click()
                expect(page.locator("#status")).to_contain_text("Source web: 3 destination(s); dry run")
                expect(page.locator("#destination option")).to_have_count(3)

                # Calixa's own example is the starting event: a request, by its rule.
                page.locator("#destination").select_option("calixa")
                request = page.locator("#outcomes li[data-kind=request]")
                expect(request).to_contain_text("rule b2b-track POST")
                expect(request.locator("pre")).to_contain_text('"Authorization": "[redacted]"')
                expect(page.locator("#rules li")).to_have_count(4)

                # As you type: a syntax error where it is, then a skip with the rule that
                # decided, then a rejection, then a call type Calixa does not take.
                _editor(page, '{"type": "track",\n  "event": ')
                expect(page.locator("#event-error")).to_have_text(re.compile(r"^line 2, column \d+: not JSON: "))
                _editor(page, "")
                page.locator("#event").press_sequentially('{"type": "track", "userId": "u1", "event": "Foo"}')
                expect(page.locator("#event-error")).to_be_hidden()
                skipped = page.locator("#outcomes li[data-kind=skipped]")
                expect(skipped).to_contain_text("rule other-track skipped: Calixa accepts only")
                _editor(page, '{"type": "track", "userId": "u1"}')
                expect(page.locator("#outcomes li[data-kind=error]")).to_have_text(
                    "rejected: a track event needs 'event'")
                _editor(page, '{"type": "page", "userId": "u1"}')
                expect(skipped).to_have_text(
                    "skipped: Calixa does not accept page calls (it accepts group, identify, track)")

                # Recent requests: the seeded dead letter; then an event sent through the
                # tracking API is recorded (dry run) and listed.
                expect(page.locator("#dead summary")).to_contain_text("calixa identify: 400")
                _editor(page, '{"type": "identify", "userId": "u9", "traits": {"email": "u9@example.com"}}')
                page.locator("#send").click()
                expect(page.locator("#sent")).to_have_text("accepted")
                recorded = page.locator("#recorded summary")
                expect(recorded.filter(has_text="calixa identify: POST")).to_have_count(1)
                expect(recorded.filter(has_text="skalin")).to_have_count(1)

                content = page.content()
                assert not any(secret in content for secret in SECRETS if secret != WRITE_KEY)
                assert errors == []
            finally:
                browser.close()
