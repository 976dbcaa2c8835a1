"""Every error the engine raises on purpose, under one root: `EngineError`.

People read these: where a mapping or configuration file is wrong (`file:line:col:
message`), why an event was rejected, why a request to the shim was refused. The HTTP layer
turns each kind into a JSON error response; the command line turns them into exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EngineError", "Location", "Problem", "MappingError", "ConfigError", "EventError",
           "SettingsError", "RenderError", "UsageError", "BadRequest", "DeliveryLocked",
           "StoreUnavailable", "StoreError"]


class EngineError(Exception):
    """The root of every error the engine raises on purpose."""


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A place in a file: 1-based line and column, as editors count them."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong with a mapping file, printed as `file:line:col: message`."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class MappingError(EngineError):
    """A mapping file (or several) could not be loaded; `problems` lists every one found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(MappingError):
    """The configuration file (or the mappings it names) has problems; all are listed."""


class EventError(EngineError, ValueError):
    """An event was rejected: it is not a valid Segment message, or a rule refused it."""


class SettingsError(EngineError, ValueError):
    """Destination settings do not satisfy the destination's settings schema."""

    def __init__(self, destination: str, messages: list[str]) -> None:
        self.destination = destination
        self.messages = messages
        super().__init__(f"{destination}: invalid settings: " + "; ".join(messages))


class RenderError(EngineError):
    """A template or expression failed on an event for a reason other than a missing value
    (a sandbox refusal, a bad type for a filter, ...). The message names the template."""


class UsageError(EngineError):
    """The command line was given bad arguments, mappings or settings (exit code 2)."""


class BadRequest(EngineError):
    """An HTTP request to the shim is refused as a whole: answered with `status` and a JSON
    error whose `code` names the kind of refusal (and `Retry-After`, when the client should
    try again later)."""

    def __init__(self, message: str, status: int = 400, code: str | None = None, *,
                 retry_after: int | None = None) -> None:
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.code = code or {401: "unauthorized", 404: "not_found"}.get(status, "invalid_request")
        super().__init__(message)


class DeliveryLocked(EngineError, RuntimeError):
    """Another process is delivering this outbox."""


class StoreUnavailable(EngineError):
    """The outbox cannot be read or written now: its disk is full, another process holds
    it locked, its file is corrupt, or it cannot be opened. Every backend raises this for
    its own failures, so that the shim answers 503 (nothing of the request stored), the
    command line prints one line, and delivery waits and tries again.

    `reason` says what is wrong in a few words, fit for a client to read (no path);
    `str()` adds where, for the operator."""

    def __init__(self, reason: str, where: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {where}" if where else reason)


class StoreError(StoreUnavailable):
    """The outbox's store cannot be opened or used: a database server that cannot be
    reached, wrong credentials, no driver installed, a schema newer than this engine. The
    message says which, and never holds a password."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
