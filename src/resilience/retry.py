"""Retry: retry transient failures only, with backoff, Retry-After, a deadline and a budget.

Our classifier decides *what* is retried (TRANSIENT and RATE_LIMITED verdicts only), our
`Backoff` decides *how long* to wait, and tenacity runs the retry loop. The first attempt runs
outside tenacity, so a call that succeeds at once costs a function call and a `try`; tenacity is
built only when an attempt has failed and another one is due.

Example:
    >>> import resilience as rs
    >>> from resilience.testing import VirtualClock
    >>> clock = VirtualClock()
    >>> calls = []
    >>> @rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), clock=clock)
    ... def flaky() -> str:
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("reset")
    ...     return "ok"
    >>> flaky(), clock.sleeps
    ('ok', [0.5, 0.5])
"""

from __future__ import annotations

import inspect
import random as _random
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from . import events
from ._clock import SYSTEM_CLOCK, Clock
from ._deadline import _current as _budget_now
from ._deadline import check_budget
from ._errors import CircuitOpenError, RetryExhausted, TimeoutExceeded
from ._policy import (
    COROUTINE,
    Misuse,
    bare_decorator,
    check_decoratable,
    decorate,
    is_async,
    refuse_awaitable,
    rewrap_descriptor,
    wraps,
)
from ._validate import Errors, raise_if
from .classify import DEFAULT_CLASSIFIER, Classification, Classifier, Verdict

if TYPE_CHECKING:
    import tenacity

__all__ = ["Backoff", "Jitter", "Retry", "RetryBudget"]

P = ParamSpec("P")
R = TypeVar("R")

Jitter = Literal["full", "equal"] | None
"""How a delay is randomised: "full" = U(0, d); "equal" = d/2 + U(0, d/2); None = d."""

_JITTERS: tuple[Jitter, ...] = ("full", "equal", None)
_KINDS = ("constant", "linear", "exponential", "decorrelated")
_MIN_RATE_LIMITED_WAIT = 0.1
"""A RATE_LIMITED outcome with no Retry-After never retries at once (seconds)."""
_NOTE_PREFIX = "resilience.Retry:"
_budget_get = _budget_now.get  # the active time budget; with none, one context-variable read
_INF = float("inf")


# --- backoff ---------------------------------------------------------------------------------


