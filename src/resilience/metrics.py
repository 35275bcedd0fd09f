"""Listeners on the event stream: Prometheus metrics, a health summary, structured logs.

`MetricsCollector` turns `resilience.events` into Prometheus metrics (and a plain per-operation
`snapshot()`); `health()` reads the process-wide registry of named primitives and says whether
the process is "ok", "degraded" or "down"; `log_events()` writes events to a stdlib or
structlog logger, rate-limited. Primitives never import this module: they emit events, and
what listens is up to you.

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
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypedDict

from . import _registry, events

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = [
    "DEFAULT_BUCKETS",
    "FAMILIES",
    "BreakerHealth",
    "FailoverHealth",
    "Family",
    "Health",
    "MetricsCollector",
    "event_fields",
    "exhausted_reason",
    "health",
    "log_events",
]


class Family(NamedTuple):
    """One metric family the collectors emit: `name` without the namespace (and, for
    counters, with `_total`), its type, label names and help text.

    Example:
        >>> FAMILIES[0].name, FAMILIES[0].kind, FAMILIES[0].labels
        ('calls_total', 'counter', ('operation', 'outcome'))
    """

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    help: str


FAMILIES: tuple[Family, ...] = (
    Family("calls_total", "counter", ("operation", "outcome"), "Protected calls by outcome."),
    Family("call_duration_seconds", "histogram", ("operation",), "Duration of completed calls."),
    Family("retries_total", "counter", ("operation",), "Retries started."),
    Family(
        "retries_exhausted_total",
        "counter",
        ("operation", "reason"),
        "Retry loops that gave up on a retryable failure, by why.",
    ),
    Family("rejections_total", "counter", ("operation", "reason"), "Calls or retries refused."),
    Family("rate_limited_total", "counter", ("operation",), "Calls refused by a rate limiter."),
    Family("timeouts_total", "counter", ("operation",), "Calls that ran past their timeout."),
    Family(
        "circuit_state",
        "gauge",
        ("operation", "state"),
        "1 for the circuit breaker's current state, 0 for the others.",
    ),
    Family(
        "circuit_transitions_total",
        "counter",
        ("operation", "from_state", "to_state"),
        "Circuit breaker state changes.",
    ),
    Family(
        "fallbacks_total",
        "counter",
        ("operation", "level"),
        "Calls a fallback chain served below FULL or after a failed step.",
    ),
    Family(
        "failover_active_tier",
        "gauge",
        ("client", "tier"),
        "1 for the failover client's active tier, 0 for tiers it left.",
    ),
    Family(
        "failover_switches_total",
        "counter",
        ("client", "from_tier", "to_tier"),
        "Failover switches between tiers.",
    ),
    Family("queue_depth", "gauge", ("queue", "priority"), "Offline queue items by priority."),
    Family("queue_enqueued_total", "counter", ("queue", "priority"), "Items stored."),
    Family("queue_delivered_total", "counter", ("queue",), "Items delivered."),
    Family("queue_dead_letters_total", "counter", ("queue",), "Items dead-lettered."),
    Family("bulkhead_running", "gauge", ("operation",), "Calls running in a bulkhead."),
    Family("bulkhead_waiting", "gauge", ("operation",), "Calls waiting for a bulkhead."),
    Family("faults_injected_total", "counter", ("operation", "kind"), "Faults injected by chaos."),
    Family("config_changes_total", "counter", (), "Configuration changes (use / register)."),
)
"""Every metric family, in one place: the Prometheus collector, the OpenTelemetry bridge and
the exported alert rules and dashboard are all written from this table."""

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
"""Histogram bucket bounds (seconds), prometheus_client's defaults (+Inf is implied)."""

_STATES = ("closed", "open", "half_open", "forced_open", "disabled")
_REJECTED_CALL = frozenset(
    {"circuit_open", "half_open_full", "forced_open", "bulkhead_full", "rate_limited"}
)
"""CallRejected reasons that refuse a call (retry_budget refuses a retry, not a call)."""

_BREAKER_REJECTIONS = frozenset({"circuit_open", "half_open_full", "forced_open"})
_CallCompleted = events.CallCompleted

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

