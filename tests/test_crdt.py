"""Semantics of each CRDT type, the hybrid logical clock, and bad input."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from typing import Any

import pytest

from resilience import CRDTError, ResilienceError, crdt
from resilience.crdt._base import _checksum
from resilience.testing import VirtualClock


def reseal(d: dict[str, Any]) -> dict[str, Any]:
    """What a careful attacker does: edit the state and recompute the checksum."""
    d["checksum"] = _checksum(d)
    return d


# --- counters ------------------------------------------------------------------------------


def test_gcounter_counts_per_replica_and_merges_by_max() -> None:
    a, b = crdt.GCounter("a"), crdt.GCounter("b")
    d1 = a.increment(2)
    a.increment(3)
    b.increment(10)
    assert a.value == 5
    assert b.value == 10
    merged = a.merge(b)
    assert merged.value == 15
    # an old delta arriving late or twice does not count again
    assert merged.merge(d1).merge(d1).value == 15
    assert merged.counts == {"a": 5, "b": 10}


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", None])
def test_counter_amount_must_be_a_non_negative_int(bad: Any) -> None:
    c = crdt.PNCounter("a")
    with pytest.raises(CRDTError):
        c.increment(bad)
    with pytest.raises(CRDTError):
        c.decrement(bad)
    assert c.value == 0


def test_pncounter_goes_down_and_converges() -> None:
    a, b = crdt.PNCounter("a"), crdt.PNCounter("b")
    a.increment(5)
    b.decrement(7)
    a.decrement(1)
    assert a.merge(b).value == b.merge(a).value == -3
    assert crdt.PNCounter("c").increment(0) == crdt.PNCounter("d")


# --- registers -----------------------------------------------------------------------------


def test_lww_register_later_write_wins(clock: VirtualClock) -> None:
    a = crdt.LWWRegister("a", clock=clock)
    b = crdt.LWWRegister("b", clock=clock)
    a.set("first")
    clock.advance(0.5)
    b.set("second")
    assert a.merge(b).value == b.merge(a).value == "second"


def test_lww_register_tie_is_broken_by_replica_id_the_same_everywhere(
    clock: VirtualClock,
) -> None:
    a = crdt.LWWRegister("a", clock=clock)
    z = crdt.LWWRegister("z", clock=clock)
    a.set("from a")
    z.set("from z")  # same clock reading, same counter: only the replica id differs
    assert a.timestamp is not None
    assert z.timestamp is not None
    assert a.timestamp[:2] == z.timestamp[:2]
    assert a.merge(z).value == z.merge(a).value == "from z"


def test_lww_write_after_seeing_a_future_write_still_wins(clock: VirtualClock) -> None:
    """A peer's clock runs 1 h ahead; a write made after merging its value must still win
    (the HLC moves past every timestamp it has seen)."""
    ahead = VirtualClock(wall=clock.time() + 3600)
    fast = crdt.LWWRegister("fast", clock=ahead)
    fast.set("from the future")
    local = crdt.LWWRegister("local", clock=clock)
    local = local.merge(fast)
    local.set("edited after reading it")
    assert local.merge(fast).value == fast.merge(local).value == "edited after reading it"


def test_lww_register_keeps_its_own_copy_of_a_list(clock: VirtualClock) -> None:
    r = crdt.LWWRegister("a", clock=clock)
    value = [1, 2]
    r.set(value)
    value.append(3)
    assert r.value == [1, 2]


def test_mv_register_keeps_concurrent_writes_until_one_supersedes_them() -> None:
    a, b = crdt.MVRegister("a"), crdt.MVRegister("b")
    a.set("left")
    b.set("right")
    both = a.merge(b)
    assert sorted(both.values) == ["left", "right"]
    assert both.value in ("left", "right")
    assert b.merge(a).value == both.value  # the single-value view is deterministic
    both.set("resolved")
    assert both.values == ["resolved"]
    assert both.merge(a).merge(b).values == ["resolved"]
    assert crdt.MVRegister("c").value is None


# --- hybrid logical clock ------------------------------------------------------------------


class SteppingClock:
    """A wall clock that can step backwards (NTP corrections), unlike VirtualClock."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds


