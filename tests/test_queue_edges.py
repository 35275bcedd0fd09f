"""Edges of what the queue and the SQLite/Redis stores accept: files that are not theirs,
payloads JSON would not give back as they went in, payloads too deep to read back, text that
is not valid Unicode. Each is refused with a typed error and nothing is stored or changed."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

import resilience as rs
from resilience.queue import InvalidPayload, OfflineQueue, Priority
from resilience.stores import MAX_DEPTH, InvalidRecord, MemoryStore, RedisStore, SQLiteStore, Store

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/redis_server.py
from redis_server import redis_server, redis_url  # noqa: F401


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# --- files that are not ours -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("opener", "table"),
    [(OfflineQueue, "items"), (OfflineQueue, "counts"), (SQLiteStore, "records")],
)
def test_a_foreign_file_with_a_table_named_like_ours_is_refused_byte_identical(
    tmp_path: Path, opener: Any, table: str
) -> None:
    path = tmp_path / "theirs.db"
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table} (key TEXT, value TEXT)")  # even with a `key` column
    db.execute(f"INSERT INTO {table} VALUES ('a', 'their data')")
    db.commit()
    db.close()
    before = digest(path)
    with pytest.raises((rs.QueueError, rs.StoreError), match="left untouched"):
        opener(path)
    assert digest(path) == before  # not switched to WAL, not adopted
    assert sorted(os.listdir(tmp_path)) == ["theirs.db"]  # no -wal / -shm left behind
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()


def test_an_empty_or_new_file_is_still_taken(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    with OfflineQueue(tmp_path / "empty.db") as q:
        q.put("x")
    store = SQLiteStore(tmp_path / "new.db")
    store.set("k", {"v": 1})
    assert store.get("k") == {"v": 1}


# --- payloads the queue refuses --------------------------------------------------------------


@pytest.fixture
def queue(tmp_path: Path) -> Any:
    with OfflineQueue(tmp_path / "q.db") as q:
        yield q


@pytest.mark.parametrize(
    "payload",
    [
        {1: "x"},
        {"a": [{"ok": 1}, {2.5: "y"}]},
        {None: 1},
        nested(MAX_DEPTH + 1),
        nested(1000),
        nested(20_000),  # so deep json.dumps itself gives up (RecursionError)
        "lone \udc00 surrogate",
        {"k\ud800": 1},
        ["fine", {"deep": ["\udbff"]}],
    ],
    ids=[
        "int-key",
        "nested-float-key",
        "none-key",
        "depth+1",
        "depth-1000",
        "depth-20000",
        "surrogate",
        "surrogate-key",
        "nested-surrogate",
    ],
)
def test_put_refuses_with_a_typed_error_and_stores_nothing(queue: Any, payload: Any) -> None:
    with pytest.raises(InvalidPayload) as info:
        queue.put(payload)
    assert isinstance(info.value, rs.QueueError)
    assert isinstance(info.value, TypeError)  # as before: `except TypeError` still works
    with pytest.raises(InvalidPayload):
        queue.put_many([("fine", Priority.NORMAL), (payload, Priority.HIGH)])
    assert len(queue) == 0  # all or nothing
    queue.put("after")
    report = queue.drain(lambda item: None)
    assert report.delivered == 1
    assert len(queue) == 0  # nothing leased forever, nothing stuck


def test_what_is_accepted_comes_back_as_it_went_in(queue: Any) -> None:
    payloads = [
        {"a": {"b": [1, 2.5, None, True]}},
        nested(MAX_DEPTH - 1),
        "emoji \U0001f600 and a pair written as escapes: \\ud83d",
        {"k": "\u00e9\u4e2d"},
    ]
    for p in payloads:
        queue.put(p)
    with queue.lease(10) as items:
        assert [i.payload for i in items] == payloads


@pytest.mark.parametrize("key", ["\ud800", "a\udfffb"])
def test_a_lone_surrogate_in_a_key_is_a_typed_error(queue: Any, key: str) -> None:
    with pytest.raises(InvalidPayload, match="surrogate"):
        queue.put("x", key=key)
    with pytest.raises(InvalidPayload, match="surrogate"):
        queue.put_many([("x", Priority.LOW, key)])
    assert len(queue) == 0


def test_a_non_string_key_is_a_typed_error(queue: Any) -> None:
    with pytest.raises(InvalidPayload):
        queue.put("x", key=7)


# --- the same for the stores ----------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "s.db")
    return RedisStore(request.getfixturevalue("redis_url"))


@pytest.mark.parametrize(
    "record",
    [{1: "x"}, {"a": nested(MAX_DEPTH)}, {"a": nested(20_000)}, {"s": "\udc00"}, {"\ud800": 1}],
    ids=["int-key", "too-deep", "far-too-deep", "surrogate", "surrogate-key"],
)
def test_stores_refuse_records_with_a_typed_error(store: Store, record: Any) -> None:
    with pytest.raises(InvalidRecord) as info:
        store.set("k", record)
    assert isinstance(info.value, rs.StoreError)
    assert isinstance(info.value, TypeError)
    with pytest.raises(InvalidRecord):
        store.compare_and_set("k", None, record)
    assert store.get("k") is None


@pytest.mark.parametrize("key", ["\ud800", "x\udfff"])
def test_stores_refuse_keys_with_lone_surrogates(store: Store, key: str) -> None:
    for op in (
        lambda: store.get(key),
        lambda: store.set(key, {"a": 1}),
        lambda: store.compare_and_set(key, None, {"a": 1}),
        lambda: store.delete(key),
        lambda: store.take_tokens(key, capacity=1, refill_per_second=1, now=0.0),
    ):
        with pytest.raises(InvalidRecord, match="surrogate"):
            op()


def test_non_ascii_keys_and_values_round_trip(store: Store) -> None:
    store.set("caf\u00e9:\U0001f600", {"v": "\u4e2d\U0001f600"})
    assert store.get("caf\u00e9:\U0001f600") == {"v": "\u4e2d\U0001f600"}
