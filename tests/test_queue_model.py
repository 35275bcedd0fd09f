"""A stateful hypothesis test of OfflineQueue against a plain-Python model.

Any interleaving of puts, leases (ended cleanly, by an error, or abandoned until their
visibility expires), acks and nacks keeps the queue equal to the model, leases hand out items
in (priority, seq) order, and a final drain delivers every live item exactly once, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from resilience.queue import Item, Lease, OfflineQueue, Priority
from resilience.testing import VirtualClock

MAX_ATTEMPTS = 3
VISIBILITY = 10.0


@dataclass
class Row:
    rank: int
    payload: Any
    key: str | None
    attempts: int = 0
    state: str = "ready"  # ready | leased | dead
    lease: int | None = None
    until: float = 0.0


@dataclass
class Held:
    lease: Lease
    token: int
    queue: OfflineQueue
    seqs: list[int] = field(default_factory=list)


priorities = st.sampled_from(list(Priority))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
keys = st.none() | st.sampled_from(["k1", "k2", "k3", "k4"])


class QueueMachine(RuleBasedStateMachine):
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, Row] = {}
        self.tokens = 0

    @initialize()
    def open(self) -> None:
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        self.path = str(Path(self.dir.name) / "q.db")
        self.clock = VirtualClock()
        self.q = OfflineQueue(self.path, clock=self.clock, max_attempts=MAX_ATTEMPTS)
        self.q._db.execute("PRAGMA synchronous=OFF")  # speed: durability is tested elsewhere
        self.q._durable = True

    def teardown(self) -> None:
        if not hasattr(self, "q"):
            return
        try:
            # Every lease expires; one drain then delivers every live item once, in order.
            self.clock.advance(VISIBILITY)
            expected = self.ready_order()
            assert len(expected) == sum(r.state != "dead" for r in self.rows.values())
            sent: list[int] = []
            self.q.drain(lambda item: sent.append(item.seq), batch=3)
            assert sent == expected
            assert len(self.q) == 0
        finally:
            self.q.close()
            self.dir.cleanup()

    # --- the model's view -----------------------------------------------------------------

    def available(self, row: Row) -> bool:
        """Ready, or leased with the lease expired. An expired lease keeps its items (it
        can still settle them) until another lease takes them over."""
        return row.state == "ready" or (row.state == "leased" and row.until <= self.clock.time())

    def ready_order(self) -> list[int]:
        return sorted(
            (s for s, r in self.rows.items() if self.available(r)),
            key=lambda s: (self.rows[s].rank, s),
        )

    def key_seq(self, key: str | None) -> int | None:
        if key is None:
            return None
        return next((s for s, r in self.rows.items() if r.key == key), None)

    def fail(self, seq: int) -> None:
        row = self.rows[seq]
        row.attempts += 1
        row.lease = None
        row.state = "dead" if row.attempts >= MAX_ATTEMPTS else "ready"

    # --- rules ----------------------------------------------------------------------------

    @rule(payload=json_values, priority=priorities, key=keys)
    def put(self, payload: Any, priority: Priority, key: str | None) -> None:
        existing = self.key_seq(key)
        seq = self.q.put(payload, priority=priority, key=key)
        if existing is not None:
            assert seq == existing
        else:
            assert all(seq > s for s in self.rows)
            self.rows[seq] = Row(3 - int(priority), payload, key)

    @rule(entries=st.lists(st.tuples(json_values, priorities, keys), min_size=1, max_size=5))
    def put_many(self, entries: list[tuple[Any, Priority, str | None]]) -> None:
        seqs = self.q.put_many(entries)
        for seq, (payload, priority, key) in zip(seqs, entries, strict=True):
            existing = self.key_seq(key)
            if existing is not None:
                assert seq == existing
            else:
                self.rows[seq] = Row(3 - int(priority), payload, key)

    @rule(target=leases, n=st.integers(1, 6))
    def lease(self, n: int) -> Held:
        expected = self.ready_order()[:n]
        lease = self.q.lease(n=n, visibility=VISIBILITY)
        items: list[Item] = lease.__enter__()
        assert [i.seq for i in items] == expected
        self.tokens += 1
        for item in items:
            row = self.rows[item.seq]
            assert (item.payload, item.attempts, item.key) == (row.payload, row.attempts, row.key)
            assert 3 - int(item.priority) == row.rank
            row.state, row.lease, row.until = "leased", self.tokens, self.clock.time() + VISIBILITY
        return Held(lease, self.tokens, self.q, expected)

    def still_held(self, held: Held) -> list[int]:
        # An expired lease still settles its items until another lease reclaims them.
        return [
            s
            for s in held.seqs
            if s in self.rows
            and self.rows[s].state == "leased"
            and self.rows[s].lease == held.token
        ]

    @rule(held=consumes(leases))
    def lease_exits_cleanly(self, held: Held) -> None:
        if held.queue is not self.q:
            return  # taken before a reopen: abandoned, it expires
        mine = self.still_held(held)
        held.lease.__exit__(None, None, None)
        for s in mine:
            del self.rows[s]

    @rule(held=consumes(leases))
    def lease_exits_with_error(self, held: Held) -> None:
        if held.queue is not self.q:
            return
        mine = self.still_held(held)
        err = RuntimeError("boom")
        held.lease.__exit__(RuntimeError, err, None)
        for s in mine:
            self.fail(s)

    @rule(data=st.data())
    @precondition(lambda self: bool(self.rows))
    def ack(self, data: st.DataObject) -> None:
        seqs = data.draw(st.lists(st.sampled_from(sorted(self.rows)), max_size=3, unique=True))
        live = [s for s in seqs if self.rows[s].state != "dead"]
        assert self.q.ack(seqs) == len(live)
        for s in live:
            del self.rows[s]

    @rule(data=st.data())
    @precondition(lambda self: bool(self.rows))
    def nack(self, data: st.DataObject) -> None:
        seqs = data.draw(st.lists(st.sampled_from(sorted(self.rows)), max_size=3, unique=True))
        live = [s for s in seqs if self.rows[s].state != "dead"]
        before = sum(r.state == "dead" for r in self.rows.values())
        for s in live:
            self.fail(s)
        after = sum(r.state == "dead" for r in self.rows.values())
        assert self.q.nack(seqs) == after - before

    @rule(seconds=st.sampled_from([1.0, 5.0, VISIBILITY]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def requeue_dead(self) -> None:
        dead = [s for s, r in self.rows.items() if r.state == "dead"]
        assert self.q.requeue_dead() == len(dead)
        for s in dead:
            self.rows[s].state, self.rows[s].attempts = "ready", 0

    @rule()
    def reopen(self) -> None:
        """Close and reopen the file: the state is all in it (open leases included)."""
        self.q.close()
        self.q = OfflineQueue(self.path, clock=self.clock, max_attempts=MAX_ATTEMPTS)
        self.q._db.execute("PRAGMA synchronous=OFF")
        self.q._durable = True

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def counts_match(self) -> None:
        if not hasattr(self, "q"):
            return
        live = [r for r in self.rows.values() if r.state != "dead"]
        stats = self.q.stats()
        assert len(self.q) == len(live) == stats.depth
        assert stats.dead_letters == sum(r.state == "dead" for r in self.rows.values())
        for p in Priority:
            assert stats.by_priority[p.name] == sum(r.rank == 3 - int(p) for r in live)
        assert [d.seq for d in self.q.dead_letters()] == sorted(
            s for s, r in self.rows.items() if r.state == "dead"
        )
        assert [i.seq for i in self.q.items()] == sorted(
            s for s, r in self.rows.items() if r.state != "dead"
        )

    @rule(batch=st.integers(1, 4))
    def drain(self, batch: int) -> None:
        expected = self.ready_order()
        sent: list[int] = []
        report = self.q.drain(lambda item: sent.append(item.seq), batch=batch)
        assert sent == expected
        assert report.delivered == len(expected)
        for s in sent:
            del self.rows[s]
        assert report.remaining == sum(r.state != "dead" for r in self.rows.values())


QueueMachine.TestCase.settings = settings(stateful_step_count=30, deadline=None)
test_queue_model = QueueMachine.TestCase


def test_final_drain_delivers_everything_once_in_order(tmp_path: Path) -> None:
    """The drain half of the model law, on a random-looking but fixed history."""
    import random

    rng = random.Random(7)
    clock = VirtualClock()
    q = OfflineQueue(str(tmp_path / "q.db"), clock=clock, max_attempts=MAX_ATTEMPTS)
    for i in range(300):
        q.put(i, priority=Priority(rng.randrange(4)))
        if rng.random() < 0.2:
            with q.lease(n=rng.randrange(1, 4)):
                pass
    expected = [(i.priority, i.seq) for i in q.items()]
    expected.sort(key=lambda t: (-int(t[0]), t[1]))
    sent: list[tuple[Priority, int]] = []
    q.drain(lambda item: sent.append((item.priority, item.seq)), batch=9)
    assert sent == expected
