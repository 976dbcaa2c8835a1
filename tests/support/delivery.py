"""Configurations and runs shared by the delivery tests."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

from engine.config import Config, load_config
from engine.delivery import Outbox, open_outbox as open_store
from engine.delivery.worker import Deliverer
from engine.intake import Intake
from engine.store import Store

from .paths import MAPPINGS


DELIVERY = {"timeout": 0.5, "backoff_initial": 0.01, "backoff_max": 0.05, "max_attempts": 5,
            "max_age": 60, "concurrency": 4}


def write_config(tmp_path: Path, url: str, *, delivery: dict[str, Any] | None = None,
                 key: str = "calixa-key-one", only: tuple[str, ...] = ("calixa",),
                 extra: str = "", store: str | None = None) -> Path:
    """A configuration whose source `web` sends to the destinations in `only`, stored in
    `store` (a SQLite file in `tmp_path` unless given: a PostgreSQL URL, say)."""
    lines = {
        "calixa": f'calixa: {{api_key: {key}, endpoint: "{url}/calixa"}}',
        "callexa": f'callexa: {{api_key: callexa-key-one, endpoint: "{url}/callexa"}}',
        "skalin": f'skalin: {{api_key: skalin-key-one, client_id: c1, endpoint: "{url}/skalin"}}',
    }
    destinations = "\n".join(" " * 14 + lines[name] for name in only)
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(f"""\
        mappings: {MAPPINGS}
        store: {json.dumps(store or str(tmp_path / 'outbox.sqlite3'))}
        delivery: {json.dumps({**DELIVERY, **(delivery or {})})}
        sources:
          - name: web
            write_key: web-write-key
            destinations:
""") + destinations + "\n" + extra)
    return path


def identify(n: int | str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": f"u{n}", "messageId": f"m{n}",
            "traits": {"email": f"user{n}@example.com", **traits}}


def accept(config: Config, outbox: Outbox, *events: dict[str, Any]) -> None:
    source = config.source("web")
    assert source is not None
    Intake(config, outbox).accept(source, list(events))


def drain(config: Config, outbox: Outbox) -> Deliverer:
    deliverer = Deliverer(config, outbox)
    asyncio.run(deliverer.drain(max_seconds=30))
    return deliverer


OPEN: list[Outbox] = []
"""Every outbox a test opened; conftest closes them when the test ends."""


def open_outbox(store: Store | str, **kwargs: Any) -> Outbox:
    """The outbox `store` names (a SQLite file or a PostgreSQL URL), closed after the test."""
    outbox = open_store(store, **kwargs)
    OPEN.append(outbox)
    return outbox


def setup(tmp_path: Path, url: str, **kwargs: Any) -> tuple[Config, Outbox]:
    config = load_config(write_config(tmp_path, url, **kwargs))
    return config, open_outbox(config.store)


def stored_content(store: Store) -> bytes:
    """Every value the outbox `store` holds, as bytes: the SQLite file (and its WAL), or
    every row of every table of its PostgreSQL schema (bytea as stored, text as UTF-8)."""
    if isinstance(store, Path):
        return b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))
    import psycopg

    out = []
    with psycopg.connect(store.url, autocommit=True) as db:
        tables = [t for (t,) in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        assert "engine_outbox" in tables
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}"):
                out += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    return b"\n".join(out)
