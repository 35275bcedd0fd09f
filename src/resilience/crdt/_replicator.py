"""Keeping named CRDTs in sync between replicas over any byte transport.

Local mutations ship their deltas at once; `anti_entropy()` ships full states, which repairs
anything the network lost (joins are idempotent, commutative and associative, so duplicated,
reordered or late messages do no harm). The wire format is versioned JSON, never pickle.
"""

from __future__ import annotations

import json
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import CRDTError
from ._base import CRDT, HybridLogicalClock, check_replica, from_dict

__all__ = ["LoopbackTransport", "MemoryNetwork", "MemoryTransport", "Replicator", "Transport"]

WIRE_FORMAT = "resilience.crdt.sync"
WIRE_VERSION = 1

C = TypeVar("C", bound=CRDT)


@runtime_checkable
class Transport(Protocol):
    """What a Replicator needs from the network: `send(bytes)` to every peer (best effort:
    may lose, duplicate or reorder), and `receive()` returning the next message or None."""

    def send(self, data: bytes) -> None: ...

    def receive(self) -> bytes | None: ...


class MemoryNetwork:
    """An in-memory broadcast network for tests, with injected faults.

    Args:
        loss: probability that a message to one peer is dropped.
        duplicate: probability that it is delivered twice.
        reorder: deliver into a random place of the peer's inbox instead of the end.
        seed: seed of the fault generator (deterministic runs).

    The fault knobs are attributes: set `network.loss = 0` to heal the network.

    Example:
        >>> net = MemoryNetwork()
        >>> a, b = net.transport("a"), net.transport("b")
        >>> a.send(b"hi"); b.receive(), b.receive()
        (b'hi', None)
    """

    def __init__(
        self,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: bool = False,
        seed: int | None = None,
    ) -> None:
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._inboxes: dict[str, list[bytes]] = {}
        self.sent = 0
        self.dropped = 0

    def transport(self, name: str) -> MemoryTransport:
        """Join the network as `name`; returns that member's transport."""
        with self._lock:
            if name in self._inboxes:
                raise ValueError(f"{name!r} already joined this network")
            self._inboxes[name] = []
        return MemoryTransport(self, name)

    def _deliver(self, sender: str, data: bytes) -> None:
        rnd = self._random
        with self._lock:
            self.sent += 1
            for name, inbox in self._inboxes.items():
                if name == sender:
                    continue
                if rnd.random() < self.loss:
                    self.dropped += 1
                    continue
                copies = 2 if rnd.random() < self.duplicate else 1
                for _ in range(copies):
                    if self.reorder and inbox:
                        inbox.insert(rnd.randrange(len(inbox) + 1), data)
                    else:
                        inbox.append(data)

    def _take(self, name: str) -> bytes | None:
        with self._lock:
            inbox = self._inboxes[name]
            return inbox.pop(0) if inbox else None

    def pending(self) -> int:
        """Messages waiting in all inboxes."""
        with self._lock:
            return sum(len(i) for i in self._inboxes.values())


class MemoryTransport:
    """One member's end of a MemoryNetwork."""

    __slots__ = ("_network", "name")

    def __init__(self, network: MemoryNetwork, name: str) -> None:
        self._network = network
        self.name = name

    def send(self, data: bytes) -> None:
        self._network._deliver(self.name, bytes(data))

    def receive(self) -> bytes | None:
        return self._network._take(self.name)


class LoopbackTransport:
    """A lossless point-to-point link: `LoopbackTransport.pair()` returns two ends; what one
    sends, the other receives, in order.

    Example:
        >>> a, b = LoopbackTransport.pair()
        >>> a.send(b"x"); b.receive()
        b'x'
    """

    __slots__ = ("_inbox", "_lock", "_peer")

    def __init__(self) -> None:
        self._inbox: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._peer: LoopbackTransport = self  # alone, it talks to itself

    @classmethod
    def pair(cls) -> tuple[LoopbackTransport, LoopbackTransport]:
        a, b = cls(), cls()
        a._peer, b._peer = b, a
        return a, b

    def send(self, data: bytes) -> None:
        peer = self._peer
        with peer._lock:
            peer._inbox.append(bytes(data))

    def receive(self) -> bytes | None:
        with self._lock:
            return self._inbox.popleft() if self._inbox else None


