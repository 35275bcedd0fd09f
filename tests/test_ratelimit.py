"""RateLimiter: a token bucket that admits the burst, then the rate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import resilience as rs
from resilience import events
from resilience.stores import MemoryStore
from resilience.testing import VirtualClock

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/redis_server.py
from redis_server import redis_server, redis_url  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def test_admits_the_burst_then_the_rate(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=10, per=1.0, burst=5, clock=clock)
    assert [limiter.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.1)  # one token per 0.1 s
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    clock.advance(1.0)  # refills up to the burst, not beyond
    assert sum(limiter.try_acquire() for _ in range(20)) == 5


def test_over_a_long_run_the_rate_holds(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=50, per=1.0, burst=10, clock=clock)
    admitted = 0
    for _ in range(10_000):  # offered 1000/s for 10 s
        admitted += limiter.try_acquire()
        clock.advance(0.001)
    assert 10 + 50 * 10 - 2 <= admitted <= 10 + 50 * 10 + 1


def test_a_refused_call_says_when_to_come_back(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=2, per=1.0, clock=clock, name="search")
    limiter.call(lambda: None)
    limiter.call(lambda: None)
    ran = []
    with pytest.raises(rs.RateLimited) as info:
        limiter.call(ran.append, 1)
    assert ran == []
    assert info.value.retry_after == pytest.approx(0.5)
    assert "search" in str(info.value)


def test_wait_true_sleeps_on_the_clock_instead(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=4, per=1.0, burst=1, wait=True, clock=clock)
    results = [limiter.call(lambda n=n: n) for n in range(3)]
    assert results == [0, 1, 2]
    assert clock.sleeps == pytest.approx([0.25, 0.25])


def test_max_wait_refuses_tokens_too_far_away(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=1, per=10.0, burst=1, wait=True, max_wait=1.0, clock=clock)
    limiter.acquire()
    with pytest.raises(rs.RateLimited):
        limiter.acquire()
    assert clock.sleeps == []


def test_limiters_sharing_a_store_and_name_share_one_bucket(clock: VirtualClock) -> None:
    store = MemoryStore()
    a = rs.RateLimiter(rate=3, per=1.0, store=store, name="api", clock=clock)
    b = rs.RateLimiter(rate=3, per=1.0, store=store, name="api", clock=clock)
    assert [a.try_acquire(), b.try_acquire(), a.try_acquire(), b.try_acquire()] == [
        True,
        True,
        True,
        False,
    ]


def test_rate_limited_is_retried_by_retry_after_its_retry_after(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=1, per=2.0, clock=clock)
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.1), clock=clock)
    assert rt.call(limiter.call, lambda: "a") == "a"
    assert rt.call(limiter.call, lambda: "b") == "b"
    assert clock.sleeps == [pytest.approx(2.0)]


def test_refusals_emit_events(clock: VirtualClock) -> None:
    seen: list[Any] = []
    stop = events.subscribe(seen.append)
    try:
        limiter = rs.RateLimiter(rate=1, clock=clock, name="x")
        limiter.try_acquire()
        with pytest.raises(rs.RateLimited):
            limiter.call(lambda: None)
    finally:
        stop()
    assert seen == [events.CallRejected("x", "rate_limited", 1.0)]


@pytest.mark.anyio
async def test_async_awaits_its_token(clock: VirtualClock) -> None:
    limiter = rs.RateLimiter(rate=2, per=1.0, burst=1, wait=True, clock=clock)

    async def op(n: int) -> int:
        return n

    assert [await limiter.acall(op, n) for n in range(3)] == [0, 1, 2]
    assert clock.sleeps == pytest.approx([0.5, 0.5])
    refusing = rs.RateLimiter(rate=1, per=1.0, clock=clock)
    await refusing.acall(op, 1)
    with pytest.raises(rs.RateLimited):
        await refusing.acall(op, 2)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -5}, "rate"),
        ({"per": 0}, "per"),
        ({"burst": 0.5}, "burst"),
        ({"wait": "yes"}, "wait"),
        ({"store": {}}, "store"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(rs.ConfigError) as info:
        rs.RateLimiter(**kwargs)
    assert argument in [loc for loc, _ in info.value.errors]


# --- a shared bucket: clock skew between hosts, a store that fails ------------------------------

_SKEW_CHILD = """
import sys, time
offset = float(sys.argv[2])
if offset:  # this "host" has a clock `offset` seconds ahead (before resilience reads it)
    _real = time.time
    time.time = lambda: _real() + offset
