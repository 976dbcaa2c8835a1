"""A throwaway PostgreSQL server for the tests: initdb in a temporary folder, `postgres`
listening on 127.0.0.1 on a free port, stopped at the end of the test session.

`make test` installs PostgreSQL (Debian's `postgresql` package); without it the tests that
need it fail, saying so: they are never skipped. Each test gets a schema of its own (the
URL's `options=-csearch_path=...`), so tests never see each other's outbox; each xdist
worker runs its own server, so workers never collide.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg

__all__ = ["PostgresServer", "PASSWORD", "USER"]

USER = "engine"
PASSWORD = "pg-Secret/pass@word"
"""With characters a URL must escape, so that the tests see the password handled whole."""
DATABASE = "engine"


def _binaries() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian puts each version apart)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise RuntimeError("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin): "
                       "`make test` installs it (Debian's postgresql package)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One server, its data in a temporary folder; `store()` hands out a fresh schema."""

    def __init__(self, *, durable: bool = False) -> None:
        """`durable`: fsync as PostgreSQL ships (for the benchmark); the tests go without."""
        binaries = _binaries()
        # initdb refuses to run as root: then the server runs as the `postgres` user the
        # package creates, in a folder that user owns.
        self.run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="engine-pg-"))
        if self.run_as is not None:
            os.chown(self.folder, self.run_as.pw_uid, self.run_as.pw_gid)
        password_file = self.folder / "password"
        password_file.write_text(PASSWORD + "\n")
        if self.run_as is not None:
            os.chown(password_file, self.run_as.pw_uid, self.run_as.pw_gid)
        data = self.folder / "data"
        self._run([str(binaries / "initdb"), "-D", str(data), "-U", USER, "-E", "UTF8",
                   "--auth=scram-sha-256", f"--pwfile={password_file}", "--no-sync",
                   "--locale=C"])
        password_file.unlink()
        self.port = _free_port()
        # fsync off: the tests are about the engine's logic, not the disk's.
        settings = [] if durable else ["-c", "fsync=off", "-c", "full_page_writes=off",
                                       "-c", "shared_buffers=32MB"]
        self.process = subprocess.Popen(
            [str(binaries / "postgres"), "-D", str(data), "-p", str(self.port),
             "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1",
             "-c", "max_connections=300", "-c", "log_min_messages=fatal", *settings],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self._as_user())
        self._wait_ready()
        with self.connect("postgres") as db:
            db.execute(f"CREATE DATABASE {DATABASE}")
        self._schemas = itertools.count(1)

    def _as_user(self) -> dict[str, object]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": [],
                "cwd": str(self.folder)}

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(command, capture_output=True, text=True, **self._as_user())  # type: ignore[call-overload]
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the test PostgreSQL server exited with {self.process.returncode}")
            try:
                self.connect("postgres").close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def url(self, database: str = DATABASE, *, password: str = PASSWORD, schema: str | None = None) -> str:
        """The server's URL, for `store:` (the password escaped as a URL needs it)."""
        options = "" if schema is None else f"?options=-csearch_path%3D{schema}"
        return (f"postgresql://{USER}:{quote(password, safe='')}@127.0.0.1:{self.port}/"
                f"{database}{options}")

    def connect(self, database: str = DATABASE) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def store(self) -> str:
        """The URL of an empty schema of its own (the engine creates its tables there)."""
        schema = f"test_{next(self._schemas)}"
        with self.connect() as db:
            db.execute(f"CREATE SCHEMA {schema}")
        return self.url(schema=schema)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # a fast shutdown: sessions are ended
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
