"""Grow-only and up-down counters."""

from __future__ import annotations

from typing import Any, Self

from ._base import (
    CRDT,
    Intake,
    _amount,
    check_replica,
    want_counts,
    want_dict,
)

__all__ = ["GCounter", "PNCounter"]


def _join_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    get = out.get
    for replica, n in b.items():
        if n > get(replica, 0):
            out[replica] = n
    return out


# --- counters ------------------------------------------------------------------------------


class GCounter(CRDT):
    """A grow-only counter: one count per replica; the value is their sum.

    Example:
        >>> a, b = GCounter("a"), GCounter("b")
        >>> _ = a.increment(2); _ = b.increment(3)
        >>> a.merge(b).value
        5
    """

    TYPE = "GCounter"
    __slots__ = ("_counts",)

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._counts: dict[str, int] = {}

    @classmethod
    def _make(cls, replica: str, counts: dict[str, int]) -> Self:
        obj = cls.__new__(cls)
        obj.replica = replica
        obj._counts = counts
        return obj

    def increment(self, n: int = 1) -> Self:
        """Add `n` (an int >= 0); returns the delta.

        Raises:
            CRDTError: `n` is not an int >= 0.
        """
        if _amount(n) == 0:
            return self._make(self.replica, {})
        total = self._counts.get(self.replica, 0) + n
        self._counts[self.replica] = total
        return self._make(self.replica, {self.replica: total})

    @property
    def value(self) -> int:
        """The sum of every replica's count."""
        return sum(self._counts.values())

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the per-replica counts."""
        return dict(self._counts)

    def _join(self, other: Self) -> Self:
        return self._make(self.replica, _join_counts(self._counts, other._counts))

    def _state_eq(self, other: Self) -> bool:
        return self._counts == other._counts

    def _state(self) -> dict[str, Any]:
        return {"counts": dict(self._counts)}

    _PER_REPLICA = True

    def _contribution(self, replica: str) -> Self:
        n = self._counts.get(replica)
        return self._make(self.replica, {} if n is None else {replica: n})

    @classmethod
    def _from_state(cls, state: Any, replica: str, intake: Intake) -> Self:
        body = want_dict(state, "state", {"counts"})
        intake.count(len(body["counts"]) if type(body["counts"]) is dict else 0, "state")
        top = intake.limits.max_counter
        return cls._make(replica, want_counts(body["counts"], "state.counts", top))


class PNCounter(CRDT):
    """A counter that goes up and down: two grow-only counters, increments minus decrements.

    Example:
        >>> c = PNCounter("a")
        >>> _ = c.increment(5); _ = c.decrement(2)
        >>> c.value
        3
    """

    TYPE = "PNCounter"
    __slots__ = ("_n", "_p")

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._p: dict[str, int] = {}
        self._n: dict[str, int] = {}

    @classmethod
    def _make(cls, replica: str, p: dict[str, int], n: dict[str, int]) -> Self:
        obj = cls.__new__(cls)
        obj.replica = replica
        obj._p = p
        obj._n = n
        return obj

    def increment(self, n: int = 1) -> Self:
        """Add `n` (an int >= 0); returns the delta."""
        if _amount(n) == 0:
            return self._make(self.replica, {}, {})
        total = self._p.get(self.replica, 0) + n
        self._p[self.replica] = total
        return self._make(self.replica, {self.replica: total}, {})

    def decrement(self, n: int = 1) -> Self:
        """Subtract `n` (an int >= 0); returns the delta."""
        if _amount(n) == 0:
            return self._make(self.replica, {}, {})
        total = self._n.get(self.replica, 0) + n
        self._n[self.replica] = total
        return self._make(self.replica, {}, {self.replica: total})

    @property
    def value(self) -> int:
        """Increments minus decrements, over every replica."""
        return sum(self._p.values()) - sum(self._n.values())

    def _join(self, other: Self) -> Self:
        return self._make(
            self.replica, _join_counts(self._p, other._p), _join_counts(self._n, other._n)
        )

    def _state_eq(self, other: Self) -> bool:
        return self._p == other._p and self._n == other._n

    def _state(self) -> dict[str, Any]:
        return {"p": dict(self._p), "n": dict(self._n)}

    _PER_REPLICA = True

    def _contribution(self, replica: str) -> Self:
        p, n = self._p.get(replica), self._n.get(replica)
        return self._make(
            self.replica, {} if p is None else {replica: p}, {} if n is None else {replica: n}
        )

    @classmethod
    def _from_state(cls, state: Any, replica: str, intake: Intake) -> Self:
        body = want_dict(state, "state", {"p", "n"})
        for part in ("p", "n"):
            intake.count(len(body[part]) if type(body[part]) is dict else 0, "state")
        top = intake.limits.max_counter
        return cls._make(
            replica,
            want_counts(body["p"], "state.p", top),
            want_counts(body["n"], "state.n", top),
        )
