"""Streaming JSON input: values split across reads at every possible place."""

from __future__ import annotations

import io
import json

import pytest

from engine.cli import jsonstream
from engine.cli.jsonstream import BadJSON, iter_json

VALUES = [{"type": "identify", "userId": "u1", "n": 12345, "f": -1.5e3, "ok": True, "no": None,
           "s": "a \"quoted\" , ] string", "nested": [1, [2, {"x": "}"}]]},
          12345, "text", False, None, [], {}, 0.25]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 1 << 16])
def test_arrays_split_anywhere(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(jsonstream, "_CHUNK", chunk)
    for text in (json.dumps(VALUES), json.dumps(VALUES, indent=2), "  [ " + ",\n ".join(map(json.dumps, VALUES)) + " ]  "):
        assert list(iter_json(io.StringIO(text))) == VALUES


def test_ndjson_with_a_bad_line_goes_on() -> None:
    found = list(iter_json(io.StringIO('{"a": 1}\n\n{broken\n{"b": 2}\n')))
    assert found[0] == {"a": 1} and found[2] == {"b": 2}
    assert isinstance(found[1], BadJSON) and found[1].message.startswith("line 3: invalid JSON")


@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2", "the JSON array is not closed"),
    ("[1 2]", "character 4: expected ',' or ']' in the array"),
    ("[1, {bad}]", "character 6: invalid JSON"),
])
def test_broken_arrays_end_with_one_error(text: str, message: str) -> None:
    found = list(iter_json(io.StringIO(text)))
    assert isinstance(found[-1], BadJSON) and found[-1].message.startswith(message)
    assert sum(isinstance(v, BadJSON) for v in found) == 1


def test_empty_inputs() -> None:
    assert list(iter_json(io.StringIO(""))) == []
    assert list(iter_json(io.StringIO("  \n "))) == []
    assert list(iter_json(io.StringIO("[]"))) == []


def test_a_number_longer_than_python_reads_is_a_bad_line_and_the_stream_goes_on() -> None:
    found = list(iter_json(io.StringIO('{"n": ' + "9" * 5000 + '}\n{"b": 2}\n')))
    assert isinstance(found[0], BadJSON) and found[1] == {"b": 2}
    assert found[0].message == "line 1: a number has more than 4,300 digits (more than any JSON reader takes)"
    (bad,) = iter_json(io.StringIO("[" + "9" * 5000 + ", 1]"))
    assert isinstance(bad, BadJSON) and "more than 4,300 digits" in bad.message
