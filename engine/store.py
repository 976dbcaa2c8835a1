"""Where the outbox lives, as the configuration's `store:` names it: a SQLite file (a path)
or a PostgreSQL database (a `postgresql://` URL).

A URL may carry a password; it is kept apart and shown nowhere: `str` and `repr` of a
`PostgresStore` give the URL with `***` in its place, and every error message about the
store is redacted with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["PostgresStore", "Store", "parse_store", "POSTGRES_SCHEMES"]

POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URL schemes that name a PostgreSQL database (libpq accepts both)."""


@dataclass(frozen=True)
class PostgresStore:
    """A PostgreSQL database for the outbox. `url` is the libpq connection URL, password
    included: hand it to the driver, never to a person."""

    url: str = field(repr=False)
    redacted: str
    """The URL with its password replaced by `***`: what logs and errors show."""
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"PostgresStore({self.redacted!r})"

    def secret_values(self) -> list[str]:
        """The password as the URL writes it and decoded (none when the URL has none)."""
        if not self.password:
            return []
        return sorted({self.password, unquote(self.password)}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """`text` with the password (as written in the URL, or decoded) replaced by `***`."""
        for form in self.secret_values():
            text = text.replace(form, "***")
        return text


Store = Path | PostgresStore
"""A configuration's outbox: a SQLite file, or a PostgreSQL database."""


def is_postgres_url(text: str) -> bool:
    """Whether `text` is meant as a PostgreSQL URL (its scheme says so)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


def parse_store(text: str, base: Path) -> Store:
    """The store `text` names: a PostgreSQL URL as it is, or a file path (relative to
    `base`, the configuration's folder). Raises ValueError, with a message that never
    holds the password, for a URL that cannot be one."""
    if not is_postgres_url(text):
        return (base / text).resolve()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - reading it checks it: ValueError when not a port number
    except ValueError:
        raise ValueError("store: not a valid PostgreSQL URL (expected postgresql://user:password@"
                         "host:port/database; in the password, write @ / : ? # % as %40 %2F %3A "
                         "%3F %23 %25, or leave it out and set PGPASSWORD)") from None
    password = parts.password
    netloc = parts.netloc
    if password is not None:
        user, _, where = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{where}"
    redacted = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    store = PostgresStore(text, redacted, password)
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise ValueError(f"store: {redacted} names no database (postgresql://user:password@host:port/database)")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"store: {redacted} names no host (postgresql://user:password@host:port/database)")
    return store
