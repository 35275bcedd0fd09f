"""Scenario 23 of SCENARIOS.md (stress): 1000+ concurrent callers, bursts, queue overflow
(`QueueFull`, never a silent drop), rate limits enforced, concurrent writes stay consistent.

Every test counts exactly: how many callers were shed, how many puts returned, how many
tokens were granted. A bulkhead that lets one extra caller through, a queue that drops a
put without raising, a bucket that double-spends a token under a race: each fails here.

Real parts only: anyio tasks on asyncio AND trio, real threads, real child processes, a
real HTTP server on 127.0.0.1, real SQLite files in tmp_path. Waiting happens on a
`VirtualClock`; the only real waits are the gates that hold a burst in place.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

import resilience as rs
from resilience import config, crdt, events
from resilience.stores import SQLiteStore
from resilience.testing import VirtualClock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _servers import HTTPTestServer, Reply, Seen

SRC = Path(__file__).resolve().parents[2] / "src"

# Load shedding is the bulkhead doing its job, not the dependency failing: a retry must not
# hammer a full bulkhead, and a breaker must not open because of it.
SHED_IS_NOT_FAILURE = rs.Classifier(permanent=(rs.BulkheadFull,))


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _until(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    """Yield to the other tasks until `condition()` holds (a real-time guard, not a wait)."""
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0)
    assert condition(), what


def _wait_threads(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.001)


class FlakyAsyncDependency:
    """An in-process async dependency: held at a gate during a burst, and every
    `fail_every`-th invocation raises a transient `ConnectionError`. It measures how many
    invocations ran at once, which is what a bulkhead is there to bound."""

    def __init__(self, fail_every: int) -> None:
        self.fail_every = fail_every
        self.invocations = 0
        self.failures = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate: anyio.Event | None = None

    async def __call__(self, i: int) -> int:
        self.invocations += 1
        n = self.invocations
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await anyio.sleep(0)  # let others interleave even once the gate is open
            if n % self.fail_every == 0:
                self.failures += 1
                raise ConnectionError(f"flaky: invocation {n}")
            return i
        finally:
            self.in_flight -= 1


# --- bursts of 1000 async callers: exact shedding --------------------------------------------

CALLERS = 1000
MAX_CONCURRENT = 50
MAX_WAITING = 150


@pytest.mark.anyio
async def test_async_bursts_through_a_pipeline_shed_exactly_what_exceeds_capacity(
    anyio_backend: str,
) -> None:
    clock = VirtualClock()
    bulkhead = rs.Bulkhead(MAX_CONCURRENT, MAX_WAITING, name=_name("stress-bh"))
    breaker = rs.CircuitBreaker(
        _name("stress-br"), minimum_calls=20, classifier=SHED_IS_NOT_FAILURE, clock=clock
    )
    retry = rs.Retry(
        max_attempts=4,
        backoff=rs.Backoff.constant(0.05),
        classifier=SHED_IS_NOT_FAILURE,
        clock=clock,
    )
    pipe = rs.Pipeline(retry, breaker, bulkhead, name="stress")
    dependency = FlakyAsyncDependency(fail_every=7)
    admitted = MAX_CONCURRENT + MAX_WAITING
    started = time.perf_counter()

    async def burst() -> Counter[str]:
        outcome: Counter[str] = Counter()
        gate = dependency.gate = anyio.Event()

        async def caller(i: int) -> None:
            try:
                assert await pipe.acall(dependency, i) == i
                outcome["ok"] += 1
            except rs.BulkheadFull:
                outcome["shed"] += 1
            except Exception as exc:  # pragma: no cover - reported by the assertion below
                outcome[type(exc).__name__] += 1

        async with anyio.create_task_group() as tg:
            for i in range(CALLERS):
                tg.start_soon(caller, i)
            # Everyone has arrived: the slots are taken, the line is full, the rest refused.
            await _until(
                lambda: (
                    outcome["shed"] >= CALLERS - admitted
                    and bulkhead.running == MAX_CONCURRENT
                    and bulkhead.waiting == MAX_WAITING
                ),
                "the burst to settle",
            )
            assert outcome["ok"] == 0
            gate.set()
        return outcome

    for n in range(3):
        outcome = await burst()
        assert outcome == {"ok": admitted, "shed": CALLERS - admitted}, f"burst {n}"
        assert (bulkhead.running, bulkhead.waiting) == (0, 0)
        assert breaker.state is rs.CircuitState.CLOSED  # shedding opened nothing

    elapsed = time.perf_counter() - started
    # the bulkhead bounded what reached the dependency, retries included
    assert dependency.max_in_flight == MAX_CONCURRENT
    # every invocation either returned or failed and was retried: nothing ran twice silently
    assert dependency.invocations == 3 * admitted + dependency.failures
    assert dependency.failures > 0
    print(
        f"\n[stress:{anyio_backend}] 3 bursts x {CALLERS} callers: {3 * admitted} served, "
        f"{3 * (CALLERS - admitted)} shed, {dependency.failures} flaky failures retried, "
        f"{3 * CALLERS / elapsed:,.0f} callers/s"
    )


@pytest.fixture
def no_active_config() -> Iterator[None]:
    saved = config.use(None)
    yield
    config.use(saved)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_active_config")
async def test_resilient_from_config_sheds_a_burst_of_1000_exactly(anyio_backend: str) -> None:
    operation = _name("stress.resilient")
    cfg = config.load(
        data={
            "operations": {
                operation: {
                    "timeout": False,
                    "attempt_timeout": False,  # held at a gate: no real-time limit wanted
                    "breaker": False,
                    "retry": {
                        "max_attempts": 2,
                        "backoff": {"kind": "constant", "delay": 0.01},
                        "budget": False,  # production's budget would cap the retries counted below
                    },
                    "bulkhead": {"max_concurrent": 20, "max_waiting": 30},
                }
            }
        },
        environ={"RESILIENCE_ENV": "production"},
    )
    config.use(cfg)
    clock = VirtualClock()
    gate = anyio.Event()
    running = 0
    peak = 0
    rejections: list[events.Event] = []

    @rs.resilient(operation, clock=clock)
    async def lookup(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await gate.wait()
            return i * 2
        finally:
            running -= 1

    outcome: Counter[str] = Counter()

    async def caller(i: int) -> None:
        try:
            assert await lookup(i) == i * 2
            outcome["ok"] += 1
        except rs.BulkheadFull:
            outcome["shed"] += 1

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.CallRejected) and event.operation == operation:
            rejections.append(event)

    unsubscribe = events.subscribe(on_event)
    try:
        async with anyio.create_task_group() as tg:
            for i in range(CALLERS):
                tg.start_soon(caller, i)
            await _until(lambda: outcome["shed"] >= CALLERS - 50 and running == 20, "the burst")
            gate.set()
    finally:
        unsubscribe()

    assert outcome == {"ok": 50, "shed": CALLERS - 50}
    assert peak == 20
    # the config's retry tried each shed caller twice; the bulkhead refused both attempts
    assert len(rejections) == 2 * (CALLERS - 50)
    assert {e.reason for e in rejections} == {"bulkhead_full"}  # type: ignore[attr-defined]


# --- a thread-pool of 64 callers -------------------------------------------------------------


def test_thread_bursts_shed_exactly_what_exceeds_capacity() -> None:
    threads, max_concurrent, max_waiting = 64, 8, 16
    bulkhead = rs.Bulkhead(max_concurrent, max_waiting, name=_name("stress-threads"))
    retry = rs.Retry(max_attempts=3, classifier=SHED_IS_NOT_FAILURE, clock=VirtualClock())
    pipe = rs.Pipeline(retry, bulkhead)
    lock = threading.Lock()
    state = {"running": 0, "peak": 0}

    def work(gate: threading.Event) -> str:
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        try:
            assert gate.wait(20)
            return "done"
        finally:
            with lock:
                state["running"] -= 1

    with ThreadPoolExecutor(threads) as pool:
        for burst in range(5):
            gate = threading.Event()
            outcome: Counter[str] = Counter()

            def caller(gate: threading.Event = gate, outcome: Counter[str] = outcome) -> None:
                try:
                    pipe.call(work, gate)
                    result = "ok"
                except rs.BulkheadFull:
                    result = "shed"
                with lock:
                    outcome[result] += 1

            futures = [pool.submit(caller) for _ in range(threads)]
            _wait_threads(
                lambda outcome=outcome: (  # type: ignore[misc]
                    outcome["shed"] == threads - max_concurrent - max_waiting
                    and bulkhead.running == max_concurrent
                    and bulkhead.waiting == max_waiting
                ),
                "the burst to settle",
            )
            gate.set()
            for f in futures:
                f.result()
            assert outcome == {
                "ok": max_concurrent + max_waiting,
                "shed": threads - max_concurrent - max_waiting,
            }, f"burst {burst}"
            assert (bulkhead.running, bulkhead.waiting) == (0, 0)
    assert state["peak"] == max_concurrent


def test_64_threads_against_a_flaky_http_server_lose_nothing() -> None:
    """2048 calls from 64 threads through Retry > CircuitBreaker > Bulkhead to a real server
    whose first answer to every 8th item is a 503. Everything is accounted for: each item
    succeeds, the server saw exactly one retry per flaky item, and no more than
    `max_concurrent` requests were ever in flight."""
    calls, threads = 2048, 64

    def answer(seen: Seen) -> Reply:
        query = parse_qs(urlsplit(seen.path).query)
        item, attempt = int(query["item"][0]), int(query["attempt"][0])
        if item % 8 == 0 and attempt == 1:
            return Reply(503, b"busy", {"Retry-After": "0"})
        return Reply(200, str(item).encode())

    clock = VirtualClock()
    breaker = rs.CircuitBreaker(_name("stress-http"), minimum_calls=50, clock=clock)
    bulkhead = rs.Bulkhead(16, 48, name=_name("stress-http-bh"))  # room for all 64 threads
    pipe = rs.Pipeline(
        rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.0), clock=clock),
        breaker,
        bulkhead,
    )
    lock = threading.Lock()
    flight = {"now": 0, "peak": 0}

    with HTTPTestServer() as server:
        server.default = answer
        limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
        with httpx.Client(base_url=server.url, limits=limits, timeout=10.0) as client:

            def fetch(item: int) -> int:
                attempts = itertools.count(1)

                def once() -> int:
                    with lock:
                        flight["now"] += 1
                        flight["peak"] = max(flight["peak"], flight["now"])
                    try:
                        response = client.get(
                            "/item", params={"item": item, "attempt": next(attempts)}
                        )
                        response.raise_for_status()
                        return int(response.text)
                    finally:
                        with lock:
                            flight["now"] -= 1

                return pipe.call(once)

            started = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                results = list(pool.map(fetch, range(calls)))
            elapsed = time.perf_counter() - started

        assert results == list(range(calls))
        assert len(server.requests) == calls + calls // 8  # one retry per flaky item, no more
    assert flight["peak"] <= 16
    assert breaker.state is rs.CircuitState.CLOSED
    print(
        f"\n[stress:http] {calls} calls from {threads} threads, {calls // 8} retried 503s, "
        f"peak in flight {flight['peak']}/16, {calls / elapsed:,.0f} calls/s"
    )


@pytest.mark.anyio
async def test_one_bulkhead_shared_by_threads_and_async_tasks_never_exceeds_its_slots(
    anyio_backend: str,
) -> None:
    """32 threads and 400 async tasks share one bulkhead of 4 slots: slots pass from a thread
    to a task and back (woken across the thread boundary); all finish, never more than 4 run."""
    threads, tasks, slots = 32, 400, 4
    bulkhead = rs.Bulkhead(slots, threads + tasks, name=_name("stress-mixed"))
    lock = threading.Lock()
    state = {"now": 0, "peak": 0, "done": 0}

    def enter() -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])

    def leave() -> None:
        with lock:
            state["now"] -= 1
            state["done"] += 1

    def sync_work() -> None:
        enter()
        time.sleep(0.0005)
        leave()

    async def async_work() -> None:
        enter()
        await anyio.sleep(0.0005)
        leave()

    pool = [
        threading.Thread(target=lambda: [bulkhead.call(sync_work) for _ in range(5)])
        for _ in range(threads)
    ]
    for t in pool:
        t.start()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(bulkhead.acall, async_work)
        while any(t.is_alive() for t in pool):  # the threads may need the loop to wake them
            await anyio.sleep(0.001)
    for t in pool:
        t.join()
    assert state["done"] == threads * 5 + tasks
    assert state["peak"] == slots
    assert (bulkhead.running, bulkhead.waiting) == (0, 0)


def test_the_same_keys_put_by_16_threads_are_stored_once(tmp_path: Path) -> None:
    q = rs.OfflineQueue(tmp_path / "keys.db", max_items=100)
    start = threading.Barrier(16)

    def producer(t: int) -> dict[str, int]:
        start.wait()
        return {f"op-{k}": q.put({"op": k, "by": t}, key=f"op-{k}") for k in range(50)}

    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(producer, range(16)))
    assert all(s == seen[0] for s in seen)  # every thread got the one stored seq per key
    assert len(q) == 50
    assert sorted(item.key for item in q.items()) == sorted(seen[0])
    q.close()


# --- the offline queue at max_items: QueueFull, never a silent drop --------------------------


def test_queue_hit_by_many_threads_refuses_exactly_the_overflow(tmp_path: Path) -> None:
    threads, per_thread, max_items = 16, 50, 500
    q = rs.OfflineQueue(tmp_path / "outbox.db", max_items=max_items, name="stress-outbox")
    returned: dict[int, dict[str, int]] = {}
    refused: list[tuple[int, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def producer(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            payload = {"thread": t, "i": i}
            try:
                seq = q.put(payload, priority=rs.Priority.HIGH if i % 5 == 0 else "NORMAL")
            except rs.QueueFull:
                with lock:
                    refused.append((t, i))
                continue
            with lock:
                assert seq not in returned  # a seq is never handed out twice
                returned[seq] = payload

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(producer, range(threads)))

    assert len(returned) == max_items
    assert len(refused) == threads * per_thread - max_items
    stored = {item.seq: item.payload for item in q.items()}
    assert stored == returned  # every put that returned is there, nothing else is
    assert len(q) == max_items
    q.close()
    # and it is durable: a fresh handle on the file sees the same rows
    again = rs.OfflineQueue(tmp_path / "outbox.db", max_items=max_items)
    assert {item.seq: item.payload for item in again.items()} == returned
    again.close()


_PUT_CHILD = """
import json, sys
from resilience.queue import OfflineQueue, QueueFull
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
q = OfflineQueue(path, max_items=int(sys.argv[4]))
ok, full = [], 0
for i in range(n):
    try:
        ok.append(q.put({"who": who, "i": i}))
    except QueueFull:
        full += 1
