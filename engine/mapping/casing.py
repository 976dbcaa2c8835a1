"""snake_case, defined once for trait keys, JMESPath and Jinja.

The definition (docs/mapping-format.md has it with examples):

1. Runs of characters that are neither letters nor digits separate words
   (`total billed`, `NPS-rating`, `a.b`).
2. Inside a run, a new word starts where a lowercase letter or a digit is followed by an
   uppercase letter (`firstName` -> first, Name), and where an uppercase run is followed
   by an uppercase letter and a lowercase letter (`HTTPServer` -> HTTP, Server).
3. Letters and digits that touch stay one word (`last30days`, `30Days` -> `30_days` by
   rule 2 only because of the case change).
4. Words are lowercased and joined with `_`.

snake_case is idempotent: a key that is already snake_case (`order_completed_last_30days`,
as Engage sends audience keys) comes back unchanged.
"""

from __future__ import annotations

import re
from typing import Any, Collection

__all__ = ["snake_case", "snake_case_keys"]

_SEPARATORS = re.compile(r"[^0-9A-Za-z\u00C0-\uFFFF]+")
_WORD_BOUNDARY = re.compile(
    r"(?<=[a-z0-9\u00DF-\u00FF])(?=[A-Z\u00C0-\u00DE])"  # fooBar, 30Days
    r"|(?<=[A-Z\u00C0-\u00DE])(?=[A-Z\u00C0-\u00DE][a-z\u00DF-\u00FF])"  # HTTPServer
)


CACHED_LENGTH = 256
"""Keys up to this many characters are remembered (4,096 of them: about 3 MB at the most);
longer ones, which no real trait has and any client can send, are converted each time."""


_REMEMBERED: dict[str, str] = {}
_REMEMBERED_MOST = 4096


def snake_case(text: str) -> str:
    """Return `text` in snake_case (see the module docstring for the exact rules)."""
    found = _REMEMBERED.get(text)
    if found is not None:
        return found
    result = _snake_case(text)
    if len(text) <= CACHED_LENGTH:
        if len(_REMEMBERED) >= _REMEMBERED_MOST:
            _REMEMBERED.clear()  # bounded, simply: keys that keep coming back return at once
        _REMEMBERED[text] = result
    return result


def _snake_case(text: str) -> str:
    words: list[str] = []
    for chunk in _SEPARATORS.split(text):
        if chunk:
            words.extend(w for w in _WORD_BOUNDARY.split(chunk) if w)
    return "_".join(w.lower() for w in words)


def snake_case_keys(mapping: dict[Any, Any], keep: Collection[Any] = ()) -> dict[Any, Any]:
    """The mapping with its keys in snake_case, except those in `keep` (and non-text keys).

    Two keys that become the same (`total billed` and `total_billed`) keep one value,
    predictably: the key that was already written in snake_case wins, whatever the order
    the keys came in; between two keys that both change, the first one wins.

    When no key changes (Engage's keys, and most traits, are snake_case already), the
    mapping itself is returned, not a copy: nothing the engine does modifies a mapping."""
    remembered = _REMEMBERED
    for key in mapping:
        if key in keep:
            continue
        renamed = remembered.get(key)  # the commonest case, without a call
        if renamed is None:
            if not isinstance(key, str):
                continue
            renamed = snake_case(key)
        if renamed != key:
            break
    else:
        return mapping
    out: dict[Any, Any] = {}
    for key, value in mapping.items():
        if key in keep:
            out[key] = value
            continue
        renamed = remembered.get(key)
        if renamed is None:
            if not isinstance(key, str):
                out[key] = value
                continue
            renamed = snake_case(key)
        if renamed == key or renamed not in out:
            out[renamed] = value
        # else the name is taken: by a key already in snake_case, which wins, or by an
        # earlier key that changed too, and the first one wins.
    return out
