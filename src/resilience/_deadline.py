"""Time budgets that propagate: `deadline(seconds)` and `remaining()`.

A budget is carried in a context variable, so it follows the code that runs under it: nested
calls, async tasks started inside it, and `anyio.to_thread` calls (which copy the context).
Nested budgets take the smaller. Primitives read `remaining()` and never start what the budget
cannot hold (Retry: no attempt or sleep past it; the httpx transport: request timeouts lowered
to it; drain: stops at it); running out raises `TimeoutExceeded`.

Example:
    >>> import resilience as rs
    >>> from resilience.testing import VirtualClock
    >>> clock = VirtualClock()
    >>> rs.remaining() is None
    True
    >>> with rs.deadline(5.0, clock=clock):
    ...     clock.advance(2.0)
    ...     with rs.deadline(10.0, clock=clock):  # the outer budget is smaller: it stands
    ...         rs.remaining()
    3.0
"""

from __future__ import annotations

import contextvars
import math
from types import TracebackType

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import TimeoutExceeded
from ._validate import Errors, raise_if

__all__ = [
    "cannot_hold",
    "check_budget",
    "deadline",
    "enter",
    "leave",
    "mark_late",
    "overran",
    "remaining",
]


class _Budget:
    """One active budget: when it expires on its clock, and the budget it is nested in.

    `left()` asks the parent too, so an inner budget never outlives an outer one, even when
    the two read different clocks or the outer one is stopped (`stop()`: a thread-mode
    Timeout whose caller gave up) after the inner one opened.
    """

    __slots__ = ("clock", "expires", "parent", "seconds")

    def __init__(
        self, expires: float, clock: Clock, seconds: float, parent: _Budget | None
    ) -> None:
        self.expires = expires
        self.clock = clock
        self.seconds = seconds
        self.parent = parent

    def left(self) -> float:
        left = self.expires - self.clock.monotonic()
        parent = self.parent
        if parent is not None:
            outer = parent.left()
            if outer < left:
                left = outer
        return left if left > 0.0 else 0.0

    def stop(self) -> None:
        """Use the budget up now: everything that consults it stops starting work."""
        self.expires = -math.inf


_current: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "resilience_deadline", default=None
)


def remaining() -> float | None:
    """Seconds left in the innermost time budget of this context; None when there is none.

    Example:
        >>> import resilience as rs
        >>> with rs.deadline(30):
        ...     0 < rs.remaining() <= 30
        True
    """
    budget = _current.get()
    return None if budget is None else budget.left()


def check_budget(operation: str | None = None) -> float | None:
    """`remaining()`, but raise `TimeoutExceeded` when the budget is used up.

    Raises:
        TimeoutExceeded: the innermost budget has no time left.
    """
    budget = _current.get()
    if budget is None:
        return None
    left = budget.left()
    if left <= 0.0:
        raise TimeoutExceeded(budget.seconds, operation=operation)
    return left


def cannot_hold(wait: float = 0.0, operation: str | None = None) -> TimeoutExceeded | None:
    """The `TimeoutExceeded` to report when the current budget cannot hold `wait` more seconds
    (a wait that would end exactly at its end counts as not held); None when it can, or when
    there is no budget. For loops that stop at the budget and report, rather than raise."""
    budget = _current.get()
    if budget is None or wait < budget.left():
        return None
    return TimeoutExceeded(budget.seconds, operation=operation)


_late: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "resilience_late", default=None
)


def overran(since: float, clock: Clock) -> bool:
    """Is a call that started at `since` on `clock` and ends now late? True when the active
    budget is used up, or when a cooperative Timeout on the same clock, opened inside the call
    (at or after `since`), saw its call return late (`mark_late`)."""
    budget = _current.get()
    if budget is not None and budget.left() <= 0.0:
        return True
    late = _late.get()
    return late is not None and late.clock is clock and late.expires - late.seconds >= since


late_marks = 0
"""How many times `mark_late` ran, in any thread: a breaker's lock-free success path reads it
before and after the call, and takes the full path (which asks `overran`) when it moved."""


def mark_late(budget: _Budget) -> None:
    """A sync call returned after `budget` ran out (seen by an enclosing breaker)."""
    global late_marks
    late_marks += 1
    _late.set(budget)


def enter(seconds: float, clock: Clock) -> tuple[_Budget, contextvars.Token[_Budget | None]]:
    """Open a budget of `seconds` on `clock` (nested in the current one); `leave` closes it.

    The allocation-light form of `deadline` for the policies' shells.
    """
    budget = _Budget(clock.monotonic() + seconds, clock, seconds, _current.get())
    return budget, _current.set(budget)


leave = _current.reset


class deadline:  # lower-case: used like a function, `with rs.deadline(5):`
    """A time budget of `seconds` for everything run inside it (`with` or `async with`).

    Nested budgets take the smaller: an inner `deadline(10)` inside an outer one with 3 s
    left gives 3 s. The budget is cooperative: primitives consult it before they start an
    attempt, a sleep or a request; code that ignores it is not interrupted.

    Args:
        seconds: the budget, > 0 (`math.inf` for none).
        clock: where time is read (a `VirtualClock` in tests).

    Example:
        >>> import resilience as rs
        >>> with rs.deadline(2.0) as budget:
        ...     budget.seconds
        2.0
    """

    __slots__ = ("_token", "clock", "seconds")

    def __init__(self, seconds: float, *, clock: Clock | None = None) -> None:
        errors = Errors()
        errors.positive("seconds", seconds, finite=False)
        raise_if(errors, None)
        self.seconds = float(seconds)
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._token: contextvars.Token[_Budget | None] | None = None

    def _open(self) -> _Budget:
        now = self.clock.monotonic()
        expires = now + self.seconds if math.isfinite(self.seconds) else math.inf
        return _Budget(expires, self.clock, self.seconds, _current.get())

    def remaining(self) -> float:
        """Seconds left in this budget (the smaller of it and any outer one while inside)."""
        budget = _current.get()
        return budget.left() if budget is not None else self.seconds

    def __enter__(self) -> deadline:
        self._token = _current.set(self._open())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    async def __aenter__(self) -> deadline:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"deadline({self.seconds!r})"
