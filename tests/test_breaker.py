"""CircuitBreaker: every edge of the state machine under a VirtualClock, and its contract."""

from __future__ import annotations

import gc
import inspect
import math
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import resilience as rs
from resilience import _registry, events
from resilience.breaker import CircuitBreaker, CircuitState, CountWindow, TimeWindow
from resilience.stores import MemoryStore
from resilience.testing import VirtualClock


def boom() -> None:
    raise ConnectionError("refused")


def ok() -> str:
    return "ok"


def fail(br: CircuitBreaker, n: int = 1, exc: type[Exception] = ConnectionError) -> None:
    def raiser() -> None:
        raise exc("x")

    for _ in range(n):
        with pytest.raises(exc):
            br.call(raiser)


def succeed(br: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        assert br.call(ok) == "ok"


def make(clock: VirtualClock, **kw: Any) -> CircuitBreaker:
    kw.setdefault("minimum_calls", 4)
    kw.setdefault("open_duration", 10.0)
    kw.setdefault("half_open_calls", 2)
    return CircuitBreaker(kw.pop("name", "svc"), clock=clock, **kw)


# --- CLOSED -> OPEN ------------------------------------------------------------------------


@pytest.mark.parametrize("listening", [False, True], ids=["fast-path", "with-listener"])
def test_opens_on_failure_rate_once_minimum_calls_reached(
    clock: VirtualClock, listening: bool
) -> None:
    stop = events.subscribe(lambda e: None) if listening else None
    br = make(clock, failure_rate_threshold=0.5)
    fail(br, 3)
    assert br.state is CircuitState.CLOSED  # 3 calls < minimum_calls
    # The 4th call is a success, yet it completes the window: 3 of 4 failed -> open.
    succeed(br)
    assert br.state is CircuitState.OPEN
    snap = br.snapshot()
    assert (snap["calls"], snap["failures"], snap["failure_rate"]) == (4, 3, 0.75)
    assert snap["reason"] == "3 of 4 calls failed"
    if stop is not None:
        stop()


def test_stays_closed_below_threshold_and_threshold_is_inclusive(clock: VirtualClock) -> None:
    br = make(clock, failure_rate_threshold=0.5, minimum_calls=4)
    succeed(br, 3)
    fail(br)
    assert br.state is CircuitState.CLOSED  # 1/4 < 0.5
    fail(br)
    assert br.state is CircuitState.CLOSED  # 2/5 < 0.5
    fail(br)
    assert br.state is CircuitState.OPEN  # 3/6 == 0.5 opens


def test_threshold_compared_as_a_rate_not_a_float_product(clock: VirtualClock) -> None:
    # 0.3 * 10 == 3.0000000000000004: 3 failures of 10 must still reach a 0.3 threshold.
    br = make(clock, failure_rate_threshold=0.3, minimum_calls=10)
    succeed(br, 7)
    fail(br, 2)
    assert br.state is CircuitState.CLOSED
    fail(br)
    assert br.state is CircuitState.OPEN


def test_count_window_forgets_old_outcomes(clock: VirtualClock) -> None:
    br = make(clock, window=CountWindow(5), minimum_calls=5, failure_rate_threshold=0.6)
    fail(br, 2)
    succeed(br, 3)  # window: F F S S S
    succeed(br, 2)  # window: S S S S S (the failures left)
    assert br.snapshot()["failures"] == 0
    fail(br, 2)  # S S S F F: 0.4
    assert br.state is CircuitState.CLOSED
    fail(br)  # S S F F F: 0.6
    assert br.state is CircuitState.OPEN


def test_minimum_calls_larger_than_count_window_is_clamped(clock: VirtualClock) -> None:
    br = make(clock, window=CountWindow(3), minimum_calls=10)
    fail(br, 3)
    assert br.state is CircuitState.OPEN
    assert br.snapshot()["minimum_calls"] == 3


def test_opens_on_slow_call_rate(clock: VirtualClock) -> None:
    br = make(clock, slow_call_threshold=2.0, slow_call_rate_threshold=0.5, minimum_calls=4)

    def slow() -> str:
        clock.advance(2.0)  # exactly the threshold counts as slow
        return "late"

    succeed(br, 2)
    assert br.call(slow) == "late"
    assert br.state is CircuitState.CLOSED
    assert br.call(slow) == "late"  # 2 of 4 slow, none failed
    assert br.state is CircuitState.OPEN
    snap = br.snapshot()
    assert (snap["slow_calls"], snap["failures"], snap["slow_call_rate"]) == (2, 0, 0.5)
    assert snap["reason"] == "2 of 4 calls were slow"


def test_no_slow_threshold_means_no_call_is_slow(clock: VirtualClock) -> None:
    br = make(clock, slow_call_rate_threshold=0.1)

    def slow() -> None:
        clock.advance(1e6)

    for _ in range(10):
        br.call(slow)
    assert br.state is CircuitState.CLOSED
    assert br.snapshot()["slow_calls"] == 0


def test_time_window_expires_under_the_clock(clock: VirtualClock) -> None:
    br = make(clock, window=TimeWindow(seconds=10), minimum_calls=4, failure_rate_threshold=0.5)
    fail(br, 3)
    assert br.snapshot()["calls"] == 3
    clock.advance(10.0)  # those 3 failures leave the window
    assert br.snapshot()["calls"] == 0
    fail(br, 1)
    succeed(br, 2)
    assert br.state is CircuitState.CLOSED
    clock.advance(4.0)
    fail(br, 1)  # 2 of 4 within the last 10 s
    assert br.state is CircuitState.OPEN


def test_time_window_buckets_slide(clock: VirtualClock) -> None:
    br = make(clock, window=TimeWindow(seconds=3), minimum_calls=100)
    fail(br)
    clock.advance(1.0)
    fail(br)
    clock.advance(1.0)
    fail(br)
    assert br.snapshot()["failures"] == 3
    clock.advance(1.0)
    assert br.snapshot()["failures"] == 2  # the first second left
    clock.advance(1.5)
    assert br.snapshot()["failures"] == 1


# --- classification ------------------------------------------------------------------------


def test_permanent_errors_are_reraised_not_counted(clock: VirtualClock) -> None:
    br = make(clock)
    fail(br, 20, exc=ValueError)
    assert br.state is CircuitState.CLOSED
    assert br.snapshot()["calls"] == 0


def test_rate_limited_counts_as_failure(clock: VirtualClock) -> None:
    class TooMany(Exception):
        status_code = 429

    br = make(clock)
    fail(br, 4, exc=TooMany)
    assert br.state is CircuitState.OPEN


def test_results_are_classified_only_when_the_classifier_inspects_them(
    clock: VirtualClock,
) -> None:
    clf = rs.Classifier(
        result=lambda r: {
            "busy": rs.Verdict.TRANSIENT,
            "gone": rs.Verdict.PERMANENT,
        }.get(r)
    )
    br = make(clock, classifier=clf)
    for _ in range(5):
        assert br.call(lambda: "gone") == "gone"  # ignored
    assert br.snapshot()["calls"] == 0
    for _ in range(4):
        assert br.call(lambda: "busy") == "busy"  # returned as is, counted as a failure
    assert br.state is CircuitState.OPEN


def test_keyboard_interrupt_is_not_a_failure(clock: VirtualClock) -> None:
    br = make(clock, minimum_calls=1)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        br.call(interrupted)
    assert br.state is CircuitState.CLOSED
    assert br.snapshot()["calls"] == 0


# --- OPEN ----------------------------------------------------------------------------------


def test_open_rejects_without_calling_and_says_why(clock: VirtualClock) -> None:
    br = make(clock, name="payments")
    fail(br, 4)
    clock.advance(2.5)
    ran = []
    with pytest.raises(rs.CircuitOpenError) as info:
        br.call(ran.append, 1)
    assert ran == []
    err = info.value
    assert (err.name, err.state, err.remaining) == ("payments", "open", 7.5)
    assert str(err) == ("circuit 'payments' is open after 4 of 4 calls failed; next trial in 7.5 s")
    assert br.snapshot()["remaining"] == 7.5


def test_each_rejection_is_a_fresh_exception_with_a_flat_traceback(clock: VirtualClock) -> None:
    br = make(clock)
    fail(br, 4)
    errors = []
    depths = set()
    for _ in range(1000):
        try:
            br.call(ok)
        except rs.CircuitOpenError as e:
            errors.append(e)
            tb, depth = e.__traceback__, 0
            while tb is not None:
                depth, tb = depth + 1, tb.tb_next
            depths.add(depth)
    assert all(e.__context__ is None for e in errors)
    assert len({id(e) for e in errors}) == 1000
    assert len(depths) == 1


def test_open_to_half_open_after_open_duration(clock: VirtualClock) -> None:
    br = make(clock)
    fail(br, 4)
    clock.advance(9.999)
    assert br.state is CircuitState.OPEN
    clock.advance(0.001)
    assert br.state is CircuitState.HALF_OPEN
    assert br.snapshot()["remaining"] == 0.0


# --- HALF_OPEN ------------------------------------------------------------------------------


def test_half_open_closes_when_all_trials_succeed_and_empties_window(clock: VirtualClock) -> None:
    br = make(clock, half_open_calls=3)
    fail(br, 4)
    clock.advance(10)
    succeed(br, 2)
    assert br.state is CircuitState.HALF_OPEN
    succeed(br)
    assert br.state is CircuitState.CLOSED
    snap = br.snapshot()
    assert (snap["calls"], snap["failures"], snap["opened_at"]) == (0, 0, None)
    fail(br, 3)  # a fresh window: needs minimum_calls again
    assert br.state is CircuitState.CLOSED


def test_half_open_failure_reopens_with_doubling_up_to_max(clock: VirtualClock) -> None:
    br = make(clock, open_duration=10.0, open_duration_max=50.0, half_open_calls=1)
    fail(br, 4)
    durations = []
    for _ in range(5):
        durations.append(br.snapshot()["open_duration"])
        clock.advance(durations[-1] - 0.5)
        with pytest.raises(rs.CircuitOpenError):
            br.call(ok)
        clock.advance(0.5)
        fail(br)  # the trial call fails -> OPEN again
        assert br.state is CircuitState.OPEN
    assert durations == [10.0, 20.0, 40.0, 50.0, 50.0]
    assert br.snapshot()["reason"] == "a trial call failed"
    clock.advance(50.0)
    succeed(br)  # the trial succeeds -> CLOSED, and the duration is back to its base
    assert br.state is CircuitState.CLOSED
    fail(br, 4)
    assert br.snapshot()["open_duration"] == 10.0


def test_without_max_open_duration_stays_constant(clock: VirtualClock) -> None:
    br = make(clock, half_open_calls=1)
    fail(br, 4)
    for _ in range(3):
        clock.advance(10)
        fail(br)
        assert br.snapshot()["open_duration"] == 10.0


def test_half_open_rejects_beyond_trial_slots(clock: VirtualClock) -> None:
    br = make(clock, half_open_calls=2)
    fail(br, 4)
    clock.advance(10)
    release = threading.Event()
    started = threading.Barrier(3)

    def trial() -> str:
        started.wait(timeout=5)
        release.wait(timeout=5)
        return "ok"

    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(br.call(trial)), daemon=True)
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    started.wait(timeout=5)  # both trials are inside the call (BrokenBarrierError if not)
    with pytest.raises(rs.CircuitOpenError) as info:
        br.call(ok)
    assert (info.value.state, info.value.remaining) == ("half_open", 0.0)
    assert "half-open" in str(info.value)
    release.set()
    for t in threads:
        t.join(timeout=5)
        assert not t.is_alive()
    assert results == ["ok", "ok"]
    assert br.state is CircuitState.CLOSED


