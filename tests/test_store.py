"""The configuration's `store:`: a SQLite path, or a PostgreSQL URL whose password is
shown nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError
from engine.store import PostgresStore, parse_store

from tests.support.paths import MAPPINGS


def test_a_path_is_a_sqlite_file_beside_the_configuration(tmp_path: Path) -> None:
    assert parse_store("var/outbox.sqlite3", tmp_path) == tmp_path / "var" / "outbox.sqlite3"


@pytest.mark.parametrize("url", ["postgresql://engine:s3cr%40t@db.example:5433/events",
                                 "postgres://engine:s3cr%40t@db.example/events?sslmode=require"])
def test_a_url_is_a_postgresql_database_and_its_password_is_hidden(url: str) -> None:
    store = parse_store(url, Path("/"))
    assert isinstance(store, PostgresStore) and store.url == url
    for shown in (str(store), repr(store), store.scrub(f"failed for {url} (password s3cr@t)")):
        assert "s3cr" not in shown
    assert str(store).startswith(url.split(":")[0] + "://engine:***@db.example")
    assert store.secret_values() == ["s3cr%40t", "s3cr@t"]


def test_a_url_without_a_password_is_kept_as_it_is() -> None:
    store = parse_store("postgresql://engine@db.example/events", Path("/"))
    assert str(store) == "postgresql://engine@db.example/events" and store.secret_values() == []


@pytest.mark.parametrize(("value", "message"), [
    ("postgresql://engine:pass@db.example:5432/", "names no database"),
    ("postgresql://engine:p/ss@db.example:5432/events", "not a valid PostgreSQL URL"),
    ("postgresql://engine:pass@db.example:port/events", "not a valid PostgreSQL URL"),
])
def test_a_bad_url_is_a_located_problem_that_does_not_show_the_password(
        tmp_path: Path, value: str, message: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"mappings: {MAPPINGS}\nstore: ${{STORE}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={"STORE": value})
    assert str(caught.value).startswith(f"{config}:2:8: store: ") and message in str(caught.value)
    assert "pass" not in str(caught.value).replace("password", "") and "p/ss" not in str(caught.value)
