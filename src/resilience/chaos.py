"""FaultInjection: seeded chaos as a policy.

`FaultInjection` sits where a dependency would fail: alone, as a decorator, or as the innermost
stage of a `Pipeline`, so the retries, breakers and fallbacks around it meet the faults they were
built for. Each call draws two numbers from its own `random.Random(seed)`: the first decides
whether to add `latency` seconds (slept on the injected clock, so `VirtualClock` makes it free),
the second whether to raise `error` instead of calling through. Two draws per call, whatever the
rates, so one seed always gives the same sequence of faults.

Example:
    >>> import resilience as rs
    >>> chaos = rs.FaultInjection(error_rate=0.5, seed=7, name="db")
    >>> outcomes = []
    >>> for _ in range(6):
    ...     try:
    ...         outcomes.append(chaos.call(lambda: "ok"))
    ...     except ConnectionError:
    ...         outcomes.append("fault")
    >>> outcomes == chaos.plan(6)
    True
"""

from __future__ import annotations

import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from . import events
from ._clock import SYSTEM_CLOCK, Clock
from ._policy import decorate
from ._validate import Errors, raise_if

__all__ = ["FaultInjection"]

P = ParamSpec("P")
R = TypeVar("R")

ErrorSpec = type[BaseException] | Callable[[], BaseException]

_NAMES = {
    (False, False): "ok",
    (False, True): "fault",
    (True, False): "slow",
    (True, True): "slow+fault",
}


