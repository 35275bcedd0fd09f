"""Type-only checks of the public signatures (checked by mypy, never run by pytest)."""

from __future__ import annotations

from typing import assert_type

import resilience as rs

breaker = rs.CircuitBreaker("typing")
retry = rs.Retry(max_attempts=2)
pipe = rs.Pipeline(retry, breaker, name="typing")


@breaker
def add(a: int, b: int) -> int:
    return a + b


@retry
async def fetch(url: str) -> bytes:
    return url.encode()


@pipe
def piped(x: float) -> str:
    return str(x)


assert_type(add(1, 2), int)
assert_type(piped(1.0), str)
assert_type(breaker.call(add, 1, 2), int)
assert_type(rs.DEFAULT_CLASSIFIER.classify(ValueError()), rs.Classification)
assert_type(breaker.state, rs.CircuitState)


async def use() -> None:
    assert_type(await fetch("x"), bytes)