def test_permanent_error_frees_its_trial_slot(clock: VirtualClock) -> None:
    br = make(clock, half_open_calls=1)
    fail(br, 4)
    clock.advance(10)
    fail(br, 3, exc=ValueError)  # each one takes the only slot and gives it back
    assert br.state is CircuitState.HALF_OPEN
    succeed(br)
    assert br.state is CircuitState.CLOSED


def test_interrupt_frees_its_trial_slot(clock: VirtualClock) -> None:
    br = make(clock, half_open_calls=1)
    fail(br, 4)
    clock.advance(10)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        br.call(interrupted)
    assert br.snapshot()["trial_calls"] == 0
    succeed(br)
    assert br.state is CircuitState.CLOSED


def test_slow_trials_reopen(clock: VirtualClock) -> None:
    br = make(clock, slow_call_threshold=1.0, slow_call_rate_threshold=0.5, half_open_calls=2)
    fail(br, 4)
    clock.advance(10)

    def slow() -> None:
        clock.advance(1.0)

    br.call(slow)
    succeed(br)
    assert br.state is CircuitState.OPEN
    assert br.snapshot()["reason"] == "1 of 2 trial calls were slow"


def test_stale_outcome_does_not_count_in_a_later_state(clock: VirtualClock) -> None:
    br = make(clock, half_open_calls=1)

    def lingering() -> None:
        fail(br, 4)  # the breaker opens while this call runs...
        clock.advance(10)
        succeed(br)  # ...and closes again through its trial
        raise ConnectionError("late")

    with pytest.raises(ConnectionError):
        br.call(lingering)
    assert br.state is CircuitState.CLOSED
    assert br.snapshot()["calls"] == 0  # the late failure belonged to an earlier window


