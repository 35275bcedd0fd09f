"""Hostile peers: forged contexts, huge dot counts, deep nesting, type confusion, replays,
bad HMACs, skewed clocks, out-of-order deltas. Each gives a CRDTError or a dropped-and-counted
message, within bounded time and memory (peak measured with tracemalloc)."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience import CRDTError, crdt, events
from resilience.crdt._base import _checksum
from resilience.testing import VirtualClock

SECRET = b"0123456789abcdef-shared-fleet-key"


def reseal(d: dict[str, Any]) -> dict[str, Any]:
    d["checksum"] = _checksum(d)
    return d


def bounded(fn: Callable[[], object], *, seconds: float = 2.0, mib: float = 16.0) -> object:
    """Run fn; fail if it takes longer than `seconds` or peaks above `mib` of new memory.

    The time is this thread's CPU time: the work hostile input can cause, whatever else
    the machine is running (an unbounded attack still blows far past it)."""
    tracemalloc.start()
    start = time.thread_time()
    try:
        result = fn()
    finally:
        elapsed = time.thread_time() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s of CPU time"
    assert peak < mib * 2**20, f"peak {peak / 2**20:.1f} MiB"
    return result


@pytest.fixture
def dropped() -> Iterator[list[events.CRDTMessageDropped]]:
    seen: list[events.CRDTMessageDropped] = []

    def listen(event: events.Event) -> None:
        if isinstance(event, events.CRDTMessageDropped):
            seen.append(event)

    stop = events.subscribe(listen)
    yield seen
    stop()


def _forged_ormap(claim: int, victim: str = "victim") -> dict[str, Any]:
    """Issue item 1: an ORMap whose nested ORSet's causal context claims `claim` dots of the
    victim (about 330 bytes, checksum recomputed)."""
    attacker = crdt.ORMap("mallory", crdt.ORSet)
    attacker.update("k", lambda s: s.add("x"))
    d = attacker.to_dict()
    nested = d["state"]["entries"][0][1][0][2]
    nested["cc"]["vv"][victim] = claim
    return reseal(d)


# --- forged contexts and huge dot counts ---------------------------------------------------


def test_a_context_claiming_a_trillion_dots_is_never_expanded() -> None:
    victim = crdt.ORMap("victim", crdt.ORSet)
    victim.update("k", lambda s: s.add("mine"))
    forged = _forged_ormap(10**12)
    assert len(json.dumps(forged)) < 600

    def attack() -> object:
        merged = victim.merge(crdt.from_dict(forged, replica="victim"))
        merged.update("k", lambda s: s.add("after"))  # 7.8 s and MemoryError before the fix
        merged.update("other", lambda s: s.add("y"))
        return merged

    merged: Any = bounded(attack, seconds=1.0, mib=4)
    assert merged["k"].value >= {"after"}
    assert merged.context_size <= 4  # the jump is one version-vector entry, not 10^12 dots


def test_the_trillion_dot_state_through_a_replicator_is_bounded_too() -> None:
    ta, tb = crdt.LoopbackTransport.pair()
    victim = crdt.Replicator("victim", tb)
    victim.add("doc", crdt.ORMap("victim", crdt.ORSet))
    message = {
        "format": "resilience.crdt.sync",
        "v": 2,
        "from": "mallory",
        "session": "s",
        "seq": 1,
        "kind": "state",
        "name": "doc",
        "crdt": _forged_ormap(10**12),
    }
    ta.send(json.dumps(message).encode())

    def attack() -> object:
        victim.poll()
        return victim.update("doc", lambda d: d.update("k", lambda s: s.add("after")))

    bounded(attack, seconds=1.0, mib=4)
    assert "after" in victim["doc"]["k"]


@pytest.mark.parametrize("claim", [2**53 + 1, 10**18, -1, 0])
def test_counters_beyond_the_bound_are_refused(claim: int) -> None:
    with pytest.raises(CRDTError):
        crdt.from_dict(_forged_ormap(claim))
    c = crdt.GCounter("a").to_dict()
    c["state"]["counts"]["a"] = claim
    with pytest.raises(CRDTError):
        crdt.from_dict(reseal(c))


def test_a_huge_dot_cloud_is_refused_quickly() -> None:
    s = crdt.ORSet("a").to_dict()
    s["state"]["cc"]["cloud"] = [["a", 2 * n + 2] for n in range(200_000)]
    reseal(s)
    with pytest.raises(CRDTError, match="max_context"):
        bounded(lambda: crdt.from_dict(s), seconds=2.0, mib=8)


def test_entry_counts_are_bounded_by_limits() -> None:
    s = crdt.ORSet("a")
    for i in range(2_000):
        s.add(i)
    with pytest.raises(CRDTError, match="max_entries"):
        crdt.from_dict(s.to_dict(), limits=crdt.Limits(max_entries=1_000))
    assert crdt.from_dict(s.to_dict()) == s


def test_forged_contexts_whose_dots_are_not_covered_are_refused() -> None:
    s = crdt.ORSet("a")
    s.add("x")
    d = s.to_dict()
    d["state"]["cc"] = {"vv": {}, "cloud": []}  # the element's dot is no longer "seen"
    with pytest.raises(CRDTError, match="causal context"):
        crdt.from_dict(reseal(d))


# --- nesting -------------------------------------------------------------------------------


def test_deeply_nested_ormaps_are_refused() -> None:
    inner: dict[str, Any] = {"type": "GCounter", "state": {"counts": {}}}
    for _ in range(40):
        inner = {
            "type": "ORMap",
            "state": {
                "value_type": "GCounter",
                "entries": [["k", [["m", 1, inner]]]],
                "cc": {"vv": {"m": 1}, "cloud": []},
            },
        }
    top = crdt.ORMap("m", crdt.ORMap).to_dict()
    top["state"] = {
        "value_type": "GCounter",
        "entries": [["k", [["m", 1, inner]]]],
        "cc": {"vv": {"m": 1}, "cloud": []},
    }
    with pytest.raises(CRDTError, match="nested"):
        bounded(lambda: crdt.from_dict(reseal(top)), seconds=1.0)


def test_deep_json_values_and_wire_messages_are_refused() -> None:
    r = crdt.LWWRegister("a")
    r.set("x")
    d = r.to_dict()
    deep: list[Any] = []
    for _ in range(500):
        deep = [deep]
    d["state"]["value"] = deep
    with pytest.raises(CRDTError):
        crdt.from_dict(reseal(d))
    rep = crdt.Replicator("b", crdt.LoopbackTransport())
    with pytest.raises(CRDTError):
        rep.receive(b"[" * 200_000 + b"]" * 200_000)


# --- type confusion ------------------------------------------------------------------------


def test_one_true_one_point_zero_and_the_string_are_distinct_everywhere(
    clock: VirtualClock,
) -> None:
    a, b = crdt.ORSet("a"), crdt.ORSet("b")
    a.add(1)
    b.add(True)
    b.add(1.0)
    b.add("1")
    for merged in (a.merge(b), b.merge(a)):
        assert len(merged) == 4
        assert sorted(map(repr, merged)) == ["'1'", "1", "1.0", "True"]
        assert True in merged
        assert 1 in merged
    wire = json.loads(json.dumps(a.merge(b).to_dict()))
    back = crdt.from_dict(wire)
    assert back == a.merge(b) == b.merge(a)
    a.remove(True)  # absent on a: 1 stays
    assert 1 in a

    m = crdt.LWWMap("a", clock=clock)
    m.set(1, "int")
    m.set(True, "bool")
    m.set("1", "str")
    assert [m.get(1), m.get(True), m.get("1")] == ["int", "bool", "str"]
    assert len(m) == 3
    assert sorted(map(repr, m.keys())) == ["'1'", "1", "True"]
    assert crdt.from_dict(json.loads(json.dumps(m.to_dict())), clock=clock) == m

    o = crdt.ORMap("a", crdt.GCounter)
    o.update(1, lambda c: c.increment(1))
    o.update(True, lambda c: c.increment(10))
    assert [o[1].value, o[True].value, len(o)] == [1, 10, 2]
    assert crdt.from_dict(json.loads(json.dumps(o.to_dict()))) == o


def test_forged_duplicate_keys_of_one_type_are_refused_but_mixed_types_are_not() -> None:
    d = crdt.ORSet("a").to_dict()
    cc = {"vv": {"a": 2}, "cloud": []}
    d["state"] = {"entries": [[1, [["a", 1]]], [True, [["a", 2]]]], "cc": cc}
    assert len(crdt.from_dict(reseal(dict(d)))) == 2
    d["state"] = {"entries": [[1, [["a", 1]]], [1, [["a", 2]]]], "cc": cc}
    with pytest.raises(CRDTError, match="twice"):
        crdt.from_dict(reseal(d))


# --- authentication, replays ---------------------------------------------------------------


def _signed_pair(**kw: Any) -> tuple[crdt.Replicator, crdt.Replicator, crdt.LoopbackTransport]:
    ta, tb = crdt.LoopbackTransport.pair()
    a = crdt.Replicator("a", ta, secret=SECRET, **kw)
    b = crdt.Replicator("b", tb, secret=SECRET, **kw)
    a.add("n", crdt.GCounter("a"))
    return a, b, tb


def test_signed_messages_flow_and_a_replay_is_dropped_and_counted(
    dropped: list[events.CRDTMessageDropped],
) -> None:
    a, b, tb = _signed_pair()
    a.update("n", lambda c: c.increment(2))
    wire = tb.receive()
    assert wire is not None
    assert wire.startswith(b"resilience.crdt.hmac-sha256:")
    b.receive(wire)
    assert b["n"].value == 2
    with pytest.raises(CRDTError, match="replayed"):
        b.receive(wire)
    assert b.stats["replayed"] == 1
    assert [(e.operation, e.reason, e.sender) for e in dropped] == [("b", "replayed", "a")]
    assert b["n"].value == 2


def _tamper(wire: bytes, old: bytes, new: bytes) -> bytes:
    assert old in wire
    return wire.replace(old, new, 1)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda w: _tamper(w, b'"counts":{"a":2}', b'"counts":{"a":9}'), id="counts"),
        pytest.param(lambda w: _tamper(w, b'"from":"a"', b'"from":"z"'), id="from"),
        pytest.param(lambda w: w.split(b":", 2)[2], id="mac-stripped"),
        pytest.param(lambda w: w[:40] + (b"0" if w[40:41] != b"0" else b"1") + w[41:], id="mac"),
        pytest.param(lambda w: w + b" ", id="appended"),
        pytest.param(lambda w: b"resilience.crdt.hmac-sha256:short:" + w, id="short-mac"),
    ],
)
def test_tampered_or_unsigned_messages_are_dropped_as_unauthenticated(
    forge: Callable[[bytes], bytes], dropped: list[events.CRDTMessageDropped]
) -> None:
    a, b, tb = _signed_pair()
    a.update("n", lambda c: c.increment(2))
    wire = tb.receive()
    assert wire is not None
    with pytest.raises(CRDTError, match="unauthenticated"):
        b.receive(forge(wire))
    assert b.stats["unauthenticated"] == 1
    assert b.stats["rejected"] == 1
    assert [e.reason for e in dropped] == ["unauthenticated"]
    assert "n" not in b
    b.receive(wire)  # the genuine one still goes through afterwards
    assert b["n"].value == 2


def test_a_wrong_key_or_no_key_is_unauthenticated_both_ways() -> None:
    ta, tb = crdt.LoopbackTransport.pair()
    a = crdt.Replicator("a", ta, secret=SECRET)
    other = crdt.Replicator("b", tb, secret=b"another key of sixteen+ bytes")
    plain = crdt.Replicator("c", crdt.LoopbackTransport())
    a.add("n", crdt.GCounter("a"))
    a.update("n", lambda c: c.increment(1))
    signed = tb.receive()
    assert signed is not None
    for receiver in (other, plain):
        with pytest.raises(CRDTError, match="unauthenticated"):
            receiver.receive(signed)
        assert receiver.stats["unauthenticated"] == 1
    with pytest.raises(CRDTError, match="16 bytes"):
        crdt.Replicator("x", crdt.LoopbackTransport(), secret="short")
    assert SECRET.decode() not in repr(a)


def test_a_peer_cannot_ship_a_state_under_another_replicas_name() -> None:
    ta, tb = crdt.LoopbackTransport.pair()
    a = crdt.Replicator("a", ta)
    b = crdt.Replicator("b", tb)
    a.add("n", crdt.GCounter("a"))
    a.update("n", lambda c: c.increment(1))
    message = json.loads(tb.receive() or b"")
    message["crdt"]["replica"] = "c"
    reseal(message["crdt"])
    with pytest.raises(CRDTError, match="another replica"):
        b.receive(json.dumps(message).encode())


def test_an_oversized_message_is_dropped_before_parsing() -> None:
    b = crdt.Replicator("b", crdt.LoopbackTransport(), limits=crdt.Limits(max_bytes=1_000))
    huge = b'{"format":"resilience.crdt.sync",' + b" " * 5_000_000 + b"}"
    with pytest.raises(CRDTError, match="oversized"):
        bounded(lambda: b.receive(huge), seconds=0.5, mib=1)
    assert b.stats["oversized"] == 1


# --- skewed clocks -------------------------------------------------------------------------


def test_a_write_from_a_year_ahead_is_refused_and_local_writes_keep_working(
    dropped: list[events.CRDTMessageDropped],
) -> None:
    clock = VirtualClock()
    future = VirtualClock(wall=clock.time() + 365 * 86400)
    ta, tb = crdt.LoopbackTransport.pair()
    skewed = crdt.Replicator("skewed", ta, clock=future)
    here = crdt.Replicator("here", tb, clock=clock, max_drift=60)
    here.add("reg", crdt.LWWRegister("here", hlc=here.hlc))
    here.update("reg", lambda r: r.set("local"))
    skewed.add("reg", crdt.LWWRegister("skewed", clock=future))
    skewed.update("reg", lambda r: r.set("from the future"))
    assert here.poll() == 0
    assert here.stats["rejected"] == 1
    assert [e.reason for e in dropped] == ["invalid"]
    clock.advance(1)
    here.update("reg", lambda r: r.set("still writable"))
    assert here["reg"].value == "still writable"

    # merged in directly (bypassing the Replicator): a local set still works, and is not
    # dragged a year ahead
    hlc = crdt.HybridLogicalClock(clock=clock, max_drift=60)
    reg = crdt.LWWRegister("here", hlc=hlc)
    far = crdt.LWWRegister("skewed", clock=future)
    far.set("future")
    reg = reg.merge(far)
    reg.set("local again")
    assert reg.timestamp is not None
    assert reg.timestamp[0] < clock.time() * 1000 + 61_000


# --- out-of-order deltas -------------------------------------------------------------------


def test_out_of_order_deltas_never_resurrect_a_removed_element() -> None:
    """Issue item 5: add x, add x again (a new dot), remove x; the remove and the first add
    arrive before the second add. Applied as they come, the remove would cover only the
    second dot and x (first dot) would be back until anti-entropy. Held back instead, the
    receiver only ever shows states the sender went through."""
    ta, tb = crdt.LoopbackTransport.pair()
    a, b = crdt.Replicator("a", ta), crdt.Replicator("b", tb)
    a.add("s", crdt.ORSet("a"))
    prefixes = [a["s"].copy()]
    for op in (lambda s: s.add("x"), lambda s: s.add("x"), lambda s: s.remove("x")):
        a.update("s", op)
        prefixes.append(a["s"].copy())
    d1, d2, d3 = tb.receive(), tb.receive(), tb.receive()
    assert None not in (d1, d2, d3)
    b.receive(d3)
    assert "s" not in b
    assert b.stats["buffered"] == 1
    b.receive(d1)
    assert b["s"] == prefixes[1]  # x, added once: a state the sender was in
    b.receive(d2)  # now the remove is ready too
    assert b["s"] == prefixes[3]
    assert "x" not in b["s"]
    assert b.stats["buffered"] == 0


def test_a_remove_relayed_by_a_third_replica_is_not_undone_by_a_late_add() -> None:
    """b saw both of a's adds of x and removes x; c gets b's remove, then a's first add,
    then a's second add. c never shows x once it has applied the removal."""
    net = crdt.MemoryNetwork()
    a = crdt.Replicator("a", net.transport("a"))
    b = crdt.Replicator("b", net.transport("b"))
    tap = net.transport("tap")
    c = crdt.Replicator("c", crdt.LoopbackTransport())
    a.add("s", crdt.ORSet("a"))
    a.update("s", lambda s: s.add("x"))
    first = tap.receive()
    a.update("s", lambda s: s.add("x"))
    second = tap.receive()
    b.poll()
    b.update("s", lambda s: s.remove("x"))
    removal = tap.receive()
    assert None not in (first, second, removal)
    c.receive(removal)  # it saw a's dots c has not: held
    assert "s" not in c
    c.receive(first)
    assert "x" in c["s"]  # a's first add: a state a was in; the removal still waits
    c.receive(second)
    assert "x" not in c["s"]
    assert c.stats["buffered"] == 0


def test_the_buffer_of_early_deltas_is_bounded() -> None:
    ta, tb = crdt.LoopbackTransport.pair()
    a = crdt.Replicator("a", ta)
    b = crdt.Replicator("b", tb, max_pending=10)
    a.add("s", crdt.ORSet("a"))
    a.update("s", lambda s: s.add("lost"))
    assert tb.receive() is not None  # lost on the way: every later delta waits for it
    for i in range(50):
        a.update("s", lambda s, i=i: s.add(i))
    b.poll()
    assert b.stats["buffered"] == 10
    assert b.stats["overflow"] == 40
    a.anti_entropy()
    b.poll()
    assert b["s"] == a["s"]
    assert b.stats["buffered"] == 0
