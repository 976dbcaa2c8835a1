"""Which destinations get a message: the one place that decides.

A message from a source goes to each destination the source sends to, unless
- the destination reads another kind of input (an inbound mapping takes raw replies, not
  Segment messages): left out without a word, since it never takes a source's messages;
- the message's `integrations` object turns it off (Segment's rule, `is_enabled`);
- the destination does not accept the call type (its `accepts`).
The last two are skips, with a sentence saying why.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol, TypeVar

from .outcomes import Skip

__all__ = ["Routable", "route", "skip_for", "is_enabled"]


class Routable(Protocol):
    """What routing needs to know of a destination."""

    @property
    def name(self) -> str: ...
    @property
    def slug(self) -> str: ...
    @property
    def input(self) -> str: ...
    @property
    def accepts(self) -> frozenset[str] | None: ...


D = TypeVar("D", bound=Routable)


def route(message: Mapping[str, Any], destinations: Iterable[D]) -> tuple[list[D], list[Skip]]:
    """Split `destinations` into those that get `message` (a normalized Segment message)
    and the skips of those that do not."""
    targets: list[D] = []
    skips: list[Skip] = []
    for destination in destinations:
        if destination.input != "segment":
            continue
        skip = skip_for(message, destination)
        if skip is None:
            targets.append(destination)
        else:
            skips.append(skip)
    return targets, skips


def skip_for(message: Mapping[str, Any], destination: Routable) -> Skip | None:
    """Why a Segment-input destination does not get `message`, or None when it does."""
    integrations = message.get("integrations")
    if integrations and not is_enabled(integrations, destination.name):
        return Skip(destination.slug, f"the event's integrations object turns "
                                      f"{destination.name} off", code="integrations_off")
    accepts = destination.accepts
    call = message["type"]
    if accepts is not None and call not in accepts:
        accepted = ", ".join(sorted(accepts))
        return Skip(destination.slug, f"{destination.name} does not accept {call} calls "
                                      f"(it accepts {accepted})", code="not_accepted")
    return None


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
