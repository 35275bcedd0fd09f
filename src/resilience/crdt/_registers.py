"""Last-writer-wins and multi-value registers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from .._clock import SYSTEM_CLOCK, Clock
from ._base import (
    CRDT,
    CausalCRDT,
    Dot,
    HybridLogicalClock,
    Intake,
    Timestamp,
    _canonical,
    _check_covered,
    _own,
    add_dot,
    bad,
    cc_join,
    cc_state,
    check_replica,
    check_value,
    compact,
    next_dot,
    parse_cc,
    want_dict,
    want_dot,
    want_list,
    want_value,
)

__all__ = ["LWWRegister", "MVRegister"]


# --- registers -----------------------------------------------------------------------------


def _lww_pick(
    a: tuple[Timestamp, Any] | None, b: tuple[Timestamp, Any] | None
) -> tuple[Timestamp, Any] | None:
    if a is None:
        return b
    if b is None or a is b:
        return a
    if b[0] > a[0]:
        return b
    if b[0] == a[0] and b[1] != a[1] and _canonical(b[1]) > _canonical(a[1]):
        # one timestamp, two values: only forged states get here; pick the same on every side
        return b
    return a


class LWWRegister(CRDT):
    """A last-writer-wins register: the write with the greatest hybrid-logical timestamp
    wins; equal clock readings are broken by replica id, so every replica picks the same.

    Args:
        replica: this replica's id.
        clock: physical time for the timestamps (ignored when `hlc` is given).
        hlc: a HybridLogicalClock to share with other LWW objects of this replica.

    Example:
        >>> from resilience.testing import VirtualClock
        >>> clock = VirtualClock()
        >>> a, b = LWWRegister("a", clock=clock), LWWRegister("b", clock=clock)
        >>> _ = a.set("draft"); clock.advance(1); _ = b.set("final")
        >>> a.merge(b).value
        'final'
    """

    TYPE = "LWWRegister"
    __slots__ = ("_entry", "_hlc")

    def __init__(
        self,
        replica: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        hlc: HybridLogicalClock | None = None,
    ) -> None:
        self.replica = check_replica(replica)
        self._hlc = hlc if hlc is not None else HybridLogicalClock(clock=clock)
        self._entry: tuple[Timestamp, Any] | None = None

    @classmethod
    def _make(
        cls, replica: str, hlc: HybridLogicalClock, entry: tuple[Timestamp, Any] | None
    ) -> Self:
        obj = cls.__new__(cls)
        obj.replica = replica
        obj._hlc = hlc
        obj._entry = entry
        return obj

    @classmethod
    def _empty(cls, replica: str, hlc: HybridLogicalClock) -> Self:
        return cls._make(replica, hlc, None)

    def set(self, value: Any) -> Self:
        """Write `value` (JSON-safe); returns the delta.

        Raises:
            CRDTError: `value` is not JSON-safe.
        """
        check_value(value, "an LWWRegister value")
        ms, counter = self._hlc.tick(self._entry[0] if self._entry else None)
        self._entry = ((ms, counter, self.replica), _own(value))
        return self._make(self.replica, self._hlc, self._entry)

    @property
    def value(self) -> Any:
        """The winning value (None before any write)."""
        return None if self._entry is None else self._entry[1]

    @property
    def timestamp(self) -> Timestamp | None:
        """(milliseconds, counter, replica) of the winning write, or None."""
        return None if self._entry is None else self._entry[0]

    def _join(self, other: Self) -> Self:
        return self._make(self.replica, self._hlc, _lww_pick(self._entry, other._entry))

    def _rebind(self, replica: str, hlc: HybridLogicalClock) -> Self:
        return self._make(replica, hlc, self._entry)

    def _state_eq(self, other: Self) -> bool:
        return self._entry == other._entry

    def _state(self) -> dict[str, Any]:
        if self._entry is None:
            return {"ts": None, "value": None}
        return {"ts": list(self._entry[0]), "value": self._entry[1]}

    @classmethod
    def _from_state(cls, state: Any, replica: str, intake: Intake) -> Self:
        if type(state) is not dict or len(state) != 2 or "ts" not in state:
            want_dict(state, "state", {"ts", "value"})  # raises the detailed error
        ts, value = state["ts"], state["value"]
        if ts is None:
            if value is not None:
                raise bad("state.value", "a value without a timestamp")
            return cls._make(replica, intake.hlc, None)
        intake.count(1, "state")
        entry = (intake.timestamp(ts, "state.ts"), want_value(value, "state.value"))
        return cls._make(replica, intake.hlc, entry)


def _join_dotfun(
    ea: dict[Dot, Any],
    vva: dict[str, int],
    cla: set[Dot],
    eb: dict[Dot, Any],
    vvb: dict[str, int],
    clb: set[Dot],
    join_values: Callable[[Any, Any], Any],
) -> dict[Dot, Any]:
    """Join two dot -> value maps: a dot survives if both have it or the other side has not
    seen it (if it has seen it and lacks it, it was overwritten or removed there)."""
    out: dict[Dot, Any] = {}
    for dot, value in ea.items():
        other = eb.get(dot, eb)
        if other is not eb:
            out[dot] = value if other is value else join_values(value, other)
        elif not (dot[1] <= vvb.get(dot[0], 0) or dot in clb):
            out[dot] = value
    for dot, value in eb.items():
        if dot not in ea and not (dot[1] <= vva.get(dot[0], 0) or dot in cla):
            out[dot] = value
    return out


def _pick_plain(a: Any, b: Any) -> Any:
    if a == b:
        return a
    return b if _canonical(b) > _canonical(a) else a


class MVRegister(CausalCRDT):
    """A multi-value register: concurrent writes are all kept (`.values`) until a later write
    that has seen them replaces them.

    Example:
        >>> a, b = MVRegister("a"), MVRegister("b")
        >>> _ = a.set("left"); _ = b.set("right")
        >>> sorted(a.merge(b).values)
        ['left', 'right']
    """

    TYPE = "MVRegister"
    __slots__ = ()

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._entries: dict[Dot, Any] = {}
        self._vv: dict[str, int] = {}
        self._cloud: set[Dot] = set()

    @classmethod
    def _make(
        cls, replica: str, entries: dict[Dot, Any], vv: dict[str, int], cloud: set[Dot]
    ) -> Self:
        obj = cls.__new__(cls)
        obj.replica = replica
        obj._entries = entries
        obj._vv = vv
        obj._cloud = cloud
        return obj

    def set(self, value: Any) -> Self:
        """Write `value` (JSON-safe), replacing every value seen so far; returns the delta."""
        check_value(value, "an MVRegister value")
        value = _own(value)
        dot = next_dot(self.replica, self._vv, self._cloud)
        seen = set(self._entries)
        seen.add(dot)
        dvv: dict[str, int] = {}
        compact(dvv, seen)
        self._entries = {dot: value}
        add_dot(self._vv, self._cloud, dot)
        return self._make(self.replica, {dot: value}, dvv, seen)

    @property
    def values(self) -> list[Any]:
        """Every concurrent value, in a deterministic order (by write dot)."""
        return [self._entries[d] for d in sorted(self._entries)]

    @property
    def value(self) -> Any:
        """The single value; with concurrent writes, the last of `.values` (deterministic);
        None before any write."""
        if not self._entries:
            return None
        return self._entries[max(self._entries)]

    def _join(self, other: Self) -> Self:
        entries = _join_dotfun(
            self._entries,
            self._vv,
            self._cloud,
            other._entries,
            other._vv,
            other._cloud,
            _pick_plain,
        )
        vv, cloud = cc_join(self._vv, self._cloud, other._vv, other._cloud)
        return self._make(self.replica, entries, vv, cloud)

    def _state(self) -> dict[str, Any]:
        return {
            "entries": [[d[0], d[1], self._entries[d]] for d in sorted(self._entries)],
            "cc": cc_state(self._vv, self._cloud),
        }

    @classmethod
    def _from_state(cls, state: Any, replica: str, intake: Intake) -> Self:
        body = want_dict(state, "state", {"entries", "cc"})
        vv, cloud = parse_cc(body["cc"], "state.cc", intake)
        entries: dict[Dot, Any] = {}
        items = want_list(body["entries"], "state.entries")
        intake.count(len(items), "state.entries")
        for item in items:
            r, n, value = want_list(item, "state.entries[]", 3)
            dot = want_dot([r, n], "state.entries[]", intake.limits.max_counter)
            entries[dot] = want_value(value, "state.entries[]")
        _check_covered(entries, vv, cloud, "state.entries")
        return cls._make(replica, entries, vv, cloud)
