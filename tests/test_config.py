"""The configuration file: every problem located, environment variables, sources of both
kinds."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError
from tests.support.builders import shipped_slugs
from tests.support.paths import MAPPINGS


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
    ("sources: [{name: inbound, write_key: k}]\n",
     ["config.yaml:1:18: 'inbound' is a reserved source name; pick another"]),
    ("sources: [{name: callexa-sync-back, write_key: k}]\n"
     "inbound: {callexa-sync-back: {settings: {write_key: w}}}\n",
     ["config.yaml:1:18: source name 'callexa-sync-back' is taken by the inbound mapping of that name; "
      "pick another"]),
    ("sources: [{name: w, write_key: k, webhook_signature: first_event}]\n",
     ["config.yaml:1:54: webhook_signature needs a webhook_secret to check"]),
    ("sources: [{name: w, write_key: k, webhook_secret: s, webhook_signature: last}]\n",
     ["config.yaml:1:73: 'webhook_signature': unallowed value last"]),
    ("sources: [{name: w, write_key: k, webhook_max_body: 2 GB}]\n",
     ["config.yaml:1:53: webhook_max_body must be a size from 1 KB to 128 MB (like 512 KB, 16 MB, "
      "or bytes), got '2 GB'"]),
    ("sources: [{name: w, write_key: k, webhook_max_body: 200000000}]\n",
     ["config.yaml:1:53: webhook_max_body must be a size from 1 KB to 128 MB (like 512 KB, 16 MB, "
      "or bytes), got 200000000"]),
    ("inbound: {calixa: {settings: {}}}\n",
     ["config.yaml:1:11: 'calixa' is not an inbound (input: raw) mapping (those: callexa-sync-back)"]),
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


def test_inbound_sources_are_named_after_their_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
        mappings: {MAPPINGS}
        inbound:
          callexa-sync-back:
            settings: {{write_key: sync-key-1}}
            secret: signing-secret-1
        """)
    config = load_config(path)
    inbound = config.inbound["callexa-sync-back"]
    assert (inbound.kind, inbound.name, inbound.secret) == ("inbound", "callexa-sync-back", "signing-secret-1")
    assert config.any_source("callexa-sync-back") is inbound
    assert config.settings("callexa-sync-back", "callexa-sync-back") == {"write_key": "sync-key-1"}
    # Jobs an older version stored under "inbound" are still delivered with these settings.
    assert config.settings("inbound", "callexa-sync-back") == {"write_key": "sync-key-1"}
    assert {"sync-key-1", "signing-secret-1"} <= set(config.secrets())


def test_the_client_ip_trusts_x_forwarded_for_from_configured_proxies_only(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
        mappings: {MAPPINGS}
        trusted_proxies: [10.0.0.0/8, "::1"]
        """)
    config = load_config(path)
    assert config.client_ip("203.0.113.9", "198.51.100.7") == "203.0.113.9"  # not a proxy: ignored
    assert config.client_ip("10.1.2.3", "198.51.100.7") == "198.51.100.7"
    # Each proxy appends what it saw: the nearest untrusted address is the client.
    assert config.client_ip("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9") == "198.51.100.7"
    assert config.client_ip("::1", "not an address") == "::1"
    assert config.client_ip("10.1.2.3", None) == "10.1.2.3"
    bad = write(tmp_path, f"mappings: {MAPPINGS}\ntrusted_proxies: [10.0.0.0/8, nope]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert [str(p).replace(str(tmp_path) + "/", "") for p in caught.value.problems] == [
        "config.yaml:2:31: 'nope' is not an IP address or network (like 10.0.0.0/8)"]
