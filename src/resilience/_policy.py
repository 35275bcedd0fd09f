"""What every policy shares: the call protocol, the "is it async" rule, and the decorator.

A policy is anything with `call(fn, *args, **kwargs)` and `await acall(fn, *args, **kwargs)`
that runs `fn` under its rule. `decorate(policy, fn)` turns one into a decorator that keeps the
function's signature (ParamSpec) and picks the sync or async path once, at decoration time.

The one rule for "is it async" (`is_async`), used by every policy's decorator, `Pipeline`,
`@resilient`, `FallbackChain` steps and `Failover` tiers:

* an `async def` function or method, an object whose `__call__` is `async def`, and a
  `functools.partial` of either (nested partials too) are async, decided at decoration;
* any other callable whose *result* is awaitable (`lambda q: client.get(q)`) cannot be told
  apart before it runs. The async paths (`acall`, `aexecute`, async tiers and steps) await
  such a result. The sync paths refuse it: every sync-decorated function, `CircuitBreaker.call`,
  `Retry.call` and `FallbackChain.execute` close the coroutine and raise `TypeError` saying to
  use the async path (handing back an un-awaited coroutine would protect nothing and record
  a success). The decorators and `call`s look for a coroutine (one compare per call), the
  awaitable a plain callable returns in practice; `execute` looks for any awaitable. The
  `call` of the other policies (Bulkhead, Timeout, RateLimiter) hands back what `fn` returned.

Generators and async generators are refused at decoration (`check_decoratable`): calling one
only creates the generator, its body runs later while it is iterated, so wrapping it protects
nothing. `@policy` over a `classmethod` or `staticmethod` object works: the function inside is
decorated and re-wrapped.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import Any, NoReturn, ParamSpec, Protocol, TypeVar, cast, overload, runtime_checkable

__all__ = ["Decorator", "Policy", "decorate", "is_async"]

P = ParamSpec("P")
R = TypeVar("R")

COROUTINE = CoroutineType
"""The type the sync shells compare a result with (`type(result) is COROUTINE`: one compare)."""


class Misuse(TypeError):
    """A policy was used in a way that cannot protect anything (not a failure of the call).

    Retry does not note it as a PERMANENT error and breakers do not count it.
    """


@runtime_checkable
class Policy(Protocol):
    """The protocol a policy implements to be used alone, as a decorator, or in a Pipeline.

    What the library's decorators treat as async (and send through `acall`): `async def`
    functions and methods, objects whose `__call__` is `async def`, and `functools.partial`s
    of those. Generators are refused at decoration (wrapping one protects nothing). A sync
    path handed a coroutine (`call(async_fn)`, a lambda returning one) raises TypeError
    pointing to the async path; `@policy` above `@classmethod`/`@staticmethod` works.

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


def _unwrap_partial(fn: object) -> object:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def is_async(fn: object) -> bool:
    """True when calling `fn` returns an awaitable by construction (see the module's rule).

    Example:
        >>> import functools
        >>> async def fetch(url, timeout): ...
        >>> class Client:
        ...     async def __call__(self, q): ...
        >>> is_async(fetch), is_async(functools.partial(fetch, "u")), is_async(Client())
        (True, True, True)
        >>> is_async(len), is_async(lambda: fetch("u", 1))  # the lambda is seen when called
        (False, False)
    """
    fn = _unwrap_partial(fn)
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isroutine(fn) or isinstance(fn, type):
        return False
    return inspect.iscoroutinefunction(_unwrap_partial(getattr(type(fn), "__call__", None)))  # noqa: B004


def _is_generator(fn: object) -> str | None:
    fn = _unwrap_partial(fn)
    for target in (fn, None if inspect.isroutine(fn) else getattr(type(fn), "__call__", None)):  # noqa: B004
        if inspect.isasyncgenfunction(target):
            return "an async generator function"
        if inspect.isgeneratorfunction(target):
            return "a generator function"
    return None