# The last error a retry gave up on, when the library itself refused the call: the honest
# reason is the refusal, whatever the loop's own reason ("deadline", "retry_after") says.
_REFUSED_BY = {
    "CircuitOpenError": "circuit_open",
    "CircuitOpenTransportError": "circuit_open",
    "BulkheadFull": "bulkhead_full",
    "RateLimited": "rate_limited",
}


def exhausted_reason(event: events.RetryGaveUp) -> str | None:
    """The `reason` label a retry that gave up is counted under, or None: not exhausted.

    A PERMANENT error was never retried, so it is not "exhausted" (None). A loop that ended
    on a local refusal (an open breaker, a full bulkhead, a rate limit) says so
    ("circuit_open", ...), not "deadline". Otherwise the loop's own reason: "attempts",
    "deadline", "budget", "retry_after", "forced_open".

    Example:
        >>> from resilience import events
        >>> exhausted_reason(events.RetryGaveUp("db", 3, "deadline", "CircuitOpenError"))
        'circuit_open'
        >>> exhausted_reason(events.RetryGaveUp("db", 1, "permanent", "ValueError")) is None
        True
    """
    if event.reason == "permanent":
        return None
    return _REFUSED_BY.get(event.error, event.reason)


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _is_name(text: object, *, colon: bool = False) -> bool:
    ok = _NAME_CHARS | {":"} if colon else _NAME_CHARS
    return isinstance(text, str) and bool(text) and not text[0].isdigit() and set(text) <= ok


def _check_options(
    namespace: object, buckets: object, const_labels: object
) -> tuple[str, tuple[float, ...], tuple[tuple[str, str], ...]]:
    """Validate the collector's options; raise ConfigError listing every bad one."""
    from ._errors import ConfigError

    errors: list[tuple[str, str]] = []
    if not (namespace == "" or _is_name(namespace, colon=True)):
        errors.append(("namespace", f"must be a Prometheus metric name prefix, got {namespace!r}"))
    bounds: list[float] = []
    if buckets is not None:
        try:
            bounds = sorted({float(b) for b in buckets if not math.isinf(float(b))})  # type: ignore[attr-defined]
        except (TypeError, ValueError):
            errors.append(("buckets", f"must be numbers of seconds, got {buckets!r:.80}"))
        else:
            if not bounds or any(math.isnan(b) for b in bounds):
                errors.append(("buckets", f"must hold at least one finite bound, got {buckets!r}"))
    labels: list[tuple[str, str]] = []
    if const_labels is not None:
        if not isinstance(const_labels, Mapping):
            errors.append(("const_labels", f"must be a mapping, got {const_labels!r:.80}"))
        else:
            taken = {label for family in FAMILIES for label in family.labels} | {"le"}
            for key, val in const_labels.items():
                if not _is_name(key) or key.startswith("__") or key in taken:
                    errors.append(
                        (f"const_labels.{key}", "must be a label name not used by the metrics")
                    )
                elif not isinstance(val, str):
                    errors.append((f"const_labels.{key}", f"must be a string, got {val!r:.40}"))
                else:
                    labels.append((key, val))
    if errors:
        raise ConfigError(errors)
    return (
        str(namespace),
        tuple(bounds) if buckets is not None else DEFAULT_BUCKETS,
        tuple(sorted(labels)),
    )


