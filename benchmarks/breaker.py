"""CircuitBreaker against pybreaker, circuitbreaker, purgatory and aiobreaker, in one process.

    .venv/bin/python -m benchmarks.breaker [--quick]

Cases (interleaved, reshuffled each repetition, medians; see benchmarks/_harness.py):
- a call through a closed breaker, sync and async (the function returns at once);
- a rejection by an open breaker, sync and async (raise + catch included);
- eight threads on one breaker, with a 1 ms sleeping callee and with an instant one.

`hand breaker` is a lock, two counters and a state check, the lock never held across the call:
what pure Python can do, and the baseline of every ratio (BASELINES.md has the targets).
"""

from __future__ import annotations

import functools
import gc
import inspect
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiobreaker
import circuitbreaker
import purgatory
import pybreaker

import resilience as rs
from benchmarks._harness import aloop, compare, loop, table

OPEN_FOR = 3600.0


class HandOpen(Exception):
    def __init__(self, name: str, remaining: float) -> None:
        self.name = name
        self.remaining = remaining


class HandBreaker:
    """A lock, two counters and a state check; the lock is never held across the call."""

    def __init__(self, threshold: int = 5, open_for: float = 30.0) -> None:
        self._lock = threading.Lock()
        self.failures = 0
        self.successes = 0
        self.threshold = threshold
        self.open_for = open_for
        self.open = False
        self.open_until = 0.0

    def _check(self) -> None:
        remaining = self.open_until - time.monotonic()
        if remaining > 0:
            raise HandOpen("hand", remaining)
        self.open = False

    def _failed(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold:
                self.open = True
                self.open_until = time.monotonic() + self.open_for

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.open:
            self._check()
        try:
            result = fn(*args, **kwargs)
        except Exception:
            self._failed()
            raise
        with self._lock:
            self.successes += 1
        return result

    async def acall(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        if self.open:
            self._check()
        try:
            result = await fn(*args, **kwargs)
        except Exception:
            self._failed()
            raise
        with self._lock:
            self.successes += 1
        return result


def hand_decorate(hand: HandBreaker, fn: Callable[..., Any]) -> Callable[..., Any]:
    """What a decorator over the hand breaker costs (the fair peer of `@breaker`)."""
    if inspect.iscoroutinefunction(fn):
        acall = hand.acall

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await acall(fn, *args, **kwargs)

        return async_wrapper
    call = hand.call

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call(fn, *args, **kwargs)

    return wrapper


def _ok() -> int:
    return 1


async def _aok() -> int:
    return 1


def _down() -> int:
    raise ConnectionError("down")


async def _adown() -> int:
    raise ConnectionError("down")


def _bind(call: Callable[..., Any], fn: Callable[..., Any]) -> Callable[[], Any]:
    return lambda: call(fn)


def closed_sync() -> dict[str, Callable[[], Any]]:
    ours = rs.CircuitBreaker("bench-sync")
    hand = HandBreaker()
    cb = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=30)
    pyb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    purg = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    return {
        "bare call": lambda: _ok(),
        "hand breaker": _bind(hand.call, _ok),
        "hand breaker @decorated": _bind(lambda f: f(), hand_decorate(hand, _ok)),
        "resilience .call": _bind(ours.call, _ok),
        "resilience @decorated": _bind(lambda f: f(), ours(_ok)),
        "circuitbreaker": _bind(lambda f: f(), cb(_ok)),
        "pybreaker": _bind(pyb.call, _ok),
        "purgatory": _bind(lambda f: f(), purg("bench-sync")(_ok)),
    }


def closed_async() -> dict[str, Callable[[], Awaitable[Any]]]:
    ours = rs.CircuitBreaker("bench-async")
    hand = HandBreaker()
    cb = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=30)
    aio = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))
    purg = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    decorated = ours(_aok)
    hand_decorated = hand_decorate(hand, _aok)
    cb_decorated = cb(_aok)
    purg_decorated = purg("bench-async")(_aok)
    return {
        "bare await": lambda: _aok(),
        "hand breaker async": lambda: hand.acall(_aok),
        "hand breaker async @decorated": lambda: hand_decorated(),
        "resilience .acall": lambda: ours.acall(_aok),
        "resilience @decorated": lambda: decorated(),
        "circuitbreaker": lambda: cb_decorated(),
        "aiobreaker": lambda: aio.call_async(_aok),
        "purgatory": lambda: purg_decorated(),
    }


def _swallow(call: Callable[[], Any]) -> Callable[[], None]:
    def case() -> None:
        try:
            call()
        except Exception:
            pass

    return case


