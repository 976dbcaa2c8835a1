"""Keep secret setting values out of everything a person or a log can read."""

from __future__ import annotations

from typing import Any, Iterable

from .outcomes import REDACTED

__all__ = ["redact", "MIN_SECRET_LENGTH"]

MIN_SECRET_LENGTH = 4
"""Shorter values are not searched for: replacing every "k" would shred the text and hide
nothing worth hiding. Secret headers are replaced whole whatever their length."""


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """Return `value` with every occurrence of a secret string replaced by "[redacted]"."""
    found = sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH},
                   key=len, reverse=True)
    if not found:
        return value
    return _walk(value, found)


def _walk(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_walk(k, secrets): _walk(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v, secrets) for v in value]
    return value
