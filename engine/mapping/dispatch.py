"""Which rules can match an event, found by its call type and event name in one lookup.

Rules are tried in file order and the first that matches decides. Trying each rule's type
and event-name matchers in turn costs as many tests as there are rules before the one that
matches (209 us against 13 us with 1,000 event-name rules). This table is made once per
destination: for each call type, every event name any rule names leads to the rules that
name it (exactly, or by its normalized form) and the rules that name no event, merged in
file order; a name no rule spells that way is looked up by its normalized form. What is
left to try per event is the rules' conditions (`when.condition`, `when.if`), in order.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Generic, Iterable, Sequence, TypeVar

from ..normalize import CALL_TYPES

__all__ = ["Dispatch", "normalize_name"]

T = TypeVar("T")

_NOT_ALNUM = re.compile(r"[\W_]+")  # \w is str.isalnum() or "_": checked for every code point

_CACHED_LENGTH = 256


def normalize_name(name: str) -> str:
    """Event names compared regardless of case and separators: 'Account Created',
    'account_created', 'accountCreated' and 'ACCOUNT-CREATED' are one name (lowercased,
    everything but letters and digits removed)."""
    return _remembered(name) if len(name) <= _CACHED_LENGTH else _normalize(name)


def _normalize(name: str) -> str:
    return _NOT_ALNUM.sub("", name.lower())


_remembered = lru_cache(maxsize=4096)(_normalize)

Candidates = tuple[tuple[T, "str | bool"], ...]
"""Rules to try in order, each with what it matched: the event name as the rule spells it,
or True for a rule that names no event."""


class _ByName(Generic[T]):
    """The candidates for one call type."""

    __slots__ = ("names", "normalized", "others")

    def __init__(self, names: dict[str, Candidates[T]], normalized: dict[str, Candidates[T]],
                 others: Candidates[T]) -> None:
        self.names = names
        self.normalized = normalized
        self.others = others


class Dispatch(Generic[T]):
    """The rules (as `items`, one per rule, in file order) that can match an event's call
    type and name, in file order, each with what it matched."""

    def __init__(self, rules: Sequence[Any], items: Sequence[T]) -> None:
        self._rules = list(zip(rules, items, strict=True))
        self._by_call: dict[str | None, _ByName[T]] = {
            call: self._for_call(call) for call in (*CALL_TYPES, None)}

    def candidates(self, call: str | None, name: Any) -> Candidates[T]:
        """The rules to try for an event of type `call` named `name`, in file order."""
        table = self._by_call.get(call)
        if table is None:  # a type no Segment message has: made once, when first seen
            table = self._by_call[call] = self._for_call(call)
        if type(name) is not str:
            return table.others  # a rule that names events matches text only
        found = table.names.get(name)
        if found is not None:
            return found
        if table.normalized:
            return table.normalized.get(normalize_name(name), table.others)
        return table.others

    def first_whatever_the_name(self, call: str) -> T | None:
        """The rule every event of type `call` is tried against first, whatever its name
        (no rule for that type names events); None when there is none or it depends on
        the name."""
        table = self._by_call[call]
        if table.names or table.normalized or not table.others:
            return None
        return table.others[0][0]

    def _for_call(self, call: str | None) -> _ByName[T]:
        rules = [(i, rule, item) for i, (rule, item) in enumerate(self._rules)
                 if rule.types is None or call in rule.types]
        others = tuple((item, True) for _, rule, item in rules if rule.events is None)
        # Every name a rule spells, and every normalized form a rule compares, gets its
        # own merged list; any other name can match only rules that name no event.
        spelled = {written for _, rule, _ in rules if rule.events is not None
                   for written in (*rule.events, *rule.events.values())}
        forms = {key for _, rule, _ in rules if rule.events is not None and rule.normalized
                 for key in rule.events}
        names = {name: self._merged(rules, name, normalize_name(name)) for name in spelled}
        normalized = {form: self._merged(rules, None, form) for form in forms}
        return _ByName(names, normalized, others)

    @staticmethod
    def _merged(rules: Iterable[tuple[int, Any, T]], name: str | None,
                form: str) -> Candidates[T]:
        """The rules that match an event named `name` (whose normalized form is `form`;
        name None: any name of that form that no rule spells exactly), in file order."""
        out: list[tuple[T, str | bool]] = []
        for _, rule, item in rules:
            if rule.events is None:
                out.append((item, True))
                continue
            matched = rule.events.get(form if rule.normalized else name)
            if matched:  # a rule's name written "" matches nothing, as it always did
                out.append((item, matched))
        return tuple(out)
