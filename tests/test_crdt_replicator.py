"""Replicator: deltas over lossy, duplicating, reordering networks; anti-entropy repairs."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt_strategies import KINDS
from resilience import CRDTError, crdt
from resilience.testing import VirtualClock

NAMES = sorted(KINDS)


def _network_of(n: int, **faults: Any) -> tuple[crdt.MemoryNetwork, list[crdt.Replicator]]:
    net = crdt.MemoryNetwork(**faults)
    return net, [crdt.Replicator(f"r{i}", net.transport(f"r{i}")) for i in range(n)]


@pytest.mark.parametrize("main", NAMES)
@settings(max_examples=12)
@given(
    data=st.data(),
    loss=st.sampled_from([0.0, 0.3, 0.7]),
    duplicate=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_replicas_converge_after_anti_entropy_despite_loss_duplication_reordering(
    main: str, data: st.DataObject, loss: float, duplicate: float, seed: int
) -> None:
    """Every type, plus up to two others tracked by the same replicators."""
    clock = VirtualClock()
    net, replicators = _network_of(4, loss=loss, duplicate=duplicate, reorder=True, seed=seed)
    others = data.draw(st.lists(st.sampled_from(NAMES), max_size=2, unique=True))
    kinds = [main, *(k for k in others if k != main)]
    for rep in replicators:
        for name in kinds:
            rep.add(name, KINDS[name].make(rep.replica, clock))
    steps = data.draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("op"), st.integers(0, 3), st.sampled_from(kinds), st.data()),
                st.tuples(st.just("poll"), st.integers(0, 3), st.integers(1, 5)),
                st.tuples(st.just("tick"), st.sampled_from([0.0, 0.001, 0.5])),
            ),
            max_size=40,
        )
    )
    for step in steps:
        if step[0] == "op":
            _, i, name, op_data = step
            kind = KINDS[name]
            op = op_data.draw(kind.ops)
            replicators[i].update(name, lambda obj, kind=kind, op=op: kind.apply(obj, op))
        elif step[0] == "poll":
            replicators[step[1]].poll(limit=step[2])
        else:
            clock.advance(step[1])
    # the network heals; one round of anti-entropy, then everything is delivered
    net.loss = 0.0
    for rep in replicators:
        rep.poll()
        rep.anti_entropy()
    for rep in replicators:
        rep.poll()
    assert net.pending() == 0
    for name in kinds:
        states = [rep[name] for rep in replicators]
        assert all(s == states[0] for s in states), name
        assert all(s.value == states[0].value for s in states)
        everything = states[0]
        for rep in replicators:
            everything = everything.merge(rep[name])
        assert everything == states[0]
    assert all(rep.stats["rejected"] == 0 for rep in replicators)


def test_deltas_alone_converge_on_a_perfect_network(clock: VirtualClock) -> None:
    _net, (a, b, c) = _network_of(3)
    for rep in (a, b, c):
        rep.add("cart", crdt.ORSet(rep.replica))
    a.update("cart", lambda s: s.add("apple"))
    b.update("cart", lambda s: s.add("pear"))
    for rep in (a, b, c):
        rep.poll()
    c.update("cart", lambda s: s.remove("apple"))
    for rep in (a, b, c):
        rep.poll()
    assert a["cart"].value == b["cart"].value == c["cart"].value == frozenset({"pear"})


def test_a_lost_delta_is_repaired_by_anti_entropy() -> None:
    ta, tb = crdt.LoopbackTransport.pair()
    a, b = crdt.Replicator("a", ta), crdt.Replicator("b", tb)
    a.add("hits", crdt.GCounter("a"))
    a["hits"].increment(5)  # mutated directly and never shipped: "lost"
    a.update("hits", lambda c: c.increment(1))
    b.poll()
    assert b["hits"].value == 6  # a G-Counter delta carries a's whole entry (its new total)
    # an ORSet delta really is partial: lose one, then repair
    a.add("set", crdt.ORSet("a"))
    a["set"].add("lost")
    a.update("set", lambda s: s.add("shipped"))
    b.poll()
    assert b["set"].value == frozenset({"shipped"})
    assert a.anti_entropy() == 2
    b.poll()
    assert b["set"].value == frozenset({"lost", "shipped"})
    assert b["set"] == a["set"]
    assert b.stats["buffered"] == 0


def test_unknown_names_are_adopted_with_the_local_replica_id() -> None:
    ta, tb = crdt.LoopbackTransport.pair()
    a, b = crdt.Replicator("a", ta), crdt.Replicator("b", tb)
    a.add("doc", crdt.ORMap("a"))
    a.update("doc", lambda d: d.update("title", lambda r: r.set("Hi")))
    b.poll()
    assert "doc" in b
    assert b.names == ["doc"]
    assert b["doc"].replica == "b"
    b.update("doc", lambda d: d.update("body", lambda r: r.set("text")))
    a.poll()
    assert a["doc"].value == {"title": "Hi", "body": "text"}


def test_wire_format_is_versioned_json() -> None:
    ta, tb = crdt.LoopbackTransport.pair()
    a = crdt.Replicator("a", ta)
    a.add("n", crdt.PNCounter("a"))
    a.update("n", lambda c: c.decrement(2))
    message = json.loads(tb.receive() or b"")
    assert message["format"] == "resilience.crdt.sync"
    assert message["v"] == 2
    assert message["seq"] == 1
    assert len(message["session"]) == 16
    assert message["kind"] == "delta"
    assert message["name"] == "n"
    assert message["from"] == "a"
    assert crdt.from_dict(message["crdt"]).value == -2


def _message(**changes: Any) -> bytes:
    ta, tb = crdt.LoopbackTransport.pair()
    a = crdt.Replicator("a", ta)
    a.add("n", crdt.GCounter("a"))
    a.update("n", lambda c: c.increment(1))
    message = json.loads(tb.receive() or b"")
    message.update(changes)
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x04\x95 pickle",
        b"not json",
        b"[]",
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps({"format": "other"}).encode(),
        _message(v=3),
        _message(seq=0),
        _message(session=7),
        _message(v="1"),
        _message(kind="exec"),
        _message(name=""),
        _message(extra=True),
        _message(**{"from": 7}),
        _message(crdt={"format": "resilience.crdt", "v": 1}),
    ],
)
def test_bad_messages_are_rejected_and_nothing_is_applied(data: bytes) -> None:
    ta, tb = crdt.LoopbackTransport.pair()
    b = crdt.Replicator("b", tb)
    b.add("n", crdt.GCounter("b"))
    with pytest.raises(CRDTError):
        b.receive(data)
    assert b["n"].value == 0
    assert b.names == ["n"]
    ta.send(data)
    ta.send(_message())
    assert b.poll() == 1  # the bad one is skipped and counted, the good one applied
    assert b.stats["rejected"] == 2  # every drop counts: receive() above and poll() here
    assert b["n"].value == 1


def test_a_type_clash_between_replicas_is_rejected() -> None:
    _ta, tb = crdt.LoopbackTransport.pair()
    b = crdt.Replicator("b", tb)
    b.add("n", crdt.PNCounter("b"))
    with pytest.raises(CRDTError, match="disagree"):
        b.receive(_message())
    assert b["n"] == crdt.PNCounter("x")
    with pytest.raises(CRDTError):
        b.add("n", crdt.GCounter("b"))


def test_update_must_return_the_delta() -> None:
    ta, _ = crdt.LoopbackTransport.pair()
    a = crdt.Replicator("a", ta)
    a.add("n", crdt.GCounter("a"))
    with pytest.raises(TypeError, match="delta"):
        a.update("n", lambda c: None)  # type: ignore[arg-type,return-value]


def test_concurrent_updates_and_receives_lose_nothing() -> None:
    _net, (a, b) = _network_of(2)
    for rep in (a, b):
        rep.add("n", crdt.GCounter(rep.replica))
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            a.poll()

    thread = threading.Thread(target=pump)
    thread.start()
    try:
        for _ in range(500):
            b.update("n", lambda c: c.increment(1))
            a.update("n", lambda c: c.increment(1))
    finally:
        stop.set()
        thread.join()
    a.poll()
    b.poll()
    assert a["n"].value == b["n"].value == 1000


def test_memory_network_faults_and_loopback_alone() -> None:
    net = crdt.MemoryNetwork(loss=1.0, seed=1)
    x, y = net.transport("x"), net.transport("y")
    x.send(b"1")
    assert y.receive() is None
    assert net.dropped == 1
    net.loss, net.duplicate = 0.0, 1.0
    x.send(b"2")
    assert (y.receive(), y.receive(), y.receive()) == (b"2", b"2", None)
    with pytest.raises(ValueError, match="already"):
        net.transport("x")
    solo = crdt.LoopbackTransport()
    solo.send(b"echo")
    assert solo.receive() == b"echo"
    assert isinstance(solo, crdt.Transport)


@pytest.mark.anyio
async def test_arun_polls_and_repairs_on_the_virtual_clock(clock: VirtualClock) -> None:
    import anyio

    net = crdt.MemoryNetwork(loss=1.0, seed=3)
    a = crdt.Replicator("a", net.transport("a"), clock=clock)
    b = crdt.Replicator("b", net.transport("b"), clock=clock)
    a.add("set", crdt.ORSet("a"))
    a.update("set", lambda s: s.add("lost in the partition"))
    net.loss = 0.0

    def done() -> bool:
        return clock.monotonic() >= 12.0

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: a.arun(poll_interval=0.5, anti_entropy_interval=5.0, until=done))
        tg.start_soon(lambda: b.arun(poll_interval=0.5, anti_entropy_interval=5.0, until=done))
    assert b["set"].value == frozenset({"lost in the partition"})
    assert a.stats["sent"] >= 3  # the delta, then anti-entropy rounds at t=0, 5, 10


def test_a_version_1_message_is_still_read_without_a_secret_but_not_with_one() -> None:
    counter = crdt.GCounter("old")
    counter.increment(4)
    v1 = json.dumps(
        {
            "format": "resilience.crdt.sync",
            "v": 1,
            "from": "old",
            "kind": "delta",
            "name": "n",
            "crdt": counter.to_dict(),
        }
    ).encode()
    plain = crdt.Replicator("b", crdt.LoopbackTransport())
    assert plain.receive(v1) == "n"
    assert plain["n"].value == 4
    keyed = crdt.Replicator("c", crdt.LoopbackTransport(), secret=b"sixteen bytes key!")
    with pytest.raises(CRDTError):
        keyed.receive(v1)
