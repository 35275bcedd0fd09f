"""One breaker for a fleet: several breakers (each with its own store connection, as separate
processes have) share one record in a SQLite file. Transitions are compare-and-set, HALF_OPEN
trial permits are reserved in the record, and a store that fails, is slow, is emptied or holds
garbage never makes `call` raise anything but the function's own error or CircuitOpenError.

The multi-process version (real processes, real Redis) is tests/scenarios/test_fleet_scenarios.py.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

import resilience as rs
from resilience import events
from resilience.stores import MemoryStore, SQLiteStore
from resilience.testing import VirtualClock

ROOT = Path(__file__).resolve().parents[1]
KEY = "breaker:db"


def down() -> None:
    raise ConnectionError("refused")


def ok() -> str:
    return "ok"


def fail(br: rs.CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises((ConnectionError, rs.CircuitOpenError)):
            br.call(down)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def fleet(path: Path, clock: VirtualClock, n: int, **kw: Any) -> list[rs.CircuitBreaker]:
    kw.setdefault("minimum_calls", 4)
    kw.setdefault("open_duration", 10.0)
    kw.setdefault("half_open_calls", 3)
    return [
        rs.CircuitBreaker("db", store=SQLiteStore(path / "state.db"), clock=clock, **kw)
        for _ in range(n)
    ]


def record(path: Path) -> dict[str, Any]:
    got = SQLiteStore(path / "state.db").get(KEY)
    assert got is not None
    return got


# --- trial permits live in the record -------------------------------------------------------


def test_exactly_half_open_calls_trial_calls_run_fleet_wide(
    tmp_path: Path, clock: VirtualClock
) -> None:
    brs = fleet(tmp_path, clock, 5)
    fail(brs[0], 4)
    clock.advance(10.0)
    ran: list[int] = []
    rejected: list[tuple[int, str]] = []

    def nest(i: int) -> str:
        # Breaker i's trial call is still running while breaker i+1 asks for a permit: five
        # "processes" with overlapping trial calls.
        ran.append(i)
        if i + 1 < len(brs):
            try:
                brs[i + 1].call(nest, i + 1)
            except rs.CircuitOpenError as exc:
                rejected.append((i + 1, exc.state))
        return "ok"

    brs[0].call(nest, 0)
    assert ran == [0, 1, 2]  # three permits, fleet-wide; the 4th process was refused
    assert rejected == [(3, "half_open")]
    assert record(tmp_path)["state"] == "closed"  # all three passed: the fleet closed
    clock.advance(1.0)
    assert all(b.call(ok) == "ok" for b in brs)
    assert {b.state for b in brs} == {rs.CircuitState.CLOSED}


def test_a_process_that_sees_half_open_does_not_start_its_own_round(
    tmp_path: Path, clock: VirtualClock
) -> None:
    a, b = fleet(tmp_path, clock, 2)
    fail(a, 4)
    clock.advance(10.0)
    holder: list[dict[str, Any]] = []

    def trial() -> str:
        holder.append(record(tmp_path))
        # b sees the HALF_OPEN record: it may take a permit of this round, not start one
        assert b.call(ok) == "ok"
        after = record(tmp_path)
        assert after["round"] == holder[0]["round"]
        assert after["trials"] == 2
        assert after["passed"] == 1
        assert b.state is rs.CircuitState.HALF_OPEN
        assert b.snapshot()["trial_calls"] == 2  # the fleet's count, not b's own (1)
        assert a.snapshot()["trial_calls"] == 1  # a last saw the record with its own permit
        return "ok"

    a.call(trial)
    assert record(tmp_path)["state"] == "half_open"  # 2 of 3 passed
    assert a.snapshot()["trial_calls"] == 2
    a.call(ok)
    assert record(tmp_path)["state"] == "closed"


def test_the_closer_wins_a_stale_process_adopts_closed(tmp_path: Path, clock: VirtualClock) -> None:
    a, b = fleet(tmp_path, clock, 2, half_open_calls=1)
    fail(a, 4)
    with pytest.raises(rs.CircuitOpenError):
        b.call(ok)  # b adopted OPEN
    clock.advance(10.0)
    a.call(ok)  # a's trial closes the fleet
    closed = record(tmp_path)
    assert closed["state"] == "closed"
    # b still holds OPEN-with-time-up locally: it must take CLOSED, not start a round
    assert b.call(ok) == "ok"
    assert b.state is rs.CircuitState.CLOSED
    assert record(tmp_path) == closed


def test_a_failed_trial_reopens_the_fleet_and_late_outcomes_of_the_round_are_ignored(
    tmp_path: Path, clock: VirtualClock
) -> None:
    a, b = fleet(tmp_path, clock, 2, half_open_calls=2)
    fail(a, 4)
    clock.advance(10.0)

    def trial() -> str:
        with pytest.raises(ConnectionError):
            b.call(down)  # b's trial fails: the fleet reopens
        assert record(tmp_path)["state"] == "open"
        return "ok"

    a.call(trial)  # a's success belongs to a round that is over
    rec = record(tmp_path)
    assert rec["state"] == "open"
    assert rec["reopens"] == 1
    with pytest.raises(rs.CircuitOpenError):
        a.call(ok)


def test_a_round_whose_permit_holder_died_is_restarted_after_open_duration(
    tmp_path: Path, clock: VirtualClock
) -> None:
    a, b = fleet(tmp_path, clock, 2, half_open_calls=1)
    fail(a, 4)
    clock.advance(10.0)
    a._admit()  # a takes the only permit and "dies" holding it
    with pytest.raises(rs.CircuitOpenError):
        b.call(ok)
    clock.advance(10.5)
    assert b.call(ok) == "ok"  # the stale round was restarted and b's trial closed it
    assert record(tmp_path)["state"] == "closed"


def test_the_permit_of_a_trial_that_ended_without_an_outcome_goes_back(
    tmp_path: Path, clock: VirtualClock
) -> None:
    (a,) = fleet(tmp_path, clock, 1, half_open_calls=1)
    fail(a, 4)
    clock.advance(10.0)
    with pytest.raises(KeyError):
        a.call(lambda: {}["x"])  # PERMANENT: not counted
    assert record(tmp_path)["trials"] == 0
    assert a.call(ok) == "ok"
    assert record(tmp_path)["state"] == "closed"


# --- a store that misbehaves ------------------------------------------------------------------


class FlakyStore(MemoryStore):
    """A shared store that can be switched off, and that can take time to answer."""

    shared = True

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock
        self.up = True
        self.latency = 0.0
        self.reads = 0

    def _io(self) -> None:
        self.clock.advance(self.latency)
        if not self.up:
            raise rs.StoreError("connection refused")

    def get(self, key: str) -> dict[str, Any] | None:
        self.reads += 1
        self._io()
        return super().get(key)

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        self._io()
        super().set(key, value)

    def compare_and_set(
        self, key: str, expected: Mapping[str, Any] | None, value: Mapping[str, Any]
    ) -> bool:
        self._io()
        return super().compare_and_set(key, expected, value)


def test_an_outage_is_reported_once_and_its_end_once(
    clock: VirtualClock, seen: list[events.Event], caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(clock)
    br = rs.CircuitBreaker(
        "db", minimum_calls=4, window=rs.CountWindow(4), open_duration=10, store=store, clock=clock
    )
    store.up = False
    for _ in range(30):
        clock.advance(0.5)
        assert br.call(ok) == "ok"
    fail(br, 4)  # it still protects on its local state
    with pytest.raises(rs.CircuitOpenError):
        br.call(ok)
    down_events = [e for e in seen if isinstance(e, events.StoreUnavailable)]
    assert len(down_events) == 1
    assert down_events[0].error == "StoreError: connection refused"
    store.up = True
    clock.advance(1.0)
    with pytest.raises(rs.CircuitOpenError):
        br.call(ok)
    back = [e for e in seen if isinstance(e, events.StoreRecovered)]
    assert len(back) == 1
    assert back[0].downtime > 15
    assert store.get(KEY)["state"] == "open"  # type: ignore[index]  # republished
    lines = [r.getMessage() for r in caplog.records if r.name == "resilience.stores"]
    assert len(lines) == 2
    assert set(dataclass_fields(down_events[0])) & {
        "level", "event", "timestamp", "logger", "msg", "exc_info", "stack_info"
    } == set()  # fmt: skip


def dataclass_fields(event: events.Event) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(event)]


def test_the_re_read_cadence_does_not_grow_with_store_latency(clock: VirtualClock) -> None:
    store = FlakyStore(clock)
    br = rs.CircuitBreaker("db", store=store, clock=clock)
    br.call(ok)
    store.latency = 3.0  # every read takes 3 s (a paused Redis with a 3 s socket timeout)
    store.up = False
    clock.advance(1.0)
    reads = store.reads
    br.call(ok)  # this call reads (and waits 3 s)
    assert store.reads == reads + 1
    for _ in range(9):
        clock.advance(0.1)
        br.call(ok)  # the next read is due 1 s after the last one *returned*
    assert store.reads == reads + 1
    clock.advance(0.2)
    br.call(ok)
    assert store.reads == reads + 2


def test_the_breaker_republishes_into_a_store_that_came_back_empty(clock: VirtualClock) -> None:
    store = FlakyStore(clock)
    br = rs.CircuitBreaker("db", minimum_calls=4, open_duration=10, store=store, clock=clock)
    fail(br, 4)
    assert store.get(KEY)["state"] == "open"  # type: ignore[index]
    store.delete(KEY)  # a Redis restarted empty
    clock.advance(1.0)
    with pytest.raises(rs.CircuitOpenError):
        br.call(ok)
    assert store.get(KEY)["state"] == "open"  # type: ignore[index]  # before any transition


FIELDS = ("schema", "version", "state", "opened_at", "open_duration", "reopens", "reason",
          "round", "trials", "passed", "slow", "since")  # fmt: skip
ODD = [None, True, False, 0, 1, -1, 2**70, 1.5, -0.0, 1e308, "", "x", "open", "half_open",
       "closed", "forced_open", "disabled", [], [1], {}, {"a": 1}]  # fmt: skip


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth < 3 and pick < 0.1:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if depth < 3 and pick < 0.2:
        return {rng.choice(FIELDS): _value(rng, depth + 1) for _ in range(rng.randrange(3))}
    return rng.choice(ODD)


def malformed_records(n: int, seed: int = 10) -> list[dict[str, Any]]:
    """Records of every shape: mostly the breaker's own fields, with values of any type."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        record = {f: _value(rng) for f in rng.sample(FIELDS, rng.randrange(len(FIELDS) + 1))}
        if rng.random() < 0.5:
            record["schema"] = 1  # most get past the first check
        records.append(record)
    return records


