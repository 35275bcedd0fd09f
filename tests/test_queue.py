"""OfflineQueue: durability, order, leases, dead letters, drain, bad input, files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

import resilience as rs
from resilience import events
from resilience.queue import APPLICATION_ID, SCHEMA_VERSION, Item, OfflineQueue, Priority
from resilience.testing import VirtualClock

P = Priority
CHILD = str(Path(__file__).with_name("_queue_child.py"))


class Step:
    """A tiny backoff (duck-typed: only `delay` is called)."""

    def __init__(self, *delays: float) -> None:
        self.delays = delays
        self.calls: list[tuple[int, float | None]] = []

    def delay(self, attempt: int, previous: float | None = None) -> float:
        self.calls.append((attempt, previous))
        return self.delays[min(attempt, len(self.delays)) - 1]


class Flaky(Exception):
    pass


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "outbox.db")


@pytest.fixture
def q(path: str, clock: VirtualClock) -> Any:
    queue = OfflineQueue(path, clock=clock, max_attempts=3)
    yield queue
    queue.close()


def payloads(items: list[Item]) -> list[Any]:
    return [item.payload for item in items]


# --- order --------------------------------------------------------------------------------


def test_priority_then_fifo_by_seq(q: OfflineQueue) -> None:
    order = [P.LOW, P.NORMAL, P.CRITICAL, P.NORMAL, P.HIGH, P.LOW, P.CRITICAL, P.HIGH]
    seqs = [q.put({"n": i}, priority=p) for i, p in enumerate(order)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    with q.lease(n=100) as batch:
        got = [(item.priority, item.payload["n"]) for item in batch]
    assert got == [
        (P.CRITICAL, 2),
        (P.CRITICAL, 6),
        (P.HIGH, 4),
        (P.HIGH, 7),
        (P.NORMAL, 1),
        (P.NORMAL, 3),
        (P.LOW, 0),
        (P.LOW, 5),
    ]
    assert len(q) == 0


def test_priority_names_and_ints_are_accepted(q: OfflineQueue) -> None:
    q.put("a", priority="low")  # type: ignore[arg-type]
    q.put("b", priority=3)  # type: ignore[arg-type]
    with q.lease(n=5) as batch:
        assert [(i.payload, i.priority) for i in batch] == [("b", P.CRITICAL), ("a", P.LOW)]


def test_seqs_are_never_reused_after_ack(q: OfflineQueue) -> None:
    first = q.put("a")
    q.ack([first])
    assert q.put("b") > first  # an acked seq cannot come back as another item


def test_payloads_round_trip_as_json(q: OfflineQueue) -> None:
    value = {"text": "héllo ✓ \U0001f600", "n": [1, 2.5, None, True], "nested": {"a": {}}}
    q.put(value)
    [item] = q.items()
    assert item.payload == value
    assert item.size == len(json.dumps(value, separators=(",", ":")).encode())


# --- idempotency keys ---------------------------------------------------------------------


def test_idempotency_key_stores_once(q: OfflineQueue) -> None:
    a = q.put({"v": 1}, key="order-7")
    b = q.put({"v": 2}, key="order-7")
    assert a == b
    assert len(q) == 1
    assert payloads(q.items()) == [{"v": 1}]
    seqs = q.put_many([("x", P.LOW, "k1"), ("y", P.LOW, "order-7"), ("z", P.LOW, "k1")])
    assert seqs[1] == a
    assert seqs[0] == seqs[2]
    assert len(q) == 2


def test_key_of_a_dead_letter_still_dedups(path: str, clock: VirtualClock) -> None:
    q = OfflineQueue(path, clock=clock, max_attempts=1)
    seq = q.put("x", key="k")
    q.nack(seq)
    assert q.put("x again", key="k") == seq
    assert len(q) == 0


# --- limits and bad input -----------------------------------------------------------------


def test_max_items_raises_queue_full_and_stores_nothing(path: str) -> None:
    q = OfflineQueue(path, max_items=3)
    q.put_many([(i, P.NORMAL) for i in range(2)])
    with pytest.raises(rs.QueueFull) as info:
        q.put_many([("a", P.HIGH), ("b", P.HIGH)])  # 2 + 2 > 3: none of them
    assert info.value.max_items == 3
    assert "nothing was stored" in str(info.value)
    assert len(q) == 2
    q.put("third", key="k")
    with pytest.raises(rs.QueueFull):
        q.put("fourth")
    assert q.put("third again", key="k") == 3  # a deduplicated put stores nothing: no error
    assert payloads(q.items()) == [0, 1, "third"]


@pytest.mark.parametrize(
    ("payload", "name"),
    [(object(), "object"), ({1, 2}, "set"), (b"bytes", "bytes"), (float("nan"), "float")],
)
def test_non_json_payload_is_a_type_error_and_nothing_is_stored(
    q: OfflineQueue, payload: object, name: str
) -> None:
    with pytest.raises(TypeError, match=name):
        q.put(payload)
    with pytest.raises(TypeError, match=name):
        q.put_many([("fine", P.NORMAL), (payload, P.NORMAL)])
    assert len(q) == 0
    assert q.items() == []


def test_circular_payload_is_a_type_error(q: OfflineQueue) -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="list"):
        q.put(loop)


def test_bad_priority_key_and_entry_are_type_errors(q: OfflineQueue) -> None:
    with pytest.raises(TypeError, match="priority"):
        q.put("x", priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="priority"):
        q.put("x", priority=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        q.put("x", key=7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tuples"):
        q.put_many(["x"])  # type: ignore[list-item]
    assert len(q) == 0


def test_bad_arguments_are_config_errors_listing_each() -> None:
    with pytest.raises(rs.ConfigError) as info:
        OfflineQueue(":memory:", max_items=0, max_attempts=0, busy_timeout=-1)
    assert {loc for loc, _ in info.value.errors} == {"max_items", "max_attempts", "busy_timeout"}
    q = OfflineQueue(":memory:")
    with pytest.raises(rs.ConfigError) as info:
        q.lease(n=0, visibility=0)
    assert len(info.value.errors) == 2
    with pytest.raises(rs.ConfigError) as info:
        q.drain(print, batch=0, rate=-1, bytes_per_second=0)
    assert {loc for loc, _ in info.value.errors} == {"batch", "rate", "bytes_per_second"}
    assert OfflineQueue.validate(max_attempts=2) == []


def test_disk_full_is_a_queue_error_with_no_partial_write(q: OfflineQueue) -> None:
    q.put("before")
    # A real SQLite size limit on this connection: the file cannot grow past its current pages.
    pages = q._db.execute("PRAGMA page_count").fetchone()[0]
    q._db.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = "x" * 4000
    with pytest.raises(rs.QueueError, match="full"):
        q.put_many([(big, P.NORMAL) for _ in range(50)])
    assert payloads(q.items()) == ["before"]
    q.put("after")  # still usable
    assert payloads(q.items()) == ["before", "after"]


def test_closed_queue_raises(path: str) -> None:
    q = OfflineQueue(path)
    q.close()
    q.close()
    with pytest.raises(rs.QueueError, match="closed"):
        q.put("x")


# --- files --------------------------------------------------------------------------------


def test_files_are_created_0600_and_schema_is_recorded(path: str) -> None:
    q = OfflineQueue(path)
    q.put("x")
    for suffix in ("", "-wal", "-shm"):
        assert os.stat(path + suffix).st_mode & 0o777 == 0o600, suffix
    q.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_corrupt_file_is_refused_and_left_untouched(path: str) -> None:
    Path(path).write_bytes(b"definitely not sqlite " * 300)
    before = Path(path).read_bytes()
    with pytest.raises(rs.QueueError, match="untouched"):
        OfflineQueue(path)
    assert Path(path).read_bytes() == before


def test_truncated_queue_file_is_refused_and_left_untouched(path: str) -> None:
    q = OfflineQueue(path)
    q.put_many([("x" * 500, P.NORMAL) for _ in range(200)])
    q.close()
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:100] + b"\xff" * 50 + data[150:])  # smash the header page
    before = Path(path).read_bytes()
    with pytest.raises(rs.QueueError):
        OfflineQueue(path)
    assert Path(path).read_bytes() == before


def test_foreign_sqlite_file_is_refused_and_left_untouched(path: str) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER)")
    db.execute("INSERT INTO accounts VALUES (1, 100)")
    db.commit()
    db.close()
    before = Path(path).read_bytes()
    with pytest.raises(rs.QueueError, match="another application"):
        OfflineQueue(path)
    assert Path(path).read_bytes() == before


def test_newer_schema_is_refused_and_left_untouched(path: str) -> None:
    OfflineQueue(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = Path(path).read_bytes()
    with pytest.raises(rs.QueueError, match="newer"):
        OfflineQueue(path)
    assert Path(path).read_bytes() == before


def test_empty_file_is_initialised(path: str) -> None:
    Path(path).touch()
    q = OfflineQueue(path)
    assert q.put("x") == 1


def test_items_and_leases_survive_reopening(path: str) -> None:
    clock = VirtualClock()
    q = OfflineQueue(path, clock=clock)
    q.put_many([(i, P.NORMAL) for i in range(5)])
    lease = q.lease(n=2, visibility=30.0)
    held = lease.__enter__()  # the consumer "crashes": the lease is never exited
    q.close()
    q = OfflineQueue(path, clock=clock)
    assert len(q) == 5
    with q.lease(n=10) as batch:  # the held ones are still leased (deadline in the file)
        assert payloads(batch) == [2, 3, 4]
    clock.advance(30.0)
    with q.lease(n=10) as batch:
        assert [i.seq for i in batch] == [i.seq for i in held]
    assert len(q) == 0


def test_import_resilience_does_not_load_sqlite3() -> None:
    code = (
        "import sys, resilience; assert 'sqlite3' not in sys.modules; "
        "resilience.OfflineQueue; assert 'sqlite3' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- leases, ack, nack, dead letters ------------------------------------------------------


def test_lease_acks_on_clean_exit_and_nacks_on_error(q: OfflineQueue) -> None:
    q.put_many([("a", P.NORMAL), ("b", P.NORMAL)])
    with pytest.raises(Flaky), q.lease(n=1) as batch:
        assert payloads(batch) == ["a"]
        raise Flaky
    with q.lease(n=5) as batch:
        assert [(i.payload, i.attempts) for i in batch] == [("a", 1), ("b", 0)]
    assert len(q) == 0


def test_lease_release_on_base_exception_does_not_count(q: OfflineQueue) -> None:
    q.put("a")
    with pytest.raises(KeyboardInterrupt), q.lease(n=1):
        raise KeyboardInterrupt
    [item] = q.items()
    assert item.attempts == 0
    with q.lease(n=1) as batch:
        assert payloads(batch) == ["a"]


def test_leased_items_are_invisible_until_the_lease_expires(path: str, clock: VirtualClock) -> None:
    a = OfflineQueue(path, clock=clock)
    b = OfflineQueue(path, clock=clock)  # another consumer on the same file
    a.put_many([(i, P.NORMAL) for i in range(4)])
    first = a.lease(n=2, visibility=10.0)
    assert payloads(first.__enter__()) == [0, 1]
    with b.lease(n=10) as batch:
        assert payloads(batch) == [2, 3]
    clock.advance(9.9)
    with b.lease(n=10) as batch:
        assert batch == []
    clock.advance(0.2)
    second = b.lease(n=10)
    assert payloads(second.__enter__()) == [0, 1]
    # The first consumer finishes late: its lease is gone, so it does not ack the items the
    # second consumer now holds; the second one's ack does.
    first.__exit__(None, None, None)
    assert len(a) == 2
    second.__exit__(None, None, None)
    assert len(a) == 0


def test_manual_ack_and_nack_inside_a_lease(q: OfflineQueue) -> None:
    q.put_many([(i, P.NORMAL) for i in range(3)])
    with q.lease(n=3) as batch:
        q.ack([batch[0].seq])
        q.nack([batch[1].seq])
    # clean exit acked only what the lease still held: the nacked item is back, attempts 1
    [item] = q.items()
    assert (item.payload, item.attempts) == (1, 1)


def test_nack_dead_letters_at_max_attempts_then_requeue_and_purge(q: OfflineQueue) -> None:
    seqs = q.put_many([("a", P.LOW), ("b", P.HIGH), ("c", P.NORMAL)])
    assert q.nack(seqs[0]) == 0
    assert q.nack(seqs[0]) == 0
    assert q.nack([seqs[0], seqs[1]], error="sink said no") == 1  # a reaches 3 attempts
    [dead] = q.dead_letters()
    assert (dead.seq, dead.payload, dead.priority, dead.attempts) == (seqs[0], "a", P.LOW, 3)
    assert dead.reason == "max_attempts: sink said no"
    assert dead.failed_at == q.clock.time()
    assert len(q) == 2
    assert q.stats().dead_letters == 1
    assert q.ack(seqs[0]) == 0  # ack leaves dead letters alone
    assert q.requeue_dead() == 1
    with q.lease(n=5) as batch:
        assert [(i.payload, i.attempts) for i in batch] == [("b", 1), ("c", 0), ("a", 0)]
    q.put("d")
    q.nack(q.items()[0].seq)
    q.nack(q.items()[0].seq)
    q.nack(q.items()[0].seq)
    assert q.purge_dead() == 1
    assert q.dead_letters() == []
    assert len(q) == 0


def test_requeue_over_max_items_requeues_none(path: str) -> None:
    q = OfflineQueue(path, max_items=2, max_attempts=1)
    seq = q.put("a")
    q.nack(seq)
    q.put_many([("b", P.NORMAL), ("c", P.NORMAL)])
    with pytest.raises(rs.QueueFull):
        q.requeue_dead()
    assert len(q.dead_letters()) == 1
    assert len(q) == 2


def test_ack_is_durable_and_idempotent(path: str) -> None:
    q = OfflineQueue(path)
    seqs = q.put_many([(i, P.NORMAL) for i in range(3)])
    assert q.ack(seqs[:2]) == 2
    assert q.ack(seqs[:2]) == 0
    q.close()
    assert payloads(OfflineQueue(path).items()) == [2]


def test_stats(q: OfflineQueue) -> None:
    q.put_many([("a", P.CRITICAL), ("b", P.LOW), ("c", P.LOW)])
    lease = q.lease(n=1)
    lease.__enter__()
    stats = q.stats()
    assert stats.depth == 3 == len(q)
    assert stats.by_priority == {"CRITICAL": 1, "HIGH": 0, "NORMAL": 0, "LOW": 2}
    assert stats.leased == 1
    assert stats.dead_letters == 0
    assert stats.max_items is None


def test_items_range_for_replay(q: OfflineQueue) -> None:
    q.put_many([(i, P.NORMAL) for i in range(10)])
    assert payloads(q.items(4, 7)) == [3, 4, 5]
    assert len(q.items()) == 10


# --- drain --------------------------------------------------------------------------------


def test_drain_delivers_everything_in_order(q: OfflineQueue) -> None:
    q.put_many([(i, P(i % 4)) for i in range(120)])
    sent: list[Item] = []
    report = q.drain(sent.append, batch=7)
    assert report.delivered == 120
    assert report.remaining == 0
    assert report.error is None
    keys = [(-int(i.priority), i.seq) for i in sent]
    assert keys == sorted(keys)
    assert len(set(keys)) == 120
    assert len(q) == 0


def test_drain_stops_at_first_transient_error_without_backoff(q: OfflineQueue) -> None:
    q.put_many([(i, P.NORMAL) for i in range(10)])
    sent: list[int] = []

    def send(item: Item) -> None:
        if item.payload == 4:
            raise ConnectionError("link down")
        sent.append(item.payload)

    report = q.drain(send, batch=3)
    assert sent == [0, 1, 2, 3]
    assert report.delivered == 4
    assert report.remaining == 6
    assert report.dead_lettered == 0
    assert isinstance(report.error, ConnectionError)
    items = q.items()
    assert [(i.payload, i.attempts) for i in items][:2] == [(4, 1), (5, 0)]
    assert q.stats().leased == 0  # the rest of the batch was released, not left leased


def test_drain_dead_letters_permanent_errors_and_goes_on(q: OfflineQueue) -> None:
    q.put_many([(i, P.NORMAL) for i in range(5)])
    sent: list[int] = []

    def send(item: Item) -> None:
        if item.payload in (1, 3):
            raise ValueError(f"bad record {item.payload}")
        sent.append(item.payload)

    report = q.drain(send)
    assert sent == [0, 2, 4]
    assert report.delivered == 3
    assert report.dead_lettered == 2
    assert [(d.payload, d.reason) for d in q.dead_letters()] == [
        (1, "permanent: ValueError: bad record 1"),
        (3, "permanent: ValueError: bad record 3"),
    ]


def test_drain_with_backoff_waits_and_resumes_until_empty(
    q: OfflineQueue, clock: VirtualClock
) -> None:
    q.put_many([(i, P.NORMAL) for i in range(6)])
    failures = iter([True, True, False, False, True, False, False, False, False])
    sent: list[int] = []

    def send(item: Item) -> None:
        if next(failures):
            raise TimeoutError("slow sink")
        sent.append(item.payload)

    backoff = Step(1.0, 2.0, 4.0)
    report = q.drain(send, backoff=backoff)
    assert sent == [0, 1, 2, 3, 4, 5]
    assert report.delivered == 6
    assert report.remaining == 0
    assert report.error is None
    assert clock.sleeps == [1.0, 2.0, 1.0]  # the run of failures resets after a success
    assert report.duration == 4.0
    assert backoff.calls == [(1, None), (2, 1.0), (1, None)]


def test_drain_with_backoff_ends_when_items_reach_max_attempts(
    q: OfflineQueue, clock: VirtualClock
) -> None:
    q.put_many([("a", P.HIGH), ("b", P.LOW)])

    def send(item: Item) -> None:
        raise ConnectionError("still down")

    report = q.drain(send, backoff=Step(0.5))
    assert report.delivered == 0
    assert report.dead_lettered == 2
    assert report.remaining == 0
    assert [(d.payload, d.attempts) for d in q.dead_letters()] == [("a", 3), ("b", 3)]
    assert next(d.reason for d in q.dead_letters()) == "max_attempts: ConnectionError: still down"


def test_drain_honours_retry_after_of_rate_limited_errors(
    q: OfflineQueue, clock: VirtualClock
) -> None:
    class TooMany(Exception):
        status_code = 429
        headers = {"Retry-After": "7"}

    q.put("a")
    calls = []

    def send(item: Item) -> None:
        calls.append(item.seq)
        if len(calls) == 1:
            raise TooMany

    report = q.drain(send, backoff=Step(0.1))
    assert report.delivered == 1
    assert clock.sleeps == [7.0]


def test_drain_custom_classifier(q: OfflineQueue) -> None:
    q.put("a")
    clf = rs.Classifier(permanent=(ConnectionError,))

    def send(item: Item) -> None:
        raise ConnectionError

    report = q.drain(send, classifier=clf)
    assert report.dead_lettered == 1
    assert report.error is None


def test_drain_rate_budget_on_the_clock(q: OfflineQueue, clock: VirtualClock) -> None:
    q.put_many([(i, P.NORMAL) for i in range(21)])
    times: list[float] = []
    report = q.drain(lambda item: times.append(clock.monotonic()), rate=10.0, batch=4)
    assert report.delivered == 21
    assert times == pytest.approx([i / 10 for i in range(21)])
    assert report.duration == pytest.approx(2.0)


def test_drain_bandwidth_budget_on_the_clock(q: OfflineQueue, clock: VirtualClock) -> None:
    sizes = [100, 300, 50, 1000, 10]
    q.put_many([("x" * (n - 2), P.NORMAL) for n in sizes])  # a JSON string is n bytes
    times: list[float] = []
    q.drain(lambda item: times.append(clock.monotonic()), bytes_per_second=100.0)
    expected = [sum(sizes[:i]) / 100.0 for i in range(len(sizes))]
    assert times == pytest.approx(expected)


def test_drain_interrupted_keeps_what_was_sent_and_returns_the_rest(q: OfflineQueue) -> None:
    q.put_many([(i, P.NORMAL) for i in range(10)])

    def send(item: Item) -> None:
        if item.payload == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        q.drain(send, batch=5)
    assert payloads(q.items()) == [3, 4, 5, 6, 7, 8, 9]
    assert q.stats().leased == 0
    assert q.items()[0].attempts == 0


@pytest.mark.anyio
async def test_adrain(path: str, clock: VirtualClock) -> None:
    q = OfflineQueue(path, clock=clock)
    q.put_many([(i, P(i % 4)) for i in range(30)])
    sent: list[Item] = []

    async def send(item: Item) -> None:
        await anyio.lowlevel.checkpoint()
        if item.payload == 29 and item.attempts == 0:
            raise ConnectionError("blip")
        sent.append(item)

    report = await q.adrain(send, batch=8, rate=100.0, backoff=Step(1.0))
    assert report.delivered == 30
    assert report.remaining == 0
    keys = [(-int(i.priority), i.seq) for i in sent]
    assert keys == sorted(keys)
    assert clock.sleeps.count(1.0) == 1


@pytest.mark.anyio
async def test_adrain_cancelled_releases_the_batch(path: str) -> None:
    q = OfflineQueue(path)
    q.put_many([(i, P.NORMAL) for i in range(10)])
    with anyio.CancelScope() as scope:

        async def send(item: Item) -> None:
            if item.payload == 4:
                scope.cancel()
                await anyio.sleep(1)

        await q.adrain(send, batch=10)
    assert payloads(q.items()) == [4, 5, 6, 7, 8, 9]
    assert q.stats().leased == 0


@pytest.mark.anyio
async def test_usable_through_worker_threads(path: str) -> None:
    q = OfflineQueue(path)
    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(anyio.to_thread.run_sync, q.put, i)
    assert sorted(payloads(q.items())) == list(range(8))


# --- concurrency --------------------------------------------------------------------------


def test_threads_put_and_consume_exactly_once(path: str) -> None:
    q = OfflineQueue(path)
    q._db.execute("PRAGMA synchronous=OFF")  # fsync is not what this test is about
    q._durable = True
    consumed: list[Any] = []
    lock = threading.Lock()
    stop = threading.Event()

    def producer(k: int) -> None:
        for i in range(100):
            q.put([k, i], priority=P(i % 4))

    def consumer() -> None:
        while True:
            with q.lease(n=7) as batch:
                with lock:
                    consumed.extend(tuple(i.payload) for i in batch)
            if not batch and stop.is_set():
                return

    producers = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    consumers = [threading.Thread(target=consumer) for _ in range(3)]
    for t in producers + consumers:
        t.start()
    for t in producers:
        t.join()
    stop.set()
    for t in consumers:
        t.join()
    assert sorted(consumed) == [(k, i) for k in range(4) for i in range(100)]
    assert len(q) == 0


def test_several_processes_on_one_file(path: str) -> None:
    OfflineQueue(path).close()
    children = [
        subprocess.Popen(
            [sys.executable, CHILD, "put", path, str(run)], stdout=subprocess.PIPE, text=True
        )
        for run in range(3)
    ]
    reported: dict[int, list[int]] = {}
    consumed: list[tuple[int, int, int]] = []  # (run, i, seq)

    def take(item: Item) -> None:
        consumed.append((item.payload["run"], item.payload["i"], item.seq))

    q = OfflineQueue(path)
    for run, child in enumerate(children):  # every child is putting
        assert child.stdout is not None
        reported[run] = [int(child.stdout.readline())]
    for _ in range(30):  # consume from this process while the children put
        with q.lease(n=5) as batch:
            for item in batch:
                take(item)
    for run, child in enumerate(children):
        child.kill()
        out, _ = child.communicate()
        lines = out.splitlines(keepends=True)
        reported[run] += [int(line) for line in lines if line.endswith("\n")]
    assert len(consumed) > 0
    q.drain(take)
    assert q.items() == []
    assert len(consumed) == len(set(consumed))  # nothing delivered twice
    seqs = {seq for _, _, seq in consumed}
    for run in range(3):
        assert set(reported[run]) <= seqs  # every put that returned was delivered
        mine = sorted((seq, i) for r, i, seq in consumed if r == run)
        assert [i for _, i in mine] == list(range(len(mine)))  # in put order, no gap


# --- events -------------------------------------------------------------------------------


def test_events(q: OfflineQueue) -> None:
    seen: list[events.Event] = []
    stop = events.subscribe(seen.append)
    try:
        q.put("a", priority=P.HIGH)
        q.put_many([("b", P.LOW), ("c", P.LOW)])
        q.put("a", key="k")
        q.put("a", key="k")  # deduplicated: no event

        def send(item: Item) -> None:
            if item.payload == "c":
                raise ValueError("no")

        q.drain(send)
    finally:
        stop()
    enq = [(e.count, e.priority) for e in seen if isinstance(e, events.QueueEnqueued)]
    assert enq == [(1, "HIGH"), (2, "LOW"), (1, "NORMAL")]
    assert [e.count for e in seen if isinstance(e, events.QueueDelivered)] == [3]
    [dead] = [e for e in seen if isinstance(e, events.QueueDeadLettered)]
    assert dead.seq == 3
    assert dead.reason.startswith("permanent: ValueError")
    depths = [e.depth for e in seen if isinstance(e, events.QueueDepth)]
    assert depths[0] == {"CRITICAL": 0, "HIGH": 1, "NORMAL": 0, "LOW": 0}
    assert depths[-1] == {"CRITICAL": 0, "HIGH": 0, "NORMAL": 0, "LOW": 0}
    assert all(e.operation == "queue" for e in seen)


def test_public_names() -> None:
    assert rs.OfflineQueue is OfflineQueue
    assert rs.Priority is Priority
    assert rs.DrainReport.__name__ == "DrainReport"
    assert rs.QueueFull.__mro__[1] is rs.QueueError


# --- the layout: the table's key is the delivery order ------------------------------------


def test_older_schema_is_refused_and_left_untouched(path: str) -> None:
    OfflineQueue(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 1")  # the layout of development builds
    db.commit()
    db.close()
    before = Path(path).read_bytes()
    with pytest.raises(rs.QueueError, match="schema version 1"):
        OfflineQueue(path)
    assert Path(path).read_bytes() == before


def test_seqs_keep_growing_across_priorities_and_reopening(path: str) -> None:
    q = OfflineQueue(path)
    seqs = [q.put(i, priority=p) for i, p in enumerate([P.LOW, P.CRITICAL, P.NORMAL])]
    assert seqs == [1, 2, 3]
    assert q.put_many([("x", P.HIGH), ("y", P.LOW)]) == [4, 5]
    q.ack(list(range(1, 6)))
    q.close()
    q = OfflineQueue(path)
    assert q.put("z", priority=P.CRITICAL) == 6  # the last seq is stored, not derived
    q.close()


def test_items_range_spans_priorities_in_seq_order(q: OfflineQueue) -> None:
    order = [P.LOW, P.CRITICAL, P.NORMAL, P.HIGH]
    seqs = q.put_many([(i, order[i % 4]) for i in range(12)])
    assert payloads(q.items(seqs[2], seqs[9])) == list(range(2, 9))
    assert payloads(q.items(None, seqs[1])) == [0]
    assert q.items(seqs[5], seqs[5]) == []
    assert q.items(-10, 1) == []
    assert [i.priority for i in q.items(seqs[0], seqs[4])] == order


def test_requeue_and_purge_chosen_dead_letters(path: str) -> None:
    q = OfflineQueue(path, max_attempts=1)
    seqs = q.put_many([(i, P.LOW if i % 2 else P.HIGH) for i in range(6)])
    assert q.nack(seqs) == 6
    assert q.requeue_dead([seqs[1], seqs[4], 999]) == 2
    assert [d.seq for d in q.dead_letters()] == [seqs[0], seqs[2], seqs[3], seqs[5]]
    assert q.purge_dead([seqs[2], seqs[1]]) == 1  # seqs[1] is live again: left alone
    assert [d.seq for d in q.dead_letters()] == [seqs[0], seqs[3], seqs[5]]
    assert q.ack([seqs[0]]) == 0  # a dead letter is not acked
    assert [(i.seq, i.priority) for i in q.items()] == [(seqs[1], P.LOW), (seqs[4], P.HIGH)]
    with q.lease(10) as batch:
        assert [i.seq for i in batch] == [seqs[4], seqs[1]]  # HIGH, then LOW
    assert len(q) == 0
    assert q.stats().dead_letters == 3
    q.close()


def test_a_lease_skips_items_in_flight_between_the_ones_it_takes(q: OfflineQueue) -> None:
    q.put_many([(i, P.NORMAL) for i in range(5)])
    first = q.lease(5)
    held = first.__enter__()
    q.nack([held[1].seq, held[3].seq])  # available again; 0, 2, 4 stay leased
    with q.lease(5) as second:
        assert payloads(second) == [1, 3]
    assert len(q) == 3
    first.__exit__(None, None, None)  # still acks its own three
    assert len(q) == 0
    assert q.stats().by_priority["NORMAL"] == 0


def test_a_lease_acks_only_the_items_left_in_its_batch(q: OfflineQueue) -> None:
    q.put_many([(i, P.NORMAL) for i in range(5)])
    with q.lease(5) as batch:
        batch.pop(2)  # taken out of the batch: not acked, leased until it expires
    assert payloads(q.items()) == [2]
    with q.lease(5) as again:
        assert again == []


def test_a_lease_across_priorities_acks_each(q: OfflineQueue) -> None:
    q.put_many([(i, [P.LOW, P.HIGH, P.CRITICAL][i % 3]) for i in range(9)])
    with q.lease(7) as batch:
        assert payloads(batch) == [2, 5, 8, 1, 4, 7, 0]
    assert payloads(q.items()) == [3, 6]
    assert q.stats().by_priority == {"CRITICAL": 0, "HIGH": 0, "NORMAL": 0, "LOW": 2}


def test_processes_creating_the_file_at_once_all_succeed(tmp_path: Path) -> None:
    """A file another process is setting up right now is ours, not a foreign one."""
    path = tmp_path / "outbox.db"
    code = """
        import sys
        sys.stdin.readline()  # all start together, on a file nobody has created yet
        from resilience.queue import OfflineQueue
        q = OfflineQueue(sys.argv[1])
        print(q.put({"who": sys.argv[2]}))
        q.close()
    """
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(path), f"p{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(4)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err[-3000:]
    q = OfflineQueue(str(path))
    assert sorted(item.payload["who"] for item in q.items()) == ["p0", "p1", "p2", "p3"]
    q.close()
