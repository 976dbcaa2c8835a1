"""Bulk requests: several due jobs of one destination and source go as one request, as the
mapping's `batch` says; a lone one goes as itself; failed items are retried alone."""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap
from pathlib import Path

import pytest

from engine.config import load_config
from engine.delivery.worker import Deliverer
from tests.support.builders import problems
from tests.support.delivery import accept, drain, open_outbox, setup
from tests.support.scripted_server import Reply, ScriptedServer

BULKY = """\
    destination: Bulky
    slug: bulky
    settings:
      endpoint: {type: string, required: true}
      token: {type: string, required: true, secret: true}
    request:
      url: "{{ settings.endpoint }}/one"
      body: {id: "{{ messageId }}"}
      batch_item: {into: events, value: {id: "{{ messageId }}", n: "{{ properties.n }}"}}
    batch:
      max_items: 3
      failed_items: "errors[].index"
      request:
        url: "{{ settings.endpoint }}/many?v=1"
        auth: {Authorization: "Bearer {{ settings.token }}"}
        body: {events: "{{ items.events }}", sent_by: engine}
    rules:
      - name: all
        when: {type: track}
    """


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def bulky_config(tmp_path: Path, url: str, max_wait: float = 0, *, store: str) -> Path:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    text = textwrap.dedent(BULKY).replace("  max_items: 3\n", f"  max_items: 3\n  max_wait: {max_wait}\n")
    (mappings / "bulky.yaml").write_text(text)
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(f"""\
        mappings: {mappings}
        store: {json.dumps(store)}
        delivery: {{timeout: 2, backoff_initial: 0.01, backoff_max: 0.05, max_attempts: 5, max_age: 60, concurrency: 4}}
        sources:
          - name: web
            write_key: web-write-key
            destinations:
              bulky: {{endpoint: "{url}", token: bulky-token-1}}
        """))
    return path


def track(n: int) -> dict:
    return {"type": "track", "userId": "u1", "event": "Clicked", "messageId": f"m{n}",
            "properties": {"n": n}}


