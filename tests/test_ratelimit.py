"""RateLimiter: a token bucket that admits the burst, then the rate."""

from __future__ import annotations

from typing import Any

import pytest

import resilience as rs
from resilience import events
from resilience.stores import MemoryStore
from resilience.testing import VirtualClock


def test_admits_the_burst_then_the_rate(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=10, per=1.0, burst=5, clock=clock)
    assert [limiter.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.1)  # one token per 0.1 s
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    clock.advance(1.0)  # refills up to the burst, not beyond
    assert sum(limiter.try_acquire() for _ in range(20)) == 5


def test_over_a_long_run_the_rate_holds(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=50, per=1.0, burst=10, clock=clock)
    admitted = 0
    for _ in range(10_000):  # offered 1000/s for 10 s
        admitted += limiter.try_acquire()
        clock.advance(0.001)
    assert 10 + 50 * 10 - 2 <= admitted <= 10 + 50 * 10 + 1


def test_a_refused_call_says_when_to_come_back(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=2, per=1.0, clock=clock, name="search")
    limiter.call(lambda: None)
    limiter.call(lambda: None)
    ran = []
    with pytest.raises(rs.RateLimited) as info:
        limiter.call(ran.append, 1)
    assert ran == []
    assert info.value.retry_after == pytest.approx(0.5)
    assert "search" in str(info.value)


def test_wait_true_sleeps_on_the_clock_instead(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=4, per=1.0, burst=1, wait=True, clock=clock)
    results = [limiter.call(lambda n=n: n) for n in range(3)]
    assert results == [0, 1, 2]
    assert clock.sleeps == pytest.approx([0.25, 0.25])


def test_max_wait_refuses_tokens_too_far_away(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=1, per=10.0, burst=1, wait=True, max_wait=1.0, clock=clock)
    limiter.acquire()
    with pytest.raises(rs.RateLimited):
        limiter.acquire()
    assert clock.sleeps == []


def test_limiters_sharing_a_store_and_name_share_one_bucket(clock: VirtualClock) -> None:
    store = MemoryStore()
    a = rs.RateLimiter(rate=3, per=1.0, store=store, name="api", clock=clock)
    b = rs.RateLimiter(rate=3, per=1.0, store=store, name="api", clock=clock)
    assert [a.try_acquire(), b.try_acquire(), a.try_acquire(), b.try_acquire()] == [
        True,
        True,
        True,
        False,
    ]


def test_rate_limited_is_retried_by_retry_after_its_retry_after(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=1, per=2.0, clock=clock)
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.1), clock=clock)
    assert rt.call(limiter.call, lambda: "a") == "a"
    assert rt.call(limiter.call, lambda: "b") == "b"
    assert clock.sleeps == [pytest.approx(2.0)]


def test_refusals_emit_events(clock: VirtualClock) -> None:
    seen: list[Any] = []
    stop = events.subscribe(seen.append)
    try:
        limiter = rs.RateLimiter(rate=1, clock=clock, name="x")
        limiter.try_acquire()
        with pytest.raises(rs.RateLimited):
            limiter.call(lambda: None)
    finally:
        stop()
    assert seen == [events.CallRejected("x", "rate_limited", 1.0)]


@pytest.mark.anyio
async def test_async_awaits_its_token(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=2, per=1.0, burst=1, wait=True, clock=clock)

    async def op(n: int) -> int:
        return n

    assert [await limiter.acall(op, n) for n in range(3)] == [0, 1, 2]
    assert clock.sleeps == pytest.approx([0.5, 0.5])
    refusing = rs.RateLimiter(rate=1, per=1.0, clock=clock)
    await refusing.acall(op, 1)
    with pytest.raises(rs.RateLimited):
        await refusing.acall(op, 2)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -5}, "rate"),
        ({"per": 0}, "per"),
        ({"burst": 0.5}, "burst"),
        ({"wait": "yes"}, "wait"),
        ({"store": {}}, "store"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(rs.ConfigError) as info:
        rs.RateLimiter(**kwargs)
    assert argument in [loc for loc, _ in info.value.errors]
