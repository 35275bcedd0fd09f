"""health(): read from the process-wide weak registry of breakers."""

from __future__ import annotations

import gc
import json

import pytest

import resilience as rs
from resilience import _registry
from resilience.testing import VirtualClock


def trip(br: rs.CircuitBreaker) -> None:
    def down() -> None:
        raise ConnectionError("down")

    while br.state is rs.CircuitState.CLOSED:
        with pytest.raises((ConnectionError, rs.CircuitOpenError)):
            br.call(down)


def make(prefix: str, *names: str, clock: VirtualClock) -> list[rs.CircuitBreaker]:
    return [
        rs.CircuitBreaker(f"{prefix}{n}", minimum_calls=2, open_duration=10, clock=clock)
        for n in names
    ]


def test_no_breakers_is_ok() -> None:
    h = rs.health(prefix="h.none.")
    assert h == {"status": "ok", "breakers": {}, "open": [], "half_open": [], "failovers": {}}


def test_ok_degraded_down_and_recovery() -> None:
    clock = VirtualClock()
    auth, db, cache = make("h.a.", "auth", "db", "cache", clock=clock)
    h = rs.health(prefix="h.a.")
    assert h["status"] == "ok"
    assert set(h["breakers"]) == {"h.a.auth", "h.a.db", "h.a.cache"}
    assert h["breakers"]["h.a.db"]["state"] == "closed"

    trip(db)
    h = rs.health(prefix="h.a.")
    assert h["status"] == "degraded"
    assert h["open"] == ["h.a.db"]
    assert h["breakers"]["h.a.db"]["failure_rate"] == 1.0
    assert h["breakers"]["h.a.db"]["remaining"] == 10.0

    trip(auth)
    trip(cache)
    assert rs.health(prefix="h.a.")["status"] == "down"  # all of several are open

    clock.advance(10)  # open_duration elapsed: half-open, probing
    h = rs.health(prefix="h.a.")
    assert h["status"] == "degraded"
    assert h["half_open"] == ["h.a.auth", "h.a.cache", "h.a.db"]
    assert {b["state"] for b in h["breakers"].values()} == {"half_open"}

    for br in (auth, db, cache):
        for _ in range(3):
            br.call(int)
    assert rs.health(prefix="h.a.")["status"] == "ok"
    json.dumps(rs.health(prefix="h.a."), allow_nan=False)  # strict JSON for a /health endpoint


def test_a_single_open_breaker_is_degraded_unless_critical() -> None:
    clock = VirtualClock()
    (pay,) = make("h.c.", "payments", clock=clock)
    trip(pay)
    assert rs.health(prefix="h.c.")["status"] == "degraded"
    h = rs.health(critical=["h.c.payments"], prefix="h.c.")
    assert h["status"] == "down"
    assert h["breakers"]["h.c.payments"]["critical"] is True


def test_critical_among_many_and_forced_open_disabled() -> None:
    clock = VirtualClock()
    search, checkout = make("h.d.", "search", "checkout", clock=clock)
    search.force_open()
    assert rs.health(prefix="h.d.", critical={"h.d.checkout"})["status"] == "degraded"
    checkout.force_open()
    assert rs.health(prefix="h.d.", critical={"h.d.checkout"})["status"] == "down"
    checkout.disable()  # DISABLED lets every call through: counts as up
    h = rs.health(prefix="h.d.", critical={"h.d.checkout"})
    assert h["status"] == "degraded"
    assert h["breakers"]["h.d.checkout"]["state"] == "disabled"
    assert h["breakers"]["h.d.search"]["remaining"] is None  # forced open: no end
    json.dumps(h, allow_nan=False)


def test_garbage_collected_breakers_disappear() -> None:
    clock = VirtualClock()
    keep, gone = make("h.gc.", "keep", "gone", clock=clock)
    trip(gone)
    assert rs.health(prefix="h.gc.")["status"] == "degraded"
    del gone
    gc.collect()
    h = rs.health(prefix="h.gc.")
    assert list(h["breakers"]) == ["h.gc.keep"]
    assert h["status"] == "ok"
    assert keep.state is rs.CircuitState.CLOSED


def test_registering_keeps_nothing_alive_and_a_new_breaker_replaces_the_name() -> None:
    clock = VirtualClock()
    (first,) = make("h.r.", "svc", clock=clock)
    trip(first)
    (second,) = make("h.r.", "svc", clock=clock)  # the same name: the newest is reported
    assert rs.health(prefix="h.r.")["breakers"]["h.r.svc"]["state"] == "closed"
    assert _registry.registered("breaker")["h.r.svc"] is second


def test_failover_tiers_show_through_their_breakers() -> None:
    clock = VirtualClock()

    def dc1() -> str:
        raise ConnectionError("dc1 down")

    fo = rs.Failover(
        [rs.Tier("dc1", dc1), rs.Tier("dc2", lambda: "dc2")],
        name="h.fo",
        breaker={"minimum_calls": 2},
        clock=clock,
    )
    assert [fo.call(), fo.call()] == ["dc2", "dc2"]
    h = rs.health(prefix="h.fo")
    assert h["open"] == ["h.fo/dc1"]
    assert h["status"] == "degraded"


def test_failover_clients_that_register_show_their_active_tier() -> None:
    # Failover does not register itself yet; health() reads those that are registered.
    clock = VirtualClock()
    up = {"dc1": True}

    def dc1() -> str:
        if not up["dc1"]:
            raise ConnectionError("dc1 down")
        return "dc1"

    fo = rs.Failover(
        [rs.Tier("dc1", dc1), rs.Tier("dc2", lambda: "dc2")],
        name="h.reg",
        breaker={"minimum_calls": 2},
        clock=clock,
    )
    _registry.register("failover", fo.name, fo)
    try:
        h = rs.health(prefix="h.reg")
        assert h["failovers"] == {"h.reg": {"active_tier": "dc1", "tiers_down": []}}
        assert h["status"] == "ok"
        up["dc1"] = False
        assert [fo.call(), fo.call()] == ["dc2", "dc2"]
        h = rs.health(prefix="h.reg")
        assert h["failovers"] == {"h.reg": {"active_tier": "dc2", "tiers_down": ["dc1"]}}
        assert h["status"] == "degraded"
    finally:
        _registry.unregister("failover", fo.name, fo)
