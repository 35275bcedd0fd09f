"""OTelMetrics: the same metrics through an OTel meter (read back with the SDK's in-memory
reader) and span events on a real span (the SDK's in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import resilience as rs
from resilience import events
from resilience.integrations.opentelemetry import OTelMetrics, instrument_name
from resilience.metrics import FAMILIES
from resilience.testing import VirtualClock


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def otel(reader: InMemoryMetricReader) -> Iterator[OTelMetrics]:
    o = OTelMetrics(MeterProvider(metric_readers=[reader])).attach()
    yield o
    o.detach()
    assert not events.enabled


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def point(reader: InMemoryMetricReader, name: str, **attrs: str) -> Any:
    for p in points(reader).get(name, []):
        if dict(p.attributes) == attrs:
            return p
    return None


def _down() -> None:
    raise ConnectionError("down")


def test_metrics_read_back_through_the_sdk(otel: OTelMetrics, reader: InMemoryMetricReader) -> None:
    clock = VirtualClock()
    br = rs.CircuitBreaker("o.br", minimum_calls=2, clock=clock)

    def slow() -> str:
        clock.advance(0.2)
        return "ok"

    br.call(slow)
    br.call(slow)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            br.call(_down)
    with pytest.raises(rs.CircuitOpenError):
        br.call(slow)
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.1), clock=clock, name="o.rt")
    with pytest.raises(ConnectionError):
        rt.call(_down)

    assert point(reader, "resilience_calls", operation="o.br", outcome="success").value == 2
    assert point(reader, "resilience_calls", operation="o.br", outcome="failure").value == 2
    assert point(reader, "resilience_calls", operation="o.br", outcome="rejected").value == 1
    hist = point(reader, "resilience_call_duration_seconds", operation="o.br")
    assert hist.count == 4
    assert hist.sum == pytest.approx(0.4)
    assert point(reader, "resilience_circuit_state", operation="o.br", state="open").value == 1
    assert point(reader, "resilience_circuit_state", operation="o.br", state="closed").value == 0
    t = point(
        reader, "resilience_circuit_transitions", operation="o.br", from_state="closed",
        to_state="open",
    )  # fmt: skip
    assert t.value == 1
    assert point(reader, "resilience_retries", operation="o.rt").value == 2
    ex = point(reader, "resilience_retries_exhausted", operation="o.rt", reason="attempts")
    assert ex.value == 1
    # every family has its instrument, named like the Prometheus metric minus `_total`
    assert set(otel.instruments) == {instrument_name(f) for f in FAMILIES}
    assert otel.snapshot()["o.br"]["calls"] == 4


def test_span_events_on_a_real_span(otel: OTelMetrics) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    clock = VirtualClock()
    secret = "sk-SECRET"

    def flaky(token: str) -> None:
        raise ConnectionError(f"refused for {token}")

    with tracer.start_as_current_span("checkout"):
        rt = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(0.1), clock=clock, name="o.s")
        with pytest.raises(ConnectionError):
            rt.call(flaky, secret)
        chain = rs.FallbackChain(rs.Step(_down), rs.Default("d"), name="o.s.fb")
        assert chain() == "d"
        br = rs.CircuitBreaker("o.s.br", clock=clock)
        br.force_open()
        with pytest.raises(rs.CircuitOpenError):
            br.call(int)
        limiter = rs.RateLimiter(rate=1, per=60.0, name="o.s.rl", clock=clock)
        limiter.call(int)
        with pytest.raises(rs.RateLimited):
            limiter.call(int)  # not a breaker: no span event
    (span,) = exporter.get_finished_spans()
    got = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert [name for name, _ in got] == [
        "resilience.retry",
        "resilience.fallback",
        "resilience.circuit_open",
    ]
    retry, fallback, rejected = (attrs for _, attrs in got)
    assert retry["resilience.operation"] == "o.s"
    assert retry["resilience.attempt"] == 1
    assert retry["resilience.error"] == "ConnectionError"
    assert fallback["resilience.degradation"] == "LIMITED"
    assert rejected["resilience.reason"] == "forced_open"
    assert secret not in repr(got)


def test_no_span_no_error(otel: OTelMetrics) -> None:
    # outside any span (a non-recording current span) nothing breaks
    rt = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(0), name="o.nospan")
    with pytest.raises(ConnectionError):
        rt.call(_down)
    assert otel.snapshot()["o.nospan"]["retries"] == 1


def test_docstring_examples_run() -> None:
    import doctest

    import resilience.integrations.opentelemetry as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