# --- manual states ---------------------------------------------------------------------------


def test_force_open_rejects_until_reset(clock: VirtualClock) -> None:
    br = make(clock, name="db")
    br.force_open()
    clock.advance(1e6)
    with pytest.raises(rs.CircuitOpenError) as info:
        br.call(ok)
    assert (info.value.state, info.value.remaining) == ("forced_open", math.inf)
    assert str(info.value) == "circuit 'db' is forced open; it rejects calls until reset()"
    assert br.state is CircuitState.FORCED_OPEN
    assert br.snapshot()["remaining"] == math.inf
    br.reset()
    assert br.state is CircuitState.CLOSED
    succeed(br)


def test_disable_lets_everything_through_and_records_nothing(
    clock: VirtualClock, seen: list[events.Event]
) -> None:
    br = make(clock)
    fail(br, 3)
    br.disable()
    assert br.state is CircuitState.DISABLED
    seen.clear()
    fail(br, 50)
    succeed(br, 5)
    assert br.state is CircuitState.DISABLED
    assert br.snapshot()["calls"] == 0
    assert seen == []
    br.reset()
    fail(br, 3)
    assert br.state is CircuitState.CLOSED  # 3 calls: the window started empty


def test_reset_empties_the_window_and_the_backoff(clock: VirtualClock) -> None:
    br = make(clock, open_duration_max=100.0, half_open_calls=1)
    fail(br, 4)
    clock.advance(10)
    fail(br)
    assert br.snapshot()["open_duration"] == 20.0
    br.reset()
    snap = br.snapshot()
    assert (snap["state"], snap["calls"], snap["open_duration"]) == ("closed", 0, 10.0)
    fail(br, 3)
    br.reset()
    fail(br, 3)
    assert br.state is CircuitState.CLOSED


