"""The PostgreSQL outbox's schema, as numbered migrations applied in order.

`migrate` brings a database to the newest version this engine knows. It is safe to run
from any number of processes at once (every `serve` and `deliver` runs it as it opens the
outbox): the first takes a transaction-level advisory lock and migrates; the others wait
for it, then find nothing left to do. Each migration runs in that one transaction with
its version's row in `engine_schema`, so a database is never left half migrated.

Migrations are only ever appended, never edited: a database at version N gets N+1.. and
nothing else. A new one must not break the engine version before it (add columns and
indexes; stop reading before dropping), so that processes can be upgraded one at a time.
"""

from __future__ import annotations

from typing import Any

from ..errors import StoreError

__all__ = ["MIGRATIONS", "LATEST", "ADVISORY_CLASS", "migrate", "schema_version"]

ADVISORY_CLASS = 0x656E67  # "eng": the first key of the engine's two-key advisory locks
"""Two-key advisory locks (objsubid 2 in pg_locks) are the engine's own; one-key (bigint)
locks are delivering processes' tokens (see postgres_outbox)."""
_MIGRATION_LOCK = 1

MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the outbox, dedupe marks and once-key claims", (
        """CREATE TABLE engine_outbox (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            source        text NOT NULL,
            destination   text NOT NULL,
            rule          text NOT NULL,
            message_id    text,
            request       bytea NOT NULL,      -- JSON: method, url, headers (no auth), encoding, body
            status        text NOT NULL,       -- pending | delivered | dead | suppressed | recorded
            attempts      integer NOT NULL DEFAULT 0,
            accepted_at   double precision NOT NULL,   -- seconds since the epoch, as the engine's clock
            window_start  double precision NOT NULL,   -- max_age counts from here (reset by a replay)
            due_at        double precision NOT NULL,
            leased_until  double precision,
            leased_by     bigint,              -- the token of the delivering process holding the lease
            once_key      text,
            once_window   double precision,
            waiting_on    bigint,              -- the job holding this job's once key, while it is tried
            last_status   integer,
            last_error    text,
            last_body     text,
            finished_at   double precision,
            batch_item    bytea                -- JSON [list name, item]: its part of a bulk request
        )""",
        # Leases look per destination for the oldest due jobs; the partial indexes hold
        # only pending jobs (or only the few leased or waiting ones), so their cost follows
        # what is leased, not how much was ever stored.
        "CREATE INDEX engine_outbox_due ON engine_outbox (destination, due_at, id) WHERE status = 'pending'",
        "CREATE INDEX engine_outbox_next ON engine_outbox (due_at) WHERE status = 'pending' AND leased_until IS NULL",
        "CREATE INDEX engine_outbox_leased ON engine_outbox (leased_until) WHERE leased_until IS NOT NULL",
        "CREATE INDEX engine_outbox_waiting ON engine_outbox (waiting_on) WHERE waiting_on IS NOT NULL",
        "CREATE INDEX engine_outbox_status ON engine_outbox (status, id)",
        """CREATE TABLE engine_seen (
            destination text NOT NULL,
            message_id  text NOT NULL,
            seen_at     double precision NOT NULL,
            PRIMARY KEY (destination, message_id)
        )""",
        "CREATE INDEX engine_seen_at ON engine_seen (seen_at)",
        """CREATE TABLE engine_once_claims (
            key        text PRIMARY KEY,
            claimed_at double precision NOT NULL,
            outbox_id  bigint NOT NULL
        )""",
    )),
)
"""(what it does, its statements): version N is MIGRATIONS[N - 1]."""

LATEST = len(MIGRATIONS)


def schema_version(db: Any) -> int:
    """The version of the schema in `db` (a psycopg connection), 0 when it has none."""
    if db.execute("SELECT to_regclass('engine_schema')").fetchone()[0] is None:
        return 0
    found = db.execute("SELECT max(version) FROM engine_schema").fetchone()[0]
    return int(found or 0)


def migrate(db: Any) -> int:
    """Bring `db` (a psycopg connection in autocommit mode) to LATEST; returns how many
    migrations were applied. Raises StoreError when the database's schema is newer than
    this engine."""
    if _check(schema_version(db)):
        return 0
    with db.transaction():
        # Held to the end of this transaction: concurrent migrators wait here, then see
        # the version the first one wrote.
        db.execute("SELECT pg_advisory_xact_lock(%s, %s)", (ADVISORY_CLASS, _MIGRATION_LOCK))
        db.execute("CREATE TABLE IF NOT EXISTS engine_schema (version integer PRIMARY KEY,"
                   " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        current = schema_version(db)
        if _check(current):
            return 0
        for version in range(current + 1, LATEST + 1):
            description, statements = MIGRATIONS[version - 1]
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO engine_schema (version, description) VALUES (%s, %s)",
                       (version, description))
        return LATEST - current


def _check(version: int) -> bool:
    """Whether `version` is up to date; raises StoreError when it is newer than LATEST."""
    if version > LATEST:
        raise StoreError(f"the outbox's schema is version {version}, newer than this engine "
                         f"knows ({LATEST}): upgrade the engine")
    return version == LATEST
