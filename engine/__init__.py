"""A declarative engine that routes Segment-spec events to the tools that consume them.

    import engine
    destinations = engine.load("mappings")
    outcomes = destinations["calixa"].map(event, settings={...}, now="2024-01-01T00:00:00Z")

Each outcome is a `Request` (method, url, headers, body, deliver_after, ...) or a `Skip` with
its reason. Mapping files are checked when they load: `MappingError.problems` lists every
problem as `file:line:col: message`.
"""

from .casing import snake_case
from .destination import BoundDestination, Destination, Example
from .errors import EventError, Location, MappingError, Problem, SettingsError
from .loader import check, load
from .normalize import normalize_event
from .outcomes import Outcome, Request, Skip
from .redact import redact
from .routing import is_enabled

__all__ = [
    "BoundDestination",
    "Destination",
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
