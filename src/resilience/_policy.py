"""What every policy shares: the call protocol and the decorator that dispatches sync/async once.

A policy is anything with `call(fn, *args, **kwargs)` and `await acall(fn, *args, **kwargs)`
that runs `fn` under its rule. `decorate(policy, fn)` turns one into a decorator that keeps the
function's signature (ParamSpec) and picks the sync or async path once, at decoration time.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload, runtime_checkable

__all__ = ["Decorator", "Policy", "decorate"]

P = ParamSpec("P")
R = TypeVar("R")


@runtime_checkable
class Policy(Protocol):
    """The protocol a policy implements to be used alone, as a decorator, or in a Pipeline.

    Example:
        >>> class Log:
        ...     def call(self, fn, /, *args, **kwargs):
        ...         print("calling"); return fn(*args, **kwargs)
        ...     async def acall(self, fn, /, *args, **kwargs):
        ...         print("calling"); return await fn(*args, **kwargs)
        >>> isinstance(Log(), Policy)
        True
    """

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

    async def acall(
        self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any
    ) -> Any: ...


@overload
def decorate(policy: Policy, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
@overload
def decorate(policy: Policy, fn: Callable[P, R]) -> Callable[P, R]: ...
def decorate(policy: Policy, fn: Callable[P, Any]) -> Callable[P, Any]:
    """Wrap `fn` so every call goes through `policy` (async functions through `acall`)."""
    if _is_async(fn):
        acall = policy.acall

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await acall(fn, *args, **kwargs)

        return async_wrapper

    call = policy.call

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        return call(fn, *args, **kwargs)

    return wrapper


def _is_async(fn: object) -> bool:
    """An async def, a partial of one, or an object whose __call__ is one."""
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return False
    return inspect.iscoroutinefunction(getattr(type(fn), "__call__", None))  # noqa: B004


class Decorator:
    """Gives a policy class its decorator form: `@policy` on a def or async def.

    A mixin for classes that implement `call` and `acall`; the decorated function keeps its
    signature, and the sync/async choice is made once, here.

    Example:
        >>> import resilience as rs
        >>> @rs.Bulkhead(max_concurrent=2)
        ... def ping() -> str:
        ...     return "pong"
        >>> ping()
        'pong'
    """

    __slots__ = ()

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (def or async def); its signature is kept."""
        return decorate(cast(Policy, self), fn)
