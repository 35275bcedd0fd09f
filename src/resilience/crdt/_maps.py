"""Maps: last-writer-wins values, and observed-remove maps of CRDTs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Self

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import CRDTError
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
    covered,
    ekey,
    ikey,
    in_value_order,
    inner_state,
    lookup,
    next_dot,
    own_counter,
    parse_cc,
    parse_inner,
    sort_key,
    want_dict,
    want_dot,
    want_key,
    want_list,
    want_value,
)
from ._registers import LWWRegister, _join_dotfun

__all__ = ["LWWMap", "ORMap"]


# --- maps ----------------------------------------------------------------------------------


def _by_key(item: tuple[Any, Any]) -> str:
    return sort_key(item[0])


_MAX_SKIP = 4096
"""How many never-issued dots an ORMap update records one by one (see ORMap._put)."""

_LWWEntry = tuple[Timestamp, bool, Any]  # (timestamp, present, value); present=False: removed


def _lww_entry_pick(a: _LWWEntry, b: _LWWEntry) -> _LWWEntry:
    if b[0] > a[0]:
        return b
    if b[0] == a[0] and b != a and _canonical(b[1:]) > _canonical(a[1:]):
        return b
    return a


class LWWMap(CRDT):
    """A map whose keys are last-writer-wins registers of plain JSON values. A removal is a
    timestamped tombstone (so it beats older writes and loses to newer ones).

    Example:
        >>> from resilience.testing import VirtualClock
        >>> clock = VirtualClock()
        >>> a, b = LWWMap("a", clock=clock), LWWMap("b", clock=clock)
        >>> _ = a.set("theme", "dark"); clock.advance(1); _ = b.set("theme", "light")
        >>> a.merge(b).value
        {'theme': 'light'}
    """

    TYPE = "LWWMap"
    __slots__ = ("_entries", "_hlc")

    def __init__(
        self,
        replica: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        hlc: HybridLogicalClock | None = None,
    ) -> None:
        self.replica = check_replica(replica)
        self._hlc = hlc if hlc is not None else HybridLogicalClock(clock=clock)
        self._entries: dict[Any, _LWWEntry] = {}

    @classmethod
    def _make(cls, replica: str, hlc: HybridLogicalClock, entries: dict[Any, _LWWEntry]) -> Self:
        obj = cls.__new__(cls)
        obj.replica = replica
        obj._hlc = hlc
        obj._entries = entries
        return obj

    @classmethod
    def _empty(cls, replica: str, hlc: HybridLogicalClock) -> Self:
        return cls._make(replica, hlc, {})

    def _stamp(self, key: Any) -> Timestamp:
        old = self._entries.get(key)
        ms, counter = self._hlc.tick(old[0] if old else None)
        return (ms, counter, self.replica)

    def set(self, key: Any, value: Any) -> Self:
        """Write `value` (JSON-safe) under `key` (a JSON scalar); returns the delta.

        Raises:
            CRDTError: the key or the value is not JSON-safe.
        """
        key = ikey(key, "an LWWMap key")
        check_value(value, "an LWWMap value")
        entry = (self._stamp(key), True, _own(value))
        self._entries[key] = entry
        return self._make(self.replica, self._hlc, {key: entry})

    def remove(self, key: Any) -> Self:
        """Remove `key` (a tombstone newer than every write seen); returns the delta (empty
        if the key is absent)."""
        key = lookup(key)
        old = self._entries.get(key)
        if old is None or not old[1]:
            return self._make(self.replica, self._hlc, {})
        entry = (self._stamp(key), False, None)
        self._entries[key] = entry
        return self._make(self.replica, self._hlc, {key: entry})

    def get(self, key: Any, default: Any = None) -> Any:
        entry = self._entries.get(lookup(key))
        return entry[2] if entry is not None and entry[1] else default

    def __getitem__(self, key: Any) -> Any:
        entry = self._entries.get(lookup(key))
        if entry is None or not entry[1]:
            raise KeyError(key)
        return entry[2]

    def __contains__(self, key: object) -> bool:
        try:
            entry = self._entries.get(lookup(key))
        except TypeError:
            return False
        return entry is not None and entry[1]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if e[1])

    def keys(self) -> list[Any]:
        """The live keys (`1`, `True` and `1.0` are three keys)."""
        return [ekey(k) for k, e in self._entries.items() if e[1]]

    def items(self) -> list[tuple[Any, Any]]:
        """The live keys and their values, each key once."""
        return [(ekey(k), e[2]) for k, e in self._entries.items() if e[1]]

    @property
    def value(self) -> dict[Any, Any]:
        """The live keys and their values, as a dict (a Python dict merges `1`, `True` and
        `1.0` into one key: use `items()` if you mix them)."""
        return {ekey(k): e[2] for k, e in in_value_order(self._entries) if e[1]}

    def _join(self, other: Self) -> Self:
        out = dict(self._entries)
        get = out.get
        for key, eb in other._entries.items():
            ea = get(key)
            if ea is None:
                out[key] = eb
            elif ea is not eb:
                if eb[0] > ea[0]:
                    out[key] = eb
                elif eb[0] == ea[0] and eb != ea:
                    out[key] = _lww_entry_pick(ea, eb)
        return self._make(self.replica, self._hlc, out)

    def _rebind(self, replica: str, hlc: HybridLogicalClock) -> Self:
        return self._make(replica, hlc, dict(self._entries))

    def _state_eq(self, other: Self) -> bool:
        return self._entries == other._entries

    def _state(self) -> dict[str, Any]:
        return {
            "entries": [
                [ekey(k), list(e[0]), e[1], e[2]]
                for k, e in sorted(self._entries.items(), key=_by_key)
            ]
        }

    @classmethod
    def _from_state(cls, state: Any, replica: str, intake: Intake) -> Self:
        body = want_dict(state, "state", {"entries"})
        entries: dict[Any, _LWWEntry] = {}
        items = want_list(body["entries"], "state.entries")
        intake.count(len(items), "state.entries")
        for item in items:
            key, ts, present, value = want_list(item, "state.entries[]", 4)
            key = want_key(key, "state.entries[] key")
            if key in entries:
                raise bad("state.entries", f"key {ekey(key)!r} appears twice")
            if type(present) is not bool or (not present and value is not None):
                raise bad("state.entries[]", "bad presence flag")
            stamp = intake.timestamp(ts, "state.entries[] ts")
            entries[key] = (stamp, present, want_value(value, "state.entries[] value"))
        return cls._make(replica, intake.hlc, entries)


def _join_crdt(a: CRDT, b: CRDT) -> CRDT:
    return a if a == b else a.merge(b)


class ORMap(CausalCRDT):
    """A map of CRDTs with observed-remove keys (add/update wins over a concurrent remove).

    Each update stores the key's new value under a fresh dot; a value is the join of the
    values under the key's surviving dots, so concurrent updates of one key merge by the
    value type's own rules (an `LWWRegister` keeps the last write, an `MVRegister` keeps both
    conflicting writes, a counter adds up). A removal forgets the dots it has seen.

    Args:
        replica: this replica's id.
        value_type: the CRDT class of new values (default `LWWRegister`).
        clock: physical time for the HLC of LWW values (ignored when `hlc` is given).
        hlc: a HybridLogicalClock to share with the values.

    Example:
        >>> doc = ORMap("a")
        >>> _ = doc.update("title", lambda reg: reg.set("Minutes"))
        >>> doc.value
        {'title': 'Minutes'}
    """

    TYPE = "ORMap"
    __slots__ = ("_hlc", "_value_type")

    def __init__(
        self,
        replica: str,
        value_type: type[CRDT] = LWWRegister,
        *,
        clock: Clock = SYSTEM_CLOCK,
        hlc: HybridLogicalClock | None = None,
    ) -> None:
        self.replica = check_replica(replica)
        if not (isinstance(value_type, type) and issubclass(value_type, CRDT)):
            raise CRDTError(f"ORMap value_type must be a CRDT class, got {value_type!r}")
        self._value_type = value_type
        self._hlc = hlc if hlc is not None else HybridLogicalClock(clock=clock)
        self._entries: dict[Any, dict[Dot, CRDT]] = {}
        self._vv: dict[str, int] = {}
        self._cloud: set[Dot] = set()

    @classmethod
    def _make(
        cls,
        like: ORMap,
        replica: str,
        entries: dict[Any, dict[Dot, CRDT]],
        vv: dict[str, int],
        cloud: set[Dot],
    ) -> Self:
        obj = cls.__new__(cls)
        obj.replica = replica
        obj._value_type = like._value_type
        obj._hlc = like._hlc
        obj._entries = entries
        obj._vv = vv
        obj._cloud = cloud
        return obj

    @classmethod
    def _empty(cls, replica: str, hlc: HybridLogicalClock) -> Self:
        return cls(replica, hlc=hlc)

    def _current(self, key: Any) -> CRDT | None:
        """The join of the values under the (internal) key's dots."""
        dots = self._entries.get(key)
        if not dots:
            return None
        values = iter(dots.values())
        out = next(values)
        for value in values:
            out = out.merge(value)
        return out

    def update(
        self,
        key: Any,
        mutate: Callable[[Any], object],
        value_type: type[CRDT] | None = None,
    ) -> Self:
        """Apply `mutate` to the value under `key` (created empty, of `value_type` or the
        map's default, if absent); returns the delta.

        Raises:
            CRDTError: `key` is not a JSON scalar.
        """
        key = ikey(key, "an ORMap key")
        current = self._current(key)
        if current is None:
            vt = value_type or self._value_type
            value: CRDT = vt._empty(self.replica, self._hlc)
        else:
            value = current._rebind(self.replica, self._hlc)
        # nested dots continue after every one this replica issued in this map, even for a
        # value re-created after its key was removed (its old dots may still be around)
        value._seed(self.replica, own_counter(self.replica, self._vv, self._cloud))
        mutate(value)
        if value._PER_REPLICA:  # a counter: store only this replica's part (see _put)
            part = value._contribution(self.replica)
            for dot, old in self._entries.get(key, {}).items():
                if dot[0] == self.replica:  # replaced below: keep what it held (set() may
                    part = part.merge(old)  # have put other replicas' counts there)
            return self._put(key, part, own_only=True)
        return self._put(key, value)

    def set(self, key: Any, value: CRDT) -> Self:
        """Merge the CRDT `value` into the one under `key` (or store a copy of it if the key
        is absent); returns the delta.

        Raises:
            CRDTError: `key` is not a JSON scalar or `value` is not a CRDT.
            TypeError: the key holds a CRDT of another type.
        """
        key = ikey(key, "an ORMap key")
        if not isinstance(value, CRDT):
            raise CRDTError(f"ORMap.set needs a CRDT value, got {type(value).__name__}")
        current = self._current(key)
        joined = value if current is None else current.merge(value)
        return self._put(key, joined._rebind(self.replica, self._hlc), own_only=joined._PER_REPLICA)

    def _put(self, key: Any, value: CRDT, own_only: bool = False) -> Self:
        replica = self.replica
        first = next_dot(replica, self._vv, self._cloud)[1]
        # the map's counter also covers the nested value's dots (see update), so it may skip
        # ahead; the skipped dots are never issued, and the delta carries them as seen
        last = max(first, value._counter(replica))
        dot = (replica, last)
        old = self._entries.get(key, {})
        # a counter's new dot replaces only this replica's earlier dots of the key: the
        # others hold the other replicas' contributions, which this update did not change
        seen = {d for d in old if d[0] == replica} if own_only else set(old)
        if last - first <= _MAX_SKIP:
            issued = {(replica, n) for n in range(first, last + 1)}
            self._cloud |= issued
            compact(self._vv, self._cloud)
        else:
            # A far skip (only a value carrying dots of this replica far beyond the map's:
            # a forged or hand-built state) is never expanded: the map's own counter jumps
            # in O(1) and the delta carries only the new dot, so a receiver keeps one cloud
            # entry until the next full state closes the gap. The skipped dots carry nothing.
            issued = {dot}
            if self._vv.get(replica, 0) == first - 1:
                self._vv[replica] = last
            else:
                add_dot(self._vv, self._cloud, dot)
        seen |= issued
        entry = {d: v for d, v in old.items() if d not in seen}
        entry[dot] = value
        dvv: dict[str, int] = {}
        compact(dvv, seen)  # (folds dots of `seen` into `dvv`)
        self._entries[key] = entry
        return self._make(self, replica, {key: {dot: value}}, dvv, seen)

    def remove(self, key: Any) -> Self:
        """Remove `key` as observed here (a concurrent update elsewhere wins); returns the
        delta (empty if absent)."""
        try:
            dots = self._entries.pop(lookup(key), None)
        except TypeError:
            dots = None
        if dots is None:
            return self._make(self, self.replica, {}, {}, set())
        seen = set(dots)
        dvv: dict[str, int] = {}
        compact(dvv, seen)
        return self._make(self, self.replica, {}, dvv, seen)

    def get(self, key: Any) -> Any:
        """A copy of the CRDT under `key` (owned by this replica), or None."""
        try:
            current = self._current(lookup(key))
        except TypeError:
            return None
        return None if current is None else current._rebind(self.replica, self._hlc)

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        try:
            return lookup(key) in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[Any]:
        return map(ekey, self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Any]:
        """The keys (`1`, `True` and `1.0` are three keys)."""
        return [ekey(k) for k in self._entries]

    @property
    def value(self) -> dict[Any, Any]:
        """Each key's value (`.value` of its CRDT), as a dict."""
        out: dict[Any, Any] = {}
        for key, _ in in_value_order(self._entries):
            current = self._current(key)
            if current is not None:
                out[ekey(key)] = current.value
        return out

    @property
    def context_size(self) -> int:
        """Entries in the causal context (version vector + dot cloud): O(replicas)."""
        return len(self._vv) + len(self._cloud)

    def _join(self, other: Self) -> Self:
        ea, eb = self._entries, other._entries
        vva, cla, vvb, clb = self._vv, self._cloud, other._vv, other._cloud
        seen_a, seen_b, get_b = vva.get, vvb.get, eb.get
        out: dict[Any, dict[Dot, CRDT]] = {}
        for key, da in ea.items():
            db = get_b(key)
            if db is None:
                for dot in da:
                    if dot[1] <= seen_b(dot[0], 0) or dot in clb:
                        break
                else:
                    out[key] = da
                    continue
                keep = {d: v for d, v in da.items() if not covered(d, vvb, clb)}
            elif da is db:
                out[key] = da
                continue
            elif len(da) == 1 and len(db) == 1:  # one value each side: the usual case
                (dot_a,) = da
                (dot_b,) = db
                if dot_a == dot_b:
                    va, vb = da[dot_a], db[dot_b]
                    out[key] = da if va is vb else {dot_a: _join_crdt(va, vb)}
                    continue
                keep_a = not (dot_a[1] <= seen_b(dot_a[0], 0) or dot_a in clb)
                keep_b = not (dot_b[1] <= seen_a(dot_b[0], 0) or dot_b in cla)
                if keep_a:
                    out[key] = {**da, **db} if keep_b else da
                elif keep_b:
                    out[key] = db
                continue
            else:
                keep = _join_dotfun(da, vva, cla, db, vvb, clb, _join_crdt)
            if keep:
                out[key] = keep
        for key, db in eb.items():  # iterating beats building a key-set difference
            if key in ea:
                continue
            for dot in db:
                if dot[1] <= seen_a(dot[0], 0) or dot in cla:
                    break
            else:
                out[key] = db
                continue
            keep = {d: v for d, v in db.items() if not covered(d, vva, cla)}
            if keep:
                out[key] = keep
        vv, cloud = cc_join(vva, cla, vvb, clb)
        return self._make(self, self.replica, out, vv, cloud)

    def _rebind(self, replica: str, hlc: HybridLogicalClock) -> Self:
        out = self._join(self)
        out.replica = replica
        out._hlc = hlc
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "value_type": self._value_type.TYPE,
            "entries": [
                [ekey(k), [self._dot_state(d, ds[d]) for d in sorted(ds)]]
                for k, ds in sorted(self._entries.items(), key=_by_key)
            ],
            "cc": cc_state(self._vv, self._cloud),
        }

    def _dot_state(self, dot: Dot, value: CRDT) -> list[Any]:
        # a value of the map's value_type is stored bare; any other type carries its tag
        if type(value) is self._value_type:
            return [dot[0], dot[1], value._state()]
        return [dot[0], dot[1], inner_state(value)]

    @classmethod
    def _from_state(cls, state: Any, replica: str, intake: Intake) -> Self:
        from ._base import _REGISTRY

        if intake.depth >= intake.limits.max_depth:
            raise bad("state", f"CRDTs nested more than {intake.limits.max_depth} deep")
        body = want_dict(state, "state", {"value_type", "entries", "cc"})
        vt = _REGISTRY.get(body["value_type"]) if type(body["value_type"]) is str else None
        if vt is None:
            raise bad("state.value_type", f"unknown CRDT type {body['value_type']!r}")
        vv, cloud = parse_cc(body["cc"], "state.cc", intake)
        entries: dict[Any, dict[Dot, CRDT]] = {}
        top = intake.limits.max_counter
        items = want_list(body["entries"], "state.entries")
        intake.count(len(items), "state.entries")
        intake.depth += 1
        for item in items:
            key, dots = want_list(item, "state.entries[]", 2)
            key = want_key(key, "state.entries[] key")
            if key in entries:
                raise bad("state.entries", f"key {ekey(key)!r} appears twice")
            values: dict[Dot, CRDT] = {}
            subs = want_list(dots, "state.entries[] dots")
            intake.count(len(subs), "state.entries[] dots")
            for sub in subs:
                r, n, inner = want_list(sub, "state.entries[] dot", 3)
                dot = want_dot([r, n], "state.entries[] dot", top)
                if type(inner) is dict and "type" in inner:
                    value = parse_inner(inner, "state.entries[] value", replica, intake)
                    if type(value) is vt:
                        raise bad("state.entries[] value", "a value_type value with a tag")
                    values[dot] = value
                else:
                    values[dot] = vt._from_state(inner, replica, intake)
            if not values:
                raise bad("state.entries", f"key {ekey(key)!r} has no dots")
            _check_covered(values, vv, cloud, "state.entries")
            entries[key] = values
        intake.depth -= 1
        obj = cls(replica, vt, hlc=intake.hlc)
        obj._entries, obj._vv, obj._cloud = entries, vv, cloud
        return obj
