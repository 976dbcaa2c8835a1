"""A declarative engine that routes Segment-spec events to the tools that consume them.

    import engine
    destinations = engine.load("mappings")
    outcomes = destinations["calixa"].map(event, settings={...}, now="2024-01-01T00:00:00Z")

Each outcome is a `Request` (method, url, headers, body, deliver_after, ...) or a `Skip` with
its reason. Mapping files are checked when they load: `MappingError.problems` lists every
problem as `file:line:col: message`. Every error the engine raises on purpose is an
`EngineError`.

The mapping language (Jinja, JMESPath, Cerberus) is imported on first use of a name that
needs it, so that `import engine` stays cheap for the outbox and the light commands.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import EngineError, EventError, Location, MappingError, Problem, SettingsError
from .normalize import normalize_event
from .outcomes import Outcome, Request, Skip
from .redact import redact
from .route import is_enabled

if TYPE_CHECKING:
    from .mapping import BoundDestination, Destination, Example, check, load, snake_case

__all__ = [
    "BoundDestination",
    "Destination",
    "EngineError",
    "EventError",
    "Example",
    "Location",
    "MappingError",
    "Outcome",
    "Problem",
    "Request",
    "SettingsError",
    "Skip",
    "check",
    "is_enabled",
    "load",
    "normalize_event",
    "redact",
    "snake_case",
]

_FROM_MAPPING = frozenset({"BoundDestination", "Destination", "Example", "check", "load",
                           "snake_case"})


def __getattr__(name: str) -> Any:
    if name in _FROM_MAPPING:
        value = getattr(importlib.import_module(".mapping", __name__), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
