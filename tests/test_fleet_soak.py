"""The fleet soak: 4 real processes share a breaker, a rate limit and CRDT replicas through a
store, with an outbox each, while the backend flaps, the store is killed (or locked) and a
worker is SIGKILLed; the report's pass line must hold."""

from __future__ import annotations

import os

import pytest

from resilience._fleet import _closed_between, _schedule
from resilience.chaos import soak


def test_the_schedule_is_seeded_and_has_every_fault() -> None:
    a = _schedule(20.0, 4, outages=2, store_restarts=1, kills=1, seed=3)
    assert a == _schedule(20.0, 4, outages=2, store_restarts=1, kills=1, seed=3)
    assert [f.kind for f in a].count("outage") == 2
    assert {f.kind for f in a} == {"outage", "store", "kill"}
    outages = [f for f in a if f.kind == "outage"]
    assert outages[0].at + outages[0].length < outages[1].at  # never overlapping


def test_recovery_is_read_from_the_timeline() -> None:
    timeline = [(1.0, "open"), (2.0, "half_open"), (2.1, "closed")]
    assert _closed_between(timeline, 1.5, 3.0)
    assert not _closed_between([(1.0, "open"), (2.0, "half_open"), (2.1, "open")], 1.5, 3.0)
    assert _closed_between([], 0.0, 1.0)  # never opened: closed throughout


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_short_fleet_soak_passes(store: str) -> None:
    if store == "redis":
        from redis_server import find_redis_server

        if find_redis_server() is None:
            if os.environ.get("RESILIENCE_REQUIRE_REDIS") == "1":
                pytest.fail("no redis-server (RESILIENCE_REQUIRE_REDIS=1)")
            pytest.skip("no redis-server")
    report = soak(duration=20.0, processes=4, workers=3, store=store, seed=7, error_rate=0.1)
    print(report.summary())
    assert report.store_restarts >= 1
    assert report.worker_kills >= 1
    assert report.outages == 2
    assert report.lost == 0
    assert report.ok, report.summary()
