"""MetricsCollector: real primitives' events -> Prometheus text and a per-operation snapshot."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resilience as rs
from resilience import events
from resilience.metrics import MetricsCollector
from resilience.testing import VirtualClock

_law_ids = itertools.count()


@pytest.fixture
def collector() -> Iterator[MetricsCollector]:
    c = MetricsCollector().attach()
    yield c
    c.detach()


def samples(c: MetricsCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, parsed back: (name, sorted labels) -> value."""
    text = generate_latest(c.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def value(c: MetricsCollector, name: str, **labels: str) -> float | None:
    return samples(c).get((name, tuple(sorted(labels.items()))))


def failing(exc: BaseException) -> Any:
    def fn() -> None:
        raise exc

    return fn


def test_breaker_calls_durations_and_transitions(collector: MetricsCollector) -> None:
    clock = VirtualClock()
    br = rs.CircuitBreaker(
        "m.breaker", minimum_calls=4, window=rs.CountWindow(4), open_duration=5, clock=clock
    )

    def slow_ok() -> str:
        clock.advance(0.3)
        return "ok"

    br.call(slow_ok)
    br.call(slow_ok)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            br.call(failing(ConnectionError("down")))
    assert br.state is rs.CircuitState.OPEN
    with pytest.raises(rs.CircuitOpenError):
        br.call(slow_ok)
    with pytest.raises(FileNotFoundError):  # PERMANENT errors are "ignored" by the breaker
        clock.advance(5)
        br.call(failing(FileNotFoundError("x")))

    op = "m.breaker"
    assert value(collector, "resilience_calls_total", operation=op, outcome="success") == 2
    assert value(collector, "resilience_calls_total", operation=op, outcome="failure") == 2
    assert value(collector, "resilience_calls_total", operation=op, outcome="rejected") == 1
    assert value(collector, "resilience_calls_total", operation=op, outcome="ignored") == 1
    assert value(collector, "resilience_call_duration_seconds_count", operation=op) == 5
    assert value(collector, "resilience_call_duration_seconds_sum", operation=op) == (
        pytest.approx(0.6)
    )
    assert value(collector, "resilience_call_duration_seconds_bucket", operation=op, le="0.5") == 5
    t = "resilience_circuit_transitions_total"
    assert value(collector, t, operation=op, from_state="closed", to_state="open") == 1
    assert value(collector, t, operation=op, from_state="open", to_state="half_open") == 1
    # the ignored trial freed its slot: still half-open
    state = {s: value(collector, "resilience_circuit_state", operation=op, state=s) for s in
             ("closed", "open", "half_open", "forced_open", "disabled")}  # fmt: skip
    assert state == {"closed": 0, "open": 0, "half_open": 1, "forced_open": 0, "disabled": 0}

    for _ in range(3):
        br.call(slow_ok)
    assert value(collector, "resilience_circuit_state", operation=op, state="closed") == 1
    assert value(collector, "resilience_circuit_state", operation=op, state="half_open") == 0
    assert value(collector, t, operation=op, from_state="half_open", to_state="closed") == 1

    snap = collector.snapshot()[op]
    assert snap["calls"] == 8
    assert (snap["successes"], snap["failures"], snap["ignored"]) == (5, 2, 1)
    assert snap["rejections"] == 1
    assert snap["transitions"] == 3
    assert snap["state"] == "closed"


def test_state_gauge_is_seeded_from_live_breakers() -> None:
    br = rs.CircuitBreaker("m.seeded")
    br.force_open()
    c = MetricsCollector().attach()
    try:
        assert value(c, "resilience_circuit_state", operation="m.seeded", state="forced_open") == 1
        late = rs.CircuitBreaker("m.seeded.late")
        late.call(int)  # first sight of a breaker created after attach()
        assert value(c, "resilience_circuit_state", operation="m.seeded.late", state="closed") == 1
    finally:
        c.detach()


def test_retries_and_gave_up(collector: MetricsCollector) -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), clock=clock, name="m.retry")
    attempts = iter([ConnectionError("1"), TimeoutError("2"), None])

    def flaky() -> str:
        exc = next(attempts)
        if exc is not None:
            raise exc
        return "ok"

    assert rt.call(flaky) == "ok"
    with pytest.raises(ConnectionError):
        rt.call(failing(ConnectionError("always")))
    with pytest.raises(ValueError, match="bad"):
        rt.call(failing(ValueError("bad")))

    assert value(collector, "resilience_retries_total", operation="m.retry") == 4
    ex = "resilience_retries_exhausted_total"
    assert value(collector, ex, operation="m.retry", reason="attempts") == 1
    # a PERMANENT error was never retried: it is not "exhausted"
    assert value(collector, ex, operation="m.retry", reason="permanent") is None
    snap = collector.snapshot()["m.retry"]
    assert (snap["retries"], snap["retries_exhausted"]) == (4, 1)


