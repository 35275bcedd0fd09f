"""Overhead of MetricsCollector and log_events on a breaker call, and of FaultInjection.

Targets (BASELINES.md): an attached MetricsCollector adds <= 1.5 us per call through a breaker
(first release: 3.4 us); log_events at the default levels adds nothing measurable on the happy
path. "added" is each case minus "breaker, no listener", printed in ns per call.
"""

from __future__ import annotations

import logging
import random

from prometheus_client import CollectorRegistry, Counter, Histogram

import resilience as rs
from benchmarks._harness import compare, loop, table
from resilience import events
from resilience.metrics import log_events


def work() -> int:
    return 1


def main() -> None:
    br = rs.CircuitBreaker("bench.metrics", minimum_calls=10**9, window=rs.CountWindow(100))
    call = br.call

    reg = CollectorRegistry()
    calls = Counter("toy_calls_total", "", ["operation", "outcome"], registry=reg)
    dur = Histogram("toy_duration_seconds", "", ["operation"], registry=reg)

    def toy(ev: events.Event) -> None:  # the least a Prometheus listener can do
        if type(ev) is events.CallCompleted:
            calls.labels(ev.operation, ev.outcome).inc()
            dur.labels(ev.operation).observe(ev.duration)

    def with_listener(sub):  # type: ignore[no-untyped-def]
        def case(n: int) -> float:
            stop = sub()
            try:
                return loop(lambda: call(work))(n)
            finally:
                stop()

        return case

    collector = rs.MetricsCollector()

    def attach_collector():  # type: ignore[no-untyped-def]
        collector.attach()
        return collector.detach

    stdlib = logging.getLogger("bench.resilience")  # the root's default level: WARNING

    def attach_both():  # type: ignore[no-untyped-def]
        collector.attach()
        stop = log_events(stdlib)

        def undo() -> None:
            stop()
            collector.detach()

        return undo

    res = compare(
        {
            "bare call": loop(work),
            "breaker, no listener": loop(lambda: call(work)),
            "breaker + no-op listener": with_listener(lambda: events.subscribe(lambda e: None)),
            "breaker + toy prometheus listener": with_listener(lambda: events.subscribe(toy)),
            "breaker + MetricsCollector": with_listener(attach_collector),
            "breaker + log_events (stdlib, default level)": with_listener(
                lambda: log_events(stdlib)
            ),
            "breaker + MetricsCollector + log_events": with_listener(attach_both),
        },
        number=20_000,
        repeat=11,
    )
    print(
        table(
            "breaker call with metrics (sync, 1 thread)",
            res,
            baseline="breaker + toy prometheus listener",
        )
    )
    base = res["breaker, no listener"]
    print("## added per call, against the breaker with no listener")
    for name in (
        "breaker + no-op listener",
        "breaker + MetricsCollector",
        "breaker + log_events (stdlib, default level)",
    ):
        print(f"{name:<48} {(res[name] - base) * 1e9:>8.0f} ns")
    both = res["breaker + MetricsCollector + log_events"] - res["breaker + MetricsCollector"]
    print(f"{'log_events on top of MetricsCollector':<48} {both * 1e9:>8.0f} ns")

    fi0 = rs.FaultInjection(error_rate=0.0, seed=1)
    p = 0.0
    rnd = random.Random(1)

    def hand(fn):  # type: ignore[no-untyped-def]
        if rnd.random() < p:
            raise ConnectionError("x")
        return fn()

    res = (
        compare(
            {
                "bare call": loop(work),
                "hand-written chaos wrapper": loop(lambda: hand(work)),
                "FaultInjection.call (no fault)": loop(lambda: fi0.call(work)),
                "FaultInjection disabled": loop(lambda: fid.call(work)),
            },
            number=20_000,
            repeat=11,
        )
        if (fid := rs.FaultInjection(error_rate=0.5)) and not setattr(fid, "enabled", False)
        else {}
    )
    print(table("FaultInjection overhead (sync)", res, baseline="hand-written chaos wrapper"))


if __name__ == "__main__":
    main()