def test_due_jobs_go_in_bulks_of_at_most_max_items_and_a_lone_one_as_itself(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config = load_config(bulky_config(tmp_path, server.url(), store=store))
    outbox = open_outbox(config.store)
    accept(config, outbox, *[track(n) for n in range(7)])
    drain(config, outbox)
    bulks = sorted(server.at("/many"), key=lambda r: json.loads(r.body)["events"][0]["id"])
    assert [len(json.loads(r.body)["events"]) for r in bulks] == [3, 3]
    assert json.loads(bulks[0].body) == {"events": [{"id": "m0", "n": 0}, {"id": "m1", "n": 1},
                                                    {"id": "m2", "n": 2}], "sent_by": "engine"}
    assert bulks[0].path == "/many?v=1"
    assert bulks[0].headers["Authorization"] == "Bearer bulky-token-1"
    assert bulks[0].headers["Content-Type"] == "application/json"
    (single,) = server.at("/one")
    assert json.loads(single.body) == {"id": "m6"}
    assert outbox.counts() == {"delivered": 7}
    # Secrets stay out of the store: the bulk's auth is rendered at send time too.
    outbox.close()
    assert b"bulky-token-1" not in b"".join(p.read_bytes() for p in tmp_path.glob("outbox.sqlite3*"))


def test_a_due_item_waits_max_wait_for_others_to_share_its_request(store: str, tmp_path: Path,
                                                                    server: ScriptedServer) -> None:
    config = load_config(bulky_config(tmp_path, server.url(), max_wait=0.5, store=store))
    outbox = open_outbox(config.store)

    async def scenario() -> None:
        stop = asyncio.Event()
        deliverer = Deliverer(config, outbox)
        running = asyncio.create_task(deliverer.run(stop))
        accept(config, outbox, track(0))
        deliverer.wakeup.set()
        await asyncio.sleep(0.1)  # the first item is due and waits for company
        accept(config, outbox, track(1), track(2))
        deliverer.wakeup.set()
        await asyncio.to_thread(server.wait_for, "/many", 1)
        stop.set()
        await running

    asyncio.run(scenario())
    (bulk,) = server.at("/many")
    assert [e["id"] for e in json.loads(bulk.body)["events"]] == ["m0", "m1", "m2"]
    assert server.at("/one") == []


def test_items_the_response_names_as_failed_are_retried_alone(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    server.script("/many", Reply(200, body=b'{"errors": [{"index": 1, "message": "bad"}]}'))
    config = load_config(bulky_config(tmp_path, server.url(), store=store))
    outbox = open_outbox(config.store)
    accept(config, outbox, *[track(n) for n in range(3)])
    deliverer = drain(config, outbox)
    assert len(server.at("/many")) == 1
    (retried,) = server.at("/one")
    assert json.loads(retried.body) == {"id": "m1"}
    assert outbox.counts() == {"delivered": 3}
    assert deliverer.metrics.value("requests_retried_total", destination="bulky") == 1


def test_an_answer_in_several_chunks_is_read_whole(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    server.script("/many", Reply(200, body=b'{"errors": [{"index": 2, "message": "bad"}]}', split=0.05))
    config = load_config(bulky_config(tmp_path, server.url(), store=store))
    outbox = open_outbox(config.store)
    accept(config, outbox, *[track(n) for n in range(3)])
    drain(config, outbox)
    assert [json.loads(r.body) for r in server.at("/one")] == [{"id": "m2"}]


def test_a_failed_bulk_fails_each_of_its_jobs(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    server.script("/many", Reply(400, body=b"no"))
    config = load_config(bulky_config(tmp_path, server.url(), store=store))
    outbox = open_outbox(config.store)
    accept(config, outbox, *[track(n) for n in range(3)])
    drain(config, outbox)
    dead = outbox.rows("dead")
    assert sorted(r["message_id"] for r in dead) == ["m0", "m1", "m2"]
    assert {(r["last_status"], r["last_body"]) for r in dead} == {(400, "no")}


def test_skalin_hits_due_together_go_to_its_bulk_api(store: str, tmp_path: Path, server: ScriptedServer) -> None:
    config, outbox = setup(tmp_path, server.url(), only=("skalin",), store=store)
    accept(config, outbox,
           {"type": "track", "userId": "u1", "event": "myFeature", "messageId": "t1",
            "context": {"groupId": "acct_1", "ip": "203.0.113.9"}},
           {"type": "identify", "userId": "u2", "messageId": "i1", "traits": {"email": "a@example.com"}},
           # Engage traits have no place in a bulk hit: this one goes as a form.
           {"type": "identify", "userId": "u3", "messageId": "e1", "traits": {"email": "b@example.com",
            "vip": True}, "context": {"personas": {"computation_key": "vip"}}})
    drain(config, outbox)
    (bulk,) = server.at("/skalin/bulk")
    assert bulk.path == "/skalin/bulk?rec=1&client_id=c1"
    assert bulk.headers["Authorization"] == "Basic " + base64.b64encode(b"skalin-key-one:").decode()
    assert bulk.headers["Cache-Control"] == "no-cache"
    body = json.loads(bulk.body)
    (feature,) = body["features"]
    assert (feature["name"], feature["identity"], feature["customerId"], feature["cip"]) == (
        "myFeature", {"id": "u1"}, "acct_1", "203.0.113.9")
    assert len(feature["eventId"]) == 16 and len(feature["visitId"]) == 16
    (identity,) = body["identities"]
    assert identity["identity"] == {"email": "a@example.com"}
    (engage,) = server.at("/skalin")
    assert b"action=ui" in engage.body and b"traits=" in engage.body
    assert outbox.counts() == {"delivered": 3}


@pytest.mark.parametrize(("text", "expected"), [
    ("request: {url: x, batch_item: {into: events, value: 1}}\n",
     "demo.yaml:4:19: batch_item needs a file-level 'batch' that says how the bulk request is made"),
    ("request: {url: x}\nbatch: {max_items: 2, request: {url: y, body: 1}}\n",
     "demo.yaml:5:1: 'batch' is declared but no rule's request has a batch_item"),
    ("request: {url: x, batch_item: {into: e, value: 1}}\n"
     "batch: {max_items: 2, request: {url: '{{ userId }}', body: 1}}\n",
     "demo.yaml:5:38: the bulk request is rendered at send time from settings only; found: userId"),
    ("request: {url: x}\nbatch: {max_items: 2, failed_items: 'e', request: {url: y, body: 1}}\n"
     "rules: [{name: b, request: {batch_item: {into: one, value: 1}}},"
     " {name: c, request: {batch_item: {into: two, value: 2}}}]\n",
     "failed_items counts the items of one list, and the rules' batch_items go into several (one, two)"),
])
def test_batch_problems_are_found_at_load(tmp_path: Path, text: str, expected: str) -> None:
    rules = "" if "rules:" in text else "rules: [{name: a}]\n"
    found = problems(tmp_path, "destination: D\nslug: d\n" + rules + text)
    assert any(line.endswith(expected) for line in found), found