def test_hlc_never_goes_backwards_or_repeats() -> None:
    wall = SteppingClock()
    hlc = crdt.HybridLogicalClock(clock=wall)
    seen = [hlc.now()]
    for step in (0.0, 0.010, -5.0, 0.0, 3.0, -0.001):
        wall.now += step
        seen.append(hlc.now())
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert seen[1] == (1_000_000, 1)  # stalled clock: the counter moves


def test_hlc_observe_moves_past_remote_and_max_drift_refuses_far_future(
    clock: VirtualClock,
) -> None:
    hlc = crdt.HybridLogicalClock(clock=clock, max_drift=1.0)
    now_ms = int(clock.time() * 1000)
    hlc.observe(now_ms + 500, 7)
    assert hlc.now() == (now_ms + 500, 8)
    with pytest.raises(CRDTError, match="ahead"):
        hlc.observe(now_ms + 60_000, 0)


def test_hlc_stamps_carry_the_replica_id(clock: VirtualClock) -> None:
    hlc = crdt.HybridLogicalClock("b", clock=clock)
    first, second = hlc.stamp(), hlc.stamp()
    assert first < second
    assert first[2] == "b"
    with pytest.raises(CRDTError, match="replica"):
        crdt.HybridLogicalClock(clock=clock).stamp()
    shared = crdt.HybridLogicalClock("b", clock=clock)
    reg, m = crdt.LWWRegister("b", hlc=shared), crdt.LWWMap("b", hlc=shared)
    reg.set(1)
    m.set("k", 2)
    assert reg.timestamp is not None
    assert m["k"] == 2
    assert list(m) == ["k"]
    with pytest.raises(KeyError):
        m["missing"]


# --- ORSet ---------------------------------------------------------------------------------


def test_orset_add_wins_over_a_concurrent_remove() -> None:
    a = crdt.ORSet("a")
    a.add("milk")
    b = crdt.ORSet("b").merge(a)
    a.remove("milk")  # a removes what it saw
    b.add("milk")  # b re-adds concurrently: a new dot a has not seen
    assert "milk" in a.merge(b)
    assert "milk" in b.merge(a)


def test_orset_concurrent_adds_keep_both_dots_so_either_remove_is_partial() -> None:
    a, b = crdt.ORSet("a"), crdt.ORSet("b")
    a.add("x")
    b.add("x")
    assert a.merge(b) == b.merge(a)
    merged = a.merge(b)
    a.remove("x")  # a removes only its own add: b's concurrent add survives
    assert "x" in a.merge(b)
    assert "x" in merged.merge(a)
    merged.remove("x")  # a removal that saw both adds wins over both
    assert "x" not in merged.merge(a).merge(b)


def test_orset_observed_remove_propagates_by_delta() -> None:
    a = crdt.ORSet("a")
    b = crdt.ORSet("b")
    b = b.merge(a.add("x")).merge(a.add("y"))
    removal = b.remove("x")
    a = a.merge(removal)
    assert a.value == b.value == frozenset({"y"})
    assert "x" not in a
    # an old add delta replayed after the removal does not resurrect the element
    assert "x" not in a.merge(crdt.ORSet("c").merge(a))


def test_orset_readd_after_remove() -> None:
    s = crdt.ORSet("a")
    s.add(1)
    s.remove(1)
    s.add(1)
    assert s.value == frozenset({1})
    assert len(s) == 1
    assert list(s) == [1]


def test_orset_leaves_no_tombstones_after_many_cycles() -> None:
    s = crdt.ORSet("a").merge(crdt.ORSet("b").merge(crdt.ORSet("b")))
    other = crdt.ORSet("b")
    other.add("seed")
    s = s.merge(other)
    for _ in range(100_000):
        s.add("x")
        s.remove("x")
    assert s.context_size == 2  # one version-vector entry per replica, no dot cloud
    assert len(json.dumps(s.to_dict())) < 400
    # and a peer that missed every cycle converges to the same small state
    assert other.merge(s) == s.merge(other)


def test_ormap_keys_leave_no_tombstones_either() -> None:
    m = crdt.ORMap("a", crdt.GCounter)
    for i in range(5_000):
        m.update(f"k{i % 3}", lambda c: c.increment(1))
        m.remove(f"k{i % 3}")
    assert len(m) == 0
    assert m.context_size == 1
    assert len(json.dumps(m.to_dict())) < 400


