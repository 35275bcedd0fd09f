"""MemoryStore: the record operations, the token bucket, JSON safety and thread safety."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience import ConfigError
from resilience.stores import MemoryStore, Store


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every few microseconds, so an unlocked read-modify-write would race."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_memory_store_is_a_store(store: MemoryStore) -> None:
    assert isinstance(store, Store)
    assert store.shared is False


def test_get_set_delete(store: MemoryStore) -> None:
    assert store.get("k") is None
    store.set("k", {"state": "open", "n": 3, "nested": {"a": [1, 2]}})
    assert store.get("k") == {"state": "open", "n": 3, "nested": {"a": [1, 2]}}
    store.set("k", {"state": "closed"})  # replaces, does not merge
    assert store.get("k") == {"state": "closed"}
    assert store.keys() == ["k"]
    store.delete("k")
    store.delete("k")  # absent: no error
    assert store.get("k") is None
    assert store.keys() == []
    assert repr(store) == "MemoryStore(0 records)"


def test_records_are_copies_in_and_out(store: MemoryStore) -> None:
    record = {"calls": [1, 2], "inner": {"x": 1}}
    store.set("k", record)
    record["calls"].append(3)  # the caller's object changes later...
    record["inner"]["x"] = 99
    got = store.get("k")
    assert got == {"calls": [1, 2], "inner": {"x": 1}}  # ...the store's does not
    assert got is not None
    got["calls"].append(4)
    got["inner"]["x"] = 5
    assert store.get("k") == {"calls": [1, 2], "inner": {"x": 1}}


def test_tuples_come_back_as_lists(store: MemoryStore) -> None:
    store.set("k", {"pair": (1, 2)})
    assert store.get("k") == {"pair": [1, 2]}


@pytest.mark.parametrize(
    "bad",
    [
        {"when": object()},
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": {1, 2}},
        {"x": b"bytes"},
        {1: "int key"},
        {"nested": {2: "int key"}},
        {"nested": [{None: 1}]},
        ["not", "a", "dict"],
        "text",
    ],
    ids=repr,
)
def test_non_json_records_raise_type_error_and_store_nothing(
    store: MemoryStore, bad: object
) -> None:
    store.set("k", {"old": 1})
    with pytest.raises(TypeError, match="JSON-safe"):
        store.set("k", bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.compare_and_set("k", {"old": 1}, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.set("other", bad)  # type: ignore[arg-type]
    assert store.get("k") == {"old": 1}
    assert store.get("other") is None


def test_circular_record_is_refused(store: MemoryStore) -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(TypeError):
        store.set("k", loop)
    assert store.get("k") is None


def test_compare_and_set(store: MemoryStore) -> None:
    assert store.compare_and_set("k", None, {"v": 1}) is True
    assert store.compare_and_set("k", None, {"v": 2}) is False  # present: None does not match
    assert store.compare_and_set("k", {"v": 0}, {"v": 2}) is False  # stale expectation
    assert store.get("k") == {"v": 1}
    assert store.compare_and_set("k", {"v": 1}, {"v": 2}) is True
    assert store.get("k") == {"v": 2}
    assert store.compare_and_set("absent", {"v": 1}, {"v": 2}) is False
    assert store.get("absent") is None


def test_compare_and_set_compares_values_not_spelling(store: MemoryStore) -> None:
    store.set("k", {"b": 2, "a": (1, 2)})
    # key order and tuple-vs-list do not matter: what get() returned is a valid expectation
    assert store.compare_and_set("k", {"a": [1, 2], "b": 2}, {"v": 1}) is True
    current = store.get("k")
    assert current is not None
    assert store.compare_and_set("k", current, {"v": 2}) is True


@pytest.mark.usefixtures("fast_switching")
def test_compare_and_set_is_atomic_across_threads(store: MemoryStore) -> None:
    store.set("counter", {"n": 0})
    per_thread = 300

    def work() -> None:
        done = 0
        while done < per_thread:
            current = store.get("counter")
            assert current is not None
            if store.compare_and_set("counter", current, {"n": current["n"] + 1}):
                done += 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("counter") == {"n": 6 * per_thread}  # no lost update


# --- token bucket ---------------------------------------------------------------------------


def test_a_bucket_starts_full_and_empties(store: MemoryStore) -> None:
    take = lambda now: store.take_tokens("api", capacity=3, refill_per_second=1.0, now=now)  # noqa: E731
    assert [take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert take(0.0) == pytest.approx(1.0)  # the wait for the next token
    assert take(0.25) == pytest.approx(0.75)  # nothing was taken by the refusal
    assert take(1.0) == 0.0
    assert take(1.0) == pytest.approx(1.0)


def test_refill_is_capped_at_capacity(store: MemoryStore) -> None:
    kw = {"capacity": 2.0, "refill_per_second": 10.0}
    assert store.take_tokens("b", now=0.0, **kw) == 0.0
    assert store.take_tokens("b", now=0.0, **kw) == 0.0
    # a long pause refills to capacity, not beyond
    for _ in range(2):
        assert store.take_tokens("b", now=1000.0, **kw) == 0.0
    assert store.take_tokens("b", now=1000.0, **kw) == pytest.approx(0.1)


def test_taking_several_tokens(store: MemoryStore) -> None:
    kw = {"capacity": 10.0, "refill_per_second": 2.0}
    assert store.take_tokens("b", now=0.0, tokens=7, **kw) == 0.0
    assert store.take_tokens("b", now=0.0, tokens=5, **kw) == pytest.approx(1.0)  # need 2 more
    assert store.take_tokens("b", now=1.0, tokens=5, **kw) == 0.0
    assert store.take_tokens("b", now=1.0, tokens=0.5, **kw) == pytest.approx(0.25)  # empty


def test_more_tokens_than_capacity_can_never_be_taken(store: MemoryStore) -> None:
    kw = {"capacity": 5.0, "refill_per_second": 1.0}
    assert store.take_tokens("b", now=0.0, tokens=6, **kw) == math.inf
    assert store.take_tokens("b", now=0.0, tokens=5, **kw) == 0.0  # nothing was taken


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_negative_or_nan_tokens_are_refused(store: MemoryStore, bad: float) -> None:
    kw = {"capacity": 2.0, "refill_per_second": 1.0}
    assert store.take_tokens("b", now=0.0, **kw) == 0.0
    with pytest.raises(ConfigError, match="tokens"):
        store.take_tokens("b", now=0.0, tokens=bad, **kw)
    assert store.take_tokens("b", now=0.0, **kw) == 0.0  # the bucket was not changed
    assert store.take_tokens("b", now=0.0, **kw) > 0


def test_no_refill_means_an_infinite_wait(store: MemoryStore) -> None:
    kw = {"capacity": 1.0, "refill_per_second": 0.0}
    assert store.take_tokens("b", now=0.0, **kw) == 0.0
    assert store.take_tokens("b", now=100.0, **kw) == math.inf


def test_a_clock_going_backwards_does_not_refill(store: MemoryStore) -> None:
    kw = {"capacity": 1.0, "refill_per_second": 1.0}
    assert store.take_tokens("b", now=10.0, **kw) == 0.0
    assert store.take_tokens("b", now=5.0, **kw) > 0
    assert store.take_tokens("b", now=10.5, **kw) == pytest.approx(0.5)


def test_buckets_are_per_key_and_delete_resets(store: MemoryStore) -> None:
    kw = {"capacity": 1.0, "refill_per_second": 0.001}
    assert store.take_tokens("a", now=0.0, **kw) == 0.0
    assert store.take_tokens("b", now=0.0, **kw) == 0.0
    assert store.take_tokens("a", now=0.0, **kw) > 0
    store.delete("a")
    assert store.take_tokens("a", now=0.0, **kw) == 0.0


def test_lowering_capacity_caps_a_full_bucket(store: MemoryStore) -> None:
    assert store.take_tokens("b", capacity=10, refill_per_second=1, now=0.0) == 0.0  # 9 left
    assert store.take_tokens("b", capacity=2, refill_per_second=1, now=0.0) == 0.0  # 1 left
    assert store.take_tokens("b", capacity=2, refill_per_second=1, now=0.0) == 0.0
    assert store.take_tokens("b", capacity=2, refill_per_second=1, now=0.0) > 0


@pytest.mark.usefixtures("fast_switching")
def test_threads_never_take_more_than_capacity_plus_refill(store: MemoryStore) -> None:
    capacity, rate = 50.0, 100.0
    taken = [0] * 8
    barrier = threading.Barrier(8)
    now = [0.0]
    lock = threading.Lock()

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(500):
            with lock:
                now[0] += 0.0001  # a shared, moving clock: 8 * 500 * 0.1 ms = 0.4 s
                t = now[0]
            if store.take_tokens("shared", capacity=capacity, refill_per_second=rate, now=t) == 0:
                taken[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allowed = capacity + rate * now[0]
    assert sum(taken) <= allowed + 1e-9
    assert sum(taken) >= allowed - 2  # and the bucket was used, not starved


@given(
    st.lists(
        st.tuples(st.floats(0, 5), st.floats(0.1, 3)),  # (time step, tokens wanted)
        max_size=40,
    ),
    st.floats(1, 20),
    st.floats(0.1, 10),
)
def test_bucket_law_total_taken_is_bounded(
    steps: list[tuple[float, float]], capacity: float, rate: float
) -> None:
    store = MemoryStore()
    now, total = 0.0, 0.0
    for step, want in steps:
        now += step
        wait = store.take_tokens(
            "k", capacity=capacity, refill_per_second=rate, now=now, tokens=want
        )
        assert wait >= 0
        if wait == 0:
            total += want
        elif want <= capacity:
            # after the announced wait the request succeeds
            probe = MemoryStore()
            probe._buckets = dict(store._buckets)
            again = probe.take_tokens(
                "k", capacity=capacity, refill_per_second=rate, now=now + wait + 1e-9, tokens=want
            )
            assert again == 0.0
    assert total <= capacity + rate * now + 1e-6
