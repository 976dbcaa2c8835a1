import pytest

from engine import snake_case


@pytest.mark.parametrize(("text", "expected"), [
    ("Order Completed Last 30 Days", "order_completed_last_30_days"),
    ("order_completed_last_30days", "order_completed_last_30days"),  # Engage keys unchanged
    ("total billed", "total_billed"),
    ("firstName", "first_name"),
    ("NPS_rating", "nps_rating"),
    ("HTTPServer", "http_server"),
    ("userID", "user_id"),
    ("last30days", "last30days"),
    ("30Days", "30_days"),
    ("  padded   text ", "padded_text"),
    ("kebab-case.and.dots", "kebab_case_and_dots"),
    ("", ""),
])
def test_snake_case(text: str, expected: str) -> None:
    assert snake_case(text) == expected


@pytest.mark.parametrize("text", ["Order Completed Last 30 Days", "firstName", "NPS_rating", "a--B"])
def test_snake_case_is_idempotent(text: str) -> None:
    assert snake_case(snake_case(text)) == snake_case(text)


def test_only_short_keys_are_remembered() -> None:
    from engine.mapping import casing

    long_key = "Trait Key " * 2800
    assert snake_case(long_key) == "_".join(["trait_key"] * 2800)
    assert long_key not in casing._REMEMBERED  # not kept: any client can send one
    short = "Some Unseen Trait 7f3a"
    assert snake_case(short) == "some_unseen_trait_7f3a"
    assert casing._REMEMBERED[short] == "some_unseen_trait_7f3a"


def test_what_is_remembered_is_bounded() -> None:
    from engine.mapping import casing

    for i in range(casing._REMEMBERED_MOST + 10):
        snake_case(f"Key Number {i}")
    assert len(casing._REMEMBERED) <= casing._REMEMBERED_MOST
    assert snake_case("Key Number 3") == "key_number_3"