def callable_name(fn: object) -> str:
    """The name a callable is known by: its qualified name, through partials and objects.

    Example:
        >>> import functools
        >>> callable_name(functools.partial(int, base=2))
        'int'
    """
    fn = _unwrap_partial(fn)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(name, str) and name:
        return name
    return type(fn).__qualname__


def check_decoratable(fn: object, policy: object) -> None:
    """Refuse what a policy cannot protect, at decoration, with a TypeError saying why."""
    what = _is_generator(fn)
    by = policy if isinstance(policy, str) else type(policy).__name__
    if what is not None:
        raise TypeError(
            f"{callable_name(fn)} is {what}: {by} would protect only the "
            "creation of the generator, not the work done while it is iterated; decorate a "
            "function that returns the collected items instead"
        )
    if not callable(fn):
        raise TypeError(f"{by} decorates a function, got {type(fn).__name__} {fn!r:.80}")


def refuse_awaitable(result: object, fn: object, where: str) -> NoReturn:
    """A sync path got an awaitable back: close it (no "never awaited" warning) and refuse."""
    close = getattr(result, "close", None)
    if type(result) is COROUTINE and close is not None:
        close()
    name = fn if isinstance(fn, str) else callable_name(fn)
    raise Misuse(
        f"{name} returned {type(result).__name__} object to {where}, which is sync "
        "and cannot await it (nothing was protected): use the async path (acall, an async def "
        "under the decorator, or aexecute)"
    )


def wraps(fn: Callable[..., Any]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`functools.wraps`, naming the wrapper after the function inside a partial or object."""

    def apply(wrapper: Callable[P, R]) -> Callable[P, R]:
        functools.update_wrapper(wrapper, fn)
        if not isinstance(getattr(fn, "__name__", None), str):
            inner = _unwrap_partial(fn)
            name = getattr(inner, "__name__", None) or type(inner).__name__
            wrapper.__name__ = name
            wrapper.__qualname__ = callable_name(inner)
            wrapper.__doc__ = getattr(inner, "__doc__", None)
            module = getattr(inner, "__module__", None)
            if isinstance(module, str):
                wrapper.__module__ = module
        return wrapper

    return apply


def rewrap_descriptor(decorator: Callable[[Any], Any], fn: object) -> Any:
    """`@policy` above `@classmethod`/`@staticmethod`: decorate the function inside, re-wrap."""
    if isinstance(fn, classmethod | staticmethod):
        return type(fn)(decorator(fn.__func__))
    return None


@overload
def decorate(
    policy: Policy, fn: Callable[P, Awaitable[R]]
) -> Callable[P, Coroutine[Any, Any, R]]: ...
@overload
def decorate(policy: Policy, fn: Callable[P, R]) -> Callable[P, R]: ...
def decorate(policy: Policy, fn: Callable[P, Any]) -> Callable[P, Any]:
    """Wrap `fn` so every call goes through `policy` (async functions through `acall`).

    Raises:
        TypeError: `fn` is a generator function (see `check_decoratable`).
    """
    descriptor = rewrap_descriptor(lambda f: decorate(policy, f), fn)
    if descriptor is not None:
        return cast(Callable[P, Any], descriptor)
    check_decoratable(fn, policy)
    if is_async(fn):
        acall = policy.acall

        @wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await acall(fn, *args, **kwargs)

        return async_wrapper

    call = policy.call

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        result = call(fn, *args, **kwargs)
        if type(result) is COROUTINE:
            refuse_awaitable(result, fn, f"the sync path of {type(policy).__name__}")
        return result

    return wrapper


def bare_decorator(cls: type, spelling: str, value: object) -> None:
    """`@rs.Retry` without parentheses passes the function as the first argument: say how."""
    if callable(value) and not isinstance(value, int | float | str | type):
        raise TypeError(
            f"{cls.__name__} was used as a bare decorator (on {callable_name(value)}): "
            f"use @{spelling}, with parentheses"
        )


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
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (def or async def); its signature is kept."""
        return decorate(cast(Policy, self), fn)
