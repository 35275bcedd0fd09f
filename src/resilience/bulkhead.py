"""Bulkhead: bound how many calls run at once, and how many may wait for a slot.

A call that finds `max_concurrent` calls running waits in line (first come, first served) if
fewer than `max_waiting` are already waiting; otherwise it is refused at once with
`BulkheadFull`, without running. One bulkhead serves sync and async callers alike: the counts
live in one small core guarded by a lock that is never held while your function runs.

Example:
    >>> import resilience as rs
    >>> bh = rs.Bulkhead(max_concurrent=2, max_waiting=0)
    >>> bh.call(lambda: "ran")
    'ran'
    >>> bh.running, bh.waiting
    (0, 0)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from . import events
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import BulkheadFull
from ._policy import Decorator
from ._validate import Errors, raise_if

__all__ = ["Bulkhead"]

P = ParamSpec("P")
R = TypeVar("R")


class _Waiter:
    """One caller waiting for a slot. `granted` is set (under the bulkhead's lock) when a
    finishing call hands its slot over; then `wake()` tells the waiter."""

    __slots__ = ("event", "granted", "thread", "token")

    def __init__(self, event: threading.Event | anyio.Event, token: object = None) -> None:
        self.event = event
        self.granted = False
        self.thread = threading.get_ident()
        self.token = token

    def wake(self) -> None:
        event = self.event
        if isinstance(event, threading.Event) or self.thread == threading.get_ident():
            event.set()
        else:  # an async waiter woken by a sync caller in another thread
            try:
                anyio.from_thread.run_sync(event.set, token=self.token)  # type: ignore[arg-type]
            except RuntimeError:  # its event loop is gone; nobody is waiting any more
                pass


class Bulkhead(Decorator):
    """Run at most `max_concurrent` calls at once; up to `max_waiting` more wait in line.

    Args:
        max_concurrent: calls allowed to run at the same time (>= 1).
        max_waiting: calls allowed to wait for a slot (>= 0); beyond it, `BulkheadFull`.
        max_wait: seconds a call may wait for a slot before `BulkheadFull` (None: no limit).
        name: the operation's name (in errors and events).
        clock: kept for symmetry with other policies (waiting is for real slots).

    Raises:
        ConfigError: bad arguments.
        BulkheadFull: (from call/acall) no slot and no room in line, or `max_wait` passed.

    Example:
        >>> import resilience as rs
        >>> @rs.Bulkhead(10, name="reports")
        ... def render(n: int) -> str:
        ...     return "x" * n
        >>> render(3)
        'xxx'
    """

    __slots__ = (
        "_free",
        "_lock",
        "_minted",
        "_queue",
        "clock",
        "max_concurrent",
        "max_wait",
        "max_waiting",
        "name",
    )

    def __init__(
        self,
        max_concurrent: int = 10,
        max_waiting: int = 0,
        *,
        max_wait: float | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        raise_if(
            Bulkhead.validate(
                max_concurrent=max_concurrent, max_waiting=max_waiting, max_wait=max_wait, name=name
            ),
            name,
        )
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self.name = name
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        # tokens are minted on demand, so a huge max_concurrent costs no memory up front
        self._free: list[None] = [None] * min(max_concurrent, 16)
        self._minted = len(self._free)
        self._queue: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    @staticmethod
    def validate(
        *,
        max_concurrent: object = 10,
        max_waiting: object = 0,
        max_wait: object = None,
        name: object = None,
    ) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message)."""
        e = Errors()
        e.integer("max_concurrent", max_concurrent, minimum=1)
        e.integer("max_waiting", max_waiting, minimum=0)
        if max_wait is not None:
            e.positive("max_wait", max_wait)
        if name is not None and not isinstance(name, str):
            e.append(("name", f"must be a string, got {type(name).__name__}"))
        return e

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot now."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Calls holding a slot now."""
        return self._minted - len(self._free)

    # -- the core --------------------------------------------------------------------------
    # `_free` holds one token per free slot. list.pop() and list.append() are atomic, so a
    # call that finds a free slot takes it with no lock at all; the lock guards only the line
    # of waiters. Ordering makes this safe: a waiter joins the line and then looks for a token
    # again (under the lock); a finishing call returns its token and then looks at the line.
    # Whichever comes second sees the other.

    def _enter(self, waiter_factory: Callable[[], _Waiter]) -> _Waiter | None:
        """Take a slot (None) or a place in line (a waiter); raise BulkheadFull if neither."""
        free = self._free
        waiter = None
        full = False
        with self._lock:
            queue = self._queue
            if queue or not self._take(free):
                if len(queue) >= self.max_waiting:
                    full = True
                else:
                    waiter = waiter_factory()
                    queue.append(waiter)
                    if len(queue) == 1 and self._take(free):  # freed meanwhile: see above
                        queue.pop()
                        waiter = None
        if full:
            self._rejected()
        if events.enabled:
            self._emit()
        return waiter

    def _take(self, free: list[None]) -> bool:
        """Take a token (or mint one, up to max_concurrent). Call with the lock held."""
        try:
            free.pop()
        except IndexError:
            if self._minted >= self.max_concurrent:
                return False
            self._minted += 1
        return True

    def _release(self) -> None:
        """Return a slot; hand it to the first in line, if any."""
        self._free.append(None)
        if self._queue:
            self._dispatch()
        if events.enabled:
            self._emit()

    def _dispatch(self) -> None:
        woken = []
        free = self._free
        with self._lock:
            queue = self._queue
            while queue:
                try:
                    free.pop()
                except IndexError:
                    break
                waiter = queue.popleft()
                waiter.granted = True
                woken.append(waiter)
        for waiter in woken:
            waiter.wake()

    def _leave(self, waiter: _Waiter) -> bool:
        """The waiter stops waiting (timeout, cancellation). True if a slot was handed to it
        meanwhile: it owns that slot now."""
        with self._lock:
            if waiter.granted:
                return True
            self._queue.remove(waiter)
            return False

    def _emit(self) -> None:
        if not events.per_call:  # occupancy changes with every call: only for who wants it
            return
        events.emit(events.BulkheadEvent(self.name or "bulkhead", self.running, len(self._queue)))

    def _rejected(self) -> None:
        if events.enabled:
            events.emit(events.CallRejected(self.name or "bulkhead", "bulkhead_full", None))
        raise BulkheadFull(self.max_concurrent, self.max_waiting, operation=self.name)

    # -- shells ------------------------------------------------------------------------

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run `fn(*args, **kwargs)` in a slot (waiting in line if allowed)."""
        line = True  # others wait, or no free slot: take a place in line
        if not self._queue:
            try:
                self._free.pop()  # the fast path: a free slot, no lock (list.pop is atomic)
                line = False
            except IndexError:
                pass  # the rejection, if any, is raised outside this handler: no chaining
        if line:
            waiter = self._enter(_sync_waiter)
            if waiter is not None:
                try:
                    granted = waiter.event.wait(self.max_wait)  # type: ignore[call-arg]
                except BaseException:  # KeyboardInterrupt, SystemExit: never leak the slot
                    if self._leave(waiter):
                        self._release()
                    raise
                if not granted and not self._leave(waiter):
                    self._rejected()
        elif events.enabled:
            self._emit()
        try:
            return fn(*args, **kwargs)
        finally:
            self._free.append(None)  # _release(), inlined: this is the hot path
            if self._queue:
                self._dispatch()
            if events.enabled:
                self._emit()

    async def acall(self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Await `fn(*args, **kwargs)` in a slot (waiting in line if allowed)."""
        waiter = None
        line = True  # others wait, or no free slot: take a place in line
        if not self._queue:
            try:
                self._free.pop()  # the fast path: a free slot, no lock (list.pop is atomic)
                line = False
            except IndexError:
                pass  # the rejection, if any, is raised outside this handler: no chaining
        if line:
            waiter = self._enter(_async_waiter)
        elif events.enabled:
            self._emit()
        if waiter is not None:
            try:
                limit = self.max_wait if self.max_wait is not None else float("inf")
                with anyio.move_on_after(limit):
                    await waiter.event.wait()  # type: ignore[misc]
            except BaseException:
                if self._leave(waiter):
                    self._release()
                raise
            if not waiter.granted and not self._leave(waiter):
                self._rejected()
        try:
            return await fn(*args, **kwargs)
        finally:
            self._release()

    def snapshot(self) -> dict[str, Any]:
        """Occupancy and limits, for health pages."""
        return {
            "name": self.name,
            "running": self.running,
            "waiting": len(self._queue),
            "max_concurrent": self.max_concurrent,
            "max_waiting": self.max_waiting,
        }

    def __repr__(self) -> str:
        return (
            f"Bulkhead(max_concurrent={self.max_concurrent!r}, max_waiting={self.max_waiting!r}, "
            f"name={self.name!r}, running={self.running}, waiting={len(self._queue)})"
        )


def _sync_waiter() -> _Waiter:
    return _Waiter(threading.Event())


def _async_waiter() -> _Waiter:
    return _Waiter(anyio.Event(), anyio.lowlevel.current_token())
