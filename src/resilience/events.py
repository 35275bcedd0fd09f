"""One typed event stream for every primitive.

Primitives emit frozen, slotted dataclasses; listeners (metrics, logs, health, alerts, your
own code) subscribe. Primitives never call Prometheus or a logger themselves.

Field names never collide with the keys logging owns (`level`, `event`, `timestamp`, `logger`,
`msg`, `exc_info`, `stack_info`, nor any `logging.LogRecord` attribute), so every field can
be passed as is to structlog or as `extra=` to the standard library. Fields carry names,
counts, durations and error *type* names, never arguments, payloads or secrets.

With no subscriber, emitting costs one attribute check: emitters are written as

    if events.enabled:
        events.emit(CallRejected(...))

so the event object is not even built.

Example:
    >>> from resilience import events
    >>> seen = []
    >>> unsubscribe = events.subscribe(seen.append)
    >>> events.emit(events.CallRejected("payments", "circuit_open", 3.0))
    >>> seen
    [CallRejected(operation='payments', reason='circuit_open', retry_after=3.0)]
    >>> unsubscribe()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BulkheadEvent",
    "CRDTMessageDropped",
    "CallCompleted",
    "CallRejected",
    "ConfigChanged",
    "Event",
    "FailoverSwitched",
    "FallbackServed",
    "FaultInjected",
    "QueueDeadLettered",
    "QueueDelivered",
    "QueueDepth",
    "QueueEnqueued",
    "RetryAttempted",
    "RetryGaveUp",
    "StateTransition",
    "StoreRecovered",
    "StoreUnavailable",
    "TierRecovered",
    "TimeoutOccurred",
    "emit",
    "enabled",
    "per_call",
    "subscribe",
]

Listener = Callable[["Event"], object]

enabled: bool = False
"""True while at least one listener is subscribed. Emitters check this first."""

per_call: bool = False
"""True while a listener wants the events of every call, plain successes included (a
`CallCompleted` for each call, a `BulkheadEvent` for each slot taken). When it is False, a
primitive's lock-free happy path may skip those: a logger at INFO costs nothing per call."""

_listeners: tuple[Listener, ...] = ()
_entries: tuple[tuple[Listener, bool], ...] = ()
_lock = threading.Lock()


def subscribe(callback: Listener, *, per_call: bool = True) -> Callable[[], None]:
    """Call `callback(event)` for every event from now on; returns the unsubscribe function.

    A listener that raises does not break the call that emitted the event: its error is
    reported through `sys.unraisablehook` and the remaining listeners still run.

    Args:
        callback: called with each event, on the emitting thread.
        per_call: False: this listener does not need the events of plain successful calls
            (`CallCompleted` of a success, `BulkheadEvent`); while no listener needs them,
            primitives keep their fast path and may not emit them. Other events still come.

    Example:
        >>> from resilience import events
        >>> stop = events.subscribe(print)
        >>> stop()
    """
    entry = (callback, per_call)
    with _lock:
        _set((*_entries, entry))

    done = False

    def unsubscribe() -> None:
        # Idempotent: calling it twice must not remove a second subscription of the same
        # callback made by someone else (each subscription is its own entry).
        nonlocal done
        with _lock:
            if done:
                return
            done = True
            items = list(_entries)
            for i, item in enumerate(items):
                if item is entry:
                    del items[i]
                    break
            _set(tuple(items))

    return unsubscribe


def _set(entries: tuple[tuple[Listener, bool], ...]) -> None:
    # Called with the lock held. Listeners first, flags last: an emitter that sees a flag
    # set finds the listener already there.
    global _entries, _listeners, enabled, per_call
    _entries = entries
    _listeners = tuple(callback for callback, _ in entries)
    per_call = any(wants for _, wants in entries)
    enabled = bool(entries)


def emit(event: Event) -> None:
    """Deliver `event` to every listener. Callers check `events.enabled` first.

    Example:
        >>> got = []
        >>> stop = subscribe(got.append)
        >>> emit(TierRecovered("ldap", "dc1"))
        >>> stop()
        >>> got
        [TierRecovered(operation='ldap', tier='dc1')]
    """
    for listener in _listeners:
        try:
            listener(event)
        except Exception as exc:  # a broken listener must not break the protected call
            _report(exc, f"Exception ignored in resilience event listener {listener!r}", event)


