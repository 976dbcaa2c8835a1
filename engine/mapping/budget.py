"""The work mapping one event may take: steps and CPU time, counted while it runs.

Size bounds (bounds.py, growth.py) bound what each operation can cost; what is left is how
many operations run. The places that repeat work count steps: an iteration of a template's
`{% for %}`, an item of `$each`, `$entries` or `for_each`, a filter called by a template
that Jinja renders or by name (`map('trim')`), and every 1,000 characters or items of a
large value built or measured.
An event may take MAX_STEPS steps and MAX_CPU seconds of its thread's CPU time; past either,
the template that was running fails (BudgetExceeded, a SecurityError) and the event is
rejected with that reason.

The budget belongs to the thread (mapping one event never awaits or switches threads). The
per-event path starts a new one with `fresh()`, or with the one attribute store it makes
(`CURRENT.budget = None`); the budget itself is made on the first step, and the CPU clock
first read at the first check, so an event whose mapping never loops pays for neither, and
one that loops a little reads no clock.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from jinja2.exceptions import SecurityError

__all__ = ["MAX_STEPS", "MAX_CPU", "STEP_UNITS", "BudgetExceeded", "Budget", "CURRENT", "fresh",
           "spend", "spender", "spend_units", "check_time"]

MAX_STEPS = 200_000
"""Steps one event may take (loop iterations, filter calls of Jinja-rendered templates,
thousands of characters or items built)."""

MAX_CPU = 0.1
"""Seconds of CPU time (the mapping thread's own) one event may take."""

STEP_UNITS = 1_000
"""Characters or items of a large value that count as one step."""

_CHECK_EVERY = 128
"""Steps between two readings of the CPU clock (a reading is a system call)."""


class BudgetExceeded(SecurityError):
    """The event took more steps or CPU time than its budget allows."""


class Budget:
    """The steps and CPU time one event has taken so far."""

    __slots__ = ("steps", "_next_check", "_cpu_start", "_wall_start")

    def __init__(self) -> None:
        self.steps = 0
        self._next_check = min(_CHECK_EVERY, MAX_STEPS + 1)
        # The thread's CPU clock is a system call (~0.4 us, as much as mapping a small
        # event); most events never get to a first check. So it is read at the first
        # check, and the time before it counted as the wall clock says: the CPU time a
        # thread takes is never more than the wall time that passed.
        self._cpu_start = -1.0
        self._wall_start = time.perf_counter()

    def spend(self, steps: int = 1) -> None:
        """Count `steps`; raise BudgetExceeded when the event is over its budget."""
        self.steps += steps
        if self.steps >= self._next_check:
            self.check()

    def check(self) -> None:
        """Compare the steps and the CPU time taken with the budget now."""
        if self.steps > MAX_STEPS:
            raise BudgetExceeded(f"mapping this event took more than {MAX_STEPS:,} steps "
                                 "(loop iterations, filter calls, large values)")
        cpu = time.thread_time()
        if self._cpu_start < 0:
            self._cpu_start = cpu - (time.perf_counter() - self._wall_start)
        if cpu - self._cpu_start > MAX_CPU:
            raise BudgetExceeded(f"mapping this event took more than {MAX_CPU * 1000:.0f} ms "
                                 "of CPU time")
        # The clock is read every _CHECK_EVERY steps; the step count is exact.
        self._next_check = min(self.steps + _CHECK_EVERY, MAX_STEPS + 1)


class _Current(threading.local):
    budget: Budget | None = None


_CURRENT = _Current()

CURRENT = _CURRENT
"""This thread's budget, for the per-event path: `CURRENT.budget = None` is `fresh()` as
one store (a call costs more than the store, at hundreds of thousands of events a second)."""


def fresh() -> None:
    """Start a new budget for the event about to be mapped on this thread."""
    _CURRENT.budget = None


def current() -> Budget:
    """This thread's budget (made on first use)."""
    budget = _CURRENT.budget
    if budget is None:
        budget = _CURRENT.budget = Budget()
    return budget


def spender() -> Callable[..., None]:
    """This thread's budget's `spend`, for a loop that counts each of its iterations (the
    generated code calls it, and reads no attribute of the budget)."""
    return current().spend


def spend(steps: int = 1) -> None:
    """Count `steps` against this thread's budget."""
    budget = _CURRENT.budget
    if budget is None:
        budget = _CURRENT.budget = Budget()
    budget.spend(steps)


def spend_units(units: int) -> None:
    """Count the steps of building or measuring a value of `units` characters or items
    (nothing for small values: only large ones are work worth counting)."""
    if units >= STEP_UNITS:
        spend(units // STEP_UNITS)


def check_time() -> None:
    """Compare the CPU time taken with the budget now (after a call that may have been
    slow, such as a regular expression, which has a time bound of its own)."""
    current().check()