class Replicator:
    """Keeps a set of named CRDTs in sync with peers over a `Transport`.

    Mutate through `update(name, fn)` (the delta returned by `fn` is shipped at once), call
    `poll()` to apply what arrived, and `anti_entropy()` now and then to ship full states
    (repairs lost deltas). Thread-safe; no lock is held while sending.

    Args:
        replica: this replica's id (new CRDTs adopted from peers get it).
        transport: where messages go and come from.
        clock: physical time for the HLC of LWW types adopted from peers.

    Raises:
        CRDTError: `receive` got bytes that are not a valid message (nothing is applied).

    Example:
        >>> from resilience import crdt
        >>> ta, tb = crdt.LoopbackTransport.pair()
        >>> a, b = crdt.Replicator("a", ta), crdt.Replicator("b", tb)
        >>> _ = a.add("visits", crdt.GCounter("a"))
        >>> _ = a.update("visits", lambda c: c.increment(3))
        >>> b.poll(), b["visits"].value
        (1, 3)
    """

    def __init__(self, replica: str, transport: Transport, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.replica = check_replica(replica)
        self.transport = transport
        self.hlc = HybridLogicalClock(clock=clock)
        self._clock = clock
        self._lock = threading.RLock()  # held across update()'s mutator: it must be quick
        self._objects: dict[str, CRDT] = {}
        self.stats = {"sent": 0, "received": 0, "rejected": 0}

    def add(self, name: str, obj: C) -> C:
        """Track `obj` under `name` (merged into what is already known under it); returns
        the tracked object."""
        if type(name) is not str or not name:
            raise CRDTError(f"a CRDT name must be a non-empty str, got {name!r}")
        with self._lock:
            known = self._objects.get(name)
            if known is not None:
                self._check_type(name, known, obj)
                obj = known.merge(obj)  # type: ignore[assignment]
            self._objects[name] = obj
        return obj

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            return self._objects[name]

    def __contains__(self, name: object) -> bool:
        return name in self._objects

    @property
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._objects)

    def update(self, name: str, mutate: Callable[[Any], C]) -> C:
        """Run `mutate(obj)` on the CRDT named `name` (it must return the delta, as every
        mutator does) and ship the delta to the peers; returns the delta."""
        with self._lock:
            obj = self._objects[name]
            delta = mutate(obj)
            if type(delta) is not type(obj):
                raise TypeError(
                    f"update({name!r}, fn): fn must return the mutator's delta "
                    f"({type(obj).__name__}), got {type(delta).__name__}"
                )
            message = self._encode("delta", name, delta)
        self._send(message)
        return delta

    def ship(self, name: str, delta: CRDT) -> None:
        """Send a delta produced by mutating `self[name]` directly."""
        self._send(self._encode("delta", name, delta))

    def anti_entropy(self) -> int:
        """Ship the full state of every tracked CRDT; returns the number of messages."""
        with self._lock:
            messages = [self._encode("state", n, o) for n, o in sorted(self._objects.items())]
        for message in messages:
            self._send(message)
        return len(messages)

    def receive(self, data: bytes) -> str:
        """Apply one message from a peer; returns the CRDT name it updated.

        Raises:
            CRDTError: not a valid message (foreign, future version, altered, type clash);
                nothing is applied.
        """
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise CRDTError("a sync message that is not JSON was rejected") from None
        if type(message) is not dict or message.get("format") != WIRE_FORMAT:
            raise CRDTError("a sync message of a foreign format was rejected")
        version = message.get("v")
        if type(version) is not int or version < 1:
            raise CRDTError(f"a sync message with an invalid version {version!r} was rejected")
        if version > WIRE_VERSION:
            raise CRDTError(
                f"a sync message of version {version} (from a newer release) was rejected; "
                f"this release speaks version {WIRE_VERSION}"
            )
        name = message.get("name")
        if set(message) != {"format", "v", "from", "kind", "name", "crdt"} or (
            type(name) is not str
            or not name
            or message["kind"] not in ("delta", "state")
            or type(message["from"]) is not str
        ):
            raise CRDTError("a malformed sync message was rejected")
        remote = from_dict(message["crdt"], replica=self.replica, hlc=self.hlc)
        with self._lock:
            known = self._objects.get(name)
            if known is None:
                self._objects[name] = remote
            else:
                self._check_type(name, known, remote)
                self._objects[name] = known.merge(remote)
        return name

    def poll(self, limit: int | None = None) -> int:
        """Apply every message waiting on the transport (at most `limit`); invalid ones are
        counted in `stats["rejected"]` and skipped. Returns how many were applied."""
        applied = 0
        while limit is None or applied < limit:
            data = self.transport.receive()
            if data is None:
                break
            try:
                self.receive(data)
            except CRDTError:
                with self._lock:
                    self.stats["rejected"] += 1
                continue
            with self._lock:
                self.stats["received"] += 1
            applied += 1
        return applied

    async def arun(
        self,
        *,
        poll_interval: float = 0.05,
        anti_entropy_interval: float = 5.0,
        until: Callable[[], bool] | None = None,
    ) -> None:
        """Async driver (asyncio or trio): poll every `poll_interval` seconds and ship full
        states every `anti_entropy_interval` seconds, until `until()` is true (or cancelled).
        Sleeps on the replicator's clock, so a VirtualClock makes it instant in tests."""
        next_anti_entropy = self._clock.monotonic()
        while until is None or not until():
            self.poll()
            now = self._clock.monotonic()
            if now >= next_anti_entropy:
                self.anti_entropy()
                next_anti_entropy = now + anti_entropy_interval
            await self._clock.asleep(poll_interval)

    def _check_type(self, name: str, known: CRDT, other: CRDT) -> None:
        if type(known) is not type(other):
            raise CRDTError(
                f"CRDT {name!r} is a {type(known).__name__} here but a {type(other).__name__} "
                "was received; the replicas disagree on its type"
            )

    def _encode(self, kind: str, name: str, obj: CRDT) -> bytes:
        message = {
            "format": WIRE_FORMAT,
            "v": WIRE_VERSION,
            "from": self.replica,
            "kind": kind,
            "name": name,
            "crdt": obj.to_dict(),
        }
        return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()

    def _send(self, message: bytes) -> None:
        self.transport.send(message)
        with self._lock:
            self.stats["sent"] += 1

    def __repr__(self) -> str:
        return f"Replicator(replica={self.replica!r}, names={self.names!r})"
