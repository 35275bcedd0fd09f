"""One typed event stream for every primitive.

Primitives emit frozen, slotted dataclasses; listeners (metrics, logs, health, alerts, your
own code) subscribe. Primitives never call Prometheus or a logger themselves.

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
    "subscribe",
]

Listener = Callable[["Event"], object]

enabled: bool = False
"""True while at least one listener is subscribed. Emitters check this first."""

_listeners: tuple[Listener, ...] = ()
_lock = threading.Lock()


def subscribe(callback: Listener) -> Callable[[], None]:
    """Call `callback(event)` for every event from now on; returns the unsubscribe function.

    A listener that raises does not break the call that emitted the event: its error is
    reported through `sys.unraisablehook` and the remaining listeners still run.

    Example:
        >>> from resilience import events
        >>> stop = events.subscribe(print)
        >>> stop()
    """
    global _listeners, enabled
    with _lock:
        _listeners = (*_listeners, callback)
        enabled = True

    done = False

    def unsubscribe() -> None:
        # Idempotent: calling it twice must not remove a second subscription of the same
        # callback made by someone else.
        nonlocal done
        global _listeners, enabled
        with _lock:
            if done:
                return
            done = True
            items = list(_listeners)
            for i, listener in enumerate(items):
                if listener is callback:
                    del items[i]
                    break
            _listeners = tuple(items)
            enabled = bool(_listeners)

    return unsubscribe


def emit(event: Event) -> None:
    """Deliver `event` to every listener. Callers check `events.enabled` first."""
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
    """Base of every event: `operation` is the emitting primitive's name."""

    operation: str


@dataclass(frozen=True, slots=True)
class CallCompleted(Event):
    """A protected call finished. `outcome`: "success", "failure" or "ignored" (a PERMANENT
    error a breaker does not count); `slow` when it crossed the slow-call threshold."""

    outcome: str
    duration: float
    slow: bool = False


@dataclass(frozen=True, slots=True)
class CallRejected(Event):
    """A call was refused without running. `reason`: "circuit_open", "half_open_full",
    "forced_open", "bulkhead_full", "rate_limited", "retry_budget"."""

    reason: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class StateTransition(Event):
    """A circuit breaker changed state (state names are lower-case: "closed", "open", ...)."""

    from_state: str
    to_state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RetryAttempted(Event):
    """Attempt number `attempt` failed retryably; the next starts after `delay` seconds."""

    attempt: int
    delay: float
    verdict: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """A retry loop ended without success. `reason`: "attempts", "deadline", "budget",
    "permanent"."""

    attempts: int
    reason: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class TimeoutOccurred(Event):
    """A call ran past its timeout (`timeout` seconds)."""

    timeout: float


@dataclass(frozen=True, slots=True)
class BulkheadEvent(Event):
    """A bulkhead's occupancy after a change: `running` and `waiting` calls."""

    running: int
    waiting: int


@dataclass(frozen=True, slots=True)
class FallbackServed(Event):
    """A fallback chain served a call at `level` (a DegradationLevel name, e.g. "CACHE_ONLY")
    from step `source`, after `failures` earlier steps failed."""

    level: str
    source: str
    failures: int = 0


@dataclass(frozen=True, slots=True)
class FailoverSwitched(Event):
    """A failover client's active tier moved from `from_tier` to `to_tier`."""

    from_tier: str
    to_tier: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TierRecovered(Event):
    """A tier that was down passed its probe or trial call and serves again."""

    tier: str


@dataclass(frozen=True, slots=True)
class QueueEnqueued(Event):
    """Items were stored in an offline queue (`operation` is the queue's name)."""

    count: int
    priority: str


@dataclass(frozen=True, slots=True)
class QueueDelivered(Event):
    """Items were delivered (acked) from an offline queue."""

    count: int


@dataclass(frozen=True, slots=True)
class QueueDeadLettered(Event):
    """An item moved to the dead letters."""

    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class QueueDepth(Event):
    """An offline queue's depth per priority name, e.g. {"CRITICAL": 0, "NORMAL": 12}."""

    depth: dict[str, int]


@dataclass(frozen=True, slots=True)
class FaultInjected(Event):
    """Chaos injected a fault: `kind` is "error" or "latency"."""

    kind: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ConfigChanged(Event):
    """The active configuration changed (`operation` is the changed operation, or "*")."""

    environment: str


@dataclass(frozen=True, slots=True)
class StoreUnavailable(Event):
    """A primitive could not read or write its shared store (`store` is the store's repr,
    never a password); it goes on with its local state. Emitted once per outage."""

    store: str
    error: str


@dataclass(frozen=True, slots=True)
class StoreRecovered(Event):
    """The store of an earlier `StoreUnavailable` answers again, after `downtime` seconds."""

    store: str
    downtime: float
