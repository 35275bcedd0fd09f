"""Timeout: bound how long a call may take, without taking the caller's thread.

Async calls are really cancelled (anyio's cancel scopes, on asyncio and trio), whatever the
mode. A sync call cannot be interrupted from outside in Python, so there are two modes, as
Polly has an optimistic and a pessimistic timeout:

* `mode="cooperative"` (the default, and what every preset uses) runs the call **on the
  caller's thread** under a time budget (`rs.deadline`): Retry starts no attempt or wait the
  budget cannot hold, the httpx transport lowers request timeouts to what remains, drain stops.
  A call that ignores the budget and returns late keeps its result (the work is done), and the
  overrun is reported as `TimeoutOccurred(late=True)` and counted as a slow call by a breaker.
* `mode="thread"` runs the call in a daemon worker thread; the caller gets `TimeoutExceeded`
  at the deadline while **the call itself keeps running until it returns** (its result is
  dropped); its budget is stopped, so a Retry inside starts no further attempt. A hung call
  never keeps the interpreter from exiting.

Example:
    >>> import resilience as rs
    >>> t = rs.Timeout(2.0)
    >>> t.call(lambda: rs.remaining() is not None)  # the call runs under a 2 s budget
    True
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar

import anyio

from . import _deadline, events
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import TimeoutExceeded
from ._policy import Decorator
from ._validate import Errors, raise_if

__all__ = ["Timeout"]

P = ParamSpec("P")
R = TypeVar("R")

Mode = Literal["cooperative", "thread"]
_MODES: tuple[Mode, ...] = ("cooperative", "thread")


class Timeout(Decorator):
    """Give a call `seconds` to finish; raise `TimeoutExceeded` (a `TimeoutError`) after that.

    Args:
        seconds: the limit, > 0.
        mode: how a *sync* call is bounded: "cooperative" (default: on the caller's thread,
            under a time budget that the library's primitives honour; a late result is kept
            and reported) or "thread" (in a daemon worker; the caller stops waiting at the
            deadline). Async calls are cancelled at the deadline in both modes.
        name: the operation's name (in the error and events).
        max_workers: thread mode: at most this many worker threads (a bound on abandoned
            calls; a call waiting for a worker at its deadline never starts).
        clock: where the budget's time is read (a `VirtualClock` in tests). Real cancellation
            (async calls, a thread-mode caller's wait) runs on real time.

    Raises:
        ConfigError: bad arguments.

    Example:
        >>> import resilience as rs
        >>> rs.Timeout(2.0).call(sum, [1, 2])
        3
    """

    __slots__ = ("_lock", "_workers", "clock", "max_workers", "mode", "name", "seconds")

    def __init__(
        self,
        seconds: float,
        *,
        mode: Mode = "cooperative",
        name: str | None = None,
        max_workers: int = 16,
        clock: Clock | None = None,
    ) -> None:
        raise_if(
            Timeout.validate(seconds=seconds, mode=mode, name=name, max_workers=max_workers), name
        )
        self.seconds = float(seconds)
        self.mode: Mode = mode
        self.name = name
        self.max_workers = max_workers
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._workers: _Workers | None = None
        self._lock = threading.Lock()

    @staticmethod
    def validate(
        *,
        seconds: object = None,
        mode: object = "cooperative",
        name: object = None,
        max_workers: object = 16,
    ) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message)."""
        e = Errors()
        e.positive("seconds", seconds)
        e.one_of("mode", mode, _MODES)
        e.integer("max_workers", max_workers, minimum=1)
        if name is not None and not isinstance(name, str):
            e.append(("name", f"must be a string, got {type(name).__name__}"))
        return e

    # -- sync ------------------------------------------------------------------------------

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run `fn(*args, **kwargs)` within the time limit.

        Cooperative mode: on this thread, under a budget; a late result is returned (and
        reported). Thread mode: in a daemon worker; `TimeoutExceeded` at the deadline.

        Raises:
            TimeoutExceeded: thread mode: the call did not return in time (it goes on in its
                worker); cooperative mode: something inside found the budget used up.
        """
        if self.mode == "thread":
            return self._call_in_thread(fn, args, kwargs)
        budget, token = _deadline.enter(self.seconds, self.clock)
        try:
            result = fn(*args, **kwargs)
        except TimeoutExceeded:
            if budget.left() <= 0.0:
                self._timed_out(late=False)
            raise
        finally:
            late = budget.left() <= 0.0
            _deadline.leave(token)
        if late:
            _deadline.mark_late(budget)  # an enclosing breaker counts the call as slow
            self._timed_out(late=True)
        return result

    def _call_in_thread(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        workers = self._workers
        if workers is None:
            with self._lock:
                workers = self._workers
                if workers is None:
                    prefix = f"resilience-timeout-{self.name or id(self)}"
                    workers = self._workers = _Workers(self.max_workers, prefix)
        job = _Job(fn, args, kwargs, contextvars.copy_context(), self.seconds, self.clock)
        workers.submit(job)
        limit = _deadline.remaining()
        limit = self.seconds if limit is None or limit > self.seconds else limit
        if job.done.wait(limit) or not job.abandon():
            out: R = job.outcome()
            return out
        self._timed_out(late=False)
        raise TimeoutExceeded(self.seconds, operation=self.name)

    # -- async -----------------------------------------------------------------------------

    async def acall(self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Await `fn(*args, **kwargs)`, cancelling it at the deadline (either mode).

        The call also runs under a budget of `seconds` (on `clock`), so what it does inside
        (a Retry, a drain, an httpx request) plans within it.

        Raises:
            TimeoutExceeded: the call was cancelled at the deadline.
        """
        outer = _deadline.remaining()
        limit = self.seconds if outer is None or outer > self.seconds else outer
        token = _deadline.enter(self.seconds, self.clock)[1]
        try:
            with anyio.move_on_after(limit) as scope:
                return await fn(*args, **kwargs)
        finally:
            _deadline.leave(token)
        if scope.cancelled_caught:
            self._timed_out(late=False)
            raise TimeoutExceeded(self.seconds, operation=self.name)
        raise AssertionError(
            "unreachable: the call neither returned nor timed out"
        )  # pragma: no cover

    def _timed_out(self, *, late: bool) -> None:
        if events.enabled:
            events.emit(events.TimeoutOccurred(self.name or "call", self.seconds, late=late))

    def close(self) -> None:
        """Thread mode: let idle workers exit (running calls finish; their threads are
        daemons, so they never keep the process alive)."""
        with self._lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r}, mode={self.mode!r}, name={self.name!r})"


