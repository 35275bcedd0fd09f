"""Circuit breaker: stop calling what is failing, probe it now and then, recover when it is back.

States: CLOSED (calls flow; outcomes are recorded in a sliding window), OPEN (calls are
rejected with `CircuitOpenError` for `open_duration` seconds), HALF_OPEN (`half_open_calls`
trial calls run; all succeed -> CLOSED, one fails -> OPEN again), plus the manual states
FORCED_OPEN (rejects until `reset()`) and DISABLED (lets everything through, records nothing).

How it is built: one sans-I/O core (the `_admit`/`_record` family: a state machine fed with
(outcome, duration) and readings of the injected clock) and two thin shells over it, `call`
and `acall`. A `threading.Lock` guards the bookkeeping only; it is never held while the
user's function runs, while events are delivered, or while the store is written. In CLOSED
state the admission check reads one attribute without the lock, so a healthy call costs a
clock reading before and after, and one short critical section to record the outcome.

Example:
    >>> import resilience as rs
    >>> from resilience.testing import VirtualClock
    >>> clock = VirtualClock()
    >>> br = rs.CircuitBreaker("payments", minimum_calls=2, open_duration=10, clock=clock)
    >>> def down():
    ...     raise ConnectionError("refused")
    >>> for _ in range(2):
    ...     try:
    ...         br.call(down)
    ...     except ConnectionError:
    ...         pass
    >>> br.state
    <CircuitState.OPEN: 'open'>
    >>> try:
    ...     br.call(down)
    ... except rs.CircuitOpenError as e:
    ...     print(e)
    circuit 'payments' is open after 2 of 2 calls failed; next trial in 10.0 s
    >>> clock.advance(10); br.state
    <CircuitState.HALF_OPEN: 'half_open'>
"""

from __future__ import annotations

import enum
import itertools
import math
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from . import _deadline, _registry
from . import events as _events
from ._clock import SYSTEM_CLOCK, Clock
from ._deadline import overran
from ._errors import CircuitOpenError, LocalRejection
from ._policy import (
    COROUTINE,
    Decorator,
    bare_decorator,
    check_decoratable,
    is_async,
    refuse_awaitable,
    rewrap_descriptor,
    wraps,
)
from ._validate import Errors, raise_if
from ._window import FAILURE, SLOW, CountRing, TimeRing
from .classify import DEFAULT_CLASSIFIER, Classifier, Verdict
from .events import CallCompleted, CallRejected, StateTransition
from .stores import (
    CorruptRecord,
    MemoryStore,
    Record,
    Store,
    _defer,
    _in_process,
    _native_async,
    _on_event_loop,
    _report_recovered,
    _report_unavailable,
)

__all__ = ["CircuitBreaker", "CircuitState", "CountWindow", "TimeWindow"]

P = ParamSpec("P")
R = TypeVar("R")
_T = TypeVar("_T")

_Steps = Generator[tuple[str, tuple[Any, ...]], Any, _T]
"""Breaker logic that talks to the store: it yields (operation, args) and is sent each
result (or thrown its error), so one body serves blocking callers (`_drive`) and event
loops (`_adrive`)."""

SCHEMA = 1
"""Version of the JSON record a breaker writes to its store."""

_SYNC_INTERVAL = 1.0  # seconds between re-reads of a shared store's record


class CircuitState(enum.StrEnum):
    """A breaker's state. Members equal their lower-case names ("open"), so they are JSON-safe.

    Example:
        >>> CircuitState.OPEN == "open", CircuitState.HALF_OPEN.name
        (True, 'HALF_OPEN')
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_FORCED_OPEN = CircuitState.FORCED_OPEN
_DISABLED = CircuitState.DISABLED
_SUCCESS = Verdict.SUCCESS
_COUNTED = frozenset({Verdict.TRANSIENT, Verdict.RATE_LIMITED})
_NOTHING = -1  # the "epoch" of a call admitted by a DISABLED breaker: record nothing


@dataclass(frozen=True, slots=True)
class CountWindow:
    """Decide on the last `size` calls (a ring of outcomes).

    Example:
        >>> CountWindow(50).size
        50
    """

    size: int = 100

    def __post_init__(self) -> None:
        raise_if(self.validate(size=self.size), "CountWindow")

    @staticmethod
    def validate(size: object = 100) -> list[tuple[str, str]]:
        """The (argument, message) pairs wrong with these arguments; empty when all are fine."""
        errors = Errors()
        errors.integer("size", size, minimum=1)
        return errors

    def _ring(self, minimum_calls: int) -> CountRing:
        return CountRing(self.size, min(minimum_calls, self.size))


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Decide on the calls that ended in the last `seconds` (measured on the breaker's clock).

    The window is kept in `buckets` buckets (default: one per second, at most 600); a bucket's
    calls leave the window together when time moves past it, as in resilience4j.

    Example:
        >>> TimeWindow(seconds=60).seconds
        60
    """

    seconds: float = 60.0
    buckets: int | None = None

    def __post_init__(self) -> None:
        raise_if(self.validate(seconds=self.seconds, buckets=self.buckets), "TimeWindow")

    @staticmethod
    def validate(seconds: object = 60.0, buckets: object = None) -> list[tuple[str, str]]:
        """The (argument, message) pairs wrong with these arguments; empty when all are fine."""
        errors = Errors()
        errors.positive("seconds", seconds)
        if buckets is not None:
            errors.integer("buckets", buckets, minimum=1)
        return errors

    def _ring(self, minimum_calls: int) -> TimeRing:
        n = self.buckets or min(max(math.ceil(self.seconds), 1), 600)
        return TimeRing(float(self.seconds), n)


Window = CountWindow | TimeWindow


def _window_from(value: object) -> Window:
    """A window object from a window or its config mapping ({"kind": "count", "size": 100})."""
    if isinstance(value, CountWindow | TimeWindow):
        return value
    if isinstance(value, Mapping):
        spec = dict(value)
        kind = spec.pop("kind", "count")
        if kind == "count":
            return CountWindow(**spec)
        if kind == "time":
            return TimeWindow(**spec)
    raise TypeError(value)