import json
import resilience as rs
from resilience.stores import RedisStore, SQLiteStore
store = eval(sys.argv[1])
limiter = rs.RateLimiter(rate=40, per=1.0, burst=4, store=store, name="skewed")
limiter.try_acquire(0)  # connect first
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic()
granted, waits = 0, []
while time.monotonic() - start < 1.5:
    try:
        limiter.acquire()
        granted += 1
    except rs.RateLimited as exc:
        waits.append(exc.retry_after)
    time.sleep(0.002)
print(json.dumps({"granted": granted, "max_wait": max(waits, default=0.0),
                  "elapsed": time.monotonic() - start}))
"""


def test_a_host_an_hour_ahead_starves_nobody(store_spec: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SKEW_CHILD, store_spec, offset],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for offset in ("0", "3600")
    ]
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready", p.stderr
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    normal, ahead = results
    elapsed = max(r["elapsed"] for r in results)
    total = normal["granted"] + ahead["granted"]
    assert total <= 4 + 40 * (elapsed + 0.2)  # one limit for both
    # Neither is starved: each got tokens beyond the burst of 4, i.e. refills. (Without the
    # store's clock the host behind got 2 of 63 and nothing more for an hour.) Not an equal
    # share: two processes polling for scarce tokens on a loaded 2-core machine are not fair
    # to each other (one CI run: 55 and 8), and that is the scheduler's doing, not skew.
    assert normal["granted"] >= 6, results
    assert ahead["granted"] >= 6, results
    # ...and retry_after is honest: one token's time (1/40 s), not an hour
    assert max(r["max_wait"] for r in results) <= 1 / 40 + 1e-3, results


class DeadStore(MemoryStore):
    shared = True

    def __init__(self) -> None:
        super().__init__()
        self.up = False
        self.calls = 0

    def take_tokens(self, key: str, **kw: Any) -> float:
        self.calls += 1
        if not self.up:
            raise rs.StoreError("connection refused")
        return super().take_tokens(key, **kw)


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_on_store_error(clock: VirtualClock, policy: str) -> None:
    store = DeadStore()
    seen: list[events.Event] = []
    stop = events.subscribe(seen.append)
    try:
        limiter = rs.RateLimiter(
            rate=1, per=1.0, burst=1, store=store, clock=clock, on_store_error=policy, name="q"
        )
        results = [limiter.try_acquire() for _ in range(10)]
        if policy == "fail_closed":
            assert results == [False] * 10
            with pytest.raises(rs.RateLimited) as info:
                limiter.call(lambda: None)
            assert 0 < info.value.retry_after <= 1.0  # when the store is tried again
        else:
            assert results == [True] * 10  # unlimited while the store is down
        assert store.calls == 1  # a dead store is tried once a second, not on every call
        store.up = True
        clock.advance(1.0)
        assert limiter.try_acquire()
        assert not limiter.try_acquire()  # limited again
    finally:
        stop()
    kinds = [type(e).__name__ for e in seen if "Store" in type(e).__name__]
    assert kinds == ["StoreUnavailable", "StoreRecovered"]


def test_on_store_error_is_validated() -> None:
    with pytest.raises(rs.ConfigError, match="on_store_error"):
        rs.RateLimiter(on_store_error="ignore")
