"""`enqueue`, `deliver`, `dead-letters` and `validate --config` from the command line; the
outbox commands on each backend (the `store` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.delivery import write_config
from tests.support.storage import corrupt
from tests.support.scripted_server import Reply, ScriptedServer
from tests.support.cli import run
from tests.support.paths import MAPPINGS


def test_enqueue_deliver_and_manage_dead_letters(store: str, tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.script("/calixa", Reply(400, body=b'{"message": "unknown account"}'), Reply(200))
        config = write_config(tmp_path, server.url(), store=store)
        events = "\n".join(json.dumps(e) for e in [
            {"type": "identify", "userId": "u1", "messageId": "m1"},
            {"type": "identify", "userId": "u1", "messageId": "m1"},
            {"type": "page", "userId": "u1", "messageId": "m2"},
            {"type": "track", "userId": "u1"},
        ])
        result = run("enqueue", "--config", str(config), "--source", "web", stdin=events)
        assert result.returncode == 0, result.stderr
        assert [json.loads(line) for line in result.stdout.splitlines()] == [
            {"event": 1, "stored": ["calixa"], "skipped": {}},
            {"event": 2, "stored": ["calixa"], "duplicates": 1, "skipped": {}},
            {"event": 3, "stored": [], "skipped": {"calixa": "Calixa does not accept page calls (it accepts group, identify, track)"}},
            {"event": 4, "error": "a track event needs 'event'"},
        ]
        assert result.stderr.startswith("1 request stored in ") and result.stderr.strip().endswith("1 duplicate")

        result = run("deliver", "--config", str(config), "--until-idle")
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip().endswith("1 dead")

        listed = run("dead-letters", "list", "--config", str(config))
        (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
        assert row == {"id": 1, "source": "web", "destination": "calixa", "rule": "identify",
                       "message_id": "m1", "attempts": 1, "last_status": 400, "last_error": "HTTP 400"}
        shown = json.loads(run("dead-letters", "show", "1", "--config", str(config)).stdout)
        assert shown["last_body"] == '{"message": "unknown account"}'
        assert shown["request"]["url"] == server.url("/calixa")
        assert "Authorization" not in shown["request"]["headers"]

        assert run("dead-letters", "replay", "1", "--config", str(config)).stderr == "1 dead letter queued again\n"
        assert run("deliver", "--config", str(config), "--until-idle").stderr.strip() == "1 delivered"
        assert len(server.at("/calixa")) == 2
        assert run("dead-letters", "list", "--config", str(config)).stdout == ""


def test_purge_and_errors(store: str, tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.script("/calixa", Reply(501))
        config = write_config(tmp_path, server.url(), store=store)
        run("enqueue", "--config", str(config), "--source", "web",
            stdin='{"type": "identify", "userId": "u1", "messageId": "m1"}')
        run("deliver", "--config", str(config), "--until-idle")
        assert run("dead-letters", "show", "99", "--config", str(config)).stderr == "error: no dead letter with id 99\n"
        assert run("dead-letters", "purge", "--config", str(config)).stderr == "error: purge takes dead-letter ids, or --all\n"
        assert run("dead-letters", "purge", "--all", "--config", str(config)).stderr == "1 dead letter purged\n"
        result = run("enqueue", "--config", str(config), "--source", "mobile", stdin="")
        assert (result.returncode, result.stderr) == (2, "error: unknown source 'mobile' (known: web)\n")


def test_validate_checks_a_configuration_too(tmp_path: Path) -> None:
    good = write_config(tmp_path, "http://127.0.0.1:9")
    assert run("validate", "--config", str(good)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"mappings: {MAPPINGS}\ndelivery: {{retries: 3}}\n")
    result = run("validate", "--config", str(bad))
    assert (result.returncode, result.stdout) == (1, f"{bad}:2:12: unknown key 'retries'\n")


def test_enqueue_reads_on_past_events_it_cannot_store(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    stdin = ('{"type":"identify","userId":"u1","messageId":"m1","traits":{"email":"a@example.com","x":"\\ud800"}}\n'
             '{"type":"identify","userId":"u2","messageId":"m2","traits":{"email":"b@example.com"}}\n')
    result = run("enqueue", "--config", str(config), "--source", "web", stdin=stdin)
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    # Each destination's requests are serialized as the event is mapped: the one that cannot
    # be stored rejects the event for that destination, saying why.
    assert first == {"event": 1, "stored": [], "skipped": {
        "calixa": "rejected: calixa: rule identify: the request cannot be stored: "
                  "str is not valid UTF-8: surrogates not allowed"}}
    assert second == {"event": 2, "stored": ["calixa"], "skipped": {}}


@pytest.mark.parametrize("command", [
    ["dead-letters", "list"], ["dead-letters", "purge", "--all"], ["recorded"],
    ["enqueue", "--source", "web"], ["deliver", "--until-idle"], ["serve", "--port", "9"],
])
def test_a_corrupt_store_is_one_line_and_exit_1(tmp_path: Path, command: list[str]) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    corrupt(tmp_path / "outbox.sqlite3")
    result = run(*command, "--config", str(config),
                 stdin='{"type": "identify", "userId": "u1"}\n')
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: the outbox cannot be used: the store is corrupt (not a SQLite database): "
        f"{tmp_path / 'outbox.sqlite3'}: file is not a database")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "outbox.sqlite3").mkdir()  # a directory where the file should be
    config = write_config(tmp_path, "http://127.0.0.1:9")
    result = run("dead-letters", "list", "--config", str(config))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: the outbox cannot be used: the store cannot be opened: ")


def test_recorded_lists_what_a_dry_run_stored(store: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", store=store, only=("calixa", "callexa"),
                          extra="dry_run: true\n")
    events = "\n".join(json.dumps({"type": "identify", "userId": f"u{n}", "messageId": f"m{n}",
                                   "traits": {"email": f"u{n}@example.com"}}) for n in (1, 2))
    assert run("enqueue", "--config", str(config), "--source", "web", stdin=events).returncode == 0
    result = run("recorded", "--config", str(config), "--limit", "3")
    assert result.returncode == 0, result.stderr
    shown = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["source"], r["destination"], r["message_id"]) for r in shown] == [
        ("web", "callexa", "m2"), ("web", "calixa", "m2"), ("web", "callexa", "m1")]
    assert shown[0]["request"]["once"] == {"key": "callexa:u2@example.com", "window_seconds": 26 * 7 * 86400}
    assert run("recorded", "--config", str(config), "--source", "other").stdout == ""