class Backoff:
    """How long to wait after the attempt-th failure. Build one with a class method.

    * `Backoff.constant(delay)` waits exactly `delay` (no jitter unless asked);
    * `Backoff.linear(initial, step, maximum)` waits `initial + step * (attempt - 1)`;
    * `Backoff.exponential(initial, multiplier, maximum, jitter="full")` waits up to
      `initial * multiplier ** (attempt - 1)`; with `jitter=None` the first wait is `initial`;
    * `Backoff.decorrelated(initial, maximum)` is the "decorrelated jitter" of AWS's backoff
      study: `min(maximum, U(initial, previous * 3))`.

    Every delay is within `[0, maximum]`. Pass `seed=` or `random=` (a `random.Random`) for
    reproducible jitter.

    Example:
        >>> b = Backoff.exponential(initial=0.1, multiplier=2, maximum=1.0, jitter=None)
        >>> [b.delay(n) for n in range(1, 6)]
        [0.1, 0.2, 0.4, 0.8, 1.0]
    """

    __slots__ = ("_random", "initial", "jitter", "kind", "maximum", "multiplier", "step")

    def __init__(
        self,
        kind: str = "exponential",
        *,
        initial: float = 0.1,
        multiplier: float = 2.0,
        step: float = 0.0,
        maximum: float = 10.0,
        jitter: Jitter = "full",
        delay: float | None = None,
        seed: int | None = None,
        random: _random.Random | None = None,
    ) -> None:
        raise_if(
            Backoff.validate(
                kind=kind,
                initial=initial,
                multiplier=multiplier,
                step=step,
                maximum=maximum,
                jitter=jitter,
                delay=delay,
            ),
            "backoff",
        )
        if kind == "constant" and delay is not None:
            initial = maximum = delay
        self.kind = kind
        self.initial = float(initial)
        self.multiplier = float(multiplier)
        self.step = float(step)
        self.maximum = float(maximum)
        self.jitter: Jitter = jitter
        rng = random if random is not None else _random.Random(seed)
        self._random: Callable[[], float] = rng.random

    # -- constructors, one per kind (these are what users and the config layer call) -----

    @classmethod
    def constant(
        cls,
        delay: float,
        *,
        jitter: Jitter = None,
        seed: int | None = None,
        random: _random.Random | None = None,
    ) -> Backoff:
        """Wait `delay` seconds after every failure (exactly, unless `jitter` is set)."""
        return cls(
            "constant",
            delay=delay,
            jitter=jitter,
            seed=seed,
            random=random,
        )

    @classmethod
    def linear(
        cls,
        initial: float = 0.1,
        step: float = 0.1,
        maximum: float = 10.0,
        *,
        jitter: Jitter = None,
        seed: int | None = None,
        random: _random.Random | None = None,
    ) -> Backoff:
        """Wait `initial`, then `step` seconds more after each failure, up to `maximum`."""
        return cls(
            "linear",
            initial=initial,
            step=step,
            maximum=maximum,
            jitter=jitter,
            seed=seed,
            random=random,
        )

    @classmethod
    def exponential(
        cls,
        initial: float = 0.1,
        multiplier: float = 2.0,
        maximum: float = 10.0,
        *,
        jitter: Jitter = "full",
        seed: int | None = None,
        random: _random.Random | None = None,
    ) -> Backoff:
        """Wait `initial * multiplier ** (attempt - 1)`, at most `maximum`, jittered."""
        return cls(
            "exponential",
            initial=initial,
            multiplier=multiplier,
            maximum=maximum,
            jitter=jitter,
            seed=seed,
            random=random,
        )

    @classmethod
    def decorrelated(
        cls,
        initial: float = 0.1,
        maximum: float = 10.0,
        *,
        seed: int | None = None,
        random: _random.Random | None = None,
    ) -> Backoff:
        """AWS's decorrelated jitter: `min(maximum, U(initial, previous * 3))`."""
        return cls(
            "decorrelated", initial=initial, maximum=maximum, jitter=None, seed=seed, random=random
        )

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Backoff:
        """Build from the config layout: `{"kind": "exponential", "initial": 0.5, ...}`.

        Raises:
            ConfigError: unknown kind or keys, or bad values (all of them listed).
        """
        raise_if(_backoff_spec_errors(spec), "backoff")
        params = dict(spec)
        kind = params.pop("kind", "exponential")
        factory: Callable[..., Backoff] = getattr(cls, kind)
        return factory(**params)

    def to_dict(self) -> dict[str, Any]:
        """The config layout of this backoff (the inverse of `from_dict`)."""
        if self.kind == "constant":
            return {"kind": "constant", "delay": self.initial, "jitter": self.jitter}
        if self.kind == "linear":
            return {
                "kind": "linear",
                "initial": self.initial,
                "step": self.step,
                "maximum": self.maximum,
                "jitter": self.jitter,
            }
        if self.kind == "decorrelated":
            return {"kind": "decorrelated", "initial": self.initial, "maximum": self.maximum}
        return {
            "kind": "exponential",
            "initial": self.initial,
            "multiplier": self.multiplier,
            "maximum": self.maximum,
            "jitter": self.jitter,
        }

    @staticmethod
    def validate(
        *,
        kind: object = "exponential",
        initial: object = 0.1,
        multiplier: object = 2.0,
        step: object = 0.0,
        maximum: object = 10.0,
        jitter: object = "full",
        delay: object = None,
    ) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message); empty if none."""
        e = Errors()
        e.one_of("kind", kind, _KINDS)
        if kind == "constant" and delay is not None:
            initial = maximum = delay
            e.non_negative("delay", delay)
        else:
            e.non_negative("initial", initial)
            e.non_negative("maximum", maximum)
            e.at_least("maximum", maximum, "initial", initial)
        if kind == "exponential":
            e.positive("multiplier", multiplier)
            e.at_least("multiplier", multiplier, "1", 1.0)
        if kind == "linear":
            e.non_negative("step", step)
        if kind == "decorrelated":
            e.positive("initial", initial)
        e.one_of("jitter", jitter, _JITTERS)
        return e

    # -- the delays ---------------------------------------------------------------------

    def base(self, attempt: int) -> float:
        """The un-jittered delay after the attempt-th failure (`initial` for decorrelated)."""
        kind = self.kind
        if kind == "exponential":
            try:
                value = self.initial * self.multiplier ** (attempt - 1)
            except OverflowError:
                return self.maximum
            return value if value < self.maximum else self.maximum
        if kind == "linear":
            value = self.initial + self.step * (attempt - 1)
            return value if value < self.maximum else self.maximum
        return self.initial

    def delay(self, attempt: int, previous: float | None = None) -> float:
        """Seconds to wait after the attempt-th failure (attempt >= 1).

        Args:
            attempt: how many attempts have failed so far.
            previous: the last wait this backoff gave (decorrelated grows from it; the others
                ignore it).

        Returns:
            a delay in `[0, maximum]`.
        """
        if self.kind == "decorrelated":
            low = self.initial
            high = (previous if previous is not None and previous > low else low) * 3.0
            value = low + (high - low) * self._random()
            return value if value < self.maximum else self.maximum
        base = self.base(attempt)
        jitter = self.jitter
        if jitter is None:
            return base
        if jitter == "full":
            return base * self._random()
        return base / 2.0 + base / 2.0 * self._random()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "kind")
        return f"Backoff.{self.kind}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Backoff) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


_KIND_KEYS: dict[str, frozenset[str]] = {
    "constant": frozenset({"delay", "jitter"}),
    "linear": frozenset({"initial", "step", "maximum", "jitter"}),
    "exponential": frozenset({"initial", "multiplier", "maximum", "jitter"}),
    "decorrelated": frozenset({"initial", "maximum"}),
}


def _backoff_spec_errors(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every problem with a backoff in its config form (keys are the kind's arguments)."""
    params = dict(spec)
    kind = params.pop("kind", "exponential")
    allowed = _KIND_KEYS.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        return [("kind", f"must be one of {', '.join(map(repr, _KINDS))}; got {kind!r}")]
    unknown = sorted(set(params) - allowed - {"seed"}, key=str)
    if unknown:
        return [(str(k), f"is not an argument of Backoff.{kind}") for k in unknown]
    defaults: dict[str, Any] = {"jitter": "full" if kind == "exponential" else None}
    if kind == "constant":
        defaults["delay"] = params.get("delay")
        if defaults["delay"] is None:
            return [("delay", "is required for a constant backoff")]
    params.pop("seed", None)
    return Backoff.validate(kind=kind, **{**defaults, **params})


