"""Pipeline: stages run outermost first; the order decides how retries and breakers meet."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import resilience as rs
from resilience.testing import VirtualClock


class Record:
    """A user-written policy (the public protocol): records entry and exit."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return fn(*args, **kwargs)
        finally:
            self.log.append(f"<{self.name}")

    async def acall(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return await fn(*args, **kwargs)
        finally:
            self.log.append(f"<{self.name}")


class Down:
    """Fails `failures` times with ConnectionError, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, x: int = 0) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("down")
        return f"ok{x}"

    async def acall(self, x: int = 0) -> str:
        return self(x)


def test_stages_run_outermost_first() -> None:
    log: list[str] = []
    pipe = rs.Pipeline(Record("a", log), Record("b", log), Record("c", log), name="p")
    assert pipe.call(lambda x, *, y: x + y, 1, y=2) == 3
    assert log == ["a>", "b>", "c>", "<c", "<b", "<a"]
    assert isinstance(Record("x", log), rs.Policy)


@pytest.mark.anyio
async def test_async_stages_run_outermost_first() -> None:
    log: list[str] = []
    pipe = rs.Pipeline(Record("a", log), Record("b", log))

    async def add(x: int, *, y: int) -> int:
        await anyio.sleep(0)
        return x + y

    assert await pipe.acall(add, 1, y=2) == 3
    assert log == ["a>", "b>", "<b", "<a"]


def test_empty_and_none_stages() -> None:
    assert rs.Pipeline().call(max, 1, 2) == 2
    log: list[str] = []
    pipe = rs.Pipeline(None, Record("a", log), None)
    assert len(pipe) == 1
    assert pipe.call(min, 1, 2) == 1


def test_a_stage_that_is_not_a_policy_is_refused() -> None:
    with pytest.raises(rs.ConfigError) as info:
        rs.Pipeline(rs.Retry(), "retry please")  # type: ignore[arg-type]
    assert info.value.errors[0][0] == "policies[1]"


@pytest.mark.anyio
async def test_a_sync_only_stage_refuses_async_calls_clearly() -> None:
    class SyncOnly:
        def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    pipe = rs.Pipeline(SyncOnly())  # type: ignore[arg-type]
    assert pipe.call(abs, -1) == 1

    async def op() -> int:
        return 1

    with pytest.raises(TypeError, match="no acall"):
        await pipe.acall(op)


def test_decorator_form_sync_and_async() -> None:
    clock = VirtualClock()
    pipe = rs.Pipeline(rs.Retry(backoff=rs.Backoff.constant(1), clock=clock), rs.Bulkhead(2))
    down = Down(1)

    @pipe
    def op(x: int) -> str:
        """Op docs."""
        return down(x)

    assert op(5) == "ok5"
    assert op.__doc__ == "Op docs."
    assert clock.sleeps == [1.0]

    @pipe
    async def aop(x: int) -> str:
        return x * "a"

    assert anyio.run(aop, 2) == "aa"


def test_standard_puts_policies_in_the_recommended_order() -> None:
    total, attempt = rs.Timeout(30), rs.Timeout(5)
    retry, bulkhead, limiter = rs.Retry(), rs.Bulkhead(5), rs.RateLimiter(10)
    breaker = rs.CircuitBreaker("std")
    pipe = rs.Pipeline.standard(
        attempt_timeout=attempt,
        bulkhead=bulkhead,
        breaker=breaker,
        rate_limit=limiter,
        retry=retry,
        timeout=total,
        name="std",
    )
    assert pipe.policies == (total, retry, limiter, breaker, bulkhead, attempt)


def test_retry_outside_a_breaker_waits_for_half_open() -> None:
    clock = VirtualClock()
    breaker = rs.CircuitBreaker(
        "llm", minimum_calls=2, open_duration=10.0, half_open_calls=1, clock=clock
    )
    # 0.1 s between attempts, but a backoff that may wait up to 10 s: a breaker open for
    # less than that is worth waiting for
    backoff = rs.Backoff.linear(0.1, 0.0, maximum=10.0)
    retry = rs.Retry(max_attempts=5, backoff=backoff, clock=clock)
    pipe = rs.Pipeline(retry, breaker, name="llm")
    down = Down(2)
    assert pipe.call(down, 7) == "ok7"
    # attempts 1 and 2 fail and open the breaker; attempt 3 is rejected with 9.9 s left, so
    # the retry waits for the trial instead of hammering; attempt 4 is the trial and closes it
    assert down.calls == 3
    assert clock.sleeps == [0.1, 0.1, pytest.approx(9.9)]  # it opened at t=0.1
    assert breaker.state is rs.CircuitState.CLOSED


@pytest.mark.parametrize("engine", ["tenacity", "native"])
def test_retry_fails_fast_on_a_breaker_open_longer_than_its_backoff(engine: Any) -> None:
    # issue 11, seen 4: each call slept out the breaker's remaining open time
    clock = VirtualClock()
    breaker = rs.CircuitBreaker("llm", minimum_calls=2, open_duration=30.0, clock=clock)
    retry = rs.Retry(
        max_attempts=5,
        backoff=rs.Backoff.exponential(0.1, maximum=5.0, jitter=None),
        clock=clock,
        engine=engine,
    )
    pipe = rs.Pipeline(retry, breaker)
    down = Down(100)
    with pytest.raises(rs.CircuitOpenError) as info:
        pipe.call(down)
    assert down.calls == 2
    assert clock.sleeps == [0.1, 0.2]  # no 29.7 s wait for the trial
    assert "circuit is open" in info.value.__notes__[-1]
    with pytest.raises(rs.CircuitOpenError):  # and the next call fails at once
        pipe.call(down)
    assert clock.sleeps == [0.1, 0.2]


def test_retry_waits_for_an_open_breaker_only_within_the_time_budget() -> None:
    clock = VirtualClock()
    breaker = rs.CircuitBreaker("llm", minimum_calls=1, open_duration=2.0, clock=clock)
    backoff = rs.Backoff.linear(0.0, 0.0, maximum=10.0)  # would wait up to 10 s
    pipe = rs.Pipeline(rs.Retry(max_attempts=5, backoff=backoff, clock=clock), breaker)
    with pytest.raises(ConnectionError):
        pipe.call(Down(100))  # opens it (and re-opens it after each trial)
    clock.sleeps.clear()
    with rs.deadline(1.0, clock=clock), pytest.raises(rs.CircuitOpenError):
        pipe.call(Down(0))  # 2 s open > 1 s budget: fail fast
    assert clock.sleeps == []
    with rs.deadline(5.0, clock=clock):
        assert pipe.call(Down(0)) == "ok0"  # 2 s fits: it waits for the trial
    assert clock.sleeps == [2.0]


def test_retry_outside_a_breaker_counts_every_attempt() -> None:
    clock = VirtualClock()
    breaker = rs.CircuitBreaker("db", minimum_calls=100, clock=clock)
    pipe = rs.Pipeline(
        rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0), clock=clock), breaker
    )
    assert pipe.call(Down(2)) == "ok0"
    assert breaker.snapshot()["calls"] == 3


def test_retry_inside_a_breaker_is_one_call_to_the_breaker() -> None:
    clock = VirtualClock()
    breaker = rs.CircuitBreaker("db", minimum_calls=100, clock=clock)
    pipe = rs.Pipeline(
        breaker, rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0), clock=clock)
    )
    assert pipe.call(Down(2)) == "ok0"
    assert breaker.snapshot()["calls"] == 1
    with pytest.raises(ConnectionError):
        pipe.call(Down(5))
    assert breaker.snapshot()["calls"] == 2


def test_a_forced_open_breaker_stops_the_retry_at_once() -> None:
    clock = VirtualClock()
    breaker = rs.CircuitBreaker("x", clock=clock)
    breaker.force_open()
    down = Down(0)
    with pytest.raises(rs.CircuitOpenError) as info:
        rs.Pipeline(rs.Retry(max_attempts=5, clock=clock), breaker).call(down)
    assert "forced open" in info.value.__notes__[0]
    assert down.calls == 0
    assert clock.sleeps == []


@pytest.mark.anyio
async def test_async_retry_outside_a_breaker_waits_for_half_open() -> None:
    clock = VirtualClock()
    breaker = rs.CircuitBreaker(
        "allm", minimum_calls=2, open_duration=5.0, half_open_calls=1, clock=clock
    )
    pipe = rs.Pipeline(
        rs.Retry(max_attempts=5, backoff=rs.Backoff.linear(0.1, 0.0, maximum=10.0), clock=clock),
        breaker,
        rs.Bulkhead(4),
    )
    down = Down(2)
    assert await pipe.acall(down.acall, 1) == "ok1"
    assert down.calls == 3
    assert clock.sleeps == [0.1, 0.1, pytest.approx(4.9)]


@pytest.mark.anyio
async def test_a_total_timeout_bounds_the_whole_retry_loop() -> None:
    pipe = rs.Pipeline(
        rs.Timeout(0.1),
        rs.Retry(max_attempts=1000, backoff=rs.Backoff.constant(0.01)),
    )
    down = Down(10_000)
    start = time.perf_counter()
    with pytest.raises(rs.TimeoutExceeded):
        await pipe.acall(down.acall)
    assert time.perf_counter() - start < 3.0  # not the loop's 100 s; generous for a loaded CI
    assert 2 <= down.calls < 1000


def test_a_per_attempt_timeout_inside_retry_is_retried() -> None:
    # cooperative (the default): the attempt's budget is what a budget-aware call (an httpx
    # request through our transport, a nested Retry) stops at; a timed-out attempt is retried
    clock = VirtualClock()
    attempts: list[float | None] = []

    def op() -> str:
        attempts.append(rs.remaining())
        if len(attempts) == 1:
            clock.advance(0.5)  # a slow first attempt...
            if rs.remaining() == 0:  # ...that honours its budget, as our primitives do
                raise rs.TimeoutExceeded(0.25)
            return "slow"
        return "ok"

    pipe = rs.Pipeline(
        rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0), clock=clock),
        rs.Timeout(0.25, clock=clock),
    )
    assert pipe.call(op) == "ok"
    assert attempts == [0.25, 0.25]  # each attempt has a fresh budget of its own


def test_a_per_attempt_thread_timeout_cuts_a_hung_attempt() -> None:
    hang = threading.Event()
    calls = 0

    def op() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            hang.wait(5)
            return "slow"
        return "ok"

    timeout = rs.Timeout(0.05, mode="thread")
    pipe = rs.Pipeline(rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0)), timeout)
    start = time.perf_counter()
    assert pipe.call(op) == "ok"
    assert time.perf_counter() - start < 2.0
    assert calls == 2
    hang.set()
    timeout.close()


@pytest.mark.anyio
async def test_a_per_attempt_async_timeout_cancels_a_hung_attempt() -> None:
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(5)
            return "slow"
        return "ok"

    pipe = rs.Pipeline(rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0)), rs.Timeout(0.05))
    with anyio.fail_after(3):
        assert await pipe.acall(op) == "ok"
    assert calls == 2


def test_repr_lists_the_stages() -> None:
    text = repr(rs.Pipeline(rs.Retry(), rs.Bulkhead(3), name="p"))
    assert text.startswith("Pipeline(Retry(")
    assert "Bulkhead(" in text


def test_an_unnamed_retry_reports_the_next_stages_name() -> None:
    from resilience import events

    clock = VirtualClock()
    seen: list[Any] = []
    stop = events.subscribe(seen.append)
    try:
        pipe = rs.Pipeline(
            rs.Retry(backoff=rs.Backoff.constant(0), clock=clock),
            rs.CircuitBreaker("llm", clock=clock),
        )
        pipe.call(Down(1))
    finally:
        stop()
    assert [e.operation for e in seen if isinstance(e, events.RetryAttempted)] == ["llm"]
