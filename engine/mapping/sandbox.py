"""The Jinja environment every mapping template runs in.

A mapping file may come from someone we do not trust, so templates run in Jinja's immutable
sandbox with more taken away: no globals (`range`, `lipsum`, `cycler`, ... ), no calls of
Python functions or methods (filters do that work), no attributes that start with `_`, no
attribute that is not plain data (a method, a type, a time zone), no `pprint`, and bounded
sizes for everything a template can grow (bounds.py, growth.py). Filters that return
iterators return lists, built item by item within the event's budget (budget.py), so no
generator reaches a request; every filter a Jinja-rendered template calls is a step of that
budget, as is every iteration of its loops (`_steps`, put around each loop's list by
growth.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from functools import wraps
from typing import Any, Callable

from jinja2 import Undefined, pass_environment
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from . import budget
from .bounds import MAX_OUTPUT, PRECHECKS, bounded_binop, check_size, check_weight
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


ITERATOR_FILTERS = frozenset({"batch", "slice", "map", "select", "reject", "selectattr",
                              "rejectattr", "unique", "reverse", "items"})
"""Jinja filters that return iterators: here they return lists (see `_listed`)."""


def _listed(items: Any) -> list[Any]:
    """An iterator's items as a list, each a step of the event's budget, at most MAX_OUTPUT
    of them (`[1] | slice(100000000)` would make a hundred million lists)."""
    out: list[Any] = []
    spend = budget.current().spend
    for item in items:
        out.append(item)
        spend()
        if len(out) > MAX_OUTPUT:
            raise SecurityError(f"a filter made more than {MAX_OUTPUT:,} items")
    return out


def _bounded(func: Callable[..., Any], precheck: Callable[..., None] | None = None,
             *, propagate_missing: bool = True, listed: bool = False) -> Callable[..., Any]:
    pass_arg = getattr(func, "jinja_pass_arg", None)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Filters that take the environment or a context get it first.
        data = args[1:] if pass_arg is not None else args
        if propagate_missing and _given_missing(data, kwargs):
            return MISSING
        budget.spend()
        if precheck is not None:
            precheck(*data, **kwargs)
        result = func(*args, **kwargs)
        if listed and isinstance(result, Iterator):
            result = _listed(result)
        return check_size(result)

    if pass_arg is not None:
        wrapper.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    # Translated templates call the filter itself, unless its wrapper has work to do.
    wrapper.has_precheck = precheck is not None or listed  # type: ignore[attr-defined]
    return wrapper


def _steps(value: Any) -> Any:
    """What a template's `{% for %}` loops over, each iteration a step of the event's
    budget (growth.py puts this filter around every loop's list)."""
    if isinstance(value, Undefined) or value is None:
        return value
    return _stepping(value)


def _stepping(value: Any) -> Any:
    spend = budget.current().spend
    for item in value:
        spend()
        yield item


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja's `sum`, in linear time: `lists | sum(start=[])` appends each list once
    (Python's sum copies the growing list at every item, which is quadratic)."""
    items = map(make_attrgetter(environment, attribute), iterable) if attribute is not None \
        else iterable
    if not isinstance(start, (list, tuple)):
        return sum(items, start)
    out = list(start)
    for item in items:
        if not isinstance(item, type(start)):
            raise TypeError(f"sum: cannot add a {type(item).__name__} to a {type(start).__name__}")
        out.extend(item)
        if len(out) > MAX_OUTPUT:
            raise SecurityError(f"sum would exceed {MAX_OUTPUT:,} items")
    return out if isinstance(start, list) else tuple(out)


INTERNAL_FILTERS = frozenset({"_weigh", "_steps"})
"""Filters the mapping's compiler puts into templates (growth.py); a file cannot name them."""

_PLAIN_TYPES = (str, int, float, bool, list, dict, tuple, datetime, date, Undefined)
"""What an attribute of something other than a mapping may be: data, not a method, a type
or any other object that could reach a request (`now.fromtimestamp`, `now.tzinfo`)."""


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
        self.filters["sum"] = _sum
        # pprint lays out a value with indentation per level: its text can be far larger
        # than the value, and a mapping has no use for Python's notation.
        del self.filters["pprint"]
        self.tests.update(TESTS)
        # Every filter's result is checked after it runs; those that can grow far past
        # their input are checked before, too.
        self.filters = {name: _bounded(f, PRECHECKS.get(name),
                                       propagate_missing=name not in MISSING_AWARE_FILTERS,
                                       listed=name in ITERATOR_FILTERS)
                        for name, f in self.filters.items()}
        self.filters["_weigh"] = check_weight
        self.filters["_steps"] = _steps
        # A test of a missing value is false (`is sequence`, `is iterable`, `is string`...),
        # except the tests that exist to ask about missing values.
        self.tests = {name: t if name in MISSING_AWARE_TESTS else _false_for_missing(t)
                      for name, t in self.tests.items()}

    def call_filter(self, name: Any, value: Any, args: Any = None, kwargs: Any = None,
                    context: Any = None, eval_ctx: Any = None) -> Any:
        # A filter called by a name given as the event runs (`map(name)`): never one of
        # the engine's own, which a file cannot name either.
        if isinstance(name, str) and name in INTERNAL_FILTERS:
            raise SecurityError(f"filter '{name}' is the engine's own; a mapping cannot use it")
        return super().call_filter(name, value, args, kwargs, context, eval_ctx)

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

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # Attributes of objects (getattr, getitem and the `attr` filter all ask here) are
        # plain data only; a loop's `loop.cycle` is the one method a template may call.
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return value is None or isinstance(value, _PLAIN_TYPES) or isinstance(obj, LoopContext)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # An error, not a missing value: the key would be dropped without a word.
        raise SecurityError(f"'{attribute}' of a {type(obj).__name__} is not a value a mapping "
                            "can use (only text, numbers, true/false, lists, mappings and times are)")

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