print(json.dumps({"ok": ok, "full": full}))
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def test_queue_hit_by_many_processes_refuses_exactly_the_overflow(tmp_path: Path) -> None:
    path, procs, per_proc, max_items = tmp_path / "shared.db", 4, 150, 400
    rs.OfflineQueue(path, max_items=max_items).close()  # create the file once
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _PUT_CHILD, str(path), f"p{k}", str(per_proc), str(max_items)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        for k in range(procs)
    ]
    reports = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        reports.append(json.loads(out))

    returned = [seq for r in reports for seq in r["ok"]]
    assert len(returned) == len(set(returned)) == max_items
    assert sum(r["full"] for r in reports) == procs * per_proc - max_items
    q = rs.OfflineQueue(path, max_items=max_items)
    assert sorted(item.seq for item in q.items()) == sorted(returned)
    q.close()


def test_producers_at_the_limit_and_a_draining_consumer_lose_nothing(tmp_path: Path) -> None:
    """Producers put into a small queue while a consumer drains it: a put either returns
    (and its item is delivered exactly once or still queued) or raises QueueFull."""
    producers, per_producer = 8, 100
    q = rs.OfflineQueue(tmp_path / "busy.db", max_items=40, name="stress-busy")
    lock = threading.Lock()
    returned: set[tuple[int, int]] = set()
    refused = 0
    delivered: list[tuple[int, int]] = []
    done = threading.Event()
    full = threading.Event()  # the limit was reached (the consumer starts only then)

    def producer(p: int) -> None:
        nonlocal refused
        for i in range(per_producer):
            try:
                q.put([p, i])
            except rs.QueueFull:
                with lock:
                    refused += 1
                full.set()
                time.sleep(0)  # let the consumer in
                continue
            with lock:
                returned.add((p, i))

    def consumer() -> None:
        def send(item: rs.queue.Item) -> None:
            delivered.append(tuple(item.payload))

        full.wait(30)  # else a quick consumer may keep up and the limit is never tested
        while not done.is_set() or len(q):
            q.drain(send, batch=16)
            time.sleep(0.001)

    sink = threading.Thread(target=consumer)
    sink.start()
    with ThreadPoolExecutor(producers) as pool:
        list(pool.map(producer, range(producers)))
    done.set()
    sink.join(30)
    assert not sink.is_alive()

    assert len(returned) + refused == producers * per_producer
    assert refused > 0  # the limit was reached
    assert len(delivered) == len(set(delivered))  # no duplicate delivery
    assert set(delivered) == returned  # nothing that was accepted went missing
    assert len(q) == 0
    q.close()


