"""Pipeline(Retry, CircuitBreaker, Bulkhead) on the happy path, against the hand breaker of
BASELINES.md (a lock, two counters and a state check; the lock never held around the call)
and pyresilience's combined decorator. Interleaved in one process; ratios to the hand breaker.

    .venv/bin/python -m benchmarks.pipeline [--quick]
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pyresilience

import resilience as rs
from benchmarks._harness import aloop, compare, loop, table


class HandBreaker:
    """What pure Python can do: a lock, two counters and a state check."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.failures = 0
        self.open = False

    def call(self, fn: Callable[[], Any]) -> Any:
        if self.open:
            raise RuntimeError("open")
        try:
            result = fn()
        except Exception:
            with self.lock:
                self.calls += 1
                self.failures += 1
            raise
        with self.lock:
            self.calls += 1
        return result

    async def acall(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        if self.open:
            raise RuntimeError("open")
        try:
            result = await fn()
        except Exception:
            with self.lock:
                self.calls += 1
                self.failures += 1
            raise
        with self.lock:
            self.calls += 1
        return result


def _ok() -> int:
    return 1


async def _aok() -> int:
    return 1


def _pipeline(name: str) -> rs.Pipeline:
    return rs.Pipeline(
        rs.Retry(max_attempts=3), rs.CircuitBreaker(name), rs.Bulkhead(100), name=name
    )


def _pyresilience(target: Callable[..., Any]) -> Callable[..., Any]:
    return pyresilience.resilient(
        retry=pyresilience.RetryConfig(max_attempts=3, delay=0.0, retry_on=(ConnectionError,)),
        circuit_breaker=pyresilience.CircuitBreakerConfig(),
        bulkhead=pyresilience.BulkheadConfig(max_concurrent=100),
    )(target)


def main(argv: list[str] | None = None) -> None:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    number, repeat = (2_000, 5) if quick else (20_000, 11)

    hand = HandBreaker()
    breaker = rs.CircuitBreaker("bench-breaker")
    pipe = _pipeline("bench-sync")
    decorated = _pipeline("bench-decorated")(_ok)
    sync_cases = {
        "hand breaker": loop(lambda: hand.call(_ok)),
        "CircuitBreaker": loop(lambda: breaker.call(_ok)),
        "Pipeline(R,CB,BH).call": loop(lambda: pipe.call(_ok)),
        "@Pipeline(R,CB,BH)": loop(lambda: decorated()),
        "pyresilience retry+cb+bh": loop(_pyresilience(_ok)),
    }
    sync_results = compare(sync_cases, number=number, repeat=repeat)
    print(
        table(
            "Pipeline(Retry, CircuitBreaker, Bulkhead), happy path (sync)",
            sync_results,
            baseline="hand breaker",
        )
    )
    print()
    apipe = _pipeline("bench-async")
    abreaker = rs.CircuitBreaker("bench-abreaker")
    adecorated = _pipeline("bench-adecorated")(_aok)
    async_cases = {
        "hand breaker": aloop(lambda: hand.acall(_aok)),
        "CircuitBreaker": aloop(lambda: abreaker.acall(_aok)),
        "Pipeline(R,CB,BH).acall": aloop(lambda: apipe.acall(_aok)),
        "@Pipeline(R,CB,BH)": aloop(lambda: adecorated()),
        "pyresilience retry+cb+bh": aloop(_pyresilience(_aok)),
    }
    async_results = compare(async_cases, number=number, repeat=repeat)
    print(
        table(
            "Pipeline(Retry, CircuitBreaker, Bulkhead), happy path (async, asyncio)",
            async_results,
            baseline="hand breaker",
        )
    )
    print()
    print("## Targets (issue 12: Pipeline(R,CB,BH) <= 2.5x the hand breaker)")
    for label, results, case in (
        ("sync @Pipeline", sync_results, "@Pipeline(R,CB,BH)"),
        ("sync .call", sync_results, "Pipeline(R,CB,BH).call"),
        ("async @Pipeline", async_results, "@Pipeline(R,CB,BH)"),
        ("async .acall", async_results, "Pipeline(R,CB,BH).acall"),
    ):
        ratio = results[case] / results["hand breaker"]
        print(f"{label:<18} {ratio:>6.2f}x  {'met' if ratio <= 2.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