# --- events ---------------------------------------------------------------------------------


def test_events(clock: VirtualClock, seen: list[events.Event]) -> None:
    br = make(clock, name="ev", slow_call_threshold=5.0, half_open_calls=1)
    succeed(br)
    fail(br, 1, exc=ValueError)
    fail(br, 3)
    with pytest.raises(rs.CircuitOpenError):
        br.call(ok)
    clock.advance(10)
    succeed(br)
    br.force_open()
    with pytest.raises(rs.CircuitOpenError):
        br.call(ok)
    br.reset()
    transitions = [
        (e.from_state, e.to_state, e.reason) for e in seen if isinstance(e, events.StateTransition)
    ]
    assert transitions == [
        ("closed", "open", "3 of 4 calls failed"),
        ("open", "half_open", "open_duration elapsed"),
        ("half_open", "closed", "trial calls succeeded"),
        ("closed", "forced_open", "force_open()"),
        ("forced_open", "closed", "reset()"),
    ]
    completed = [(e.outcome, e.slow) for e in seen if isinstance(e, events.CallCompleted)]
    assert completed == [
        ("success", False),
        ("ignored", False),
        ("failure", False),
        ("failure", False),
        ("failure", False),
        ("success", False),
    ]
    rejected = [(e.reason, e.retry_after) for e in seen if isinstance(e, events.CallRejected)]
    assert rejected == [("circuit_open", 10.0), ("forced_open", math.inf)]
    assert all(e.operation == "ev" for e in seen)


def test_half_open_full_event_and_slow_flag(clock: VirtualClock, seen: list[events.Event]) -> None:
    br = make(clock, half_open_calls=1, slow_call_threshold=1.0)
    fail(br, 4)
    clock.advance(10)

    def nested() -> None:
        clock.advance(1.0)
        with pytest.raises(rs.CircuitOpenError):
            br.call(ok)

    br.call(nested)
    assert [e.reason for e in seen if isinstance(e, events.CallRejected)] == ["half_open_full"]
    last = [e for e in seen if isinstance(e, events.CallCompleted)][-1]
    assert (last.outcome, last.slow, last.duration) == ("success", True, 1.0)


