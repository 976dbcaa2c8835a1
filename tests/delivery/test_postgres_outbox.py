"""What only the PostgreSQL outbox does: many processes at once (here, one outbox object
each, with a connection of its own), dead processes' leases, migrations, wake-ups, and the
errors people see when the database is out of reach."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import psycopg
import pytest

from engine.config import load_config
from engine.delivery import open_outbox as open_store
from engine.delivery.outbox import Delivered, Job
from engine.delivery.postgres_schema import LATEST
from engine.errors import StoreError
from engine.store import PostgresStore, parse_store

from tests.delivery.test_outbox import request
from tests.support.delivery import open_outbox, write_config
from tests.support.paths import ROOT
from tests.support.postgres import PASSWORD, PostgresServer


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.store()


def at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """`work(i)` for i in range(count), on as many threads, started together."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_several_processes_lease_at_once_and_never_the_same_job(url: str) -> None:
    open_outbox(url).enqueue("web", [request(n) for n in range(300)])
    outboxes = [open_outbox(url) for _ in range(4)]

    def lease_until_empty(i: int) -> list[int]:
        outboxes[i].claim_delivery()
        taken: list[int] = []
        while jobs := outboxes[i].lease({"calixa": 7}, 7, 600):
            taken += [job.id for job in jobs]
        return taken

    taken = at_once(4, lease_until_empty)
    every = [job_id for ids in taken for job_id in ids]
    assert len(every) == len(set(every)) == 300


def test_the_leases_of_a_process_that_died_are_taken_back_and_a_live_ones_are_not(url: str) -> None:
    first, second = open_outbox(url), open_outbox(url)
    first.enqueue("web", [request(1), request(2)])
    first.claim_delivery()
    assert len(first.lease({}, 4, 3600)) == 2
    assert second.claim_delivery() == 0  # the first one lives: its leases are its own
    assert second.lease({}, 4, 3600) == []
    first.close()  # as when its process dies: its session, and its token's lock, end
    assert second.claim_delivery() == 2
    assert sorted(job.message_id or "" for job in second.lease({}, 4, 3600)) == ["m1", "m2"]


def test_a_dead_processes_leases_are_taken_back_by_the_next_lease_soon(url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.delivery.postgres_outbox as postgres_outbox

    first, second = open_outbox(url), open_outbox(url)
    first.enqueue("web", [request(1)])
    second.claim_delivery()
    first.lease({}, 4, 3600)
    first.close()
    assert second.lease({}, 4, 3600) == []  # looked for dead ones at claim time only
    monkeypatch.setattr(postgres_outbox, "DEAD_RECHECK", 0.0)
    (job,) = second.lease({}, 4, 3600)
    assert job.message_id == "m1"


def test_a_late_outcome_of_a_lease_taken_back_changes_nothing(url: str) -> None:
    from engine.delivery.outbox import Dead

    first, second = open_outbox(url), open_outbox(url)
    first.enqueue("web", [request(1)])
    (job,) = first.lease({}, 4, 3600)
    first.close()  # it seemed dead (its connection dropped), and lives on
    assert second.claim_delivery() == 1
    (again,) = second.lease({}, 4, 3600)
    second.record([Delivered(again, 200)])
    open_outbox(url).record([Dead(job, 400, "HTTP 400", None)])  # the first one's, too late
    assert second.counts() == {"delivered": 1}


def test_the_same_message_from_two_intakes_at_once_is_stored_once(url: str) -> None:
    outboxes = [open_outbox(url) for _ in range(3)]
    results = at_once(3, lambda i: outboxes[i].enqueue("web", [request(n) for n in range(200)]))
    assert sum(r.stored for r in results) == 200
    assert sum(r.duplicates for r in results) == 400
    assert outboxes[0].counts() == {"pending": 200}


def test_one_holder_of_a_once_key_across_processes(url: str) -> None:
    keyed = [request(n, once_key="k", once_window=3600.0) for n in range(6)]
    open_outbox(url).enqueue("web", keyed)
    outboxes = [open_outbox(url) for _ in range(3)]
    leased: list[list[Job]] = at_once(3, lambda i: outboxes[i].lease({}, 10, 30))
    holders = [job for jobs in leased for job in jobs]
    assert len(holders) == 1
    owner = next(outbox for outbox, jobs in zip(outboxes, leased) if jobs)
    owner.record([Delivered(holders[0], 200)])
    for outbox in outboxes:  # the others were waiting on it: now they are suppressed
        assert outbox.lease({}, 10, 30) == []
    assert outboxes[0].counts() == {"delivered": 1, "suppressed": 5}


def test_migrations_run_once_when_many_processes_start_at_once(url: str, postgres: PostgresServer) -> None:
    at_once(4, lambda i: open_outbox(url))
    store = parse_store(url, Path())
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.url) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM engine_schema ORDER BY version")]
    assert versions == list(range(1, LATEST + 1))


