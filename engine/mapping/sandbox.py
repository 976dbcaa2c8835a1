"""The Jinja environment every mapping template runs in.

A mapping file may come from someone we do not trust, so templates run in Jinja's immutable
sandbox with more taken away: no globals (`range`, `lipsum`, `cycler`, ... ), no calls of
Python functions or methods (filters do that work), no attributes that start with `_`, and
bounded sizes for everything a template can grow (bounds.py). With every list bounded, and
nested loops, recursive loops and macros refused at load (templates.py), the work a
template can do is bounded too.
"""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable

from jinja2 import Undefined
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .bounds import PRECHECKS, bounded_binop, check_size
from .functions import FILTERS, MISSING_AWARE_FILTERS, MISSING_AWARE_TESTS, TESTS
from .missing import MISSING, Missing, MissingValue

__all__ = ["MappingEnvironment", "ENV"]


def _finalize(value: Any) -> Any:
    if value is None:
        raise MissingValue("a value printed into text is null")
    return value


def _given_missing(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True when a filter is given a missing value: null or undefined as its subject, or
    undefined as an argument. Such a filter yields missing (its key is dropped) instead of
    a wrong value such as sha256("None") or "none"."""
    if not args or args[0] is None or isinstance(args[0], Undefined):
        return True
    return any(isinstance(a, Undefined) for a in args[1:]) or \
        any(isinstance(v, Undefined) for v in kwargs.values())


def _bounded(func: Callable[..., Any], precheck: Callable[..., None] | None = None,
             *, propagate_missing: bool = True) -> Callable[..., Any]:
    pass_arg = getattr(func, "jinja_pass_arg", None)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Filters that take the environment or a context get it first.
        data = args[1:] if pass_arg is not None else args
        if propagate_missing and _given_missing(data, kwargs):
            return MISSING
        if precheck is not None:
            precheck(*data, **kwargs)
        return check_size(func(*args, **kwargs))

    if pass_arg is not None:
        wrapper.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    wrapper.has_precheck = precheck is not None  # type: ignore[attr-defined]
    return wrapper


def _false_for_missing(test: Any) -> Any:
    # No functools.wraps: the template translator must call this wrapper, not the test.
    pass_arg = getattr(test, "jinja_pass_arg", None)
    skip = 1 if pass_arg is not None else 0

    def checked(*args: Any) -> bool:
        if any(isinstance(a, Undefined) for a in args[skip:]):
            return False
        return bool(test(*args))
    if pass_arg is not None:
        checked.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    checked.checked_test = test  # type: ignore[attr-defined]  # for the arity check at load
    return checked


class MappingEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, narrowed for untrusted mapping files."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=Missing, autoescape=False, finalize=_finalize,
                         keep_trailing_newline=False, auto_reload=False, cache_size=0)
        self.globals.clear()
        self.filters.update(FILTERS)
        self.tests.update(TESTS)
        # Every filter's result is checked after it runs; those that can grow far past
        # their input are checked before, too.
        self.filters = {name: _bounded(f, PRECHECKS.get(name),
                                       propagate_missing=name not in MISSING_AWARE_FILTERS)
                        for name, f in self.filters.items()}
        # A test of a missing value is false (`is sequence`, `is iterable`, `is string`...),
        # except the tests that exist to ask about missing values.
        self.tests = {name: t if name in MISSING_AWARE_TESTS else _false_for_missing(t)
                      for name, t in self.tests.items()}

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Mapping data first: `traits.items` is the trait called "items", not dict.items.
        if type(obj) is dict:
            return obj.get(attribute, MISSING)
        if isinstance(obj, Undefined):
            return MISSING
        if attribute.startswith("_"):
            raise SecurityError(f"access to attribute {attribute!r} is not allowed")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is dict:
            try:
                return obj.get(argument, MISSING)
            except TypeError:
                return MISSING
        if isinstance(obj, Undefined):
            return MISSING
        if isinstance(argument, str) and argument.startswith("_"):
            raise SecurityError(f"access to attribute {argument!r} is not allowed")
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return bounded_binop(operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        # Macros and `loop.cycle` are template constructs; any Python callable could be a
        # way out of the sandbox or a way to burn memory (str.center(10**9)).
        if isinstance(__obj, Macro) or getattr(__obj, "__self__", None).__class__ is LoopContext:
            return __context.call(__obj, *args, **kwargs)
        raise SecurityError("calling functions or methods is not allowed in mapping templates; "
                            "use a filter instead")


ENV = MappingEnvironment()
"""The one environment: filters and tests are fixed, so templates can share it."""
