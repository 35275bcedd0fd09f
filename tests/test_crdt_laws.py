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
        assert back.value == state.value
        assert back.replica == state.replica
        assert crdt.from_dict(wire, replica="elsewhere") == state
