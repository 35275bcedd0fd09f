"""Clocks: the system clock and the VirtualClock that tests use."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterator

import anyio
import pytest

from resilience._clock import SYSTEM_CLOCK, Clock, SystemClock
from resilience.testing import VirtualClock

WALL = 1767225600.0  # 2026-01-01T00:00:00Z


def test_virtual_clock_starts_where_told() -> None:
    assert VirtualClock().monotonic() == 0.0
    assert VirtualClock().time() == WALL
    clock = VirtualClock(100.0, wall=5000.0)
    assert clock.monotonic() == 100.0
    assert clock.time() == 5000.0
    assert repr(clock) == "VirtualClock(now=100.0)"


def test_advance_moves_both_readings_and_records_no_sleep() -> None:
    clock = VirtualClock()
    clock.advance(2.5)
    clock.advance(0)
    assert clock.monotonic() == 2.5
    assert clock.time() == WALL + 2.5
    assert clock.sleeps == []


@pytest.mark.parametrize("bad", [-0.001, -1, math.nan, math.inf, -math.inf])
def test_advance_rejects_backwards_and_non_finite(bad: float) -> None:
    clock = VirtualClock(1.0)
    with pytest.raises(ValueError, match="advance"):
        clock.advance(bad)
    assert clock.monotonic() == 1.0


def test_sleep_advances_at_once_and_records() -> None:
    clock = VirtualClock()
    start = time.perf_counter()
    clock.sleep(30.0)
    clock.sleep(0.25)
    clock.sleep(-5)  # like time.sleep(0): no time passes
    assert time.perf_counter() - start < 0.5  # no real waiting
    assert clock.monotonic() == 30.25
    assert clock.sleeps == [30.0, 0.25, 0.0]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_sleep_rejects_non_finite(bad: float) -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="sleep"):
        clock.sleep(bad)
    assert clock.monotonic() == 0.0
    assert clock.sleeps == []


def test_time_and_monotonic_keep_their_offset() -> None:
    clock = VirtualClock(start=10.0, wall=WALL + 10.0)
    for step in (1.0, 0.5, 3.25):
        clock.advance(step)
        assert clock.time() - clock.monotonic() == WALL


@pytest.mark.anyio
async def test_asleep_advances_and_yields_to_other_tasks() -> None:
    clock = VirtualClock()
    ran = anyio.Event()

    async def other() -> None:
        ran.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        # asleep() is a checkpoint: a loop of virtual sleeps lets the other task run
        # (the scheduler decides which of the two goes first, so allow a few rounds).
        for _ in range(10):
            if ran.is_set():
                break
            await clock.asleep(5.0)
    assert ran.is_set()
    assert 5.0 <= clock.monotonic() <= 50.0
    assert clock.sleeps == [5.0] * len(clock.sleeps)


@pytest.mark.anyio
async def test_asleep_is_instant_in_real_time() -> None:
    clock = VirtualClock()
    start = time.perf_counter()
    for _ in range(100):
        await clock.asleep(3600)
    assert time.perf_counter() - start < 1.0
    assert clock.monotonic() == 360_000.0


def test_virtual_clock_is_thread_safe(fast_switching: None) -> None:
    clock = VirtualClock()
    n_threads, n_steps = 8, 2000

    def work() -> None:
        for _ in range(n_steps):
            clock.advance(1)
            clock.sleep(1)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.monotonic() == 2 * n_threads * n_steps  # no lost update
    assert len(clock.sleeps) == n_threads * n_steps


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(VirtualClock(), Clock)
    assert isinstance(SYSTEM_CLOCK, Clock)
    assert isinstance(SYSTEM_CLOCK, SystemClock)
    assert repr(SYSTEM_CLOCK) == "SystemClock()"


def test_system_clock_reads_real_time() -> None:
    assert abs(SYSTEM_CLOCK.time() - time.time()) < 1.0
    a = SYSTEM_CLOCK.monotonic()
    SYSTEM_CLOCK.sleep(0.01)
    SYSTEM_CLOCK.sleep(0)
    SYSTEM_CLOCK.sleep(-1)  # a negative wait is no wait, not an error
    assert 0.009 <= SYSTEM_CLOCK.monotonic() - a < 1.0


@pytest.mark.anyio
async def test_system_clock_asleep() -> None:
    a = time.monotonic()
    await SYSTEM_CLOCK.asleep(0.01)
    await SYSTEM_CLOCK.asleep(-1)
    assert 0.009 <= time.monotonic() - a < 1.0


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every few microseconds, so an unlocked read-modify-write would race."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)
