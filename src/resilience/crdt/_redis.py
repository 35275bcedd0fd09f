"""A Replicator transport over Redis Streams (extra `redis`).

Each replica appends its messages to its own stream, `{topic}:{replica}`, trimmed to about
`maxlen` entries (`XADD ... MAXLEN ~`), and registers itself in the set `{topic}:replicas`.
`receive()` reads every other registered replica's stream with one `XREAD` from the last
entry id it has read of each (its consumer position), which is kept in memory and in the hash
`{topic}:positions:{replica}`, so a process restarted with the same replica id resumes where
it stopped. A reader that falls more than `maxlen` entries behind a peer misses the trimmed
deltas: the Replicator's causal buffer holds back what depends on them and anti-entropy
(`Replicator.anti_entropy(digest=True)`) repairs it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import CRDTError
from ._base import check_replica

if TYPE_CHECKING:
    import redis as _redis

__all__ = ["RedisStreamTransport"]


class RedisStreamTransport:
    """Replicas in different processes or hosts, synced through one Redis.

    Args:
        redis: a `redis://` URL or a `redis.Redis` client (its connection is not closed by
            `close()`).
        topic: the name shared by the replicas that sync with each other (a key prefix).
        replica: this replica's id (use the Replicator's).
        maxlen: each replica's stream is trimmed to about this many entries (Redis keeps
            at least that many, a few more between trims). Size it to what a peer may fall
            behind between two polls; anti-entropy repairs anything older.
        batch: entries read per `XREAD`.
        refresh: seconds between re-reads of the set of replicas (new peers are found).
        clock: time for `refresh` (a VirtualClock in tests).

    Sends and receives are best effort, as the `Transport` protocol says: a Redis error is
    counted (`stats["errors"]`) and the message is lost, never raised into the caller;
    anti-entropy repairs once Redis is back. The calls block on the network
    (`blocking = True`), so `Replicator.arun` runs them in a worker thread.

    Example (not run here: it needs a Redis):

        rep = crdt.Replicator("site-1", crdt.RedisStreamTransport(url, "inventory", "site-1"))
        rep.add("stock", crdt.LWWMap("site-1"))
        rep.update("stock", lambda m: m.set("sku-1", 5))   # appended to inventory:site-1
        rep.poll()                                         # reads the other sites' streams
        rep.anti_entropy(digest=True)                      # now and then

    Example:
        >>> transport = RedisStreamTransport("redis://localhost:6379/0", topic="stock", replica="a")
        >>> transport  # connects on first use
        RedisStreamTransport(topic='stock', replica='a')
        >>> transport.close()
    """

    blocking = True

    def __init__(
        self,
        redis: str | _redis.Redis,
        topic: str,
        replica: str,
        *,
        maxlen: int = 10_000,
        batch: int = 500,
        refresh: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        import redis as redis_py

        if type(topic) is not str or not topic:
            raise CRDTError(f"a RedisStreamTransport topic must be a non-empty str: {topic!r}")
        self.replica = check_replica(replica)
        self.topic = topic
        self.maxlen = maxlen
        self.batch = batch
        self.refresh = refresh
        self._clock = clock
        if isinstance(redis, str):
            self._redis: Any = redis_py.Redis.from_url(
                redis, socket_timeout=5, socket_connect_timeout=5
            )
            self._owned = True
        else:
            self._redis = redis
            self._owned = False
        self._errors = redis_py.RedisError
        self.stream = f"{topic}:{replica}"
        self._members = f"{topic}:replicas"
        self._positions_key = f"{topic}:positions:{replica}"
        self._lock = threading.Lock()
        self._inbox: deque[bytes] = deque()
        self._positions: dict[str, str] = {}
        self._peers: list[str] = []
        self._next_refresh = float("-inf")
        self.stats = {
            "sent": 0,
            "received": 0,
            "bytes_sent": 0,
            "bytes_received": 0,
            "errors": 0,
        }
        try:
            self._redis.sadd(self._members, replica)
            stored = self._redis.hgetall(self._positions_key)
            self._positions = {_text(k): _text(v) for k, v in stored.items()}
        except self._errors:
            self.stats["errors"] += 1  # registered at the first send that reaches Redis

    @property
    def peers(self) -> list[str]:
        """The streams of the other replicas of this topic, as last read from Redis."""
        return list(self._peers)

    def send(self, data: bytes) -> None:
        """Append `data` to this replica's stream (trimmed to about `maxlen`)."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.sadd(self._members, self.replica)
            pipe.xadd(self.stream, {b"m": bytes(data)}, maxlen=self.maxlen, approximate=True)
            pipe.execute()
        except self._errors:
            with self._lock:
                self.stats["errors"] += 1
            return
        with self._lock:
            self.stats["sent"] += 1
            self.stats["bytes_sent"] += len(data)

    def receive(self) -> bytes | None:
        """The next message from a peer's stream, or None when there is none right now."""
        with self._lock:
            if self._inbox:
                return self._inbox.popleft()
        self.fetch()
        with self._lock:
            return self._inbox.popleft() if self._inbox else None

    def fetch(self, block: float | None = None) -> int:
        """Read up to `batch` new entries from the peers' streams into the inbox (waiting up to
        `block` seconds for one, if given); returns how many were read."""
        try:
            self._refresh_peers()
            with self._lock:
                streams = {p: self._positions.get(p, "0-0") for p in self._peers}
            if not streams:
                return 0
            kwargs: dict[str, Any] = {"count": self.batch}
            if block is not None:
                kwargs["block"] = max(1, int(block * 1000))
            reply = self._redis.xread(streams, **kwargs)
        except self._errors:
            with self._lock:
                self.stats["errors"] += 1
            return 0
        got = 0
        moved: dict[str, str] = {}
        with self._lock:
            for stream, entries in reply or ():
                name = _text(stream)
                for entry_id, fields in entries:
                    moved[name] = _text(entry_id)
                    data = fields.get(b"m", fields.get("m"))
                    if data is None:
                        continue
                    data = data.encode() if isinstance(data, str) else bytes(data)
                    self._inbox.append(data)
                    self.stats["received"] += 1
                    self.stats["bytes_received"] += len(data)
                    got += 1
            self._positions.update(moved)
        if moved:
            try:
                self._redis.hset(self._positions_key, mapping=moved)
            except self._errors:
                with self._lock:
                    self.stats["errors"] += 1
        return got

    def _refresh_peers(self) -> None:
        now = self._clock.monotonic()
        if now < self._next_refresh:
            return
        members = sorted(_text(m) for m in self._redis.smembers(self._members))
        peers = [f"{self.topic}:{m}" for m in members if m != self.replica]
        with self._lock:
            self._peers = peers
            self._next_refresh = now + self.refresh

    def close(self) -> None:
        """Close the connection (only if this transport opened it from a URL)."""
        if self._owned:
            self._redis.close()

    def __repr__(self) -> str:
        return f"RedisStreamTransport(topic={self.topic!r}, replica={self.replica!r})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