def test_a_listener_may_use_the_breaker(clock: VirtualClock) -> None:
    br = make(clock)
    snaps: list[dict[str, Any]] = []

    def listener(e: events.Event) -> None:
        if isinstance(e, events.StateTransition):
            snaps.append(br.snapshot())  # no deadlock: events go out after the lock

    stop = events.subscribe(listener)
    try:
        fail(br, 4)
    finally:
        stop()
    assert snaps[0]["state"] == "open"


# --- the store --------------------------------------------------------------------------------


def test_open_state_survives_a_restart(clock: VirtualClock) -> None:
    store = MemoryStore()
    first = make(clock, name="pay", store=store, open_duration=30.0)
    fail(first, 4)
    record = store.get("breaker:pay")
    assert record is not None
    assert record["state"] == "open"
    assert record["opened_at"] == clock.time()
    assert record["open_duration"] == 30.0
    assert record["schema"] == 1
    assert record["version"] >= 1
    clock.advance(12.0)
    del first
    second = make(clock, name="pay", store=store, open_duration=30.0)  # "after the restart"
    assert second.state is CircuitState.OPEN
    with pytest.raises(rs.CircuitOpenError) as info:
        second.call(ok)
    assert info.value.remaining == pytest.approx(18.0)
    assert info.value.reason == "4 of 4 calls failed"
    clock.advance(18.0)
    assert second.state is CircuitState.HALF_OPEN


def test_restart_keeps_the_doubled_duration_and_manual_states(clock: VirtualClock) -> None:
    store = MemoryStore()
    a = make(clock, name="x", store=store, open_duration_max=80.0, half_open_calls=1)
    fail(a, 4)
    clock.advance(10)
    fail(a)
    b = make(clock, name="x", store=store, open_duration_max=80.0, half_open_calls=1)
    assert b.snapshot()["open_duration"] == 20.0
    b.force_open()
    c = make(clock, name="x", store=store)
    assert c.state is CircuitState.FORCED_OPEN
    c.reset()
    assert make(clock, name="x", store=store).state is CircuitState.CLOSED


def test_malformed_record_is_ignored(clock: VirtualClock) -> None:
    store = MemoryStore()
    store.set("breaker:y", {"schema": 1, "state": "melted", "version": 3})
    assert make(clock, name="y", store=store).state is CircuitState.CLOSED
    store.set("breaker:y", {"schema": 99, "state": "open"})
    assert make(clock, name="y", store=store).state is CircuitState.CLOSED


class SharedMemoryStore(MemoryStore):
    """A MemoryStore that says other processes see it (as a Redis store would)."""

    shared = True


def test_shared_store_carries_state_between_breakers(clock: VirtualClock) -> None:
    store = SharedMemoryStore()
    a = make(clock, name="s", store=store)
    b = make(clock, name="s", store=store)  # another process, the same record
    fail(a, 4)
    assert a.state is CircuitState.OPEN
    with pytest.raises(rs.CircuitOpenError) as info:
        b.call(ok)  # b re-reads the record before deciding
    assert info.value.remaining == pytest.approx(10.0)
    clock.advance(10)
    succeed(b, 2)  # b runs the trials and closes
    assert b.state is CircuitState.CLOSED
    clock.advance(1.0)
    succeed(a)  # a adopts "closed" on its next re-read
    assert a.state is CircuitState.CLOSED


def test_shared_store_lost_race_adopts_the_winner(clock: VirtualClock) -> None:
    store = SharedMemoryStore()
    a = make(clock, name="race", store=store)
    b = make(clock, name="race", store=store)
    succeed(b)  # b has read the (empty) record: it will not re-read for a second
    fail(a, 4)  # a opens first and writes the record
    clock.advance(0.5)
    fail(b, 3)  # b opens too (3 of 4), but its compare-and-set loses: it takes a's record
    record = store.get("breaker:race")
    assert record is not None
    assert record["version"] == 1
    assert b.state is CircuitState.OPEN
    assert b.snapshot()["remaining"] == pytest.approx(9.5)  # a's opening time, not b's


FILE_STORE = """
import json, pathlib

class FileStore:
    \"\"\"A persistent store: one JSON file (what a SQLite store does, minus the locking).\"\"\"

    shared = False

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def _all(self):
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key):
        return self._all().get(key)

    def set(self, key, value):
        data = self._all()
        data[key] = dict(value)
        self.path.write_text(json.dumps(data))

    def compare_and_set(self, key, expected, value):
        if self.get(key) != (None if expected is None else dict(expected)):
            return False
        self.set(key, value)
        return True

    def delete(self, key):
        data = self._all()
        data.pop(key, None)
        self.path.write_text(json.dumps(data))
"""

