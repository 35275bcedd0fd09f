"""Scenario 18 (state across restarts) and shared state between processes, on the real stores:
SQLiteStore on a file, RedisStore on a real redis-server. Every "other process" here is a
real subprocess (a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import resilience as rs
from resilience.stores import RedisStore, SQLiteStore, Store
from resilience.testing import VirtualClock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/redis_server.py
from redis_server import redis_server, redis_url  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
WALL = 1767225600.0  # the VirtualClocks' wall time at monotonic 0, in every process

_PRELUDE = """
import json, sys, time
import resilience as rs
from resilience.stores import RedisStore, SQLiteStore
from resilience.testing import VirtualClock

def down():
    raise ConnectionError("card processor unreachable")

def fail(breaker, n):
    for _ in range(n):
        try:
            breaker.call(down)
        except ConnectionError:
            pass

spec = sys.argv[1]
store = eval(spec)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def process(code: str, spec: str, *args: object) -> Any:
    """Run `code` in a new process with `store` built from `spec`; return what it printed
    (JSON)."""
    out = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code), spec, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.fixture
def spec(store_spec: str) -> str:
    """How a process builds the store: `SQLiteStore("state.db")` or `RedisStore(url)`."""
    return store_spec


def build(spec: str) -> Store:
    store = eval(spec, {"SQLiteStore": SQLiteStore, "RedisStore": RedisStore})
    assert isinstance(store, Store)
    return store


# --- scenario 18: state across restarts ----------------------------------------------------


def test_18_an_open_breaker_is_still_open_after_a_restart(spec: str) -> None:
    # The first process: payments fails and opens; search works. Then the process exits.
    first = process(
        """
        clock = VirtualClock(wall=float(sys.argv[2]))
        pay = rs.CircuitBreaker("payments", minimum_calls=2, open_duration=30,
                                half_open_calls=1, store=store, clock=clock)
        search = rs.CircuitBreaker("search", minimum_calls=2, store=store, clock=clock)
        fail(pay, 2)
        search.call(lambda: "results")
        print(json.dumps({"payments": pay.state, "search": search.state}))
        """,
        spec,
        WALL,
    )
    assert first == {"payments": "open", "search": "closed"}

    # The restarted process, 12 s later: payments is still open, with 18 s to go.
    second = process(
        """
        clock = VirtualClock(wall=float(sys.argv[2]))
        pay = rs.CircuitBreaker("payments", minimum_calls=2, open_duration=30,
                                half_open_calls=1, store=store, clock=clock)
        search = rs.CircuitBreaker("search", minimum_calls=2, store=store, clock=clock)
        out = {"state": pay.state, "remaining": pay.snapshot()["remaining"],
               "search": search.state, "health": rs.health(),
               "critical": rs.health(critical=["payments"])["status"]}
        calls = []
        try:
            pay.call(calls.append, "charge")
        except rs.CircuitOpenError as e:
            out["rejected"] = [e.remaining, str(e)]
        out["calls"] = calls
        out["search_call"] = search.call(lambda: "results")
        clock.advance(18)
        out["after_18s"] = pay.state
        out["trial"] = pay.call(lambda: "charged")
        out["end"] = pay.state
        print(json.dumps(out))
        """,
        spec,
        WALL + 12,
    )
    assert second["state"] == "open"
    assert second["remaining"] == 18.0
    assert second["rejected"][0] == 18.0
    assert "'payments' is open after 2 of 2 calls failed" in second["rejected"][1]
    assert second["calls"] == []  # the call was not made
    assert second["search"] == "closed"  # each operation has its own breaker
    assert second["search_call"] == "results"
    health = second["health"]
    assert health["status"] == "degraded"
    assert health["open"] == ["payments"]
    assert health["breakers"]["payments"]["state"] == "open"
    assert health["breakers"]["payments"]["remaining"] == 18.0
    assert health["breakers"]["payments"]["opened_at"] == WALL
    assert health["breakers"]["search"]["state"] == "closed"
    assert second["critical"] == "down"
    assert second["after_18s"] == "half_open"
    assert second["trial"] == "charged"
    assert second["end"] == "closed"

    # A third start (this process) finds it closed again.
    clock = VirtualClock(wall=WALL + 40)
    again = rs.CircuitBreaker("payments", store=build(spec), clock=clock)
    assert again.state is rs.CircuitState.CLOSED
    assert rs.health(prefix="payments")["status"] == "ok"


