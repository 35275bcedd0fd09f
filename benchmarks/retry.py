"""Retry against tenacity, stamina, backoff and pyresilience, interleaved in one process.

`resilience.Retry` is the decorator with the default engine (tenacity runs attempts 2..n);
`resilience.Retry native` the same policy with `engine="native"`; `resilience rt.call` the
default policy called as `rt.call(fn)` (one more frame: the lambda-free way a Pipeline calls).

    .venv/bin/python -m benchmarks.retry [--quick]

Cases: the first attempt succeeds (sync and async), and the failure path (fails twice, then
succeeds, zero wait). `hand retry` is a plain for/try loop: the floor. Ratios are to it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import backoff
import pyresilience
import stamina
import tenacity

import resilience as rs
from benchmarks._harness import aloop, compare, loop, table

logging.getLogger("backoff").disabled = True
logging.getLogger("stamina").disabled = True
stamina.instrumentation.set_on_retry_hooks([])  # no logging/metrics hooks for any peer


def _ok() -> int:
    return 1


async def _aok() -> int:
    return 1


def _flaky() -> Callable[[], int]:
    """Fails twice, succeeds the third time, over and over."""
    n = 0

    def fn() -> int:
        nonlocal n
        n += 1
        if n % 3:
            raise ConnectionError("down")
        return 1

    return fn


def _aflaky() -> Callable[[], Awaitable[int]]:
    fn = _flaky()

    async def afn() -> int:
        return fn()

    return afn


def _via_call(target: Callable[..., Any], is_async: Any) -> Callable[..., Any]:
    """`rt.call(fn)` / `await rt.acall(fn)`, not the decorator (what a Pipeline does)."""
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0))
    if is_async:
        acall = rt.acall

        async def via_acall() -> Any:
            return await acall(target)

        return via_acall
    call = rt.call

    def via_call() -> Any:
        return call(target)

    return via_call


def _wrappers(target: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    """Every candidate wrapped around `target` (sync or async), 3 attempts, zero wait."""
    is_async = hasattr(target, "__code__") and target.__code__.co_flags & 0x80

    if is_async:

        async def hand() -> Any:
            for attempt in range(3):
                try:
                    return await target()
                except ConnectionError:
                    if attempt == 2:
                        raise
            return None
    else:

        def hand() -> Any:  # type: ignore[misc]
            for attempt in range(3):
                try:
                    return target()
                except ConnectionError:
                    if attempt == 2:
                        raise
            return None

    return {
        "hand retry": hand,
        "resilience.Retry": rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0))(target),
        "resilience.Retry native": rs.Retry(
            max_attempts=3, backoff=rs.Backoff.constant(0), engine="native"
        )(target),
        "resilience rt.call": _via_call(target, is_async),
        "tenacity": tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_none(),
            retry=tenacity.retry_if_exception_type(ConnectionError),
            reraise=True,
        )(target),
        "stamina": stamina.retry(
            on=ConnectionError, attempts=3, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0
        )(target),
        "backoff": backoff.on_exception(
            backoff.constant, ConnectionError, max_tries=3, interval=0, jitter=None
        )(target),
        "pyresilience": pyresilience.resilient(
            retry=pyresilience.RetryConfig(
                max_attempts=3, delay=0.0, jitter=False, retry_on=(ConnectionError,)
            )
        )(target),
    }


def main(argv: list[str] | None = None) -> None:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    n_fast, n_slow, rep = (2_000, 200, 5) if quick else (20_000, 1_000, 11)

    sync_ok = {k: loop(f) for k, f in _wrappers(_ok).items()}
    print(
        table(
            "Retry, first attempt succeeds (sync)",
            compare(sync_ok, number=n_fast, repeat=rep),
            baseline="hand retry",
        )
    )
    print()
    async_ok = {k: aloop(f) for k, f in _wrappers(_aok).items()}
    print(
        table(
            "Retry, first attempt succeeds (async, asyncio)",
            compare(async_ok, number=n_fast, repeat=rep),
            baseline="hand retry",
        )
    )
    print()
    # each candidate gets its own flaky function, so they do not share the failure counter
    sync_fail = {k: loop(_wrappers(_flaky())[k]) for k in _wrappers(_ok)}
    print(
        table(
            "Retry, fails twice then succeeds, zero wait (sync)",
            compare(sync_fail, number=n_slow, repeat=rep),
            baseline="hand retry",
        )
    )
    print()
    async_fail = {k: aloop(_wrappers(_aflaky())[k]) for k in _wrappers(_ok)}
    print(
        table(
            "Retry, fails twice then succeeds, zero wait (async)",
            compare(async_fail, number=n_slow, repeat=rep),
            baseline="hand retry",
        )
    )


if __name__ == "__main__":
    main()