CHILD = (
    FILE_STORE
    + """
import sys
import resilience as rs

def charge():
    raise ConnectionError("gateway down")

br = rs.CircuitBreaker("orders", minimum_calls=3, open_duration=60, store=FileStore(sys.argv[1]))
for _ in range(3):
    try:
        br.call(charge)
    except ConnectionError:
        pass
print(br.state.value)
"""
)


def test_open_breaker_survives_a_real_process_restart(tmp_path: Any) -> None:
    import subprocess
    import sys
    import time

    path = tmp_path / "state.json"
    started = time.time()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "open"
    namespace: dict[str, Any] = {}
    exec(FILE_STORE, namespace)
    # This process is "after the restart": it has never seen the failures.
    br = CircuitBreaker(
        "orders", minimum_calls=3, open_duration=60, store=namespace["FileStore"](path)
    )
    assert br.state is CircuitState.OPEN
    with pytest.raises(rs.CircuitOpenError) as info:
        br.call(ok)
    assert 60 - (time.time() - started) - 1 <= info.value.remaining <= 60
    assert info.value.reason == "3 of 3 calls failed"


# --- shells ------------------------------------------------------------------------------------


def test_decorator_keeps_name_and_signature(clock: VirtualClock) -> None:
    br = make(clock)

    def charge(amount: int, *, currency: str = "EUR") -> str:
        """Charge money."""
        return f"{amount} {currency}"

    async def acharge(amount: int) -> int:
        return amount

    wrapped, awrapped = br(charge), br(acharge)
    assert wrapped.__name__ == "charge"
    assert wrapped.__doc__ == "Charge money."
    assert inspect.signature(wrapped) == inspect.signature(charge)
    assert list(inspect.signature(wrapped).parameters) == ["amount", "currency"]
    assert wrapped(3, currency="USD") == "3 USD"
    assert inspect.iscoroutinefunction(awrapped)
    assert inspect.signature(awrapped) == inspect.signature(acharge)
    assert br.snapshot()["calls"] == 1


def test_call_passes_arguments(clock: VirtualClock) -> None:
    br = make(clock)
    assert br.call(lambda a, /, b, *, c: (a, b, c), 1, 2, c=3) == (1, 2, 3)


@pytest.mark.anyio
async def test_async_acall(clock: VirtualClock) -> None:
    br = make(clock, half_open_calls=1)

    async def aok() -> str:
        await anyio.lowlevel.checkpoint()
        return "ok"

    async def aboom() -> None:
        await anyio.lowlevel.checkpoint()
        raise ConnectionError("down")

    assert await br.acall(aok) == "ok"
    for _ in range(3):  # 3 of 4 failed
        with pytest.raises(ConnectionError):
            await br.acall(aboom)
    assert br.state is CircuitState.OPEN
    with pytest.raises(rs.CircuitOpenError):
        await br.acall(aok)
    clock.advance(10)
    decorated = br(aok)
    assert await decorated() == "ok"
    assert br.state is CircuitState.CLOSED


@pytest.mark.anyio
async def test_async_half_open_admits_exactly_n_concurrent_trials(clock: VirtualClock) -> None:
    br = make(clock, half_open_calls=3)
    fail(br, 4)
    clock.advance(10)
    gate = anyio.Event()
    inside = 0
    outcomes: list[str] = []

    async def trial() -> str:
        nonlocal inside
        inside += 1
        await gate.wait()
        return "ok"

    async def attempt() -> None:
        try:
            outcomes.append(await br.acall(trial))
        except rs.CircuitOpenError as e:
            outcomes.append(e.state)

    with anyio.fail_after(10):  # a broken gate fails here instead of hanging
        async with anyio.create_task_group() as tg:
            for _ in range(7):
                tg.start_soon(attempt)
            while len(outcomes) < 4:
                await anyio.lowlevel.checkpoint()
            assert inside == 3
            gate.set()
    assert sorted(outcomes) == ["half_open"] * 4 + ["ok"] * 3
    assert br.state is CircuitState.CLOSED


@pytest.mark.anyio
async def test_cancellation_frees_the_trial_slot_and_is_not_counted(clock: VirtualClock) -> None:
    br = make(clock, half_open_calls=1)
    fail(br, 4)
    clock.advance(10)

    async def hang() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0.01):
        await br.acall(hang)
    assert br.state is CircuitState.HALF_OPEN
    assert br.snapshot()["trial_calls"] == 0

    async def aok() -> str:
        return "ok"

    assert await br.acall(aok) == "ok"
    assert br.state is CircuitState.CLOSED