class _Tally:
    """The counts behind a collector: updated by events, read when scraped.

    The per-call event (`CallCompleted`) costs a dict lookup, a bisect and one lock around
    four list increments: one cell per (operation, outcome) holds the call count, the slow
    count, the duration sum and the histogram buckets; the calls counter, the histogram and
    the snapshot's call counts are all summed from those cells when read.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.lock = threading.Lock()
        self.ops: dict[str, dict[str, Any]] = {}
        self.series: dict[str, dict[tuple[str, ...], float]] = {
            f.name: {} for f in FAMILIES if f.kind != "histogram"
        }
        # (operation, outcome) -> [calls, slow calls, duration sum, per bucket (+Inf last)...]
        self.cells: dict[tuple[str, str], list[Any]] = {}
        self.states: dict[str, str] = {}
        self.seen_breakers: set[str] = set()
        self.state_gen: dict[str, int] = {}
        self.handlers: dict[type[events.Event], Callable[[Any], None]] = {
            events.CallRejected: self.on_rejected,
            events.StateTransition: self.on_transition,
            events.RetryAttempted: self.on_retry,
            events.RetryGaveUp: self.on_gave_up,
            events.TimeoutOccurred: self.on_timeout,
            events.BulkheadEvent: self.on_bulkhead,
            events.FallbackServed: self.on_fallback,
            events.FailoverSwitched: self.on_switched,
            events.QueueEnqueued: self.on_enqueued,
            events.QueueDelivered: self.on_delivered,
            events.QueueDeadLettered: self.on_dead,
            events.QueueDepth: self.on_depth,
            events.FaultInjected: self.on_fault,
            events.ConfigChanged: self.on_config,
        }

    def on_event(self, event: events.Event) -> None:
        if type(event) is _CallCompleted:  # the per-call event: inline, no second call
            ev: events.CallCompleted = event
            cell = self.cells.get((ev.operation, ev.outcome))
            if cell is None:
                cell = self._first_completed(ev.operation, ev.outcome)
            duration = ev.duration
            i = bisect_left(self.bounds, duration) + 3
            with self.lock:
                cell[0] += 1
                cell[2] += duration
                cell[i] += 1
                if ev.slow:
                    cell[1] += 1
            return
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(event)

    def row(self, op: str) -> dict[str, Any]:
        # Called with the lock held.
        row = self.ops.get(op)
        if row is None:
            row = self.ops[op] = dict.fromkeys(_COUNTS, 0)
            row["duration_sum"] = 0.0
        return row

    def add(self, family: str, labels: tuple[str, ...], n: float = 1) -> None:
        # Called with the lock held.
        series = self.series[family]
        series[labels] = series.get(labels, 0) + n

    # --- the events -----------------------------------------------------------------------

    def _first_completed(self, op: str, outcome: str) -> list[Any]:
        with self.lock:
            cell = self.cells.get((op, outcome))
            if cell is None:
                self.row(op)
                cell = self.cells[op, outcome] = [0, 0, 0.0] + [0] * (len(self.bounds) + 1)
            seen = op in self.seen_breakers
        if not seen:
            self.seed_breaker(op)
        return cell

    def on_rejected(self, ev: events.CallRejected) -> None:
        op, reason = ev.operation, ev.reason
        with self.lock:
            self.add("rejections_total", (op, reason))
            if reason in _REJECTED_CALL:
                self.add("calls_total", (op, "rejected"))
            row = self.row(op)
            row["rejections"] += 1
            if reason == "rate_limited":
                self.add("rate_limited_total", (op,))
                row["rate_limited"] += 1
            seen = op in self.seen_breakers
        if not seen and reason in _BREAKER_REJECTIONS:
            self.seed_breaker(op)

    def on_transition(self, ev: events.StateTransition) -> None:
        op = ev.operation
        with self.lock:
            self.add("circuit_transitions_total", (op, ev.from_state, ev.to_state))
            row = self.row(op)
            row["transitions"] += 1
            row["state"] = self.states[op] = ev.to_state
            self.state_gen[op] = self.state_gen.get(op, 0) + 1
            self.seen_breakers.add(op)

    def seed_breaker(self, op: str) -> None:
        """Publish the state of a live breaker not seen in a transition yet."""
        with self.lock:
            gen = self.state_gen.get(op, 0)
        breaker = _registry.registered("breaker").get(op)
        # Read outside our lock: reading `state` may move OPEN -> HALF_OPEN and emit.
        state = None if breaker is None else str(breaker.state.value)
        with self.lock:
            if op in self.seen_breakers:
                return
            self.seen_breakers.add(op)
            if state is not None and self.state_gen.get(op, 0) == gen:
                self.row(op)["state"] = self.states[op] = state

    def on_retry(self, ev: events.RetryAttempted) -> None:
        with self.lock:
            self.add("retries_total", (ev.operation,))
            self.row(ev.operation)["retries"] += 1

    def on_gave_up(self, ev: events.RetryGaveUp) -> None:
        reason = exhausted_reason(ev)
        if reason is None:
            return
        with self.lock:
            self.add("retries_exhausted_total", (ev.operation, reason))
            self.row(ev.operation)["retries_exhausted"] += 1

    def on_timeout(self, ev: events.TimeoutOccurred) -> None:
        with self.lock:
            self.add("timeouts_total", (ev.operation,))
            self.row(ev.operation)["timeouts"] += 1

    def on_bulkhead(self, ev: events.BulkheadEvent) -> None:
        with self.lock:
            self.series["bulkhead_running"][ev.operation,] = ev.running
            self.series["bulkhead_waiting"][ev.operation,] = ev.waiting

    def on_fallback(self, ev: events.FallbackServed) -> None:
        with self.lock:
            self.add("fallbacks_total", (ev.operation, ev.degradation))
            row = self.row(ev.operation)
            row["fallbacks"] += 1
            levels = row.setdefault("levels", {})
            levels[ev.degradation] = levels.get(ev.degradation, 0) + 1

    def on_switched(self, ev: events.FailoverSwitched) -> None:
        client = ev.operation
        with self.lock:
            self.add("failover_switches_total", (client, ev.from_tier, ev.to_tier))
            tiers = self.series["failover_active_tier"]
            tiers[client, ev.from_tier] = 0
            tiers[client, ev.to_tier] = 1
            self.row(client)["active_tier"] = ev.to_tier

    def on_enqueued(self, ev: events.QueueEnqueued) -> None:
        with self.lock:
            self.add("queue_enqueued_total", (ev.operation, ev.priority), ev.count)

    def on_delivered(self, ev: events.QueueDelivered) -> None:
        with self.lock:
            self.add("queue_delivered_total", (ev.operation,), ev.count)

    def on_dead(self, ev: events.QueueDeadLettered) -> None:
        with self.lock:
            self.add("queue_dead_letters_total", (ev.operation,))

    def on_depth(self, ev: events.QueueDepth) -> None:
        with self.lock:
            depth = self.series["queue_depth"]
            for priority, n in ev.depth.items():
                depth[ev.operation, priority] = n

    def on_fault(self, ev: events.FaultInjected) -> None:
        with self.lock:
            self.add("faults_injected_total", (ev.operation, ev.kind))
            self.row(ev.operation)["faults_injected"] += 1

    def on_config(self, ev: events.ConfigChanged) -> None:
        with self.lock:
            self.add("config_changes_total", ())

    # --- reading --------------------------------------------------------------------------

    def read(
        self,
    ) -> tuple[
        dict[str, list[tuple[tuple[str, ...], float]]],
        dict[str, tuple[list[int], float]],
    ]:
        """A consistent copy: {family: [(label values, value)]}, and per operation the
        histogram's per-bucket counts and sum."""
        with self.lock:
            out = {name: list(series.items()) for name, series in self.series.items()}
            cells = [(key, list(cell)) for key, cell in self.cells.items()]
            out["circuit_state"] = [
                ((op, s), 1.0 if s == state else 0.0)
                for op, state in self.states.items()
                for s in _STATES
            ]
        hist: dict[str, tuple[list[int], float]] = {}
        calls = out["calls_total"]
        for (op, outcome), cell in cells:
            calls.append(((op, outcome), cell[0]))
            buckets, total = hist.get(op) or ([0] * (len(cell) - 3), 0.0)
            hist[op] = ([a + b for a, b in zip(buckets, cell[3:], strict=True)], total + cell[2])
        return out, hist

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            rows = {
                op: {k: dict(v) if isinstance(v, dict) else v for k, v in row.items()}
                for op, row in self.ops.items()
            }
            for (op, outcome), cell in self.cells.items():
                row = rows[op]
                row["calls"] += cell[0]
                row[_OUTCOME_KEYS.get(outcome, "ignored")] += cell[0]
                row["slow_calls"] += cell[1]
                row["duration_sum"] += cell[2]
        return rows


