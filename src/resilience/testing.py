"""Helpers for tests: a virtual clock that never waits for real.

Example:
    >>> from resilience.testing import VirtualClock
    >>> clock = VirtualClock()
    >>> clock.advance(10); clock.monotonic()
    10.0
"""

from __future__ import annotations

import math
import threading

import anyio.lowlevel

__all__ = ["VirtualClock"]


class VirtualClock:
    """A clock whose time moves only when told to, or when something sleeps on it.

    `sleep(s)` and `await asleep(s)` advance the clock by `s` at once (the async form also
    yields to the event loop once, so other tasks run). Thread-safe.

    Args:
        start: the initial monotonic reading, in seconds.
        wall: the wall-clock time (`time()`) that corresponds to `start`; by default
            2026-01-01T00:00:00Z, so HTTP dates in tests are deterministic.

    Example:
        >>> clock = VirtualClock()
        >>> clock.sleep(1.5)
        >>> clock.monotonic(), clock.time() - clock.wall_start
        (1.5, 1.5)
    """

    __slots__ = ("_lock", "_now", "sleeps", "wall_start")

    def __init__(self, start: float = 0.0, *, wall: float = 1767225600.0) -> None:
        self._now = float(start)
        self.wall_start = float(wall) - float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        """Every sleep requested through this clock, in order (for assertions)."""

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self.wall_start + self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (>= 0, finite).

        Raises:
            ValueError: `seconds` is negative, NaN or infinite.
        """
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"cannot move time by {seconds!r} (advance() takes finite s >= 0)")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Advance by `seconds` at once and record it in `sleeps` (negative counts as 0).

        Raises:
            ValueError: `seconds` is NaN or infinite (a real sleep would fail too).
        """
        seconds = float(seconds)
        if not math.isfinite(seconds):
            raise ValueError(f"cannot sleep for {seconds!r} seconds")
        seconds = max(seconds, 0.0)
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r})"
