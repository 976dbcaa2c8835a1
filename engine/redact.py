"""Keep secret setting values out of everything a person or a log can read.

A secret is looked for as it is and in the encodings a request carries it in, since a
destination may echo a request back (its answer is kept with a dead letter): base64, as in
`Authorization: Basic base64(key + ":")` (standard and URL-safe alphabets, wherever the
secret sits in the encoded text), URL-encoded (a query string, a form) and JSON-escaped.
"""

from __future__ import annotations

import base64
import json
import re
from functools import lru_cache
from typing import Any, Iterable
from urllib.parse import quote, quote_plus

from .outcomes import REDACTED

__all__ = ["redact", "MIN_SECRET_LENGTH"]

MIN_SECRET_LENGTH = 4
"""Shorter values are not searched for: replacing every "k" would shred the text and hide
nothing worth hiding. Secret headers are replaced whole whatever their length."""

_B64_CHAR = "[A-Za-z0-9+/_-]"


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """Return `value` with every occurrence of a secret string, raw or encoded (see the
    module), replaced by "[redacted]"."""
    found = tuple(sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}))
    if not found:
        return value
    return _walk(value, *_pattern(found))


@lru_cache(maxsize=64)
def _pattern(secrets: tuple[str, ...]) -> tuple[tuple[str, ...], re.Pattern[str]]:
    """Every form of every secret as text to look for (a fast test first), and one
    expression that replaces them, the longest forms tried first."""
    plain: set[str] = set()
    encoded: set[str] = set()
    for secret in secrets:
        plain.update(_text_forms(secret))
        encoded.update(_base64_cores(secret))
    alternatives = [(len(form), re.escape(form)) for form in plain]
    # A base64 core is flanked by characters that mix the secret's bits with its
    # neighbours': they go too.
    alternatives += [(len(core), f"{_B64_CHAR}?{re.escape(core)}{_B64_CHAR}?") for core in encoded
                     if core not in plain]
    alternatives.sort(key=lambda item: item[0], reverse=True)
    return tuple(plain | encoded), re.compile("|".join(expression for _, expression in alternatives))


def _text_forms(secret: str) -> set[str]:
    """The secret as it is, URL-encoded (percent escapes in either case, `+` for spaces or
    not) and JSON-escaped (with `/` escaped or not)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)}
    forms |= {re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in set(forms)}
    escaped = json.dumps(secret)[1:-1]
    forms |= {escaped, escaped.replace("/", "\\/"), json.dumps(secret, ensure_ascii=False)[1:-1]}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _base64_cores(secret: str) -> set[str]:
    """For each of the three places the secret can start at in a base64 group, and both
    alphabets: the run of encoded characters that depend on the secret's bytes alone. Any
    base64 text holding the secret holds one of them."""
    data = secret.encode("utf-8")
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        # Character i of the encoding reads bits of bytes (6i)//8 to (6i+5)//8.
        inside = [offset <= (6 * i) // 8 and (6 * i + 5) // 8 < offset + len(data)
                  for i in range(len(encoded))]
        first = inside.index(True) if True in inside else -1
        if first < 0:
            continue
        last = first
        while last + 1 < len(inside) and inside[last + 1]:
            last += 1
        core = encoded[first:last + 1]
        if len(core) >= MIN_SECRET_LENGTH:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))
    return cores


def _walk(value: Any, needles: tuple[str, ...], pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        if any(needle in value for needle in needles):
            return pattern.sub(REDACTED, value)
        return value
    if isinstance(value, dict):
        return {_walk(k, needles, pattern): _walk(v, needles, pattern) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v, needles, pattern) for v in value]
    return value
