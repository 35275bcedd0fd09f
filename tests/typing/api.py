"""Type-only checks of the public signatures (checked by mypy, never run by pytest)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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


# --- async decorators return a Coroutine: asyncio.create_task(f()) type-checks ----------------


@breaker
async def charge(amount: int) -> str:
    return str(amount)


@pipe
async def apiped(x: float) -> str:
    return str(x)


@rs.Bulkhead(4)
async def limited(x: int) -> int:
    return x


@rs.resilient("typing.op")
async def configured(user: str, *, fresh: bool = False) -> dict[str, int]:
    return {user: int(fresh)}


@rs.resilient("typing.sync")
def configured_sync(n: int) -> list[int]:
    return [n]


async def tasks() -> None:
    t1 = asyncio.create_task(charge(1))
    t2 = asyncio.create_task(fetch("u"))
    t3 = asyncio.create_task(apiped(1.0))
    t4 = asyncio.create_task(configured("ada", fresh=True))
    t5 = asyncio.create_task(limited(2))
    assert_type(await t1, str)
    assert_type(await t2, bytes)
    assert_type(await t3, str)
    assert_type(await t4, dict[str, int])
    assert_type(await t5, int)
    assert_type(configured_sync(3), list[int])


# --- ParamSpec kept through Pipeline and @resilient -------------------------------------------

keeps_piped: Callable[[float], str] = piped
keeps_configured: Callable[[int], list[int]] = configured_sync
piped("not a float")  # type: ignore[arg-type]
configured_sync(n="x")  # type: ignore[arg-type]
_ = configured("ada", stale=True)  # type: ignore[call-arg]


# --- FallbackChain and Served are generic in the value type ----------------------------------


def live(q: str) -> float:
    return 1.0


async def alive(q: str) -> float:
    return 1.0


chain = rs.FallbackChain(rs.Step(live), rs.StaleCache(), rs.Default(0.0))
assert_type(chain, rs.FallbackChain[float])
assert_type(chain.execute("q"), rs.Served[float])
assert_type(chain.execute("q").value, float)
assert_type(chain("q"), float)
achain = rs.FallbackChain(rs.Step(alive), rs.Default(0.0))
assert_type(achain, rs.FallbackChain[float])


async def served() -> None:
    assert_type(await achain.aexecute("q"), rs.Served[float])
    assert_type(await achain.acall("q"), float)
