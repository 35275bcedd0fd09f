"""Pipeline: stages run outermost first; the order decides how retries and breakers meet."""

from __future__ import annotations

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
    retry = rs.Retry(max_attempts=5, backoff=rs.Backoff.constant(0.1), clock=clock)
    pipe = rs.Pipeline(retry, breaker, name="llm")
    down = Down(2)
    assert pipe.call(down, 7) == "ok7"
    # attempts 1 and 2 fail and open the breaker; attempt 3 is rejected with 9.9 s left, so
    # the retry waits for the trial instead of hammering; attempt 4 is the trial and closes it
    assert down.calls == 3
    assert clock.sleeps == [0.1, 0.1, pytest.approx(9.9)]  # it opened at t=0.1
    assert breaker.state is rs.CircuitState.CLOSED


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
        rs.Retry(max_attempts=5, backoff=rs.Backoff.constant(0.1), clock=clock),
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
    assert time.perf_counter() - start < 1.0
    assert 2 <= down.calls < 1000


def test_a_per_attempt_timeout_inside_retry_is_retried() -> None:
    clock = VirtualClock()
    slow_then_fast = iter([0.3, 0.0])

    def op() -> str:
        time.sleep(next(slow_then_fast))
        return "ok"

    pipe = rs.Pipeline(
        rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0), clock=clock), rs.Timeout(0.05)
    )
    assert pipe.call(op) == "ok"


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