# --- rate limits under concurrency ------------------------------------------------------------


def test_rate_limiter_grants_exactly_burst_plus_rate_times_elapsed_to_16_threads() -> None:
    """16 threads hammer one limiter; time moves only between phases (a barrier), in steps of
    1/8 s at 64 tokens/s. Demand always exceeds supply, so the grants must be exactly
    burst + rate * elapsed: more is a double-spent token, fewer a lost one."""
    threads, phases, per_phase = 16, 24, 20
    rate, burst, step = 64, 32, 0.125  # binary-exact: 8 tokens per step
    clock = VirtualClock()
    limiter = rs.RateLimiter(rate=rate, per=1.0, burst=burst, clock=clock, name=_name("rl"))
    granted = [[0] * phases for _ in range(threads)]
    barrier = threading.Barrier(threads, action=lambda: None)
    advance = threading.Barrier(threads, action=lambda: clock.advance(step))

    def hammer(t: int) -> None:
        for phase in range(phases):
            barrier.wait()
            for _ in range(per_phase):
                granted[t][phase] += limiter.try_acquire()
            advance.wait()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(hammer, range(threads)))

    per_phase_total = [sum(granted[t][p] for t in range(threads)) for p in range(phases)]
    assert per_phase_total == [burst] + [int(rate * step)] * (phases - 1)
    elapsed = step * (phases - 1)  # time from the first grant to the last
    assert sum(per_phase_total) == burst + rate * elapsed


