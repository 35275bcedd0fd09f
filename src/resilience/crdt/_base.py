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
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import CRDTError

__all__ = ["CRDT", "HybridLogicalClock", "Limits", "from_dict"]

FORMAT = "resilience.crdt"
VERSION = 1

Dot = tuple[str, int]
Timestamp = tuple[int, int, str]
"""An LWW timestamp: (physical milliseconds, logical counter, replica id)."""

_REGISTRY: dict[str, type[CRDT]] = {}


# --- bounds on what a peer can make a replica allocate ------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on data read from a peer or a store (`from_dict`, the `Replicator`).

    Every structure in a state is explicit (no counted ranges are ever expanded), so memory is
    linear in the bytes read; these bounds cap the bytes, the nesting, and the causal-context
    size that every later local operation walks. Exceeding one is a `CRDTError`.

    Attributes:
        max_bytes: one wire message (the Replicator refuses longer ones before parsing).
        max_depth: CRDTs nested inside ORMaps (an ORMap of ORMaps of ORSets is depth 3).
        max_context: version-vector entries plus dot-cloud dots in one causal context.
        max_entries: elements, keys, dots and values in one state, all levels together.
        max_counter: the largest dot counter, count or timestamp (milliseconds) accepted:
            2**53, what every JSON reader keeps exact.

    Example:
        >>> Limits().max_depth
        8
    """

    max_bytes: int = 16 * 1024 * 1024
    max_depth: int = 8
    max_context: int = 65_536
    max_entries: int = 1_000_000
    max_counter: int = 2**53


DEFAULT_LIMITS = Limits()


class Intake:
    """The state of one `from_dict`: the bounds, the running entry count, the nesting depth
    and the HLC whose `max_drift` refuses far-future timestamps."""

    __slots__ = ("depth", "entries", "hlc", "limits")

    def __init__(self, hlc: HybridLogicalClock, limits: Limits = DEFAULT_LIMITS) -> None:
        self.hlc = hlc
        self.limits = limits
        self.entries = 0
        self.depth = 0

    def count(self, n: int, where: str) -> None:
        self.entries += n
        if self.entries > self.limits.max_entries:
            raise bad(where, f"more than {self.limits.max_entries} entries (Limits.max_entries)")

    def timestamp(self, obj: Any, where: str) -> Timestamp:
        ts = want_timestamp(obj, where, self.limits.max_counter)
        if not self.hlc.admits(ts[0]):
            raise bad(
                where,
                f"timestamp is {ts[0] / 1000 - self.hlc._clock.time():.3f} s ahead of the local "
                f"clock (max_drift={self.hlc.max_drift}); a skewed replica's write is refused",
            )
        return ts


# --- JSON safety ---------------------------------------------------------------------------


class _Tagged(tuple[str, Any]):
    """A bool or float key, kept apart from the int that Python's dicts would confuse it with
    (`1 == True == 1.0` share a hash; as elements or keys they are three different things)."""

    __slots__ = ()


def ikey(value: Any, what: str) -> Any:
    """The internal form of an element or key: str, int and None as is; bool and float
    tagged with their type (so `1`, `True`, `1.0` and `"1"` are four keys)."""
    t = type(value)
    if t is str or t is int or value is None:
        return value
    if t is bool:
        return _Tagged(("bool", value))
    if t is float and math.isfinite(value):
        return _Tagged(("float", value + 0.0))  # -0.0 and 0.0 are one key
    check_key(value, what)  # raises
    return value  # pragma: no cover


def ekey(key: Any) -> Any:
    """The user's form of an internal key."""
    return key[1] if type(key) is _Tagged else key


def lookup(value: Any) -> Any:
    """The internal form of a key to look up (no check: an unhashable or foreign key is
    simply absent)."""
    t = type(value)
    if t is bool:
        return _Tagged(("bool", value))
    if t is float:
        return _Tagged(("float", value + 0.0))
    return value


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


def want_count(obj: Any, where: str, minimum: int = 0, maximum: int = 2**53) -> int:
    if type(obj) is not int or obj < minimum or obj > maximum:
        raise bad(where, f"expected an integer from {minimum} to {maximum}, got {_short(obj)}")
    return obj


def want_replica(obj: Any, where: str) -> str:
    if type(obj) is not str or not obj:
        raise bad(where, f"expected a replica id (non-empty str), got {_short(obj)}")
    return obj


def want_key(obj: Any, where: str) -> Any:
    """A key or element read from the wire, in its internal form."""
    try:
        return ikey(obj, where)
    except CRDTError as exc:
        raise bad(where, str(exc)) from None


