"""Errors people read: where a mapping file is wrong, and why an event was rejected."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Location", "Problem", "MappingError", "EventError", "SettingsError"]


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


class MappingError(Exception):
    """A mapping file (or several) could not be loaded; `problems` lists every one found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class EventError(ValueError):
    """An event was rejected: it is not a valid Segment message, or a rule refused it."""


class SettingsError(ValueError):
    """Destination settings do not satisfy the destination's settings schema."""

    def __init__(self, destination: str, messages: list[str]) -> None:
        self.destination = destination
        self.messages = messages
        super().__init__(f"{destination}: invalid settings: " + "; ".join(messages))
