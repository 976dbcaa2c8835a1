"""Which destinations an event goes to, as its `integrations` object says."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["is_enabled"]


def is_enabled(integrations: Mapping[str, Any] | None, destination: str) -> bool:
    """Segment's rule: the destination's own key (case-sensitive) decides; else `All`;
    else on. A truthy non-boolean value (an options object) counts as enabled."""
    if not integrations:
        return True
    if destination in integrations:
        return _truthy(integrations[destination])
    if "All" in integrations:
        return _truthy(integrations["All"])
    return True


def _truthy(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    return bool(value)