def test_a_schema_newer_than_the_engine_is_refused(url: str) -> None:
    open_outbox(url).close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("INSERT INTO engine_schema (version, description) VALUES (%s, 'from the future')",
                   (LATEST + 1,))
    with pytest.raises(StoreError, match=f"schema is version {LATEST + 1}, newer than this engine"):
        open_store(url)


def test_new_jobs_wake_a_listener_whatever_process_stored_them(url: str) -> None:
    listening, writer = open_outbox(url), open_outbox(url)
    woken = threading.Event()
    assert listening.notify_new_jobs(woken.set)
    assert woken.wait(5)  # once on connecting: what came meanwhile was not notified
    woken.clear()
    writer.enqueue("web", [request(1)], status="recorded")  # nothing to deliver: no wake-up
    assert not woken.wait(0.5)
    writer.enqueue("web", [request(2)])
    assert woken.wait(5)


def test_wrong_credentials_are_one_clear_line_without_the_password(postgres: PostgresServer,
                                                                  tmp_path: Path) -> None:
    wrong = "not-the-Password-42"
    with pytest.raises(StoreError) as caught:
        open_store(postgres.url(password=wrong))
    message = str(caught.value)
    assert "password authentication failed" in message and "\n" not in message
    assert wrong not in message and "postgresql://engine:***@127.0.0.1:" in message

    config = write_config(tmp_path, "http://127.0.0.1:9", store=postgres.url(password=wrong))
    for command in (["deliver", "--until-idle"], ["dead-letters", "list"], ["serve", "--port", "0"]):
        done = subprocess.run([sys.executable, "-m", "engine", *command, "--config", str(config)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 1, done.stderr
        (line,) = done.stderr.splitlines()[-1:]
        assert line.startswith("error: cannot connect to the outbox at postgresql://engine:***@")
        assert wrong not in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError, match=r"^cannot connect to the outbox at postgresql://u:\*\*\*@127\.0\.0\.1:"
                                         rf"{port}/db: .*refused[^\n]*$"):
        open_store(f"postgresql://u:not-shown@127.0.0.1:{port}/db")


def test_without_the_driver_postgresql_is_a_clear_error(postgres: PostgresServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", store=postgres.store())
    probe = ("import sys; sys.modules['psycopg'] = None\n"  # as if it were not installed
             "from engine.cli import main\n"
             f"sys.exit(main(['dead-letters', 'list', '--config', {str(config)!r}]))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert (done.returncode, done.stderr) == (1, "error: the store is a PostgreSQL database, and the "
                                                 "PostgreSQL driver (psycopg 3) is not installed: "
                                                 "pip install 'engine[postgresql]'\n")


def test_the_store_comes_from_the_environment_and_its_password_is_never_shown(
        postgres: PostgresServer, tmp_path: Path) -> None:
    store = postgres.store()
    secret_part = store.split(":")[2].split("@")[0]  # the password, as the URL escapes it
    path = write_config(tmp_path, "http://127.0.0.1:9", store=store.replace(secret_part, "${PG_PASSWORD}"))
    config = load_config(path, env={"PG_PASSWORD": secret_part})
    assert isinstance(config.store, PostgresStore)
    assert PASSWORD not in repr(config) and secret_part not in repr(config)
    assert secret_part not in str(config.store) and "engine:***@" in str(config.store)
    assert secret_part in config.secrets()  # so delivery's logs redact it too
    open_outbox(config.store).enqueue("web", [request(1)])
    assert open_outbox(config.store).counts() == {"pending": 1}
