"""Times and JSON as the engine reads and writes them."""

from __future__ import annotations

import json
from datetime import timezone
from typing import Any, Callable
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.serialization import (
    form_encode,
    format_datetime,
    json_default,
    parse_datetime,
    query_encode,
    to_json,
)


@pytest.mark.parametrize("value", [1e20, -1e15, 253402300800, float("nan"), "not a date", True, None])
def test_what_is_not_a_time_in_range_is_none_not_an_error(value: object) -> None:
    assert parse_datetime(value) is None


def test_times_are_written_as_segment_writes_them() -> None:
    parsed = parse_datetime("2024-03-01T17:45:12.5+01:00")
    assert parsed is not None and format_datetime(parsed) == "2024-03-01T16:45:12.500Z"
    assert format_datetime(parse_datetime(0)) == "1970-01-01T00:00:00.000Z"  # type: ignore[arg-type]


# ---- JSON text and form bodies: orjson and str.translate, never a different byte ---------

_LEAVES = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70) | st.floats()
           | st.builds(lambda m, e: m * 10.0**e, st.floats(-10, 10), st.integers(-320, 300))
           | st.text() | st.datetimes(timezones=st.just(timezone.utc)))
_VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=4)
                       | st.dictionaries(st.integers(), inner, max_size=2), max_leaves=20)


def _outcome(function: Callable[[], Any]) -> Any:
    try:
        return function()
    except Exception as exc:  # noqa: BLE001 - the same failure is the same outcome
        return type(exc)


@given(_VALUES, st.booleans())
def test_to_json_writes_what_the_json_module_writes(value: Any, sort_keys: bool) -> None:
    expected = _outcome(lambda: json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                                           sort_keys=sort_keys, default=json_default))
    assert _outcome(lambda: to_json(value, sort_keys)) == expected


@pytest.mark.parametrize("value", [1e-05, 6.103515625e-05, 1.5e-06, 1e16, float("inf"),
                                   float("nan"), 2**70, {1: "a"}, "\ud800", "0.00001 null"])
def test_to_json_where_orjson_would_differ(value: Any) -> None:
    assert to_json([value]) == json.dumps([value], ensure_ascii=False, separators=(",", ":"))


@given(st.dictionaries(st.text(), st.text()))
def test_form_encode_is_urlencode(form: dict[str, str]) -> None:
    assert _outcome(lambda: form_encode(form)) == _outcome(lambda: urlencode(form).encode("ascii"))


@given(st.lists(st.tuples(st.text(), st.text())))
def test_query_encode_is_urlencode_with_quote(pairs: list[tuple[str, str]]) -> None:
    assert _outcome(lambda: query_encode(pairs)) == _outcome(lambda: urlencode(pairs, quote_via=quote))