def test_orset_remove_of_absent_element_is_an_empty_delta() -> None:
    s = crdt.ORSet("a")
    delta = s.remove("nothing")
    assert delta == crdt.ORSet("z")


# --- maps ----------------------------------------------------------------------------------


def test_lww_map_set_remove_and_tombstones(clock: VirtualClock) -> None:
    a = crdt.LWWMap("a", clock=clock)
    b = crdt.LWWMap("b", clock=clock)
    a.set("k", 1)
    b = b.merge(a)
    clock.advance(1)
    b.remove("k")
    clock.advance(1)
    a.set("other", {"x": [1]})
    merged = a.merge(b)
    assert "k" not in merged
    assert merged.get("k") is None
    assert merged.value == {"other": {"x": [1]}}
    assert merged.keys() == ["other"]
    assert len(merged) == 1
    # a write newer than the removal brings the key back
    clock.advance(1)
    a.set("k", 2)
    assert b.merge(a).get("k") == 2
    assert a.remove("absent") == crdt.LWWMap("z")


def test_ormap_merges_per_key_and_update_wins_over_concurrent_remove(
    clock: VirtualClock,
) -> None:
    a = crdt.ORMap("a", crdt.PNCounter, clock=clock)
    a.update("likes", lambda c: c.increment(2))
    b = crdt.ORMap("b", crdt.PNCounter, clock=clock).merge(a)
    a.remove("likes")
    b.update("likes", lambda c: c.increment(1))
    merged = a.merge(b)
    assert merged == b.merge(a)
    # observed-remove: a's removal cancels the +2 it saw; b's concurrent +1 survives
    assert merged.value == {"likes": 1}
    # a removal that has seen every update removes the key everywhere
    merged.remove("likes")
    assert "likes" not in b.merge(merged)
    assert b.merge(merged).value == {}


def test_ormap_concurrent_updates_of_one_key_join_by_the_value_type() -> None:
    a = crdt.ORMap("a", crdt.MVRegister)
    b = crdt.ORMap("b", crdt.MVRegister)
    a.update("title", lambda r: r.set("Draft A"))
    b.update("title", lambda r: r.set("Draft B"))
    merged = a.merge(b)
    assert sorted(merged["title"].values) == ["Draft A", "Draft B"]
    merged.update("title", lambda r: r.set("Final"))
    assert merged.merge(a).merge(b).value == {"title": "Final"}


def test_ormap_recreated_key_never_reuses_nested_dots() -> None:
    """A removes a set-valued key and re-creates it while C, not having seen the removal,
    updates it: A's new element and C's new element both survive; the elements A removed
    (with the key) stay removed."""
    a = crdt.ORMap("A", crdt.ORSet)
    a.update("k", lambda s: (s.add("x1"), s.add("x2"), s.add("x3")))
    c = crdt.ORMap("C", crdt.ORSet).merge(a)
    a.remove("k")
    a.update("k", lambda s: s.add("y"))
    c.update("k", lambda s: s.add("z"))
    assert a.merge(c).value == c.merge(a).value == {"k": {"y", "z"}}
    assert a.context_size == 1  # the map's counter skipped ahead without leaving a dot cloud


def test_ormap_get_returns_a_copy_and_nested_maps_work(clock: VirtualClock) -> None:
    doc = crdt.ORMap("a", crdt.ORMap, clock=clock)
    doc.update("section", lambda s: s.update("p1", lambda r: r.set("text")))
    inner = doc.get("section")
    assert inner is not None
    inner.update("p1", lambda r: r.set("changed outside"))
    assert doc.value == {"section": {"p1": "text"}}
    assert doc.get("missing") is None
    with pytest.raises(KeyError):
        doc["missing"]
    back = crdt.from_dict(json.loads(json.dumps(doc.to_dict())))
    assert back == doc
    assert back.value == doc.value


def test_ormap_set_merges_a_crdt_into_a_key() -> None:
    counter = crdt.GCounter("elsewhere")
    counter.increment(4)
    m = crdt.ORMap("a", crdt.GCounter)
    delta = m.set("views", counter)
    m.update("views", lambda c: c.increment(1))
    assert m["views"].value == 5
    assert crdt.ORMap("b", crdt.GCounter).merge(delta)["views"].value == 4
    assert m.set("views", counter)["views"].value == 5  # joining what is there: no double count
    with pytest.raises(TypeError):
        m.set("views", crdt.PNCounter("x"))
    with pytest.raises(CRDTError):
        m.set("views", 3)  # type: ignore[arg-type]


