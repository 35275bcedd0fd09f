"""Scenario 22 of SCENARIOS.md (soak): memory must not trend upwards over many cycles, leaks
are detected, and the final report shows recoveries and transitions.

Default run (a few seconds): a short `resilience.chaos.soak()` against a dependency that goes
down and comes back in phases, and a tracemalloc trend over hundreds of cycles of breaker
open/close, retries, fallbacks and queue put/drain on a `VirtualClock`. The long versions are
marked `soak` (excluded by the default addopts) and also need RESILIENCE_SOAK=1:

    RESILIENCE_SOAK=1 .venv/bin/pytest -m soak tests/scenarios/test_soak_scenarios.py -s
"""

from __future__ import annotations

import array
import gc
import os
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import resilience as rs
from resilience import events
from resilience.chaos import SoakReport, soak
from resilience.testing import VirtualClock

LONG = pytest.mark.skipif(
    os.environ.get("RESILIENCE_SOAK") != "1", reason="long soak: set RESILIENCE_SOAK=1"
)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Transitions:
    """Counts breaker transitions of one operation (bounded memory: a Counter of pairs)."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.StateTransition) and event.operation == self.operation:
            with self._lock:
                self.seen[event.from_state, event.to_state] += 1

    @property
    def recoveries(self) -> int:
        return self.seen["half_open", "closed"]


class Outage:
    """A dependency that goes down and comes back in phases of at least `period` seconds of
    real time. A phase ends only once the breaker has reacted to it (opened during an outage,
    closed again after the return, as `watch` saw): on a loaded machine a phase may pass with
    too few calls for the breaker to react, and the soak would then count fewer outages and
    recoveries than phases. A breaker that never reacts still fails the test: its phase never
    ends, so the soak sees fewer than two of them."""

    def __init__(self, period: float, watch: Transitions) -> None:
        self.period = period
        self.watch = watch
        self.down = False
        self.since = time.monotonic()
        self.mark = -1  # the phase ends once the watch's count exceeds this (the first: free)
        self._lock = threading.Lock()

    def _reacted(self) -> int:
        seen = self.watch.seen
        if self.down:  # opened (from closed, or a failed trial) since the outage began
            return seen["closed", "open"] + seen["half_open", "open"]
        return self.watch.recoveries

    def __call__(self, i: int) -> int:
        now = time.monotonic()
        with self._lock:
            if now - self.since >= self.period and self._reacted() > self.mark:
                self.down = not self.down
                self.since = now
                self.mark = self._reacted()
            down = self.down
        if down:
            raise ConnectionError("dependency down")
        return i


def _soak_with_outages(duration: float, period: float) -> tuple[SoakReport, Transitions]:
    name = _name("soak")
    watch = Transitions(name)
    unsubscribe = events.subscribe(watch)
    try:
        report = soak(
            Outage(period, watch),
            duration=duration,
            workers=4,
            error_rate=0.05,
            seed=3,
            name=name,
        )
    finally:
        unsubscribe()
    return report, watch


def _check_soak(report: SoakReport, watch: Transitions) -> None:
    assert report.ok, report.summary()
    assert report.leaks == ()
    assert report.calls == report.successes + report.failures + report.rejections
    assert report.faults > 0  # the injector fired
    assert report.successes > 0
    assert report.rejections > 0  # the breaker cut the outages short
    assert report.threads[0] == report.threads[1]
    # every outage opened the breaker, every return of the dependency closed it again; the
    # report says so, and an independent listener on the event stream agrees
    assert report.transitions == dict(watch.seen)
    assert report.transitions[("closed", "open")] >= 2, report.summary()
    assert report.transitions[("open", "half_open")] >= 2, report.summary()
    assert report.recoveries >= 2, report.summary()


def test_short_soak_recovers_from_outages_without_leaking() -> None:
    report, watch = _soak_with_outages(duration=2.0, period=0.25)
    _check_soak(report, watch)
    print(f"\n{report.summary()}")


def test_the_soak_report_itself_shows_recoveries_and_transitions() -> None:
    """The final report carries the breaker's transitions and recoveries, and they match
    what an independent listener on the event stream saw."""
    report, watch = _soak_with_outages(duration=0.6, period=0.1)
    assert report.ok, report.summary()
    assert report.transitions == dict(watch.seen)
    assert report.recoveries == watch.recoveries >= 1
    assert report.transitions[("closed", "open")] >= 1
    summary = report.summary()
    assert f"{report.recoveries} recoveries" in summary
    assert "closed -> open" in summary


def test_soak_still_catches_a_leaking_workload() -> None:
    """The leak check is not a rubber stamp: a workload that keeps what it allocates fails."""
    kept: list[bytes] = []
    report = soak(
        lambda i: kept.append(bytes(5_000)),
        calls=200,  # by count: the same verdict on a loaded machine
        workers=2,
        error_rate=0.0,
        memory_limit=100_000,
    )
    assert not report.ok
    assert any("memory" in leak for leak in report.leaks)


# --- memory trend over many cycles (tracemalloc) ----------------------------------------------


def _cycle_factory(tmp_path: Path, clock: VirtualClock) -> Callable[[], None]:
    """One cycle: the dependency fails (retries, breaker opens, fallbacks answer, work is
    queued), then comes back (the breaker closes, the queue drains)."""
    name = _name("soak-cycle")
    breaker = rs.CircuitBreaker(
        name, minimum_calls=4, window=rs.CountWindow(8), open_duration=10, clock=clock
    )
    pipe = rs.Pipeline(
        rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), clock=clock),
        breaker,
        name=name,
    )
    down = [False]

    def fetch(key: int) -> str:
        if down[0]:
            raise ConnectionError("dependency down")
        return f"value {key}"

    chain = rs.FallbackChain(
        rs.Step(lambda key: pipe.call(fetch, key), name="primary"),
        rs.StaleCache(max_age=3600, max_size=16),
        rs.Default("try later"),
        name=name,
        clock=clock,
    )
    queue = rs.OfflineQueue(tmp_path / "soak.db", max_items=1_000, clock=clock, name=name)
    delivered = [0]

    def send(item: rs.queue.Item) -> None:
        delivered[0] += 1

    def cycle() -> None:
        down[0] = True
        served = [chain.execute(k % 4) for k in range(6)]
        assert all(s.level > rs.DegradationLevel.FULL for s in served)  # fallbacks answered
        assert breaker.state is rs.CircuitState.OPEN
        queue.put_many([({"k": k, "note": "x" * 64}, rs.Priority.NORMAL) for k in range(5)])
        down[0] = False
        clock.advance(10)  # open_duration: trial calls next
        served = [chain.execute(k % 4) for k in range(6)]
        assert [s.level for s in served] == [rs.DegradationLevel.FULL] * 6
        assert breaker.state is rs.CircuitState.CLOSED
        before = delivered[0]
        report = queue.drain(send)
        assert (report.delivered, report.remaining) == (5, 0)
        assert delivered[0] == before + 5
        clock.sleeps.clear()  # the test clock's own record of sleeps, not the library's

    return cycle


def _memory_trend(tmp_path: Path, warmup: int, cycles: int, every: int = 10) -> dict[str, float]:
    """Run `cycles` cycles after a warm-up, sampling the traced memory every `every` cycles.

    The traced memory (a few tens of kilobytes: what the policies and the queue hold) saw-tooths
    by up to ~16 KB: CPython's sqlite3 connection keeps a weak reference to every cursor and
    purges the dead ones only every 200 cursors. So growth compares the *floor* of the first
    half of the samples with the floor of the second half (sampled densely, so both halves see
    every phase of the purge), and the trend is a least-squares slope over all of them. The
    process's resident memory (psutil) is checked too.
    """
    import psutil

    # Lazy imports and first-use caches happen here, before tracing, whatever ran before.
    (tmp_path / "prewarm").mkdir()
    prewarm = _cycle_factory(tmp_path / "prewarm", VirtualClock())
    for _ in range(10):
        prewarm()
    del prewarm
    gc.collect()
    process = psutil.Process()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        cycle = _cycle_factory(tmp_path, VirtualClock())
        for _ in range(warmup):
            cycle()
        gc.collect()
        rss_before = process.memory_info().rss
        # preallocated and unboxed: the samples must not be what grows
        points = array.array("q", bytes(8 * (cycles // every)))
        started = time.perf_counter()
        for k in range(len(points)):
            for _ in range(every):
                cycle()
            gc.collect()
            points[k] = tracemalloc.get_traced_memory()[0]
        elapsed = time.perf_counter() - started
        rss_after = process.memory_info().rss
    finally:
        if not was_tracing:
            tracemalloc.stop()
    half = len(points) // 2
    floor_before, floor_after = min(points[:half]), min(points[half:])
    xs = [i * every for i in range(len(points))]
    mx, my = sum(xs) / len(xs), sum(points) / len(points)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, points, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return {
        "baseline": floor_before,
        "final": floor_after,
        "growth": (floor_after - floor_before) / floor_before,
        "slope": slope,  # bytes per cycle
        "rss_before": rss_before,
        "rss_growth": (rss_after - rss_before) / rss_before,
        "cycles_per_s": cycles / elapsed,
    }


def _check_trend(figures: dict[str, float], cycles: int) -> None:
    print(
        f"\nmemory over {cycles} cycles after warm-up: traced floor {figures['baseline']:,.0f} B "
        f"-> {figures['final']:,.0f} B ({figures['growth']:+.2%}), trend "
        f"{figures['slope']:+.1f} B/cycle; RSS {figures['rss_before'] / 2**20:.1f} MiB "
        f"({figures['rss_growth']:+.2%}); {figures['cycles_per_s']:,.0f} cycles/s"
    )
    assert figures["growth"] < 0.05, figures
    assert figures["rss_growth"] < 0.05, figures
    # a leak of one small object per cycle (a tuple, an event: 50+ B) shows up here
    assert figures["slope"] < 32, figures


def test_memory_does_not_trend_up_over_breaker_retry_fallback_queue_cycles(
    tmp_path: Path,
) -> None:
    figures = _memory_trend(tmp_path, warmup=150, cycles=400)
    _check_trend(figures, 400)


# --- the long versions: by hand, -m soak with RESILIENCE_SOAK=1 --------------------------------


@pytest.mark.soak
@LONG
def test_long_soak_recovers_from_outages_without_leaking() -> None:
    report, watch = _soak_with_outages(duration=60.0, period=1.0)
    _check_soak(report, watch)
    assert report.recoveries >= 20, report.summary()
    print(f"\n{report.summary()}")


@pytest.mark.soak
@LONG
def test_long_memory_trend_over_20000_cycles(tmp_path: Path) -> None:
    figures = _memory_trend(tmp_path, warmup=200, cycles=20_000, every=10)
    _check_trend(figures, 20_000)
