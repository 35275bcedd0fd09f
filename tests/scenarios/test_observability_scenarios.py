"""Users' scenarios 18 (health part), 19 (audit trail), 20 (metrics and alerts) and 21 (chaos over
a dependency graph) of SCENARIOS.md, on real primitives with virtual time."""

from __future__ import annotations

import contextvars
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resilience as rs
from resilience import events
from resilience.stores import MemoryStore
from resilience.testing import VirtualClock


@pytest.fixture
def collector() -> Iterator[rs.MetricsCollector]:
    with rs.MetricsCollector() as c:
        yield c


def metric(c: rs.MetricsCollector, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(generate_latest(c.registry).decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def outage() -> None:
    raise ConnectionError("connection refused")


# --- 18. state across restarts; the health endpoint reflects breaker states -----------------


def test_18_breaker_state_survives_a_restart_and_health_reflects_it() -> None:
    clock = VirtualClock()
    store = MemoryStore()  # what outlives the "process": the same store object

    def build(op: str) -> rs.CircuitBreaker:
        return rs.CircuitBreaker(
            f"s18.{op}", minimum_calls=3, open_duration=30, store=store, clock=clock
        )

    payments, search = build("payments"), build("search")
    for _ in range(3):
        with pytest.raises(ConnectionError):
            payments.call(outage)
    search.call(int)
    assert payments.state is rs.CircuitState.OPEN
    assert search.state is rs.CircuitState.CLOSED  # each operation has its own breaker
    before = rs.health(prefix="s18.")
    assert before["status"] == "degraded"
    assert before["open"] == ["s18.payments"]

    # "Restart": the old objects are gone (and gone from health), new ones read the store.
    del payments, search
    gc.collect()
    assert rs.health(prefix="s18.")["breakers"] == {}
    payments, search = build("payments"), build("search")
    assert payments.state is rs.CircuitState.OPEN
    assert search.state is rs.CircuitState.CLOSED
    with pytest.raises(rs.CircuitOpenError):
        payments.call(int)
    after = rs.health(prefix="s18.")
    assert after["status"] == "degraded"
    assert after["breakers"]["s18.payments"]["state"] == "open"
    assert after["breakers"]["s18.search"]["state"] == "closed"
    assert rs.health(prefix="s18.", critical=["s18.payments"])["status"] == "down"

    clock.advance(30)
    for _ in range(3):
        payments.call(int)
    assert rs.health(prefix="s18.")["status"] == "ok"


# --- 19. transient vs permanent; the request context survives; an audit trail ---------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@dataclass
class Audit:
    """An audit log fed by the event stream, stamping each entry with the request id."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: events.Event) -> None:
        if event.operation.startswith("s19."):
            entry = {"request": request_id.get(), "type": type(event).__name__}
            entry.update({k: getattr(event, k) for k in event.__dataclass_fields__})
            self.entries.append(entry)


def test_19_audit_trail_records_each_retry_and_the_outcome() -> None:
    clock = VirtualClock()
    audit = Audit()
    stop = events.subscribe(audit)
    seen_ids: list[str] = []
    script: list[BaseException | None] = []

    def fetch(user: str) -> str:
        seen_ids.append(request_id.get())
        exc = script.pop(0)
        if exc is not None:
            raise exc
        return f"profile of {user}"

    retry = rs.Retry(
        max_attempts=3,
        backoff=rs.Backoff.exponential(initial=0.1, multiplier=2, jitter=None),
        clock=clock,
        name="s19.profile",
    )
    try:
        # transient, transient, success: retried, context intact
        script[:] = [TimeoutError("slow"), ConnectionError("reset"), None]
        request_id.set("req-1")
        assert retry.call(fetch, "ada") == "profile of ada"
        assert seen_ids == ["req-1"] * 3

        # permanent: no retry at all
        script[:] = [PermissionError("denied")]
        request_id.set("req-2")
        with pytest.raises(PermissionError):
            retry.call(fetch, "bob")

        # exhaustion ends gracefully: the caller's own except clause still works
        script[:] = [ConnectionError("down")] * 3
        request_id.set("req-3")
        with pytest.raises(ConnectionError, match="down") as info:
            retry.call(fetch, "eve")
        assert any("3 attempts" in note for note in info.value.__notes__)
    finally:
        stop()

    trail = [
        (e["request"], e["type"], e.get("attempt", e.get("attempts")), e.get("error"))
        for e in audit.entries
    ]
    assert trail == [
        ("req-1", "RetryAttempted", 1, "TimeoutError"),
        ("req-1", "RetryAttempted", 2, "ConnectionError"),
        ("req-2", "RetryGaveUp", 1, "PermissionError"),
        ("req-3", "RetryAttempted", 1, "ConnectionError"),
        ("req-3", "RetryAttempted", 2, "ConnectionError"),
        ("req-3", "RetryGaveUp", 3, "ConnectionError"),
    ]
    assert [e["delay"] for e in audit.entries if e["type"] == "RetryAttempted"] == [
        0.1,
        0.2,
        0.1,
        0.2,
    ]
    assert [e["reason"] for e in audit.entries if e["type"] == "RetryGaveUp"] == [
        "permanent",
        "attempts",
    ]
    assert clock.sleeps == [0.1, 0.2, 0.1, 0.2]


def test_19_audit_trail_as_structlog_events_without_secrets() -> None:
    import structlog
    from structlog.testing import capture_logs

    from resilience.metrics import log_events

    clock = VirtualClock()
    password = "hunter2-very-secret"

    def login(user: str, pw: str) -> None:
        raise ConnectionError(f"LDAP bind failed for {user}:{pw}")

    retry = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(1), clock=clock, name="s19.login")
    with capture_logs() as logs:
        stop = log_events(structlog.get_logger())
        try:
            with pytest.raises(ConnectionError):
                retry.call(login, "ada", password)
        finally:
            stop()
    mine = [e for e in logs if e.get("operation") == "s19.login"]
    assert [(e["event"], e["log_level"]) for e in mine] == [
        ("retry_attempted", "debug"),  # per-call: DEBUG (DESIGN, observability)
        ("retry_gave_up", "info"),
    ]
    assert password not in repr(logs)


# --- 20. per-operation metrics, breaker transitions, alerts, history ------------------------


def test_20_metrics_per_operation_transitions_alerts_and_history(
    collector: rs.MetricsCollector,
) -> None:
    clock = VirtualClock()
    alerts: list[str] = []

    def alert_on_open(event: events.Event) -> None:  # an alert rule on the same stream
        if isinstance(event, events.StateTransition) and event.operation.startswith("s20."):
            # fire when a closed breaker opens (not on each failed trial), resolve on close
            if event.from_state == "closed" and event.to_state == "open":
                alerts.append(f"FIRING {event.operation}: {event.reason}")
            elif event.to_state == "closed":
                alerts.append(f"RESOLVED {event.operation}")

    stop = events.subscribe(alert_on_open)
    ops = {
        name: rs.Pipeline(
            # 0.1 s waits, but willing to wait up to 30 s, so an open breaker's trial is waited
            # for (a retry whose backoff cannot reach the trial fails fast instead)
            rs.Retry(max_attempts=2, backoff=rs.Backoff.linear(0.1, 0.0, 30.0), clock=clock),
            rs.CircuitBreaker(f"s20.{name}", minimum_calls=10, open_duration=20, clock=clock),
        )
        for name in ("checkout", "search", "recommend")
    }
    failing = {"recommend"}
    history: list[dict[str, dict[str, Any]]] = []

    def traffic() -> None:
        for name, pipe in ops.items():
            for _ in range(5):
                try:
                    pipe.call(outage if name in failing else int)
                except (ConnectionError, rs.CircuitOpenError):
                    pass
        clock.advance(5)
        history.append(collector.snapshot())

    try:
        for _ in range(4):
            traffic()
        failing.clear()  # the dependency recovers
        for _ in range(4):
            traffic()
    finally:
        stop()

    # per-operation metrics
    assert (
        metric(collector, "resilience_calls_total", operation="s20.checkout", outcome="success")
        == 20 * 2
    )
    assert (
        metric(collector, "resilience_calls_total", operation="s20.search", outcome="failure") == 0
    )
    recommend = history[-1]["s20.recommend"]
    assert (
        metric(collector, "resilience_calls_total", operation="s20.recommend", outcome="failure")
        == (recommend["failures"])
    )
    assert (
        metric(collector, "resilience_calls_total", operation="s20.recommend", outcome="rejected")
        > 0
    )
    assert metric(collector, "resilience_retries_total", operation="s20.recommend") > 0
    # breaker transitions as metrics, the open one alerting once
    t = "resilience_circuit_transitions_total"
    assert (
        metric(collector, t, operation="s20.recommend", from_state="closed", to_state="open") == 1
    )
    assert (
        metric(collector, t, operation="s20.recommend", from_state="half_open", to_state="closed")
        == 1
    )
    assert (
        metric(collector, "resilience_circuit_state", operation="s20.recommend", state="closed")
        == 1
    )
    assert alerts == ["FIRING s20.recommend: 10 of 10 calls failed", "RESOLVED s20.recommend"]
    # history for trend analysis: failures grow during the outage (trial calls), then stop
    failures = [h["s20.recommend"]["failures"] for h in history]
    assert failures[0] == 10
    assert failures[:4] == sorted(set(failures[:4]))
    assert failures[3:] == [failures[3]] * 5
    successes = [h["s20.recommend"]["successes"] for h in history]
    assert successes[:4] == [0] * 4
    assert successes[4:] == [5, 10, 15, 20]
    calls = [h["s20.checkout"]["calls"] for h in history]
    assert calls == [5, 10, 15, 20, 25, 30, 35, 40]


# --- 21. chaos over a dependency graph; everything recovers ---------------------------------


class Service:
    """One dependency: its own work behind chaos, a breaker and a short retry."""

    def __init__(self, name: str, clock: VirtualClock, chaos: rs.FaultInjection) -> None:
        self.name = name
        self.chaos = chaos
        self.breaker = rs.CircuitBreaker(
            f"s21.{name}", minimum_calls=6, window=rs.CountWindow(12), open_duration=10, clock=clock
        )
        self.pipe = rs.Pipeline(
            # willing to wait up to 15 s: an open breaker's trial (10 s) is waited for
            rs.Retry(max_attempts=2, backoff=rs.Backoff.linear(0.05, 0.0, 15.0), clock=clock),
            self.breaker,
            chaos,
            name=f"s21.{name}",
        )

    def call(self, *args: Any) -> str:
        return str(self.pipe.call(lambda: f"{self.name}:{'/'.join(map(str, args))}"))

    async def acall(self, *args: Any) -> str:
        async def work() -> str:
            await anyio.lowlevel.checkpoint()
            return f"{self.name}:{'/'.join(map(str, args))}"

        return str(await self.pipe.acall(work))


def build_graph(clock: VirtualClock) -> tuple[dict[str, Service], Callable[[int], rs.Served[Any]]]:
    """frontend -> api_gateway -> (auth, data -> database, external_api)."""
    svc = {
        "auth": Service(
            "auth", clock, rs.FaultInjection(0.0, TimeoutError, seed=1, clock=clock, name="auth")
        ),
        "database": Service(
            "database",
            clock,
            rs.FaultInjection(0.0, ConnectionError, seed=2, clock=clock, name="db"),
        ),
        "external_api": Service(
            "external_api",
            clock,
            rs.FaultInjection(0.0, ConnectionError, latency=3.0, seed=3, clock=clock, name="ext"),
        ),
    }
    data = rs.FallbackChain(
        rs.Step(svc["database"].call, name="database"),
        rs.StaleCache(max_age=3600),
        name="s21.data",
        clock=clock,
    )
    external = rs.FallbackChain(
        rs.Step(svc["external_api"].call, name="external_api"),
        rs.Default("no-recommendations", level=rs.DegradationLevel.LIMITED),
        name="s21.external",
        clock=clock,
    )

    def api_gateway(user: int) -> dict[str, Any]:
        token = svc["auth"].call(user)  # auth is critical: no fallback
        d = data.execute(user)
        e = external.execute(user)
        return {"token": token, "data": d.value, "extra": e.value, "levels": {d.level, e.level}}

    def degraded_page(user: int) -> dict[str, Any]:
        return {"token": None, "data": None, "extra": None, "levels": set()}

    frontend = rs.FallbackChain(
        rs.Step(api_gateway, name="api_gateway"),
        rs.Default(degraded_page, level=rs.DegradationLevel.CACHE_ONLY),
        name="s21.frontend",
        clock=clock,
    )
    return svc, frontend.execute


def full(served: rs.Served[Any]) -> bool:
    return served.level is rs.DegradationLevel.FULL and served.value["levels"] == {
        rs.DegradationLevel.FULL
    }


def test_21_chaos_over_a_dependency_graph_recovers(collector: rs.MetricsCollector) -> None:
    clock = VirtualClock()
    svc, frontend = build_graph(clock)
    users = range(20)

    # Healthy: every page is served in full; the data cache warms up.
    assert all(full(frontend(u)) for u in users)

    # Chaos: auth times out now and then, the database is gone, the external API is slow
    # and failing. No exception reaches the user; pages degrade instead.
    svc["auth"].chaos.error_rate = 0.2
    svc["database"].chaos.error_rate = 1.0
    svc["external_api"].chaos.error_rate = 0.5
    svc["external_api"].chaos.latency_rate = 0.3
    pages = [frontend(u % 20) for u in range(200)]
    assert not any(full(p) for p in pages)
    served_data = [p.value["data"] for p in pages if p.level is rs.DegradationLevel.FULL]
    assert served_data
    assert all(d.startswith("database:") for d in served_data)  # from the stale cache
    assert svc["database"].breaker.state is rs.CircuitState.OPEN  # the cascade is cut
    assert rs.health(prefix="s21.")["status"] in ("degraded", "down")
    faults = sum(s.chaos.errors + s.chaos.delays for s in svc.values())
    assert faults > 100
    injected = sum(
        metric(collector, "resilience_faults_injected_total", operation=n, kind=k)
        for n in ("auth", "db", "ext")
        for k in ("error", "latency")
    )
    assert injected == faults

    # Faults stop: after the open duration every breaker probes and closes; no permanent
    # degradation.
    for s in svc.values():
        s.chaos.enabled = False
    clock.advance(10)
    pages = [frontend(u) for u in users]
    assert all(full(p) for p in pages)
    assert {s.breaker.state for s in svc.values()} == {rs.CircuitState.CLOSED}
    assert rs.health(prefix="s21.")["status"] == "ok"


@pytest.mark.anyio
async def test_21_chaos_async_leaf_calls_recover() -> None:
    clock = VirtualClock()
    db = Service(
        "adb", clock, rs.FaultInjection(1.0, ConnectionError, seed=5, clock=clock, name="adb")
    )
    results = []
    for i in range(10):
        try:
            results.append(await db.acall(i))
        except (ConnectionError, rs.CircuitOpenError):
            results.append("failed")
    assert results == ["failed"] * 10
    assert db.breaker.state is rs.CircuitState.OPEN
    db.chaos.enabled = False
    clock.advance(10)
    assert [await db.acall(i) for i in range(5)] == [f"adb:{i}" for i in range(5)]
    assert db.breaker.state is rs.CircuitState.CLOSED