def test_fallbacks_by_level(collector: MetricsCollector) -> None:
    def primary(q: str) -> str:
        raise ConnectionError("primary down")

    chain = rs.FallbackChain(
        rs.Step(primary, level=rs.DegradationLevel.FULL),
        rs.Default("busy", level=rs.DegradationLevel.LIMITED),
        name="m.fallback",
    )
    assert [chain("a"), chain("b")] == ["busy", "busy"]
    assert (
        value(collector, "resilience_fallbacks_total", operation="m.fallback", level="LIMITED") == 2
    )
    assert collector.snapshot()["m.fallback"]["levels"] == {"LIMITED": 2}


def test_failover_active_tier(collector: MetricsCollector) -> None:
    clock = VirtualClock()
    up = {"dc1": True}

    def dc1() -> str:
        if not up["dc1"]:
            raise ConnectionError("dc1 unreachable")
        return "dc1"

    fo = rs.Failover(
        [rs.Tier("dc1", dc1), rs.Tier("dc2", lambda: "dc2")],
        name="m.ldap",
        breaker={"minimum_calls": 2, "failure_rate_threshold": 0.5},
        probe_interval=5,
        clock=clock,
    )
    assert fo.call() == "dc1"
    up["dc1"] = False
    assert [fo.call(), fo.call(), fo.call()] == ["dc2"] * 3
    tier = "resilience_failover_active_tier"
    assert value(collector, tier, client="m.ldap", tier="dc2") == 1
    assert value(collector, tier, client="m.ldap", tier="dc1") == 0
    up["dc1"] = True
    clock.advance(5)
    for _ in range(10):  # half-open trials go to dc1; it is active again once closed
        assert fo.call() == "dc1"
        if fo.active_tier == "dc1":
            break
    assert value(collector, tier, client="m.ldap", tier="dc1") == 1
    assert value(collector, tier, client="m.ldap", tier="dc2") == 0
    sw = "resilience_failover_switches_total"
    assert value(collector, sw, client="m.ldap", from_tier="dc1", to_tier="dc2") == 1
    assert value(collector, sw, client="m.ldap", from_tier="dc2", to_tier="dc1") == 1
    assert collector.snapshot()["m.ldap"]["active_tier"] == "dc1"


def test_queue_depth_and_flow(collector: MetricsCollector) -> None:
    q = rs.OfflineQueue(":memory:", name="m.outbox", max_attempts=1)
    try:
        q.put({"n": 1}, priority=rs.Priority.CRITICAL)
        q.put_many([({"n": 2}, rs.Priority.NORMAL), ({"n": 3}, rs.Priority.NORMAL)])
        d = "resilience_queue_depth"
        assert value(collector, d, queue="m.outbox", priority="CRITICAL") == 1
        assert value(collector, d, queue="m.outbox", priority="NORMAL") == 2
        assert value(collector, d, queue="m.outbox", priority="LOW") == 0
        enq = "resilience_queue_enqueued_total"
        assert value(collector, enq, queue="m.outbox", priority="NORMAL") == 2

        def send(item: Any) -> None:
            if item.payload["n"] == 3:
                raise ValueError("rejected by the sink")  # PERMANENT: dead letter

        q.drain(send)
        assert value(collector, d, queue="m.outbox", priority="CRITICAL") == 0
        assert value(collector, d, queue="m.outbox", priority="NORMAL") == 0
        assert value(collector, "resilience_queue_delivered_total", queue="m.outbox") == 2
        assert value(collector, "resilience_queue_dead_letters_total", queue="m.outbox") == 1
    finally:
        q.close()


