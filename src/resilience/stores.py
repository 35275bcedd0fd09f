"""Where shared state lives: breaker state, rate-limit buckets, CRDT replicas.

A store maps string keys to small JSON-safe records (dicts). Primitives keep their hot-path
state in memory and write a record to the store on the rare events that others must see (a
breaker opening, say), and read it back when they start, so state survives a restart with a
persistent store and is shared between processes with a shared one.

`MemoryStore` (the default) lives in the process. SQLite and Redis stores implement the same
`Store` protocol; every operation on it is atomic.

Example:
    >>> from resilience.stores import MemoryStore
    >>> store = MemoryStore()
    >>> store.compare_and_set("breaker:payments", None, {"state": "open", "version": 1})
    True
    >>> store.get("breaker:payments")["state"]
    'open'
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from ._errors import ConfigError

__all__ = ["MemoryStore", "Record", "Store"]

Record = dict[str, Any]
"""A store's value: a JSON-safe dict."""


@runtime_checkable
class Store(Protocol):
    """The protocol every store implements. All operations are atomic.

    `shared` is True when other processes (or hosts) see the same records, so a primitive
    must re-read rather than trust its in-memory copy.
    """

    shared: bool

    def get(self, key: str) -> Record | None:
        """The record at `key` (a copy), or None."""
        ...

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Store `value` at `key`, replacing what was there."""
        ...

    def compare_and_set(
        self, key: str, expected: Mapping[str, Any] | None, value: Mapping[str, Any]
    ) -> bool:
        """Store `value` only if the record equals `expected` (None: absent). True if stored."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key` (no error if absent)."""
        ...

    def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: float,
        tokens: float = 1.0,
    ) -> float:
        """Token bucket: take `tokens` from the bucket at `key` if it holds them.

        Returns 0.0 when they were taken, else the seconds until they will be available
        (nothing taken). A bucket starts full; `now` is the caller's clock reading.
        """
        ...


class MemoryStore:
    """An in-process store: a dict behind a lock. The default for every primitive.

    Records are validated as JSON-safe and copied in and out, so a primitive behaves the same
    here as on a persistent store.

    Example:
        >>> store = MemoryStore()
        >>> store.take_tokens("api", capacity=2, refill_per_second=1, now=0.0)
        0.0
    """

    shared = False

    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Record | None:
        raw = self._data.get(key)
        return None if raw is None else dict(json.loads(raw))

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        raw = _encode(value)
        with self._lock:
            self._data[key] = raw

    def compare_and_set(
        self, key: str, expected: Mapping[str, Any] | None, value: Mapping[str, Any]
    ) -> bool:
        raw = _encode(value)
        with self._lock:
            current = self._data.get(key)
            if expected is None:
                if current is not None:
                    return False
            elif current is None or current != _encode(expected):
                return False  # both sides in canonical JSON: (1, 2) and [1, 2] compare equal
            self._data[key] = raw
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)
            self._buckets.pop(key, None)

    def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: float,
        tokens: float = 1.0,
    ) -> float:
        with self._lock:
            level, stamp = self._buckets.get(key, (capacity, now))
            return _take(self._buckets, key, level, stamp, capacity, refill_per_second, now, tokens)

    def keys(self) -> list[str]:
        """Every key with a record (for inspection)."""
        with self._lock:
            return sorted(self._data)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._data)} records)"


def _take(
    buckets: dict[str, tuple[float, float]],
    key: str,
    level: float,
    stamp: float,
    capacity: float,
    rate: float,
    now: float,
    tokens: float,
) -> float:
    """Token-bucket arithmetic shared by the stores that keep buckets in a dict."""
    if not tokens >= 0:  # negative would fill the bucket; NaN would poison it
        raise ConfigError([("tokens", f"must be >= 0, got {tokens!r}")], operation=key)
    if now > stamp:
        level = level + (now - stamp) * rate
        stamp = now
    level = min(level, capacity)  # also when the caller lowered the capacity
    if tokens > capacity:
        buckets[key] = (level, stamp)
        return math.inf  # can never be satisfied: say so instead of a wait that will not help
    if level >= tokens:
        buckets[key] = (level - tokens, stamp)
        return 0.0
    buckets[key] = (level, stamp)
    if rate <= 0:
        return math.inf
    return (tokens - level) / rate


def _encode(value: Mapping[str, Any]) -> str:
    try:
        record = dict(value)
        raw = json.dumps(record, allow_nan=False, separators=(",", ":"), sort_keys=True)
        _check_keys(record)  # after dumps, which has refused circular records
        return raw
    except (TypeError, ValueError) as exc:
        raise TypeError(f"store records must be JSON-safe dicts: {exc}") from None


def _check_keys(value: object) -> None:
    # json.dumps would turn {1: x} into {"1": x}: what was stored would not be what get() returns.
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, got {type(key).__name__} {key!r}")
            _check_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_keys(item)
