"""How a compiled value is built, as the code generator (codegen.py) reads it.

templates.py compiles every value of a mapping into a render closure (the interpreted
path, and the reference) and records here what the closure does: a template's text and
expressions, a mapping's keys and values, a list's items, a `$each` or `$entries`
directive. The code generator turns the same records into Python source, so that the two
paths are made from one parse of each template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .templates import Compiled

__all__ = ["LeafShape", "DictShape", "ListShape", "DirectiveShape", "Shape"]


@dataclass(frozen=True, eq=False)
class LeafShape:
    """A template string. `parts` holds its text (str) and its expressions (Jinja nodes,
    after the load-time checks and rewrites) when the translator took every expression;
    None when Jinja renders it (blocks, and expressions the translator does not take).
    `origin` is the file:line:col its errors name."""

    source: str
    origin: str
    parts: tuple[Any, ...] | None

    @property
    def single(self) -> bool:
        """One expression alone: its value keeps its type."""
        return self.parts is not None and len(self.parts) == 1 and not isinstance(self.parts[0], str)


@dataclass(frozen=True, eq=False)
class DictShape:
    """A mapping: each key (a constant or a template) with its value, in order."""

    entries: tuple[tuple["Compiled", "Compiled"], ...]
    weighed: str | None = None
    """Where the mapping is written (file:line:col) when its bound (growth.py) is too large
    to trust: its value is measured as it is made (templates._weighed); None when it is not."""


@dataclass(frozen=True, eq=False)
class ListShape:
    """A list: its items, in order."""

    items: tuple["Compiled", ...]
    weighed: str | None = None
    """As DictShape.weighed."""


@dataclass(frozen=True, eq=False)
class DirectiveShape:
    """`$each` (kind "$each": a list, `value` per item, the item and its position named
    `names`) or `$entries` (a mapping, `key` and `value` per entry of another mapping).
    Each item is a step of the event's budget (budget.py); `weighed`: its result is measured
    as it is made (its bound is too large to trust); `origin` (file:line:col) is where it is
    written, for the errors it raises."""

    kind: str
    source: "Compiled"
    value: "Compiled"
    key: "Compiled | None"
    test: "Compiled | None"
    names: tuple[str, ...]
    origin: str = ""
    weighed: bool = False


Shape = LeafShape | DictShape | ListShape | DirectiveShape