def test_18_with_real_time_the_remaining_time_counts_down_across_processes(spec: str) -> None:
    opened = process(
        """
        pay = rs.CircuitBreaker("payments", minimum_calls=1, open_duration=3.0, store=store)
        fail(pay, 1)
        print(json.dumps(pay.snapshot()["opened_at"]))
        """,
        spec,
    )
    later = process(
        """
        pay = rs.CircuitBreaker("payments", minimum_calls=1, open_duration=3.0, store=store)
        snap = pay.snapshot()
        print(json.dumps([str(snap["state"]), snap["remaining"], time.time()]))
        """,
        spec,
    )
    state, remaining, now = later
    assert state == "open"
    assert 0 < remaining < 3.0
    assert remaining == pytest.approx(opened + 3.0 - now, abs=0.05)  # what was left, no more


def test_forced_open_and_disabled_survive_a_restart(spec: str) -> None:
    first = process(
        """
        rs.CircuitBreaker("payments", store=store).force_open()
        rs.CircuitBreaker("search", store=store).disable()
        print("null")
        """,
        spec,
    )
    assert first is None
    store = build(spec)
    assert rs.CircuitBreaker("payments", store=store).state is rs.CircuitState.FORCED_OPEN
    assert rs.CircuitBreaker("search", store=store).state is rs.CircuitState.DISABLED


# --- two breakers, one shared state ------------------------------------------------------


def test_a_breaker_opened_in_another_process_rejects_here(spec: str) -> None:
    clock = VirtualClock(wall=WALL)
    here = rs.CircuitBreaker(
        "llm", minimum_calls=2, open_duration=30, half_open_calls=1, store=build(spec), clock=clock
    )
    assert here.call(lambda: "ok") == "ok"

    # Another process, at the same moment, sees the provider fail and opens the breaker.
    assert (
        process(
            """
        clock = VirtualClock(wall=float(sys.argv[2]))
        there = rs.CircuitBreaker("llm", minimum_calls=2, open_duration=30, store=store,
                                  clock=clock)
        fail(there, 2)
        print(json.dumps(there.state))
        """,
            spec,
            WALL,
        )
        == "open"
    )

    # Within the re-read interval (1 s) this process may still let a call through...
    assert here.call(lambda: "ok") == "ok"
    # ...after it, it has adopted the shared state: rejected without calling.
    clock.advance(1.0)
    calls: list[str] = []
    with pytest.raises(rs.CircuitOpenError) as info:
        here.call(calls.append, "x")
    assert calls == []
    assert info.value.remaining == 29.0
    assert here.state is rs.CircuitState.OPEN

    # It recovers here; the next process to start finds it closed.
    clock.advance(29.0)
    assert here.call(lambda: "ok") == "ok"
    assert here.state is rs.CircuitState.CLOSED
    assert (
        process(
            """
        print(json.dumps(rs.CircuitBreaker("llm", store=store).state))
        """,
            spec,
        )
        == "closed"
    )


def test_two_live_breakers_follow_each_other(spec: str) -> None:
    clock = VirtualClock(wall=WALL)
    kw: dict[str, Any] = {"minimum_calls": 2, "open_duration": 10, "half_open_calls": 1}
    a = rs.CircuitBreaker("db", store=build(spec), clock=clock, **kw)  # own connections,
    b = rs.CircuitBreaker("db", store=build(spec), clock=clock, **kw)  # like two processes
    for _ in range(2):
        with pytest.raises(ConnectionError):
            a.call(_down)
    assert a.state is rs.CircuitState.OPEN
    clock.advance(1.0)
    with pytest.raises(rs.CircuitOpenError) as info:
        b.call(lambda: "never")
    assert info.value.remaining == 9.0
    # a's trial call succeeds and closes it; b, whose time is also up, reads that first
    clock.advance(9.0)
    assert a.call(lambda: "ok") == "ok"
    assert a.state is rs.CircuitState.CLOSED
    assert b.call(lambda: "ok") == "ok"
    assert b.state is rs.CircuitState.CLOSED


def test_when_both_open_at_once_the_loser_adopts_the_winner(spec: str) -> None:
    kw: dict[str, Any] = {"minimum_calls": 1, "open_duration": 30}
    a = rs.CircuitBreaker("mq", store=build(spec), clock=VirtualClock(wall=WALL), **kw)
    b_clock = VirtualClock(wall=WALL + 5)  # b's host clock is 5 s ahead
    b = rs.CircuitBreaker("mq", store=build(spec), clock=b_clock, **kw)
    assert b.call(lambda: "ok") == "ok"  # b has just read the record: it will not for 1 s
    with pytest.raises(ConnectionError):
        a.call(_down)  # a opens first and writes the record
    with pytest.raises(ConnectionError):
        b.call(_down)  # b fails too, opens, loses the compare-and-set, adopts a's record
    snap = b.snapshot()
    assert snap["state"] == "open"
    assert snap["opened_at"] == WALL  # a's opening, not b's
    assert snap["remaining"] == 25.0  # 30 s from a's opening, on b's clock
    assert build(spec).get("breaker:mq")["opened_at"] == WALL  # type: ignore[index]


