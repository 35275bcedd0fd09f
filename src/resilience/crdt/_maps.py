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
    Timestamp,
    _canonical,
    _check_covered,
    _own,
    bad,
    cc_join,
    cc_state,
    check_key,
    check_replica,
    check_value,
    compact,
    covered,
    inner_state,
    next_dot,
    own_counter,
    parse_cc,
    parse_inner,
    want_dict,
    want_dot,
    want_key,
    want_list,
    want_timestamp,
    want_value,
)
from ._registers import LWWRegister, _join_dotfun

__all__ = ["LWWMap", "ORMap"]


# --- maps ----------------------------------------------------------------------------------

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
        check_key(key, "an LWWMap key")
        check_value(value, "an LWWMap value")
        entry = (self._stamp(key), True, _own(value))
        self._entries[key] = entry
        return self._make(self.replica, self._hlc, {key: entry})

    def remove(self, key: Any) -> Self:
        """Remove `key` (a tombstone newer than every write seen); returns the delta (empty
        if the key is absent)."""
        old = self._entries.get(key)
        if old is None or not old[1]:
            return self._make(self.replica, self._hlc, {})
        entry = (self._stamp(key), False, None)
        self._entries[key] = entry
        return self._make(self.replica, self._hlc, {key: entry})

    def get(self, key: Any, default: Any = None) -> Any:
        entry = self._entries.get(key)
        return entry[2] if entry is not None and entry[1] else default

    def __getitem__(self, key: Any) -> Any:
        entry = self._entries.get(key)
        if entry is None or not entry[1]:
            raise KeyError(key)
        return entry[2]

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[1]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if e[1])

    def keys(self) -> list[Any]:
        return [k for k, e in self._entries.items() if e[1]]

    @property
    def value(self) -> dict[Any, Any]:
        """The live keys and their values, as a dict."""
        return {k: e[2] for k, e in self._entries.items() if e[1]}

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
        return {"entries": [[k, list(e[0]), e[1], e[2]] for k, e in self._entries.items()]}

    @classmethod
    def _from_state(cls, state: Any, replica: str, hlc: HybridLogicalClock) -> Self:
        body = want_dict(state, "state", {"entries"})
        entries: dict[Any, _LWWEntry] = {}
        for item in want_list(body["entries"], "state.entries"):
            key, ts, present, value = want_list(item, "state.entries[]", 4)
            want_key(key, "state.entries[] key")
            if key in entries:
                raise bad("state.entries", f"key {key!r} appears twice")
            if type(present) is not bool or (not present and value is not None):
                raise bad("state.entries[]", "bad presence flag")
            stamp = want_timestamp(ts, "state.entries[] ts")
            entries[key] = (stamp, present, want_value(value, "state.entries[] value"))
        return cls._make(replica, hlc, entries)


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
        check_key(key, "an ORMap key")
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
        return self._put(key, value)

    def set(self, key: Any, value: CRDT) -> Self:
        """Merge the CRDT `value` into the one under `key` (or store a copy of it if the key
        is absent); returns the delta.

        Raises:
            CRDTError: `key` is not a JSON scalar or `value` is not a CRDT.
            TypeError: the key holds a CRDT of another type.
        """
        check_key(key, "an ORMap key")
        if not isinstance(value, CRDT):
            raise CRDTError(f"ORMap.set needs a CRDT value, got {type(value).__name__}")
        current = self._current(key)
        joined = value if current is None else current.merge(value)
        return self._put(key, joined._rebind(self.replica, self._hlc))

    def _put(self, key: Any, value: CRDT) -> Self:
        replica = self.replica
        first = next_dot(replica, self._vv, self._cloud)[1]
        # the map's counter also covers the nested value's dots (see update), so it may skip
        # ahead; the skipped dots are never issued, and the delta carries them as seen
        last = max(first, value._counter(replica))
        issued = {(replica, n) for n in range(first, last + 1)}
        dot = (replica, last)
        seen = set(self._entries.get(key, ()))
        seen |= issued
        dvv: dict[str, int] = {}
        compact(dvv, seen)
        self._entries[key] = {dot: value}
        self._cloud |= issued
        compact(self._vv, self._cloud)
        return self._make(self, replica, {key: {dot: value}}, dvv, seen)

    def remove(self, key: Any) -> Self:
        """Remove `key` as observed here (a concurrent update elsewhere wins); returns the
        delta (empty if absent)."""
        dots = self._entries.pop(key, None)
        if dots is None:
            return self._make(self, self.replica, {}, {}, set())
        seen = set(dots)
        dvv: dict[str, int] = {}
        compact(dvv, seen)
        return self._make(self, self.replica, {}, dvv, seen)

    def get(self, key: Any) -> Any:
        """A copy of the CRDT under `key` (owned by this replica), or None."""
        current = self._current(key)
        return None if current is None else current._rebind(self.replica, self._hlc)

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Any]:
        return list(self._entries)

    @property
    def value(self) -> dict[Any, Any]:
        """Each key's value (`.value` of its CRDT), as a dict."""
        out: dict[Any, Any] = {}
        for key in self._entries:
            current = self._current(key)
            if current is not None:
                out[key] = current.value
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
                [k, [self._dot_state(d, ds[d]) for d in sorted(ds)]]
                for k, ds in self._entries.items()
            ],
            "cc": cc_state(self._vv, self._cloud),
        }

    def _dot_state(self, dot: Dot, value: CRDT) -> list[Any]:
        # a value of the map's value_type is stored bare; any other type carries its tag
        if type(value) is self._value_type:
            return [dot[0], dot[1], value._state()]
        return [dot[0], dot[1], inner_state(value)]

    @classmethod
    def _from_state(cls, state: Any, replica: str, hlc: HybridLogicalClock) -> Self:
        from ._base import _REGISTRY

        body = want_dict(state, "state", {"value_type", "entries", "cc"})
        vt = _REGISTRY.get(body["value_type"]) if type(body["value_type"]) is str else None
        if vt is None:
            raise bad("state.value_type", f"unknown CRDT type {body['value_type']!r}")
        vv, cloud = parse_cc(body["cc"], "state.cc")
        entries: dict[Any, dict[Dot, CRDT]] = {}
        for item in want_list(body["entries"], "state.entries"):
            key, dots = want_list(item, "state.entries[]", 2)
            want_key(key, "state.entries[] key")
            if key in entries:
                raise bad("state.entries", f"key {key!r} appears twice")
            values: dict[Dot, CRDT] = {}
            for sub in want_list(dots, "state.entries[] dots"):
                r, n, inner = want_list(sub, "state.entries[] dot", 3)
                dot = want_dot([r, n], "state.entries[] dot")
                if type(inner) is dict and "type" in inner:
                    value = parse_inner(inner, "state.entries[] value", replica, hlc)
                    if type(value) is vt:
                        raise bad("state.entries[] value", "a value_type value with a tag")
                    values[dot] = value
                else:
                    values[dot] = vt._from_state(inner, replica, hlc)
            if not values:
                raise bad("state.entries", f"key {key!r} has no dots")
            _check_covered(values, vv, cloud, "state.entries")
            entries[key] = values
        obj = cls(replica, vt, hlc=hlc)
        obj._entries, obj._vv, obj._cloud = entries, vv, cloud
        return obj
