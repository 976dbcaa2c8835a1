"""`enqueue`, `deliver` and `dead-letters` from the command line, and configuration errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError

from tests.support.delivery import write_config
from tests.support.scripted_server import Reply, ScriptedServer
from tests.support.builders import shipped_slugs
from tests.support.cli import run
from tests.support.paths import MAPPINGS


def test_enqueue_deliver_and_manage_dead_letters(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.script("/calixa", Reply(400, body=b'{"message": "unknown account"}'), Reply(200))
        config = write_config(tmp_path, server.url())
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


def test_purge_and_errors(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.script("/calixa", Reply(501))
        config = write_config(tmp_path, server.url())
        run("enqueue", "--config", str(config), "--source", "web",
            stdin='{"type": "identify", "userId": "u1", "messageId": "m1"}')
        run("deliver", "--config", str(config), "--until-idle")
        assert run("dead-letters", "show", "99", "--config", str(config)).stderr == "error: no dead letter with id 99\n"
        assert run("dead-letters", "purge", "--config", str(config)).stderr == "error: purge takes dead-letter ids, or --all\n"
        assert run("dead-letters", "purge", "--all", "--config", str(config)).stderr == "1 dead letter purged\n"
        result = run("enqueue", "--config", str(config), "--source", "mobile", stdin="")
        assert (result.returncode, result.stderr) == (2, "error: unknown source 'mobile' (known: web)\n")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(("text", "messages"), [
    ("delivery: {timeout: -1}\n", ["config.yaml:1:21: 'timeout': min value is 0.001"]),
    ("delivery: {retries: 3}\n", ["config.yaml:1:12: unknown key 'retries'"]),
    ("sources: [{name: web}]\n", ["config.yaml:1:11: 'write_key' is required"]),
    ("sources: [{name: web, write_key: '${NOPE_NOT_SET}'}]\n",
     ["config.yaml:1:34: environment variable NOPE_NOT_SET is not set"]),
    ("sources: [{name: web, write_key: k, destinations: {nowhere: {}}}]\n",
     [f"config.yaml:1:52: unknown destination 'nowhere' (known: {shipped_slugs()})"]),
    ("sources: [{name: web, write_key: k, destinations: {calixa: {api_key: x}}}]\n",
     ["config.yaml:1:52: source 'web', calixa: missing required setting 'endpoint'"]),
    ("sources: [{name: a, write_key: k}, {name: a, write_key: k}]\n",
     ["config.yaml:1:43: duplicate source name 'a'", "config.yaml:1:57: two sources share a write key"]),
])
def test_config_errors_have_locations(tmp_path: Path, text: str, messages: list[str]) -> None:
    path = write(tmp_path, f"mappings: {MAPPINGS}\n" + text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = [str(p).replace(str(tmp_path) + "/", "").replace("config.yaml:", "config.yaml:", 1)
             for p in caught.value.problems]
    # The first line of the file is the mappings path; the text under test starts on line 2.
    assert found == [m.replace("config.yaml:1:", "config.yaml:2:") for m in messages]


def test_environment_interpolation(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
        mappings: {MAPPINGS}
        sources:
          - name: web
            write_key: ${{WEB_KEY}}
            destinations:
              skalin: {{api_key: "${{SKALIN_KEY}}", client_id: "${{SKALIN_CLIENT:-default-client}}"}}
        """)
    config = load_config(path, env={"WEB_KEY": "wk-123", "SKALIN_KEY": "sk-456"})
    assert config.sources[0].write_key == "wk-123"
    assert config.sources[0].destinations["skalin"] == {"api_key": "sk-456", "client_id": "default-client"}
    assert set(config.secrets()) == {"wk-123", "sk-456"}


def test_validate_checks_a_configuration_too(tmp_path: Path) -> None:
    good = write_config(tmp_path, "http://127.0.0.1:9")
    assert run("validate", "--config", str(good)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"mappings: {MAPPINGS}\ndelivery: {{retries: 3}}\n")
    result = run("validate", "--config", str(bad))
    assert (result.returncode, result.stdout) == (1, f"{bad}:2:12: unknown key 'retries'\n")