def _aswallow(call: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
    async def case() -> None:
        try:
            await call()
        except Exception:
            pass

    return case


def _trip(call: Callable[[], Any]) -> None:
    for _ in range(5):
        try:
            call()
        except Exception:
            pass


async def _atrip(call: Callable[[], Awaitable[Any]]) -> None:
    for _ in range(5):
        try:
            await call()
        except Exception:
            pass


class Floor(Exception):
    pass


def _raise_floor() -> None:
    raise Floor("floor")


async def _araise_floor() -> None:
    raise Floor("floor")


def open_sync() -> dict[str, Callable[[], Any]]:
    ours = rs.CircuitBreaker("bench-open", minimum_calls=1, open_duration=OPEN_FOR)
    hand = HandBreaker(threshold=1, open_for=OPEN_FOR)
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=OPEN_FOR)
    pyb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=OPEN_FOR)
    aio = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(seconds=OPEN_FOR))
    purg = purgatory.SyncCircuitBreakerFactory(default_threshold=1, default_ttl=OPEN_FOR)
    calls: dict[str, Callable[[], Any]] = {
        "raise+catch floor": _raise_floor,
        "hand breaker": _bind(hand.call, _down),
        "resilience": _bind(ours.call, _down),
        "circuitbreaker": cb(_down),
        "pybreaker": _bind(pyb.call, _down),
        "aiobreaker": _bind(aio.call, _down),
        "purgatory": purg("bench-open")(_down),
    }
    for name, call in calls.items():
        if name != "raise+catch floor":
            _trip(call)
    assert ours.state is rs.CircuitState.OPEN
    return {name: _swallow(call) for name, call in calls.items()}


def open_async() -> dict[str, Callable[[], Awaitable[Any]]]:
    import asyncio

    ours = rs.CircuitBreaker("bench-aopen", minimum_calls=1, open_duration=OPEN_FOR)
    hand = HandBreaker(threshold=1, open_for=OPEN_FOR)
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=OPEN_FOR)
    aio = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(seconds=OPEN_FOR))
    purg = purgatory.AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=OPEN_FOR)
    cb_down = cb(_adown)
    purg_down = purg("bench-aopen")(_adown)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "raise+catch floor": _araise_floor,
        "hand breaker async": lambda: hand.acall(_adown),
        "resilience": lambda: ours.acall(_adown),
        "circuitbreaker": lambda: cb_down(),
        "aiobreaker": lambda: aio.call_async(_adown),
        "purgatory": lambda: purg_down(),
    }

    async def trip_all() -> None:
        for name, call in calls.items():
            if name != "raise+catch floor":
                await _atrip(call)

    asyncio.run(trip_all())
    assert ours.state is rs.CircuitState.OPEN
    return {name: _aswallow(call) for name, call in calls.items()}


def bytes_per_rejection(case: Callable[[], None], n: int = 5_000) -> float:
    """Memory kept after `n` rejections (what a re-raised exception's traceback leaks)."""
    case()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        case()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return max(after - before, 0) / n


def threaded(call: Callable[[], Any], threads: int, per_thread: int) -> float:
    """Calls per second of `threads` threads each making `per_thread` calls.

    Each worker notes when it starts and ends: the span is from the first start to the last
    end (the main thread may get the GIL back late, so it cannot time the run itself).
    """
    start = threading.Barrier(threads)
    spans: list[tuple[float, float]] = []

    def worker() -> None:
        start.wait()
        t0 = time.perf_counter()
        for _ in range(per_thread):
            call()
        spans.append((t0, time.perf_counter()))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = max(end for _, end in spans) - min(begin for begin, _ in spans)
    return threads * per_thread / elapsed


