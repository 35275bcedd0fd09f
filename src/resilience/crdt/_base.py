"""The common part of every CRDT: the base class, JSON checks, the versioned wire form,
causal contexts and the hybrid logical clock.

Causal contexts follow Almeida, Shoker, Baquero, "Delta state replicated data types": a
compacted version vector (`vv`: replica -> highest contiguous counter seen) plus a dot cloud
(`cloud`: the dots seen beyond it). A dot is a plain tuple `(replica, counter)`.

Inside, states are plain dicts, sets and tuples shared between states where immutable, so
merges allocate only what the result needs. Mutators change the object in place and return
the delta; `merge` never changes its inputs.
"""

from __future__ import annotations

import copy as _copy
import hashlib
import json
import math
import threading
from typing import Any, ClassVar, Self

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import CRDTError

__all__ = ["CRDT", "HybridLogicalClock", "from_dict"]

FORMAT = "resilience.crdt"
VERSION = 1

Dot = tuple[str, int]
Timestamp = tuple[int, int, str]
"""An LWW timestamp: (physical milliseconds, logical counter, replica id)."""

_REGISTRY: dict[str, type[CRDT]] = {}


# --- JSON safety ---------------------------------------------------------------------------


def check_key(value: Any, what: str) -> None:
    """Set elements and map keys: JSON scalars (str, int, finite float, bool, None)."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return
    if t is float and math.isfinite(value):
        return
    raise CRDTError(
        f"{what} must be a JSON scalar (str, int, finite float, bool or None) so the state "
        f"can be serialised; got {t.__name__} {_short(value)}"
    )


def check_value(value: Any, what: str, _depth: int = 0) -> None:
    """Register and map values: anything JSON can carry unchanged (lists, not tuples)."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return
    if t is float:
        if math.isfinite(value):
            return
    elif _depth > 100:
        raise CRDTError(f"{what} is nested more than 100 levels deep")
    elif t is list:
        for item in value:
            check_value(item, what, _depth + 1)
        return
    elif t is dict:
        for k, item in value.items():
            if type(k) is not str:
                raise CRDTError(f"{what} must be JSON-safe: dict keys must be str, got {k!r}")
            check_value(item, what, _depth + 1)
        return
    raise CRDTError(
        f"{what} must be JSON-safe (str, int, finite float, bool, None, list, dict with str "
        f"keys) so the state can be serialised; got {t.__name__} {_short(value)}"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_replica(replica: Any) -> str:
    if type(replica) is not str or not replica:
        raise CRDTError(f"a replica id must be a non-empty str, got {_short(replica)}")
    return replica


# --- parsing helpers for from_dict (every failure is a CRDTError, nothing half-built) -----


def bad(where: str, why: str) -> CRDTError:
    return CRDTError(f"invalid CRDT data at {where}: {why}")


def want_dict(obj: Any, where: str, keys: set[str]) -> dict[str, Any]:
    if type(obj) is not dict:
        raise bad(where, f"expected an object, got {type(obj).__name__}")
    if set(obj) != keys:
        raise bad(where, f"expected the fields {sorted(keys)}, got {sorted(map(str, obj))}")
    return obj


def want_list(obj: Any, where: str, length: int | None = None) -> list[Any]:
    if type(obj) is not list:
        raise bad(where, f"expected a list, got {type(obj).__name__}")
    if length is not None and len(obj) != length:
        raise bad(where, f"expected {length} items, got {len(obj)}")
    return obj


def want_count(obj: Any, where: str, minimum: int = 0) -> int:
    if type(obj) is not int or obj < minimum:
        raise bad(where, f"expected an integer >= {minimum}, got {_short(obj)}")
    return obj


def want_replica(obj: Any, where: str) -> str:
    if type(obj) is not str or not obj:
        raise bad(where, f"expected a replica id (non-empty str), got {_short(obj)}")
    return obj


def want_key(obj: Any, where: str) -> Any:
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    try:
        check_key(obj, where)
    except CRDTError as exc:
        raise bad(where, str(exc)) from None
    return obj


def want_value(obj: Any, where: str) -> Any:
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    try:
        check_value(obj, where)
    except CRDTError as exc:
        raise bad(where, str(exc)) from None
    return obj


def want_dot(obj: Any, where: str) -> Dot:
    if (
        type(obj) is list
        and len(obj) == 2
        and type(obj[0]) is str
        and obj[0]
        and type(obj[1]) is int
        and obj[1] >= 1
    ):
        return (obj[0], obj[1])
    raise bad(where, f"expected a dot [replica, counter >= 1], got {_short(obj)}")


def want_timestamp(obj: Any, where: str) -> Timestamp:
    if (
        type(obj) is list
        and len(obj) == 3
        and type(obj[0]) is int
        and obj[0] >= 0
        and type(obj[1]) is int
        and obj[1] >= 0
        and type(obj[2]) is str
        and obj[2]
    ):
        return (obj[0], obj[1], obj[2])
    raise bad(where, f"expected a timestamp [ms >= 0, counter >= 0, replica], got {_short(obj)}")


def want_counts(obj: Any, where: str) -> dict[str, int]:
    if type(obj) is not dict:
        raise bad(where, f"expected an object, got {type(obj).__name__}")
    out: dict[str, int] = {}
    for replica, n in obj.items():
        want_replica(replica, where)
        out[replica] = want_count(n, f"{where}.{replica}", 1)
    return out


# --- causal contexts -----------------------------------------------------------------------


def compact(vv: dict[str, int], cloud: set[Dot]) -> None:
    """Fold cloud dots that extend the version vector into it, and drop covered ones."""
    if not cloud:
        return
    for dot in sorted(cloud):
        replica, n = dot
        seen = vv.get(replica, 0)
        if n <= seen:
            cloud.discard(dot)
        elif n == seen + 1:
            vv[replica] = n
            cloud.discard(dot)


def cc_join(
    vva: dict[str, int], cla: set[Dot], vvb: dict[str, int], clb: set[Dot]
) -> tuple[dict[str, int], set[Dot]]:
    if vva is vvb or vva == vvb:
        vv = dict(vva)
    else:
        vv = dict(vva)
        get = vv.get
        for replica, n in vvb.items():
            if n > get(replica, 0):
                vv[replica] = n
    cloud = cla | clb
    compact(vv, cloud)
    return vv, cloud


def next_dot(replica: str, vv: dict[str, int], cloud: set[Dot]) -> Dot:
    n = vv.get(replica, 0)
    for r, m in cloud:
        if r == replica and m > n:
            n = m
    return (replica, n + 1)


def add_dot(vv: dict[str, int], cloud: set[Dot], dot: Dot) -> None:
    cloud.add(dot)
    compact(vv, cloud)


def own_counter(replica: str, vv: dict[str, int], cloud: set[Dot]) -> int:
    return next_dot(replica, vv, cloud)[1] - 1


def seed(replica: str, floor: int, vv: dict[str, int], cloud: set[Dot]) -> None:
    if vv.get(replica, 0) < floor:
        vv[replica] = floor
        compact(vv, cloud)


def cc_state(vv: dict[str, int], cloud: set[Dot]) -> dict[str, Any]:
    return {"vv": dict(vv), "cloud": [list(d) for d in sorted(cloud)]}


def parse_cc(obj: Any, where: str) -> tuple[dict[str, int], set[Dot]]:
    body = want_dict(obj, where, {"vv", "cloud"})
    vv = want_counts(body["vv"], f"{where}.vv")
    cloud = {want_dot(d, f"{where}.cloud") for d in want_list(body["cloud"], f"{where}.cloud")}
    compact(vv, cloud)
    return vv, cloud


def covered(dot: Dot, vv: dict[str, int], cloud: set[Dot]) -> bool:
    return dot[1] <= vv.get(dot[0], 0) or dot in cloud


# --- the base class ------------------------------------------------------------------------


class CRDT:
    """Base of every CRDT here: a replica id plus a join-semilattice state.

    `merge` is pure (returns the join; inputs unchanged), `==` compares state (not the replica
    id), every mutator returns a delta (a state of the same type that a peer can merge), and
    `to_dict`/`from_dict` give a JSON-safe, versioned, type-tagged form.
    """

    __slots__ = ("replica",)

    TYPE: ClassVar[str] = ""

    replica: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE:
            _REGISTRY[cls.TYPE] = cls

    def merge(self, other: Self) -> Self:
        """The join of two states of the same type, as a new object with this replica id.

        Raises:
            TypeError: `other` is a different type.
        """
        if type(other) is not type(self):
            raise TypeError(
                f"cannot merge {type(self).__name__} with {type(other).__name__}: "
                "only states of the same CRDT type merge"
            )
        return self._join(other)

    def copy(self) -> Self:
        """An independent copy (same replica id and state)."""
        return self._join(self)

    @property
    def value(self) -> Any:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe, versioned, type-tagged, checksummed dict of this state.

        Example:
            >>> from resilience import crdt
            >>> c = crdt.GCounter("a"); _ = c.increment(2)
            >>> crdt.from_dict(c.to_dict()) == c
            True
        """
        body: dict[str, Any] = {
            "format": FORMAT,
            "v": VERSION,
            "type": self.TYPE,
            "replica": self.replica,
            "state": self._state(),
        }
        body["checksum"] = _checksum(body)
        return body

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._state_eq(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(replica={self.replica!r}, value={_short(self.value)})"

    # subclasses implement these
    def _join(self, other: Self) -> Self:  # pragma: no cover
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _state_eq(self, other: Self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _rebind(self, replica: str, hlc: HybridLogicalClock) -> Self:
        """A copy owned by another replica (used for ORMap values)."""
        out = self.copy()
        out.replica = replica
        return out

    @classmethod
    def _empty(cls, replica: str, hlc: HybridLogicalClock) -> Self:
        return cls(replica)  # type: ignore[call-arg]

    # Dot-based types (ORSet, MVRegister, ORMap) nested in an ORMap override these two, so a
    # value re-created after its key was removed never reuses a dot of an earlier one.
    def _counter(self, replica: str) -> int:
        """The highest dot counter of `replica` this state has seen (0: not dot-based)."""
        return 0

    def _seed(self, replica: str, floor: int) -> None:
        """Mark dots of `replica` up to `floor` as seen, so new ones are greater."""

    @classmethod
    def _from_state(cls, state: Any, replica: str, hlc: HybridLogicalClock) -> Self:
        raise NotImplementedError  # pragma: no cover


def _checksum(body: dict[str, Any]) -> str:
    text = json.dumps(
        [body["format"], body["v"], body["type"], body["replica"], body["state"]],
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_TOP = {"format", "v", "type", "replica", "state", "checksum"}


def from_dict(
    data: Any,
    *,
    replica: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
    hlc: HybridLogicalClock | None = None,
) -> CRDT:
    """Rebuild a CRDT from `to_dict()` output (possibly after a JSON round trip).

    Args:
        data: the dict.
        replica: the replica id of the rebuilt object (default: the one stored).
        clock: the clock of a new HybridLogicalClock for LWW types (if `hlc` is not given).
        hlc: a HybridLogicalClock to share with the rebuilt object.

    Returns:
        a new object of the stored type.

    Raises:
        CRDTError: the data is not ours, was altered, is of a future version, or is
            inconsistent. Nothing is half-built.

    Example:
        >>> from resilience import crdt
        >>> s = crdt.ORSet("a"); _ = s.add("x")
        >>> crdt.from_dict(s.to_dict(), replica="b").value
        frozenset({'x'})
    """
    if type(data) is not dict:
        raise CRDTError(f"CRDT data must be a dict (from to_dict()), got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise CRDTError("not resilience CRDT data (missing or foreign 'format' tag)")
    version = data.get("v")
    if type(version) is not int or version < 1:
        raise CRDTError(f"CRDT data has an invalid version {_short(version)}")
    if version > VERSION:
        raise CRDTError(
            f"CRDT data is format version {version}, written by a newer release; this release "
            f"reads version {VERSION}: upgrade resilience on this replica"
        )
    if set(data) != _TOP:
        raise CRDTError(f"CRDT data has unexpected fields {sorted(map(str, set(data) ^ _TOP))}")
    try:
        expected = _checksum(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise CRDTError(f"CRDT data is not JSON-safe: {type(exc).__name__}") from None
    if data["checksum"] != expected:
        raise CRDTError("CRDT data was altered (checksum mismatch); refusing to load it")
    cls = _REGISTRY.get(data["type"]) if type(data["type"]) is str else None
    if cls is None:
        raise CRDTError(f"unknown CRDT type {_short(data['type'])}")
    owner = want_replica(data["replica"], "replica") if replica is None else replica
    check_replica(owner)
    if hlc is None:
        hlc = HybridLogicalClock(clock=clock)
    try:
        return cls._from_state(data["state"], owner, hlc)
    except CRDTError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise bad("state", f"{type(exc).__name__}: {exc}") from None


def parse_inner(obj: Any, where: str, replica: str, hlc: HybridLogicalClock) -> CRDT:
    """A nested value (inside an ORMap): {"type": ..., "state": ...}."""
    body = want_dict(obj, where, {"type", "state"})
    cls = _REGISTRY.get(body["type"]) if type(body["type"]) is str else None
    if cls is None:
        raise bad(where, f"unknown CRDT type {_short(body['type'])}")
    return cls._from_state(body["state"], replica, hlc)


def inner_state(value: CRDT) -> dict[str, Any]:
    return {"type": value.TYPE, "state": value._state()}


class CausalCRDT(CRDT):
    """Base of the CRDTs whose state is a dot store plus a causal context: a version vector
    (`_vv`) and the dots beyond it (`_cloud`). ORSet, MVRegister and ORMap share it."""

    __slots__ = ("_cloud", "_entries", "_vv")

    _entries: Any
    _vv: dict[str, int]
    _cloud: set[Dot]

    def _state_eq(self, other: Self) -> bool:
        return (
            self._entries == other._entries
            and self._vv == other._vv
            and self._cloud == other._cloud
        )

    def _counter(self, replica: str) -> int:
        return own_counter(replica, self._vv, self._cloud)

    def _seed(self, replica: str, floor: int) -> None:
        seed(replica, floor, self._vv, self._cloud)


# --- hybrid logical clock ------------------------------------------------------------------


class HybridLogicalClock:
    """Timestamps for last-writer-wins types: physical milliseconds plus a logical counter.

    `now()` never goes backwards and never repeats, even when the wall clock stalls or steps
    back; `observe(ts)` moves it past a timestamp seen from another replica, so a later local
    write beats every write it has seen. LWW types add their replica id to the pair, so ties
    are broken the same way on every replica.

    Args:
        replica: optional owner id; only `stamp()` needs it.
        clock: where physical time comes from (`clock.time()`); pass a
            `resilience.testing.VirtualClock` in tests.
        max_drift: if set, `observe` refuses (CRDTError) a timestamp more than this many
            seconds ahead of the local clock.

    Example:
        >>> from resilience.testing import VirtualClock
        >>> hlc = HybridLogicalClock(clock=VirtualClock())
        >>> a = hlc.now(); b = hlc.now()
        >>> b > a, b[0] == a[0]
        (True, True)
    """

    __slots__ = ("_clock", "_counter", "_lock", "_ms", "max_drift", "replica")

    def __init__(
        self,
        replica: str | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_drift: float | None = None,
    ) -> None:
        self.replica = None if replica is None else check_replica(replica)
        self._clock = clock
        self._lock = threading.Lock()
        self._ms = 0
        self._counter = 0
        self.max_drift = max_drift

    def now(self) -> tuple[int, int]:
        """A fresh (milliseconds, counter) pair, greater than every one before it."""
        physical = int(self._clock.time() * 1000)
        with self._lock:
            if physical > self._ms:
                self._ms, self._counter = physical, 0
            else:
                self._counter += 1
            return (self._ms, self._counter)

    def observe(self, ms: int, counter: int = 0) -> None:
        """Move past a timestamp seen elsewhere (so the next `now()` is greater).

        Raises:
            CRDTError: `max_drift` is set and the timestamp is that far in the future.
        """
        if self.max_drift is not None:
            ahead = ms / 1000 - self._clock.time()
            if ahead > self.max_drift:
                raise CRDTError(
                    f"timestamp is {ahead:.3f} s ahead of the local clock "
                    f"(max_drift={self.max_drift}); check the clocks of the replicas"
                )
        with self._lock:
            if (ms, counter) > (self._ms, self._counter):
                self._ms, self._counter = ms, counter

    def stamp(self) -> Timestamp:
        """A full LWW timestamp `(ms, counter, replica)`: `now()` plus this clock's replica.

        Raises:
            CRDTError: the clock was made without a replica id.
        """
        if self.replica is None:
            raise CRDTError("HybridLogicalClock.stamp() needs a replica id: pass one to it")
        ms, counter = self.now()
        return (ms, counter, self.replica)

    def tick(self, after: Timestamp | None = None) -> tuple[int, int]:
        """`now()`, but also greater than `after` (a timestamp this replica has seen)."""
        if after is not None:
            self.observe(after[0], after[1])
        return self.now()

    def __repr__(self) -> str:
        return f"HybridLogicalClock(last=({self._ms}, {self._counter}))"


# --- small helpers shared by the types ------------------------------------------------------


def _amount(n: Any) -> int:
    if type(n) is not int or n < 0:
        raise CRDTError(f"a counter amount must be an int >= 0, got {n!r}")
    return n


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _own(value: Any) -> Any:
    """Registers keep their own copy of a list/dict value (the caller may change theirs)."""
    return _copy.deepcopy(value) if type(value) in (list, dict) else value


def _check_covered(dots: Any, vv: dict[str, int], cloud: set[Dot], where: str) -> None:
    for dot in dots:
        if not covered(dot, vv, cloud):
            raise bad(where, f"dot {list(dot)} is not in the causal context")