def test_rate_limited_bulkhead_timeouts_and_faults(collector: MetricsCollector) -> None:
    clock = VirtualClock()
    limiter = rs.RateLimiter(rate=1, per=1.0, name="m.limited", clock=clock)
    limiter.call(int)
    for _ in range(3):
        with pytest.raises(rs.RateLimited):
            limiter.call(int)
    assert value(collector, "resilience_rate_limited_total", operation="m.limited") == 3
    assert (
        value(
            collector, "resilience_rejections_total", operation="m.limited", reason="rate_limited"
        )
        == 3
    )
    assert (
        value(collector, "resilience_calls_total", operation="m.limited", outcome="rejected") == 3
    )

    bh = rs.Bulkhead(1, name="m.bulkhead")

    def inner() -> None:
        assert value(collector, "resilience_bulkhead_running", operation="m.bulkhead") == 1
        with pytest.raises(rs.BulkheadFull):
            bh.call(int)

    bh.call(inner)
    assert value(collector, "resilience_bulkhead_running", operation="m.bulkhead") == 0
    assert (
        value(
            collector, "resilience_rejections_total", operation="m.bulkhead", reason="bulkhead_full"
        )
        == 1
    )

    chaos = rs.FaultInjection(error_rate=1.0, name="m.chaos")
    with pytest.raises(ConnectionError):
        chaos.call(int)
    assert (
        value(collector, "resilience_faults_injected_total", operation="m.chaos", kind="error") == 1
    )
    assert collector.snapshot()["m.chaos"]["faults_injected"] == 1

    events.emit(events.TimeoutOccurred("m.timeout", 2.0))
    events.emit(events.ConfigChanged("*", "production"))
    assert value(collector, "resilience_timeouts_total", operation="m.timeout") == 1
    assert value(collector, "resilience_config_changes_total") >= 1  # type: ignore[operator]


def test_detach_stops_counting_and_keeps_values() -> None:
    c = MetricsCollector().attach()
    br = rs.CircuitBreaker("m.detach")
    br.call(int)
    c.detach()
    c.detach()  # idempotent
    assert not c.attached
    for _ in range(5):
        br.call(int)
    assert value(c, "resilience_calls_total", operation="m.detach", outcome="success") == 1
    assert c.snapshot()["m.detach"]["calls"] == 1
    c.attach()
    c.attach()  # idempotent: one subscription, not two
    br.call(int)
    c.detach()
    assert c.snapshot()["m.detach"]["calls"] == 2


def test_two_collectors_on_two_registries() -> None:
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    with MetricsCollector(r1) as a:
        br = rs.CircuitBreaker("m.two")
        br.call(int)
        with MetricsCollector(r2) as b:
            br.call(int)
    assert a.registry is r1
    assert b.registry is r2
    assert value(a, "resilience_calls_total", operation="m.two", outcome="success") == 2
    assert value(b, "resilience_calls_total", operation="m.two", outcome="success") == 1
    with pytest.raises(ValueError, match="Duplicated"):
        MetricsCollector(r1)


def test_thread_safety_under_8_threads(collector: MetricsCollector) -> None:
    br = rs.CircuitBreaker("m.threads", minimum_calls=10**6, window=rs.CountWindow(10**6))
    rt = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(0), name="m.threads.retry")
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often so unlocked read-modify-writes race
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for n in range(500):
            if n % 5 == 0:
                try:
                    br.call(failing(ConnectionError("x")))
                except ConnectionError:
                    pass
            else:
                br.call(int)
            rt.call(_fails_once())

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    snap = collector.snapshot()
    assert snap["m.threads"]["calls"] == 4000
    assert (snap["m.threads"]["successes"], snap["m.threads"]["failures"]) == (3200, 800)
    assert snap["m.threads.retry"]["retries"] == 4000
    op = "m.threads"
    assert value(collector, "resilience_calls_total", operation=op, outcome="success") == 3200
    assert value(collector, "resilience_calls_total", operation=op, outcome="failure") == 800
    assert value(collector, "resilience_call_duration_seconds_count", operation=op) == 4000
    assert value(collector, "resilience_retries_total", operation="m.threads.retry") == 4000


