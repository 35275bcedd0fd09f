"""Hypothesis strategies for resilience.crdt: random histories of operations on a few
replicas (mutations interleaved with merges), which yield realistic states of every type.

A history is a list of steps: ("op", replica index, operation) or ("sync", i, j) (replica i
merges replica j's state). `run` replays it on fresh replicas and checks, on every mutation,
that the returned delta merged into the pre-mutation state gives the mutated state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from resilience import crdt
from resilience.testing import VirtualClock

REPLICAS = ("r0", "r1", "r2")

elements = st.one_of(st.integers(0, 3), st.sampled_from([True, False, 1.0, "1"]))
values = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(["a", "b", "", "é"]),
    st.none(),
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.sampled_from(["x", "y"]), st.booleans(), max_size=2),
)
keys = st.sampled_from(["p1", "p2", 3, 1, True, 1.0])  # 1, True and 1.0: three keys


@dataclass(frozen=True)
class Kind:
    """One CRDT type under test: how to build a replica and which operations to draw."""

    name: str
    make: Callable[[str, VirtualClock], crdt.CRDT]
    ops: st.SearchStrategy[tuple[Any, ...]]

    def apply(self, obj: Any, op: tuple[Any, ...]) -> crdt.CRDT:
        name, *args = op
        if name == "inc":
            return obj.increment(*args)  # type: ignore[no-any-return]
        if name == "dec":
            return obj.decrement(*args)  # type: ignore[no-any-return]
        if name == "set":
            return obj.set(*args)  # type: ignore[no-any-return]
        if name == "add":
            return obj.add(*args)  # type: ignore[no-any-return]
        if name == "remove":
            return obj.remove(*args)  # type: ignore[no-any-return]
        if name == "update":
            key, inner = args
            return obj.update(key, lambda v: self.apply_inner(v, inner))  # type: ignore[no-any-return]
        raise AssertionError(op)

    def apply_inner(self, value: Any, op: tuple[Any, ...]) -> object:
        return self.apply(value, op)


def _ops(*alternatives: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.one_of(*alternatives)


KINDS: dict[str, Kind] = {
    "GCounter": Kind(
        "GCounter", lambda r, c: crdt.GCounter(r), st.tuples(st.just("inc"), st.integers(0, 4))
    ),
    "PNCounter": Kind(
        "PNCounter",
        lambda r, c: crdt.PNCounter(r),
        st.tuples(st.sampled_from(["inc", "dec"]), st.integers(0, 4)),
    ),
    "LWWRegister": Kind(
        "LWWRegister",
        lambda r, c: crdt.LWWRegister(r, clock=c),
        st.tuples(st.just("set"), values),
    ),
    "MVRegister": Kind(
        "MVRegister", lambda r, c: crdt.MVRegister(r), st.tuples(st.just("set"), values)
    ),
    "ORSet": Kind(
        "ORSet",
        lambda r, c: crdt.ORSet(r),
        st.tuples(st.sampled_from(["add", "remove"]), elements),
    ),
    "LWWMap": Kind(
        "LWWMap",
        lambda r, c: crdt.LWWMap(r, clock=c),
        _ops(st.tuples(st.just("set"), keys, values), st.tuples(st.just("remove"), keys)),
    ),
    "ORMap[LWWRegister]": Kind(
        "ORMap[LWWRegister]",
        lambda r, c: crdt.ORMap(r, crdt.LWWRegister, clock=c),
        _ops(
            st.tuples(st.just("update"), keys, st.tuples(st.just("set"), values)),
            st.tuples(st.just("remove"), keys),
        ),
    ),
    "ORMap[MVRegister]": Kind(
        "ORMap[MVRegister]",
        lambda r, c: crdt.ORMap(r, crdt.MVRegister, clock=c),
        _ops(
            st.tuples(st.just("update"), keys, st.tuples(st.just("set"), values)),
            st.tuples(st.just("remove"), keys),
        ),
    ),
    "ORMap[ORSet]": Kind(
        "ORMap[ORSet]",
        lambda r, c: crdt.ORMap(r, crdt.ORSet, clock=c),
        _ops(
            st.tuples(
                st.just("update"),
                keys,
                st.tuples(st.sampled_from(["add", "remove"]), elements),
            ),
            st.tuples(st.just("remove"), keys),
        ),
    ),
    "ORMap[GCounter]": Kind(
        "ORMap[GCounter]",
        lambda r, c: crdt.ORMap(r, crdt.GCounter, clock=c),
        _ops(
            st.tuples(st.just("update"), keys, st.tuples(st.just("inc"), st.integers(0, 3))),
            st.tuples(st.just("remove"), keys),
        ),
    ),
    "ORMap[PNCounter]": Kind(
        "ORMap[PNCounter]",
        lambda r, c: crdt.ORMap(r, crdt.PNCounter, clock=c),
        _ops(
            st.tuples(
                st.just("update"),
                keys,
                st.tuples(st.sampled_from(["inc", "dec"]), st.integers(0, 3)),
            ),
            st.tuples(st.just("remove"), keys),
        ),
    ),
}


def histories(kind: Kind, max_steps: int = 25) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Mutations on random replicas, merges between them, and clock moves (0 included, so
    hybrid-logical-clock counters and replica-id tie breaks are exercised)."""
    n = len(REPLICAS)
    op = st.tuples(st.just("op"), st.integers(0, n - 1), kind.ops)
    step = st.one_of(
        op,
        op,
        op,  # mutations are the interesting part: three times as likely
        st.tuples(st.just("sync"), st.integers(0, n - 1), st.integers(0, n - 1)),
        st.tuples(st.just("tick"), st.sampled_from([0.0, 0.0005, 0.001, 1.0])),
    )
    return st.lists(step, min_size=3, max_size=max_steps)


def run(kind: Kind, history: list[tuple[Any, ...]]) -> list[Any]:
    """Replay `history`; returns each replica's final state.

    Checks the delta law on every mutation: pre-state merged with the delta == post-state.
    """
    clock = VirtualClock()
    states = [kind.make(r, clock) for r in REPLICAS]
    for step in history:
        if step[0] == "tick":
            clock.advance(step[1])
        elif step[0] == "sync":
            _, i, j = step
            states[i] = states[i].merge(states[j])
        else:
            _, i, op = step
            before = states[i].copy()
            delta = kind.apply(states[i], op)
            assert type(delta) is type(states[i])
            assert before.merge(delta) == states[i], (op, before, delta, states[i])
    return states