class MetricsCollector:
    """Count every event of the library into Prometheus metrics on `registry`.

    Metrics (Prometheus conventions; label names in braces; `resilience` is the namespace):

    * `resilience_calls_total{operation,outcome}`: outcome "success", "failure", "ignored"
      (an error the breaker does not count, e.g. a 404) or "rejected" (refused unrun: circuit
      open, bulkhead full, rate limited). Calls are seen by circuit breakers, which emit one
      event per call; rejections by breakers, bulkheads and rate limiters.
    * `resilience_call_duration_seconds{operation}`: histogram of completed call durations.
    * `resilience_retries_total{operation}`: retries started (failed attempts that are retried).
    * `resilience_retries_exhausted_total{operation,reason}`: retry loops that gave up on a
      retryable failure: "attempts", "deadline", "budget", "retry_after", "forced_open", or
      the local refusal that ended it ("circuit_open", "bulkhead_full", "rate_limited"). A
      PERMANENT error was never retried and is not counted here.
    * `resilience_rejections_total{operation,reason}`: every refusal, by reason.
    * `resilience_rate_limited_total{operation}`: calls refused by a rate limiter.
    * `resilience_timeouts_total{operation}`.
    * `resilience_circuit_state{operation,state}`: 1 for the breaker's current state, 0 for
      the others (seeded from live breakers when attached and when a breaker is first seen).
    * `resilience_circuit_transitions_total{operation,from_state,to_state}`.
    * `resilience_fallbacks_total{operation,level}`: calls a fallback chain served below FULL
      or after a failed step; `level` is the DegradationLevel name.
    * `resilience_failover_active_tier{client,tier}`: 1 for the active tier, after a switch.
    * `resilience_failover_switches_total{client,from_tier,to_tier}`.
    * `resilience_queue_depth{queue,priority}`, `resilience_queue_enqueued_total{queue,priority}`,
      `resilience_queue_delivered_total{queue}`, `resilience_queue_dead_letters_total{queue}`.
    * `resilience_bulkhead_running{operation}`, `resilience_bulkhead_waiting{operation}`.
    * `resilience_faults_injected_total{operation,kind}`, `resilience_config_changes_total`.

    Label values are the names the primitives were given (an operation's name, never a
    URL), so their number stays bounded.

    Args:
        registry: a `prometheus_client.CollectorRegistry`; None: a new one (`.registry`).
            One collector per registry (a second one would register the same names twice).
        namespace: the metric name prefix ("resilience": `resilience_calls_total`); "" for
            none.
        buckets: the duration histogram's bucket bounds in seconds (+Inf is implied); None:
            `DEFAULT_BUCKETS`.
        const_labels: labels added to every sample, e.g. `{"service": "checkout"}`.

    Raises:
        ValueError: `registry` already holds these metrics (from prometheus_client).
        ConfigError: a bad namespace, bucket list or constant label (all listed).

    Example:
        >>> import resilience as rs
        >>> with rs.MetricsCollector(const_labels={"service": "shop"}) as collector:
        ...     _ = rs.CircuitBreaker("collector-doc").call(abs, -1)
        >>> collector.snapshot()["collector-doc"]["successes"]
        1
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "resilience",
        buckets: Iterable[float] | None = None,
        const_labels: Mapping[str, str] | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry

        self.namespace, bounds, self._const = _check_options(namespace, buckets, const_labels)
        self.buckets: tuple[float, ...] = bounds
        self._tally = _Tally(bounds)
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        self.registry.register(self)

    def metric_name(self, family: str) -> str:
        """The full name of a family in `FAMILIES` ("calls_total" -> "resilience_calls_total").

        Example:
            >>> MetricsCollector(namespace="shop").metric_name("calls_total")
            'shop_calls_total'
        """
        return f"{self.namespace}_{family}" if self.namespace else family

    # --- lifecycle ----------------------------------------------------------------------------

    def attach(self) -> MetricsCollector:
        """Start counting events (idempotent); returns self. Seeds the circuit-state gauge
        from the breakers alive now (again after a detach: states may have moved since)."""
        with self._lock:
            if self._unsubscribe is not None:
                return self
            with self._tally.lock:
                self._tally.seen_breakers.clear()
            self._unsubscribe = events.subscribe(self._tally.on_event)
        for name in _registry.registered("breaker"):
            self._tally.seed_breaker(name)
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
        return self._tally.snapshot()

    def describe(self) -> list[Metric]:
        """The metric families, without samples (prometheus_client's Collector protocol)."""
        return list(self._families(None))

    def collect(self) -> list[Metric]:
        """Every sample, read at scrape time (prometheus_client's Collector protocol)."""
        return list(self._families(self._tally.read()))

    def _families(
        self,
        data: tuple[
            dict[str, list[tuple[tuple[str, ...], float]]], dict[str, tuple[list[int], float]]
        ]
        | None,
    ) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        const_names = tuple(k for k, _ in self._const)
        const_values = tuple(v for _, v in self._const)
        for family in FAMILIES:
            name = self.metric_name(family.name)
            labels = [*const_names, *family.labels]
            if family.kind == "histogram":
                hist = HistogramMetricFamily(name, family.help, labels=labels)
                for op, (cells, total) in (data[1] if data else {}).items():
                    running = 0
                    buckets: list[tuple[str, float]] = []
                    for bound, n in zip((*self.buckets, math.inf), cells, strict=True):
                        running += n
                        buckets.append((_le(bound), running))
                    hist.add_metric([*const_values, op], buckets, total)
                yield hist
                continue
            cls = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            metric = cls(name, family.help, labels=labels)
            for values, value in data[0][family.name] if data else ():
                metric.add_metric([*const_values, *values], value)
            yield metric

    def __repr__(self) -> str:
        return (
            f"MetricsCollector(attached={self.attached}, namespace={self.namespace!r}, "
            f"operations={len(self._tally.ops)})"
        )


def _le(bound: float) -> str:
    # prometheus_client's own spelling of bucket bounds: "0.005", "1.0", "+Inf"
    return "+Inf" if math.isinf(bound) else repr(float(bound))


# --- health ---------------------------------------------------------------------------------


class BreakerHealth(TypedDict):
    """One circuit breaker in `health()`.

    Example:
        >>> sorted(BreakerHealth.__annotations__)
        ['calls', 'critical', 'failure_rate', 'opened_at', 'remaining', 'state']
    """

    state: str
    failure_rate: float
    calls: int
    remaining: float | None
    """Seconds until trial calls; None when forced open (no end)."""
    opened_at: float | None
    critical: bool


class FailoverHealth(TypedDict, total=False):
    """One failover client in `health()` (`error` only when reading it failed).

    Example:
        >>> sorted(FailoverHealth.__annotations__)
        ['active_tier', 'error', 'tiers_down']
    """

    active_tier: str
    tiers_down: list[str]
    error: str


class Health(TypedDict):
    """What `health()` returns; JSON-serialisable as is.

    Example:
        >>> sorted(health(prefix="no-such-operation."))
        ['breakers', 'failovers', 'half_open', 'open', 'status']
    """

    status: Literal["ok", "degraded", "down"]
    breakers: dict[str, BreakerHealth]
    open: list[str]
    half_open: list[str]
    failovers: dict[str, FailoverHealth]


_DOWN_STATES = frozenset({"open", "forced_open"})
_UP_STATES = frozenset({"closed", "disabled"})


def health(critical: Iterable[str] = (), *, prefix: str = "") -> Health:
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
        A `Health` dict: {"status", "breakers": {name: {"state", "failure_rate", "calls",
        "remaining" (seconds until trial calls, None while forced open), "opened_at",
        "critical"}}, "open": [names], "half_open": [names], "failovers": {name:
        {"active_tier", "tiers_down"}}} (failover clients that register themselves).

    Example:
        >>> import resilience as rs
        >>> br = rs.CircuitBreaker("health-doc")
        >>> rs.health()["breakers"]["health-doc"]["state"]
        'closed'
        >>> br.force_open(); rs.health(critical=["health-doc"])["status"]
        'down'
    """
    wanted = set(critical)
    breakers: dict[str, BreakerHealth] = {}
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
    failovers: dict[str, FailoverHealth] = {}
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
    status_: Literal["ok", "degraded", "down"]
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

_DEBUG, _INFO, _WARNING = 10, 20, 30
_METHODS = {_DEBUG: "debug", _INFO: "info", _WARNING: "warning"}

_FIXED_LEVELS: dict[str, int] = {
    # per-call events: what every call does is not news
    "CallCompleted": _DEBUG,
    "CallRejected": _DEBUG,
    "RetryAttempted": _DEBUG,
    "TimeoutOccurred": _DEBUG,
    "BulkheadEvent": _DEBUG,
    "FaultInjected": _DEBUG,
    "QueueEnqueued": _DEBUG,
    "QueueDelivered": _DEBUG,
    "QueueDepth": _DEBUG,
    # what an operator wants to know about
    "FailoverSwitched": _WARNING,
    "QueueDeadLettered": _WARNING,
    "StoreUnavailable": _WARNING,
    "TierRecovered": _INFO,
    "ConfigChanged": _INFO,
}


def _level_of(event: Any) -> int:
    """The log level of an event that has no fixed one."""
    kind = type(event).__name__
    if kind == "StateTransition":
        return _WARNING if event.to_state in _DOWN_STATES else _INFO
    if kind == "FallbackServed":
        return _WARNING if event.degradation in ("LIMITED", "CACHE_ONLY") else _INFO
    if kind == "RetryGaveUp":
        return _DEBUG if event.reason == "permanent" else _INFO
    return _INFO


def _redact(text: str) -> str:
    """Keep "what: ErrorType" of a "what: ErrorType: message" reason; drop the message, which
    may hold what the caller passed (a token in a URL, a payload)."""
    head, sep, rest = text.partition(": ")
    if not sep:
        return text
    token = rest.partition(":")[0].strip()
    return f"{head}: {token}" if token.isidentifier() else head


_REDACTED = {"QueueDeadLettered": "reason", "FailoverSwitched": "reason"}


def event_fields(event: events.Event) -> dict[str, Any]:
    """An event's fields as a dict, safe to log: error messages that some reasons quote are
    cut down to the error's type.

    Example:
        >>> from resilience import events
        >>> event_fields(events.QueueDeadLettered("outbox", 7, "permanent: ValueError: pw=hunter2"))
        {'operation': 'outbox', 'seq': 7, 'reason': 'permanent: ValueError'}
    """
    import dataclasses

    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    redact = _REDACTED.get(type(event).__name__)
    if redact is not None and isinstance(fields.get(redact), str):
        fields[redact] = _redact(fields[redact])
    return fields


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _render(name: str, fields: Mapping[str, Any]) -> str:
    parts = [name]
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class _Limiter:
    """At most `limit` lines per `window` seconds per key; counts what it held back."""

    __slots__ = ("clock", "limit", "lock", "window", "windows")

    def __init__(self, per_second: float, clock: Callable[[], float]) -> None:
        self.limit = max(1, int(per_second))
        self.window = self.limit / per_second
        self.clock = clock
        self.lock = threading.Lock()
        # key -> [window start, lines written in it, held back, level of what was held back]
        self.windows: dict[tuple[str, str], list[Any]] = {}

    def admit(self, key: tuple[str, str], level: int) -> int | None:
        """None: hold this line back. Else write it, saying how many were held back."""
        now = self.clock()
        with self.lock:
            w = self.windows.get(key)
            if w is None or now - w[0] >= self.window:
                self.windows[key] = [now, 1, 0, level]
                return 0 if w is None else int(w[2])
            if w[1] < self.limit:
                w[1] += 1
                return 0
            w[2] += 1
            w[3] = max(w[3], level)
            return None

    def drain(self) -> list[tuple[tuple[str, str], int, int]]:
        with self.lock:
            out = [(key, w[2], w[3]) for key, w in self.windows.items() if w[2]]
            for w in self.windows.values():
                w[2] = 0
            return out


def log_events(
    logger: Any = None,
    *,
    max_per_second: float | None = 10.0,
    clock: Any = None,
) -> Callable[[], None]:
    """Write events to a logger; returns the unsubscribe function.

    Works with a standard library `logging.Logger` (or `LoggerAdapter`), and with a structlog
    logger under any configuration: structlog's default one and `add_log_level` included
    (no event field is called `level`, `event`, `timestamp`, `logger`, `msg`, `exc_info`
    or `stack_info`). The event name is the type in snake case ("state_transition"); its
    fields are the event's fields. A stdlib line reads `state_transition operation=payments
    from_state=closed to_state=open ...`, and the fields are also on the record (`extra=`),
    for JSON formatters.

    Levels: per-call events (failed calls, rejections, retries, timeouts, occupancy, queue
    traffic, a PERMANENT error not retried) at DEBUG; a plain success is never logged, and
    while the logger is above DEBUG when `log_events` is called, primitives keep their
    lock-free happy path (`events.subscribe(per_call=False)`); a breaker opening, a failover switch,
    a dead letter, a fallback to LIMITED or CACHE_ONLY at WARNING; a breaker closing or
    probing, a retry loop giving up, other fallbacks, a recovered tier, a config change at
    INFO. Events below the logger's level cost one check and build no line.

    At most `max_per_second` lines are written per (operation, event type); the next line
    written for that pair carries `suppressed=N`, and the unsubscribe function writes one
    `log_suppressed` line for each pair with lines still held back.

    Events carry names, counts, durations and error *type* names, never arguments, payloads
    or messages; reasons that quote an error message are cut to its type. A logger that
    raises never breaks the protected call and never prints a traceback: one line on stderr
    says it failed.

    Args:
        logger: a `logging.Logger`, a `LoggerAdapter`, or a structlog logger; None:
            `structlog.get_logger("resilience")` (structlog is imported only then).
        max_per_second: lines per second per (operation, event type); None: no limit.
        clock: where the rate limit reads time (`monotonic()`); None: the system's.

    Example:
        >>> import logging, sys, resilience as rs
        >>> logger = logging.getLogger("resilience.doc")
        >>> logger.addHandler(logging.StreamHandler(sys.stdout))
        >>> stop = log_events(logger)
        >>> rs.CircuitBreaker("log-doc").force_open(); stop()
        state_transition operation=log-doc from_state=closed to_state=forced_open reason=...
    """
    import logging
    import time

    if logger is None:
        import structlog

        logger = structlog.get_logger("resilience")
    if max_per_second is not None and not max_per_second > 0:
        from ._errors import ConfigError

        raise ConfigError([("max_per_second", f"must be > 0 or None, got {max_per_second!r}")])
    stdlib = isinstance(logger, (logging.Logger, logging.LoggerAdapter))
    enabled = getattr(logger, "isEnabledFor", None) or getattr(logger, "is_enabled_for", None)
    mono = time.monotonic if clock is None else clock.monotonic
    limiter = None if max_per_second is None else _Limiter(max_per_second, mono)
    plain = [False]  # a logger that takes no keyword arguments: write rendered lines
    complained = [False]
    shapes: dict[type[events.Event], tuple[str, int | None]] = {}

    def write(level: int, name: str, fields: dict[str, Any]) -> None:
        if stdlib:
            logger.log(level, "%s", _render(name, fields), extra=fields)
            return
        method = getattr(logger, _METHODS[level])
        if not plain[0]:
            try:
                method(name, **fields)
                return
            except TypeError:
                plain[0] = True  # e.g. a print-like logger: fall through to one string
        method(_render(name, fields))

    def fail(exc: Exception) -> None:
        if complained[0]:
            return
        complained[0] = True
        import sys

        try:
            sys.stderr.write(
                f"resilience.log_events: writing to {logger!r:.80} failed "
                f"({type(exc).__name__}); events may be missing from the log\n"
            )
        except Exception:  # pragma: no cover - no stderr either
            pass

    def on_event(event: events.Event) -> None:
        try:
            cls = type(event)
            shape = shapes.get(cls)
            if shape is None:
                shape = shapes[cls] = (_snake(cls.__name__), _FIXED_LEVELS.get(cls.__name__))
            name, level = shape
            if level is None:
                level = _level_of(event)
            elif cls is events.CallCompleted and event.outcome == "success":  # type: ignore[attr-defined]
                return  # a plain success is not worth a line at any level
            if enabled is not None and not enabled(level):
                return
            suppressed = 0
            if limiter is not None:
                admitted = limiter.admit((event.operation, name), level)
                if admitted is None:
                    return
                suppressed = admitted
            fields = event_fields(event)
            if suppressed:
                fields["suppressed"] = suppressed
            write(level, name, fields)
        except Exception as exc:  # the log is not worth breaking the protected call for
            fail(exc)

    # Per-call events are DEBUG: a logger above DEBUG leaves the primitives' fast path alone.
    try:
        debug = enabled is None or bool(enabled(_DEBUG))
    except Exception:
        debug = True
    unsubscribe = events.subscribe(on_event, per_call=debug)

    def stop() -> None:
        unsubscribe()
        if limiter is None:
            return
        for (op, name), count, level in limiter.drain():
            try:
                if enabled is None or enabled(level):
                    write(
                        level,
                        "log_suppressed",
                        {"operation": op, "suppressed_event": name, "suppressed": count},
                    )
            except Exception as exc:
                fail(exc)

    return stop
