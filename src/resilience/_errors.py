"""The library's exceptions: every one derives from `ResilienceError`.

All of them live here, so the hierarchy reads in one place and the primitives share it.
Rejections raised on hot paths (`CircuitOpenError`, `BulkheadFull`, `RateLimited`) build their
message lazily, in `__str__`, so raising one costs little; each raise is a fresh object, so no
traceback grows across rejections.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "AllFallbacksFailed",
    "AllTiersFailed",
    "BulkheadFull",
    "CRDTError",
    "CircuitOpenError",
    "ConfigError",
    "LocalRejection",
    "QueueError",
    "QueueFull",
    "RateLimited",
    "ResilienceError",
    "RetryExhausted",
    "StoreError",
    "TimeoutExceeded",
]


class ResilienceError(Exception):
    """Base of every error this library raises.

    `operation` names what was being protected (a breaker's or pipeline's name), when known.

    Example:
        >>> try:
        ...     raise ResilienceError("something broke", operation="payments")
        ... except ResilienceError as e:
        ...     e.operation
        'payments'
    """

    operation: str | None

    def __init__(self, message: str = "", *, operation: str | None = None) -> None:
        super().__init__(message)
        self.operation = operation

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions cross process boundaries (ProcessPoolExecutor, multiprocessing) and are
        # copied (copy.copy) through this protocol. The default re-calls cls(*self.args),
        # i.e. __init__ with the formatted message: rebuild from args and attributes instead.
        return (_restore, (type(self), self.args), self.__dict__ or None)


class ConfigError(ResilienceError, ValueError):
    """Bad configuration: lists every bad field with its location, not only the first.

    `errors` is a list of `(location, message)`; `str()` shows them all.

    Example:
        >>> e = ConfigError([("breaker.minimum_calls", "must be >= 1, got 0")])
        >>> print(e)
        1 invalid setting:
          breaker.minimum_calls: must be >= 1, got 0
    """

    errors: list[tuple[str, str]]

    def __init__(
        self,
        errors: Iterable[tuple[str, str]] | str,
        *,
        operation: str | None = None,
    ) -> None:
        if isinstance(errors, str):
            errors = [("", errors)]
        self.errors = list(errors)
        n = len(self.errors)
        where = f" for '{operation}'" if operation else ""
        lines = [f"{n} invalid setting{'s' if n != 1 else ''}{where}:"]
        lines += [f"  {loc}: {msg}" if loc else f"  {msg}" for loc, msg in self.errors]
        super().__init__("\n".join(lines), operation=operation)


class LocalRejection(ResilienceError):
    """The library shed the call before it reached the dependency.

    The base of `CircuitOpenError`, `BulkheadFull` and `RateLimited`: a rejection by a local
    policy says nothing about the dependency's health, so an enclosing circuit breaker counts
    it neither as a failure nor as a success.

    Example:
        >>> issubclass(CircuitOpenError, LocalRejection)
        True
    """

    __slots__ = ()


class CircuitOpenError(LocalRejection):
    """A circuit breaker rejected the call without running it.

    Attributes:
        name: the breaker's name.
        remaining: seconds until the breaker lets a trial call through (HALF_OPEN); `inf`
            for FORCED_OPEN; 0.0 when HALF_OPEN and all trial slots are taken.
        state: the breaker's state name ("open", "forced_open", "half_open").

    Example:
        >>> e = CircuitOpenError("payments", 12.5, "open", "6 of 10 calls failed")
        >>> str(e)
        "circuit 'payments' is open after 6 of 10 calls failed; next trial in 12.5 s"
    """

    __slots__ = ("name", "reason", "remaining", "state")

    def __init__(self, name: str, remaining: float, state: str = "open", reason: str = "") -> None:
        # Deliberately skip the message formatting on the hot path: see __str__. Only slots
        # are set (BaseException.__new__ already keeps the args; `operation` is derived), so
        # raising one allocates no instance dict: a rejection costs less than a hand-written
        # exception with two attributes.
        self.name = name
        self.remaining = remaining
        self.state = state
        self.reason = reason

    @property
    def operation(self) -> str | None:
        """The breaker's name (unless set otherwise)."""
        return self.__dict__.get("operation", self.name)  # type: ignore[no-any-return]

    @operation.setter
    def operation(self, value: str | None) -> None:
        self.__dict__["operation"] = value

    def __str__(self) -> str:
        if self.state == "forced_open":
            return f"circuit '{self.name}' is forced open; it rejects calls until reset()"
        if self.state == "half_open":
            return (
                f"circuit '{self.name}' is half-open and all its trial calls are taken; "
                "retry shortly"
            )
        why = f" after {self.reason}" if self.reason else ""
        return f"circuit '{self.name}' is open{why}; next trial in {self.remaining:.1f} s"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.remaining, self.state, self.reason))


class RetryExhausted(ResilienceError):
    """The last attempt *returned* a result the classifier called retryable.

    (When the last attempt raised, that error itself is re-raised, with a note.)

    Attributes:
        attempts: how many attempts were made.
        last_result: what the last attempt returned.

    Example:
        >>> e = RetryExhausted(3, {"status": "pending"}, operation="poll")
        >>> e.attempts, str(e)
        (3, "'poll' still returned a retryable result after 3 attempts: {'status': 'pending'}")
    """

    def __init__(self, attempts: int, last_result: object, *, operation: str | None = None) -> None:
        self.attempts = attempts
        self.last_result = last_result
        what = f"'{operation}'" if operation else "the call"
        super().__init__(
            f"{what} still returned a retryable result after {attempts} attempt"
            f"{'s' if attempts != 1 else ''}: {last_result!r:.200}",
            operation=operation,
        )