def test_a_breaker_publishes_again_after_the_store_lost_its_record(spec: str) -> None:
    # A Redis without persistence restarts (or someone deletes the row): the record the
    # breaker last saw is gone. Its next transition must still reach the store, or every
    # later compare-and-set fails and other processes never learn its state again.
    clock = VirtualClock(wall=WALL)
    store = build(spec)
    br = rs.CircuitBreaker("ldap", minimum_calls=1, open_duration=5, half_open_calls=1,
                           store=store, clock=clock)  # fmt: skip
    with pytest.raises(ConnectionError):
        br.call(_down)
    assert store.get("breaker:ldap")["state"] == "open"  # type: ignore[index]
    store.delete("breaker:ldap")
    clock.advance(5)
    assert br.call(lambda: "ok") == "ok"  # half-open trial succeeds: closed, written
    assert store.get("breaker:ldap")["state"] == "closed"  # type: ignore[index]
    with pytest.raises(ConnectionError):
        br.call(_down)
    assert store.get("breaker:ldap")["state"] == "open"  # type: ignore[index]
    assert rs.CircuitBreaker("ldap", store=build(spec), clock=clock).state is rs.CircuitState.OPEN


def _down() -> None:
    raise ConnectionError("down")


# --- one rate limit for several processes ---------------------------------------------------


def test_two_processes_share_one_rate_limit(spec: str) -> None:
    # A rate low enough that each process alone offers several times the shared allowance,
    # even on a loaded machine where a store round trip takes milliseconds (at 200/s, two
    # processes under load made 182 attempts for an allowance of ~100: no contention shown).
    rate, burst, seconds = 20.0, 2.0, 0.5
    code = """
        limiter = rs.RateLimiter(rate=float(sys.argv[2]), per=1.0, burst=float(sys.argv[3]),
                                 store=store, name="api")
        store.get("warm-up")
        print("ready", flush=True)
        sys.stdin.readline()  # both start together
        start = time.time()
        admitted = attempts = 0
        while time.time() - start < float(sys.argv[4]):
            attempts += 1
            if limiter.try_acquire():
                admitted += 1
        print(json.dumps({"admitted": admitted, "attempts": attempts,
                          "start": start, "end": time.time()}))
    """
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _PRELUDE + textwrap.dedent(code),
                spec,
                str(rate),
                str(burst),
                str(seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for _ in range(2)
    ]
    for p in procs:  # both started and connected (a loaded machine starts them seconds apart)
        assert p.stdout is not None
        assert p.stdout.readline() == "ready\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out))
    total = sum(r["admitted"] for r in results)
    window = max(r["end"] for r in results) - min(r["start"] for r in results)
    allowed = burst + rate * window
    # they really contended: each process alone asked for more than both together may have,
    # so two private buckets would have admitted about twice the allowance
    assert all(r["attempts"] > 1.5 * allowed for r in results), (results, allowed)
    assert total <= allowed  # never more than rate * time + burst, across both processes
    assert total >= 0.5 * allowed  # and the limit was used, not starved
    assert all(r["admitted"] > 0 for r in results)


@pytest.mark.redis
def test_a_redis_outage_never_fails_a_call_nor_leaks_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    from resilience import events

    reports: list[events.Event] = []
    stop = events.subscribe(reports.append)
    store = RedisStore(f"redis://:Hunter2-pw@127.0.0.1:{port}/0", timeout=0.5)
    clock = VirtualClock(wall=WALL)
    br = rs.CircuitBreaker("search", minimum_calls=2, store=store, clock=clock)  # reads: fails
    assert br.call(lambda: "ok") == "ok"  # the store is down; the call is not
    clock.advance(1.0)
    with pytest.raises(ConnectionError):
        br.call(_down)  # 1 of 2 failed: open (the write fails, reported)
    assert br.state is rs.CircuitState.OPEN  # it still protects, on its in-memory state
    clock.advance(1.0)
    with pytest.raises(rs.CircuitOpenError):
        br.call(lambda: "never")
    stop()
    down = [e for e in reports if isinstance(e, events.StoreUnavailable)]
    assert len(down) == 1  # the outage was reported once (an event and a log line)...
    text = f"{down[0]}\n{caplog.text}"
    assert "cannot use its store" in caplog.text
    assert "redis://:***@127.0.0.1" in text  # ...naming the server...
    assert "Hunter2" not in text  # ...never the password
