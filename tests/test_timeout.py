"""Timeout: cooperative by default (the caller's thread, under a time budget), thread mode on
daemon workers with a stop signal, async calls really cancelled whatever the mode."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import anyio
import pytest

import resilience as rs
from resilience import events
from resilience.testing import VirtualClock

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


# --- cooperative (the default) -----------------------------------------------------------


def test_cooperative_is_the_default_and_runs_on_the_callers_thread() -> None:
    local = threading.local()
    local.user = "alice"
    t = rs.Timeout(1.0)
    assert t.mode == "cooperative"
    assert t.call(lambda: (threading.get_ident(), local.user)) == (threading.get_ident(), "alice")
    assert t._workers is None  # no worker thread was ever started


def test_a_fast_sync_call_returns_its_value() -> None:
    assert rs.Timeout(1.0).call(sum, [1, 2, 3]) == 6


def test_a_sync_error_propagates_as_is() -> None:
    def boom() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        rs.Timeout(1.0).call(boom)


def test_the_call_runs_under_a_budget_on_the_timeouts_clock() -> None:
    clock = VirtualClock()
    t = rs.Timeout(2.0, clock=clock)

    def work() -> float | None:
        clock.advance(0.5)
        return rs.remaining()

    assert rs.remaining() is None
    assert t.call(work) == 1.5
    assert rs.remaining() is None  # the budget ends with the call


def test_a_late_sync_call_keeps_its_result_and_is_reported(seen: list[Any]) -> None:
    clock = VirtualClock()
    writes: list[str] = []

    def ignores_the_budget() -> str:
        clock.advance(3.0)  # a slow call that never looks at rs.remaining()
        writes.append("row")
        return "written"

    assert rs.Timeout(1.0, name="db", clock=clock).call(ignores_the_budget) == "written"
    assert writes == ["row"]  # done once; the caller has its result, nothing is repeated
    assert [e for e in seen if isinstance(e, events.TimeoutOccurred)] == [
        events.TimeoutOccurred("db", 1.0, late=True)
    ]


def test_a_call_on_time_emits_nothing(seen: list[Any]) -> None:
    clock = VirtualClock()
    rs.Timeout(1.0, clock=clock).call(clock.advance, 0.5)
    assert not [e for e in seen if isinstance(e, events.TimeoutOccurred)]


def test_nested_timeouts_take_the_smaller_budget() -> None:
    clock = VirtualClock()
    outer, inner = rs.Timeout(1.0, clock=clock), rs.Timeout(10.0, clock=clock)
    assert outer.call(inner.call, rs.remaining) == 1.0


def test_a_retry_inside_starts_no_attempt_or_wait_the_budget_cannot_hold() -> None:
    # issue 11, seen 1: a failing backend kept being hit after the caller's timeout
    clock = VirtualClock()
    calls: list[float] = []

    def down() -> None:
        calls.append(clock.monotonic())
        raise ConnectionError("refused")

    pipe = rs.Pipeline(
        rs.Timeout(1.0, clock=clock),
        rs.Retry(max_attempts=25, backoff=rs.Backoff.constant(0.25), clock=clock),
    )
    with pytest.raises(rs.TimeoutExceeded) as info:
        pipe.call(down)
    # attempts at 0, .25, .5, .75; the wait after the last would end exactly at the deadline
    assert calls == [0.0, 0.25, 0.5, 0.75]
    assert clock.sleeps == [0.25, 0.25, 0.25]
    assert "after 4 attempts: the time budget" in info.value.__notes__[-1]
    assert isinstance(info.value.__cause__, ConnectionError)  # the last attempt's error


def test_a_call_that_finds_the_budget_used_up_gets_timeout_exceeded(seen: list[Any]) -> None:
    clock = VirtualClock()
    calls = 0

    def inner() -> str:
        nonlocal calls
        calls += 1
        return "ran"

    retry = rs.Retry(max_attempts=3, clock=clock)

    def slow_then_retry() -> str:
        clock.advance(2.0)
        return retry.call(inner)

    with pytest.raises(rs.TimeoutExceeded):
        rs.Timeout(1.0, name="op", clock=clock).call(slow_then_retry)
    assert calls == 0
    assert [e for e in seen if isinstance(e, events.TimeoutOccurred)] == [
        events.TimeoutOccurred("op", 1.0, late=False)
    ]


def test_context_variables_are_the_callers_own() -> None:
    token = REQUEST_ID.set("req-42")
    try:
        assert rs.Timeout(1.0).call(REQUEST_ID.get) == "req-42"
    finally:
        REQUEST_ID.reset(token)


# --- thread mode ---------------------------------------------------------------------------


def test_thread_mode_raises_timeout_exceeded_on_time() -> None:
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> str:
        release.wait(5)
        finished.set()
        return "late"

    t = rs.Timeout(0.05, mode="thread", name="directory")
    start = time.perf_counter()
    with pytest.raises(rs.TimeoutExceeded) as info:
        t.call(stuck)
    elapsed = time.perf_counter() - start
    assert 0.04 <= elapsed < 3.0  # not the 5 s the call takes; generous for a loaded CI
    assert isinstance(info.value, TimeoutError)  # callers' `except TimeoutError` still work
    assert "'directory'" in str(info.value)
    # documented: the sync call keeps running in its worker after the caller gave up
    assert not finished.is_set()
    release.set()
    assert finished.wait(2)
    t.close()


def test_thread_mode_workers_are_daemons() -> None:
    release = threading.Event()
    t = rs.Timeout(0.05, mode="thread", name="hung")
    with pytest.raises(rs.TimeoutExceeded):
        t.call(release.wait, 5)
    workers = [th for th in threading.enumerate() if th.name.startswith("resilience-timeout-hung")]
    assert workers
    assert all(th.daemon for th in workers)
    release.set()
    t.close()


def test_thread_mode_returns_values_and_errors() -> None:
    t = rs.Timeout(2.0, mode="thread")
    assert t.call(sum, [1, 2]) == 3
    with pytest.raises(KeyError):
        t.call({}.__getitem__, "x")
    t.close()


def test_calls_waiting_for_a_worker_past_the_deadline_never_start() -> None:
    release = threading.Event()
    started: list[int] = []

    def stuck(n: int) -> None:
        started.append(n)
        release.wait(5)

    t = rs.Timeout(0.05, mode="thread", max_workers=1)
    with pytest.raises(rs.TimeoutExceeded):
        t.call(stuck, 1)
    with pytest.raises(rs.TimeoutExceeded):
        t.call(stuck, 2)  # queued behind the stuck worker; given up at its deadline
    release.set()
    time.sleep(0.1)
    assert started == [1]
    t.close()


def test_context_variables_reach_the_worker() -> None:
    token = REQUEST_ID.set("req-42")
    try:
        assert rs.Timeout(1.0, mode="thread").call(REQUEST_ID.get) == "req-42"
    finally:
        REQUEST_ID.reset(token)


def test_a_retry_inside_a_thread_timeout_stops_when_the_caller_gives_up() -> None:
    # The budget is on a VirtualClock that never moves: only the stop signal can end the
    # retry loop once the caller got TimeoutExceeded (real time, 0.1 s).
    clock = VirtualClock()
    release = threading.Event()
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait(5)
        raise ConnectionError("refused")

    gave_up = threading.Event()

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.RetryGaveUp) and event.reason == "time_budget":
            gave_up.set()

    timeout = rs.Timeout(0.1, mode="thread", clock=clock)
    pipe = rs.Pipeline(
        timeout, rs.Retry(max_attempts=50, backoff=rs.Backoff.constant(0.001), clock=clock)
    )
    unsubscribe = events.subscribe(on_event)
    try:
        with pytest.raises(rs.TimeoutExceeded):
            pipe.call(down)
        release.set()
        # the worker's retry loop ends by itself (no fixed sleep: wait for its last word)
        assert gave_up.wait(5)
    finally:
        unsubscribe()
    assert calls == 1  # no attempt started after the caller gave up
    timeout.close()


def test_thread_mode_timeout_emits_an_event(seen: list[Any]) -> None:
    release = threading.Event()
    with pytest.raises(rs.TimeoutExceeded):
        rs.Timeout(0.02, mode="thread", name="op").call(release.wait, 2)
    release.set()
    assert [e for e in seen if isinstance(e, events.TimeoutOccurred)] == [
        events.TimeoutOccurred("op", 0.02)
    ]


def test_a_hung_thread_mode_call_does_not_delay_interpreter_exit() -> None:
    # issue 11, seen 2: exit waited 4.1 s for a non-daemon pool thread
    code = textwrap.dedent(
        """
        import time, resilience as rs
        t = rs.Timeout(0.05, mode="thread")
        try:
            t.call(time.sleep, 30)
        except rs.TimeoutExceeded:
            print(time.time(), flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    ended = time.time()
    gave_up = float(proc.stdout.strip())
    assert ended - gave_up < 0.5, proc.stderr


# --- async: real cancellation, whatever the mode --------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["cooperative", "thread"])
async def test_async_timeout_really_cancels_the_coroutine(mode: Any) -> None:
    reached_end = False
    cancelled = False

    async def slow() -> None:
        nonlocal reached_end, cancelled
        try:
            await anyio.sleep(5)
            reached_end = True
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise

    start = time.perf_counter()
    with anyio.fail_after(5):
        with pytest.raises(rs.TimeoutExceeded):
            await rs.Timeout(0.05, mode=mode).acall(slow)
    assert time.perf_counter() - start < 2.0
    assert cancelled
    assert not reached_end


@pytest.mark.anyio
async def test_async_calls_run_under_the_budget_on_the_clock() -> None:
    clock = VirtualClock()

    async def work() -> float | None:
        await clock.asleep(0.25)
        return rs.remaining()

    assert await rs.Timeout(1.0, clock=clock).acall(work) == 0.75
    assert rs.remaining() is None


@pytest.mark.anyio
async def test_async_retry_inside_honours_the_budget() -> None:
    clock = VirtualClock()
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    pipe = rs.Pipeline(
        rs.Timeout(1.0, clock=clock),
        rs.Retry(max_attempts=25, backoff=rs.Backoff.constant(0.25), clock=clock),
    )
    with anyio.fail_after(5), pytest.raises(rs.TimeoutExceeded):
        await pipe.acall(down)
    assert calls == 4
    assert clock.sleeps == [0.25, 0.25, 0.25]


@pytest.mark.anyio
async def test_an_outer_budget_shortens_an_async_timeout() -> None:
    async def slow() -> None:
        await anyio.sleep(5)

    start = time.perf_counter()
    with anyio.fail_after(5), pytest.raises(rs.TimeoutExceeded):
        async with rs.deadline(0.05):
            await rs.Timeout(10).acall(slow)
    assert time.perf_counter() - start < 2.0


@pytest.mark.anyio
async def test_async_fast_call_and_decorator() -> None:
    @rs.Timeout(1.0)
    async def quick(x: int) -> int:
        await anyio.sleep(0)
        return x * 2

    assert await quick(4) == 8


@pytest.mark.anyio
async def test_an_outer_cancellation_is_not_turned_into_a_timeout() -> None:
    async def slow() -> None:
        await anyio.sleep(5)

    with anyio.move_on_after(0.05) as outer:
        await rs.Timeout(10).acall(slow)
    assert outer.cancelled_caught


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan"), "1"])
def test_bad_seconds(seconds: object) -> None:
    with pytest.raises(rs.ConfigError) as info:
        rs.Timeout(seconds)  # type: ignore[arg-type]
    assert info.value.errors[0][0] == "seconds"


def test_bad_mode() -> None:
    with pytest.raises(rs.ConfigError) as info:
        rs.Timeout(1.0, mode="pessimistic")  # type: ignore[arg-type]
    assert info.value.errors[0][0] == "mode"
