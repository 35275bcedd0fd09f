"""The add-wins observed-remove set (dots and a causal context; no tombstones)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

from ._base import (
    CausalCRDT,
    Dot,
    Intake,
    _check_covered,
    add_dot,
    bad,
    cc_join,
    cc_state,
    check_replica,
    compact,
    covered,
    ekey,
    ikey,
    lookup,
    next_dot,
    parse_cc,
    sort_key,
    want_dict,
    want_dot,
    want_key,
    want_list,
)

__all__ = ["ORSet"]


# --- the add-wins set ----------------------------------------------------------------------


_Dots = Dot | frozenset[Dot]
"""An element's dots: one dot as a bare tuple (the usual case, cheap to test), two or more
(concurrent adds) as a frozenset. Always normalised this way, so states compare with ==."""


def _as_set(dots: _Dots) -> frozenset[Dot]:
    if isinstance(dots, frozenset):
        return dots
    return frozenset((dots,))


def _norm(dots: set[Dot] | frozenset[Dot]) -> _Dots | None:
    if not dots:
        return None
    if len(dots) == 1:
        for dot in dots:
            return dot
    return dots if type(dots) is frozenset else frozenset(dots)


def _survivors(dots: _Dots, vv: dict[str, int], cloud: set[Dot]) -> _Dots | None:
    """The dots the other side has not seen (the ones it has seen and lacks were removed)."""
    if not isinstance(dots, frozenset):
        return None if covered(dots, vv, cloud) else dots
    keep = [d for d in dots if not covered(d, vv, cloud)]
    return dots if len(keep) == len(dots) else _norm(frozenset(keep))


def _join_dots(
    da: _Dots,
    db: _Dots,
    vva: dict[str, int],
    cla: set[Dot],
    vvb: dict[str, int],
    clb: set[Dot],
) -> _Dots | None:
    if type(da) is tuple and type(db) is tuple:  # two different single dots
        keep_a = not covered(da, vvb, clb)
        keep_b = not covered(db, vva, cla)
        if keep_a and keep_b:
            return frozenset((da, db))
        return da if keep_a else db if keep_b else None
    sa, sb = _as_set(da), _as_set(db)
    return _norm(
        (sa & sb)
        | {d for d in sa - sb if not covered(d, vvb, clb)}
        | {d for d in sb - sa if not covered(d, vva, cla)}
    )


def _join_dotmap(
    ea: dict[Any, _Dots],
    vva: dict[str, int],
    cla: set[Dot],
    eb: dict[Any, _Dots],
    vvb: dict[str, int],
    clb: set[Dot],
) -> dict[Any, _Dots]:
    """Join two element -> dots maps (the hot loop of ORSet.merge: no allocation for an
    element that survives unchanged)."""
    out: dict[Any, _Dots] = {}
    get_b = eb.get
    seen_b = vvb.get
    seen_a = vva.get
    tup = tuple
    for elem, da in ea.items():
        db = get_b(elem)
        if db is None:
            if type(da) is tup:
                if da[1] > seen_b(da[0], 0) and not (clb and da in clb):
                    out[elem] = da
            else:
                keep = _survivors(da, vvb, clb)
                if keep is not None:
                    out[elem] = keep
        elif da is db or da == db:
            out[elem] = da
        elif type(da) is tup and type(db) is tup:  # concurrent single adds: the usual clash
            keep_a = da[1] > seen_b(da[0], 0) and not (clb and da in clb)
            keep_b = db[1] > seen_a(db[0], 0) and not (cla and db in cla)
            if keep_a:
                out[elem] = frozenset((da, db)) if keep_b else da
            elif keep_b:
                out[elem] = db
        else:
            keep = _join_dots(da, db, vva, cla, vvb, clb)
            if keep is not None:
                out[elem] = keep
    for elem, db in eb.items():  # iterating beats building a key-set difference
        if elem in ea:
            continue
        if type(db) is tup:
            if db[1] > seen_a(db[0], 0) and not (cla and db in cla):
                out[elem] = db
        else:
            keep = _survivors(db, vva, cla)
            if keep is not None:
                out[elem] = keep
    return out


_NONE: Any = object()  # "no element" (None is an element)


def _by_key(item: tuple[Any, Any]) -> str:
    return sort_key(item[0])


class ORSet(CausalCRDT):
    """An add-wins observed-remove set (the optimized OR-Set, "ORSWOT"): each add gets a
    fresh dot; a remove forgets the dots it has seen, so a concurrent add survives. The
    causal context remembers removals, so there are no tombstones: the state stays
    O(elements + replicas) however many adds and removes ran.

    Elements must be JSON scalars (str, int, finite float, bool, None).

    Example:
        >>> a = ORSet("a"); _ = a.add("milk")
        >>> b = a.copy(); b.replica = "b"
        >>> _ = a.remove("milk"); _ = b.add("milk")  # concurrent: the add wins
        >>> "milk" in a.merge(b)
        True
    """

    TYPE = "ORSet"
    __slots__ = ("_index",)

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._entries: dict[Any, _Dots] = {}
        self._vv: dict[str, int] = {}
        self._cloud: set[Dot] = set()
        self._index: dict[Dot, Any] | None = None

    @classmethod
    def _make(
        cls,
        replica: str,
        entries: dict[Any, _Dots],
        vv: dict[str, int],
        cloud: set[Dot],
    ) -> Self:
        obj = cls.__new__(cls)
        obj.replica = replica
        obj._entries = entries
        obj._vv = vv
        obj._cloud = cloud
        obj._index = None
        return obj

    def add(self, element: Any) -> Self:
        """Add `element`; returns the delta.

        Raises:
            CRDTError: `element` is not a JSON scalar.
        """
        element = ikey(element, "an ORSet element")
        dot = next_dot(self.replica, self._vv, self._cloud)
        old = self._entries.get(element)
        seen = set() if old is None else set(_as_set(old))
        seen.add(dot)
        dvv: dict[str, int] = {}
        compact(dvv, seen)
        self._entries[element] = dot
        self._index = None
        add_dot(self._vv, self._cloud, dot)
        return self._make(self.replica, {element: dot}, dvv, seen)

    def remove(self, element: Any) -> Self:
        """Remove `element` as observed here (a concurrent add elsewhere wins); returns the
        delta (empty if the element is absent)."""
        try:
            dots = self._entries.pop(lookup(element), None)
        except TypeError:  # unhashable: never an element
            dots = None
        if dots is None:
            return self._make(self.replica, {}, {}, set())
        self._index = None
        seen = set(_as_set(dots))
        dvv: dict[str, int] = {}
        compact(dvv, seen)
        return self._make(self.replica, {}, dvv, seen)

    def __contains__(self, element: object) -> bool:
        try:
            return lookup(element) in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[Any]:
        """Every element once (`1`, `True` and `1.0` are three elements)."""
        return map(ekey, self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def value(self) -> frozenset[Any]:
        """The elements, as a frozenset (which, like any Python set, holds only one of `1`,
        `True` and `1.0`; iterate to see each element)."""
        return frozenset(map(ekey, self._entries))

    @property
    def context_size(self) -> int:
        """Entries in the causal context (version vector + dot cloud): O(replicas)."""
        return len(self._vv) + len(self._cloud)

    def _join(self, other: Self) -> Self:
        entries = _join_dotmap(
            self._entries, self._vv, self._cloud, other._entries, other._vv, other._cloud
        )
        vv, cloud = cc_join(self._vv, self._cloud, other._vv, other._cloud)
        return self._make(self.replica, entries, vv, cloud)

    def _absorb(self, delta: Self) -> bool:
        """Merge a delta into this state in place: afterwards `self` equals what
        `self.merge(delta)` would return, without copying every element. Only the elements
        the delta names or whose dots its causal context covers can change; a dot -> element
        index (built once, dropped by local mutations) finds the latter. Returns False, and
        changes nothing, when the delta's context is too wide to walk (a full state)."""
        dvv, dcl = delta._vv, delta._cloud
        if sum(dvv.values()) + len(dcl) > 64 + 2 * len(delta._entries):
            return False
        index = self._index
        entries = self._entries
        if index is None:
            index = {}
            for elem, dots in entries.items():
                if isinstance(dots, frozenset):
                    for d in dots:
                        index[d] = elem
                else:
                    index[dots] = elem
            self._index = index
        candidates = list(delta._entries)
        for r, n in dvv.items():
            for m in range(1, n + 1):
                hit = index.get((r, m), _NONE)
                if hit is not _NONE:
                    candidates.append(hit)
        for d in dcl:
            hit = index.get(d, _NONE)
            if hit is not _NONE:
                candidates.append(hit)
        vv, cloud = self._vv, self._cloud
        changes: list[tuple[Any, _Dots | None]] = []
        for elem in dict.fromkeys(candidates):
            da, db = entries.get(elem), delta._entries.get(elem)
            if db is None:
                keep = None if da is None else _survivors(da, dvv, dcl)
            elif da is None:
                keep = _survivors(db, vv, cloud)
            elif da == db:
                keep = da
            else:
                keep = _join_dots(da, db, vv, cloud, dvv, dcl)
            if keep is not da:
                changes.append((elem, keep))
        for elem, keep in changes:
            old = entries.pop(elem, None)
            if old is not None:
                for d in _as_set(old):
                    index.pop(d, None)
            if keep is not None:
                entries[elem] = keep
                for d in _as_set(keep):
                    index[d] = elem
        self._vv, self._cloud = cc_join(vv, cloud, dvv, dcl)
        return True

    def _state(self) -> dict[str, Any]:
        return {
            "entries": [
                [ekey(e), [list(d) for d in sorted(_as_set(ds))]]
                for e, ds in sorted(self._entries.items(), key=_by_key)
            ],
            "cc": cc_state(self._vv, self._cloud),
        }

    @classmethod
    def _from_state(cls, state: Any, replica: str, intake: Intake) -> Self:
        body = want_dict(state, "state", {"entries", "cc"})
        vv, cloud = parse_cc(body["cc"], "state.cc", intake)
        entries: dict[Any, _Dots] = {}
        top = intake.limits.max_counter
        items = want_list(body["entries"], "state.entries")
        intake.count(len(items), "state.entries")
        for item in items:
            elem, dots = want_list(item, "state.entries[]", 2)
            elem = want_key(elem, "state.entries[] element")
            if elem in entries:
                raise bad("state.entries", f"element {ekey(elem)!r} appears twice")
            dots = want_list(dots, "dots")
            intake.count(len(dots), "state.entries[] dots")
            ds = frozenset(want_dot(d, "state.entries[] dot", top) for d in dots)
            _check_covered(ds, vv, cloud, "state.entries")
            normal = _norm(ds)
            if normal is None:
                raise bad("state.entries", f"element {ekey(elem)!r} has no dots")
            entries[elem] = normal
        return cls._make(replica, entries, vv, cloud)