def want_value(obj: Any, where: str) -> Any:
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    try:
        check_value(obj, where)
    except CRDTError as exc:
        raise bad(where, str(exc)) from None
    return obj


def want_dot(obj: Any, where: str, maximum: int = 2**53) -> Dot:
    if (
        type(obj) is list
        and len(obj) == 2
        and type(obj[0]) is str
        and obj[0]
        and type(obj[1]) is int
        and 1 <= obj[1] <= maximum
    ):
        return (obj[0], obj[1])
    raise bad(where, f"expected a dot [replica, 1 <= counter <= {maximum}], got {_short(obj)}")


def want_timestamp(obj: Any, where: str, maximum: int = 2**53) -> Timestamp:
    if (
        type(obj) is list
        and len(obj) == 3
        and type(obj[0]) is int
        and 0 <= obj[0] <= maximum
        and type(obj[1]) is int
        and 0 <= obj[1] <= maximum
        and type(obj[2]) is str
        and obj[2]
    ):
        return (obj[0], obj[1], obj[2])
    raise bad(where, f"expected a timestamp [ms >= 0, counter >= 0, replica], got {_short(obj)}")


def want_counts(obj: Any, where: str, maximum: int = 2**53) -> dict[str, int]:
    if type(obj) is not dict:
        raise bad(where, f"expected an object, got {type(obj).__name__}")
    out: dict[str, int] = {}
    for replica, n in obj.items():
        want_replica(replica, where)
        out[replica] = want_count(n, f"{where}.{replica}", 1, maximum)
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


def parse_cc(obj: Any, where: str, intake: Intake) -> tuple[dict[str, int], set[Dot]]:
    """A causal context from the wire. Its size is bounded (`Limits.max_context`): every
    local operation on the object walks the dot cloud, and a version-vector entry is one int
    however many dots it claims, so no claim is ever expanded."""
    body = want_dict(obj, where, {"vv", "cloud"})
    limits = intake.limits
    raw_vv, raw_cloud = body["vv"], body["cloud"]
    size = (len(raw_vv) if type(raw_vv) is dict else 0) + (
        len(raw_cloud) if type(raw_cloud) is list else 0
    )
    if size > limits.max_context:
        raise bad(where, f"a causal context of {size} entries (Limits.max_context is "
                  f"{limits.max_context})")  # fmt: skip
    intake.count(size, where)
    top = limits.max_counter
    vv = want_counts(raw_vv, f"{where}.vv", top)
    cloud = {want_dot(d, f"{where}.cloud", top) for d in want_list(raw_cloud, f"{where}.cloud")}
    compact(vv, cloud)
    return vv, cloud


def covered(dot: Dot, vv: dict[str, int], cloud: set[Dot]) -> bool:
    return dot[1] <= vv.get(dot[0], 0) or dot in cloud


def foreign_dots_seen(
    vv: dict[str, int], cloud: set[Dot], dvv: dict[str, int], dcloud: set[Dot], origin: str
) -> bool:
    """Whether every dot of a replica other than `origin` in a delta's context (dvv, dcloud)
    is already seen in (vv, cloud): a delta that removes or replaces what it saw from a third
    replica waits until this replica has seen it too. Work is bounded by the cloud sizes,
    whatever counters the delta claims."""
    get = vv.get
    budget = len(cloud)
    for r, n in dvv.items():
        if r == origin:
            continue
        have = get(r, 0)
        if have >= n:
            continue
        if n - have > budget:
            return False
        for m in range(have + 1, n + 1):
            if (r, m) not in cloud:
                return False
    return all(d[0] == origin or d[1] <= get(d[0], 0) or d in cloud for d in dcloud)


def in_value_order(entries: dict[Any, Any]) -> Any:
    """The items of `entries` in the order a `.value` dict is built: as stored, unless a bool
    or float key is present (a Python dict would then merge 1, True and 1.0 into whichever
    came last): then in the canonical order, the same on every replica."""
    for key in entries:
        if type(key) is _Tagged:
            return sorted(entries.items(), key=lambda item: sort_key(item[0]))
    return entries.items()


def sort_key(key: Any) -> str:
    """Entries are written in one order on every replica (equal states, equal bytes)."""
    return json.dumps(ekey(key))


# --- the base class ------------------------------------------------------------------------