@pytest.mark.anyio
async def test_rate_limiter_under_1000_async_callers_in_bursts(anyio_backend: str) -> None:
    clock = VirtualClock()
    limiter = rs.RateLimiter(rate=64, per=1.0, burst=100, clock=clock, name=_name("rl-async"))

    async def work(i: int) -> int:
        await anyio.sleep(0)
        return i

    async def burst() -> tuple[int, list[float]]:
        ok = 0
        waits: list[float] = []

        async def caller(i: int) -> None:
            nonlocal ok
            try:
                assert await limiter.acall(work, i) == i
                ok += 1
            except rs.RateLimited as exc:
                waits.append(exc.retry_after)

        async with anyio.create_task_group() as tg:
            for i in range(CALLERS):
                tg.start_soon(caller, i)
        return ok, waits

    ok, waits = await burst()  # time stands still: the burst, then nothing
    assert ok == 100
    assert len(waits) == CALLERS - 100
    assert min(waits) > 0
    for seconds, expected in [(0.5, 32), (0.25, 16), (10.0, 100)]:  # capped at burst
        clock.advance(seconds)
        ok, waits = await burst()
        assert ok == expected, seconds
        assert ok + len(waits) == CALLERS


def _worst_window_excess(times: list[float], rate: float, burst: int) -> float:
    """max over all windows [t_i, t_j] of grants - (burst + rate * (t_j - t_i)); a token
    bucket keeps it <= 0. O(n): (j + 1 - rate t_j) + max over i <= j of (rate t_i - i)."""
    worst, best_start = -float("inf"), -float("inf")
    for j, t in enumerate(sorted(times)):
        best_start = max(best_start, rate * t - j)
        worst = max(worst, (j + 1 - rate * t) + best_start - burst)
    return worst


