"""Time, injected: every primitive reads time through a `Clock`.

Production code uses `SYSTEM_CLOCK`; tests pass `resilience.testing.VirtualClock`.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where a primitive reads the time and waits.

    `monotonic()` measures durations; `time()` is wall-clock seconds since the epoch (for
    HTTP dates, persisted deadlines and timestamps); `sleep` and `asleep` wait.

    Example:
        >>> from resilience.testing import VirtualClock
        >>> clock: Clock = VirtualClock()
        >>> clock.sleep(2.5); clock.monotonic()
        2.5
    """

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: `time.monotonic`, `time.time`, `time.sleep` and `anyio.sleep`.

    Example:
        >>> SYSTEM_CLOCK.monotonic() > 0
        True
    """

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()
