"""Times and JSON as the engine reads and writes them."""

from __future__ import annotations

import pytest

from engine.serialization import format_datetime, parse_datetime


@pytest.mark.parametrize("value", [1e20, -1e15, 253402300800, float("nan"), "not a date", True, None])
def test_what_is_not_a_time_in_range_is_none_not_an_error(value: object) -> None:
    assert parse_datetime(value) is None


def test_times_are_written_as_segment_writes_them() -> None:
    parsed = parse_datetime("2024-03-01T17:45:12.5+01:00")
    assert parsed is not None and format_datetime(parsed) == "2024-03-01T16:45:12.500Z"
    assert format_datetime(parse_datetime(0)) == "1970-01-01T00:00:00.000Z"  # type: ignore[arg-type]