@pytest.mark.anyio
async def test_1000_async_callers_retrying_through_a_rate_limit_never_beat_the_bucket(
    anyio_backend: str,
) -> None:
    """Retry > RateLimiter: 1000 callers are refused, wait the `retry_after` they were told
    (on the virtual clock) and come back. Over every window of time, the grants stay within
    burst + rate * window, and every caller gets through in the end."""
    clock = VirtualClock()
    rate, burst = 100.0, 10
    limiter = rs.RateLimiter(rate=rate, per=1.0, burst=burst, clock=clock, name=_name("rl-pipe"))
    pipe = rs.Pipeline(
        rs.Retry(max_attempts=1000, backoff=rs.Backoff.constant(0.001), clock=clock),
        limiter,
        name="rl-pipe",
    )
    granted_at: list[float] = []

    async def work(i: int) -> int:
        granted_at.append(clock.monotonic())  # runs right after the token was taken
        return i

    results: list[int] = []

    async def caller(i: int) -> None:
        results.append(await pipe.acall(work, i))

    async with anyio.create_task_group() as tg:
        for i in range(CALLERS):
            tg.start_soon(caller, i)

    assert sorted(results) == list(range(CALLERS))
    assert len(granted_at) == CALLERS
    assert _worst_window_excess(granted_at, rate, burst) <= 1e-6
    # and the limit was the bottleneck: it took at least (callers - burst) / rate seconds
    assert max(granted_at) >= (CALLERS - burst) / rate - 1e-9


