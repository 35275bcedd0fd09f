"""RateLimiter: a token bucket in front of a call.

The bucket holds up to `burst` tokens and refills at `rate` tokens per `per` seconds; each call
takes one. With none left, the call is refused with `RateLimited(.retry_after)` or, with
`wait=True`, waits for its token (sleeping on the injected clock; async callers await). The
bucket lives in a store (`resilience.stores`), so a shared store (Redis) makes one limit for
many processes. With a shared store the bucket runs on the store's clock (Redis `TIME`), so a
host whose clock is off cannot starve the others; when the store fails, `on_store_error`
decides: "fail_closed" (default) refuses calls, "fail_open" lets them through.

Example:
    >>> import resilience as rs
    >>> from resilience.testing import VirtualClock
    >>> clock = VirtualClock()
    >>> limiter = rs.RateLimiter(rate=2, per=1.0, clock=clock)
    >>> [limiter.try_acquire() for _ in range(3)]
    [True, True, False]
    >>> clock.advance(0.5); limiter.try_acquire()
    True
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from . import events
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigError, RateLimited
from ._policy import Decorator
from ._validate import Errors, raise_if
from .stores import (
    MemoryStore,
    Store,
    _in_process,
    _native_async,
    _report_recovered,
    _report_unavailable,
)

__all__ = ["RateLimiter"]

P = ParamSpec("P")
R = TypeVar("R")

_ids = itertools.count(1)
_MIN_SLEEP = 1e-6
"""Waits are at least this long: a float-rounding remainder (4e-17 s) must still move time."""
_PROBE = 1.0
"""Seconds between attempts to reach a store that failed (no call waits on a dead store)."""
_ON_STORE_ERROR = ("fail_closed", "fail_open")


class RateLimiter(Decorator):
    """Admit at most `burst` calls at once and `rate` calls per `per` seconds on average.

    Args:
        rate: tokens added per `per` seconds (> 0).
        per: the period, in seconds (> 0).
        burst: the bucket's size (>= 1); default `rate` (at least 1).
        store: where the bucket lives; default a private `MemoryStore`. Limiters that share
            a store and a `name` share one bucket.
        wait: False (default): refuse a call with no token (`RateLimited`); True: wait for it.
        max_wait: with `wait=True`, refuse instead when the token is further away than this.
        name: the operation's name (also the bucket's key in the store).
        clock: where time is read and waits happen. With a shared store (`store.shared`) and
            the default clock, the bucket runs on the store's clock (Redis: the server's
            `TIME`; SQLite: the clock of the host holding the file), so hosts whose clocks
            disagree still share one honest limit. An injected clock is used as given (its
            `time()`, for tests and simulations).
        on_store_error: what a call gets while the store fails (it is retried once a second,
            and the outage is reported once: a `StoreUnavailable` event and a log line).
            "fail_closed" (default): refused with `RateLimited` (`retry_after`: until the
            next attempt), the safe choice when the limit protects someone else's quota;
            "fail_open": let through unlimited, when availability matters more than the limit.

    Raises:
        ConfigError: bad arguments.
        RateLimited: (from call/acall) no token now (and `wait=False`, or beyond `max_wait`).

    Example:
        >>> import resilience as rs
        >>> limiter = rs.RateLimiter(rate=100, per=1.0, burst=10, name="search")
        >>> limiter.call(len, "abc")
        3
    """

    __slots__ = (
        "_down",
        "_key",
        "_mono",
        "_now",
        "_offload",
        "_probe_at",
        "_refill",
        "burst",
        "clock",
        "max_wait",
        "name",
        "on_store_error",
        "per",
        "rate",
        "store",
        "wait",
    )

    def __init__(
        self,
        rate: float = 100,
        per: float = 1.0,
        burst: float | None = None,
        store: Store | None = None,
        *,
        wait: bool = False,
        max_wait: float | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        on_store_error: str = "fail_closed",
    ) -> None:
        raise_if(
            RateLimiter.validate(
                rate=rate,
                per=per,
                burst=burst,
                store=store,
                wait=wait,
                max_wait=max_wait,
                name=name,
                on_store_error=on_store_error,
            ),
            name,
        )
        self.rate = float(rate)
        self.per = float(per)
        self.burst = float(burst) if burst is not None else max(self.rate, 1.0)
        self.store: Store = store if store is not None else MemoryStore()
        self.wait = wait
        self.max_wait = max_wait
        self.name = name
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._refill = self.rate / self.per
        self._key = f"ratelimit:{name if name is not None else f'#{next(_ids)}'}"
        self.on_store_error = on_store_error
        shared = bool(getattr(self.store, "shared", False))
        # None: the store's own clock (shared store, real clock); else the injected clock.
        self._now: Callable[[], float] | None = (
            (None if self.clock is SYSTEM_CLOCK else self.clock.time)
            if shared
            else self.clock.monotonic
        )
        self._mono = self.clock.monotonic
        self._offload = not _in_process(self.store)
        self._down: float | None = None  # monotonic time the store stopped answering
        self._probe_at = 0.0

    @staticmethod
    def validate(
        *,
        rate: object = 100,
        per: object = 1.0,
        burst: object = None,
        store: object = None,
        wait: object = False,
        max_wait: object = None,
        name: object = None,
        on_store_error: object = "fail_closed",
    ) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message)."""
        e = Errors()
        e.positive("rate", rate)
        e.positive("per", per)
        if burst is not None:
            e.positive("burst", burst)
            e.at_least("burst", burst, "1", 1)
        if store is not None and not isinstance(store, Store):
            e.append(("store", "must implement resilience.stores.Store"))
        if not isinstance(wait, bool):
            e.append(("wait", f"must be True or False, got {wait!r}"))
        if max_wait is not None:
            e.non_negative("max_wait", max_wait)
        if name is not None and not isinstance(name, str):
            e.append(("name", f"must be a string, got {type(name).__name__}"))
        if on_store_error not in _ON_STORE_ERROR:
            e.append(
                ("on_store_error", f'must be "fail_closed" or "fail_open", got {on_store_error!r}')
            )
        return e

    # -- the core ------------------------------------------------------------------------

    def _take(self, tokens: float = 1.0) -> float:
        """0.0 if `tokens` were taken, else the seconds until they will be there."""
        if self._down is not None and self._mono() < self._probe_at:
            return self._unavailable()
        now = self._now
        try:  # spelt out, not `**self._bucket(tokens)`: this is the hot path
            wait = self.store.take_tokens(
                self._key,
                capacity=self.burst,
                refill_per_second=self._refill,
                now=None if now is None else now(),
                tokens=tokens,
            )
        except ConfigError:
            raise
        except Exception as exc:
            return self._failed(exc)
        return self._taken(wait)

    async def _atake(self, tokens: float) -> float:
        """`_take` without blocking the event loop: a store round trip must not stall other
        tasks. RedisStore on asyncio is awaited on the loop (redis.asyncio); other stores
        run `_take` on a worker thread. A store that is down is not asked."""
        if self._down is not None and self._mono() < self._probe_at:
            return self._unavailable()
        if not _native_async(self.store):
            import anyio.to_thread

            return await anyio.to_thread.run_sync(self._take, tokens)
        try:
            wait = await self.store.atake_tokens(  # type: ignore[attr-defined]
                self._key, **self._bucket(tokens)
            )
        except ConfigError:
            raise
        except Exception as exc:
            return self._failed(exc)
        return self._taken(float(wait))

    def _bucket(self, tokens: float) -> dict[str, Any]:
        now = self._now
        return {
            "capacity": self.burst,
            "refill_per_second": self._refill,
            "now": None if now is None else now(),
            "tokens": tokens,
        }

    def _taken(self, wait: float) -> float:
        if self._down is not None:
            self._recovered()
        return wait

    def _failed(self, exc: Exception) -> float:
        """The store failed: report it once per outage, answer by `on_store_error`."""
        self._probe_at = self._mono() + _PROBE
        if self._down is None:
            self._down = self._mono()
            _report_unavailable("rate limiter", self.name, self.store, exc)
        return self._unavailable()

    def _unavailable(self) -> float:
        if self.on_store_error == "fail_open":
            return 0.0
        return max(self._probe_at - self._mono(), _MIN_SLEEP)  # when we will know more

    def _recovered(self) -> None:
        since, self._down = self._down, None
        if since is not None:
            _report_recovered("rate limiter", self.name, self.store, self._mono() - since)

    def _refuse(self, retry_after: float) -> RateLimited:
        if events.enabled:
            events.emit(events.CallRejected(self.name or "ratelimit", "rate_limited", retry_after))
        return RateLimited(retry_after, operation=self.name)

    def _check(self, tokens: float) -> None:
        if tokens > self.burst:
            raise_if([("tokens", f"must be <= burst ({self.burst:g}), got {tokens!r}")], self.name)

    def _too_far(self, retry_after: float) -> bool:
        return not self.wait or (self.max_wait is not None and retry_after > self.max_wait)

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take `tokens` now if the bucket has them; never waits."""
        return self._take(tokens) == 0.0

    def acquire(self, tokens: float = 1.0) -> None:
        """Take `tokens`, waiting for them if `wait=True`; else raise `RateLimited`."""
        if tokens != 1.0:
            self._check(tokens)
        while True:
            retry_after = self._take(tokens)
            if retry_after == 0.0:
                return
            if self._too_far(retry_after):
                raise self._refuse(retry_after)
            self.clock.sleep(max(retry_after, _MIN_SLEEP))

    async def aacquire(self, tokens: float = 1.0) -> None:
        """Like `acquire`, awaiting instead of blocking."""
        if tokens != 1.0:
            self._check(tokens)
        while True:
            retry_after = await self._atake(tokens) if self._offload else self._take(tokens)
            if retry_after == 0.0:
                return
            if self._too_far(retry_after):
                raise self._refuse(retry_after)
            await self.clock.asleep(max(retry_after, _MIN_SLEEP))

    # -- shells ----------------------------------------------------------------------------

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run `fn(*args, **kwargs)` once a token is taken."""
        self.acquire()
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Await `fn(*args, **kwargs)` once a token is taken."""
        await self.aacquire()
        return await fn(*args, **kwargs)

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rate={self.rate!r}, per={self.per!r}, burst={self.burst!r}, "
            f"wait={self.wait!r}, name={self.name!r}, on_store_error={self.on_store_error!r})"
        )
