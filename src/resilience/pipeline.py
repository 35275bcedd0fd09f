"""Pipeline: several policies around one call, outermost first (like Polly's pipelines).

`Pipeline(Timeout(10), Retry(), CircuitBreaker("llm"), Bulkhead(20))` runs a call as
`Timeout(Retry(CircuitBreaker(Bulkhead(call))))`. The order is a decision, not a detail:

* **Timeout (total)** outermost: one limit for the whole call, retries and waits included.
* **Retry** outside the breaker: each attempt is seen by the breaker, so it counts every
  attempt; when the breaker is open its `CircuitOpenError` is RATE_LIMITED with the time left
  until the trial, so the retry waits for the half-open trial instead of hammering.
* **CircuitBreaker** outside the bulkhead and the attempt timeout: a call the breaker rejects
  takes no slot; a per-attempt timeout counts as a failure.
* **Bulkhead** next: bounds concurrency of what actually goes out.
* **Timeout (per attempt)** innermost: bounds each try.

The recommended default is `Pipeline.standard(...)`, which puts what you give it in that order:
Timeout(total) > Retry > RateLimiter > CircuitBreaker > Bulkhead > Timeout(attempt).

Any object with `call(fn, /, *args, **kwargs)` and `async acall(fn, /, *args, **kwargs)`
(`resilience.Policy`) can be a stage, so your own policies mix with ours.

Example:
    >>> import resilience as rs
    >>> pipe = rs.Pipeline(rs.Retry(max_attempts=2), rs.Bulkhead(4), name="demo")
    >>> pipe.call(max, 3, 7)
    7
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from ._policy import (
    COROUTINE,
    Policy,
    check_decoratable,
    decorate,
    is_async,
    refuse_awaitable,
    rewrap_descriptor,
    wraps,
)
from ._validate import Errors, raise_if

__all__ = ["Pipeline", "Policy"]

P = ParamSpec("P")
R = TypeVar("R")


class _Call(Protocol):
    def __call__(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R: ...


class _ACall(Protocol):
    def __call__(
        self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, R]: ...


def _direct(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    return fn(*args, **kwargs)


async def _adirect(fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
    return await fn(*args, **kwargs)


async def _sync_only(pipe: Pipeline, i: int, fn: Callable[..., Any], /, *a: Any, **kw: Any) -> Any:
    raise TypeError(
        f"pipeline {pipe.name!r}: stage {i} ({type(pipe.policies[i]).__name__}) has "
        "no acall(); it can only protect sync calls"
    )


class Pipeline:
    """Policies applied around a call, the first given outermost.

    `None` stages are skipped (handy when a configuration turns a policy off). A pipeline is
    itself a policy, so pipelines nest.

    Args:
        *policies: stages, outermost first; each has `call` and `acall`.
        name: the operation's name (shown in events of stages that have no name).

    Raises:
        ConfigError: a stage is not a policy (a class such as `rs.Retry` where an instance,
            `rs.Retry()`, is meant, is refused with that spelling).

    Example:
        >>> import resilience as rs
        >>> pipe = rs.Pipeline(rs.Timeout(5), rs.Retry(max_attempts=3), name="llm")
        >>> @pipe
        ... def generate(prompt: str) -> str:
        ...     return prompt.upper()
        >>> generate("hi")
        'HI'
        >>> pipe.call(str.upper, "hi")   # or `await pipe.acall(async_fn, ...)`
        'HI'
    """

    __slots__ = (
        "__weakref__",
        "_afirst",
        "_arest",
        "_first",
        "_n",
        "_rest",
        "_sync_only",
        "acall",
        "call",
        "name",
        "policies",
    )

    def __init__(self, *policies: Policy | None, name: str | None = None) -> None:
        stages = tuple(p for p in policies if p is not None)
        raise_if(Pipeline.validate(policies=stages, name=name), name)
        self.policies: tuple[Policy, ...] = stages
        self.name = name
        self._n = len(stages)
        # No closures, no per-stage frames of our own: stage i is called as
        #   policy_i.call(policy_{i+1}.call, policy_{i+2}.call, ..., fn, *args, **kwargs)
        # so it "protects" the next stage's call, whose own arguments are the rest. Each
        # policy's call(fn, /, *args, **kwargs) passes its arguments through untouched.
        calls = tuple(p.call for p in stages)
        acalls = tuple(getattr(p, "acall", None) for p in stages)
        self._first = calls[0] if calls else None
        self._rest = calls[1:]
        self._afirst = acalls[0] if acalls else None
        self._arest = acalls[1:]
        self._sync_only = next((i for i, a in enumerate(acalls) if a is None), None)
        # `call` and `acall` are the first stage's own, bound to the others: no pipeline
        # frame (or coroutine) between the caller and the first stage.
        self.call: _Call = _direct if self._first is None else partial(self._first, *self._rest)
        self.acall: _ACall
        if self._sync_only is not None:
            self.acall = partial(_sync_only, self, self._sync_only)
        elif self._afirst is None:
            self.acall = _adirect
        else:
            self.acall = partial(self._afirst, *self._arest)

    @staticmethod
    def validate(*, policies: object = (), name: object = None) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message)."""
        e = Errors()
        if not isinstance(policies, tuple | list):
            e.append(("policies", "must be a sequence of policies"))
        else:
            for i, p in enumerate(policies):
                if isinstance(p, type):
                    e.append(
                        (
                            f"policies[{i}]",
                            f"{p.__name__} is a class: pass a policy object, "
                            f"rs.{p.__name__}(...), not the class rs.{p.__name__}",
                        )
                    )
                elif p is not None and not callable(getattr(p, "call", None)):
                    e.append(
                        (
                            f"policies[{i}]",
                            f"{type(p).__name__} is not a policy: it needs call(fn, *args, "
                            "**kwargs) and async acall(fn, *args, **kwargs)",
                        )
                    )
        if name is not None and not isinstance(name, str):
            e.append(("name", f"must be a string, got {type(name).__name__}"))
        return e

    @classmethod
    def standard(
        cls,
        *,
        timeout: Policy | None = None,
        retry: Policy | None = None,
        rate_limit: Policy | None = None,
        breaker: Policy | None = None,
        bulkhead: Policy | None = None,
        attempt_timeout: Policy | None = None,
        name: str | None = None,
    ) -> Pipeline:
        """The recommended order for the policies you give (None = leave out):
        Timeout(total) > Retry > RateLimiter > CircuitBreaker > Bulkhead > Timeout(attempt).

        Example:
            >>> import resilience as rs
            >>> pipe = rs.Pipeline.standard(bulkhead=rs.Bulkhead(5), retry=rs.Retry())
            >>> [type(p).__name__ for p in pipe.policies]
            ['Retry', 'Bulkhead']
        """
        return cls(timeout, retry, rate_limit, breaker, bulkhead, attempt_timeout, name=name)

    # -- running ---------------------------------------------------------------------------

    # `call(fn, /, *args, **kwargs)` runs `fn(*args, **kwargs)` through every stage;
    # `await acall(fn, /, *args, **kwargs)` awaits it (TypeError when a stage has no acall).
    # Both are set in __init__ (see there).

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function (its signature is kept).

        Raises:
            TypeError: `fn` is a generator function (see `resilience.Policy`).
        """
        descriptor = rewrap_descriptor(self, fn)
        if descriptor is not None:
            return descriptor  # type: ignore[no-any-return]
        check_decoratable(fn, self)
        asynchronous = is_async(fn)
        if not self.policies or (asynchronous and self._sync_only is not None):
            return decorate(self, fn)
        # Composed once, here, from the inside out: a policy with a frame-free decorator
        # (`_inline`: CircuitBreaker, a Retry without budget or deadline) wraps what is inside
        # with its own logic; any other is bound with a C-level partial. A call then runs
        # one frame per inline stage and no pipeline frame at all.
        inner: Any = fn
        for policy in reversed(self.policies):
            if getattr(policy, "_inline", False):
                inner = policy(inner)  # type: ignore[operator]
            else:
                inner = functools.partial(policy.acall if asynchronous else policy.call, inner)
            inner.__resilience_stage__ = policy  # the name an unnamed Retry above reports
        if inspect.isfunction(inner):  # the outermost stage's own wrapper: name it after fn
            return wraps(fn)(inner)
        outer = inner
        if asynchronous:

            @wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await outer(*args, **kwargs)

            return async_wrapper

        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            result = outer(*args, **kwargs)
            if type(result) is COROUTINE:
                refuse_awaitable(result, fn, f"the sync path of pipeline {self.name!r}")
            return result

        return wrapper

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self.policies)
        return f"Pipeline({inner}, name={self.name!r})"
