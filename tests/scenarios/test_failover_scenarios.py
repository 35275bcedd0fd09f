"""Scenarios 7 and 12 of SCENARIOS.md: tiered failover with return to primary.

Virtual time: a "down" server costs its timeout on the VirtualClock, so "within the same call,
in < 5 s" is measured, not assumed.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

import resilience as rs
from resilience import events
from resilience.testing import VirtualClock


class DirectoryServer:
    """An LDAP-like directory: answers in 20 ms; when down, a connect attempt times out
    after `connect_timeout` seconds (virtual)."""

    def __init__(self, name: str, clock: VirtualClock, connect_timeout: float = 2.0) -> None:
        self.name = name
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.up = True
        self.served = 0
        self.attempts = 0
        self.entries = {"ann": {"uid": "ann", "groups": ["staff", "admins"]}}

    def search(self, uid: str) -> dict[str, Any]:
        self.attempts += 1
        if not self.up:
            self.clock.advance(self.connect_timeout)
            raise TimeoutError(f"{self.name}: connect timed out")
        self.clock.advance(0.02)
        self.served += 1
        return {**self.entries[uid], "server": self.name}

    def ping(self) -> bool:
        return self.up


def test_scenario_7_three_tier_directory_failover(
    clock: VirtualClock, seen: list[events.Event]
) -> None:
    dcs = {n: DirectoryServer(n, clock) for n in ("dc1", "dc2", "dc3")}
    probes: list[str] = []

    def health_check(tier: rs.Tier) -> bool:
        probes.append(tier.name)
        return dcs[tier.name].ping()

    fo = rs.Failover(
        [rs.Tier(n, s.search) for n, s in dcs.items()],
        name="ldap",
        health_check=health_check,
        probe_interval=5.0,
        breaker={"failure_rate_threshold": 0.5, "minimum_calls": 3},
        clock=clock,
    )
    assert fo.execute("ann").source == "dc1"

    # primary DC down: the secondary serves within the same call, in < 5 s
    dcs["dc1"].up = False
    t0 = clock.monotonic()
    served = fo.execute("ann")
    assert served.value["server"] == "dc2"
    assert clock.monotonic() - t0 < 5.0
    for _ in range(5):
        fo.call("ann")
    assert fo.active_tier == "dc2"
    # once dc1's breaker is open, calls no longer pay its timeout
    t0 = clock.monotonic()
    assert fo.call("ann")["server"] == "dc2"
    assert clock.monotonic() - t0 < 0.1

    # secondary down too: the tertiary serves (cascade)
    dcs["dc2"].up = False
    served = fo.execute("ann")
    assert served.value["server"] == "dc3"
    assert [type(e) for e in served.errors] == [rs.CircuitOpenError, TimeoutError]
    for _ in range(10):  # dc2 had a good record: it takes more failures to open
        assert fo.call("ann")["server"] == "dc3"
    assert fo.active_tier == "dc3"

    # primary restored: traffic returns to it after its health check, within a probe interval
    dcs["dc1"].up = True
    restored_at = clock.monotonic()
    while fo.call("ann")["server"] != "dc1":
        clock.advance(0.5)
        assert clock.monotonic() - restored_at <= 5.0 + 0.5
    assert fo.active_tier == "dc1"
    for _ in range(20):
        assert fo.call("ann")["server"] == "dc1"
    assert "dc1" in probes

    status = fo.tiers_status()
    assert status["dc1"]["up"] is True
    assert status["dc2"]["up"] is False  # still down, still probed
    moves = [(e.from_tier, e.to_tier) for e in seen if isinstance(e, events.FailoverSwitched)]
    assert moves == [("dc1", "dc2"), ("dc2", "dc3"), ("dc3", "dc1")]
    assert [e.tier for e in seen if isinstance(e, events.TierRecovered)] == ["dc1"]


class Provider:
    """An LLM provider: `failure_rate` of its calls fail with a 503-like error (seeded)."""

    def __init__(self, name: str, clock: VirtualClock, seed: int) -> None:
        self.name = name
        self.clock = clock
        self.failure_rate = 0.0
        self.random = random.Random(seed)
        self.calls = 0

    def complete(self, prompt: str) -> str:
        self.calls += 1
        self.clock.advance(0.05)
        if self.random.random() < self.failure_rate:
            raise ConnectionError(f"{self.name}: 503 Service Unavailable")
        return f"{self.name}: answer to {prompt}"


def test_scenario_12_llm_provider_failover_30_percent_failures(
    clock: VirtualClock, seen: list[events.Event]
) -> None:
    primary = Provider("primary", clock, seed=12)
    secondary = Provider("secondary", clock, seed=13)
    fo = rs.Failover(
        [rs.Tier("primary", primary.complete), rs.Tier("secondary", secondary.complete)],
        name="llm",
        probe_interval=5.0,
        breaker={
            "failure_rate_threshold": 0.25,
            "minimum_calls": 20,
            "window": rs.CountWindow(40),
        },
        clock=clock,
    )
    primary.failure_rate = 0.3
    sources: list[str] = []
    for i in range(1000):
        if i == 600:
            primary.failure_rate = 0.0  # the provider heals
            healed_at = clock.monotonic()
            healed_call = i
        served = fo.execute(f"prompt {i}")  # raises if a request were lost
        assert served.value.endswith(f"prompt {i}")
        sources.append(served.source)
        clock.advance(0.1)

    # every call was served (none raised), the primary's breaker opened during the outage ...
    assert len(sources) == 1000
    opened = [
        e
        for e in seen
        if isinstance(e, events.StateTransition)
        and e.operation == "llm/primary"
        and e.to_state == "open"
    ]
    assert opened
    # ... which kept traffic off it: far fewer than 600 calls reached the failing primary
    assert primary.calls < 1000
    during = sources[:600]
    assert during.count("secondary") > 0.3 * 600
    # ... and once healed, traffic returned to the primary within the probe interval + trials
    back = next(i for i in range(healed_call, 1000) if sources[i:] == ["primary"] * (1000 - i))
    assert (back - healed_call) * 0.15 <= 5.0 + 3 * 0.15
    assert fo.active_tier == "primary"
    assert clock.monotonic() > healed_at
    assert any(isinstance(e, events.TierRecovered) and e.tier == "primary" for e in seen)


@pytest.mark.anyio
async def test_scenario_12_async_no_request_lost_during_switch(clock: VirtualClock) -> None:
    state = {"primary_up": True}

    async def primary(prompt: str) -> str:
        if not state["primary_up"]:
            raise ConnectionError("primary unavailable")
        return "primary"

    async def secondary(prompt: str) -> str:
        return "secondary"

    fo = rs.Failover(
        [rs.Tier("primary", primary), rs.Tier("secondary", secondary)],
        name="llm-async",
        probe_interval=5.0,
        breaker={"minimum_calls": 5},
        clock=clock,
    )
    answers = []
    for i in range(30):
        if i == 10:
            state["primary_up"] = False
        answers.append(await fo.acall(i))
    assert answers == ["primary"] * 10 + ["secondary"] * 20
    state["primary_up"] = True
    clock.advance(5.0)
    answers = [await fo.acall(i) for i in range(5)]
    assert answers == ["primary"] * 5
