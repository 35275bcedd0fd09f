"""The breaker under real threads and tasks: counters stay exact, no lock spans the call."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator

import anyio
import pytest

import resilience as rs
from resilience import events
from resilience.breaker import CircuitBreaker, CircuitState, CountWindow
from resilience.testing import VirtualClock

THREADS = 8
PER_THREAD = 2_000


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    """Make the interpreter switch threads every microsecond, so races show up."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def run_threads(target: Callable[[int], None], n: int = THREADS) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()


@pytest.mark.parametrize("listening", [False, True], ids=["fast-path", "with-listener"])
def test_eight_threads_keep_exact_counters(listening: bool) -> None:
    stop = events.subscribe(lambda e: None) if listening else None
    br = CircuitBreaker(
        "busy",
        failure_rate_threshold=1.0,  # never all failures: stays closed
        minimum_calls=1_000,
        window=CountWindow(THREADS * PER_THREAD),
    )
    start = threading.Barrier(THREADS)

    def flaky(i: int) -> int:
        if i % 4 == 0:
            raise ConnectionError("every 4th call fails")
        return i

    def worker(_: int) -> None:
        start.wait(timeout=30)
        for i in range(PER_THREAD):
            try:
                br.call(flaky, i)
            except ConnectionError:
                pass

    try:
        run_threads(worker)
    finally:
        if stop is not None:
            stop()
    snap = br.snapshot()
    assert snap["state"] == "closed"
    assert snap["calls"] == THREADS * PER_THREAD
    assert snap["failures"] == THREADS * PER_THREAD // 4


def test_no_lock_is_held_across_the_call() -> None:
    # Every call waits inside the breaker until all eight are inside at once: a breaker that
    # held its lock around the call would let only one in, and the barrier would break.
    br = CircuitBreaker("parallel", minimum_calls=1)
    inside = threading.Barrier(THREADS, timeout=10)
    broken: list[BaseException] = []

    def meet() -> None:
        inside.wait()  # the barrier has timeout=10

    def worker(_: int) -> None:
        try:
            br.call(meet)
        except threading.BrokenBarrierError as e:
            broken.append(e)

    run_threads(worker)
    assert broken == []
    assert br.snapshot()["calls"] == THREADS


def test_half_open_admits_exactly_n_of_many_threads() -> None:
    clock = VirtualClock()
    br = CircuitBreaker("probe", minimum_calls=1, half_open_calls=3, open_duration=5, clock=clock)
    with pytest.raises(ConnectionError):
        br.call(lambda: (_ for _ in ()).throw(ConnectionError("down")))
    clock.advance(5)
    go = threading.Event()
    admitted = threading.Semaphore(0)
    start = threading.Barrier(16)
    outcomes: list[str] = []
    lock = threading.Lock()

    def trial() -> str:
        admitted.release()
        go.wait(timeout=10)
        return "ran"

    def worker(_: int) -> None:
        start.wait(timeout=30)
        try:
            result = br.call(trial)
        except rs.CircuitOpenError as e:
            result = e.state
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    for _ in range(3):
        assert admitted.acquire(timeout=10)
    deadline = time.monotonic() + 30  # a real-time bound: broken code fails, never hangs
    while True:  # wait until the 13 others were turned away
        with lock:
            if len(outcomes) == 13:
                break
        assert time.monotonic() < deadline, f"only {len(outcomes)} of 13 were turned away"
        threading.Event().wait(0.001)
    go.set()
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive()
    assert sorted(outcomes) == ["half_open"] * 13 + ["ran"] * 3
    assert br.state is CircuitState.CLOSED


def test_concurrent_failures_open_once() -> None:
    transitions: list[events.StateTransition] = []
    stop = events.subscribe(
        lambda e: transitions.append(e) if isinstance(e, events.StateTransition) else None
    )
    br = CircuitBreaker("storm", minimum_calls=20, open_duration=60)
    start = threading.Barrier(THREADS)
    rejected = [0] * THREADS

    def down() -> None:
        raise ConnectionError("down")

    def worker(n: int) -> None:
        start.wait(timeout=30)
        for _ in range(200):
            try:
                br.call(down)
            except ConnectionError:
                pass
            except rs.CircuitOpenError:
                rejected[n] += 1

    try:
        run_threads(worker)
    finally:
        stop()
    assert br.state is CircuitState.OPEN
    assert [(t.from_state, t.to_state) for t in transitions] == [("closed", "open")]
    assert sum(rejected) >= THREADS * 200 - 20 - THREADS  # at most a few slipped in-flight


@pytest.mark.anyio
async def test_many_tasks_keep_exact_counters() -> None:
    br = CircuitBreaker(
        "tasks", failure_rate_threshold=1.0, minimum_calls=1_000, window=CountWindow(10_000)
    )

    async def work(i: int) -> int:
        await anyio.lowlevel.checkpoint()
        if i % 5 == 0:
            raise ConnectionError("down")
        return i

    async def caller(i: int) -> None:
        for j in range(50):
            try:
                await br.acall(work, i * 50 + j)
            except ConnectionError:
                pass

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(caller, i)
    snap = br.snapshot()
    assert (snap["calls"], snap["failures"]) == (2000, 400)
