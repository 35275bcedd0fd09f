"""Timeout: bound how long a call may take.

Async calls are really cancelled (anyio's cancel scopes, on asyncio and trio). A sync call
cannot be interrupted from outside in Python, so it runs in a worker thread of a small bounded
pool and the caller gets `TimeoutExceeded` at the deadline; **the call itself keeps running in
its worker until it returns** (its result is dropped). A call still waiting for a free worker
at the deadline is cancelled before it starts.

Example:
    >>> import time, resilience as rs
    >>> t = rs.Timeout(0.05)
    >>> try:
    ...     t.call(time.sleep, 0.5)
    ... except rs.TimeoutExceeded as e:
    ...     print(e)
    the call did not finish within 0.05 s
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as _FutureTimeout
from typing import Any, ParamSpec, TypeVar

import anyio

from . import events
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import TimeoutExceeded
from ._policy import Decorator
from ._validate import Errors, raise_if

__all__ = ["Timeout"]

P = ParamSpec("P")
R = TypeVar("R")


class Timeout(Decorator):
    """Give a call `seconds` to finish; raise `TimeoutExceeded` (a `TimeoutError`) after that.

    Both forms measure real elapsed time: an async call is cancelled by anyio at the deadline;
    a sync call runs in one of `max_workers` threads and the caller stops waiting for it at the
    deadline (the thread finishes the call in the background). Context variables are copied
    into the worker, so request context survives.

    Args:
        seconds: the limit, > 0.
        name: the operation's name (in the error and events).
        max_workers: size of the worker pool for sync calls (a bound on abandoned calls).
        clock: kept for symmetry with the other policies; time limits use real time.

    Raises:
        ConfigError: bad arguments.

    Example:
        >>> import resilience as rs
        >>> rs.Timeout(2.0).call(sum, [1, 2])
        3
    """

    __slots__ = ("_lock", "_pool", "clock", "max_workers", "name", "seconds")

    def __init__(
        self,
        seconds: float,
        *,
        name: str | None = None,
        max_workers: int = 16,
        clock: Clock | None = None,
    ) -> None:
        raise_if(Timeout.validate(seconds=seconds, name=name, max_workers=max_workers), name)
        self.seconds = float(seconds)
        self.name = name
        self.max_workers = max_workers
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @staticmethod
    def validate(
        *, seconds: object = None, name: object = None, max_workers: object = 16
    ) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message)."""
        e = Errors()
        e.positive("seconds", seconds)
        e.integer("max_workers", max_workers, minimum=1)
        if name is not None and not isinstance(name, str):
            e.append(("name", f"must be a string, got {type(name).__name__}"))
        return e

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    prefix = f"resilience-timeout-{self.name or id(self)}"
                    pool = self._pool = ThreadPoolExecutor(self.max_workers, prefix)
        return pool

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run `fn(*args, **kwargs)` in a worker; raise `TimeoutExceeded` at the deadline.

        Raises:
            TimeoutExceeded: the call did not return in time (it goes on in its worker).
        """
        ctx = contextvars.copy_context()
        future: Future[R] = self._executor().submit(ctx.run, fn, *args, **kwargs)
        try:
            return future.result(self.seconds)
        except _FutureTimeout:
            if not future.done():
                future.cancel()  # succeeds only if it never started
                self._timed_out()
            else:  # finished between the timeout and now: its outcome stands
                return future.result()
        raise TimeoutExceeded(self.seconds, operation=self.name)

    async def acall(self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Await `fn(*args, **kwargs)`, cancelling it at the deadline.

        Raises:
            TimeoutExceeded: the call was cancelled at the deadline.
        """
        with anyio.move_on_after(self.seconds) as scope:
            return await fn(*args, **kwargs)
        if scope.cancelled_caught:
            self._timed_out()
            raise TimeoutExceeded(self.seconds, operation=self.name)
        raise AssertionError(
            "unreachable: the call neither returned nor timed out"
        )  # pragma: no cover

    def _timed_out(self) -> None:
        if events.enabled:
            events.emit(events.TimeoutOccurred(self.name or "call", self.seconds))

    def close(self) -> None:
        """Stop the worker pool (running calls finish; none start after this)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r}, name={self.name!r})"
