"""The missing value: what a template or expression gives when the event lacks something.

A missing value (or null) drops the key it would have filled: a request never says "None"
or "". It is Jinja's Undefined, narrowed: it chains (`a.b.c` of nothing is nothing) and
refuses to print, so text built around it is missing too.
"""

from __future__ import annotations

from typing import Any

from jinja2 import ChainableUndefined, Undefined, UndefinedError

from ..errors import EngineError

__all__ = ["MISSING", "Missing", "MissingValue", "is_missing"]


class MissingValue(UndefinedError, EngineError):
    """A template used a value the event does not have; the key it renders is dropped.
    (Raised and caught inside rendering: it never reaches a caller of the engine.)"""


class Missing(ChainableUndefined):
    """Undefined that chains and refuses to print.

    Printing raises MissingValue, so `"id: {{ userId }}"` without a userId drops its key
    instead of rendering "id: " or "id: None".
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc", MissingValue)
        super().__init__(*args, **kwargs)

    def __str__(self) -> str:
        self._fail_with_undefined_error()
        return ""  # pragma: no cover  (never reached)


MISSING = Missing()


def is_missing(value: Any) -> bool:
    """True for values that drop their key: undefined and None."""
    return value is None or isinstance(value, Undefined)