def test_ormap_value_type_must_be_a_crdt() -> None:
    with pytest.raises(CRDTError):
        crdt.ORMap("a", dict)  # type: ignore[arg-type]


# --- equality, purity, types ---------------------------------------------------------------


def test_equality_compares_state_not_replica_id() -> None:
    a, b = crdt.ORSet("a"), crdt.ORSet("b")
    assert a == b
    a.add(1)
    assert a != b
    assert b.merge(a) == a
    assert b.merge(a).replica == "b"
    assert crdt.GCounter("a") != crdt.PNCounter("a")
    with pytest.raises(TypeError):
        hash(a)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (crdt.GCounter("a"), crdt.PNCounter("a")),
        (crdt.ORSet("a"), crdt.ORMap("a")),
        (crdt.LWWRegister("a"), crdt.MVRegister("a")),
        (crdt.LWWMap("a"), crdt.ORMap("a")),
    ],
)
def test_merging_two_different_types_is_a_type_error(left: Any, right: Any) -> None:
    with pytest.raises(TypeError, match="cannot merge"):
        left.merge(right)


def test_merge_does_not_change_its_inputs() -> None:
    a, b = crdt.ORSet("a"), crdt.ORSet("b")
    a.add(1)
    b.add(1)
    b.add(2)
    before = (copy.deepcopy(a.to_dict()), copy.deepcopy(b.to_dict()))
    merged = a.merge(b)
    merged.remove(1)
    merged.add(3)
    assert (a.to_dict(), b.to_dict()) == before


# --- JSON safety on mutation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [(1, 2), {1: "x"}, float("nan"), math.inf, object(), b"bytes", {"k": {3}}]
)
def test_register_and_map_values_must_be_json_safe(value: Any, clock: VirtualClock) -> None:
    r = crdt.LWWRegister("a", clock=clock)
    m = crdt.LWWMap("a", clock=clock)
    with pytest.raises(CRDTError, match="JSON-safe"):
        r.set(value)
    with pytest.raises(CRDTError, match="JSON-safe"):
        m.set("k", value)
    with pytest.raises(CRDTError, match="JSON-safe"):
        crdt.MVRegister("a").set(value)
    assert r.value is None
    assert m.value == {}


@pytest.mark.parametrize("element", [[1], (1,), {"a": 1}, float("nan"), b"x"])
def test_set_elements_and_map_keys_must_be_json_scalars(element: Any) -> None:
    s = crdt.ORSet("a")
    with pytest.raises(CRDTError, match="JSON scalar"):
        s.add(element)
    with pytest.raises(CRDTError, match="JSON scalar"):
        crdt.LWWMap("a").set(element, 1)
    with pytest.raises(CRDTError, match="JSON scalar"):
        crdt.ORMap("a").update(element, lambda r: r.set(1))
    assert s == crdt.ORSet("b")


@pytest.mark.parametrize("replica", ["", None, 3])
def test_replica_id_must_be_a_non_empty_str(replica: Any) -> None:
    with pytest.raises(CRDTError, match="replica"):
        crdt.GCounter(replica)


# --- from_dict on bad data -----------------------------------------------------------------


def _sample() -> crdt.ORSet:
    s = crdt.ORSet("a")
    s.add("x")
    s.add("y")
    s.remove("y")
    return s


def test_crdt_error_is_a_resilience_error() -> None:
    assert issubclass(CRDTError, ResilienceError)


