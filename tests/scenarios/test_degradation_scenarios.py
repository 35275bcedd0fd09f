"""Scenarios 8, 9, 10 and 14 of SCENARIOS.md: degrade, tell the caller, recover.

Scenario 10 runs against a real HTTP server on 127.0.0.1 through the httpx transport.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import resilience as rs
from resilience import events
from resilience.integrations.httpx import ResilientTransport
from resilience.testing import VirtualClock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _servers import Hang, HTTPTestServer, Reply

L = rs.DegradationLevel


class Database:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.rows: dict[str, str] = {}
        self.reads = 0

    def read(self, key: str) -> str:
        self.reads += 1
        if not self.up:
            raise ConnectionError(f"{self.name}: connection refused")
        return self.rows[key]


def test_seed_c_degradation_down_and_back_up(clock: VirtualClock, seen: list[events.Event]) -> None:
    """FULL -> DEGRADED -> CACHE_ONLY -> LIMITED as services fail, and back up as they return."""
    primary, replica = Database("primary"), Database("replica")
    primary.rows = replica.rows = {"sku-1": "42 in stock"}
    chain = rs.FallbackChain(
        rs.Step(primary.read, level=L.FULL, name="primary"),
        rs.Step(replica.read, level=L.DEGRADED, name="replica"),
        rs.StaleCache(max_age=60.0),
        rs.Default("stock unknown", level=L.LIMITED),
        name="inventory",
        clock=clock,
    )
    levels = []

    def read() -> None:
        levels.append(chain.execute("sku-1").level)
        clock.advance(1.0)

    read()
    primary.up = False
    read()
    replica.up = False
    read()
    clock.advance(120)  # the cached answer ages out
    read()
    replica.up = True
    read()
    primary.up = True
    read()
    assert levels == [L.FULL, L.DEGRADED, L.CACHE_ONLY, L.LIMITED, L.DEGRADED, L.FULL]
    told = [(e.degradation, e.source) for e in seen if isinstance(e, events.FallbackServed)]
    assert told == [
        ("DEGRADED", "replica"),
        ("CACHE_ONLY", "stale_cache"),
        ("LIMITED", "default"),
        ("DEGRADED", "replica"),
    ]


def test_scenario_8_outage_with_cached_identity(clock: VirtualClock) -> None:
    directory = Database("directory")
    directory.rows = {"ann": "staff,admins", "bob": "staff"}

    def groups(user: str) -> frozenset[str]:
        return frozenset(directory.read(user).split(","))

    def may(user: str, permission: str) -> bool:
        return permission == "deploy" and "admins" in groups(user)

    lookup = rs.FallbackChain(rs.Step(groups), rs.StaleCache(max_age=3600), clock=clock)
    check = rs.FallbackChain(rs.Step(may), rs.StaleCache(max_age=3600), clock=clock)
    before = {u: (lookup("ann" if u == "ann" else u), check(u, "deploy")) for u in ("ann", "bob")}

    directory.up = False  # fully down
    clock.advance(600)
    for user in ("ann", "bob"):
        g = lookup.execute(user)
        c = check.execute(user, "deploy")
        assert (g.value, c.value) == before[user]
        assert g.level is c.level is L.CACHE_ONLY
    with pytest.raises(rs.AllFallbacksFailed):
        lookup.execute("carol")  # never seen: no stale data to serve, and no silent guess


def test_scenario_9_policy_engine_down(clock: VirtualClock, seen: list[events.Event]) -> None:
    engine = Database("policy-engine")
    engine.rows = {"wire-transfer": "allow", "beta-banner": "allow"}
    audit: list[str] = []

    def on_event(e: events.Event) -> None:
        if isinstance(e, events.FallbackServed):
            audit.append(f"{e.operation}: served {e.degradation} from {e.source}")

    stop = events.subscribe(on_event)
    critical = rs.FallbackChain(
        rs.Step(engine.read), rs.StaleCache(max_age=900), name="policy.critical", clock=clock
    )
    non_critical = rs.FallbackChain(
        rs.Step(engine.read), rs.Default("deny"), name="policy.best_effort", clock=clock
    )
    try:
        assert critical("wire-transfer") == "allow"
        assert non_critical("beta-banner") == "allow"
        engine.up = False
        decision = critical.execute("wire-transfer")
        assert decision.value == "allow"
        assert decision.level is L.CACHE_ONLY  # marked as cached
        safe = non_critical.execute("beta-banner")
        assert (safe.value, safe.level) == ("deny", L.LIMITED)  # safe default
    finally:
        stop()
    assert audit == [
        "policy.critical: served CACHE_ONLY from stale_cache",
        "policy.best_effort: served LIMITED from default",
    ]


def test_scenario_14_database_loss(clock: VirtualClock, seen: list[events.Event]) -> None:
    db = Database("db")
    replica = Database("replica")
    db.rows = {f"k{i}": f"v{i}" for i in range(100)}
    replica.rows = dict(db.rows)
    db_breaker = rs.CircuitBreaker("db", minimum_calls=5, open_duration=10.0, clock=clock)
    replica_breaker = rs.CircuitBreaker("replica", minimum_calls=5, open_duration=10.0, clock=clock)
    chain = rs.FallbackChain(
        rs.Step(db_breaker(db.read), level=L.FULL, name="db"),
        rs.Step(replica_breaker(replica.read), level=L.DEGRADED, name="replica"),
        rs.StaleCache(max_age=3600, max_size=1000),
        name="reads",
        clock=clock,
    )
    rng = random.Random(14)
    for i in range(100):  # warm: every key read once
        assert chain.execute(f"k{i}").level is L.FULL

    levels: list[rs.DegradationLevel] = []
    db.up = False
    for _ in range(50):
        levels.append(chain.execute(f"k{rng.randrange(100)}").level)
        clock.advance(0.1)
    replica.up = False
    outage = []
    for _ in range(500):
        served = chain.execute(f"k{rng.randrange(100)}")
        outage.append(served)
        clock.advance(0.1)
    levels += [s.level for s in outage]
    # the service level went FULL -> DEGRADED -> CACHE_ONLY, never back and forth
    assert levels[0] is L.DEGRADED
    assert sorted(set(levels)) == [L.DEGRADED, L.CACHE_ONLY]
    assert levels == sorted(levels)
    # > 80% of reads served from the cache during the outage, and no data corrupted
    from_cache = [s for s in outage if s.level is L.CACHE_ONLY]
    assert len(from_cache) / len(outage) > 0.8
    assert all(s.value == db.rows[s.value.replace("v", "k")] for s in outage)
    # the breakers keep the dead database from being hammered
    assert db.reads - 100 < 0.15 * 550  # of 550 reads during the outage

    db.up = replica.up = True
    returned_at = clock.monotonic()
    while chain.execute("k1").level is not L.FULL:
        clock.advance(1.0)
    assert clock.monotonic() - returned_at <= 30.0
    for _ in range(10):
        assert chain.execute("k2").level is L.FULL


# --- scenario 10: every endpoint under four failures, over real HTTP -------------------------


@pytest.fixture
def api() -> Iterator[HTTPTestServer]:
    srv = HTTPTestServer().start()
    yield srv
    srv.stop()


def test_scenario_10_every_endpoint_under_four_failures(
    api: HTTPTestServer, clock: VirtualClock, seen: list[events.Event]
) -> None:
    failures: dict[str, Any] = {}

    def answer(req: Any) -> Any:
        return failures.get(req.path.split("?")[0], Reply(200, b'{"ok": true}'))

    api.default = answer
    transport = ResilientTransport(clock=clock, breaker={"minimum_calls": 100})
    client = httpx.Client(transport=transport, base_url=api.url, timeout=httpx.Timeout(2, read=0.2))

    def get(path: str) -> httpx.Response:
        r = client.get(path)
        r.raise_for_status()
        return r

    cached = rs.FallbackChain(rs.Step(get), rs.StaleCache(max_age=300), name="api", clock=clock)
    try:
        for path in ("/timeout", "/limited", "/cached", "/broken"):
            assert cached.execute(path).level is L.FULL

        def hits(path: str) -> int:
            return sum(1 for r in api.requests if r.path == path)

        # timeout -> retried (3 attempts) with backoff
        failures["/timeout"] = Hang(5)
        n, sleeps = hits("/timeout"), len(clock.sleeps)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/timeout")
        assert hits("/timeout") - n == 3
        assert len(clock.sleeps) - sleeps == 2

        # 429 -> backoff honouring Retry-After, and the caller is told
        failures["/limited"] = Reply(429, b"slow down", {"Retry-After": "7"})
        r = client.get("/limited")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "7"
        assert clock.sleeps[-2:] == [7.0, 7.0]
        retried = [e for e in seen if isinstance(e, events.RetryAttempted)]
        assert retried[-1].verdict == "rate_limited"

        # 503 -> served from cache with a "using cached data" signal
        failures["/cached"] = Reply(503, b"maintenance")
        served = cached.execute("/cached")
        assert served.level is L.CACHE_ONLY
        assert served.value.json() == {"ok": True}
        signal = [e for e in seen if isinstance(e, events.FallbackServed)][-1]
        assert (signal.operation, signal.degradation) == ("api", "CACHE_ONLY")

        # 500 -> retried, then surfaced
        failures["/broken"] = Reply(500, b"bug")
        n = hits("/broken")
        r = client.get("/broken")
        assert r.status_code == 500
        assert hits("/broken") - n == 3

        # afterwards every endpoint recovers
        failures.clear()
        for path in ("/timeout", "/limited", "/cached", "/broken"):
            served = cached.execute(path)
            assert served.level is L.FULL
            assert served.value.status_code == 200
    finally:
        client.close()