class CircuitBreaker(Decorator):
    """Rejects calls to something that keeps failing, then lets a few trial calls probe it.

    Args:
        name: the operation this breaker protects (used in errors, events, metrics, health).
        failure_rate_threshold: open when failures / calls >= this, in (0, 1].
        slow_call_threshold: seconds; a call lasting at least this long counts as slow
            (None: no call is slow).
        slow_call_rate_threshold: open when slow calls / calls >= this, in (0, 1].
        minimum_calls: no decision until the window holds this many calls (a `CountWindow`
            smaller than this decides once it is full).
        window: `CountWindow(100)` (default), `TimeWindow(seconds=60)`, or the config form
            `{"kind": "count", "size": 100}` / `{"kind": "time", "seconds": 60}`.
        open_duration: seconds in OPEN before trial calls are let through.
        open_duration_max: if set, open_duration doubles on each re-open from HALF_OPEN, up
            to this; it returns to `open_duration` once the breaker closes.
        half_open_calls: trial calls let through at once in HALF_OPEN; all must succeed to
            close, any counted failure re-opens.
        classifier: decides what counts: TRANSIENT and RATE_LIMITED errors are failures,
            PERMANENT ones (a 404, a ValueError) are re-raised but not counted. Returned
            results are classified only if `classifier.inspects_results`.
        store: where the state record lives (`MemoryStore()` by default). Every transition
            writes `breaker:<name>`; a new breaker reads it back, so an open breaker stays
            open across a restart with a persistent store. With a shared store
            (`store.shared`), the record is re-read at most once a second and before
            OPEN -> HALF_OPEN, and writes use compare-and-set (a lost race adopts the winner).
            A breaker on a shared store built on an event loop's thread reads the record at
            its first call, not here (no blocking read on the loop).
        clock: time source (`resilience.testing.VirtualClock` in tests).

    Raises:
        ConfigError: listing every bad argument with its value.

    Example:
        >>> import resilience as rs
        >>> br = rs.CircuitBreaker("search", failure_rate_threshold=0.5, minimum_calls=20)
        >>> @br
        ... def search(q: str) -> list[str]:
        ...     return [q]
        >>> search("x"), br.snapshot()["calls"]
        (['x'], 1)
    """

    __slots__ = (
        "__weakref__",
        "_base_duration",
        "_classify",
        "_classify_result",
        "_clock",
        "_closed_epoch",
        "_decide_at",
        "_duration",
        "_epoch",
        "_fast_s",
        "_flush_lock",
        "_fthr",
        "_half_n",
        "_half_ok",
        "_half_slow",
        "_half_used",
        "_inspects",
        "_key",
        "_lock",
        "_max_duration",
        "_min_calls",
        "_mono",
        "_next_seq",
        "_next_sync",
        "_offload",
        "_open_until",
        "_opened_at",
        "_opened_wall",
        "_pending",
        "_reason",
        "_reopens",
        "_ring",
        "_round_seen",
        "_round_since",
        "_seen",
        "_shared",
        "_slow_s",
        "_state",
        "_sthr",
        "_store",
        "_store_down",
        "_version",
        "_wall",
        "_written",
        "classifier",
        "name",
        "window",
    )

    def __init__(
        self,
        name: str,
        *,
        failure_rate_threshold: float = 0.5,
        slow_call_threshold: float | None = None,
        slow_call_rate_threshold: float = 1.0,
        minimum_calls: int = 10,
        window: Window | Mapping[str, Any] | None = None,
        open_duration: float = 30.0,
        open_duration_max: float | None = None,
        half_open_calls: int = 3,
        classifier: Classifier | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
    ) -> None:
        bare_decorator(CircuitBreaker, 'rs.CircuitBreaker("name", ...)', name)
        raise_if(
            self.validate(
                name=name,
                failure_rate_threshold=failure_rate_threshold,
                slow_call_threshold=slow_call_threshold,
                slow_call_rate_threshold=slow_call_rate_threshold,
                minimum_calls=minimum_calls,
                window=window,
                open_duration=open_duration,
                open_duration_max=open_duration_max,
                half_open_calls=half_open_calls,
                classifier=classifier,
                store=store,
                clock=clock,
            ),
            name if isinstance(name, str) else None,
        )
        self.name = name
        self.window = _window_from(window) if window is not None else CountWindow(100)
        self.classifier = classifier if classifier is not None else DEFAULT_CLASSIFIER
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        # Everything the hot path needs is resolved once, here.
        self._mono = self._clock.monotonic
        self._wall = self._clock.time
        self._classify = self.classifier.classify
        self._classify_result = self.classifier.classify_result
        self._inspects = bool(self.classifier.inspects_results)
        self._fthr = float(failure_rate_threshold)
        self._sthr = float(slow_call_rate_threshold)
        self._slow_s = math.inf if slow_call_threshold is None else float(slow_call_threshold)
        ring: CountRing | TimeRing = self.window._ring(minimum_calls)
        self._ring = ring
        self._min_calls = minimum_calls
        # The lock-free success path (see `call`): a count window, results not inspected, and
        # a call faster than the slow-call threshold. `_fast_s` folds those into one compare.
        if isinstance(ring, CountRing) and not self._inspects:
            self._min_calls = min(minimum_calls, self.window.size)  # type: ignore[union-attr]
            self._fast_s = self._slow_s
            self._next_seq = ring.next
            self._decide_at = ring.decide_at
        else:
            self._fast_s = -math.inf
            self._next_seq = itertools.count().__next__  # never used
            self._decide_at = -1
        self._base_duration = float(open_duration)
        self._duration = self._base_duration
        self._max_duration = None if open_duration_max is None else float(open_duration_max)
        self._reopens = 0
        self._half_n = half_open_calls
        self._half_used = self._half_ok = self._half_slow = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.RLock()
        self._state = _CLOSED
        self._epoch = 0
        self._opened_at = 0.0
        self._open_until = 0.0
        self._opened_wall: float | None = None
        self._reason = ""
        self._pending: list[tuple[CircuitState, CircuitState, str, Record]] = []
        self._store: Store = store if store is not None else MemoryStore()
        self._shared = bool(getattr(self._store, "shared", False))
        # Store I/O never runs on an event loop thread (see `_aadmit`, `_write`, `_trial_done`)
        self._offload = self._shared and not _in_process(self._store)
        self._key = f"breaker:{name}"
        self._version = 0
        self._written = 0
        self._seen: Record | None = None
        self._store_down: float | None = None  # monotonic time the store stopped answering
        self._round_seen: tuple[int, int, int] | None = None  # a HALF_OPEN round's progress
        self._round_since = 0.0  # ...and when (our monotonic clock) we first saw it
        self._next_sync = -math.inf if self._shared else math.inf
        self._closed_epoch: int | None = None if self._shared else 0
        if not (self._offload and _on_event_loop()):
            self._load()
        # else: built on an event loop (a config built lazily inside a handler): no blocking
        # read here; the first admission reads the record (`_next_sync` is due already).
        _registry.register("breaker", name, self)

    @staticmethod
    def validate(
        name: object = None,
        failure_rate_threshold: object = 0.5,
        slow_call_threshold: object = None,
        slow_call_rate_threshold: object = 1.0,
        minimum_calls: object = 10,
        window: object = None,
        open_duration: object = 30.0,
        open_duration_max: object = None,
        half_open_calls: object = 3,
        classifier: object = None,
        store: object = None,
        clock: object = None,
    ) -> list[tuple[str, str]]:
        """Every (argument, message) wrong with these constructor arguments; [] when valid.

        Example:
            >>> CircuitBreaker.validate(name="x", minimum_calls=0)
            [('minimum_calls', 'must be >= 1, got 0')]
        """
        errors = Errors()
        if not isinstance(name, str) or not name.strip():
            errors.append(("name", f"must be a non-empty string, got {name!r}"))
        errors.fraction("failure_rate_threshold", failure_rate_threshold)
        if slow_call_threshold is not None:
            errors.positive("slow_call_threshold", slow_call_threshold)
        errors.fraction("slow_call_rate_threshold", slow_call_rate_threshold)
        errors.integer("minimum_calls", minimum_calls, minimum=1)
        if window is not None and not isinstance(window, CountWindow | TimeWindow):
            if isinstance(window, Mapping):
                spec = dict(window)
                kind = spec.pop("kind", "count")
                if kind == "count" and set(spec) <= {"size"}:
                    errors += [(f"window.{k}", m) for k, m in CountWindow.validate(**spec)]
                elif kind == "time" and set(spec) <= {"seconds", "buckets"}:
                    errors += [(f"window.{k}", m) for k, m in TimeWindow.validate(**spec)]
                else:
                    errors.append(
                        ("window", f"must be {{'kind': 'count', 'size': N}} or "
                         f"{{'kind': 'time', 'seconds': S}}, got {window!r}")
                    )  # fmt: skip
            else:
                errors.append(("window", f"must be a CountWindow or a TimeWindow, got {window!r}"))
        errors.positive("open_duration", open_duration)
        if open_duration_max is not None:
            errors.positive("open_duration_max", open_duration_max)
            errors.at_least("open_duration_max", open_duration_max, "open_duration", open_duration)
        errors.integer("half_open_calls", half_open_calls, minimum=1)
        if classifier is not None and not callable(getattr(classifier, "classify", None)):
            errors.append(("classifier", f"must be a Classifier, got {classifier!r}"))
        if store is not None and not all(
            callable(getattr(store, m, None)) for m in ("get", "set", "compare_and_set")
        ):
            errors.append(("store", f"must implement resilience.stores.Store, got {store!r}"))
        if clock is not None and not callable(getattr(clock, "monotonic", None)):
            errors.append(("clock", f"must be a Clock, got {clock!r}"))
        return errors

    # --- the shells ---------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn(*args, **kwargs)` through the breaker.

        Raises:
            CircuitOpenError: the breaker is open (the function did not run).
            TypeError: `fn` returned a coroutine (an async function: use `acall`); nothing
                is recorded.
            Whatever `fn` raises, unchanged.
        """
        epoch = self._closed_epoch
        if epoch is None:
            epoch = self._admit()
        marks = _deadline.late_marks
        t0 = self._mono()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._failed(epoch, t0, exc)
            raise
        except BaseException:
            self._release(epoch)
            raise
        if type(result) is COROUTINE:
            self._refuse(epoch, result, fn)
        now = self._mono()
        if (
            now - t0 < self._fast_s
            and epoch == self._closed_epoch
            and marks == _deadline.late_marks
        ):
            # A plain success while CLOSED: take a sequence number, lock-free.
            if self._next_seq() == self._decide_at:
                self._decide(epoch, now)
            if _events.per_call:  # what _record would emit for it
                _events.emit(CallCompleted(self.name, "success", now - t0, False))
        else:
            self._succeeded(epoch, t0, now, result)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await `fn(*args, **kwargs)` through the breaker (asyncio or trio).

        Cancellation passes through: it is not counted and frees a half-open trial slot.

        Raises:
            CircuitOpenError: the breaker is open (the function did not run).
            Whatever `fn` raises, unchanged.
        """
        epoch = self._closed_epoch
        if epoch is None:
            epoch = await self._aadmit() if self._offload else self._admit()
        t0 = self._mono()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._failed(epoch, t0, exc)
            raise
        except BaseException:
            self._release(epoch)
            raise
        now = self._mono()
        if now - t0 < self._fast_s and epoch == self._closed_epoch:
            # A plain success while CLOSED: take a sequence number, lock-free.
            if self._next_seq() == self._decide_at:
                self._decide(epoch, now)
            if _events.per_call:  # what _record would emit for it
                _events.emit(CallCompleted(self.name, "success", now - t0, False))
        else:
            self._succeeded(epoch, t0, now, result)
        return result

    _inline = True  # its decorator is the shell itself, with no frame of ours (see Pipeline)

    def _refuse(self, epoch: int, result: object, fn: object) -> None:
        self._release(epoch)
        refuse_awaitable(result, fn, f"CircuitBreaker({self.name!r}).call()")

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (def or async def, or an object with an async `__call__`).

        The wrapper *is* the shell (`call`'s or `acall`'s body with `fn` bound): no frame of
        ours between the caller and `fn`. Keep the two bodies below in step with the shells.

        Raises:
            TypeError: `fn` is a generator function (protecting its creation protects
                nothing). Over `@classmethod` / `@staticmethod`, the function inside is
                decorated.
        """
        descriptor = rewrap_descriptor(self, fn)
        if descriptor is not None:
            return descriptor  # type: ignore[no-any-return]
        check_decoratable(fn, self)
        if is_async(fn):

            @wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                epoch = self._closed_epoch
                if epoch is None:
                    epoch = await self._aadmit() if self._offload else self._admit()
                t0 = self._mono()
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    self._failed(epoch, t0, exc)
                    raise
                except BaseException:
                    self._release(epoch)
                    raise
                now = self._mono()
                if now - t0 < self._fast_s and epoch == self._closed_epoch and not _events.enabled:
                    if self._next_seq() == self._decide_at:
                        self._decide(epoch, now)
                else:
                    self._succeeded(epoch, t0, now, result)
                return result

            return async_wrapper

        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            epoch = self._closed_epoch
            if epoch is None:
                epoch = self._admit()
            marks = _deadline.late_marks
            t0 = self._mono()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self._failed(epoch, t0, exc)
                raise
            except BaseException:
                self._release(epoch)
                raise
            if type(result) is COROUTINE:
                self._refuse(epoch, result, fn)
            now = self._mono()
            if (
                now - t0 < self._fast_s
                and epoch == self._closed_epoch
                and marks == _deadline.late_marks
                and not _events.enabled
            ):
                if self._next_seq() == self._decide_at:
                    self._decide(epoch, now)
            else:
                self._succeeded(epoch, t0, now, result)
            return result

        return wrapper

    # --- the core: admission --------------------------------------------------------------

    def _admit(self) -> int:
        """Admit one call when not plainly CLOSED: returns its epoch, or raises the rejection."""
        now = self._mono()
        # While OPEN, the verdict needs no lock: the state only leaves OPEN under the lock,
        # and a reader that sees OPEN with time left is right to reject. (`_next_sync` is
        # inf unless the store is shared: then the record is re-read once a second first.)
        if self._state is _OPEN and now < self._open_until and now < self._next_sync:
            remaining = self._open_until - now
            if _events.enabled:
                _events.emit(CallRejected(self.name, "circuit_open", remaining))
            raise CircuitOpenError(self.name, remaining, "open", self._reason)
        if self._shared and self._store_due(now):
            # the record decides OPEN -> HALF_OPEN and hands out trial permits
            shared = self._drive(self._admit_shared(now))
            if shared is not None:
                return shared
        return self._admit_local(now)

    def _admit_local(self, now: float) -> int:
        """Admission by the local state alone (under the lock)."""
        moved = False
        rejected: str | None = None
        remaining = 0.0
        epoch = _NOTHING  # DISABLED: let it through, record nothing
        with self._lock:
            state = self._state
            if state is _OPEN:
                if now < self._open_until:
                    remaining = self._open_until - now
                    rejected = "circuit_open"
                else:
                    moved = self._to(_HALF_OPEN, "open_duration elapsed", now)
                    state = _HALF_OPEN
            if state is _HALF_OPEN:
                if self._half_used < self._half_n:
                    self._half_used += 1
                    epoch = self._epoch
                else:
                    rejected = "half_open_full"
            elif state is _CLOSED:
                epoch = self._epoch
            elif state is _FORCED_OPEN:
                remaining = math.inf
                rejected = "forced_open"
            reason = self._reason
        if moved:
            self._flush()
        if rejected is None:
            return epoch
        if _events.enabled:
            _events.emit(CallRejected(self.name, rejected, remaining))
        raise CircuitOpenError(self.name, remaining, state.value, reason)

    # --- the core: recording outcomes -----------------------------------------------------

    def _succeeded(self, epoch: int, t0: float, now: float, result: object) -> None:
        if self._inspects:
            try:
                verdict = self._classify_result(result).verdict
            except BaseException:  # the user's result= callable failed: free the slot
                self._release(epoch)
                raise
            if verdict is not _SUCCESS:
                if verdict in _COUNTED:
                    self._record(
                        epoch, FAILURE | (SLOW if now - t0 >= self._slow_s else 0), now, t0
                    )
                else:
                    self._ignored(epoch, now - t0)
                return
        self._record(epoch, SLOW if now - t0 >= self._slow_s else 0, now, t0)

    def _failed(self, epoch: int, t0: float, exc: Exception) -> None:
        now = self._mono()
        if isinstance(exc, LocalRejection):
            # Shed before it reached the dependency (a bulkhead, a rate limiter, a breaker --
            # this one included, for a recursive call): neither a failure nor a success.
            self._ignored(epoch, now - t0)
        elif self._classify(exc).verdict in _COUNTED:
            self._record(epoch, FAILURE | (SLOW if now - t0 >= self._slow_s else 0), now, t0)
        else:
            self._ignored(epoch, now - t0)

    def _record(self, epoch: int, code: int, now: float, t0: float) -> None:
        """Feed one counted outcome (`code`: FAILURE and SLOW bits) into the state machine."""
        if epoch < 0:
            if epoch < _NOTHING:  # a fleet trial call: its outcome goes to the shared record
                self._trial_done(_TRIAL - epoch, code, now, t0)
            return
        if not code & SLOW and overran(t0, self._clock):
            code |= SLOW  # returned after its time budget ran out (a late cooperative timeout)
        moved = False
        with self._lock:
            if epoch != self._epoch:
                pass  # admitted before the last transition: its outcome belongs to no window
            elif self._state is _CLOSED:
                if self._ring.add(code, now):
                    moved = self._evaluate(now, latest=False)
            elif self._state is _HALF_OPEN:
                if code & FAILURE:
                    moved = self._reopen("a trial call failed", now)
                else:
                    self._half_ok += 1
                    if code & SLOW:
                        self._half_slow += 1
                    if self._half_ok >= self._half_n:
                        if self._half_slow and self._half_slow / self._half_n >= self._sthr:
                            why = f"{self._half_slow} of {self._half_n} trial calls were slow"
                            moved = self._reopen(why, now)
                        else:
                            moved = self._to(_CLOSED, "trial calls succeeded", now)
        if _events.enabled:
            outcome = "failure" if code & FAILURE else "success"
            _events.emit(CallCompleted(self.name, outcome, now - t0, bool(code & SLOW)))
        if moved:
            self._flush()

    def _decide(self, epoch: int, now: float) -> None:
        """The lock-free path just brought the window to `minimum_calls`: decide once."""
        moved = False
        with self._lock:
            if epoch == self._epoch and self._state is _CLOSED:
                moved = self._evaluate(now, latest=True)
        if moved:
            self._flush()

    def _evaluate(self, now: float, *, latest: bool) -> bool:
        """CLOSED (lock held): open if a rate crossed its threshold; True if it opened."""
        calls, failures, slow = self._ring.counts(now, latest)
        if calls < self._min_calls:
            return False
        if failures / calls >= self._fthr:
            return self._to(_OPEN, f"{failures} of {calls} calls failed", now)
        if slow / calls >= self._sthr and self._slow_s < math.inf:
            return self._to(_OPEN, f"{slow} of {calls} calls were slow", now)
        return False

    def _ignored(self, epoch: int, duration: float) -> None:
        """A PERMANENT error (or result): not counted; a half-open trial slot is freed."""
        if epoch == _NOTHING:
            return
        self._release(epoch)
        if _events.enabled:
            _events.emit(CallCompleted(self.name, "ignored", duration, duration >= self._slow_s))

    def _release(self, epoch: int) -> None:
        """The call ended without an outcome (PERMANENT, cancelled, interrupted)."""
        if epoch < 0:
            if epoch < _NOTHING:  # a fleet trial call: its permit goes back
                self._trial_done(_TRIAL - epoch, None, 0.0, 0.0)
            return
        with self._lock:
            if epoch == self._epoch and self._state is _HALF_OPEN and self._half_used > 0:
                self._half_used -= 1

    # --- the core: transitions (called with the lock held) -------------------------------

    def _to(self, new: CircuitState, reason: str, now: float) -> bool:
        # Lock-free readers look at `_closed_epoch`, `_state` and `_open_until`: close the
        # fast path first, publish the new state only once its fields are in place.
        old = self._state
        self._closed_epoch = None
        self._epoch += 1
        if new is _OPEN or new is _FORCED_OPEN:
            self._opened_at = now
            self._open_until = now + self._duration if new is _OPEN else math.inf
            self._opened_wall = self._wall()
            self._reason = reason
        elif new is _HALF_OPEN:
            self._half_used = self._half_ok = self._half_slow = 0
        else:  # CLOSED or DISABLED: a clean slate
            self._clear_window()
            self._duration = self._base_duration
            self._reopens = 0
            self._opened_wall = None
            self._reason = ""
        self._state = new
        if new is _CLOSED and not self._shared:
            self._closed_epoch = self._epoch
        self._version += 1
        self._pending.append((old, new, reason, self._record_dict()))
        return True

    def _reopen(self, reason: str, now: float) -> bool:
        self._reopens += 1
        if self._max_duration is not None:
            self._duration = min(self._duration * 2.0, self._max_duration)
        return self._to(_OPEN, reason, now)

    def _clear_window(self) -> None:
        self._ring.clear()
        if self._decide_at >= 0:
            self._decide_at = self._ring.decide_at  # type: ignore[union-attr]

    def _record_dict(self) -> Record:
        record: Record = {
            "schema": SCHEMA,
            "version": self._version,
            "state": self._state.value,
            "opened_at": self._opened_wall,
            "open_duration": self._duration,
            "reopens": self._reopens,
            "reason": self._reason,
        }
        if self._state is _HALF_OPEN:  # a new round; no permit is taken yet
            record.update(round=self._version, trials=0, passed=0, slow=0, since=self._wall())
        return record

    def _flush(self) -> None:
        """After the lock is released: deliver transition events, write the latest record."""
        if self._offload and self._pending and _on_event_loop():
            # On an event loop the events go out now and the write is handed over (to the
            # loop's writer task, or the writer thread): the loop never waits for store I/O.
            with self._lock:
                pending, self._pending = self._pending, []
            if pending:
                self._emit(pending)
                record = pending[-1][3]
                _defer(
                    self._store,
                    lambda: self._adrive(self._write(record)),
                    lambda: self._write_now(record),
                    rerun=True,  # a write is safe to repeat: versions and CAS guard it
                )
            return
        with self._flush_lock:  # keeps events and writes in transition order
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return
            self._emit(pending)
            self._drive(self._write(pending[-1][3]))

    def _write_now(self, record: Record) -> None:
        with self._flush_lock:
            self._drive(self._write(record))

    def _emit(self, pending: list[tuple[CircuitState, CircuitState, str, Record]]) -> None:
        if _events.enabled:
            for old, new, reason, _ in pending:
                _events.emit(StateTransition(self.name, old.value, new.value, reason))

    # --- the store --------------------------------------------------------------------------
    #
    # With a shared store the record is the fleet's breaker: every transition is a
    # compare-and-set on it, and HALF_OPEN trial permits are reserved in it (`trials`), so
    # exactly `half_open_calls` trial calls run fleet-wide per round (`round`). A process
    # never restarts a round another one started, and a transition that loses its
    # compare-and-set adopts the winner. While the store fails, the breaker runs on its local
    # state, reports the outage once, probes once per `_SYNC_INTERVAL` and takes the store's
    # record (or republishes its own into an empty store) when it answers again.

    async def _aadmit(self) -> int:
        """`_admit` for async callers: when it must talk to the store, it awaits the store's
        own async operations on the loop (RedisStore on asyncio: redis.asyncio), or runs
        `_admit` on a worker thread (trio, SQLite), so a slow store never stalls the loop.
        A cancellation waits for the thread; on asyncio the store exchange goes on in its
        own task and a trial permit it took for a caller that is gone is given back."""
        now = self._mono()
        if not self._store_due(now):
            return self._admit()
        if not _native_async(self._store):
            import anyio.to_thread

            return await anyio.to_thread.run_sync(self._admit)
        import asyncio

        exchange = asyncio.get_running_loop().create_task(self._adrive(self._admit_shared(now)))
        try:
            shared = await asyncio.shield(exchange)
        except asyncio.CancelledError:
            exchange.add_done_callback(self._orphaned)
            raise
        if shared is not None:
            return shared
        return self._admit_local(now)

    def _orphaned(self, exchange: Any) -> None:
        """An admission whose caller was cancelled finished: give its trial permit back."""
        if not exchange.cancelled() and exchange.exception() is None:
            epoch = exchange.result()
            if epoch is not None:
                self._release(epoch)

    def _drive(self, steps: _Steps[_T]) -> _T:
        """Run store steps (a generator yielding (operation, args)) with blocking calls."""
        store: Any = self._store
        try:
            op, args = next(steps)
            while True:
                try:
                    result = getattr(store, op)(*args)
                except Exception as exc:
                    op, args = steps.throw(exc)
                else:
                    op, args = steps.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _adrive(self, steps: _Steps[_T]) -> _T:
        """`_drive` on an event loop, awaiting the store's async operations (`aget`, ...)."""
        store: Any = self._store
        try:
            op, args = next(steps)
            while True:
                try:
                    result = await getattr(store, "a" + op)(*args)
                except Exception as exc:
                    op, args = steps.throw(exc)
                else:
                    op, args = steps.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _store_due(self, now: float) -> bool:
        """Whether admission at `now` reads the shared store."""
        if now >= self._next_sync:
            return True
        if self._store_down is not None:
            return False
        state = self._state
        return state is _HALF_OPEN or (state is _OPEN and now >= self._open_until)

    def _admit_shared(self, now: float) -> _Steps[int | None]:
        """Admission against a shared store: a trial epoch, a rejection, or None (decide
        locally: CLOSED, OPEN with time left, manual states, or the store is unavailable)."""
        state = self._state
        if not self._store_due(now):
            return None
        if now >= self._next_sync and (
            self._store_down is not None or (state is not _HALF_OPEN and state is not _OPEN)
        ):
            with self._lock:  # one re-read (or outage probe) per interval; others go on
                if now < self._next_sync:
                    return None
                self._next_sync = now + _SYNC_INTERVAL
        found, record = yield from self._read()
        if not found:
            return None
        return (yield from self._settle(record, self._mono()))

    def _read(self) -> _Steps[tuple[bool, object]]:
        """(True, the record or None or _CORRUPT) or (False, None) when the store failed.
        The next re-read is due one interval after the read *returned*."""
        try:
            record: object = yield ("get", (self._key,))
        except CorruptRecord:
            record = _CORRUPT
        except Exception as exc:
            self._next_sync = self._mono() + _SYNC_INTERVAL
            self._store_failed(exc)
            return False, None
        self._next_sync = self._mono() + _SYNC_INTERVAL
        recovering = self._store_down is not None
        self._store_back()
        if recovering:  # take the store's word (or republish into an empty one)
            with self._lock:
                self._seen = None
        return True, record

    def _settle(self, record: object, now: float) -> _Steps[int | None]:
        """Act on what the store holds: adopt it, take a trial permit, or republish."""
        for _ in range(_CAS_TRIES):
            view = _parse(record)
            if view is None:  # absent (a restarted Redis), or garbage: publish what we know
                with self._lock:
                    mine = self._record_dict() if self._version > 0 or record is not None else None
                if mine is None:
                    return None
                done, record = yield from self._publish(record, mine)
                if done is None:
                    return None
                if done:
                    with self._lock:
                        self._seen, self._written = mine, max(self._written, mine["version"])
                    return None
                continue
            with self._lock:
                # A round of ours the store has not got yet (the write is on its way, or
                # `state` moved us on): the record decides OPEN -> HALF_OPEN, so take it.
                ahead = self._state is _HALF_OPEN and view["state"] != _HALF_OPEN.value
                if ahead or record != self._seen:
                    self._adopt(view, record, now, event=True)
                state = self._state
                wall = self._wall()
                new: Record | None = None
                if state is _OPEN and now >= self._open_until:
                    new = _round_record(view, wall, 1)
                elif state is _HALF_OPEN:
                    # A round that has not moved for open_duration on *our* clock (so a host
                    # whose clock is off cannot call every round stale) lost its permit
                    # holders (a process died mid-trial): start a new one.
                    progress = (view["round"], view["trials"], view["passed"])
                    if progress != self._round_seen:
                        self._round_seen, self._round_since = progress, now
                    if now - self._round_since > view["open_duration"]:
                        new = _round_record(view, wall, 1)
                    elif view["trials"] < self._half_n:
                        new = dict(view, version=view["version"] + 1, trials=view["trials"] + 1)
            self._flush()
            if new is None:
                if state is _HALF_OPEN:
                    self._reject("half_open_full", 0.0, _HALF_OPEN)
                return None
            done, record = yield from self._publish(record, new)
            if done is None:
                return None
            if done:
                with self._lock:
                    self._adopt(new, new, self._mono(), event=True)
                self._flush()
                return _TRIAL - int(new["round"])
        self._reject("half_open_full", 0.0, _HALF_OPEN)  # contention: shed, try again later
        return None  # pragma: no cover - _reject raises

    def _reject(self, reason: str, remaining: float, state: CircuitState) -> None:
        if _events.enabled:
            _events.emit(CallRejected(self.name, reason, remaining))
        raise CircuitOpenError(self.name, remaining, state.value, self._reason)

    def _publish(self, expected: object, new: Record) -> _Steps[tuple[bool | None, object]]:
        """Compare-and-set `expected` -> `new`: (True, new), (False, what is there now), or
        (None, None) when the store failed. A record that is not JSON is overwritten."""
        try:
            if expected is _CORRUPT:
                yield ("set", (self._key, new))
                done = True
            else:
                want = expected if isinstance(expected, dict) else None
                done = yield ("compare_and_set", (self._key, want, new))
            if done:
                self._store_back()
                return True, new
            try:
                return False, (yield ("get", (self._key,)))
            except CorruptRecord:
                return False, _CORRUPT
        except Exception as exc:
            self._store_failed(exc)
            return None, None

    def _trial_done(self, round_: int, code: int | None, now: float, t0: float) -> None:
        """A fleet trial call of `round_` ended: `code` (FAILURE/SLOW bits), or None when it
        ended without an outcome (its permit goes back)."""
        if code is not None and _events.enabled:
            outcome = "failure" if code & FAILURE else "success"
            _events.emit(CallCompleted(self.name, outcome, now - t0, bool(code & SLOW)))
        if self._offload and _on_event_loop():
            _defer(
                self._store,
                lambda: self._adrive(self._count_trial(round_, code)),
                lambda: self._drive(self._count_trial(round_, code)),
                rerun=False,  # counting a trial twice could close the breaker early
            )
        else:
            self._drive(self._count_trial(round_, code))

    def _count_trial(self, round_: int, code: int | None) -> _Steps[None]:
        found, record = yield from self._read()
        if found:
            for _ in range(_CAS_TRIES):
                view = _parse(record)
                if view is None or view["state"] != "half_open" or view["round"] != round_:
                    return  # the round is over (or the store lost it): nothing to count
                new = self._after_trial(view, code)
                done, record = yield from self._publish(record, new)
                if done is None:
                    break
                if done:
                    with self._lock:
                        self._adopt(new, new, self._mono(), event=True)
                    self._flush()
                    return
            else:
                return
        if code is not None and code & FAILURE:  # the store is gone: at least reopen here
            moved = False
            with self._lock:
                if self._state is _HALF_OPEN:
                    moved = self._reopen("a trial call failed", self._mono())
            if moved:
                self._flush()

    def _after_trial(self, view: Record, code: int | None) -> Record:
        """The record after one trial outcome (`view` is a parsed HALF_OPEN record)."""
        version = view["version"] + 1
        if code is None:
            return dict(view, version=version, trials=max(view["trials"] - 1, 0))
        if code & FAILURE:
            return self._open_record(view, "a trial call failed")
        passed = view["passed"] + 1
        slow = view["slow"] + (1 if code & SLOW else 0)
        if passed < self._half_n:
            return dict(view, version=version, passed=passed, slow=slow)
        if slow and slow / self._half_n >= self._sthr:
            return self._open_record(view, f"{slow} of {self._half_n} trial calls were slow")
        return {
            "schema": SCHEMA,
            "version": version,
            "state": _CLOSED.value,
            "opened_at": None,
            "open_duration": self._base_duration,
            "reopens": 0,
            "reason": "trial calls succeeded",
        }

    def _open_record(self, view: Record, reason: str) -> Record:
        duration = float(view["open_duration"])
        if self._max_duration is not None:
            duration = min(duration * 2.0, self._max_duration)
        return {
            "schema": SCHEMA,
            "version": view["version"] + 1,
            "state": _OPEN.value,
            "opened_at": self._wall(),
            "open_duration": duration,
            "reopens": view["reopens"] + 1,
            "reason": reason,
        }

    def _write(self, record: Record) -> _Steps[None]:
        if record["version"] <= self._written:
            return
        if self._shared:
            if self._store_down is not None and self._mono() < self._next_sync:
                return  # the outage goes on: the next successful read republishes
            done, current = yield from self._publish(self._seen, record)
            if done is None:
                return
            if not done:
                # Lost the race: whoever won stands (we never undo another's transition),
                # unless the store holds nothing usable, in which case ours goes in.
                if _parse(current) is None:
                    done, current = yield from self._publish(current, record)
                if not done:
                    view = _parse(current)
                    if view is not None:
                        with self._lock:
                            self._adopt(view, current, self._mono(), event=True)
                        self._flush()
                    return
        else:
            try:
                yield ("set", (self._key, record))
            except Exception as exc:  # a store outage must not fail the protected call
                self._store_failed(exc)
                return
            self._store_back()
        with self._lock:
            self._written = max(self._written, record["version"])
            self._seen = record

    def _load(self) -> None:
        try:
            record: object = self._store.get(self._key)
        except CorruptRecord:
            return
        except Exception as exc:
            self._store_failed(exc)
            self._next_sync = self._mono() + _SYNC_INTERVAL if self._shared else math.inf
            return
        view = _parse(record)
        if view is not None:
            with self._lock:
                self._adopt(view, record, self._mono(), event=False)
            self._pending.clear()
            self._written = self._version

    def _adopt(self, view: Record, record: object, now: float, *, event: bool) -> None:
        """Take the state a parsed record describes (lock held)."""
        state = CircuitState(view["state"])
        old = self._state
        self._closed_epoch = None  # as in `_to`: fields first, the state last
        self._epoch += 1
        self._version = view["version"]
        self._seen = record if isinstance(record, dict) else None
        self._written = max(self._written, self._version)
        self._duration = view["open_duration"]
        self._reopens = view["reopens"]
        self._reason = view["reason"]
        opened_wall = view["opened_at"]
        self._opened_wall = opened_wall
        if state is _OPEN or state is _HALF_OPEN or state is _FORCED_OPEN:
            # Wall time tells how long ago it opened; our monotonic clock measures the rest.
            elapsed = 0.0 if opened_wall is None else max(self._wall() - opened_wall, 0.0)
            self._opened_at = now - elapsed
            if state is _HALF_OPEN:
                self._half_used = self._half_ok = self._half_slow = 0
                if not self._shared:
                    # A private store: resume as an OPEN breaker whose time is up, which
                    # starts its own trial round (nobody else holds permits).
                    state = _OPEN
                    self._open_until = now
            elif state is _OPEN:
                self._open_until = self._opened_at + self._duration
            else:
                self._open_until = math.inf
        elif old is not state:
            self._clear_window()
        self._state = state
        if state is _CLOSED and not self._shared:
            self._closed_epoch = self._epoch
        if event and old is not state:
            self._pending.append((old, state, "shared store", view))

    def _store_failed(self, exc: BaseException) -> None:
        """Report a store problem once per outage (an event and a log line); never raises."""
        with self._lock:
            if self._store_down is not None:
                return
            self._store_down = self._mono()
        _report_unavailable("circuit breaker", self.name, self._store, exc)

    def _store_back(self) -> None:
        if self._store_down is None:
            return
        with self._lock:
            since, self._store_down = self._store_down, None
        if since is not None:
            _report_recovered("circuit breaker", self.name, self._store, self._mono() - since)

    # --- inspection and manual control -------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state (an OPEN breaker whose time is up reads as HALF_OPEN)."""
        if self._state is _OPEN and self._mono() >= self._open_until:
            self._tick()
        return self._state

    def _tick(self) -> None:
        now = self._mono()
        moved = False
        with self._lock:
            if self._state is _OPEN and now >= self._open_until:
                moved = self._to(_HALF_OPEN, "open_duration elapsed", now)
        if moved:
            self._flush()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe view: state, rates, counters, timing.

        Keys: name, state (a `CircuitState`, equal to its string value), failure_rate,
        slow_call_rate, calls, failures, slow_calls (the CLOSED window; kept while open, emptied
        when the breaker closes), minimum_calls, opened_at (wall-clock time it last opened, or
        None while closed), open_duration (the current one), remaining (seconds until trial
        calls; inf when forced open), half_open_calls, trial_calls (in flight or done; with a
        shared store, fleet-wide, as of the record this process last read or wrote).

        Example:
            >>> CircuitBreaker("s").snapshot()["state"]
            <CircuitState.CLOSED: 'closed'>
        """
        self._tick()
        now = self._mono()
        with self._lock:
            calls, failures, slow = self._ring.counts(now, True)
            state = self._state
            if state is _OPEN:
                remaining = max(self._open_until - now, 0.0)
            elif state is _FORCED_OPEN:
                remaining = math.inf
            else:
                remaining = 0.0
            return {
                "name": self.name,
                "state": state,
                "failure_rate": failures / calls if calls else 0.0,
                "slow_call_rate": slow / calls if calls else 0.0,
                "calls": calls,
                "failures": failures,
                "slow_calls": slow,
                "minimum_calls": self._min_calls,
                "opened_at": self._opened_wall,
                "open_duration": self._duration,
                "remaining": remaining,
                "half_open_calls": self._half_n,
                "trial_calls": self._trial_calls() if state is _HALF_OPEN else 0,
                "reason": self._reason,
            }

    def _trial_calls(self) -> int:
        """Trial calls of this round (lock held): with a shared store, the fleet's, as the
        record last seen counts them (permits live there, not here)."""
        if not self._shared:
            return self._half_used
        seen = self._seen
        if seen is None or seen.get("state") != _HALF_OPEN.value:
            return 0
        trials = seen.get("trials")
        return trials if type(trials) is int else 0

    def force_open(self) -> None:
        """Reject every call (state FORCED_OPEN, `remaining` = inf) until `reset()`."""
        self._manual(_FORCED_OPEN, "force_open()")

    def disable(self) -> None:
        """Let every call through and record nothing (state DISABLED) until `reset()`."""
        self._manual(_DISABLED, "disable()")

    def reset(self) -> None:
        """Back to CLOSED with an empty window and the base open_duration."""
        now = self._mono()
        with self._lock:
            if self._state is _CLOSED:
                self._clear_window()
                self._epoch += 1
                self._closed_epoch = None if self._shared else self._epoch
                moved = False
            else:
                moved = self._to(_CLOSED, "reset()", now)
        if moved:
            self._flush()

    def _manual(self, state: CircuitState, reason: str) -> None:
        now = self._mono()
        with self._lock:
            moved = self._state is not state and self._to(state, reason, now)
        if moved:
            self._flush()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value})"


_CORRUPT = object()  # a record that is not even JSON: overwritten on the next write
_TRIAL = -2  # a fleet trial call of round r is admitted with epoch _TRIAL - r (<= -3)
_CAS_TRIES = 8  # compare-and-set attempts before a contended admission is shed
_MAX_REASON = 500


def _int(value: object, maximum: int = 2**53) -> int:
    if type(value) is not int or not 0 <= value < maximum:
        raise ValueError(value)
    return value


def _real(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _parse(record: object) -> Record | None:
    """A breaker record checked and normalised, or None: absent, of another schema, or
    malformed in any way (a record from a store is data from a peer: never trusted)."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        return None
    try:
        state = CircuitState(record["state"])
        duration = _real(record["open_duration"])
        if not 0 < duration <= 1e9:
            return None
        opened = record.get("opened_at")
        reason = record.get("reason", "")
        view: Record = {
            "schema": SCHEMA,
            "version": _int(record["version"]),
            "state": state.value,
            "opened_at": None if opened is None else _real(opened),
            "open_duration": duration,
            "reopens": _int(record.get("reopens", 0), 10**6),
            "reason": reason[:_MAX_REASON] if isinstance(reason, str) else "",
        }
        if state is _HALF_OPEN:
            since = record.get("since", opened)
            view["round"] = _int(record.get("round", view["version"]))
            view["trials"] = _int(record.get("trials", 0), 10**6)
            view["passed"] = _int(record.get("passed", 0), 10**6)
            view["slow"] = _int(record.get("slow", 0), 10**6)
            view["since"] = 0.0 if since is None else _real(since)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return view


def _round_record(view: Record, wall: float, permits: int) -> Record:
    """A new HALF_OPEN round after `view`, with `permits` trial permits already taken."""
    version = view["version"] + 1
    return {
        "schema": SCHEMA,
        "version": version,
        "state": _HALF_OPEN.value,
        "opened_at": view["opened_at"],
        "open_duration": view["open_duration"],
        "reopens": view["reopens"],
        "reason": view["reason"],
        "round": version,
        "trials": permits,
        "passed": 0,
        "slow": 0,
        "since": wall,
    }