def throughput(cases: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    import random

    samples: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for _ in range(repeat):
        random.shuffle(names)
        for name in names:
            samples[name].append(cases[name]())
    return {k: statistics.median(v) for k, v in samples.items()}


def rate_table(title: str, results: dict[str, float], baseline: str) -> str:
    width = max(len(n) for n in results)
    lines = [f"## {title}", f"{'case':<{width}}  {'calls/s':>10}  {'ratio':>7}"]
    for name, value in sorted(results.items(), key=lambda kv: -kv[1]):
        lines.append(f"{name:<{width}}  {value:>10,.0f}  {value / results[baseline]:>6.2f}x")
    return "\n".join(lines)


def threads_io(quick: bool) -> dict[str, float]:
    per = 50 if quick else 200

    def sleeper() -> None:
        time.sleep(0.001)

    ours = rs.CircuitBreaker("bench-io")
    hand = HandBreaker()
    pyb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    cases = {
        "unwrapped": sleeper,
        "hand breaker": _bind(hand.call, sleeper),
        "resilience": _bind(ours.call, sleeper),
        "pybreaker": _bind(pyb.call, sleeper),
    }
    runs: dict[str, Callable[[], float]] = {
        name: (lambda c=call: threaded(c, 8, per)) for name, call in cases.items()
    }
    return throughput(runs, 3 if quick else 7)


def threads_instant(quick: bool) -> dict[str, float]:
    per = 5_000 if quick else 25_000
    ours = rs.CircuitBreaker("bench-instant")
    hand = HandBreaker()
    pyb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    runs: dict[str, Callable[[], float]] = {
        "unwrapped, 1 thread": lambda: threaded(_ok, 1, 8 * per),
        "unwrapped, 8 threads": lambda: threaded(_ok, 8, per),
        "hand breaker, 1 thread": lambda: threaded(_bind(hand.call, _ok), 1, 8 * per),
        "hand breaker, 8 threads": lambda: threaded(_bind(hand.call, _ok), 8, per),
        "resilience, 1 thread": lambda: threaded(_bind(ours.call, _ok), 1, 8 * per),
        "resilience, 8 threads": lambda: threaded(_bind(ours.call, _ok), 8, per),
        "pybreaker, 1 thread": lambda: threaded(_bind(pyb.call, _ok), 1, 8 * per),
        "pybreaker, 8 threads": lambda: threaded(_bind(pyb.call, _ok), 8, per),
    }
    return throughput(runs, 3 if quick else 7)


def main(argv: list[str] | None = None) -> None:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    n, n_open, rep = (2_000, 1_000, 5) if quick else (20_000, 5_000, 15)
    import warnings

    warnings.simplefilter("ignore")  # pybreaker/aiobreaker deprecation chatter

    results: dict[str, dict[str, float]] = {}
    results["sync"] = compare({k: loop(f) for k, f in closed_sync().items()}, number=n, repeat=rep)
    print(table("Closed breaker, sync call", results["sync"], baseline="hand breaker"))
    print()
    results["async"] = compare(
        {k: aloop(f) for k, f in closed_async().items()}, number=n, repeat=rep
    )
    print(table("Closed breaker, async (asyncio)", results["async"], baseline="hand breaker async"))
    print()
    opened = open_sync()
    results["open"] = compare({k: loop(f) for k, f in opened.items()}, number=n_open, repeat=rep)
    print(table("Open breaker, rejection (sync)", results["open"], baseline="hand breaker"))
    print()
    aopened = open_async()
    results["aopen"] = compare({k: aloop(f) for k, f in aopened.items()}, number=n_open, repeat=rep)
    print(table("Open breaker, rejection (async)", results["aopen"], baseline="hand breaker async"))
    print()
    print("## Memory kept per rejection (tracemalloc, 5,000 rejections)")
    for name in ("hand breaker", "resilience", "circuitbreaker", "pybreaker", "purgatory"):
        print(f"{name:<16} {bytes_per_rejection(opened[name]):>8.1f} B")
    print()
    io = threads_io(quick)
    print(rate_table("8 threads, 1 ms sleeping callee", io, baseline="unwrapped"))
    print()
    instant = threads_instant(quick)
    print(rate_table("Instant callee, 1 vs 8 threads", instant, baseline="resilience, 1 thread"))
    print()

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    sync_ratio = results["sync"]["resilience .call"] / results["sync"]["hand breaker"]
    dec_ratio = (
        results["sync"]["resilience @decorated"] / results["sync"]["hand breaker @decorated"]
    )
    async_ratio = results["async"]["resilience .acall"] / results["async"]["hand breaker async"]
    adec_ratio = (
        results["async"]["resilience @decorated"]
        / results["async"]["hand breaker async @decorated"]
    )
    bare_dec = results["sync"]["resilience @decorated"] / results["sync"]["hand breaker"]
    bare_adec = results["async"]["resilience @decorated"] / results["async"]["hand breaker async"]
    open_ratio = results["open"]["resilience"] / results["open"]["hand breaker"]
    aopen_ratio = results["aopen"]["resilience"] / results["aopen"]["hand breaker async"]
    io_ratio = io["resilience"] / io["unwrapped"]
    inst_ratio = instant["resilience, 8 threads"] / instant["resilience, 1 thread"]
    print("## Targets (BASELINES.md)")
    rows = [
        ("sync call <= 1.3x hand", sync_ratio, sync_ratio <= 1.3),
        ("  (decorated vs hand decorated)", dec_ratio, dec_ratio <= 1.3),
        ("async call <= 1.3x hand async", async_ratio, async_ratio <= 1.3),
        ("  (decorated vs hand decorated)", adec_ratio, adec_ratio <= 1.3),
        ("@decorated sync <= 1.2x hand breaker", bare_dec, bare_dec <= 1.2),
        ("@decorated async <= 1.3x hand async", bare_adec, bare_adec <= 1.3),
        ("rejection <= 1.2x hand", open_ratio, open_ratio <= 1.2),
        ("  (async rejection vs hand async)", aopen_ratio, aopen_ratio <= 1.2),
        ("8 threads, 1 ms callee >= 0.97x unwrapped", io_ratio, io_ratio >= 0.97),
        ("8 threads, instant >= 0.8x our 1 thread", inst_ratio, inst_ratio >= 0.8),
    ]
    for what, ratio, ok in rows:
        print(f"{what:<42} {ratio:>6.2f}x  {verdict(ok)}")


if __name__ == "__main__":
    main()
