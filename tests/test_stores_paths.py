"""Paths a plain run of the suite did not reach (a coverage run showed them): failures while
opening and initialising a SQLite file, a write transaction that fails half-way, another
process creating the schema at the same moment, a forked child, Redis failing on `keys()`, a
password in a URL's query string, a breaker built while the fleet is HALF_OPEN. Each test
fails if its path is broken."""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import resilience as rs
from resilience.queue import OfflineQueue
from resilience.stores import (
    SQLITE_APPLICATION_ID,
    SQLITE_SCHEMA_VERSION,
    RedisStore,
    SQLiteStore,
)
from resilience.testing import VirtualClock

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/redis_server.py
from redis_server import redis_server, redis_url  # noqa: F401


def _causes(exc: BaseException) -> str:
    """The text of an exception and of everything chained to it."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(f"{type(seen).__name__}: {seen!s} {seen!r}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


# --- SQLite: opening, initialising, failing half-way ------------------------------------------


def test_a_connect_failure_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sqlite3.connect

    def connect(path: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if not kwargs.get("uri"):
            raise sqlite3.OperationalError("unable to open database file")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)  # sqlite3's, not ours
    with pytest.raises(rs.StoreError, match="cannot open store file"):
        SQLiteStore(tmp_path / "state.db")


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not SQLite" * 100)
    before = path.read_bytes()
    with pytest.raises(rs.StoreError, match=r"not a usable store file|left untouched"):
        SQLiteStore(path)
    with pytest.raises(rs.QueueError):
        OfflineQueue(path)
    assert path.read_bytes() == before


def _fail_writes(path: Path, table: str) -> None:
    """A trigger that aborts every write to `table` half-way through its transaction
    (what a full disk or an I/O error does to a real write)."""
    db = sqlite3.connect(path)
    for when in ("INSERT", "UPDATE"):
        db.execute(
            f"CREATE TRIGGER fail_{when.lower()} BEFORE {when} ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"
        )
    db.commit()
    db.close()


def _heal(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER fail_insert")
    db.execute("DROP TRIGGER fail_update")
    db.commit()
    db.close()


def test_a_store_write_that_fails_half_way_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    store.set("k", {"v": 1})
    assert store.take_tokens("b", capacity=2, refill_per_second=0, now=0.0) == 0.0
    _fail_writes(path, "records")
    _fail_writes_buckets = sqlite3.connect(path)
    _fail_writes_buckets.execute(
        "CREATE TRIGGER fail_bucket BEFORE UPDATE ON buckets "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"
    )
    _fail_writes_buckets.commit()
    _fail_writes_buckets.close()
    with pytest.raises(rs.StoreError, match="nothing was changed"):
        store.compare_and_set("k", {"v": 1}, {"v": 2})  # read, then the write fails
    with pytest.raises(rs.StoreError, match="nothing was changed"):
        store.take_tokens("b", capacity=2, refill_per_second=0, now=0.0)
    # rolled back: no transaction left open, nothing half-applied
    assert store.get("k") == {"v": 1}
    _heal(path)
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER fail_bucket")
    db.commit()
    db.close()
    assert store.compare_and_set("k", {"v": 1}, {"v": 2})
    assert store.take_tokens("b", capacity=2, refill_per_second=0, now=0.0) == 0.0  # 2nd token
    assert store.take_tokens("b", capacity=2, refill_per_second=0, now=0.0) > 0


def test_a_queue_write_that_fails_half_way_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with OfflineQueue(path) as q:
        q.put("first")
        _fail_writes(path, "items")
        with pytest.raises(rs.QueueError):
            q.put("second")
        with pytest.raises(rs.QueueError):
            q.put_many([("a", rs.Priority.LOW), ("b", rs.Priority.LOW)])
        assert len(q) == 1  # the counts were rolled back with the items
        _heal(path)
        q.put("third")
        assert [i.payload for i in q.items()] == ["first", "third"]
        assert len(q) == 2


def test_a_store_waits_out_another_process_creating_the_schema(tmp_path: Path) -> None:
    """The schema-creation race: another process holds the write lock of a new, empty file
    while it creates the schema; our store waits for it, then uses its schema as is."""
    path = tmp_path / "state.db"
    path.touch()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE records (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    other.execute(
        "CREATE TABLE buckets (key TEXT PRIMARY KEY, level REAL NOT NULL, stamp REAL NOT NULL)"
        " WITHOUT ROWID"
    )
    other.execute("INSERT INTO records VALUES ('breaker:x', '{\"from\":\"other\"}')")
    other.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
    other.execute(f"PRAGMA user_version = {SQLITE_SCHEMA_VERSION}")
    opened: list[Any] = []
    thread = threading.Thread(target=lambda: opened.append(SQLiteStore(path, busy_timeout=20)))
    thread.start()
    thread.join(0.3)  # our store is waiting on the other's lock now: it cannot finish
    assert thread.is_alive()
    assert opened == []
    other.execute("COMMIT")
    other.close()
    thread.join(30)
    assert len(opened) == 1
    assert opened[0].get("breaker:x") == {"from": "other"}  # its schema and data, not a new one


def test_a_store_that_cannot_get_the_lock_in_time_says_so(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(rs.StoreError, match=r"not a usable store file|locked"):
            SQLiteStore(path, busy_timeout=0.2)
    finally:
        other.execute("ROLLBACK")
        other.close()
    SQLiteStore(path).set("k", {"v": 1})  # and once the lock is gone, it opens


# --- Redis: fork, keys() failing, passwords in the query string --------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_forked_child_opens_its_own_connection(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store: SQLiteStore | RedisStore
    if kind == "sqlite":
        store = SQLiteStore(tmp_path / "state.db")
    else:
        store = RedisStore(request.getfixturevalue("redis_url"))
    store.set("k", {"v": 1})
    pid = os.fork()
    if pid == 0:  # the child: use the inherited object
        code = 1
        try:
            ok = store.compare_and_set("k", {"v": 1}, {"v": 2})
            code = 0 if ok and store.get("k") == {"v": 2} else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("k") == {"v": 2}  # and the parent's connection still works


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{port}/0?password=Qs-Secret-77",
        "redis://user:Qs-Secret-77@127.0.0.1:{port}/0",
        "redis://127.0.0.1:{port}/0?socket_keepalive=true&PASSWORD=Qs-Secret-77",
    ],
)
def test_keys_failing_is_a_store_error_that_never_shows_the_password(url: str) -> None:
    pytest.importorskip("redis")
    store = RedisStore(url.format(port=_dead_port()), timeout=0.3)
    assert "Qs-Secret-77" not in repr(store)
    assert "Qs-Secret-77" not in str(store)
    for op in (store.keys, lambda: store.get("k"), lambda: store.set("k", {"a": 1})):
        with pytest.raises(rs.StoreError) as info:
            op()
        assert "Qs-Secret-77" not in _causes(info.value)
        assert "127.0.0.1" in str(info.value)


@pytest.mark.redis
def test_keys_lists_records_not_buckets(redis_url: str) -> None:  # noqa: F811
    with RedisStore(redis_url, prefix="app:") as store:
        store.set("breaker:a", {"v": 1})
        store.take_tokens("ratelimit:x", capacity=1, refill_per_second=1, now=None)
        assert store.keys() == ["breaker:a"]


@pytest.mark.redis
def test_redis_buckets_run_on_the_servers_clock(redis_url: str) -> None:  # noqa: F811
    import redis

    store = RedisStore(redis_url)
    assert store.take_tokens("t", capacity=1, refill_per_second=1, now=None) == 0.0
    raw = redis.Redis.from_url(redis_url)
    stamp = float(raw.hget("resilience:tokens:t", "stamp"))  # type: ignore[arg-type]
    seconds, micros = raw.time()  # type: ignore[misc]
    assert abs(seconds + micros / 1e6 - stamp) < 5  # the server's time, not the caller's
    wait = store.take_tokens("t", capacity=1, refill_per_second=1, now=None)
    assert 0 < wait <= 1.0  # honest: about a second until the next token


# --- a breaker built while the fleet is HALF_OPEN ---------------------------------------------


def test_a_breaker_built_during_a_half_open_round_joins_it(tmp_path: Path) -> None:
    clock = VirtualClock()
    kw: dict[str, Any] = {"minimum_calls": 2, "open_duration": 5.0, "half_open_calls": 2}
    a = rs.CircuitBreaker("pay", store=SQLiteStore(tmp_path / "s.db"), clock=clock, **kw)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            a.call(lambda: (_ for _ in ()).throw(ConnectionError("down")))
    clock.advance(5.0)
    results: list[str] = []

    def trial() -> str:
        # A process that starts now adopts the HALF_OPEN record (not "OPEN, time up")...
        late = rs.CircuitBreaker("pay", store=SQLiteStore(tmp_path / "s.db"), clock=clock, **kw)
        assert late.state is rs.CircuitState.HALF_OPEN
        results.append(late.call(lambda: "late trial"))  # ...and takes the 2nd permit
        third = rs.CircuitBreaker("pay", store=SQLiteStore(tmp_path / "s.db"), clock=clock, **kw)
        with pytest.raises(rs.CircuitOpenError) as info:
            third.call(lambda: "never")  # no permit left in this round
        results.append(info.value.state)
        return "first trial"

    assert a.call(trial) == "first trial"
    assert results == ["late trial", "half_open"]
    record = SQLiteStore(tmp_path / "s.db").get("breaker:pay")
    assert record is not None
    assert record["state"] == "closed"  # both permits passed: the fleet closed


def test_a_private_store_resumes_half_open_as_its_own_round(tmp_path: Path) -> None:
    """Not shared (one process at a time, e.g. a JSON file store): nobody else holds permits,
    so a HALF_OPEN record is resumed as OPEN-with-time-up and this process runs the round."""
    from resilience.stores import MemoryStore

    store = MemoryStore()
    store.set(
        "breaker:solo",
        {"schema": 1, "version": 4, "state": "half_open", "opened_at": 0.0,
         "open_duration": 5.0, "reopens": 0, "reason": "x", "round": 4, "trials": 2,
         "passed": 1, "slow": 0, "since": 0.0},
    )  # fmt: skip
    br = rs.CircuitBreaker("solo", half_open_calls=2, store=store, clock=VirtualClock())
    assert br.state is rs.CircuitState.HALF_OPEN
    assert br.call(lambda: 1) == 1
    assert br.call(lambda: 2) == 2
    assert br.state is rs.CircuitState.CLOSED
