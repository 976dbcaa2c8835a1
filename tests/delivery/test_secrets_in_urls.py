"""Secret settings in a url path or query: stored as placeholders, put in at send time."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import engine
from engine.config import load_config
from engine.delivery.outbox import NewJob
from engine.mapping.preview import preview

from tests.support.delivery import DELIVERY, accept, drain, open_outbox, stored_content
from tests.support.scripted_server import ScriptedServer

TOKEN = "bot:tok/en+1"       # a path separator and reserved characters, to be encoded
KEY = "key with&spaces"

MAPPING = """\
    destination: Tokens
    slug: tokens
    settings:
      endpoint: {type: string, required: true}
      token: {type: string, required: true, secret: true}
      key: {type: string, required: true, secret: true}
    request:
      url: "{{ settings.endpoint }}/bot{{ settings.token }}/send/{{ userId | path_segment }}"
      query: {v: "2"}
      auth_query: {access_token: "{{ settings.key }}"}
      body: {user: "{{ userId }}"}
    rules: [{name: all}]
    """


def mapping_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "tokens.yaml").write_text(textwrap.dedent(MAPPING), encoding="utf-8")
    return folder


def test_the_request_is_previewed_redacted_and_stored_without_secrets(tmp_path: Path) -> None:
    dest = engine.load(mapping_dir(tmp_path))["tokens"]
    settings = {"endpoint": "https://api.example", "token": TOKEN, "key": KEY}
    (request,) = dest.map({"type": "identify", "userId": "u 1"}, settings=settings)
    assert isinstance(request, engine.Request)
    assert request.url == ("https://api.example/botbot%3Atok%2Fen%2B1/send/u%201?v=2"
                           "&access_token=key%20with%26spaces")
    stored = NewJob.from_request(request).request.decode()
    assert TOKEN not in stored and KEY not in stored and "tok%2Fen" not in stored
    assert json.loads(stored)["url"] == "https://api.example/bot{secret:token}/send/u%201?v=2"
    (shown,) = preview(dest.bind(settings), {"type": "identify", "userId": "u 1"})
    assert shown["request"]["url"] == ("https://api.example/bot[redacted]/send/u%201?v=2"
                                       "&access_token=[redacted]")


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def test_delivery_sends_the_current_secrets(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    mappings = mapping_dir(tmp_path)

    def config_with(token: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(textwrap.dedent(f"""\
            mappings: {mappings}
            store: {json.dumps(store)}
            delivery: {json.dumps(DELIVERY)}
            sources:
              - name: web
                write_key: web-write-key
                destinations:
                  tokens: {{endpoint: "{server.url()}", token: "{token}", key: "{KEY}"}}
            """), encoding="utf-8")
        return path

    config = load_config(config_with("old-token"))
    outbox = open_outbox(config.store)
    accept(config, outbox, {"type": "identify", "userId": "u1", "messageId": "m1"})
    data = stored_content(config.store)  # on each backend (the `store` fixture)
    assert b"old-token" not in data and KEY.encode() not in data
    # The token is rotated before delivery: the pending request goes with the new one.
    rotated = load_config(config_with(TOKEN))
    drain(rotated, outbox)
    (received,) = server.received
    # (The HTTP client writes the ':' of the token unescaped, as a path may hold it.)
    assert received.path == "/botbot:tok%2Fen%2B1/send/u1?v=2&access_token=key%20with%26spaces"
    assert outbox.counts()["delivered"] == 1