@pytest.mark.parametrize("seed", range(4))
def test_any_record_shape_never_makes_call_raise_anything_else(seed: int) -> None:
    rng = random.Random(seed)
    for garbage in malformed_records(40, seed):
        clock = VirtualClock()
        store = FlakyStore(clock)
        store.set(KEY, garbage)
        br = rs.CircuitBreaker(
            "db", minimum_calls=2, open_duration=1, half_open_calls=1, store=store, clock=clock
        )
        for _ in range(rng.randrange(1, 12)):
            good = rng.random() < 0.5
            clock.advance(0.6)
            try:
                br.call(ok if good else down)
            except (ConnectionError, rs.CircuitOpenError):
                pass
            if not good:
                store.set(KEY, garbage)  # and garbage again, mid-run


def test_a_record_that_is_not_json_is_overwritten(tmp_path: Path, clock: VirtualClock) -> None:
    import sqlite3

    (a,) = fleet(tmp_path, clock, 1)
    a.call(ok)
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("INSERT OR REPLACE INTO records VALUES (?, ?)", (KEY, "{not json"))
    db.commit()
    db.close()
    fail(a, 4)
    assert record(tmp_path)["state"] == "open"


# --- plain python, no test hooks ----------------------------------------------------------------


def _child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_plain_python_with_a_dead_redis_exits_cleanly() -> None:
    pytest.importorskip("redis")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    out = _child(
        """
        import sys, time
        import resilience as rs
        from resilience.stores import RedisStore

        br = rs.CircuitBreaker("x", minimum_calls=2, open_duration=0.3,
                               store=RedisStore(sys.argv[1], timeout=0.2))
        def down():
            raise ConnectionError("backend down")
        results = []
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            for fn in (lambda: "ok", down):
                try:
                    results.append(br.call(fn))
                except ConnectionError:
                    results.append("own error")
                except rs.CircuitOpenError:
                    results.append("open")
            time.sleep(0.05)
        assert {"ok", "own error", "open"} <= set(results), set(results)
        print("done")
        """,
        f"redis://:pw-Secret9@127.0.0.1:{port}/0",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
    assert "Traceback" not in out.stderr
    assert "TypeError" not in out.stderr
    assert out.stderr.count("cannot use its store") == 1  # once per outage
    assert "pw-Secret9" not in out.stderr


def test_plain_python_with_a_malformed_record_runs_the_function(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SQLiteStore(path).set(KEY, {"version": "x"})
    out = _child(
        """
        import sys
        import resilience as rs
        from resilience.stores import SQLiteStore
        br = rs.CircuitBreaker("db", store=SQLiteStore(sys.argv[1]))
        print(sum(br.call(lambda: 1) for _ in range(50)))
        """,
        str(path),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "50"
    assert out.stderr == ""


# --- async shells never do store I/O on the event loop ---------------------------------------


class SlowStore:
    """A shared store whose every operation blocks its thread for `delay` (a slow Redis)."""

    shared = True

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.inner = MemoryStore()
        self.threads: set[str] = set()

    def _io(self) -> None:
        import threading
        import time

        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)

    def get(self, key: str) -> dict[str, Any] | None:
        self._io()
        return self.inner.get(key)

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        self._io()
        self.inner.set(key, value)

    def compare_and_set(
        self, key: str, expected: Mapping[str, Any] | None, value: Mapping[str, Any]
    ) -> bool:
        self._io()
        return self.inner.compare_and_set(key, expected, value)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def take_tokens(self, key: str, **kw: Any) -> float:
        self._io()
        return self.inner.take_tokens(key, **kw)


@pytest.mark.anyio
async def test_acall_does_its_store_io_off_the_event_loop(anyio_backend: str) -> None:
    import threading
    import time

    import anyio

    store = SlowStore(0.4)
    clock = VirtualClock()
    br = rs.CircuitBreaker("db", minimum_calls=2, open_duration=0.2, store=store, clock=clock)
    limiter = rs.RateLimiter(rate=1000, store=store, name="api")
    store.threads.clear()
    loop_thread = threading.current_thread().name
    gaps: list[float] = []
    done = False

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done:
            await anyio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def down() -> None:
        raise ConnectionError("down")

    async def landed(test: Callable[[dict[str, Any]], bool]) -> None:
        while not test(store.inner.get("breaker:db") or {}):
            await anyio.sleep(0.01)

    async def up() -> str:
        return "ok"

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            assert await br.acall(up) == "ok"  # the first call reads the record
            with pytest.raises(ConnectionError):
                await br.acall(down)  # 1 of 2 failed, it opens: the write goes to the writer
            with pytest.raises(rs.CircuitOpenError):
                await br.acall(up)
            await landed(lambda r: r.get("state") == "open")  # written by the writer thread
            clock.advance(0.5)
            assert await br.acall(up) == "ok"  # a trial call: permit and outcome in the store
            assert await limiter.acall(up) == "ok"  # one take_tokens round trip
            await landed(lambda r: r.get("passed") == 1)  # the outcome, counted off the loop
            done = True
    assert loop_thread not in store.threads  # not one store call on the loop's thread
    assert len(store.threads) >= 1
    assert max(gaps) < 0.3, max(gaps)  # each store call blocks 400 ms; the loop never did


def test_a_host_whose_clock_is_ahead_does_not_restart_a_live_round(tmp_path: Path) -> None:
    clock = VirtualClock()
    ahead = VirtualClock(wall=clock.time() + 3600)  # a host one hour ahead
    kw: dict[str, Any] = {"minimum_calls": 4, "open_duration": 10.0, "half_open_calls": 1}
    a = rs.CircuitBreaker("db", store=SQLiteStore(tmp_path / "state.db"), clock=clock, **kw)
    b = rs.CircuitBreaker("db", store=SQLiteStore(tmp_path / "state.db"), clock=ahead, **kw)
    fail(a, 4)
    clock.advance(10.0)
    ahead.advance(10.0)

    def trial() -> str:
        with pytest.raises(rs.CircuitOpenError) as info:
            b.call(ok)  # the round is an hour old by b's wall clock, but it is live
        assert info.value.state == "half_open"
        return "ok"

    a.call(trial)
    assert record(tmp_path)["state"] == "closed"  # a's trial closed it; b undid nothing
