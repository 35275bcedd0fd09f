"""SQLiteStore: the Store contract (shared with RedisStore), the file (0600, WAL, schema
checks), and atomicity across threads and real processes."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience import ConfigError, ResilienceError
from resilience._errors import StoreError
from resilience.stores import (
    SQLITE_APPLICATION_ID,
    SQLITE_SCHEMA_VERSION,
    MemoryStore,
    SQLiteStore,
    Store,
)

ROOT = Path(__file__).resolve().parent.parent


def run_child(code: str, *args: str, timeout: float = 30.0) -> str:
    """Run `code` in a fresh interpreter (a real process); return its stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# --- the contract: every shared store passes these (RedisStore subclasses this class) --------

# (operation, key, arguments): a random history run against MemoryStore and the store under
# test must give identical answers, float for float.
_keys = st.sampled_from(["a", "b", "breaker:x"])
_records = st.dictionaries(
    st.sampled_from(["state", "n", "v"]),
    st.one_of(st.integers(-5, 5), st.sampled_from(["open", "closed"]), st.lists(st.integers(0, 3))),
    max_size=3,
)
_ops = st.one_of(
    st.tuples(st.just("get"), _keys),
    st.tuples(st.just("set"), _keys, _records),
    st.tuples(st.just("cas"), _keys, st.one_of(st.none(), _records), _records),
    st.tuples(st.just("delete"), _keys),
    st.tuples(
        st.just("take"),
        _keys,
        st.floats(0, 3),  # time step
        st.sampled_from([0.5, 1.0, 2.0, 7.0]),  # tokens
        st.sampled_from([3.0, 5.0]),  # capacity
        st.sampled_from([0.0, 0.1, 1.0, 10.0]),  # refill per second
    ),
)


def _apply(store: Any, op: tuple[Any, ...], now: float) -> object:
    kind, key = op[0], op[1]
    if kind == "get":
        return store.get(key)
    if kind == "set":
        return store.set(key, op[2])
    if kind == "cas":
        return store.compare_and_set(key, op[2], op[3])
    if kind == "delete":
        return store.delete(key)
    _, tokens, capacity, rate = op[2:]
    return store.take_tokens(key, capacity=capacity, refill_per_second=rate, now=now, tokens=tokens)


