"""Conflict-free replicated data types with delta-state replication.

Every type is a join-semilattice: `a.merge(b)` is pure, commutative, associative and
idempotent, so replicas that have seen the same updates hold equal states whatever the order.
Every mutator changes the object and returns its delta (a small state of the same type) for
peers to merge. `to_dict()` / `from_dict()` give a JSON-safe, versioned, type-tagged form.

The types live in private modules (`_counters`, `_registers`, `_orset`, `_maps`), the shared
machinery in `_base` and replication in `_replicator`; everything public is listed here.

Example:
    >>> from resilience import crdt
    >>> a, b = crdt.ORSet("a"), crdt.ORSet("b")
    >>> delta = a.add("milk")
    >>> b.merge(delta) == a
    True
    >>> sorted(a.merge(b).value)
    ['milk']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import CRDTError
from ._base import CRDT, HybridLogicalClock, Limits, from_dict
from ._counters import GCounter, PNCounter
from ._maps import LWWMap, ORMap
from ._orset import ORSet
from ._registers import LWWRegister, MVRegister
from ._replicator import LoopbackTransport, MemoryNetwork, MemoryTransport, Replicator, Transport

if TYPE_CHECKING:
    from ._http import HttpTransport
    from ._redis import RedisStreamTransport

__all__ = [
    "CRDT",
    "CRDTError",
    "GCounter",
    "HttpTransport",
    "HybridLogicalClock",
    "LWWMap",
    "LWWRegister",
    "Limits",
    "LoopbackTransport",
    "MVRegister",
    "MemoryNetwork",
    "MemoryTransport",
    "ORMap",
    "ORSet",
    "PNCounter",
    "RedisStreamTransport",
    "Replicator",
    "Transport",
    "from_dict",
]


def __getattr__(name: str) -> Any:
    # the network transports import redis / httpx: only when asked for
    if name == "RedisStreamTransport":
        from ._redis import RedisStreamTransport

        return RedisStreamTransport
    if name == "HttpTransport":
        from ._http import HttpTransport

        return HttpTransport
    raise AttributeError(f"module 'resilience.crdt' has no attribute {name!r}")
