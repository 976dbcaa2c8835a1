"""The dispatch table finds exactly the rules that the rules' own matchers find, in file
order, with what each matched."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.mapping.destination import Rule
from engine.mapping.dispatch import Dispatch, normalize_name
from engine.normalize import CALL_TYPES

NAMES = ["Signed Up", "signed_up", "SIGNED-UP", "Order Completed", "orderCompleted", "", "!!",
         "Äpfel Gekauft", "äpfel_gekauft", "x"]


def rule(index: int, types: list[str] | None, names: list[str] | None, normalized: bool) -> Rule:
    events = None if names is None else \
        {(normalize_name(n) if normalized else n): n for n in names}
    return Rule(f"r{index}", frozenset(types) if types is not None else None, events, normalized,
                None, (), (), (), (), None, None, ())


rules_strategy = st.lists(st.tuples(
    st.none() | st.lists(st.sampled_from(CALL_TYPES), min_size=1, max_size=3),
    st.none() | st.lists(st.sampled_from(NAMES) | st.text(max_size=6), min_size=1, max_size=3),
    st.booleans()), max_size=8)
name_strategy = st.sampled_from(NAMES) | st.text(max_size=6) | st.none() | st.integers()


@given(rules_strategy, st.sampled_from([*CALL_TYPES, None]), name_strategy)
def test_the_table_gives_what_each_rule_gives(specs, call, name) -> None:
    rules = [rule(i, *spec) for i, spec in enumerate(specs)]
    expected = [(r.name, m) for r in rules if (m := r.matches_call({"event": name}, call))]
    table = Dispatch(rules, rules)
    assert [(r.name, m) for r, m in table.candidates(call, name)] == expected


@given(rules_strategy, st.sampled_from(CALL_TYPES), name_strategy)
def test_the_first_rule_whatever_the_name_is_the_first_candidate_of_every_name(
        specs, call, name) -> None:
    rules = [rule(i, *spec) for i, spec in enumerate(specs)]
    table = Dispatch(rules, rules)
    first = table.first_whatever_the_name(call)
    names_any = any(r.events is not None and (r.types is None or call in r.types) for r in rules)
    if first is None:
        assert names_any or not table.candidates(call, name)
    else:
        assert not names_any and table.candidates(call, name)[0] == (first, True)


def test_normalized_names() -> None:
    assert normalize_name("Account Created") == normalize_name("account_created") == \
        normalize_name("accountCreated") == normalize_name("ACCOUNT-CREATED") == "accountcreated"
    assert normalize_name("Äpfel gekauft 2") == "äpfelgekauft2"
    long = "A b" * 200
    assert normalize_name(long) == "ab" * 200


def test_first_matching_rule_in_file_order() -> None:
    rules = [rule(0, ["track"], None, False), rule(1, ["track"], ["Signed Up"], False),
             rule(2, ["track"], ["signed up"], True)]
    found = Dispatch(rules, rules).candidates("track", "Signed Up")
    assert [(r.name, m) for r, m in found] == [("r0", True), ("r1", "Signed Up"), ("r2", "signed up")]