# --- retry budget ----------------------------------------------------------------------------


class RetryBudget:
    """Caps retries as a share of calls, so a storm of failures cannot multiply the load.

    Like Finagle's retry budget: every call deposits `ratio` tokens, every retry withdraws
    one; deposits expire after `ttl` seconds; on top of that, `min_per_second` retries per
    second are always allowed (a floor, so a service with little traffic can still retry).
    One budget is shared by every call of the `Retry` (or Retries) it is given to.

    Args:
        ratio: retries allowed per call, in (0, 1]. 0.2 = at most 20% extra load.
        min_per_second: retries per second allowed regardless of the ratio (>= 0).
        ttl: seconds a deposit stays usable.
        clock: where time is read; by default the clock of the Retry that uses it.

    Example:
        >>> from resilience.testing import VirtualClock
        >>> budget = RetryBudget(ratio=0.5, min_per_second=0, clock=VirtualClock())
        >>> budget.deposit(); budget.deposit()
        >>> budget.try_withdraw(), budget.try_withdraw()
        (True, False)
    """

    __slots__ = (
        "_deposits",
        "_floor",
        "_floor_at",
        "_lock",
        "clock",
        "min_per_second",
        "ratio",
        "ttl",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10,
        *,
        ttl: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        raise_if(
            RetryBudget.validate(ratio=ratio, min_per_second=min_per_second, ttl=ttl),
            "retry_budget",
        )
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.ttl = float(ttl)
        self.clock: Clock | None = clock
        self._lock = threading.Lock()
        # deposits per whole second of the clock: [second, tokens]; the oldest first
        self._deposits: deque[list[float]] = deque()
        self._floor = self.min_per_second
        self._floor_at: float | None = None

    @staticmethod
    def validate(
        *, ratio: object = 0.2, min_per_second: object = 10, ttl: object = 10.0
    ) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message)."""
        e = Errors()
        e.fraction("ratio", ratio)
        e.non_negative("min_per_second", min_per_second)
        e.positive("ttl", ttl)
        return e

    def _now(self) -> float:
        return (self.clock or SYSTEM_CLOCK).monotonic()

    def deposit(self) -> None:
        """Record one call (adds `ratio` tokens)."""
        now = self._now()
        second = float(int(now))
        with self._lock:
            deposits = self._deposits
            if deposits and deposits[-1][0] == second:
                deposits[-1][1] += self.ratio
            else:
                deposits.append([second, self.ratio])
                horizon = now - self.ttl
                while deposits and deposits[0][0] + 1.0 <= horizon:
                    deposits.popleft()

    def try_withdraw(self) -> bool:
        """Take the token for one retry; False when the budget is spent."""
        now = self._now()
        with self._lock:
            deposits = self._deposits
            horizon = now - self.ttl
            while deposits and deposits[0][0] + 1.0 <= horizon:
                deposits.popleft()
            need = 1.0
            total = sum(d[1] for d in deposits)
            if total >= need - 1e-9:
                while need > 1e-9 and deposits:
                    take = min(need, deposits[0][1])
                    deposits[0][1] -= take
                    need -= take
                    if deposits[0][1] <= 1e-9:
                        deposits.popleft()
                return True
            # the floor: a bucket of min_per_second tokens refilled at that rate
            if self._floor_at is not None:
                self._floor = min(
                    self.min_per_second,
                    self._floor + (now - self._floor_at) * self.min_per_second,
                )
            self._floor_at = now
            if self._floor >= 1.0:
                self._floor -= 1.0
                return True
            return False

    def available(self) -> float:
        """Retries the budget would allow right now (deposits plus the floor)."""
        with self._lock:
            now = self._now()
            live = sum(d[1] for d in self._deposits if d[0] + 1.0 > now - self.ttl)
            floor = self._floor
            if self._floor_at is not None:
                floor = min(
                    self.min_per_second, floor + (now - self._floor_at) * self.min_per_second
                )
            return live + floor

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
            f"ttl={self.ttl!r})"
        )


# --- retry -----------------------------------------------------------------------------------

_tenacity: Any = None


def _tenacity_module() -> Any:
    global _tenacity
    if _tenacity is None:
        import tenacity

        _tenacity = tenacity
    return _tenacity


class Retry:
    """Retry a call while the classifier calls its failure TRANSIENT or RATE_LIMITED.

    A PERMANENT error is re-raised at once, as is. When attempts, the deadline, the budget or
    patience with a Retry-After run out, the last error is re-raised as is, with a note (see
    `BaseException.add_note`) saying how many attempts were made, so callers' `except`
    clauses keep working. `RetryExhausted` is raised only when the last attempt *returned* a
    result the classifier called retryable.

    Waits: the backoff's delay; for RATE_LIMITED, `max(delay, Retry-After)` (without a
    Retry-After, at least half the un-jittered delay and never 0). A wait that would cross the
    deadline ends the loop at once, as does a Retry-After longer than `max_retry_after`.
    Zero waits never sleep; other waits sleep on `clock`.

    Args:
        max_attempts: total attempts, an integer >= 1 (1 = no retry).
        backoff: a `Backoff` (or its config form, `{"kind": "exponential", "initial": 0.5,
            ...}`); default exponential, 0.1 s doubling up to 10 s, full jitter.
        deadline: seconds for all attempts and waits together, or None.
        classifier: decides what is retried (default `DEFAULT_CLASSIFIER`).
        respect_retry_after: honour the Retry-After of RATE_LIMITED outcomes (and of
            TRANSIENT ones that carry one, such as a 503 with the header).
        budget: a `RetryBudget` shared by all calls, or None for no budget.
        name: the operation's name (in events, notes and errors).
        clock: where time is read and waits happen (default the system clock).
        max_retry_after: the longest Retry-After worth waiting for (seconds); a longer one
            ends the loop at once (as does a forced-open breaker, whose wait is endless).
        engine: what runs attempts 2..n: "tenacity" (tenacity's loop with our strategies) or
            "native" (a plain loop over the same decisions: ~10x cheaper per retry, for hot
            failure paths). The decisions, waits, notes and events are identical.
        on: errors to retry, stamina-style: an exception type, a tuple of them, or a
            `predicate(exc) -> bool`. The errors it names are TRANSIENT (a Retry-After or
            RATE_LIMITED verdict of the classifier is kept); everything else is decided by
            `classifier` as before.

    A PERMANENT error that is not retried carries a note saying why (for an exception type
    the classifier does not know: "unknown exception type: pass on= or a Classifier").

    Raises:
        ConfigError: bad arguments (every one listed).

    Example:
        >>> import resilience as rs
        >>> rt = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(0))
        >>> try:
        ...     rt.call(int, "x")  # ValueError is PERMANENT: one attempt only
        ... except ValueError:
        ...     print("not retried")
        not retried
    """

    __slots__ = (
        "_inspects",
        "_on",
        "_plain",
        "backoff",
        "budget",
        "classifier",
        "clock",
        "deadline",
        "engine",
        "max_attempts",
        "max_retry_after",
        "name",
        "on",
        "respect_retry_after",
    )

    def __init__(
        self,
        max_attempts: int = 3,
        backoff: Backoff | Mapping[str, Any] | None = None,
        deadline: float | None = None,
        classifier: Classifier = DEFAULT_CLASSIFIER,
        respect_retry_after: bool = True,
        budget: RetryBudget | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        *,
        max_retry_after: float = 300.0,
        engine: Literal["tenacity", "native"] = "tenacity",
        on: type[BaseException]
        | tuple[type[BaseException], ...]
        | Callable[[BaseException], bool]
        | None = None,
    ) -> None:
        bare_decorator(Retry, "rs.Retry() or @rs.Retry(max_attempts=3)", max_attempts)
        raise_if(
            Retry.validate(
                max_attempts=max_attempts,
                backoff=backoff,
                deadline=deadline,
                classifier=classifier,
                respect_retry_after=respect_retry_after,
                budget=budget,
                name=name,
                clock=clock,
                max_retry_after=max_retry_after,
                engine=engine,
                on=on,
            ),
            name,
        )
        self.on = on
        self._on = _on_predicate(on)
        self.engine = engine
        self.max_attempts = max_attempts
        if isinstance(backoff, Mapping):
            backoff = Backoff.from_dict(backoff)
        self.backoff: Backoff = backoff if backoff is not None else Backoff.exponential()
        self.deadline = None if deadline is None else float(deadline)
        self.classifier = classifier
        self.respect_retry_after = respect_retry_after
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        if budget is not None and budget.clock is None:
            budget.clock = self.clock
        self.budget = budget
        self.name = name
        self.max_retry_after = float(max_retry_after)
        self._inspects = classifier.inspects_results
        self._plain = budget is None and deadline is None  # nothing to do before attempt 1

    @staticmethod
    def validate(
        *,
        max_attempts: object = 3,
        backoff: object = None,
        deadline: object = None,
        classifier: object = DEFAULT_CLASSIFIER,
        respect_retry_after: object = True,
        budget: object = None,
        name: object = None,
        clock: object = None,
        max_retry_after: object = 300.0,
        engine: object = "tenacity",
        on: object = None,
    ) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message); empty if none."""
        e = Errors()
        e.integer("max_attempts", max_attempts, minimum=1)
        if isinstance(backoff, Mapping):
            e.extend((f"backoff.{loc}", msg) for loc, msg in _backoff_spec_errors(backoff))
        elif backoff is not None and not isinstance(backoff, Backoff):
            e.append(("backoff", f"must be a Backoff, got {type(backoff).__name__}"))
        if deadline is not None:
            e.positive("deadline", deadline)
        if not isinstance(classifier, Classifier):
            e.append(("classifier", f"must be a Classifier, got {type(classifier).__name__}"))
        if not isinstance(respect_retry_after, bool):
            e.append(("respect_retry_after", f"must be True or False, got {respect_retry_after!r}"))
        if budget is not None and not isinstance(budget, RetryBudget):
            e.append(("budget", f"must be a RetryBudget, got {type(budget).__name__}"))
        if name is not None and not isinstance(name, str):
            e.append(("name", f"must be a string, got {type(name).__name__}"))
        if clock is not None and not isinstance(clock, Clock):
            e.append(("clock", "must implement the Clock protocol"))
        e.non_negative("max_retry_after", max_retry_after, finite=False)
        e.one_of("engine", engine, ("tenacity", "native"))
        if (
            on is not None
            and _on_types(on) is None
            and (isinstance(on, tuple | type) or not callable(on))
        ):
            e.append(
                ("on", f"must be an exception type, a tuple of them or a predicate, got {on!r:.80}")
            )
        return e

    # -- use ----------------------------------------------------------------------------

    @property
    def _inline(self) -> bool:
        """Its decorator runs the first attempt in the wrapper itself (see `Pipeline`)."""
        return self._plain

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function (its signature is kept).

        Raises:
            TypeError: `fn` is a generator function (see `resilience.Policy`).
        """
        if not self._plain:
            return decorate(self, fn)
        descriptor = rewrap_descriptor(self, fn)
        if descriptor is not None:
            return descriptor  # type: ignore[no-any-return]
        check_decoratable(fn, self)
        # The common case (no budget, no deadline) gets the first attempt inlined in the
        # wrapper: one frame less than wrapper -> call -> fn, which is most of our overhead.
        inspects = self._inspects
        classify_result = self.classifier.classify_result
        budget = _budget_get

        if is_async(fn):
            retry_async = self._retry_async

            @wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if budget() is not None:
                    check_budget(self.name)
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    error = exc  # retried below, outside this handler: no chaining to it
                else:
                    if inspects and classify_result(result).retryable:
                        return await retry_async(
                            _Run(self, fn, 0.0), fn, args, kwargs, None, result
                        )
                    return result
                return await retry_async(_Run(self, fn, 0.0), fn, args, kwargs, error, None)

            return async_wrapper

        retry_sync = self._retry_sync

        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            if budget() is not None:
                check_budget(self.name)
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                error = exc  # retried below, outside this handler: no chaining to it
            else:
                if type(result) is COROUTINE:
                    refuse_awaitable(result, fn, "Retry's sync path")
                if inspects and classify_result(result).retryable:
                    return retry_sync(_Run(self, fn, 0.0), fn, args, kwargs, None, result)
                return result
            return retry_sync(_Run(self, fn, 0.0), fn, args, kwargs, error, None)

        return wrapper

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run `fn(*args, **kwargs)` under this policy."""
        if self._plain:
            start = 0.0
        else:
            if self.budget is not None:
                self.budget.deposit()
            start = self.clock.monotonic() if self.deadline is not None else 0.0
        if _budget_get() is not None:
            check_budget(self.name)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            error = exc  # retried below, outside this handler: no chaining to it
        else:
            if type(result) is COROUTINE:
                refuse_awaitable(result, fn, "Retry.call()")
            if self._inspects and self.classifier.classify_result(result).retryable:
                return self._retry_sync(_Run(self, fn, start), fn, args, kwargs, None, result)
            return result
        return self._retry_sync(_Run(self, fn, start), fn, args, kwargs, error, None)

    async def acall(self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Await `fn(*args, **kwargs)` under this policy."""
        if self._plain:
            start = 0.0
        else:
            if self.budget is not None:
                self.budget.deposit()
            start = self.clock.monotonic() if self.deadline is not None else 0.0
        if _budget_get() is not None:
            check_budget(self.name)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            error = exc  # retried below, outside this handler: no chaining to it
        else:
            if self._inspects and self.classifier.classify_result(result).retryable:
                return await self._retry_async(
                    _Run(self, fn, start), fn, args, kwargs, None, result
                )
            return result
        return await self._retry_async(_Run(self, fn, start), fn, args, kwargs, error, None)

    # -- the loop, after a first failed attempt --------------------------------------------

    def _retry_sync(
        self,
        run: _Run,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: Any,
    ) -> R:
        wait = run.first(exc, result)  # raises when there is nothing more to do
        if wait > 0:
            run.sleep(wait)
        if self.engine == "native":
            return self._native_sync(run, fn, args, kwargs)
        retrying = _tenacity_module().Retrying(**run.kwargs(asynchronous=False))
        out: R = retrying(fn, *args, **kwargs)
        return out

    async def _retry_async(
        self,
        run: _Run,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: Any,
    ) -> R:
        wait = run.first(exc, result)
        if wait > 0:
            await run.asleep(wait)
        if self.engine == "native":
            return await self._native_async(run, fn, args, kwargs)

        async def attempt() -> R:
            return await fn(*args, **kwargs)

        retrying = _tenacity_module().AsyncRetrying(**run.kwargs(asynchronous=True))
        out: R = await retrying(attempt)
        return out

    def _native_sync(
        self, run: _Run, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        attempt = 1
        while True:
            attempt += 1
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                run.after(attempt, exc, None)  # raises when the loop ends
            else:
                if not self._inspects or not run.after(attempt, None, result):
                    return result
            if run.wait > 0:
                run.sleep(run.wait)

    async def _native_async(
        self,
        run: _Run,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        attempt = 1
        while True:
            attempt += 1
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                run.after(attempt, exc, None)
            else:
                if not self._inspects or not run.after(attempt, None, result):
                    return result
            if run.wait > 0:
                await run.asleep(run.wait)

    def tenacity_kwargs(self, *, asynchronous: bool = False) -> dict[str, Any]:
        """This same policy as keyword arguments for `tenacity.Retrying` (or, with
        `asynchronous=True`, `tenacity.AsyncRetrying`), for code that drives tenacity itself.

        Example:
            >>> import tenacity, resilience as rs
            >>> rt = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(0))
            >>> sorted(rt.tenacity_kwargs())
            ['reraise', 'retry', 'retry_error_callback', 'sleep', 'stop', 'wait']
        """
        return _Run(self, None, None).kwargs(asynchronous=asynchronous)

    def __repr__(self) -> str:
        return (
            f"Retry(max_attempts={self.max_attempts!r}, backoff={self.backoff!r}, "
            f"deadline={self.deadline!r}, budget={self.budget!r}, name={self.name!r}, "
            f"engine={self.engine!r})"
        )


class _Run:
    """The decisions of one retried call: the sans-I/O core tenacity's strategies call.

    `decide` looks at one failed attempt and says either "wait this long" or "give up, for
    this reason"; nothing here sleeps or runs the user's function.
    """

    __slots__ = (
        "attempts",
        "fn",
        "last_error",
        "last_result",
        "offset",
        "previous",
        "reason",
        "rt",
        "start",
        "verdict",
        "wait",
    )

    def __init__(self, rt: Retry, fn: Any, start: float | None) -> None:
        self.rt = rt
        self.fn = fn
        # None: not known yet (tenacity_kwargs users); set at the first decision
        self.start = start
        self.offset = 0  # attempts made before tenacity took over
        self.previous: float | None = None
        self.wait = 0.0
        self.reason: str | None = None
        self.attempts = 0
        self.verdict: Classification | None = None
        self.last_error: BaseException | None = None  # the last attempt's outcome
        self.last_result: Any = None

    def operation(self) -> str:
        if self.rt.name:
            return self.rt.name
        # in a Pipeline, fn is the next stage's bound `call` (or, under `@pipeline`, the
        # next stage's wrapper, marked with its policy): use that policy's name
        owner = getattr(self.fn, "__self__", None) or getattr(self.fn, "__resilience_stage__", None)
        owner_name = getattr(owner, "name", None)
        if isinstance(owner_name, str) and owner_name:
            return owner_name
        return str(getattr(self.fn, "__qualname__", None) or "call")

    # -- the core --------------------------------------------------------------------------

    def decide(self, attempt: int, verdict: Classification, error: BaseException | None) -> None:
        """After the attempt-th attempt failed retryably: set `wait`, or `reason` to give up."""
        rt = self.rt
        self.attempts = attempt
        self.verdict = verdict
        self.reason = None
        if attempt >= rt.max_attempts:
            self.reason = "attempts"
            return
        budget = _budget_now.get()
        left = budget.left() if budget is not None else _INF
        backoff = rt.backoff
        if isinstance(error, CircuitOpenError):
            if error.remaining == _INF:
                self.reason = "forced_open"  # an operator's decision: no wait will end it
                return
            # Wait for the half-open trial only when that is no longer than the backoff would
            # wait anyway and the time budget holds it; otherwise fail fast, as Polly does.
            if error.remaining > backoff.maximum or error.remaining >= left:
                self.reason = "circuit_open"
                return
        delay = backoff.delay(attempt, self.previous)
        self.previous = delay
        if verdict.verdict is Verdict.RATE_LIMITED:
            retry_after = verdict.retry_after if rt.respect_retry_after else None
            if retry_after is None:
                delay = max(delay, backoff.base(attempt) / 2.0) or _MIN_RATE_LIMITED_WAIT
            elif retry_after > rt.max_retry_after:
                self.reason = "retry_after"
                return
            elif retry_after > delay:
                delay = retry_after
        elif verdict.retry_after is not None and rt.respect_retry_after:
            # A TRANSIENT failure that says when to come back (a 503 with Retry-After): honour
            # it like a 429's, never shortening the backoff.
            if verdict.retry_after > rt.max_retry_after:
                self.reason = "retry_after"
                return
            if verdict.retry_after > delay:
                delay = verdict.retry_after
        if rt.deadline is not None:
            now = rt.clock.monotonic()
            if self.start is None:
                self.start = now
            if now + delay >= self.start + rt.deadline:
                self.reason = "deadline"
                return
        if delay >= left:  # the wait (or the attempt after it) would not fit the time budget
            self.reason = "time_budget"
            return
        if rt.budget is not None and not rt.budget.try_withdraw():
            self.reason = "budget"
            if events.enabled:
                events.emit(events.CallRejected(self.operation(), "retry_budget", None))
            return
        self.wait = delay
        if events.enabled:
            events.emit(
                events.RetryAttempted(
                    self.operation(),
                    attempt,
                    delay,
                    verdict.verdict.value,
                    type(error).__name__ if error is not None else "result",
                )
            )

    def classify(
        self, error: BaseException | None, result: Any, attempt: int
    ) -> Classification | None:
        """The verdict of an attempt if it is worth retrying, else None."""
        self.last_error = error
        self.last_result = result
        clf = self.rt.classifier
        if error is not None:
            if not isinstance(error, Exception):  # cancellation, KeyboardInterrupt: never
                return None
            # an HTTP-date Retry-After is measured on this policy's clock
            if _takes_now(clf):
                c = clf.classify(error, now=self.rt.clock.time())
            else:  # a subclass that overrides classify(outcome) the old way
                c = clf.classify(error)
            if c.retryable:
                return c
            on = self.rt._on
            if on is not None and on(error):
                return Classification(Verdict.TRANSIENT, c.retry_after, "on=")
            _note_permanent(error, c, self)
            if events.enabled:
                events.emit(
                    events.RetryGaveUp(self.operation(), attempt, "permanent", type(error).__name__)
                )
            return None
        if not self.rt._inspects:
            return None
        c = clf.classify_result(result, now=self.rt.clock.time())
        return c if c.retryable else None

    def first(self, error: BaseException | None, result: Any) -> float:
        """Decide after the first attempt (run outside tenacity). Returns the wait; raises
        (the error, or RetryExhausted) when the loop ends here."""
        verdict = self.classify(error, result, 1)
        if verdict is None:
            assert error is not None  # a non-retryable result never comes here
            raise error
        self.decide(1, verdict, error)
        if self.reason is not None:
            self.give_up(error, result)
        self.offset = 1
        return self.wait

    def after(self, attempt: int, error: BaseException | None, result: Any) -> bool:
        """Decide after attempt `attempt` (2..n) of the native loop: False = the result
        stands; True = wait `self.wait` and go again; raises when the loop ends."""
        verdict = self.classify(error, result, attempt)
        if verdict is None:
            if error is not None:
                raise error
            return False
        self.decide(attempt, verdict, error)
        if self.reason is not None:
            self.give_up(error, result)
        return True

    def give_up(self, error: BaseException | None, result: Any) -> Any:
        """End the loop: re-raise the last error with a note, or raise RetryExhausted."""
        reason = self.reason or "attempts"
        attempts = self.attempts
        op = self.operation()
        if events.enabled:
            what = type(error).__name__ if error is not None else "result"
            events.emit(events.RetryGaveUp(op, attempts, reason, what))
        if reason == "time_budget":
            # The caller's time is up (rs.deadline, a Timeout): say so, with the last error
            # as the cause. (Retry's own `deadline=` re-raises the last error as is.)
            budget = _budget_now.get()
            timeout = TimeoutExceeded(budget.seconds if budget else 0.0, operation=op)
            _note(timeout, attempts, reason, self)
            raise timeout from error
        if error is None:
            raise RetryExhausted(attempts, result, operation=self.rt.name or op)
        _note(error, attempts, reason, self)
        raise error

    # -- tenacity strategies (called once per failed attempt, in this order) ----------------

    def _run_of(self, state: tenacity.RetryCallState) -> _Run:
        if self.fn is not None or self.start is not None:
            return self  # our own engine: one _Run per call already
        run: _Run | None = state.__dict__.get("_resilience_run")
        if run is None:
            run = _Run(self.rt, state.fn, None)
            run.start = self.rt.clock.monotonic() - (state.seconds_since_start or 0.0)
            state.__dict__["_resilience_run"] = run
        return run

    def t_retry(self, state: tenacity.RetryCallState) -> bool:
        run = self._run_of(state)
        outcome = state.outcome
        assert outcome is not None
        if outcome.failed:
            error, result = outcome.exception(), None
        else:
            error, result = None, outcome.result()
        attempt = state.attempt_number + run.offset
        verdict = run.classify(error, result, attempt)
        if verdict is None:
            return False
        run.decide(attempt, verdict, error)
        return True

    def t_wait(self, state: tenacity.RetryCallState) -> float:
        run = self._run_of(state)
        return 0.0 if run.reason is not None else run.wait

    def t_stop(self, state: tenacity.RetryCallState) -> bool:
        return self._run_of(state).reason is not None

    def t_error(self, state: tenacity.RetryCallState) -> Any:
        run = self._run_of(state)
        outcome = state.outcome
        assert outcome is not None
        if outcome.failed:
            return run.give_up(outcome.exception(), None)
        return run.give_up(None, outcome.result())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.rt.clock.sleep(seconds)
            self._woke()

    async def asleep(self, seconds: float) -> None:
        if seconds > 0:
            await self.rt.clock.asleep(seconds)
            self._woke()

    def _woke(self) -> None:
        """After a wait: start no attempt the time budget cannot hold (it may have been used
        up meanwhile: stopped by a thread-mode Timeout whose caller gave up)."""
        budget = _budget_now.get()
        if budget is not None and budget.left() <= 0.0:
            self.reason = "time_budget"
            self.give_up(self.last_error, self.last_result)

    def kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        return {
            "retry": self.t_retry,
            "wait": self.t_wait,
            "stop": self.t_stop,
            "sleep": self.asleep if asynchronous else self.sleep,
            "retry_error_callback": self.t_error,
            "reraise": True,
        }


def _on_types(on: object) -> tuple[type[BaseException], ...] | None:
    """`on=` as a tuple of exception types, or None when it is not one."""
    types = on if isinstance(on, tuple) else (on,)
    if types and all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        return types
    return None


def _on_predicate(on: object) -> Callable[[BaseException], bool] | None:
    if on is None:
        return None
    types = _on_types(on)
    if types is not None:
        return lambda exc: isinstance(exc, types)
    return on  # type: ignore[return-value]  # validated: a predicate


_UNKNOWN = "unknown exception type: pass on= or a Classifier"


def _note_permanent(error: Exception, verdict: Classification, run: _Run) -> None:
    """Say on the error why it was not retried (once, however many retries it crosses)."""
    if isinstance(error, Misuse):
        return
    why = _UNKNOWN if verdict.reason == "unknown error" else verdict.reason or "classifier"
    notes = getattr(error, "__notes__", None)
    if notes and any(isinstance(n, str) and n.startswith(_NOTE_PREFIX) for n in notes):
        return
    text = (
        f"{_NOTE_PREFIX} did not retry {run.operation()!r}: "
        f"{type(error).__name__} is PERMANENT ({why})"
    )
    error.add_note(text)


_TAKES_NOW: dict[type, bool] = {}


def _takes_now(classifier: Classifier) -> bool:
    """Does this classifier's `classify` take `now=` (Classifier's own does)?"""
    kind = type(classifier)
    ok = _TAKES_NOW.get(kind)
    if ok is None:
        try:
            ok = "now" in inspect.signature(kind.classify).parameters
        except (TypeError, ValueError):
            ok = False
        _TAKES_NOW[kind] = ok
    return ok


def _note(error: BaseException, attempts: int, reason: str, run: _Run) -> None:
    why = {
        "attempts": "no attempts left",
        "deadline": f"the next attempt would cross the deadline of {run.rt.deadline:g} s"
        if run.rt.deadline
        else "deadline",
        "budget": "the retry budget is spent",
        "time_budget": "the time budget (rs.deadline or a Timeout) cannot hold another attempt",
        "circuit_open": "the circuit is open for longer than the backoff's maximum wait "
        f"({run.rt.backoff.maximum:g} s) or the time budget",
        "forced_open": "the circuit is forced open",
        "retry_after": "the server asked to wait longer than max_retry_after "
        f"({run.rt.max_retry_after:g} s)",
    }.get(reason, reason)
    text = (
        f"{_NOTE_PREFIX} gave up on {run.operation()!r} after {attempts} "
        f"attempt{'s' if attempts != 1 else ''}: {why}"
    )
    notes = getattr(error, "__notes__", None)
    if notes is not None:  # the same exception object raised again: keep one note, not many
        notes[:] = [n for n in notes if not (isinstance(n, str) and n.startswith(_NOTE_PREFIX))]
    error.add_note(text)
