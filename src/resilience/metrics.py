"""Listeners on the event stream: Prometheus metrics, a health summary, structured logs.

`MetricsCollector` turns `resilience.events` into Prometheus metrics (and a plain per-operation
`snapshot()`); `health()` reads the process-wide registry of named primitives and says whether
the process is "ok", "degraded" or "down"; `log_events()` writes each event as a structlog event.
Primitives never import this module: they emit events, and what listens is up to you.

Example:
    >>> import resilience as rs
    >>> from prometheus_client import generate_latest
    >>> collector = rs.MetricsCollector().attach()
    >>> br = rs.CircuitBreaker("metrics-doc")
    >>> br.call(len, "abc")
    3
    >>> collector.snapshot()["metrics-doc"]["calls"]
    1
    >>> b'resilience_calls_total{operation="metrics-doc",outcome="success"} 1.0' in generate_latest(
    ...     collector.registry)
    True
    >>> collector.detach()
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import _registry, events

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MetricsCollector", "health", "log_events"]

_STATES = ("closed", "open", "half_open", "forced_open", "disabled")
_REJECTED_CALL = frozenset(
    {"circuit_open", "half_open_full", "forced_open", "bulkhead_full", "rate_limited"}
)
"""CallRejected reasons that refuse a call (retry_budget refuses a retry, not a call)."""

_OUTCOME_KEYS = {"success": "successes", "failure": "failures"}
_COUNTS = (
    "calls",
    "successes",
    "failures",
    "ignored",
    "slow_calls",
    "rejections",
    "rate_limited",
    "retries",
    "retries_exhausted",
    "timeouts",
    "fallbacks",
    "faults_injected",
    "transitions",
)


class MetricsCollector:
    """Count every event of the library into Prometheus metrics on `registry`.

    Metrics (Prometheus conventions; label names in braces):

    * `resilience_calls_total{operation,outcome}`: outcome "success", "failure", "ignored"
      (an error the breaker does not count, e.g. a 404) or "rejected" (refused unrun: circuit
      open, bulkhead full, rate limited). Calls are seen by circuit breakers, which emit one
      event per call; rejections by breakers, bulkheads and rate limiters.
    * `resilience_call_duration_seconds{operation}`: histogram of completed call durations.
    * `resilience_retries_total{operation}`: retries started (failed attempts that are retried).
    * `resilience_retries_exhausted_total{operation,reason}`: retry loops that gave up.
    * `resilience_rejections_total{operation,reason}`: every refusal, by reason.
    * `resilience_rate_limited_total{operation}`: calls refused by a rate limiter.
    * `resilience_timeouts_total{operation}`.
    * `resilience_circuit_state{operation,state}`: 1 for the breaker's current state, 0 for
      the others (seeded from live breakers when attached and when a breaker is first seen).
    * `resilience_circuit_transitions_total{operation,from_state,to_state}`.
    * `resilience_fallbacks_total{operation,level}`: calls a fallback chain served below FULL
      or after a failed step.
    * `resilience_failover_active_tier{client,tier}`: 1 for the active tier, after a switch.
    * `resilience_failover_switches_total{client,from_tier,to_tier}`.
    * `resilience_queue_depth{queue,priority}`, `resilience_queue_enqueued_total{queue,priority}`,
      `resilience_queue_delivered_total{queue}`, `resilience_queue_dead_letters_total{queue}`.
    * `resilience_bulkhead_running{operation}`, `resilience_bulkhead_waiting{operation}`.
    * `resilience_faults_injected_total{operation,kind}`, `resilience_config_changes_total`.

    Args:
        registry: a `prometheus_client.CollectorRegistry`; None: a new one (`.registry`).
            One collector per registry (a second one would register the same names twice).

    Raises:
        ValueError: `registry` already holds these metrics (from prometheus_client).

    Example:
        >>> import resilience as rs
        >>> with rs.MetricsCollector() as collector:
        ...     _ = rs.CircuitBreaker("collector-doc").call(abs, -1)
        >>> collector.snapshot()["collector-doc"]["successes"]
        1
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._calls = Counter(
            "resilience_calls_total",
            "Protected calls by outcome.",
            ["operation", "outcome"],
            registry=r,
        )
        self._duration = Histogram(
            "resilience_call_duration_seconds",
            "Duration of completed protected calls.",
            ["operation"],
            registry=r,
        )
        self._retries = Counter(
            "resilience_retries_total", "Retries started.", ["operation"], registry=r
        )
        self._exhausted = Counter(
            "resilience_retries_exhausted_total",
            "Retry loops that gave up.",
            ["operation", "reason"],
            registry=r,
        )
        self._rejections = Counter(
            "resilience_rejections_total",
            "Calls or retries refused, by reason.",
            ["operation", "reason"],
            registry=r,
        )
        self._rate_limited = Counter(
            "resilience_rate_limited_total",
            "Calls refused by a rate limiter.",
            ["operation"],
            registry=r,
        )
        self._timeouts = Counter(
            "resilience_timeouts_total",
            "Calls that ran past their timeout.",
            ["operation"],
            registry=r,
        )
        self._state = Gauge(
            "resilience_circuit_state",
            "1 for the circuit breaker's current state, 0 for the others.",
            ["operation", "state"],
            registry=r,
        )
        self._transitions = Counter(
            "resilience_circuit_transitions_total",
            "Circuit breaker state changes.",
            ["operation", "from_state", "to_state"],
            registry=r,
        )
        self._fallbacks = Counter(
            "resilience_fallbacks_total",
            "Calls served by a fallback chain below FULL or after a failed step.",
            ["operation", "level"],
            registry=r,
        )
        self._active_tier = Gauge(
            "resilience_failover_active_tier",
            "1 for the failover client's active tier, 0 for tiers it left.",
            ["client", "tier"],
            registry=r,
        )
        self._switches = Counter(
            "resilience_failover_switches_total",
            "Failover switches between tiers.",
            ["client", "from_tier", "to_tier"],
            registry=r,
        )
        self._depth = Gauge(
            "resilience_queue_depth",
            "Offline queue items by priority.",
            ["queue", "priority"],
            registry=r,
        )
        self._enqueued = Counter(
            "resilience_queue_enqueued_total", "Items stored.", ["queue", "priority"], registry=r
        )
        self._delivered = Counter(
            "resilience_queue_delivered_total", "Items delivered.", ["queue"], registry=r
        )
        self._dead = Counter(
            "resilience_queue_dead_letters_total", "Items dead-lettered.", ["queue"], registry=r
        )
        self._running = Gauge(
            "resilience_bulkhead_running", "Calls running in a bulkhead.", ["operation"], registry=r
        )
        self._waiting = Gauge(
            "resilience_bulkhead_waiting",
            "Calls waiting for a bulkhead.",
            ["operation"],
            registry=r,
        )
        self._faults = Counter(
            "resilience_faults_injected_total",
            "Faults injected by chaos.",
            ["operation", "kind"],
            registry=r,
        )
        self._config = Counter(
            "resilience_config_changes_total", "Configuration changes.", registry=r
        )
        self._lock = threading.Lock()
        self._ops: dict[str, dict[str, Any]] = {}
        self._seen_breakers: set[str] = set()
        self._completed: dict[tuple[str, str], tuple[Any, Any, dict[str, Any], str]] = {}
        self._retry_children: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._state_gen: dict[str, int] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._handlers: dict[type[events.Event], Callable[[Any], None]] = {
            events.CallCompleted: self._on_completed,
            events.CallRejected: self._on_rejected,
            events.StateTransition: self._on_transition,
            events.RetryAttempted: self._on_retry,
            events.RetryGaveUp: self._on_gave_up,
            events.TimeoutOccurred: self._on_timeout,
            events.BulkheadEvent: self._on_bulkhead,
            events.FallbackServed: self._on_fallback,
            events.FailoverSwitched: self._on_switched,
            events.QueueEnqueued: self._on_enqueued,
            events.QueueDelivered: self._on_delivered,
            events.QueueDeadLettered: self._on_dead,
            events.QueueDepth: self._on_depth,
            events.FaultInjected: self._on_fault,
            events.ConfigChanged: self._on_config,
        }

    # --- lifecycle ----------------------------------------------------------------------------

    def attach(self) -> MetricsCollector:
        """Start counting events (idempotent); returns self. Seeds the circuit-state gauge
        from the breakers alive now (again after a detach: states may have moved since)."""
        with self._lock:
            if self._unsubscribe is not None:
                return self
            self._seen_breakers.clear()
            self._unsubscribe = events.subscribe(self._on_event)
        for name in _registry.registered("breaker"):
            self._seed_breaker(name)
        return self

    def detach(self) -> None:
        """Stop counting (idempotent). The values counted so far stay readable."""
        with self._lock:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    @property
    def attached(self) -> bool:
        """Whether the collector is counting events now."""
        return self._unsubscribe is not None

    def __enter__(self) -> MetricsCollector:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # --- reading ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per operation: a copy of its counts.

        Keys: calls (completed: successes + failures + ignored), successes, failures, ignored,
        slow_calls, rejections (every refusal, retry budget included), rate_limited, retries,
        retries_exhausted, timeouts, fallbacks (served below FULL or after a failure),
        faults_injected, transitions, duration_sum (seconds), and for breakers `state`, for
        fallback chains `levels` ({level: count}), for failover clients `active_tier`.

        Example:
            >>> MetricsCollector().snapshot()
            {}
        """
        with self._lock:
            return {
                op: {k: dict(v) if isinstance(v, dict) else v for k, v in row.items()}
                for op, row in self._ops.items()
            }

    def _row(self, op: str) -> dict[str, Any]:
        # Called with the lock held.
        row = self._ops.get(op)
        if row is None:
            row = self._ops[op] = dict.fromkeys(_COUNTS, 0)
            row["duration_sum"] = 0.0
        return row

    # --- the listener ---------------------------------------------------------------------

    def _on_event(self, event: events.Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _on_completed(self, ev: events.CallCompleted) -> None:
        # The per-call event: the labelled children and the row are looked up once per
        # (operation, outcome), not per call (`labels()` takes a lock and builds a key).
        op = ev.operation
        cached = self._completed.get((op, ev.outcome))
        if cached is None:
            with self._lock:
                row = self._row(op)
            outcome_key = _OUTCOME_KEYS.get(ev.outcome, "ignored")
            cached = (
                self._calls.labels(op, ev.outcome),
                self._duration.labels(op),
                row,
                outcome_key,
            )
            self._completed[op, ev.outcome] = cached
            if op not in self._seen_breakers:
                self._seed_breaker(op)
        counter, histogram, row, outcome_key = cached
        counter.inc()
        histogram.observe(ev.duration)
        with self._lock:
            row["calls"] += 1
            row[outcome_key] += 1
            row["slow_calls"] += ev.slow
            row["duration_sum"] += ev.duration

    def _on_rejected(self, ev: events.CallRejected) -> None:
        op, reason = ev.operation, ev.reason
        self._rejections.labels(op, reason).inc()
        if reason in _REJECTED_CALL:
            self._calls.labels(op, "rejected").inc()
        if reason == "rate_limited":
            self._rate_limited.labels(op).inc()
        with self._lock:
            row = self._row(op)
            row["rejections"] += 1
            row["rate_limited"] += reason == "rate_limited"
            seen = op in self._seen_breakers
        if not seen and reason in ("circuit_open", "half_open_full", "forced_open"):
            self._seed_breaker(op)

    def _on_transition(self, ev: events.StateTransition) -> None:
        op = ev.operation
        self._transitions.labels(op, ev.from_state, ev.to_state).inc()
        with self._lock:
            row = self._row(op)
            row["transitions"] += 1
            row["state"] = ev.to_state
            self._state_gen[op] = self._state_gen.get(op, 0) + 1
            self._seen_breakers.add(op)
            self._set_state(op, ev.to_state)

    def _set_state(self, op: str, state: str) -> None:
        # Called with the lock held, so the five labels change together.
        for s in _STATES:
            self._state.labels(op, s).set(1.0 if s == state else 0.0)

    def _seed_breaker(self, op: str) -> None:
        """Publish the state of a live breaker not seen in a transition yet."""
        with self._lock:
            gen = self._state_gen.get(op, 0)
        breaker = _registry.registered("breaker").get(op)
        # Read outside our lock: reading `state` may move OPEN -> HALF_OPEN and emit.
        state = None if breaker is None else str(breaker.state.value)
        with self._lock:
            if op in self._seen_breakers:
                return
            self._seen_breakers.add(op)
            if state is not None and self._state_gen.get(op, 0) == gen:
                self._row(op)["state"] = state
                self._set_state(op, state)

    def _on_retry(self, ev: events.RetryAttempted) -> None:
        cached = self._retry_children.get(ev.operation)
        if cached is None:
            with self._lock:
                row = self._row(ev.operation)
            cached = self._retry_children[ev.operation] = (self._retries.labels(ev.operation), row)
        cached[0].inc()
        with self._lock:
            cached[1]["retries"] += 1

    def _on_gave_up(self, ev: events.RetryGaveUp) -> None:
        self._exhausted.labels(ev.operation, ev.reason).inc()
        with self._lock:
            self._row(ev.operation)["retries_exhausted"] += 1

    def _on_timeout(self, ev: events.TimeoutOccurred) -> None:
        self._timeouts.labels(ev.operation).inc()
        with self._lock:
            self._row(ev.operation)["timeouts"] += 1

    def _on_bulkhead(self, ev: events.BulkheadEvent) -> None:
        with self._lock:  # the two gauges together
            self._running.labels(ev.operation).set(ev.running)
            self._waiting.labels(ev.operation).set(ev.waiting)

    def _on_fallback(self, ev: events.FallbackServed) -> None:
        self._fallbacks.labels(ev.operation, ev.level).inc()
        with self._lock:
            row = self._row(ev.operation)
            row["fallbacks"] += 1
            levels = row.setdefault("levels", {})
            levels[ev.level] = levels.get(ev.level, 0) + 1

    def _on_switched(self, ev: events.FailoverSwitched) -> None:
        client = ev.operation
        self._switches.labels(client, ev.from_tier, ev.to_tier).inc()
        with self._lock:
            self._active_tier.labels(client, ev.from_tier).set(0)
            self._active_tier.labels(client, ev.to_tier).set(1)
            self._row(client)["active_tier"] = ev.to_tier

    def _on_enqueued(self, ev: events.QueueEnqueued) -> None:
        self._enqueued.labels(ev.operation, ev.priority).inc(ev.count)

    def _on_delivered(self, ev: events.QueueDelivered) -> None:
        self._delivered.labels(ev.operation).inc(ev.count)

    def _on_dead(self, ev: events.QueueDeadLettered) -> None:
        self._dead.labels(ev.operation).inc()

    def _on_depth(self, ev: events.QueueDepth) -> None:
        with self._lock:
            for priority, n in ev.depth.items():
                self._depth.labels(ev.operation, priority).set(n)

    def _on_fault(self, ev: events.FaultInjected) -> None:
        self._faults.labels(ev.operation, ev.kind).inc()
        with self._lock:
            self._row(ev.operation)["faults_injected"] += 1

    def _on_config(self, ev: events.ConfigChanged) -> None:
        self._config.inc()

    def __repr__(self) -> str:
        return f"MetricsCollector(attached={self.attached}, operations={len(self._ops)})"


# --- health ---------------------------------------------------------------------------------

_DOWN_STATES = frozenset({"open", "forced_open"})
_UP_STATES = frozenset({"closed", "disabled"})


def health(critical: Iterable[str] = (), *, prefix: str = "") -> dict[str, Any]:
    """The process's health, read from every live circuit breaker (and failover client).

    The rule:

    * "ok": every breaker is closed (or disabled), or there is none.
    * "down": a breaker named in `critical` is open (or forced open), or there are at least
      two breakers and all of them are open: nothing this process depends on answers.
    * "degraded": anything in between: some breaker is open or half-open (probing).

    A single open breaker alone is "degraded", not "down": the process may still serve other
    work and fallbacks. If losing that dependency means the process is down, name it in
    `critical`. Breakers that were garbage-collected are gone from the registry, so they are
    gone from here too.

    Args:
        critical: names of breakers whose opening alone makes the status "down".
        prefix: only breakers (and failover clients) whose name starts with this, e.g.
            "payments." for one subsystem's health; "" (default): all of them.

    Returns:
        {"status": ..., "breakers": {name: {"state", "failure_rate", "calls", "remaining"
        (seconds until trial calls, None while forced open),
        "opened_at", "critical"}}, "open": [names], "half_open": [names], "failovers":
        {name: {"active_tier", "tiers_down"}}} (failover clients that register themselves).

    Example:
        >>> import resilience as rs
        >>> br = rs.CircuitBreaker("health-doc")
        >>> rs.health()["breakers"]["health-doc"]["state"]
        'closed'
        >>> br.force_open(); rs.health(critical=["health-doc"])["status"]
        'down'
    """
    wanted = set(critical)
    breakers: dict[str, dict[str, Any]] = {}
    open_: list[str] = []
    half_open: list[str] = []
    for name, br in sorted(_registry.registered("breaker").items()):
        if not name.startswith(prefix):
            continue
        snap = br.snapshot()
        remaining = float(snap.get("remaining", 0.0))
        state = str(snap["state"])  # a CircuitState: a StrEnum, equal to its value
        breakers[name] = {
            "state": state,
            "failure_rate": snap.get("failure_rate", 0.0),
            "calls": snap.get("calls", 0),
            # seconds until trial calls; None when forced open (no end): strict JSON has no inf
            "remaining": None if math.isinf(remaining) else remaining,
            "opened_at": snap.get("opened_at"),
            "critical": name in wanted,
        }
        if state in _DOWN_STATES:
            open_.append(name)
        elif state not in _UP_STATES:
            half_open.append(name)
    failovers: dict[str, dict[str, Any]] = {}
    for name, fo in sorted(_registry.registered("failover").items()):
        if not name.startswith(prefix):
            continue
        try:
            status = fo.tiers_status()
            failovers[name] = {
                "active_tier": fo.active_tier,
                "tiers_down": sorted(t for t, s in status.items() if not s.get("up", True)),
            }
        except Exception as exc:  # a broken client must not break the health endpoint
            failovers[name] = {"error": type(exc).__name__}
    if any(name in wanted for name in open_) or (
        len(breakers) >= 2 and len(open_) == len(breakers)
    ):
        status_ = "down"
    elif open_ or half_open or any(f.get("tiers_down") for f in failovers.values()):
        status_ = "degraded"
    else:
        status_ = "ok"
    return {
        "status": status_,
        "breakers": breakers,
        "open": open_,
        "half_open": half_open,
        "failovers": failovers,
    }


# --- structured logs ------------------------------------------------------------------------

_LEVELS: dict[type[events.Event], str] = {
    events.CallCompleted: "debug",
    events.BulkheadEvent: "debug",
    events.QueueDepth: "debug",
    events.QueueEnqueued: "debug",
    events.QueueDelivered: "debug",
    events.StateTransition: "warning",
    events.RetryGaveUp: "warning",
    events.FailoverSwitched: "warning",
    events.QueueDeadLettered: "warning",
}


def log_events(logger: Any = None) -> Callable[[], None]:
    """Write every event as a structlog event; returns the unsubscribe function.

    The event name is the event type in snake case ("state_transition", "retry_attempted")
    and its fields are the event's fields. Events carry names, counts, durations and error
    *type* names, never arguments, payloads or messages, so no secret reaches the log.
    Levels: warning for breaker transitions, exhausted retries, failover switches and dead
    letters; debug for per-call noise (completed calls, occupancy, queue depth); info else.

    Args:
        logger: a structlog (or stdlib-like) logger with debug/info/warning methods; None:
            `structlog.get_logger("resilience")` (structlog is imported only then).

    Example:
        >>> import resilience as rs
        >>> lines = []
        >>> class Logger:
        ...     def info(self, event, **kw): lines.append((event, kw))
        ...     def warning(self, event, **kw): lines.append((event, kw))
        ...     def debug(self, event, **kw): pass
        >>> stop = log_events(Logger())
        >>> rs.CircuitBreaker("log-doc").force_open(); stop()
        >>> lines[0][0], lines[0][1]["to_state"]
        ('state_transition', 'forced_open')
    """
    if logger is None:
        import structlog

        logger = structlog.get_logger("resilience")
    import dataclasses

    shapes: dict[type[events.Event], tuple[str, Callable[..., Any], tuple[str, ...]]] = {}

    def on_event(event: events.Event) -> None:
        cls = type(event)
        shape = shapes.get(cls)
        if shape is None:
            name = "".join(f"_{c.lower()}" if c.isupper() else c for c in cls.__name__)
            method = getattr(logger, _LEVELS.get(cls, "info"))
            keys = tuple(f.name for f in dataclasses.fields(event))
            shape = shapes[cls] = (name.lstrip("_"), method, keys)
        name, method, keys = shape
        method(name, **{k: getattr(event, k) for k in keys})

    return events.subscribe(on_event)