class CRDT:
    """Base of every CRDT here: a replica id plus a join-semilattice state.

    `merge` is pure (returns the join; inputs unchanged), `==` compares state (not the replica
    id), every mutator returns a delta (a state of the same type that a peer can merge), and
    `to_dict`/`from_dict` give a JSON-safe, versioned, type-tagged form.

    Example:
        >>> from resilience import crdt
        >>> a, b = crdt.GCounter("a"), crdt.GCounter("b")
        >>> delta = a.increment(2)
        >>> isinstance(a, CRDT), b.merge(delta).value
        (True, 2)
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

    # Counters have no dots of their own: inside an ORMap each replica's contribution is kept
    # under that replica's latest dot, so removing the key cancels what the remover saw.
    _PER_REPLICA: ClassVar[bool] = False

    def _contribution(self, replica: str) -> Self:
        """The part of this value `replica` owns (per-replica types only)."""
        return self  # pragma: no cover - only per-replica types are asked

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

    def _ready(self, delta: Self, origin: str) -> bool:
        """Whether a delta from `origin` can be merged now: a dot-based type waits until
        the dots of other replicas that the delta saw are seen here too."""
        return True

    _CAUSAL: ClassVar[bool] = False  # dot-based: deltas from one sender apply in order

    def _context_size(self) -> int:
        return 0

    def _absorb(self, delta: Self) -> bool:
        """Merge `delta` into this object in place, if this type can do it cheaply; returns
        whether it did (the Replicator falls back to `merge`)."""
        return False

    def digest(self) -> str:
        """A short hash of the state (not the replica id): equal on replicas that converged.

        Example:
            >>> from resilience import crdt
            >>> a, b = crdt.GCounter("a"), crdt.GCounter("b")
            >>> _ = a.increment(); b = b.merge(a)
            >>> a.digest() == b.digest()
            True
        """
        text = json.dumps(
            [self.TYPE, self._state()], sort_keys=True, separators=(",", ":"), allow_nan=False
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @classmethod
    def _from_state(cls, state: Any, replica: str, intake: Intake) -> Self:
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
    limits: Limits = DEFAULT_LIMITS,
) -> CRDT:
    """Rebuild a CRDT from `to_dict()` output (possibly after a JSON round trip).

    Args:
        data: the dict.
        replica: the replica id of the rebuilt object (default: the one stored).
        clock: the clock of a new HybridLogicalClock for LWW types (if `hlc` is not given).
        hlc: a HybridLogicalClock to share with the rebuilt object; with `max_drift` set,
            a timestamp further ahead of its clock is refused.
        limits: bounds on sizes, counts and nesting (see `Limits`).

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
        return cls._from_state(data["state"], owner, Intake(hlc, limits))
    except CRDTError:
        raise
    except RecursionError:
        raise bad("state", "nested too deeply") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise bad("state", f"{type(exc).__name__}: {exc}") from None


def parse_inner(obj: Any, where: str, replica: str, intake: Intake) -> CRDT:
    """A nested value (inside an ORMap): {"type": ..., "state": ...}."""
    body = want_dict(obj, where, {"type", "state"})
    cls = _REGISTRY.get(body["type"]) if type(body["type"]) is str else None
    if cls is None:
        raise bad(where, f"unknown CRDT type {_short(body['type'])}")
    return cls._from_state(body["state"], replica, intake)


def inner_state(value: CRDT) -> dict[str, Any]:
    return {"type": value.TYPE, "state": value._state()}


class CausalCRDT(CRDT):
    """Base of the CRDTs whose state is a dot store plus a causal context: a version vector
    (`_vv`) and the dots beyond it (`_cloud`). ORSet, MVRegister and ORMap share it."""

    __slots__ = ("_cloud", "_entries", "_vv")

    _CAUSAL = True
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

    def _ready(self, delta: Self, origin: str) -> bool:
        return foreign_dots_seen(self._vv, self._cloud, delta._vv, delta._cloud, origin)

    def _context_size(self) -> int:
        return len(self._vv) + len(self._cloud)


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
        max_drift: if set, a timestamp more than this many seconds ahead of the local clock
            is refused: `observe` raises CRDTError, `from_dict` (and so the Replicator)
            refuses a state carrying one, and a local write that follows such a timestamp
            (merged in directly) is stamped from the local clock instead of following it, so
            local writes keep working.

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

    def admits(self, ms: int) -> bool:
        """Whether a timestamp of `ms` milliseconds is within `max_drift` of the local clock."""
        return self.max_drift is None or ms / 1000 - self._clock.time() <= self.max_drift

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
        """`now()`, but also greater than `after` (a timestamp this replica has seen), unless
        `after` is beyond `max_drift`: a skewed clock is not followed, and the write goes on."""
        if after is not None and self.admits(after[0]):
            with self._lock:
                if (after[0], after[1]) > (self._ms, self._counter):
                    self._ms, self._counter = after[0], after[1]
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
