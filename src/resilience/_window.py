"""The circuit breaker's sliding windows, with running totals.

An outcome is a small int: bit 0 = failure, bit 1 = slow. Adding one is amortised O(1) and
allocates nothing on the success path. Both windows answer `counts(now) -> (calls, failures,
slow)`; the breaker calls `add`, `counts` and `clear` with its lock held.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

__all__ = ["FAILURE", "SLOW", "CountRing", "TimeRing"]

FAILURE = 1
SLOW = 2


class CountRing:
    """The last `size` outcomes, counted by sequence number.

    Every outcome takes the next number from an `itertools.count` (atomic on CPython: a
    success needs no lock at all). Only failures and slow calls are stored, in a deque, and
    they leave the window lazily, when the totals are next read: a success can only lower
    the rates, so nothing needs deciding until a failure, a slow call, or the call that
    brings the window to `minimum` calls (`decide_at`).
    """

    __slots__ = (
        "_bad",
        "_base",
        "_counter",
        "_failures",
        "_last",
        "_min",
        "_size",
        "_slow",
        "decide_at",
        "next",
    )

    def __init__(self, size: int, minimum: int) -> None:
        self._size = size
        self._min = minimum
        self._counter = itertools.count()
        self.next = self._counter.__next__
        """Take the next sequence number (the lock-free way to count one success)."""
        self._base = 0
        self._last = -1
        self.decide_at = minimum - 1
        self._bad: deque[int] = deque()  # seq << 2 | code, oldest first
        self._failures = self._slow = 0

    def _issued(self) -> int:
        # How many numbers the counter gave out, without taking one ("count(17)" -> 17).
        return int(repr(self._counter)[6:-1])

    def add(self, code: int, now: float) -> bool:
        """Record one outcome (lock held); True when a decision may be due."""
        seq = self.next()
        self._last = seq
        if code:
            self._bad.append(seq << 2 | code)
            self._failures += code & 1
            self._slow += code >> 1
            return True
        return seq == self.decide_at

    def counts(self, now: float, latest: bool = False) -> tuple[int, int, int]:
        """(calls, failures, slow) in the window, as of the last `add` (or of now: `latest`)."""
        seq = self._issued() - 1 if latest else self._last
        bad = self._bad
        floor = (seq - self._size) << 2 | 3
        while bad and bad[0] <= floor:
            code = bad.popleft() & 3
            self._failures -= code & 1
            self._slow -= code >> 1
        calls = max(min(seq - self._base + 1, self._size), 0)
        return calls, self._failures, self._slow

    def clear(self) -> None:
        self._base = self._issued()
        self._last = self._base - 1
        self.decide_at = self._base + self._min - 1
        self._bad.clear()
        self._failures = self._slow = 0


class TimeRing:
    """The outcomes of the last `seconds`, in `buckets` buckets of `seconds / buckets` each.

    A bucket holds the calls that ended in its slice of time; when time moves past a slice,
    that bucket's counts are subtracted from the totals and it is reused (as resilience4j
    does with one-second buckets). Expiry follows the injected clock.
    """

    __slots__ = ("_calls", "_fails", "_head", "_n", "_slow", "_width", "calls", "failures", "slow")

    def __init__(self, seconds: float, buckets: int) -> None:
        self._n = buckets
        self._width = seconds / buckets
        self._calls = [0] * buckets
        self._fails = [0] * buckets
        self._slow = [0] * buckets
        self._head = -math.inf  # absolute index of the newest bucket
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def expire(self, now: float) -> None:
        """Drop the buckets that fell out of the window by `now`."""
        idx = int(now // self._width)
        head = self._head
        if idx <= head:
            return
        n = self._n
        if idx - head >= n:
            if self.calls:
                self.clear()
        else:
            calls, fails, slow = self._calls, self._fails, self._slow
            for k in range(int(head) + 1, idx + 1):
                j = k % n
                if calls[j]:
                    self.calls -= calls[j]
                    self.failures -= fails[j]
                    self.slow -= slow[j]
                    calls[j] = fails[j] = slow[j] = 0
        self._head = idx

    def counts(self, now: float, latest: bool = False) -> tuple[int, int, int]:
        """(calls, failures, slow) in the window at `now`."""
        self.expire(now)
        return self.calls, self.failures, self.slow

    def add(self, code: int, now: float) -> bool:
        self.expire(now)
        # A call that ended just before another thread recorded a later one lands in the
        # newest bucket (never in one that already expired).
        j = int(self._head) % self._n
        self._calls[j] += 1
        self.calls += 1
        if code & 1:
            self._fails[j] += 1
            self.failures += 1
        if code & 2:
            self._slow[j] += 1
            self.slow += 1
        return True

    def clear(self) -> None:
        n = self._n
        self._calls[:] = [0] * n
        self._fails[:] = [0] * n
        self._slow[:] = [0] * n
        self.calls = self.failures = self.slow = 0