_RL_CHILD = """
import sys
from resilience import RateLimiter
from resilience.stores import SQLiteStore
from resilience.testing import VirtualClock
store = SQLiteStore(sys.argv[1])
limiter = RateLimiter(rate=10, per=1.0, burst=50, store=store, name="shared-api",
                      clock=VirtualClock())  # every process: the same frozen wall time
print(sum(limiter.try_acquire() for _ in range(int(sys.argv[2]))))
"""


def test_rate_limit_shared_by_processes_through_sqlite_store(tmp_path: Path) -> None:
    """Four processes share one bucket in a SQLite file, at the same frozen instant: together
    they get exactly `burst` tokens."""
    path = tmp_path / "limits.db"
    SQLiteStore(path).close()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RL_CHILD, str(path), "120"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        for _ in range(4)
    ]
    granted = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        granted.append(int(out))
    assert sum(granted) == 50, granted


_RL_REAL_CHILD = """
import json, sys, time
from resilience import RateLimiter
from resilience.stores import SQLiteStore
store = SQLiteStore(sys.argv[1])
limiter = RateLimiter(rate=200, per=1.0, burst=20, store=store, name="shared-real")
first, granted, tries = time.time(), 0, 0
stop = first + float(sys.argv[2])
while time.time() < stop:
    tries += 1
    if limiter.try_acquire():
        granted += 1
print(json.dumps({"first": first, "last": time.time(), "granted": granted, "tries": tries}))
"""


def test_rate_limit_shared_by_processes_in_real_time(tmp_path: Path) -> None:
    """Three processes hammer one bucket (200/s, burst 20) in a SQLite file for half a second
    of wall-clock time: together they never get more than burst + rate * elapsed."""
    path = tmp_path / "limits-real.db"
    SQLiteStore(path).close()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RL_REAL_CHILD, str(path), "0.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        for _ in range(3)
    ]
    reports = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        reports.append(json.loads(out))
    granted = sum(r["granted"] for r in reports)
    elapsed = max(r["last"] for r in reports) - min(r["first"] for r in reports)
    assert granted <= 20 + 200 * elapsed + 1, (granted, elapsed)
    assert sum(r["tries"] for r in reports) > 2 * granted  # demand exceeded the limit
    assert granted > 20  # and the bucket refilled meanwhile
    print(
        f"\n[stress:ratelimit] 3 processes, {sum(r['tries'] for r in reports):,} tries, "
        f"{granted} granted in {elapsed:.2f} s (limit {20 + 200 * elapsed:.0f})"
    )


# --- concurrent writes to one resource stay consistent ----------------------------------------