def _fails_once() -> Any:
    first = [True]

    def once() -> None:
        if first[0]:
            first[0] = False
            raise ConnectionError("retry me")

    return once


def test_prometheus_is_not_loaded_by_import_resilience_or_health() -> None:
    code = (
        "import sys, resilience as rs; rs.health(); rs.FaultInjection;"
        "print('prometheus_client' in sys.modules, 'structlog' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_broken_registry_argument_fails_clearly() -> None:
    with pytest.raises((TypeError, AttributeError)):
        MetricsCollector(registry="not a registry")  # type: ignore[arg-type]


def test_docstring_examples_run() -> None:
    import doctest

    import resilience.metrics

    result = doctest.testmod(resilience.metrics, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.anyio
async def test_async_breaker_and_retry_are_counted(collector: MetricsCollector) -> None:
    import anyio

    clock = VirtualClock()
    br = rs.CircuitBreaker("m.async", minimum_calls=100, clock=clock)
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), clock=clock)
    pipe = rs.Pipeline(rt, br)
    failures = iter([True, False, True, True, False])

    async def call() -> str:
        await anyio.lowlevel.checkpoint()
        clock.advance(0.01)
        if next(failures):
            raise ConnectionError("flaky")
        return "ok"

    assert await pipe.acall(call) == "ok"
    assert await pipe.acall(call) == "ok"
    snap = collector.snapshot()["m.async"]
    assert (snap["calls"], snap["successes"], snap["failures"]) == (5, 2, 3)
    assert snap["retries"] == 3  # the unnamed Retry is named after the next stage
    assert value(collector, "resilience_call_duration_seconds_sum", operation="m.async") == (
        pytest.approx(0.05)
    )


def test_attaching_to_an_open_breaker_whose_time_is_up_shows_half_open() -> None:
    clock = VirtualClock()
    br = rs.CircuitBreaker("m.elapsed", minimum_calls=1, open_duration=5, clock=clock)
    with pytest.raises(ConnectionError):
        br.call(failing(ConnectionError("x")))
    clock.advance(5)  # nobody has looked since: still OPEN inside, HALF_OPEN when read
    with MetricsCollector() as c:
        # seeding reads the state; the transition it causes arrives through our own listener
        assert value(c, "resilience_circuit_state", operation="m.elapsed", state="half_open") == 1
        assert value(c, "resilience_circuit_state", operation="m.elapsed", state="open") == 0
        t = "resilience_circuit_transitions_total"
        assert value(c, t, operation="m.elapsed", from_state="open", to_state="half_open") == 1
        assert c.snapshot()["m.elapsed"]["state"] == "half_open"


@given(st.lists(st.sampled_from(["ok", "fail", "ignored", "slow"]), max_size=60))
def test_snapshot_and_exposition_agree(script: list[str]) -> None:
    clock = VirtualClock()
    name = f"m.law.{next(_law_ids)}"
    br = rs.CircuitBreaker(
        name,
        minimum_calls=10**6,
        window=rs.CountWindow(10**6),
        slow_call_threshold=1.0,
        clock=clock,
    )

    def step(kind: str) -> None:
        if kind == "fail":
            raise ConnectionError("x")
        if kind == "ignored":
            raise FileNotFoundError("x")
        if kind == "slow":
            clock.advance(2)

    with MetricsCollector() as c:
        for kind in script:
            try:
                br.call(step, kind)
            except OSError:
                pass
    snap = c.snapshot().get(name, {"calls": 0, "successes": 0, "failures": 0, "ignored": 0})
    assert snap["calls"] == len(script)
    assert snap["calls"] == snap["successes"] + snap["failures"] + snap["ignored"]
    assert snap["failures"] == script.count("fail")
    assert snap["ignored"] == script.count("ignored")
    assert snap["successes"] == script.count("ok") + script.count("slow")
    if script:
        assert snap["slow_calls"] == script.count("slow")
    for outcome, key in (("success", "successes"), ("failure", "failures"), ("ignored", "ignored")):
        assert (value(c, "resilience_calls_total", operation=name, outcome=outcome) or 0) == snap[
            key
        ]


