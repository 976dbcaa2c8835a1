"""Logging for the long-running commands: a level, and text or one JSON object a line (for
log shippers), for the engine's loggers and uvicorn's (its access log too)."""

from __future__ import annotations

import logging
import logging.config
from typing import Any

import orjson

__all__ = ["LEVELS", "FORMATS", "configure", "uvicorn_config"]

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                                 "level": record.levelname.lower(), "logger": record.name,
                                 "message": record.getMessage()}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def uvicorn_config(level: str, form: str) -> dict[str, Any]:
    """A logging configuration (dictConfig) for the engine's loggers and uvicorn's."""
    formatter: dict[str, Any] = {"()": JSONFormatter} if form == "json" else {"format": _TEXT}
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {name: {"handlers": [], "level": level.upper(), "propagate": True}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def configure(level: str, form: str) -> None:
    """Log at `level` and above, as text or JSON, to stderr."""
    logging.config.dictConfig(uvicorn_config(level, form))