def test_breaker_counters_are_exact_under_32_threads() -> None:
    threads, per_thread = 32, 300
    breaker = rs.CircuitBreaker(
        _name("stress-count"),
        minimum_calls=threads * per_thread,
        window=rs.CountWindow(threads * per_thread),
        clock=VirtualClock(),
    )
    start = threading.Barrier(threads)

    def ok() -> None:
        pass

    def fail() -> None:
        raise ConnectionError("down")

    def hammer(t: int) -> int:
        start.wait()
        failed = 0
        for i in range(per_thread):
            if (t + i) % 10 == 0:
                failed += 1
                with pytest.raises(ConnectionError):
                    breaker.call(fail)
            else:
                breaker.call(ok)
        return failed

    with ThreadPoolExecutor(threads) as pool:
        failures = sum(pool.map(hammer, range(threads)))

    snap = breaker.snapshot()
    assert (snap["calls"], snap["failures"]) == (threads * per_thread, failures)
    assert snap["state"] is rs.CircuitState.CLOSED


def test_breaker_opens_exactly_once_when_32_threads_fail_together() -> None:
    clock = VirtualClock()
    name = _name("stress-open")
    breaker = rs.CircuitBreaker(name, minimum_calls=50, open_duration=60, clock=clock)
    transitions: list[events.StateTransition] = []
    start = threading.Barrier(32)

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.StateTransition) and event.operation == name:
            transitions.append(event)

    def fail() -> None:
        raise ConnectionError("down")

    def hammer(_: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        start.wait()
        for _ in range(40):
            try:
                breaker.call(fail)
            except rs.CircuitOpenError:
                seen["rejected"] += 1
            except ConnectionError:
                seen["ran"] += 1
        return seen

    unsubscribe = events.subscribe(on_event)
    try:
        with ThreadPoolExecutor(32) as pool:
            total = sum(pool.map(hammer, range(32)), Counter())
    finally:
        unsubscribe()
    assert total["ran"] + total["rejected"] == 32 * 40
    assert total["ran"] >= 50  # it needed its minimum before judging
    assert [(t.from_state, t.to_state) for t in transitions] == [("closed", "open")]
    assert breaker.state is rs.CircuitState.OPEN


def test_pn_counters_on_32_replicas_merge_to_the_exact_total() -> None:
    """32 threads, one replica each, increment and decrement and ship deltas; the deltas are
    delivered out of order and twice, and full states are gossiped: every merge equals the
    sum of all writes."""
    threads, ops = 32, 400
    deltas: list[crdt.PNCounter] = []  # list.append is atomic: the "network"
    replicas: list[crdt.PNCounter] = []
    lock = threading.Lock()

    def writer(t: int) -> int:
        rng = random.Random(t)
        counter = crdt.PNCounter(f"replica-{t}")
        total = 0
        for _ in range(ops):
            n = rng.randint(1, 5)
            if rng.random() < 0.3:
                deltas.append(counter.decrement(n))
                total -= n
            else:
                deltas.append(counter.increment(n))
                total += n
        with lock:
            replicas.append(counter)
        return total

    with ThreadPoolExecutor(threads) as pool:
        expected = sum(pool.map(writer, range(threads)))

    shuffled = deltas + deltas[: len(deltas) // 2]  # duplicates
    random.Random(0).shuffle(shuffled)
    merged = crdt.PNCounter("observer")
    for delta in shuffled:
        merged = merged.merge(delta)
    assert merged.value == expected

    gossip = crdt.PNCounter("gossip")
    for replica in reversed(replicas):
        gossip = gossip.merge(replica)
    assert gossip == merged
    assert gossip.value == expected


def test_one_replicator_updated_by_32_threads_loses_no_increment() -> None:
    ta, tb = crdt.LoopbackTransport.pair()
    a, b = crdt.Replicator("a", ta), crdt.Replicator("b", tb)
    a.add("visits", crdt.GCounter("a"))
    threads, per_thread = 32, 100

    def visit(_: int) -> None:
        for _ in range(per_thread):
            a.update("visits", lambda c: c.increment(1))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(visit, range(threads)))
    b.poll()
    assert a["visits"].value == b["visits"].value == threads * per_thread