# --- registry, snapshot, repr ------------------------------------------------------------------


def test_registry_is_weak(clock: VirtualClock) -> None:
    br = make(clock, name="registered-one")
    assert _registry.registered("breaker")["registered-one"] is br
    del br
    gc.collect()
    assert "registered-one" not in _registry.registered("breaker")


def test_snapshot_is_json_safe(clock: VirtualClock) -> None:
    import json

    br = make(clock)
    fail(br, 4)
    snap = br.snapshot()
    assert set(snap) >= {
        "name",
        "state",
        "failure_rate",
        "slow_call_rate",
        "calls",
        "failures",
        "slow_calls",
        "opened_at",
        "open_duration",
        "remaining",
    }
    assert json.loads(json.dumps(snap))["state"] == "open"
    assert repr(br) == "CircuitBreaker('svc', state=open)"


def test_defaults_match_the_design() -> None:
    br = CircuitBreaker("defaults")
    assert br.window == CountWindow(100)
    assert br.classifier is rs.DEFAULT_CLASSIFIER
    snap = br.snapshot()
    assert (snap["minimum_calls"], snap["open_duration"], snap["half_open_calls"]) == (10, 30.0, 3)
    assert rs.CircuitBreaker is CircuitBreaker
    assert rs.CircuitState is CircuitState


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument", "shown"),
    [
        ({"failure_rate_threshold": 0}, "failure_rate_threshold", "0"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold", "1.5"),
        ({"slow_call_rate_threshold": -0.1}, "slow_call_rate_threshold", "-0.1"),
        ({"slow_call_threshold": 0}, "slow_call_threshold", "0"),
        ({"open_duration": -1}, "open_duration", "-1"),
        ({"open_duration": 0}, "open_duration", "0"),
        ({"open_duration": 10, "open_duration_max": 5}, "open_duration_max", "5"),
        ({"half_open_calls": 0}, "half_open_calls", "0"),
        ({"minimum_calls": 0}, "minimum_calls", "0"),
        ({"minimum_calls": 2.5}, "minimum_calls", "2.5"),
        ({"window": 100}, "window", "100"),
        ({"window": {"kind": "count", "size": 0}}, "window.size", "0"),
        ({"window": {"kind": "time", "seconds": -5}}, "window.seconds", "-5"),
        ({"window": {"kind": "sliding"}}, "window", "sliding"),
        ({"classifier": "strict"}, "classifier", "strict"),
        ({"name": ""}, "name", "''"),
        ({"name": 42}, "name", "42"),
    ],
)
def test_bad_input_names_argument_and_value(
    kwargs: dict[str, Any], argument: str, shown: str
) -> None:
    kwargs.setdefault("name", "svc")
    name = kwargs.pop("name")
    with pytest.raises(rs.ConfigError) as info:
        CircuitBreaker(name, **kwargs)
    locations = [loc for loc, _ in info.value.errors]
    assert argument in locations
    assert shown in str(info.value)


def test_every_bad_argument_is_reported_at_once() -> None:
    errors = CircuitBreaker.validate(
        name="", failure_rate_threshold=2, minimum_calls=0, half_open_calls=0, open_duration=-1
    )
    assert [loc for loc, _ in errors] == [
        "name",
        "failure_rate_threshold",
        "minimum_calls",
        "open_duration",
        "half_open_calls",
    ]
    assert CircuitBreaker.validate(name="fine") == []


def test_window_objects_validate() -> None:
    with pytest.raises(rs.ConfigError, match="size: must be >= 1, got 0"):
        CountWindow(0)
    with pytest.raises(rs.ConfigError, match="seconds: must be > 0"):
        TimeWindow(seconds=0)
    with pytest.raises(rs.ConfigError, match="buckets"):
        TimeWindow(seconds=10, buckets=0)
    br = CircuitBreaker("w", window={"kind": "time", "seconds": 30})
    assert br.window == TimeWindow(seconds=30)


class BrokenStore(MemoryStore):
    """A store whose writes fail, like a database that went away."""

    def set(self, key: str, value: Any) -> None:
        raise OSError("disk full")


