"""Join laws for every CRDT type, on states built by random histories (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt_strategies import KINDS, histories, run
from resilience import crdt

KIND_NAMES = sorted(KINDS)


def _render(x: Any) -> Any:
    """The value, with keys kept apart by type (a Python dict or set would merge 1 and True)."""
    if isinstance(x, crdt.LWWMap):
        return sorted(repr((k, x.get(k))) for k in x)
    if isinstance(x, crdt.ORMap):
        return sorted(repr((k, _render(x[k]))) for k in x)
    if isinstance(x, crdt.ORSet):
        return sorted(map(repr, x))
    return x.value


def _snapshot(x: Any) -> str:
    return json.dumps(x.to_dict(), sort_keys=True)


@pytest.mark.parametrize("name", KIND_NAMES)
@given(data=st.data())
def test_merge_is_commutative_associative_idempotent(name: str, data: st.DataObject) -> None:
    kind = KINDS[name]
    a, b, c = run(kind, data.draw(histories(kind), label="history"))
    snapshots = [_snapshot(x) for x in (a, b, c)]

    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert a.merge(b).merge(b) == a.merge(b)
    # merge is pure: the inputs are unchanged
    assert [_snapshot(x) for x in (a, b, c)] == snapshots
    # the join is an upper bound: merging either input into it changes nothing
    joined = a.merge(b)
    assert joined.merge(a) == joined
    assert b.merge(joined) == joined


@pytest.mark.parametrize("name", KIND_NAMES)
@given(data=st.data())
def test_deltas_from_two_histories_merge_like_states(name: str, data: st.DataObject) -> None:
    """Deltas are states: collecting every delta of one replica and merging them, in any
    order, into another replica gives the same state as merging the full state."""
    kind = KINDS[name]
    history = data.draw(histories(kind), label="history")
    # record every delta produced by replica 0 (run() checks the delta law on each)
    from resilience.testing import VirtualClock

    clock = VirtualClock()
    source = kind.make("r0", clock)
    deltas = []
    for step in history:
        if step[0] == "op" and step[1] == 0:
            deltas.append(kind.apply(source, step[2]))
        elif step[0] == "tick":
            clock.advance(step[1])
    order = data.draw(st.permutations(range(len(deltas))), label="order")
    target = kind.make("r1", clock)
    for i in order:
        target = target.merge(deltas[i])
        target = target.merge(deltas[i])  # duplicates are harmless
    assert target == kind.make("r1", clock).merge(source)


@pytest.mark.parametrize("name", KIND_NAMES)
@given(data=st.data())
def test_to_dict_round_trips_through_json(name: str, data: st.DataObject) -> None:
    kind = KINDS[name]
    for state in run(kind, data.draw(histories(kind), label="history")):
        wire = json.loads(json.dumps(state.to_dict(), allow_nan=False))
        back = crdt.from_dict(wire)
        assert back == state
        assert _render(back) == _render(state)
        assert back.replica == state.replica
        assert crdt.from_dict(wire, replica="elsewhere") == state


# --- ORMap of counters under remove / re-create, against a reference model ---------------


class CounterMapModel:
    """The documented semantics of a counter inside an ORMap, written from events.

    Each replica holds the set of events it has seen (a sync copies the other's set). An
    increment by replica r records its amount and its *base*: r's own increments live in r's
    view of the key at that moment (the contribution r carries forward). A removal records
    the increments live in the remover's view (what it observed). In a view, an increment is
    live if no removal observed it, or if a live increment of the same replica carried it
    forward (a replica's concurrent update keeps its whole contribution). A key's value is
    the sum of its live increments; it is present while it has any.
    """

    def __init__(self, replicas: int) -> None:
        self.events: dict[int, tuple[str, int, Any, int, frozenset[int]]] = {}
        self.views: list[set[int]] = [set() for _ in range(replicas)]

    def live(self, view: set[int], key: Any) -> set[int]:
        incs = {e for e in view if self.events[e][0] == "inc" and _same(self.events[e][2], key)}
        observed: set[int] = set()
        for e in view:
            kind, _, k, _, seen = self.events[e]
            if kind == "rem" and _same(k, key):
                observed |= seen
        live = incs - observed
        stack = list(live)
        while stack:
            for base in self.events[stack.pop()][4]:
                if base not in live:
                    live.add(base)
                    stack.append(base)
        return live

    def inc(self, i: int, key: Any, amount: int) -> None:
        view = self.views[i]
        base = frozenset(e for e in self.live(view, key) if self.events[e][1] == i)
        self._add(i, ("inc", i, key, amount, base))

    def remove(self, i: int, key: Any) -> None:
        self._add(i, ("rem", i, key, 0, frozenset(self.live(self.views[i], key))))

    def _add(self, i: int, event: tuple[str, int, Any, int, frozenset[int]]) -> None:
        eid = len(self.events)
        self.events[eid] = event
        self.views[i].add(eid)

    def sync(self, i: int, j: int) -> None:
        self.views[i] |= self.views[j]

    def value(self, i: int) -> list[tuple[str, Any, int]]:
        view = self.views[i]
        keys = {(type(self.events[e][2]).__name__, self.events[e][2]) for e in view}
        out = []
        for _, key in keys:
            live = self.live(view, key)
            if live:
                out.append((type(key).__name__, key, sum(self.events[e][3] for e in live)))
        return sorted(out, key=repr)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _observed(m: Any) -> list[tuple[str, Any, int]]:
    return sorted(((type(k).__name__, k, m[k].value) for k in m), key=repr)


counter_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("inc"), st.integers(0, 2), st.sampled_from(["k", 1, True]), st.integers(-2, 3)
        ),
        st.tuples(st.just("remove"), st.integers(0, 2), st.sampled_from(["k", 1, True])),
        st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2)),
    ),
    max_size=30,
)


@pytest.mark.parametrize("counter", [crdt.GCounter, crdt.PNCounter])
@given(steps=counter_steps)
def test_ormap_counters_under_remove_and_recreate_match_the_reference_model(
    counter: type[crdt.CRDT], steps: list[tuple[Any, ...]]
) -> None:
    model = CounterMapModel(3)
    states = [crdt.ORMap(f"r{i}", counter) for i in range(3)]
    for step in steps:
        if step[0] == "inc":
            _, i, key, amount = step
            if counter is crdt.GCounter:
                amount = abs(amount)
            if amount >= 0:
                op = lambda c, n=amount: c.increment(n)  # noqa: E731
            else:
                op = lambda c, n=-amount: c.decrement(n)  # noqa: E731
            before = states[i].copy()
            delta = states[i].update(key, op)
            assert before.merge(delta) == states[i]  # the delta law, here too
            model.inc(i, key, amount)
        elif step[0] == "remove":
            _, i, key = step
            states[i].remove(key)
            model.remove(i, key)
        else:
            _, i, j = step
            states[i] = states[i].merge(states[j])
            model.sync(i, j)
        for i in range(3):
            assert _observed(states[i]) == model.value(i), (step, i)


def test_issue_item_3_remove_and_recreate_keeps_the_concurrent_increment() -> None:
    """a counts 5; b (having seen it) adds 1; meanwhile a removes the key and re-creates it
    with +2. Observed-remove: a's removal cancels the 5 it saw; b's +1 and a's +2 stay."""
    for counter in (crdt.GCounter, crdt.PNCounter):
        a = crdt.ORMap("a", counter)
        a.update("k", lambda c: c.increment(5))
        b = crdt.ORMap("b", counter).merge(a)
        b.update("k", lambda c: c.increment(1))
        a.remove("k")
        a.update("k", lambda c: c.increment(2))
        assert a.merge(b).value == b.merge(a).value == {"k": 3}


@given(data=st.data())
def test_orset_absorbing_deltas_in_place_equals_merging_them(data: st.DataObject) -> None:
    """The Replicator merges small ORSet deltas in place (`_absorb`, with a dot index);
    whatever the states and the order, the result is the pure merge's."""
    kind = KINDS["ORSet"]
    history = data.draw(histories(kind), label="history")
    a, b, _ = run(kind, history)
    deltas = []
    source = b.copy()
    for op in data.draw(st.lists(kind.ops, max_size=12), label="ops"):
        deltas.append(kind.apply(source, op))
    order = data.draw(st.permutations(range(len(deltas))), label="order")
    merged, absorbed = a.copy(), a.copy()
    for i in order:
        merged = merged.merge(deltas[i])
        if not absorbed._absorb(deltas[i]):
            absorbed = absorbed.merge(deltas[i])
        assert absorbed == merged
        if data.draw(st.booleans(), label="local op between"):
            op = data.draw(kind.ops, label="local op")
            kind.apply(merged, op)
            kind.apply(absorbed, op)
    assert absorbed == merged
    assert absorbed.merge(source) == merged.merge(source)