class TimeoutExceeded(ResilienceError, TimeoutError):
    """The call did not finish within its timeout.

    A `TimeoutError`, so code (and the default classifier) that handles timeouts handles it.

    Attributes:
        timeout: the limit, in seconds.

    Example:
        >>> e = TimeoutExceeded(2.0, operation="search")
        >>> isinstance(e, TimeoutError), str(e)
        (True, "'search' did not finish within 2 s")
    """

    def __init__(self, timeout: float, *, operation: str | None = None) -> None:
        self.timeout = timeout
        what = f"'{operation}'" if operation else "the call"
        super().__init__(f"{what} did not finish within {timeout:g} s", operation=operation)


class BulkheadFull(LocalRejection):
    """A bulkhead had no free slot and no room in its waiting line.

    Attributes:
        max_concurrent, max_waiting: the bulkhead's limits.

    Example:
        >>> e = BulkheadFull(10, 0, operation="reports")
        >>> isinstance(e, LocalRejection), e.max_concurrent
        (True, 10)
        >>> print(e)  # doctest: +ELLIPSIS
        bulkhead 'reports' is full: 10 calls running and 0 waiting; shed load ...
    """

    __slots__ = ("max_concurrent", "max_waiting")

    def __init__(self, max_concurrent: int, max_waiting: int, *, operation: str | None = None):
        Exception.__init__(self, operation)
        self.operation = operation
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting

    def __str__(self) -> str:
        what = f"bulkhead '{self.operation}'" if self.operation else "bulkhead"
        return (
            f"{what} is full: {self.max_concurrent} calls running and "
            f"{self.max_waiting} waiting; shed load or raise max_concurrent"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (self.max_concurrent, self.max_waiting), self.operation))


class RateLimited(LocalRejection):
    """A rate limiter had no token for this call.

    Attributes:
        retry_after: seconds until a token is available.

    Example:
        >>> e = RateLimited(0.25, operation="geocode")
        >>> isinstance(e, LocalRejection), str(e)
        (True, "rate limit reached for 'geocode'; next token in 0.250 s")
    """

    __slots__ = ("retry_after",)

    def __init__(self, retry_after: float, *, operation: str | None = None) -> None:
        Exception.__init__(self, operation)
        self.operation = operation
        self.retry_after = retry_after

    def __str__(self) -> str:
        what = f"'{self.operation}'" if self.operation else "the call"
        return f"rate limit reached for {what}; next token in {self.retry_after:.3f} s"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (self.retry_after,), self.operation))


class AllFallbacksFailed(ResilienceError):
    """Every step of a fallback chain failed.

    Attributes:
        errors: one exception per step that was tried, in order.

    Example:
        >>> e = AllFallbacksFailed([ConnectionError("down"), KeyError("cache")], operation="user")
        >>> [type(x).__name__ for x in e.errors]
        ['ConnectionError', 'KeyError']
    """

    def __init__(self, errors: Sequence[BaseException], *, operation: str | None = None) -> None:
        self.errors = list(errors)
        what = f"fallback chain '{operation}'" if operation else "fallback chain"
        detail = "; ".join(f"{type(e).__name__}: {e}" for e in self.errors)
        super().__init__(
            f"{what}: all {len(self.errors)} steps failed ({detail})", operation=operation
        )


class AllTiersFailed(ResilienceError):
    """Every tier of a failover client failed or was unavailable for this call.

    Attributes:
        errors: tier name -> the exception that tier raised (or its CircuitOpenError).

    Example:
        >>> e = AllTiersFailed({"dc1": ConnectionError("dc1 down")}, operation="ldap")
        >>> str(e)
        "failover 'ldap': every tier failed (dc1: ConnectionError: dc1 down)"
    """

    def __init__(self, errors: dict[str, BaseException], *, operation: str | None = None) -> None:
        self.errors = dict(errors)
        what = f"failover '{operation}'" if operation else "failover"
        detail = "; ".join(f"{t}: {type(e).__name__}: {e}" for t, e in self.errors.items())
        super().__init__(f"{what}: every tier failed ({detail})", operation=operation)


class QueueError(ResilienceError):
    """The offline queue's file is corrupt, foreign, of a newer schema, or unusable.

    Example:
        >>> issubclass(QueueFull, QueueError), issubclass(QueueError, ResilienceError)
        (True, True)
    """


class QueueFull(QueueError):
    """The offline queue holds `max_items` items already; nothing was stored.

    Attributes:
        max_items: the limit.

    Example:
        >>> str(QueueFull(1000, operation="outbox"))
        'queue is full (1000 items); nothing was stored'
    """

    def __init__(self, max_items: int, *, operation: str | None = None) -> None:
        self.max_items = max_items
        super().__init__(
            f"queue is full ({max_items} items); nothing was stored", operation=operation
        )


class CRDTError(ResilienceError):
    """CRDT data that cannot be trusted: tampered, foreign, or of a future version.

    Example:
        >>> from resilience import crdt
        >>> try:
        ...     crdt.from_dict({"type": "GCounter", "v": 99})
        ... except CRDTError as e:
        ...     print(type(e).__name__)
        CRDTError
    """


class StoreError(ResilienceError):
    """A state store (`resilience.stores`) failed: its file is foreign, of a newer schema or
    unusable, or its server cannot be reached. The message never contains a password.

    Example:
        >>> issubclass(StoreError, ResilienceError)
        True
    """


def _restore(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    exc = cls.__new__(cls, *args)
    exc.args = args  # OSError.__new__ leaves args to __init__ in subclasses that define one
    return exc  # the attributes come from the state dict


def _rebuild(cls: type[Any], args: tuple[Any, ...], operation: str | None) -> Any:
    return cls(*args, operation=operation)