def test_a_failing_store_does_not_fail_the_call(
    clock: VirtualClock, seen: list[events.Event], caplog: pytest.LogCaptureFixture
) -> None:
    br = make(clock, store=BrokenStore())
    fail(br, 4)  # the 4th failure opens it; the write fails; the caller sees its own error
    assert br.state is CircuitState.OPEN
    clock.advance(10)
    succeed(br, 2)  # closes: the write fails again, in the same outage: not reported again
    assert br.state is CircuitState.CLOSED
    down = [e for e in seen if isinstance(e, events.StoreUnavailable)]
    assert len(down) == 1
    assert down[0].operation == "svc"
    assert "disk full" in down[0].error
    assert [r.getMessage() for r in caplog.records if "disk full" in r.getMessage()] == [
        "circuit breaker 'svc' cannot use its store MemoryStore(0 records) (OSError: disk full);"
        " it goes on with its local state"
    ]


def test_a_failing_result_classifier_frees_the_trial_slot(clock: VirtualClock) -> None:
    def judge(result: object) -> rs.Verdict | None:
        if result == "weird":
            raise RuntimeError("classifier bug")
        return None

    br = make(clock, classifier=rs.Classifier(result=judge), half_open_calls=1)
    fail(br, 4)
    clock.advance(10)
    with pytest.raises(RuntimeError, match="classifier bug"):
        br.call(lambda: "weird")
    assert br.snapshot()["trial_calls"] == 0
    succeed(br)
    assert br.state is CircuitState.CLOSED


# --- what users pass: async callables, misuse refused at once --------------------------------


def test_call_refuses_an_async_function_with_a_hint_and_records_nothing(
    clock: VirtualClock,
) -> None:
    br = make(clock, half_open_calls=1)

    async def charge() -> str:
        return "ok"

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed: no "never awaited"
        with pytest.raises(TypeError, match="acall"):
            br.call(charge)
        gc.collect()
    assert br.snapshot()["calls"] == 0
    fail(br, 4)
    clock.advance(10)
    with pytest.raises(TypeError):
        br.call(charge)  # a half-open trial slot is given back...
    assert br.call(ok) == "ok"  # ...so the one trial call still runs
    assert br.state is CircuitState.CLOSED


def test_bare_decorator_and_generators_are_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match=r'@rs\.CircuitBreaker\("name"'):

        @CircuitBreaker  # type: ignore[arg-type]
        def charge() -> None: ...

    br = CircuitBreaker("gen")

    def rows() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        br(rows)


@pytest.mark.anyio
async def test_decorated_methods_classmethods_and_callable_objects(clock: VirtualClock) -> None:
    br = make(clock, minimum_calls=2)
    factory = make(clock, name="factory")

    class Client:
        def __init__(self) -> None:
            self.up = False

        async def __call__(self, q: str) -> str:
            if not self.up:
                raise ConnectionError(q)
            return q

        @factory
        @classmethod
        def build(cls) -> Client:
            return cls()

    client = Client.build()
    guarded = br(client)
    assert inspect.iscoroutinefunction(guarded)
    with anyio.fail_after(10):
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await guarded("q")
        assert br.state is CircuitState.OPEN  # the failures were counted, not successes
        with pytest.raises(rs.CircuitOpenError):
            await guarded("q")
    assert isinstance(Client().build(), Client)
    factory.force_open()
    with pytest.raises(rs.CircuitOpenError):
        Client.build()  # the classmethod goes through the breaker


@pytest.mark.anyio
async def test_the_decorator_fast_path_counts_like_the_shells(clock: VirtualClock) -> None:
    # The decorated function is the shell itself (no acall frame): it must decide, record,
    # release and reject exactly as call/acall do.
    br = make(clock, minimum_calls=4, half_open_calls=1)
    outcomes = iter([None, None, ConnectionError("a"), ConnectionError("b")])

    @br
    async def work() -> str:
        err = next(outcomes, None)
        if err is not None:
            raise err
        return "ok"

    @br
    def sync_work() -> str:
        return "ok"

    with anyio.fail_after(10):
        for _ in range(2):
            assert await work() == "ok"
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await work()
    assert br.state is CircuitState.OPEN  # 2 of 4 failed: the lock-free path decided
    with pytest.raises(rs.CircuitOpenError):
        sync_work()
    clock.advance(10)

    async def hang() -> None:
        await anyio.sleep_forever()

    hanging = br(hang)
    with anyio.move_on_after(0.01):
        await hanging()  # cancelled: the trial slot is given back
    assert br.snapshot()["trial_calls"] == 0
    assert sync_work() == "ok"
    assert br.state is CircuitState.CLOSED
