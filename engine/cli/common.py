"""What the commands share: reading events and configurations, and a progress line."""

from __future__ import annotations

import sys
import time
from typing import Any, Iterator, TextIO

from ..config import Config, load_config
from ..errors import ConfigError, UsageError
from .jsonstream import iter_json

__all__ = ["events_from", "open_config", "Progress"]


def events_from(files: list[str]) -> Iterator[Any]:
    """Each JSON value in `files` (NDJSON or a JSON array; "-" or none: stdin), or a
    BadJSON for what does not parse, in constant memory."""
    if not files:
        yield from iter_json(sys.stdin)
        return
    for name in files:
        if name == "-":
            yield from iter_json(sys.stdin)
            continue
        with open(name, encoding="utf-8") as stream:
            yield from iter_json(stream)


class Progress:
    """A one-line counter on stderr, only on a terminal and only for runs that take a while."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self.last = self.started
        self.shown = False

    def tick(self, count: int) -> None:
        if not self.enabled or count % 1000:
            return
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            rate = count / (now - self.started)
            self.stream.write(f"\r{count:,} events mapped ({rate:,.0f}/s)")
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def open_config(path: str) -> Config:
    """Load a configuration file, or raise UsageError with every problem in it."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageError(f"invalid configuration:\n{exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read configuration {path}: {exc}") from None