def test_reattach_refreshes_the_state_gauge() -> None:
    br = rs.CircuitBreaker("m.reattach")
    c = MetricsCollector().attach()
    c.detach()
    br.force_open()  # while detached: not seen
    assert value(c, "resilience_circuit_state", operation="m.reattach", state="closed") == 1
    c.attach()
    try:
        assert (
            value(c, "resilience_circuit_state", operation="m.reattach", state="forced_open") == 1
        )
        assert value(c, "resilience_circuit_state", operation="m.reattach", state="closed") == 0
    finally:
        c.detach()


# --- options, honest reasons, config changes ------------------------------------------------


def test_namespace_buckets_and_const_labels() -> None:
    clock = VirtualClock()
    c = MetricsCollector(
        namespace="shop", buckets=[0.1, 1.0, 0.5], const_labels={"service": "checkout"}
    ).attach()
    try:
        br = rs.CircuitBreaker("m.opts", clock=clock)

        def takes(seconds: float) -> None:
            clock.advance(seconds)

        for seconds in (0.05, 0.3, 0.7, 3.0):
            br.call(takes, seconds)
    finally:
        c.detach()
    assert c.buckets == (0.1, 0.5, 1.0)
    labels = {"service": "checkout", "operation": "m.opts"}
    assert value(c, "shop_calls_total", outcome="success", **labels) == 4
    bucket = "shop_call_duration_seconds_bucket"
    got = {le: value(c, bucket, le=le, **labels) for le in ("0.1", "0.5", "1.0", "+Inf")}
    assert got == {"0.1": 1, "0.5": 2, "1.0": 3, "+Inf": 4}
    assert value(c, "shop_call_duration_seconds_sum", **labels) == pytest.approx(4.05)
    names = {name for name, _ in samples(c)}
    assert not any(n.startswith("resilience_") for n in names)
    assert all(dict(lbls).get("service") == "checkout" for _, lbls in samples(c))


def test_bad_options_are_one_config_error_listing_each() -> None:
    with pytest.raises(rs.ConfigError) as info:
        MetricsCollector(
            namespace="has space",
            buckets=["x"],  # type: ignore[list-item]
            const_labels={"operation": "clash", "ok_name": 3},  # type: ignore[dict-item]
        )
    text = str(info.value)
    for field in ("namespace", "buckets", "const_labels.operation", "const_labels.ok_name"):
        assert field in text


def test_a_retry_ended_by_an_open_breaker_is_not_counted_as_deadline(
    collector: MetricsCollector,
) -> None:
    clock = VirtualClock()
    br = rs.CircuitBreaker("m.honest", minimum_calls=1, open_duration=30, clock=clock)
    with pytest.raises(ConnectionError):
        br.call(failing(ConnectionError("down")))
    rt = rs.Retry(max_attempts=5, deadline=5, backoff=rs.Backoff.constant(0.1), clock=clock)
    with pytest.raises(rs.CircuitOpenError):
        rs.Pipeline(rt, br).call(int)
    ex = "resilience_retries_exhausted_total"
    assert value(collector, ex, operation="m.honest", reason="circuit_open") == 1
    for dishonest in ("deadline", "retry_after", "attempts"):
        assert value(collector, ex, operation="m.honest", reason=dishonest) is None


def test_config_use_and_register_are_counted(collector: MetricsCollector) -> None:
    from resilience import config

    before = value(collector, "resilience_config_changes_total") or 0
    previous = config.use(config.load(environ={"RESILIENCE_ENV": "testing"}))
    try:
        config.register("m.cfg.search", {"timeout": 2.0})
        assert value(collector, "resilience_config_changes_total") == before + 2
    finally:
        config.use(previous)


def test_health_is_a_typed_dict() -> None:
    from typing import get_type_hints

    from resilience.metrics import BreakerHealth, Health

    assert rs.Health is Health
    assert set(get_type_hints(Health)) == {"status", "breakers", "open", "half_open", "failovers"}
    br = rs.CircuitBreaker("m.typed")
    h = rs.health(prefix="m.typed")
    assert set(h) == set(get_type_hints(Health))
    assert set(h["breakers"]["m.typed"]) == set(get_type_hints(BreakerHealth))
    del br
