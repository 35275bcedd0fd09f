"""`decorate(policy, fn)`: the one place sync/async dispatch happens, at decoration time."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from resilience._policy import Policy, decorate


class Counting:
    """A policy that records which path each call took."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.paths.append("sync")
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        self.paths.append("async")
        return await fn(*args, **kwargs)


def test_a_policy_is_recognised_by_its_methods() -> None:
    assert isinstance(Counting(), Policy)
    assert not isinstance(object(), Policy)


def test_sync_function_keeps_its_signature_and_goes_through_call() -> None:
    policy = Counting()

    def charge(amount: int, *, currency: str = "EUR") -> str:
        """Charge a card."""
        return f"{amount} {currency}"

    wrapped = decorate(policy, charge)
    assert wrapped(3, currency="USD") == "3 USD"
    assert policy.paths == ["sync"]
    assert wrapped.__name__ == "charge"
    assert wrapped.__doc__ == "Charge a card."
    assert inspect.signature(wrapped) == inspect.signature(charge)
    assert wrapped.__wrapped__ is charge  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(wrapped)


@pytest.mark.anyio
async def test_async_function_goes_through_acall() -> None:
    policy = Counting()

    async def fetch(key: str) -> str:
        return key.upper()

    wrapped = decorate(policy, fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped("k") == "K"
    assert policy.paths == ["async"]
    assert inspect.signature(wrapped) == inspect.signature(fetch)


@pytest.mark.anyio
async def test_partials_and_async_callable_objects_are_async() -> None:
    policy = Counting()

    async def add(a: int, b: int) -> int:
        return a + b

    class Client:
        async def __call__(self, x: int) -> int:
            return x * 2

    assert await decorate(policy, functools.partial(add, 1))(2) == 3
    assert await decorate(policy, Client())(4) == 8
    assert policy.paths == ["async", "async"]


def test_sync_callable_objects_stay_sync() -> None:
    policy = Counting()

    class Client:
        def __call__(self, x: int) -> int:
            return x * 2

    assert decorate(policy, Client())(4) == 8
    assert decorate(policy, len)("abc") == 3
    assert policy.paths == ["sync", "sync"]
