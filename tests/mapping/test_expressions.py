"""JMESPath: project functions, and problems found when a mapping loads."""

import pytest

from engine.mapping.expressions import Expression, ExpressionProblem, compile_jmespath

EVENT = {"traits": {"email": "a@example.com", "First Name": "Ann", "n": 0},
         "context": {"groupId": "g1"}, "event": "Account Created",
         "items": [{"sku": "a"}, {"sku": "b"}]}


@pytest.mark.parametrize(("source", "expected"), [
    ("traits.email", "a@example.com"),
    ("traits.missing.deeper", None),
    ("traits.groupId || context.groupId", "g1"),
    ("traits.email && context.groupId", "g1"),
    ("!traits.missing", None),  # `!` binds tighter than `.`, as in the reference
    ("!(traits.missing)", True),
    ("traits.n", 0),
    ("snake_case(event)", "account_created"),
    ("snake_case_keys(traits, ['n'])", {"email": "a@example.com", "first_name": "Ann", "n": 0}),
    ("coalesce(traits.missing, traits.email)", "a@example.com"),
    ("lower(event)", "account created"),
    ("items[*].sku", ["a", "b"]),
    ("items[?sku == 'b'] | [0].sku", "b"),
    ("{e: traits.email, g: context.groupId}", {"e": "a@example.com", "g": "g1"}),
    ("[traits.email, event]", ["a@example.com", "Account Created"]),
    ("event == 'Account Created'", True),
    ("`true` == `1`", False),
    ("length(items)", 2),
])
def test_expressions(source: str, expected: object) -> None:
    compiled = compile_jmespath(source)
    assert isinstance(compiled, Expression)
    assert compiled.search(EVENT) == expected


def test_compiled_closures_agree_with_the_reference_interpreter() -> None:
    import jmespath

    from engine.mapping.expressions import FUNCTIONS
    options = jmespath.Options(custom_functions=FUNCTIONS)
    for source in ["traits.email", "traits.missing.deeper", "traits.groupId || context.groupId",
                   "!traits.missing", "!(traits.missing)", "traits.n && event", "traits.n || event",
                   "items[0].sku", "items[-1]", "items[*].sku | [1]", "{a: event}", "[event, `1`]",
                   "event == 'Account Created'", "`true` == `1`", "traits.n == `0`",
                   "snake_case(event)", "to_string(traits.n)", "@", "event | lower(@)"]:
        compiled = compile_jmespath(source)
        assert isinstance(compiled, Expression)
        assert compiled.search(EVENT) == jmespath.search(source, EVENT, options), source


@pytest.mark.parametrize(("source", "message", "offset"), [
    ("traits.[", "JMESPath syntax error: Invalid jmespath expression", 8),
    ("'unclosed", "JMESPath syntax error: Invalid jmespath expression: Unclosed ' delimiter", 0),
    ("traits.email || nope(event)", "unknown JMESPath function 'nope'", 16),
    ("snake_case(event, traits)", "JMESPath function 'snake_case' takes 1 argument, got 2", 0),
    ("coalesce()", "JMESPath function 'coalesce' takes at least 1 argument, got 0", 0),
    ("", "a JMESPath expression must be a non-empty string", 0),
])
def test_problems(source: str, message: str, offset: int) -> None:
    problem = compile_jmespath(source)
    assert isinstance(problem, ExpressionProblem)
    assert problem.message.startswith(message)
    assert problem.offset == offset
