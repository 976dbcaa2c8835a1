"""Read JSON values one at a time from a text stream: NDJSON, or one top-level array.

Memory stays bounded by the largest single value, whatever the input's size.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, TextIO

__all__ = ["BadJSON", "iter_json"]

_DECODER = json.JSONDecoder()
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")
_CHUNK = 1 << 16


class BadJSON:
    """A value that could not be parsed; `message` says where and why."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


_TOO_LONG = "a number has more than 4,300 digits (more than any JSON reader takes)"


def iter_json(stream: TextIO) -> Iterator[Any | BadJSON]:
    """Yield each value, or a BadJSON for each line (NDJSON) that does not parse.

    A top-level array is streamed element by element; a syntax error inside it ends the
    stream after one BadJSON, since nothing after it can be trusted.
    """
    first = ""
    consumed = 0
    while True:
        ch = stream.read(1)
        if not ch:
            return
        consumed += 1
        if not ch.isspace():
            first = ch
            break
    if first == "[":
        yield from _array(stream, consumed)
    else:
        yield from _lines(first, stream)


def _lines(first: str, stream: TextIO) -> Iterator[Any | BadJSON]:
    line_number = 0
    pending = first
    for line in stream:
        line_number += 1
        text = (pending + line).strip() if pending else line.strip()
        pending = ""
        if not text:
            continue
        try:
            yield json.loads(text)
        except json.JSONDecodeError as exc:
            yield BadJSON(f"line {line_number}: invalid JSON: {exc.msg} (column {exc.colno})")
        except RecursionError:
            yield BadJSON(f"line {line_number}: nested too deeply to read")
        except ValueError:  # Python reads integers of at most 4,300 digits
            yield BadJSON(f"line {line_number}: {_TOO_LONG}")
    if pending.strip():
        try:
            yield json.loads(pending)
        except json.JSONDecodeError as exc:
            yield BadJSON(f"line 1: invalid JSON: {exc.msg}")
        except RecursionError:
            yield BadJSON("line 1: nested too deeply to read")
        except ValueError:
            yield BadJSON(f"line 1: {_TOO_LONG}")


def _array(stream: TextIO, consumed: int) -> Iterator[Any | BadJSON]:
    buffer = ""
    offset = consumed  # characters read before `buffer`, for messages
    expect_value = True
    eof = False
    while True:
        stripped = buffer.lstrip()
        offset += len(buffer) - len(stripped)
        buffer = stripped
        if not buffer:
            if eof:
                yield BadJSON("the JSON array is not closed")
                return
            chunk = stream.read(_CHUNK)
            eof = not chunk
            buffer += chunk
            continue
        if buffer[0] == "]":
            return
        if not expect_value:
            if buffer[0] != ",":
                yield BadJSON(f"character {offset + 1}: expected ',' or ']' in the array")
                return
            buffer = buffer[1:]
            offset += 1
            expect_value = True
            continue
        try:
            value, end = _DECODER.raw_decode(buffer)
        except RecursionError:
            yield BadJSON(f"character {offset + 1}: nested too deeply to read")
            return
        except ValueError as exc:
            if not isinstance(exc, json.JSONDecodeError):
                yield BadJSON(f"character {offset + 1}: {_TOO_LONG}")
                return
            if not eof and len(buffer) < (1 << 26):
                chunk = stream.read(_CHUNK)
                if chunk:
                    buffer += chunk
                    continue
                eof = True
                continue
            yield BadJSON(f"character {offset + exc.pos + 1}: invalid JSON: {exc.msg}")
            return
        if not eof and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and _NUMBER_TAIL.fullmatch(buffer, end):
            # What follows the number may be more of it ("0" | ".25" split across reads).
            chunk = stream.read(_CHUNK)
            if chunk:
                buffer += chunk
                continue
            eof = True
        yield value
        buffer = buffer[end:]
        offset += end
        expect_value = False
