"""Interleaved timing: every candidate runs in the same process, in a reshuffled order each
repetition, and we report medians and ratios (absolute numbers move between runs; ratios in
one run are what to compare; see BASELINES.md)."""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Awaitable, Callable

Case = Callable[[int], float]
"""A case runs its body `n` times and returns the elapsed seconds."""


def loop(fn: Callable[[], object]) -> Case:
    """A case that calls `fn()` n times."""

    def case(n: int) -> float:
        rng = range(n)
        start = time.perf_counter()
        for _ in rng:
            fn()
        return time.perf_counter() - start

    return case


def aloop(fn: Callable[[], Awaitable[object]]) -> Case:
    """A case that awaits `fn()` n times inside one asyncio event loop run."""
    import asyncio

    async def body(n: int) -> float:
        rng = range(n)
        start = time.perf_counter()
        for _ in rng:
            await fn()
        return time.perf_counter() - start

    def case(n: int) -> float:
        return asyncio.run(body(n))

    return case


def compare(cases: dict[str, Case], *, number: int = 20_000, repeat: int = 15) -> dict[str, float]:
    """Median seconds per operation of each case, interleaved and reshuffled per repetition."""
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm up
        cases[name](max(number // 10, 1))
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            random.shuffle(names)
            for name in names:
                samples[name].append(cases[name](number) / number)
    finally:
        if gc_was:
            gc.enable()
    return {name: statistics.median(samples[name]) for name in cases}


def fmt_time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def table(title: str, results: dict[str, float], *, baseline: str | None = None) -> str:
    """A plain-text table of results, with ratios to `baseline` (default: the fastest)."""
    base = results[baseline] if baseline else min(results.values())
    width = max(len(n) for n in results)
    lines = [f"## {title}", f"{'case':<{width}}  {'per op':>10}  {'ratio':>7}"]
    for name, value in sorted(results.items(), key=lambda kv: kv[1]):
        lines.append(f"{name:<{width}}  {fmt_time(value):>10}  {value / base:>6.2f}x")
    return "\n".join(lines)
