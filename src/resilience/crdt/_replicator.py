"""Keeping named CRDTs in sync between replicas over any byte transport.

Local mutations ship their deltas at once; `anti_entropy()` ships full states (or, with
`digest=True`, a digest per CRDT that peers answer with the states that differ), which
repairs anything the network lost. Joins are idempotent, commutative and associative, so
duplicated and reordered messages do no harm; a delta of a dot-based type (ORSet, MVRegister,
ORMap) that arrives before one it depends on waits in a bounded buffer until it is causally
ready, so a late delta never brings back a removed element. The wire format is versioned
JSON, never pickle, optionally authenticated with HMAC-SHA256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from .. import events
from .._clock import SYSTEM_CLOCK, Clock
from .._errors import CRDTError
from ._base import CRDT, DEFAULT_LIMITS, HybridLogicalClock, Limits, check_replica, from_dict

__all__ = ["LoopbackTransport", "MemoryNetwork", "MemoryTransport", "Replicator", "Transport"]

WIRE_FORMAT = "resilience.crdt.sync"
WIRE_VERSION = 2
MAC_PREFIX = b"resilience.crdt.hmac-sha256:"
_MAC_LEN = 64  # hex digits
_REPLAY_WINDOW = 4096  # sequence numbers remembered per sender session
_SESSIONS = 8  # sessions (replicator lifetimes) remembered per sender
_V1_FIELDS = frozenset({"format", "v", "from", "kind", "name", "crdt"})
_V2_FIELDS = frozenset({"format", "v", "from", "session", "seq", "prev", "kind", "name", "crdt"})
_SENDERS = 4096  # senders remembered (least recently heard from forgotten first)
_DIGEST_FIELDS = frozenset({"format", "v", "from", "session", "seq", "kind", "digests"})

C = TypeVar("C", bound=CRDT)


@runtime_checkable
class Transport(Protocol):
    """What a Replicator needs from the network: `send(bytes)` to every peer (best effort:
    may lose, duplicate or reorder), and `receive()` returning the next message or None.

    A transport whose calls do network I/O sets a class attribute `blocking = True`; the
    Replicator's async driver (`arun`) then calls it from a worker thread.

    Example:
        >>> isinstance(MemoryNetwork().transport("a"), Transport)
        True
    """

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
    """One member's end of a MemoryNetwork.

    Example:
        >>> net = MemoryNetwork()
        >>> a, b = net.transport("a"), net.transport("b")
        >>> a.send(b"delta")
        >>> b.receive(), b.receive()
        (b'delta', None)
    """

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


class _Replay:
    """What is known of one sender session: the highest sequence number and a bitmap of the
    `_REPLAY_WINDOW` below it (reordered messages inside the window are still accepted), and
    per CRDT name the sequence number up to which its deltas are applied (`upto`)."""

    __slots__ = ("bits", "top", "upto")

    def __init__(self) -> None:
        self.top = 0
        self.bits = 0
        self.upto: dict[str, int] = {}

    def fresh(self, seq: int) -> bool:
        if seq > self.top:
            return True
        age = self.top - seq
        return age < _REPLAY_WINDOW and not (self.bits >> age) & 1

    def mark(self, seq: int) -> None:
        if seq > self.top:
            self.bits = ((self.bits << (seq - self.top)) | 1) & ((1 << _REPLAY_WINDOW) - 1)
            self.top = seq
        else:
            self.bits |= 1 << (self.top - seq)


class Replicator:
    """Keeps a set of named CRDTs in sync with peers over a `Transport`.

    Mutate through `update(name, fn)` (the delta returned by `fn` is shipped at once), call
    `poll()` to apply what arrived, and `anti_entropy()` now and then (repairs lost deltas).
    Thread-safe; no lock is held while sending.

    What a peer sends is bounded before it is trusted: the message size, the nesting, the
    causal-context size and the entry count (`limits`), timestamps beyond `max_drift`; with
    `secret`, every message carries an HMAC-SHA256 of its bytes (the sender id, a session id
    and a sequence number inside them), checked in constant time before anything is parsed.
    A dropped message is counted in `stats` and emitted as an `events.CRDTMessageDropped`.

    Args:
        replica: this replica's id (new CRDTs adopted from peers get it).
        transport: where messages go and come from.
        clock: physical time for the HLC of LWW types adopted from peers.
        secret: a shared key (bytes or str): messages without a valid MAC are dropped.
        max_drift: seconds: a state carrying an LWW timestamp further ahead of `clock` is
            refused (so a replica with a skewed clock cannot freeze a register). None: off.
        limits: bounds on what a message may make this replica allocate (see `Limits`).
        max_pending: deltas held back waiting for their causal predecessors (the oldest
            is dropped beyond it; anti-entropy repairs).

    Stats (`stats` dict): "sent", "received" (accepted), "rejected" (invalid,
    unauthenticated and oversized ones), "unauthenticated", "oversized", "replayed" (a
    sequence number seen before: a replay or a network duplicate), "buffered" (deltas
    waiting for their predecessors now), "overflow".

    Example:
        >>> from resilience import crdt
        >>> ta, tb = crdt.LoopbackTransport.pair()
        >>> a, b = crdt.Replicator("a", ta), crdt.Replicator("b", tb)
        >>> _ = a.add("visits", crdt.GCounter("a"))
        >>> _ = a.update("visits", lambda c: c.increment(3))
        >>> b.poll(), b["visits"].value
        (1, 3)
    """

    def __init__(
        self,
        replica: str,
        transport: Transport,
        *,
        clock: Clock = SYSTEM_CLOCK,
        secret: bytes | str | None = None,
        max_drift: float | None = 300.0,
        limits: Limits = DEFAULT_LIMITS,
        max_pending: int = 10_000,
    ) -> None:
        self.replica = check_replica(replica)
        self.transport = transport
        self.hlc = HybridLogicalClock(clock=clock, max_drift=max_drift)
        self.limits = limits
        self.max_pending = max_pending
        self._clock = clock
        self._key = secret.encode() if isinstance(secret, str) else secret
        if self._key is not None and len(self._key) < 16:
            raise CRDTError("a Replicator secret must be at least 16 bytes")
        self._lock = threading.RLock()  # held across update()'s mutator: it must be quick
        self._objects: dict[str, CRDT] = {}
        self._pending: dict[str, list[tuple[_Replay, str, int, int, CRDT]]] = {}
        self._last_delta: dict[str, int] = {}
        self._pending_count = 0
        self._session = os.urandom(8).hex()
        self._seq = 0
        self._seen: dict[str, OrderedDict[str, _Replay]] = {}
        self.stats = {
            "sent": 0,
            "received": 0,
            "rejected": 0,
            "unauthenticated": 0,
            "replayed": 0,
            "oversized": 0,
            "buffered": 0,
            "overflow": 0,
        }

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

    def digest(self) -> dict[str, str]:
        """Each tracked CRDT's `digest()`: replicas whose digests are equal have converged.

        Example:
            >>> from resilience import crdt
            >>> ta, tb = crdt.LoopbackTransport.pair()
            >>> a, b = crdt.Replicator("a", ta), crdt.Replicator("b", tb)
            >>> _ = a.add("n", crdt.GCounter("a")); _ = a.update("n", lambda c: c.increment())
            >>> _ = b.poll(); a.digest() == b.digest()
            True
        """
        with self._lock:
            return {name: obj.digest() for name, obj in self._objects.items()}

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
        with self._lock:
            message = self._encode("delta", name, delta)
        self._send(message)

    def anti_entropy(self, *, digest: bool = False) -> int:
        """Repair what the network lost; returns the number of messages sent.

        By default every tracked CRDT's full state is shipped. With `digest=True` one small
        message lists each CRDT's digest; a peer whose digest differs (or that lacks the
        name, or has one this replica lacks) answers with its full state, so converged
        replicas exchange only digests."""
        with self._lock:
            if digest:
                messages = [self._encode_digest()]
            else:
                messages = [self._encode("state", n, o) for n, o in sorted(self._objects.items())]
        for message in messages:
            self._send(message)
        return len(messages)

    def receive(self, data: bytes) -> str:
        """Apply one message from a peer; returns the CRDT name it updated ("" for a digest).

        A delta of a dot-based type is applied once it is causally ready: every earlier
        delta of the same sender for that name is applied (or a full state sent after it),
        and every dot of a third replica it saw is seen here. Until then it is held back
        (bounded by `max_pending`) and applied by a later `receive`; it still counts as
        received.

        Raises:
            CRDTError: not a valid message (unauthenticated, replayed, oversized, foreign,
                future version, altered, out of bounds, type clash); nothing is applied.
        """
        message = self._open(data)
        sender = message["from"]
        if message["kind"] == "digest":
            self._answer_digest(message["digests"])
            self._commit_seq(message)
            return ""
        name: str = message["name"]
        crdt_data = message["crdt"]
        if type(crdt_data) is dict and crdt_data.get("replica") != sender:
            raise self._drop("invalid", sender, "it carries another replica's state")
        try:
            remote = from_dict(crdt_data, replica=self.replica, hlc=self.hlc, limits=self.limits)
        except CRDTError as exc:
            raise self._drop("invalid", sender, str(exc)) from None
        seq, prev = message.get("seq", 0), message.get("prev", 0)
        if type(prev) is not int or (message["v"] > 1 and not 0 <= prev < seq):
            raise self._drop("invalid", sender, "a bad 'prev' sequence number")
        with self._lock:
            known = self._objects.get(name)
            if known is not None:
                self._check_type(name, known, remote)
            record = self._commit_seq(message)
            causal = message["kind"] == "delta" and remote._CAUSAL
            if causal and not self._is_ready(record, sender, name, prev, known, remote):
                self._hold(name, (record, sender, prev, seq, remote))
                return name
            self._apply(name, known, remote)
            record.upto[name] = max(record.upto.get(name, 0), seq)
            self._drain(name)
        return name

    def poll(self, limit: int | None = None) -> int:
        """Apply every message waiting on the transport (at most `limit`); invalid ones are
        counted in `stats` and skipped. Returns how many were accepted."""
        applied = 0
        while limit is None or applied < limit:
            data = self.transport.receive()
            if data is None:
                break
            try:
                self.receive(data)
            except CRDTError:
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
        digest: bool = False,
        until: Callable[[], bool] | None = None,
    ) -> None:
        """Async driver (asyncio or trio): poll every `poll_interval` seconds and run
        `anti_entropy(digest=digest)` every `anti_entropy_interval` seconds, until `until()`
        is true (or cancelled). Sleeps on the replicator's clock, so a VirtualClock makes it
        instant in tests. A `blocking` transport (Redis, HTTP) is called from a worker
        thread, so the event loop never waits on the network."""
        import functools

        import anyio.to_thread

        blocking = bool(getattr(self.transport, "blocking", False))
        next_anti_entropy = self._clock.monotonic()
        repair = functools.partial(self.anti_entropy, digest=digest)
        while until is None or not until():
            if blocking:
                await anyio.to_thread.run_sync(self.poll)
            else:
                self.poll()
            now = self._clock.monotonic()
            if now >= next_anti_entropy:
                if blocking:
                    await anyio.to_thread.run_sync(repair)
                else:
                    repair()
                next_anti_entropy = now + anti_entropy_interval
            await self._clock.asleep(poll_interval)

    # --- inside ------------------------------------------------------------------------

    def _drop(self, reason: str, sender: str, why: str) -> CRDTError:
        with self._lock:
            if reason != "replayed":  # a duplicate delivery looks the same: not an attack
                self.stats["rejected"] += 1
            if reason in self.stats:
                self.stats[reason] += 1
        if events.enabled:
            events.emit(events.CRDTMessageDropped(self.replica, reason, sender))
        return CRDTError(f"a sync message was dropped ({reason}): {why}")

    def _open(self, data: bytes) -> dict[str, Any]:
        """Check size and MAC, parse, check shape and freshness; raises CRDTError."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise self._drop("invalid", "", "not bytes")
        data = bytes(data)
        if len(data) > self.limits.max_bytes:
            raise self._drop(
                "oversized", "", f"{len(data)} bytes (Limits.max_bytes={self.limits.max_bytes})"
            )
        signed = data.startswith(MAC_PREFIX)
        if self._key is not None:
            cut = len(MAC_PREFIX) + _MAC_LEN
            if not signed or data[cut : cut + 1] != b":":
                raise self._drop("unauthenticated", "", "no MAC (this replicator has a secret)")
            mac, data = data[len(MAC_PREFIX) : cut], data[cut + 1 :]
            expected = hmac.new(self._key, data, hashlib.sha256).hexdigest().encode()
            if not hmac.compare_digest(mac, expected):
                raise self._drop("unauthenticated", "", "bad MAC (wrong key or altered)")
        elif signed:
            raise self._drop("unauthenticated", "", "signed, but this replicator has no secret")
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise self._drop("invalid", "", "not JSON") from None
        if type(message) is not dict or message.get("format") != WIRE_FORMAT:
            raise self._drop("invalid", "", "a foreign format")
        version = message.get("v")
        sender = message.get("from")
        sender = sender if type(sender) is str else ""
        if type(version) is not int or version < 1:
            raise self._drop("invalid", sender, f"an invalid version {version!r}")
        if version > WIRE_VERSION:
            raise self._drop(
                "invalid",
                sender,
                f"version {version} (from a newer release); this release speaks {WIRE_VERSION}",
            )
        kind = message.get("kind")
        fields = set(message)
        if version == 1:
            ok = fields == _V1_FIELDS and self._key is None  # v1 has no session to replay-check
        elif kind == "digest":
            ok = fields == _DIGEST_FIELDS and type(message["digests"]) is dict
        else:
            ok = fields == _V2_FIELDS
        if ok and version > 1:
            session, seq = message["session"], message["seq"]
            ok = type(session) is str and 0 < len(session) <= 64 and type(seq) is int
            ok = ok and 0 < seq < 2**63
        if ok and kind != "digest":
            name = message.get("name")
            ok = type(name) is str and bool(name) and kind in ("delta", "state")
        if not ok or not sender or sender == self.replica:
            raise self._drop("invalid", sender, "malformed (or sent by this replica id)")
        if version > 1:
            with self._lock:
                sessions = self._seen.get(sender)
                replay = sessions.get(message["session"]) if sessions else None
                if replay is not None and not replay.fresh(message["seq"]):
                    raise self._drop("replayed", sender, "seen before")
        return message

    def _commit_seq(self, message: dict[str, Any]) -> _Replay:
        """The sender session's record, with this message's sequence number marked seen."""
        sender = message["from"]
        session = message.get("session", "")
        with self._lock:
            sessions = self._seen.pop(sender, None)
            if sessions is None:
                sessions = OrderedDict()
                while len(self._seen) >= _SENDERS:
                    del self._seen[next(iter(self._seen))]
            self._seen[sender] = sessions  # most recently heard from: last
            record = sessions.get(session)
            if record is None:
                record = sessions[session] = _Replay()
                while len(sessions) > _SESSIONS:
                    sessions.popitem(last=False)
            sessions.move_to_end(session)
            if message["v"] > 1:
                record.mark(message["seq"])
            return record

    def _is_ready(
        self,
        record: _Replay,
        sender: str,
        name: str,
        prev: int,
        known: CRDT | None,
        delta: CRDT,
    ) -> bool:
        if prev > record.upto.get(name, 0):
            return False  # an earlier delta of this sender has not arrived yet
        if known is None:
            known = type(delta)._empty(self.replica, self.hlc)
        return known._ready(delta, sender)

    def _apply(self, name: str, known: CRDT | None, remote: CRDT) -> None:
        if (
            known is not None
            and known._context_size() + remote._context_size() <= self.limits.max_context
            and known._absorb(remote)  # a small delta into a big state: in place
        ):
            return
        merged = remote if known is None else known.merge(remote)
        if merged._context_size() > self.limits.max_context:
            raise self._drop(
                "invalid", "", f"{name!r} would exceed Limits.max_context causal entries"
            )
        self._objects[name] = merged

    def _hold(self, name: str, item: tuple[_Replay, str, int, int, CRDT]) -> None:
        self._pending.setdefault(name, []).append(item)
        self._pending_count += 1
        while self._pending_count > self.max_pending:
            oldest = max(self._pending, key=lambda n: len(self._pending[n]))
            self._pending[oldest].pop(0)
            if not self._pending[oldest]:
                del self._pending[oldest]
            self._pending_count -= 1
            self.stats["overflow"] += 1
            if events.enabled:
                events.emit(events.CRDTMessageDropped(self.replica, "overflow", ""))
        self.stats["buffered"] = self._pending_count

    def _drain(self, name: str) -> None:
        """Apply the held-back deltas of `name` that became ready (called with the lock)."""
        waiting = self._pending.get(name)
        progress = True
        while waiting and progress:
            progress = False
            for item in list(waiting):
                record, sender, prev, seq, delta = item
                known = self._objects.get(name)
                stale = seq <= record.upto.get(name, 0)  # a full state sent later has it
                if stale or (known is not None and type(known) is not type(delta)):
                    waiting.remove(item)
                    self._pending_count -= 1
                    continue
                if self._is_ready(record, sender, name, prev, known, delta):
                    waiting.remove(item)
                    self._pending_count -= 1
                    try:
                        self._apply(name, known, delta)
                    except CRDTError:
                        continue
                    record.upto[name] = max(record.upto.get(name, 0), seq)
                    progress = True
        if name in self._pending and not self._pending[name]:
            del self._pending[name]
        self.stats["buffered"] = self._pending_count

    def _answer_digest(self, digests: dict[str, Any]) -> None:
        """Ship the full state of every CRDT whose digest differs from the peer's (or that
        the peer lacks); a name only the peer has is answered by the peer's next round."""
        with self._lock:
            stale = [
                n for n, obj in sorted(self._objects.items()) if digests.get(n) != obj.digest()
            ]
            messages = [self._encode("state", n, self._objects[n]) for n in stale]
            missing = any(type(n) is str and n not in self._objects for n in digests)
            if missing and not stale:  # let the peer see that this replica lacks names
                messages.append(self._encode_digest())
        for message in messages:
            self._send(message)

    def _check_type(self, name: str, known: CRDT, other: CRDT) -> None:
        if type(known) is not type(other):
            raise self._drop(
                "invalid",
                "",
                f"CRDT {name!r} is a {type(known).__name__} here but a "
                f"{type(other).__name__} was received; the replicas disagree on its type",
            )

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _encode(self, kind: str, name: str, obj: CRDT) -> bytes:
        seq = self._next_seq()
        prev = self._last_delta.get(name, 0)
        if kind == "delta":
            self._last_delta[name] = seq
        message = {
            "format": WIRE_FORMAT,
            "v": WIRE_VERSION,
            "from": self.replica,
            "session": self._session,
            "seq": seq,
            "prev": prev,
            "kind": kind,
            "name": name,
            "crdt": obj.to_dict(),
        }
        return self._seal(message)

    def _encode_digest(self) -> bytes:
        message = {
            "format": WIRE_FORMAT,
            "v": WIRE_VERSION,
            "from": self.replica,
            "session": self._session,
            "seq": self._next_seq(),
            "kind": "digest",
            "digests": {n: o.digest() for n, o in self._objects.items()},
        }
        return self._seal(message)

    def _seal(self, message: dict[str, Any]) -> bytes:
        data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
        if self._key is None:
            return data
        mac = hmac.new(self._key, data, hashlib.sha256).hexdigest().encode()
        return MAC_PREFIX + mac + b":" + data

    def _send(self, message: bytes) -> None:
        self.transport.send(message)
        with self._lock:
            self.stats["sent"] += 1

    def __repr__(self) -> str:
        return f"Replicator(replica={self.replica!r}, names={self.names!r})"