class FaultInjection:
    """Raise `error` with probability `error_rate`, add `latency` with `latency_rate`.

    Args:
        error_rate: chance in [0, 1] that a call raises instead of running.
        error: what to raise: an exception class (built fresh each time with a message naming
            this injector), or a callable returning a fresh exception instance (for classes
            that need other arguments, e.g. an HTTP error carrying a 503 response). One
            instance given directly is refused: raising the same object again and again grows
            its traceback.
        latency: seconds slept (on `clock`) before a call that draws latency; None: never.
        latency_rate: chance in [0, 1] that a call is delayed by `latency` (needs `latency`).
        seed: seeds the injector's own random generator: the same seed gives the same faults.
        clock: where latency is slept; `VirtualClock` in tests.
        name: shown in errors and events (default "chaos").

    Raises:
        ConfigError: a rate outside [0, 1], a negative latency, latency_rate without latency,
            or an `error` that is neither an exception class nor a factory.

    Attributes:
        enabled: set it to False to stop injecting (calls go straight through and draw
            nothing), True to resume. Counters: `calls`, `errors`, `delays`.

    Example:
        >>> import resilience as rs
        >>> from resilience.testing import VirtualClock
        >>> clock = VirtualClock()
        >>> slow = rs.FaultInjection(error_rate=0, latency=2.0, latency_rate=1.0, clock=clock)
        >>> slow.call(sum, [1, 2]), clock.monotonic()
        (3, 2.0)
    """

    __slots__ = (
        "_error",
        "_lock",
        "_message",
        "_random",
        "calls",
        "clock",
        "delays",
        "enabled",
        "error",
        "error_rate",
        "errors",
        "latency",
        "latency_rate",
        "name",
        "seed",
    )

    def __init__(
        self,
        error_rate: float = 0.1,
        error: ErrorSpec = ConnectionError,
        latency: float | None = None,
        latency_rate: float = 0.0,
        seed: int | str | bytes | None = None,
        *,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        raise_if(
            FaultInjection.validate(
                error_rate=error_rate,
                error=error,
                latency=latency,
                latency_rate=latency_rate,
                seed=seed,
                name=name,
            ),
            name,
        )
        self.error_rate = float(error_rate)
        self.error = error
        self.latency = None if latency is None else float(latency)
        self.latency_rate = float(latency_rate) if latency is not None else 0.0
        self.seed = seed
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.name = name or "chaos"
        self.enabled = True
        self.calls = self.errors = self.delays = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._message = f"fault injected by {self.name!r}"
        self._error: Callable[[], BaseException]
        if isinstance(error, type):
            cls, message = error, self._message
            self._error = lambda: cls(message)
        else:
            self._error = error

    @staticmethod
    def validate(
        *,
        error_rate: object = 0.1,
        error: object = ConnectionError,
        latency: object = None,
        latency_rate: object = 0.0,
        seed: object = None,
        name: object = None,
        clock: object = None,
    ) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message).

        Example:
            >>> for problem in FaultInjection.validate(error_rate=1.5, latency=-1):
            ...     print(problem)
            ('error_rate', 'must be in [0, 1], got 1.5')
            ('latency', 'must be >= 0 and finite, got -1')
        """
        e = Errors()
        for key, rate in (("error_rate", error_rate), ("latency_rate", latency_rate)):
            v = e._number(key, rate)
            if v is not None and not 0.0 <= v <= 1.0:
                e.append((key, f"must be in [0, 1], got {rate!r}"))
        if latency is not None:
            e.non_negative("latency", latency)
        elif isinstance(latency_rate, int | float) and latency_rate > 0:
            e.append(("latency_rate", "needs latency (seconds) to be set"))
        if isinstance(error, BaseException):
            e.append(
                (
                    "error",
                    "must be an exception class or a factory returning a fresh exception, "
                    f"not one instance ({error!r}); e.g. error=lambda: {type(error).__name__}(...)",
                )
            )
        elif isinstance(error, type):
            if not issubclass(error, Exception):
                e.append(("error", f"must be an Exception subclass, got {error.__name__}"))
        elif not callable(error):
            e.append(("error", f"must be an exception class or a callable, got {error!r}"))
        if seed is not None and not isinstance(seed, int | str | bytes):
            e.append(("seed", f"must be an int, str, bytes or None, got {type(seed).__name__}"))
        if name is not None and not isinstance(name, str):
            e.append(("name", f"must be a string, got {type(name).__name__}"))
        return e

    # --- the core: one decision per call, no I/O ---------------------------------------------

    def _decide(self) -> tuple[float, bool]:
        """(seconds of latency to add, whether to fail) for the next call."""
        with self._lock:
            self.calls += 1
            delay, fail = self._draw(self._random)
            self.delays += delay > 0
            self.errors += fail
        if events.enabled:
            if delay:
                events.emit(events.FaultInjected(self.name, "latency", f"{delay:g}s"))
            if fail:
                events.emit(events.FaultInjected(self.name, "error", self._error_name()))
        return delay, fail

    def _draw(self, rng: random.Random) -> tuple[float, bool]:
        # Always two draws, so the sequence depends on the seed alone, not on the rates.
        delay_draw = rng.random()
        fail = rng.random() < self.error_rate
        if self.latency and delay_draw < self.latency_rate:
            return self.latency, fail
        return 0.0, fail

    def _error_name(self) -> str:
        return getattr(self.error, "__name__", type(self.error).__name__)

    def _raise(self) -> None:
        exc = self._error()
        if not isinstance(exc, BaseException):
            raise TypeError(
                f"FaultInjection {self.name!r}: error factory returned {exc!r}, not an exception"
            )
        raise exc

    def plan(self, n: int) -> list[str]:
        """The first `n` outcomes an injector with this seed and rates produces: "ok",
        "fault", "slow" or "slow+fault" (a fresh generator: this injector's own is untouched).

        Example:
            >>> FaultInjection(error_rate=0.5, seed=1).plan(4)
            ['ok', 'fault', 'fault', 'ok']
        """
        rng = random.Random(self.seed)
        out = []
        for _ in range(n):
            delay, fail = self._draw(rng)
            out.append(_NAMES[bool(delay), fail])
        return out

    # --- the shells ----------------------------------------------------------------------------

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (def or async def); its signature is kept."""
        return decorate(self, fn)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn(*args, **kwargs)`, maybe late, maybe not at all (raising `error`).

        Raises:
            The injected error; otherwise whatever `fn` raises.
        """
        if self.enabled:
            delay, fail = self._decide()
            if delay:
                self.clock.sleep(delay)
            if fail:
                self._raise()
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await `fn(*args, **kwargs)` with the same faults as `call` (asyncio or trio)."""
        if self.enabled:
            delay, fail = self._decide()
            if delay:
                await self.clock.asleep(delay)
            if fail:
                self._raise()
        return await fn(*args, **kwargs)

    def __repr__(self) -> str:
        return (
            f"FaultInjection(error_rate={self.error_rate}, error={self._error_name()}, "
            f"latency={self.latency}, latency_rate={self.latency_rate}, name={self.name!r})"
        )