class StoreContract:
    """The Store protocol's behaviour; subclasses provide `store` and `other` (a second store
    object on the same data: another connection, as another process would have)."""

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    @pytest.fixture
    def other(self) -> Store:
        raise NotImplementedError

    def test_is_a_shared_store(self, store: Store) -> None:
        assert isinstance(store, Store)
        assert store.shared is True

    def test_get_set_delete(self, store: Any) -> None:
        assert store.get("k") is None
        store.set("k", {"state": "open", "n": 3, "nested": {"a": [1, 2]}, "x": 0.1})
        assert store.get("k") == {"state": "open", "n": 3, "nested": {"a": [1, 2]}, "x": 0.1}
        store.set("k", {"state": "closed"})  # replaces, does not merge
        assert store.get("k") == {"state": "closed"}
        store.set("j", {})
        assert store.keys() == ["j", "k"]
        store.delete("k")
        store.delete("k")  # absent: no error
        assert store.get("k") is None
        assert store.keys() == ["j"]

    def test_other_objects_see_the_same_records(self, store: Store, other: Store) -> None:
        store.set("breaker:payments", {"state": "open", "version": 1})
        assert other.get("breaker:payments") == {"state": "open", "version": 1}
        assert other.compare_and_set("breaker:payments", {"state": "open", "version": 1},
                                     {"state": "closed", "version": 2})  # fmt: skip
        assert store.get("breaker:payments") == {"state": "closed", "version": 2}
        other.delete("breaker:payments")
        assert store.get("breaker:payments") is None

    def test_records_are_copies_and_tuples_come_back_as_lists(self, store: Store) -> None:
        record: dict[str, Any] = {"calls": [1, 2], "pair": (3, 4), "text": "é ☃ \x00"}
        store.set("k", record)
        record["calls"].append(3)
        got = store.get("k")
        assert got == {"calls": [1, 2], "pair": [3, 4], "text": "é ☃ \x00"}
        assert got is not None
        got["calls"].append(9)
        assert store.get("k") == {"calls": [1, 2], "pair": [3, 4], "text": "é ☃ \x00"}

    @pytest.mark.parametrize(
        "bad", [{"x": object()}, {"x": math.nan}, {1: "int key"}, ["not a dict"]], ids=repr
    )
    def test_non_json_records_are_refused_and_nothing_is_stored(
        self, store: Store, bad: Any
    ) -> None:
        store.set("k", {"old": 1})
        with pytest.raises(TypeError, match="JSON-safe"):
            store.set("k", bad)
        with pytest.raises(TypeError):
            store.compare_and_set("k", {"old": 1}, bad)
        assert store.get("k") == {"old": 1}

    def test_compare_and_set(self, store: Store) -> None:
        assert store.compare_and_set("k", None, {"v": 1}) is True
        assert store.compare_and_set("k", None, {"v": 2}) is False  # present
        assert store.compare_and_set("k", {"v": 0}, {"v": 2}) is False  # stale
        assert store.get("k") == {"v": 1}
        assert store.compare_and_set("k", {"v": 1}, {"v": 2}) is True
        assert store.get("k") == {"v": 2}
        assert store.compare_and_set("absent", {"v": 1}, {"v": 2}) is False
        assert store.get("absent") is None
        # key order and tuple-vs-list do not matter: what get() returned is an expectation
        store.set("o", {"b": 2, "a": (1, 2)})
        assert store.compare_and_set("o", {"a": [1, 2], "b": 2}, {"v": 1}) is True
        current = store.get("o")
        assert current is not None
        assert store.compare_and_set("o", current, {"v": 2}) is True

    def test_a_bucket_starts_full_and_refills(self, store: Store) -> None:
        def take(now: float, tokens: float = 1.0) -> float:
            return store.take_tokens(
                "api", capacity=3, refill_per_second=1.0, now=now, tokens=tokens
            )

        assert [take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
        assert take(0.0) == pytest.approx(1.0)
        assert take(0.25) == pytest.approx(0.75)  # the refusal took nothing
        assert take(1.0) == 0.0
        assert take(1000.0, 3) == 0.0  # refilled to capacity, not beyond
        assert take(1000.0) == pytest.approx(1.0)
        assert take(1000.0, 4) == math.inf  # more than capacity: never
        assert take(990.0) > 0  # a clock going backwards does not refill
        assert take(1001.0) == 0.0

    def test_no_refill_means_an_infinite_wait(self, store: Store) -> None:
        kw: dict[str, Any] = {"capacity": 1.0, "refill_per_second": 0.0}
        assert store.take_tokens("b", now=0.0, **kw) == 0.0
        assert store.take_tokens("b", now=100.0, **kw) == math.inf

    def test_buckets_are_per_key_and_delete_resets(self, store: Store) -> None:
        kw: dict[str, Any] = {"capacity": 1.0, "refill_per_second": 0.001, "now": 0.0}
        assert store.take_tokens("a", **kw) == 0.0
        assert store.take_tokens("b", **kw) == 0.0
        assert store.take_tokens("a", **kw) > 0
        store.set("a", {"record": True})  # a record and a bucket under one key: independent
        assert store.take_tokens("a", **kw) > 0
        assert store.get("a") == {"record": True}
        store.delete("a")  # removes both
        assert store.get("a") is None
        assert store.take_tokens("a", **kw) == 0.0

    @pytest.mark.parametrize(
        ("arg", "bad"),
        [("tokens", -1.0), ("tokens", math.nan), ("now", math.nan), ("now", math.inf),
         ("capacity", math.nan), ("refill_per_second", math.nan)],
    )  # fmt: skip
    def test_bad_bucket_arguments_are_refused_and_change_nothing(
        self, store: Store, arg: str, bad: float
    ) -> None:
        kw: dict[str, Any] = {"capacity": 2.0, "refill_per_second": 0.0, "now": 0.0}
        assert store.take_tokens("b", **kw) == 0.0
        with pytest.raises(ConfigError, match=arg):
            store.take_tokens("b", **{**kw, arg: bad})
        assert store.take_tokens("b", **kw) == 0.0  # the second token was still there
        assert store.take_tokens("b", **kw) == math.inf

    def test_compare_and_set_is_atomic_across_threads(self, make: Callable[[], Store]) -> None:
        make().set("counter", {"n": 0})
        per_thread, n_threads = 100, 4

        def work() -> None:
            store = make()  # its own connection, like another process
            done = 0
            while done < per_thread:
                current = store.get("counter")
                assert current is not None
                if store.compare_and_set("counter", current, {"n": current["n"] + 1}):
                    done += 1

        threads = [threading.Thread(target=work) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert make().get("counter") == {"n": n_threads * per_thread}  # no lost update

    def test_one_object_is_safe_to_share_between_threads(self, store: Store) -> None:
        taken = [0] * 4

        def work(i: int) -> None:
            for _ in range(50):
                if store.take_tokens("t", capacity=60, refill_per_second=0, now=0.0) == 0.0:
                    taken[i] += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(taken) == 60  # exactly the bucket: none lost, none extra

    def test_processes_take_exactly_the_bucket_and_count_exactly(
        self, spec: str, store: Store
    ) -> None:
        # Three real processes race on one bucket (no refill) and one CAS counter.
        store.set("counter", {"n": 0})
        code = """
            import sys
            from resilience.stores import SQLiteStore, RedisStore
            store = eval(sys.argv[1])
            store.get("warm-up")
            sys.stdin.readline()  # all start together
            got = 0
            for _ in range(150):
                if store.take_tokens("shared", capacity=200, refill_per_second=0, now=0.0) == 0:
                    got += 1
            done = 0
            while done < 50:
                cur = store.get("counter")
                if store.compare_and_set("counter", cur, {"n": cur["n"] + 1}):
                    done += 1
            print(got)
        """
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(code), spec],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )
            for _ in range(3)
        ]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        got = []
        for p in procs:
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, err[-3000:]
            got.append(int(out))
        assert sum(got) == 200  # 450 attempts on a 200-token bucket: exactly 200 admitted
        assert store.get("counter") == {"n": 150}

    # Each subclass runs this on its own store: the differing executors are intended.
    @settings(
        max_examples=25,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(history=st.lists(_ops, max_size=30))
    def test_same_answers_as_memory_store(
        self, make: Callable[[], Store], history: list[Any]
    ) -> None:
        store, model = make(), MemoryStore()
        for key in ("a", "b", "breaker:x"):
            store.delete(key)
        now = 0.0
        for op in history:
            if op[0] == "take":
                now += op[2]
            assert _apply(store, op, now) == _apply(model, op, now), op


# --- SQLiteStore --------------------------------------------------------------------------


class TestSQLiteContract(StoreContract):
    @pytest.fixture
    def path(self, tmp_path: Path) -> Path:
        return tmp_path / "state.db"

    @pytest.fixture
    def make(self, path: Path) -> Iterator[Callable[[], Store]]:
        made: list[SQLiteStore] = []

        def make() -> Store:
            made.append(SQLiteStore(path))
            return made[-1]

        yield make
        for s in made:
            s.close()

    @pytest.fixture
    def store(self, make: Callable[[], Store]) -> Store:
        return make()

    @pytest.fixture
    def other(self, make: Callable[[], Store]) -> Store:
        return make()

    @pytest.fixture
    def spec(self, path: Path) -> str:
        return f"SQLiteStore({str(path)!r})"


def test_the_file_is_private_wal_and_marked(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        store.set("k", {"v": 1})
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for side in ("-wal", "-shm"):  # SQLite gives them the main file's mode
            extra = Path(str(path) + side)
            if extra.exists():
                assert stat.S_IMODE(extra.stat().st_mode) == 0o600
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA application_id").fetchone()[0] == SQLITE_APPLICATION_ID
            assert db.execute("PRAGMA user_version").fetchone()[0] == SQLITE_SCHEMA_VERSION
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            assert tables == {"records", "buckets"}
            # values are canonical JSON text: readable with the sqlite3 shell
            assert db.execute("SELECT value FROM records WHERE key='k'").fetchone()[0] == '{"v":1}'
        finally:
            db.close()
    assert repr(store) == f"SQLiteStore({str(path)!r})"


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        store.set("breaker:payments", {"state": "open"})
        assert store.take_tokens("rl", capacity=2, refill_per_second=0, now=0.0) == 0.0
    with SQLiteStore(str(path)) as again:
        assert again.get("breaker:payments") == {"state": "open"}
        assert again.take_tokens("rl", capacity=2, refill_per_second=0, now=0.0) == 0.0
        assert again.take_tokens("rl", capacity=2, refill_per_second=0, now=0.0) == math.inf


def _make_foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('mine')")
    db.commit()
    db.close()


def _make_newer(path: Path) -> None:
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SQLITE_SCHEMA_VERSION + 1}")
    db.commit()
    db.close()


def _make_queue(path: Path) -> None:
    from resilience.queue import OfflineQueue

    OfflineQueue(str(path)).close()


def _make_text(path: Path) -> None:
    path.write_text("this is not a database, it is a grocery list\n" * 100)


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        (_make_foreign, "another application"),
        (_make_queue, "another application"),
        (_make_newer, "newer than this library"),
        (_make_text, "not a usable store file"),
    ],
    ids=["foreign", "offline-queue", "newer", "text"],
)
def test_a_file_that_is_not_ours_is_refused_and_left_untouched(
    tmp_path: Path, make_file: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "state.db"
    make_file(path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=message) as info:
        SQLiteStore(path)
    assert isinstance(info.value, ResilienceError)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    if make_file in (_make_foreign, _make_text):  # not even a -wal file was made beside it
        assert not Path(str(path) + "-wal").exists()


def test_an_empty_file_is_initialised(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    with SQLiteStore(path) as store:
        store.set("k", {"v": 1})
        assert store.get("k") == {"v": 1}


def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot"):
        SQLiteStore(tmp_path / "no" / "such" / "dir" / "state.db")
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path)  # a directory


def test_bad_arguments_are_config_errors_listing_all(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        SQLiteStore(42, busy_timeout=0)  # type: ignore[arg-type]
    assert [loc for loc, _ in info.value.errors] == ["path", "busy_timeout"]


def test_memory_database_is_private(tmp_path: Path) -> None:
    store = SQLiteStore(":memory:")
    assert store.shared is False
    assert SQLiteStore.shared is True
    store.set("k", {"v": 1})
    assert store.get("k") == {"v": 1}
    assert SQLiteStore(":memory:").get("k") is None


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.get("k")


def test_a_held_write_lock_is_waited_out_or_reported(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SQLiteStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    impatient = SQLiteStore(path, busy_timeout=0.05)
    with pytest.raises(StoreError, match="locked") as info:
        impatient.take_tokens("b", capacity=1, refill_per_second=0, now=0.0)
    assert info.value.operation == "b"
    assert impatient.get("b") is None  # reads do not wait for a writer (WAL)
    patient = SQLiteStore(path, busy_timeout=5)
    timer = threading.Timer(0.05, holder.execute, args=("COMMIT",))
    timer.start()
    try:
        assert patient.take_tokens("b", capacity=1, refill_per_second=0, now=0.0) == 0.0
    finally:
        timer.join()
        holder.close()
    # the impatient attempt took nothing: the one token went to the patient one
    assert impatient.take_tokens("b", capacity=1, refill_per_second=0, now=0.0) == math.inf


def test_a_corrupt_record_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO records VALUES ('k', 'not json'), ('l', '[1, 2]')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not JSON"):
        store.get("k")
    with pytest.raises(StoreError, match="not a JSON object"):
        store.get("l")


def test_import_resilience_and_a_breaker_do_not_load_sqlite3_or_redis(tmp_path: Path) -> None:
    out = run_child(
        """
        import sys
        import resilience as rs
        rs.CircuitBreaker("payments")
        rs.RateLimiter(rate=10)
        import resilience.stores
        before = [m for m in ("sqlite3", "redis") if m in sys.modules]
        resilience.stores.SQLiteStore(sys.argv[1])
        print(before, "sqlite3" in sys.modules, "redis" in sys.modules)
        """,
        str(tmp_path / "state.db"),
    )
    assert out.split("]")[0] + "]" == "[]"
    assert out.split("]")[1].split() == ["True", "False"]


def test_breaker_and_limiter_state_in_the_file_is_json(tmp_path: Path) -> None:
    import resilience as rs
    from resilience.testing import VirtualClock

    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    br = rs.CircuitBreaker("mail", minimum_calls=1, open_duration=60, store=store,
                           clock=VirtualClock())  # fmt: skip
    with pytest.raises(ConnectionError):
        br.call(_refused)
    db = sqlite3.connect(path)
    raw = db.execute("SELECT value FROM records WHERE key = 'breaker:mail'").fetchone()[0]
    db.close()
    assert json.loads(raw)["state"] == "open"


def _refused() -> None:
    raise ConnectionError("refused")


def test_processes_creating_the_file_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    code = """
        import sys
        sys.stdin.readline()  # all start together, on a file nobody has created yet
        from resilience.stores import SQLiteStore
        store = SQLiteStore(sys.argv[1])
        store.set(sys.argv[2], {"ok": True})
        print(store.take_tokens("t", capacity=10, refill_per_second=0, now=0.0))
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
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
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err[-3000:]
        assert float(out) == 0.0
    with SQLiteStore(path) as store:
        assert store.keys() == ["p0", "p1", "p2", "p3"]