def test_from_dict_rejects_an_edit_without_a_matching_checksum() -> None:
    d = _sample().to_dict()
    d["state"]["entries"][0][0] = "z"
    with pytest.raises(CRDTError, match="altered"):
        crdt.from_dict(d)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d["state"]["entries"][0][1].append(["a", 99]), id="dot-beyond-cc"),
        pytest.param(lambda d: d["state"]["cc"]["vv"].update(a=-1), id="negative-vv"),
        pytest.param(lambda d: d["state"]["cc"].update(vv=[]), id="vv-not-object"),
        pytest.param(lambda d: d["state"].update(extra=1), id="extra-field"),
        pytest.param(lambda d: d["state"]["entries"].append(["x", [["a", 1]]]), id="dup-elem"),
        pytest.param(lambda d: d["state"]["entries"][0].__setitem__(0, [1]), id="list-elem"),
        pytest.param(lambda d: d["state"]["entries"][0][1].__setitem__(0, ["a", True]), id="bool"),
        pytest.param(lambda d: d["state"]["entries"][0].__setitem__(1, []), id="no-dots"),
        pytest.param(lambda d: d.update(state=None), id="state-null"),
        pytest.param(lambda d: d.update(type="GCounter"), id="wrong-type-tag"),
        pytest.param(lambda d: d.update(type="Sequence"), id="unknown-type"),
        pytest.param(lambda d: d.update(replica=""), id="empty-replica"),
    ],
)
def test_from_dict_rejects_inconsistent_data_even_with_a_valid_checksum(edit: Any) -> None:
    d = _sample().to_dict()
    edit(d)
    with pytest.raises(CRDTError):
        crdt.from_dict(reseal(d))


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "ORSet",
        {},
        {"type": "ORSet", "state": {}},
        {"format": "other-lib", "v": 1},
        {"format": "resilience.crdt", "v": "1"},
        {"format": "resilience.crdt", "v": 0},
    ],
)
def test_from_dict_rejects_foreign_data(data: Any) -> None:
    with pytest.raises(CRDTError):
        crdt.from_dict(data)


def test_from_dict_rejects_absurdly_deep_data() -> None:
    d = crdt.LWWRegister("a").to_dict()
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    d["state"]["value"] = deep
    with pytest.raises(CRDTError):
        crdt.from_dict(d)


def test_from_dict_rejects_a_future_version_with_advice() -> None:
    d = _sample().to_dict()
    d["v"] = 2
    with pytest.raises(CRDTError, match="newer release"):
        crdt.from_dict(reseal(d))


@pytest.mark.parametrize("kind", ["GCounter", "PNCounter", "LWWRegister", "LWWMap", "ORMap"])
def test_from_dict_rejects_bad_states_of_every_type(kind: str, clock: VirtualClock) -> None:
    objects: dict[str, crdt.CRDT] = {
        "GCounter": crdt.GCounter("a"),
        "PNCounter": crdt.PNCounter("a"),
        "LWWRegister": crdt.LWWRegister("a", clock=clock),
        "LWWMap": crdt.LWWMap("a", clock=clock),
        "ORMap": crdt.ORMap("a", clock=clock),
    }
    good = objects[kind].to_dict()
    for state in ({}, {"counts": {"a": 0}}, {"p": {"a": "1"}, "n": {}}, {"ts": [1, 2], "value": 3},
                  {"ts": None, "value": 3}, {"entries": [["k", [1, 2, "a"], "yes", 1]]},
                  {"value_type": "Nope", "entries": [], "cc": {"vv": {}, "cloud": []}},
                  {"value_type": "LWWRegister", "entries": [["k", [["a", 1, {}]]]],
                   "cc": {"vv": {"a": 1}, "cloud": []}}):  # fmt: skip
        bad = dict(good, state=state)
        with pytest.raises(CRDTError):
            crdt.from_dict(reseal(bad))


def test_from_dict_restores_a_usable_object(clock: VirtualClock) -> None:
    m = crdt.LWWMap("a", clock=clock)
    m.set("k", 1)
    back = crdt.from_dict(m.to_dict(), clock=clock)
    assert isinstance(back, crdt.LWWMap)
    clock.advance(1)
    back.set("k", 2)
    assert m.merge(back).get("k") == 2


# --- packaging -----------------------------------------------------------------------------


def test_import_resilience_does_not_load_crdt() -> None:
    code = "import sys, resilience; print('resilience.crdt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_names() -> None:
    for name in ("GCounter", "PNCounter", "LWWRegister", "MVRegister", "ORSet", "LWWMap",
                 "ORMap", "from_dict", "HybridLogicalClock", "Replicator"):  # fmt: skip
        assert name in crdt.__all__
        assert hasattr(crdt, name)
    assert crdt.__all__ == sorted(crdt.__all__, key=str)
