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


def test_a_snake_case_rule_renames_at_paths_of_any_depth_and_copies_only_what_changes() -> None:
    from engine.mapping.destination import SnakeCaseRule

    rule = SnakeCaseRule((("traits",), ("context", "traits"), ("a", "b", "c")), frozenset({"keepMe"}))
    event = {"traits": {"firstName": "A", "keepMe": 1}, "context": {"ip": "x", "traits": {"planName": "p"}},
             "a": {"b": {"c": {"deepKey": 1}, "other": 2}, "z": 3}}
    before = repr(event)
    out = rule.apply(event)
    assert repr(event) == before  # the input is never changed
    assert out == {"traits": {"first_name": "A", "keepMe": 1},
                   "context": {"ip": "x", "traits": {"plan_name": "p"}},
                   "a": {"b": {"c": {"deep_key": 1}, "other": 2}, "z": 3}}
    unchanged = {"traits": {"plan": 1}, "context": {"traits": None}, "a": {"b": [1]}}
    assert rule.apply(unchanged) is unchanged
    assert rule.apply({"a": {"b": {"c": {"x": 1}}}, "context": "text"}) == {"a": {"b": {"c": {"x": 1}}}, "context": "text"}
    changed_deep_only = {"a": {"b": {"c": {"oneTwo": 1}}}}
    assert rule.apply(changed_deep_only) == {"a": {"b": {"c": {"one_two": 1}}}}
