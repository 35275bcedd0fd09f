"""OpenTelemetry: the library's metrics through an OTel meter, and span events.

`OTelMetrics(meter_provider=None).attach()` counts the same event stream as
`rs.MetricsCollector` into OpenTelemetry instruments, under the same names (counters without
their `_total`, which OTel's Prometheus exporter adds back, so the shipped alert rules and
dashboard read both), and adds a span event to the current span for every retry, every
fallback served and every call an open breaker refused: a trace shows why a request was slow
or degraded.

This is the only module that imports opentelemetry (the "otel" extra: opentelemetry-api; an
SDK or a vendor distribution provides the meter and tracer providers).

Example:
    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    >>> import resilience as rs
    >>> from resilience.integrations.opentelemetry import OTelMetrics
    >>> reader = InMemoryMetricReader()
    >>> otel = OTelMetrics(MeterProvider(metric_readers=[reader])).attach()
    >>> rs.CircuitBreaker("otel-doc").call(len, "abc")
    3
    >>> otel.detach()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from .. import events
from .._version import __version__
from ..metrics import DEFAULT_BUCKETS, FAMILIES, Family, _Tally, event_fields

__all__ = ["SPAN_EVENTS", "OTelMetrics", "instrument_name"]

_BREAKER_REJECTIONS = frozenset({"circuit_open", "half_open_full", "forced_open"})

SPAN_EVENTS: dict[type[events.Event], str] = {
    events.RetryAttempted: "resilience.retry",
    events.FallbackServed: "resilience.fallback",
    events.CallRejected: "resilience.circuit_open",
}
"""The span event each kind of event becomes (CallRejected: only a breaker's refusals)."""


def instrument_name(family: Family, namespace: str = "resilience") -> str:
    """The OTel instrument name of a metric family: counters lose `_total`.

    Example:
        >>> from resilience.metrics import FAMILIES
        >>> instrument_name(FAMILIES[0])
        'resilience_calls'
    """
    name = family.name.removesuffix("_total") if family.kind == "counter" else family.name
    return f"{namespace}_{name}" if namespace else name


class OTelMetrics:
    """Count the library's events into OpenTelemetry instruments; add span events.

    Counters are observable counters and gauges observable gauges, read when the SDK
    collects (the per-call cost is the same small tally `MetricsCollector` keeps); the call
    duration is an OTel histogram recorded per call, in seconds. Attributes are the same
    label names as the Prometheus metrics (`operation`, `outcome`, `reason`, ...).

    Span events, on the span current when the event is emitted (none when nothing records):
    `resilience.retry` (attributes `resilience.operation`, `resilience.attempt`,
    `resilience.delay`, `resilience.verdict`, `resilience.error`: the error's *type*),
    `resilience.fallback` (`resilience.degradation`, `resilience.source`, ...) and
    `resilience.circuit_open` (`resilience.reason`, `resilience.retry_after`).

    Args:
        meter_provider: an OTel `MeterProvider`; None: the global one
            (`opentelemetry.metrics.get_meter_provider()`).
        namespace: the instrument name prefix, as `MetricsCollector`'s.
        span_events: add span events (default True).

    Example:
        >>> from opentelemetry.sdk.metrics import MeterProvider
        >>> otel = OTelMetrics(MeterProvider())
        >>> with otel:
        ...     pass
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        namespace: str = "resilience",
        span_events: bool = True,
    ) -> None:
        provider = (
            meter_provider if meter_provider is not None else otel_metrics.get_meter_provider()
        )
        self.namespace = namespace
        self.span_events = span_events
        self._tally = _Tally(DEFAULT_BUCKETS)
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        meter = provider.get_meter("resilience", __version__)
        self._meter = meter
        self.instruments: dict[str, Any] = {}
        for family in FAMILIES:
            name = instrument_name(family, namespace)
            if family.kind == "histogram":
                self._duration = meter.create_histogram(name, unit="s", description=family.help)
                self.instruments[name] = self._duration
            elif family.kind == "counter":
                self.instruments[name] = meter.create_observable_counter(
                    name, callbacks=[self._reader(family)], description=family.help
                )
            else:
                self.instruments[name] = meter.create_observable_gauge(
                    name, callbacks=[self._reader(family)], description=family.help
                )

    def _reader(self, family: Family) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            series, _ = self._tally.read()
            return [
                Observation(value, dict(zip(family.labels, labels, strict=True)))
                for labels, value in series[family.name]
            ]

        return observe

    # --- lifecycle ----------------------------------------------------------------------------

    def attach(self) -> OTelMetrics:
        """Start counting events and adding span events (idempotent); returns self."""
        with self._lock:
            if self._unsubscribe is None:
                self._unsubscribe = events.subscribe(self._on_event)
        return self

    def detach(self) -> None:
        """Stop (idempotent); what was counted stays observable."""
        with self._lock:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    @property
    def attached(self) -> bool:
        """Whether events are being counted now."""
        return self._unsubscribe is not None

    def __enter__(self) -> OTelMetrics:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per operation: the same counts as `MetricsCollector.snapshot()`."""
        return self._tally.snapshot()

    # --- the listener ---------------------------------------------------------------------

    def _on_event(self, event: events.Event) -> None:
        cls = type(event)
        self._tally.on_event(event)
        if cls is events.CallCompleted:
            self._duration.record(event.duration, {"operation": event.operation})  # type: ignore[attr-defined]
            return
        if not self.span_events:
            return
        name = SPAN_EVENTS.get(cls)
        if name is None:
            return
        if cls is events.CallRejected and event.reason not in _BREAKER_REJECTIONS:  # type: ignore[attr-defined]
            return
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.add_event(
            name,
            {
                f"resilience.{key}": value
                for key, value in event_fields(event).items()
                if isinstance(value, (str, bool, int, float))
            },
        )

    def __repr__(self) -> str:
        return f"OTelMetrics(attached={self.attached}, namespace={self.namespace!r})"