# --- thread mode: daemon workers ---------------------------------------------------------


class _Job:
    """One thread-mode call. The caller and the worker agree under `lock` on whether it runs
    (`abandon` before it starts: it never does) and the worker stops its budget when the
    caller gave up, so nothing inside starts new work."""

    __slots__ = (
        "args",
        "budget",
        "clock",
        "ctx",
        "done",
        "error",
        "fn",
        "kwargs",
        "lock",
        "result",
        "seconds",
        "state",
    )

    def __init__(
        self, fn: Callable[..., Any], args: Any, kwargs: Any, ctx: Any, seconds: float, clock: Clock
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.ctx: contextvars.Context = ctx
        self.seconds = seconds
        self.clock = clock
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.state = "queued"  # -> "running" -> "done"; or "abandoned"
        self.budget: _deadline._Budget | None = None
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        with self.lock:
            if self.state != "queued":
                return  # the caller gave up before a worker was free: never start
            self.state = "running"
        try:
            self.result = self.ctx.run(self._in_context)
        except BaseException as exc:  # handed to the caller (or dropped, if it left)
            self.error = exc
        finally:
            with self.lock:
                if self.state == "running":
                    self.state = "done"
            self.done.set()
            self.fn = self.args = self.kwargs = None  # type: ignore[assignment]

    def _in_context(self) -> Any:
        budget, token = _deadline.enter(self.seconds, self.clock)
        with self.lock:
            self.budget = budget
            if self.state == "abandoned":
                budget.stop()
        try:
            return self.fn(*self.args, **self.kwargs)
        finally:
            _deadline.leave(token)

    def abandon(self) -> bool:
        """The caller stops waiting. False if the call finished meanwhile (its outcome stands)."""
        with self.lock:
            if self.state == "done":
                return False
            self.state = "abandoned"
            if self.budget is not None:
                self.budget.stop()  # a Retry inside starts no attempt after this
        return True

    def outcome(self) -> Any:
        error = self.error
        if error is not None:
            self.error = None
            try:
                raise error
            finally:
                del error
        return self.result


class _Workers:
    """Daemon worker threads, started on demand up to `limit`; idle ones wait for jobs."""

    __slots__ = ("_closed", "_count", "_idle", "_jobs", "_lock", "limit", "prefix")

    def __init__(self, limit: int, prefix: str) -> None:
        self.limit = limit
        self.prefix = prefix
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = 0
        self._closed = False

    def submit(self, job: _Job) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # reserved: that worker takes this job
            elif self._count < self.limit:
                self._count += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self.prefix}_{self._count - 1}", daemon=True
                )
                thread.start()
            # else: it waits in line for the first worker that finishes
        self._jobs.put(job)

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            job.run()
            del job
            with self._lock:
                if self._closed:
                    self._count -= 1
                    return
                self._idle += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
            self._count -= idle
        for _ in range(idle):
            self._jobs.put(None)