def _report(exc: BaseException, message: str, event: Event) -> None:
    import sys

    try:
        hook = sys.unraisablehook
        if hook is sys.__unraisablehook__:
            # The interpreter's own hook accepts only its private UnraisableHookArgs type,
            # which Python code cannot build: print what it would print.
            import traceback

            text = "".join(traceback.format_exception(exc))
            sys.stderr.write(f"{message}: {event!r}\n{text}")
        else:  # pytest's, Sentry's or the user's hook: they read the same attributes
            hook(_Unraisable(exc, message, event))  # type: ignore[arg-type]
    except Exception:  # pragma: no cover - a broken hook or stderr: nothing more to do
        pass


class _Unraisable:
    __slots__ = ("err_msg", "exc_traceback", "exc_type", "exc_value", "object")

    def __init__(self, exc: BaseException, msg: str, obj: object) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = msg
        self.object = obj


# --- the events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: `operation` is the emitting primitive's name.

    Example:
        >>> e = CallCompleted("payments", "success", 0.012)
        >>> isinstance(e, Event), e.operation
        (True, 'payments')
    """

    operation: str

    def __init_subclass__(cls, **kwargs: object) -> None:
        # (not the zero-argument super(): @dataclass(slots=True) builds a new class, so the
        # compiler's class cell points at the first one)
        super(Event, cls).__init_subclass__(**kwargs)
        _fast_init(cls)


def _fast_init(cls: type) -> None:
    """Give a frozen, slotted event dataclass an `__init__` that writes its slots directly.

    A frozen dataclass's generated `__init__` goes through `object.__setattr__` by name for
    each field, which costs as much as the rest of a breaker call; events are built once per
    call while anyone listens. This one calls each slot's descriptor instead (about twice as
    fast), with the same parameters and defaults; the class stays a frozen dataclass
    (assignment still raises FrozenInstanceError). Runs when `@dataclass(slots=True)` builds
    the slotted class; anything unusual (factories, `__post_init__`, keyword-only fields)
    keeps the generated `__init__`.
    """
    import dataclasses

    if "__init__" not in cls.__dict__ or "__dataclass_fields__" not in cls.__dict__:
        return  # the first, unslotted pass of @dataclass(slots=True)
    if "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        return
    fields = dataclasses.fields(cls)
    namespace: dict[str, object] = {}
    params: list[str] = []
    body: list[str] = []
    for i, f in enumerate(fields):
        setter = next((k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__), None)
        if (
            not f.init
            or f.kw_only
            or f.default_factory is not dataclasses.MISSING
            or not hasattr(setter, "__set__")
        ):
            return
        namespace[f"_set{i}"] = setter.__set__  # type: ignore[union-attr]
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        body.append(f"    _set{i}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # built from the dataclass's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    init.__doc__ = cls.__dict__["__init__"].__doc__
    cls.__init__ = init  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class CallCompleted(Event):
    """A protected call finished. `outcome`: "success", "failure" or "ignored" (a PERMANENT
    error a breaker does not count); `slow` when it crossed the slow-call threshold.

    Example:
        >>> CallCompleted("payments", "success", 0.012).outcome
        'success'
    """

    outcome: str
    duration: float
    slow: bool = False


@dataclass(frozen=True, slots=True)
class CallRejected(Event):
    """A call was refused without running. `reason`: "circuit_open", "half_open_full",
    "forced_open", "bulkhead_full", "rate_limited", "retry_budget".

    Example:
        >>> CallRejected("payments", "circuit_open", retry_after=12.5).reason
        'circuit_open'
    """

    reason: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class StateTransition(Event):
    """A circuit breaker changed state (state names are lower-case: "closed", "open", ...).

    Example:
        >>> e = StateTransition("payments", "closed", "open", "6 of 10 calls failed")
        >>> e.from_state, e.to_state
        ('closed', 'open')
    """

    from_state: str
    to_state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RetryAttempted(Event):
    """Attempt number `attempt` failed retryably; the next starts after `delay` seconds.

    Example:
        >>> RetryAttempted("quotes", attempt=1, delay=0.2, verdict="TRANSIENT").delay
        0.2
    """

    attempt: int
    delay: float
    verdict: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """A retry loop ended without success. `reason`: "attempts", "deadline", "budget",
    "permanent".

    Example:
        >>> RetryGaveUp("quotes", attempts=3, reason="attempts").reason
        'attempts'
    """

    attempts: int
    reason: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class TimeoutOccurred(Event):
    """A call ran past its timeout (`timeout` seconds).

    `late=True`: a sync call under a cooperative timeout returned after its budget ran out;
    its result was kept (the work was done), and the overrun is reported here.

    Example:
        >>> TimeoutOccurred("search", 2.0, late=True).late
        True
    """

    timeout: float
    late: bool = False


@dataclass(frozen=True, slots=True)
class BulkheadEvent(Event):
    """A bulkhead's occupancy after a change: `running` and `waiting` calls.

    Example:
        >>> BulkheadEvent("reports", running=10, waiting=3).waiting
        3
    """

    running: int
    waiting: int


@dataclass(frozen=True, slots=True)
class FallbackServed(Event):
    """A fallback chain served a call at `degradation` (a DegradationLevel name, e.g.
    "CACHE_ONLY") from step `source`, after `failures` earlier steps failed.

    The field is not called `level`: logging pipelines (structlog's `add_log_level`) own that
    key and would overwrite it.

    Example:
        >>> FallbackServed("quotes", "CACHE_ONLY", "stale_cache", failures=1).degradation
        'CACHE_ONLY'
    """

    degradation: str
    source: str
    failures: int = 0

    @property
    def level(self) -> str:
        """Deprecated: the old name of `degradation` (it collided with the log level)."""
        import warnings

        warnings.warn(
            "FallbackServed.level is deprecated: read FallbackServed.degradation",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.degradation


@dataclass(frozen=True, slots=True)
class FailoverSwitched(Event):
    """A failover client's active tier moved from `from_tier` to `to_tier`.

    Example:
        >>> FailoverSwitched("ldap", "dc1", "dc2", "dc1: ConnectionError").to_tier
        'dc2'
    """

    from_tier: str
    to_tier: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TierRecovered(Event):
    """A tier that was down passed its probe or trial call and serves again.

    Example:
        >>> TierRecovered("ldap", "dc1").tier
        'dc1'
    """

    tier: str


@dataclass(frozen=True, slots=True)
class QueueEnqueued(Event):
    """Items were stored in an offline queue (`operation` is the queue's name).

    Example:
        >>> QueueEnqueued("outbox", count=1, priority="NORMAL").count
        1
    """

    count: int
    priority: str


@dataclass(frozen=True, slots=True)
class QueueDelivered(Event):
    """Items were delivered (acked) from an offline queue.

    Example:
        >>> QueueDelivered("outbox", count=5).count
        5
    """

    count: int


@dataclass(frozen=True, slots=True)
class QueueDeadLettered(Event):
    """An item moved to the dead letters.

    Example:
        >>> QueueDeadLettered("outbox", seq=42, reason="permanent").seq
        42
    """

    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class QueueDepth(Event):
    """An offline queue's depth per priority name, e.g. {"CRITICAL": 0, "NORMAL": 12}.

    Example:
        >>> QueueDepth("outbox", {"CRITICAL": 0, "NORMAL": 12}).depth["NORMAL"]
        12
    """

    depth: dict[str, int]


@dataclass(frozen=True, slots=True)
class FaultInjected(Event):
    """Chaos injected a fault: `kind` is "error" or "latency".

    Example:
        >>> FaultInjected("db", "latency").kind
        'latency'
    """

    kind: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CRDTMessageDropped(Event):
    """A CRDT Replicator dropped a message from a peer (`operation` is the receiving replica's
    id). `reason`: "unauthenticated" (no or bad HMAC), "replayed", "invalid" (malformed,
    foreign, out of bounds, skewed clock), "oversized", or "overflow" (a causally early delta
    evicted from a full buffer). `sender` is the claimed sender, "" if unknown.

    Example:
        >>> CRDTMessageDropped("site-1", "unauthenticated", sender="site-9").reason
        'unauthenticated'
    """

    reason: str
    sender: str = ""


@dataclass(frozen=True, slots=True)
class ConfigChanged(Event):
    """The active configuration changed (`operation` is the changed operation, or "*").

    Example:
        >>> ConfigChanged("*", "production").environment
        'production'
    """

    environment: str


@dataclass(frozen=True, slots=True)
class StoreUnavailable(Event):
    """A primitive could not read or write its shared store (`store` is the store's repr,
    never a password); it goes on with its local state. Emitted once per outage.

    Example:
        >>> StoreUnavailable("payments", "RedisStore('redis://cache/0')", "TimeoutError").error
        'TimeoutError'
    """

    store: str
    error: str


@dataclass(frozen=True, slots=True)
class StoreRecovered(Event):
    """The store of an earlier `StoreUnavailable` answers again, after `downtime` seconds.

    Example:
        >>> StoreRecovered("payments", "SQLiteStore('state.db')", 12.5).downtime
        12.5
    """

    store: str
    downtime: float
