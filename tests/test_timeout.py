"""Timeout: async calls are really cancelled; sync callers get TimeoutExceeded on time."""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

import anyio
import pytest

import resilience as rs
from resilience import events

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def test_a_fast_sync_call_returns_its_value() -> None:
    assert rs.Timeout(1.0).call(sum, [1, 2, 3]) == 6


def test_a_sync_error_propagates_as_is() -> None:
    def boom() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        rs.Timeout(1.0).call(boom)


def test_a_slow_sync_call_raises_timeout_exceeded_on_time() -> None:
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> str:
        release.wait(5)
        finished.set()
        return "late"

    t = rs.Timeout(0.05, name="directory")
    start = time.perf_counter()
    with pytest.raises(rs.TimeoutExceeded) as info:
        t.call(stuck)
    elapsed = time.perf_counter() - start
    assert 0.04 <= elapsed < 0.5
    assert isinstance(info.value, TimeoutError)  # callers' `except TimeoutError` still work
    assert "'directory'" in str(info.value)
    # documented: the sync call keeps running in its worker after the caller gave up
    assert not finished.is_set()
    release.set()
    assert finished.wait(2)
    t.close()


def test_calls_waiting_for_a_worker_past_the_deadline_never_start() -> None:
    release = threading.Event()
    started: list[int] = []

    def stuck(n: int) -> None:
        started.append(n)
        release.wait(5)

    t = rs.Timeout(0.05, max_workers=1)
    with pytest.raises(rs.TimeoutExceeded):
        t.call(stuck, 1)
    with pytest.raises(rs.TimeoutExceeded):
        t.call(stuck, 2)  # queued behind the stuck worker; cancelled at its deadline
    release.set()
    time.sleep(0.05)
    assert started == [1]
    t.close()


def test_context_variables_reach_the_worker() -> None:
    token = REQUEST_ID.set("req-42")
    try:
        assert rs.Timeout(1.0).call(REQUEST_ID.get) == "req-42"
    finally:
        REQUEST_ID.reset(token)


def test_timeout_emits_an_event() -> None:
    seen: list[Any] = []
    stop = events.subscribe(seen.append)
    try:
        with pytest.raises(rs.TimeoutExceeded):
            rs.Timeout(0.02, name="op").call(time.sleep, 0.2)
    finally:
        stop()
    assert seen == [events.TimeoutOccurred("op", 0.02)]


@pytest.mark.anyio
async def test_async_timeout_really_cancels_the_coroutine() -> None:
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
    with pytest.raises(rs.TimeoutExceeded):
        await rs.Timeout(0.05).acall(slow)
    assert time.perf_counter() - start < 1.0
    assert cancelled
    assert not reached_end


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
