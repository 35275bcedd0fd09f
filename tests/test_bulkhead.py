"""Bulkhead: bounded concurrency and a bounded line, sync (real threads) and async."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import resilience as rs
from resilience import events


def test_the_n_plus_first_concurrent_call_is_refused() -> None:
    bh = rs.Bulkhead(max_concurrent=3, max_waiting=0, name="reports")
    inside = threading.Barrier(4)
    release = threading.Event()

    def work() -> None:
        inside.wait(2)
        release.wait(2)

    threads = [threading.Thread(target=bh.call, args=(work,)) for _ in range(3)]
    for t in threads:
        t.start()
    inside.wait(2)  # all three are running
    assert bh.running == 3
    with pytest.raises(rs.BulkheadFull) as info:
        bh.call(lambda: None)
    assert "reports" in str(info.value)
    assert info.value.max_concurrent == 3
    release.set()
    for t in threads:
        t.join(2)
    assert bh.running == 0
    assert bh.call(lambda: "free again") == "free again"


def test_waiters_get_slots_in_order_and_the_line_is_bounded() -> None:
    bh = rs.Bulkhead(max_concurrent=1, max_waiting=2)
    release = threading.Event()
    order: list[int] = []
    started = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(2)

    holder = threading.Thread(target=bh.call, args=(hold,))
    holder.start()
    started.wait(2)
    waiters = []
    for n in (1, 2):
        t = threading.Thread(target=bh.call, args=(order.append, n))
        t.start()
        waiters.append(t)
        while bh.waiting < n:  # make the order of arrival certain
            threading.Event().wait(0.001)
    with pytest.raises(rs.BulkheadFull):
        bh.call(lambda: None)  # one running, two waiting: full
    release.set()
    for t in [holder, *waiters]:
        t.join(2)
    assert order == [1, 2]
    assert (bh.running, bh.waiting) == (0, 0)


def test_max_wait_gives_up_waiting() -> None:
    bh = rs.Bulkhead(max_concurrent=1, max_waiting=1, max_wait=0.03)
    release = threading.Event()
    started = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(2)

    t = threading.Thread(target=bh.call, args=(hold,))
    t.start()
    started.wait(2)
    with pytest.raises(rs.BulkheadFull):
        bh.call(lambda: None)
    assert bh.waiting == 0
    release.set()
    t.join(2)


def test_a_failing_call_frees_its_slot() -> None:
    bh = rs.Bulkhead(max_concurrent=1)

    def boom() -> None:
        raise ValueError("x")

    for _ in range(3):
        with pytest.raises(ValueError):
            bh.call(boom)
    assert bh.running == 0


def test_many_threads_never_exceed_the_limit() -> None:
    bh = rs.Bulkhead(max_concurrent=4, max_waiting=100)
    lock = threading.Lock()
    now = peak = 0

    def work() -> None:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        threading.Event().wait(0.001)
        with lock:
            now -= 1

    def many() -> None:
        for _ in range(20):
            bh.call(work)

    threads = [threading.Thread(target=many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert 1 <= peak <= 4
    assert (bh.running, bh.waiting) == (0, 0)


def test_events_report_occupancy_and_rejections() -> None:
    seen: list[Any] = []
    stop = events.subscribe(seen.append)
    try:
        bh = rs.Bulkhead(1, name="b")
        bh.call(lambda: None)
        with pytest.raises(rs.BulkheadFull):
            bh.call(lambda: bh.call(lambda: None))
    finally:
        stop()
    kinds = [(type(e).__name__, getattr(e, "running", None)) for e in seen]
    assert ("BulkheadEvent", 1) in kinds
    assert events.CallRejected("b", "bulkhead_full", None) in seen


@pytest.mark.anyio
async def test_async_bulkhead_rejects_and_queues() -> None:
    bh = rs.Bulkhead(max_concurrent=2, max_waiting=1)
    release = anyio.Event()
    done: list[int] = []

    async def work(n: int) -> None:
        await release.wait()
        done.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(bh.acall, work, n)
        await anyio.wait_all_tasks_blocked()
        assert (bh.running, bh.waiting) == (2, 1)
        with pytest.raises(rs.BulkheadFull):
            await bh.acall(work, 99)
        release.set()
    assert sorted(done) == [0, 1, 2]
    assert (bh.running, bh.waiting) == (0, 0)


@pytest.mark.anyio
async def test_a_cancelled_async_waiter_leaves_the_line() -> None:
    bh = rs.Bulkhead(max_concurrent=1, max_waiting=5)
    release = anyio.Event()

    async def hold() -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(bh.acall, hold)
        await anyio.wait_all_tasks_blocked()
        with anyio.move_on_after(0.02):
            await bh.acall(hold)
        assert bh.waiting == 0
        release.set()
    assert (bh.running, bh.waiting) == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 1.5}, "max_concurrent"),
        ({"max_waiting": -1}, "max_waiting"),
        ({"max_wait": 0}, "max_wait"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(rs.ConfigError) as info:
        rs.Bulkhead(**kwargs)
    assert [loc for loc, _ in info.value.errors] == [argument]


def test_a_huge_limit_costs_no_memory_up_front() -> None:
    bh = rs.Bulkhead(max_concurrent=10**12)
    assert bh.call(lambda: "ok") == "ok"
    assert bh.running == 0


def test_slots_beyond_the_first_tokens_are_minted_and_bounded() -> None:
    bh = rs.Bulkhead(max_concurrent=40, max_waiting=0)
    release = threading.Event()
    started = threading.Barrier(41)

    def hold() -> None:
        started.wait(5)
        release.wait(5)

    threads = [threading.Thread(target=bh.call, args=(hold,)) for _ in range(40)]
    for t in threads:
        t.start()
    started.wait(5)
    assert bh.running == 40
    with pytest.raises(rs.BulkheadFull):
        bh.call(lambda: None)
    release.set()
    for t in threads:
        t.join(5)
    assert bh.running == 0


def test_a_rejection_is_not_chained_to_an_internal_error() -> None:
    bh = rs.Bulkhead(max_concurrent=1, max_waiting=0)
    with pytest.raises(rs.BulkheadFull) as info:
        bh.call(bh.call, lambda: None)  # the inner call finds the only slot taken
    assert info.value.__context__ is None  # no "During handling of IndexError..." traceback
    assert info.value.__cause__ is None


@pytest.mark.anyio
async def test_an_async_rejection_is_not_chained_to_an_internal_error() -> None:
    bh = rs.Bulkhead(max_concurrent=1, max_waiting=0)

    async def inner() -> None:
        await bh.acall(anyio.sleep, 0)

    with pytest.raises(rs.BulkheadFull) as info:
        await bh.acall(inner)
    assert info.value.__context__ is None


class _Interrupted(BaseException):
    pass


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, _Interrupted])
def test_a_sync_waiter_interrupted_while_waiting_does_not_leak_its_slot(
    exc: type[BaseException],
) -> None:
    # issue 11, seen 7: the waiter stayed in line; the slot handed to it was lost forever
    import signal

    bh = rs.Bulkhead(max_concurrent=1, max_waiting=1)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(5)

    holder = threading.Thread(target=bh.call, args=(hold,))
    holder.start()
    assert holding.wait(2)

    def interrupt(signum: int, frame: object) -> None:
        raise exc()

    main = threading.get_ident()
    previous = signal.signal(signal.SIGUSR1, interrupt)
    # the slot is handed over and the signal arrives at about the same time: both orders
    timer = threading.Timer(0.1, lambda: signal.pthread_kill(main, signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(exc):
            bh.call(lambda: "never")  # waits in line until interrupted
    finally:
        timer.join(2)
        signal.signal(signal.SIGUSR1, previous)
    assert bh.waiting == 0
    release.set()
    holder.join(2)
    assert bh.running == 0
    assert bh.call(lambda: "free") == "free"


def test_bulkhead_rejections_do_not_open_an_enclosing_breaker() -> None:
    # issue 11, seen 3: three BulkheadFull rejections opened a breaker over a healthy backend
    from resilience.testing import VirtualClock

    breaker = rs.CircuitBreaker("svc", minimum_calls=3, clock=VirtualClock())
    bh = rs.Bulkhead(1, 0)
    pipe = rs.Pipeline(breaker, bh)
    for _ in range(5):
        with pytest.raises(rs.BulkheadFull):
            pipe.call(pipe.call, lambda: "ok")  # the inner call finds the slot taken
    assert breaker.state is rs.CircuitState.CLOSED
    assert pipe.call(lambda: "ok") == "ok"


@pytest.mark.anyio
async def test_async_bulkhead_rejections_do_not_open_an_enclosing_breaker() -> None:
    from resilience.testing import VirtualClock

    breaker = rs.CircuitBreaker("asvc", minimum_calls=3, clock=VirtualClock())
    bh = rs.Bulkhead(1, 0)
    pipe = rs.Pipeline(breaker, bh)

    async def ok() -> str:
        return "ok"

    async def nested() -> str:
        return await pipe.acall(ok)

    for _ in range(5):
        with pytest.raises(rs.BulkheadFull):
            await pipe.acall(nested)
    assert breaker.state is rs.CircuitState.CLOSED
    assert await pipe.acall(ok) == "ok"
