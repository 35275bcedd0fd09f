"""A durable offline priority queue (an outbox) on SQLite, with leases, dead letters and drain.

`OfflineQueue` stores JSON payloads in one SQLite file in WAL mode. A `put` that returned has
been committed with `synchronous=FULL`: it survives a crash of the process (and of the machine).
Items come out by priority (CRITICAL, HIGH, NORMAL, LOW) and, within a priority, in the order
they were put (their `seq`). A consumer *leases* items for a visibility timeout: if it crashes,
its items come back when the lease expires. `drain(send)` delivers everything to a sink, within
item-rate and bandwidth budgets, and dead-letters what cannot be delivered.

Example:
    >>> import resilience as rs
    >>> q = rs.OfflineQueue(":memory:")
    >>> q.put({"op": "a"}, priority=rs.Priority.LOW)
    1
    >>> q.put({"op": "b"}, priority=rs.Priority.CRITICAL)
    2
    >>> sent = []
    >>> q.drain(lambda item: sent.append(item.payload["op"])).delivered
    2
    >>> sent
    ['b', 'a']

The file's layout (schema version 2; `PRAGMA application_id` = 0x52534C51 "RSLQ" and
`PRAGMA user_version` = 2, checked on every open):

    items(id INTEGER PRIMARY KEY,     -- (rank << 56) | seq; dead letters: (4 << 56) | seq
          rank INTEGER (0 CRITICAL .. 3 LOW), payload TEXT (JSON), key TEXT,
          attempts INTEGER, lease_until REAL (wall time; NULL or past: not leased),
          lease_id INTEGER, created_at REAL, error TEXT, dead_at REAL)
    counts(bucket INTEGER PRIMARY KEY, n INTEGER)  -- live items per rank 0..3; 4: dead;
                                                   -- 5: the last seq handed out
    unique index items_key(key) WHERE key IS NOT NULL

The table's own key is the serving order (priority, then seq), so no index has to be kept
in step on put, lease or ack: a put or an ack writes the item's page and the `counts` page,
nothing else. A lease writes `lease_until`/`lease_id` in place; the next lease walks the
table from its start and skips the items whose lease has not expired, so its cost grows with
the items in flight, never with the queue's length.
"""

from __future__ import annotations

import contextlib
import enum
import json
import json.scanner
import operator
import os
import random
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from . import events
from ._clock import SYSTEM_CLOCK, Clock
from ._deadline import cannot_hold
from ._errors import QueueError, QueueFull
from ._sqlite import busy_retry, header_problem, make_ours
from ._validate import Errors, raise_if
from .classify import DEFAULT_CLASSIFIER, Classifier
from .stores import MAX_DEPTH, _json_problem, _key_problem

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "DeadLetter",
    "DrainReport",
    "InvalidPayload",
    "Item",
    "Lease",
    "OfflineQueue",
    "Priority",
    "QueueStats",
]

APPLICATION_ID = 0x52534C51
"""`PRAGMA application_id` of an OfflineQueue file ("RSLQ")."""

SCHEMA_VERSION = 2
"""`PRAGMA user_version` of the files this version writes; other versions are refused."""

_SHIFT = 56  # an item's id is (rank << 56) | seq
_MASK = (1 << _SHIFT) - 1
_DEAD_BASE = 4 << _SHIFT  # dead letters: (4 << 56) | seq, after every live item
_SEQ_BUCKET = 5  # counts row holding the last seq handed out
_INF = float("inf")
_DEAD_BUCKET = 4

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    rank INTEGER NOT NULL,
    payload TEXT NOT NULL,
    key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until REAL,
    lease_id INTEGER,
    created_at REAL NOT NULL,
    error TEXT,
    dead_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS items_key ON items(key) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS counts (bucket INTEGER PRIMARY KEY, n INTEGER NOT NULL);
INSERT OR IGNORE INTO counts(bucket, n) VALUES (0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0);
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""


_OWN_NAMES = frozenset({"items", "items_key", "counts"})

_SELECT_READY = (
    f"SELECT id, payload, attempts, key FROM items WHERE id < {_DEAD_BASE} "
    "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY id LIMIT ?"
)
_LEASE_ONE = "UPDATE items SET lease_until = ?, lease_id = ? WHERE id = ?"
_LEASE_RANGE = (
    "UPDATE items SET lease_until = ?, lease_id = ? WHERE id BETWEEN ? AND ? "
    "AND (lease_until IS NULL OR lease_until <= ?)"
)
_ACK_ONE = "DELETE FROM items WHERE id = ? AND lease_id = ?"
_ACK_RANGE = "DELETE FROM items WHERE id BETWEEN ? AND ? AND lease_id = ?"
_COUNT = "UPDATE counts SET n = n + ? WHERE bucket = ?"
_NEXT_SEQS = f"UPDATE counts SET n = n + ? WHERE bucket = {_SEQ_BUCKET}"
_LAST_SEQ = f"SELECT n FROM counts WHERE bucket = {_SEQ_BUCKET}"
_INSERT = "INSERT INTO items(id, rank, payload, key, created_at) VALUES (?, ?, ?, ?, ?)"
_DEAD_IDS = f" AND id IN (SELECT value + {_DEAD_BASE} FROM json_each(?))"
# The live ids a list of seqs may have (the rank is not known): a JSON list of seqs -> ids.
_LIVE_IDS = (
    f"SELECT s.value + (r.value << {_SHIFT}) FROM json_each(?) AS s, json_each('[0, 1, 2, 3]') AS r"
)


class Priority(enum.IntEnum):
    """How urgent an item is: CRITICAL > HIGH > NORMAL > LOW.

    Example:
        >>> Priority.CRITICAL > Priority.HIGH > Priority.NORMAL > Priority.LOW
        True
    """

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


_BY_RANK = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)
_RANK_OF: dict[object, int] = {p: 3 - int(p) for p in Priority}


def _rank(priority: object) -> int:
    rank = _RANK_OF.get(priority)
    if rank is not None and not isinstance(priority, bool):
        return rank
    if isinstance(priority, str):
        try:
            return _RANK_OF[Priority[priority.upper()]]
        except KeyError:
            pass
    raise TypeError(
        f"priority must be a Priority (CRITICAL, HIGH, NORMAL, LOW), got "
        f"{type(priority).__name__} {priority!r}"
    )


_dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _loads(text: str) -> Any:
    # The C scanner straight away: what we stored is compact JSON with no surrounding
    # whitespace, so json.loads' two whitespace regex matches per item are skipped.
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the proper JSONDecodeError
    return value if end == len(text) else json.loads(text)


class InvalidPayload(QueueError, TypeError):
    """A payload or key the queue refuses at `put` (nothing stored): not JSON-serialisable,
    a non-string dict key (JSON would turn {1: "x"} into {"1": "x"}), nested more than
    `resilience.stores.MAX_DEPTH` deep (it could not be read back at drain), or a lone
    surrogate. Also a `TypeError`, as before."""


def _encode(payload: object) -> str:
    try:
        text = _dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(
            f"payload must be JSON-serialisable; got {type(payload).__name__} ({exc})"
        ) from None
    except RecursionError:
        raise InvalidPayload(f"payload must be nested at most {MAX_DEPTH} deep") from None
    _check_payload(payload, text)
    return text


def _check_payload(payload: object, text: str) -> None:
    problem = _json_problem(payload, text)
    if problem is not None:
        raise InvalidPayload(f"payload refused: {problem}")


def _check_key(key: object) -> None:
    if key is not None:
        problem = _key_problem(key)
        if problem is not None:
            raise InvalidPayload(f"key must be a str or None: {problem}")


@dataclass(frozen=True, slots=True)
class Item:
    """One queued item, as a lease or `items()` returns it.

    Attributes:
        seq: its sequence number (unique, increasing in put order, never reused).
        payload: the JSON value that was put.
        priority: its `Priority`.
        attempts: how many deliveries of it failed so far.
        key: its idempotency key, or None.
        size: the length of its JSON encoding in bytes (what `bytes_per_second` counts).
    """

    seq: int
    payload: Any
    priority: Priority
    attempts: int
    key: str | None
    size: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An item that will not be delivered again unless requeued (`requeue_dead`).

    Attributes:
        seq, payload, priority, attempts, key: as in `Item`.
        reason: why: "max_attempts: <error>" or "permanent: <error>".
        failed_at: wall-clock time (seconds since the epoch) when it was dead-lettered.
    """

    seq: int
    payload: Any
    priority: Priority
    attempts: int
    key: str | None
    reason: str
    failed_at: float


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What one `drain` did.

    Attributes:
        delivered: items sent and acked.
        dead_lettered: items moved to the dead letters during this drain.
        remaining: live items left in the queue when it returned (leased ones included).
        duration: seconds it took (on the queue's clock).
        error: the TRANSIENT error that stopped it (None when it emptied the queue).
    """

    delivered: int
    dead_lettered: int
    remaining: int
    duration: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A snapshot of a queue.

    Attributes:
        depth: live items (ready and leased), as `len(q)`.
        by_priority: live items per priority name.
        leased: items under a lease that has not expired (counting them reads the table).
        dead_letters: items in the dead letters.
        max_items: the queue's limit (None: unbounded).
    """

    depth: int
    by_priority: dict[str, int]
    leased: int
    dead_letters: int
    max_items: int | None


class _Backoff(Protocol):
    def delay(self, attempt: int, previous: float | None = None) -> float: ...


class _Pacer:
    """Sans-I/O pacing for the item-rate and bandwidth budgets of a drain."""

    __slots__ = ("_bytes_ready", "_items_ready", "bytes_per_second", "rate")

    def __init__(self, rate: float | None, bytes_per_second: float | None) -> None:
        self.rate = rate
        self.bytes_per_second = bytes_per_second
        self._items_ready = float("-inf")
        self._bytes_ready = float("-inf")

    def reserve(self, now: float, size: int) -> float:
        """Book the next send of `size` bytes; return how long to wait before it."""
        start = max(now, self._items_ready, self._bytes_ready)
        if self.rate is not None:
            self._items_ready = start + 1.0 / self.rate
        if self.bytes_per_second is not None:
            self._bytes_ready = start + size / self.bytes_per_second
        return start - now


class Lease:
    """A context manager over leased items: acks them on a clean exit, returns them on error.

    `with q.lease(n) as batch:` gives a list of `Item`. On a clean exit every item still held
    by this lease is acked (deleted). If the block raises an `Exception`, its items are nacked
    (attempts + 1; available again at once, or dead-lettered at `max_attempts`); on any other
    exit (KeyboardInterrupt, cancellation) they are released without counting an attempt.
    Items you `ack` or `nack` yourself inside the block are left as you set them. A lease that
    outlived its `visibility` still settles the items nobody else has leased since; the ones
    another consumer took are left to that consumer.
    """

    __slots__ = ("_lease_id", "_n", "_queue", "_taken", "_visibility", "items")

    def __init__(self, queue: OfflineQueue, n: int, visibility: float) -> None:
        self._queue = queue
        self._n = n
        self._visibility = visibility
        self._lease_id = 0
        self._taken: tuple[Item, ...] = ()
        self.items: list[Item] = []

    def __enter__(self) -> list[Item]:
        self._lease_id, self.items = self._queue._lease(self._n, self._visibility)
        self._taken = tuple(self.items)
        return self.items

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        items = self.items
        if not items:
            return
        if exc_type is None:
            # Untouched list: these are all the items the lease holds (the ones acked or
            # nacked in the block no longer carry its lease_id), so the ack may use ranges.
            taken = self._taken
            whole = len(items) == len(taken) and all(map(operator.is_, items, taken))
            self._queue._ack_leased(items, self._lease_id, whole)
            return
        seqs = [item.seq for item in items]
        if issubclass(exc_type, Exception):
            self._queue._fail(seqs, f"{exc_type.__name__}: {exc}", self._lease_id)
        else:
            self._queue._release(seqs, self._lease_id)


_DrainOp = tuple[str, Any]


class OfflineQueue:
    """A durable priority outbox in one SQLite file.

    Args:
        path: the SQLite file (created 0600 if missing), or ":memory:" for tests.
        max_items: the most live items it may hold; a put beyond it raises `QueueFull` and
            stores nothing. None: unbounded.
        max_attempts: failed deliveries after which an item moves to the dead letters.
        clock: time source for lease deadlines (wall time, stored in the file) and for
            drain's rate, bandwidth and backoff waits.
        name: the queue's name in events and errors.
        busy_timeout: seconds to wait for another process's write lock.

    Raises:
        ConfigError: a bad argument.
        QueueError: the file is corrupt, not a queue, or of a newer schema (it is left
            untouched).

    Safe to share between threads; several processes may open the same file. From async code
    use `adrain`, or call the other methods through `anyio.to_thread.run_sync`.

    Example:
        >>> import resilience as rs
        >>> q = rs.OfflineQueue(":memory:", max_items=100)
        >>> q.put("hello", key="msg-1"), q.put("hello again", key="msg-1")
        (1, 1)
        >>> with q.lease(n=10, visibility=30.0) as batch:
        ...     [item.payload for item in batch]
        ['hello']
        >>> len(q)
        0
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        max_items: int | None = None,
        max_attempts: int = 10,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "queue",
        busy_timeout: float = 30.0,
    ) -> None:
        raise_if(
            self.validate(
                max_items=max_items, max_attempts=max_attempts, busy_timeout=busy_timeout
            ),
            name,
        )
        self.path = os.fspath(path)
        self.max_items = max_items
        self.max_attempts = max_attempts
        self.clock = clock
        self.name = name
        self._lock = threading.RLock()
        self._durable = True
        self._closed = False
        self._busy_timeout = float(busy_timeout)
        self._db = self._open(self.path)

    @staticmethod
    def validate(
        *,
        max_items: object = None,
        max_attempts: object = 10,
        busy_timeout: object = 30.0,
        **_: object,
    ) -> list[tuple[str, str]]:
        """Check the constructor's arguments; returns every (argument, message) found wrong."""
        errors = Errors()
        if max_items is not None:
            errors.integer("max_items", max_items, minimum=1)
        errors.integer("max_attempts", max_attempts, minimum=1)
        errors.positive("busy_timeout", busy_timeout)
        return errors

    # --- opening -------------------------------------------------------------------------

    def _open(self, path: str) -> sqlite3.Connection:
        memory = path == ":memory:" or path.startswith("file::memory:")
        if not memory:
            self._check_existing(path)
        try:
            db = sqlite3.connect(path, timeout=0.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise QueueError(
                f"cannot open queue file {path!r}: {exc}", operation=self.name
            ) from exc
        try:
            self._initialise(db, path)
        except BaseException:
            db.close()
            raise
        return db

    def _check_existing(self, path: str) -> None:
        """Refuse a corrupt, foreign or newer file without writing to it; create a new file
        with mode 0600 (SQLite gives its -wal and -shm files the same mode)."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise QueueError(
                f"cannot create queue file {path!r}: {exc}", operation=self.name
            ) from exc
        else:
            os.close(fd)
            return
        if os.path.getsize(path) == 0:
            return
        from urllib.parse import quote

        try:
            ro = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise QueueError(
                f"cannot open queue file {path!r}: {exc}", operation=self.name
            ) from exc
        try:
            self._check_header(ro, path)
        except sqlite3.Error as exc:
            raise QueueError(
                f"{path!r} is not a usable queue file ({exc}); it was left untouched",
                operation=self.name,
            ) from exc
        finally:
            ro.close()

    def _check_header(self, db: sqlite3.Connection, path: str) -> None:
        problem = header_problem(
            db,
            path,
            kind="queue",
            application_id=APPLICATION_ID,
            schema_version=SCHEMA_VERSION,
            own_names=_OWN_NAMES,
        )
        if problem:
            raise QueueError(problem, operation=self.name)

    def _initialise(self, db: sqlite3.Connection, path: str) -> None:
        try:
            # Several processes may open a new file at once: wait out each other's locks.
            self._busy_retry(self._set_up, db, path)
        except sqlite3.Error as exc:
            raise QueueError(
                f"{path!r} is not a usable queue file ({exc})", operation=self.name
            ) from exc

    def _set_up(self, db: sqlite3.Connection, path: str) -> None:
        make_ours(
            db, path, "queue", lambda: self._check_header(db, path), _split_sql(_SCHEMA), "FULL"
        )

    # --- plumbing -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise QueueError(f"queue '{self.name}' is closed", operation=self.name)
        return self._db

    def _set_durable(self, db: sqlite3.Connection, durable: bool) -> None:
        # WAL + synchronous=NORMAL commits without fsync; the next FULL commit fsyncs the
        # whole WAL, earlier frames included. Only changes that are safe to lose in a power
        # cut (a lease, a release: the lease just expires) are committed without fsync.
        if durable != self._durable:
            db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            self._durable = durable

    def _write(self, fn: Callable[[sqlite3.Connection], Any], durable: bool = True) -> Any:
        with self._lock:
            db = self._conn()
            try:
                self._set_durable(db, durable)
                self._busy_retry(db.execute, "BEGIN IMMEDIATE")
                try:
                    result = fn(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            return result

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            db = self._conn()
            try:
                return self._busy_retry(lambda: db.execute(sql, args).fetchall())  # type: ignore[no-any-return]
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def _busy_retry(self, fn: Callable[..., Any], *args: Any) -> Any:
        return busy_retry(self._busy_timeout, fn, *args)

    def _error(self, exc: sqlite3.Error) -> QueueError:
        return QueueError(
            f"queue '{self.name}' ({self.path}): {exc}; nothing was changed", operation=self.name
        )

    def _check_room(self, db: sqlite3.Connection) -> None:
        if self.max_items is not None:
            live = db.execute("SELECT sum(n) FROM counts WHERE bucket < 4").fetchone()[0]
            if live > self.max_items:
                raise QueueFull(self.max_items, operation=self.name)

    @staticmethod
    def _count(db: sqlite3.Connection, ranks: Iterable[int], sign: int, dead: bool = False) -> None:
        """Keep `counts` in step, one statement per bucket touched (not per row): live items
        of each rank, and dead letters. `sign` +1 adds the items, -1 removes them; `dead`
        moves them between their rank and the dead bucket (+1: into the dead letters)."""
        tally = [0] * 5
        for rank in ranks:
            tally[rank] += 1
        if dead:
            total = sum(tally)
            tally = [-n for n in tally]
            tally[_DEAD_BUCKET] = total
        changes = [(sign * n, bucket) for bucket, n in enumerate(tally) if n]
        if len(changes) == 1:
            db.execute("UPDATE counts SET n = n + ? WHERE bucket = ?", changes[0])
        elif changes:
            db.executemany("UPDATE counts SET n = n + ? WHERE bucket = ?", changes)

    # --- putting --------------------------------------------------------------------------

    def put(
        self, payload: Any, priority: Priority = Priority.NORMAL, key: str | None = None
    ) -> int:
        """Store one item durably; returns its seq.

        Args:
            payload: any JSON-serialisable value.
            priority: a `Priority` (or its name).
            key: an idempotency key: if an item (live or dead) with this key is present,
                nothing is stored and its seq is returned.

        Raises:
            InvalidPayload: (a TypeError) the payload is not JSON-serialisable, has a
                non-string dict key, is nested too deep or holds a lone surrogate; or the key
                is bad (nothing stored).
            QueueFull: the queue holds `max_items` live items (nothing stored).
            QueueError: the file could not be written (disk full, ...; nothing stored).

        Example:
            >>> q = OfflineQueue(":memory:")
            >>> q.put({"id": 7}, priority=Priority.HIGH)
            1
        """
        rank = _rank(priority)
        text = _encode(payload)
        _check_key(key)
        now = self.clock.time()
        seq: int
        new: bool
        seq, new = self._write(lambda db: self._insert_keyed(db, rank, text, key, now))
        if new and events.enabled:
            events.emit(events.QueueEnqueued(self.name, 1, _BY_RANK[rank].name))
            self._emit_depth()
        return seq

    def _insert_keyed(
        self, db: sqlite3.Connection, rank: int, text: str, key: str | None, now: float
    ) -> tuple[int, bool]:
        seq, new = self._insert_keyed_unchecked(db, rank, text, key, now)
        if new:
            self._check_room(db)
        return seq, new

    def put_many(self, entries: Iterable[Sequence[Any]]) -> list[int]:
        """Store several items in one transaction: all of them or none.

        Args:
            entries: `(payload, priority)` or `(payload, priority, key)` tuples.

        Returns:
            Their seqs, in the order given (an entry whose key is present gets the seq of the
            item already stored).

        Raises:
            TypeError: an entry's payload (`InvalidPayload`), priority or key is bad
                (nothing stored).
            QueueFull: the items would take the queue over `max_items` (nothing stored).

        Example:
            >>> q = OfflineQueue(":memory:")
            >>> q.put_many([("a", Priority.LOW), ("b", Priority.HIGH, "k-b")])
            [1, 2]
        """
        now = self.clock.time()
        rows: list[tuple[int, str, float]] = []  # (rank, payload, created_at)
        keys: list[str | None] = []
        keyed = False
        get_rank = _RANK_OF.get
        dumps = _dumps
        for entry in entries:
            if type(entry) is tuple and len(entry) == 2:  # the common case, kept cheap
                payload, priority = entry
                key = None
            elif isinstance(entry, tuple | list) and len(entry) in (2, 3):
                payload, priority = entry[0], entry[1]
                key = entry[2] if len(entry) == 3 else None
                _check_key(key)
                keyed = keyed or key is not None
            else:
                raise TypeError(
                    "put_many takes (payload, priority) or (payload, priority, key) tuples, "
                    f"got {type(entry).__name__} {entry!r:.80}"
                )
            rank = get_rank(priority) if type(priority) is Priority else _rank(priority)
            try:
                text = dumps(payload)
            except (TypeError, ValueError, RecursionError):
                text = _encode(payload)  # raises the InvalidPayload that names the type
            _check_payload(payload, text)
            rows.append((rank, text, now))  # type: ignore[arg-type]
            keys.append(key)
        if not rows:
            return []

        def insert(db: sqlite3.Connection) -> tuple[list[int], list[int]]:
            if keyed:
                seqs, fresh = [], []
                for (rank, text, _), key in zip(rows, keys, strict=True):
                    seq, new = self._insert_keyed_unchecked(db, rank, text, key, now)
                    seqs.append(seq)
                    if new:
                        fresh.append(rank)
                self._check_room(db)
                return seqs, fresh
            db.execute(_NEXT_SEQS, (len(rows),))
            last = db.execute(_LAST_SEQ).fetchone()[0]
            seqs = list(range(last - len(rows) + 1, last + 1))
            db.executemany(
                "INSERT INTO items(id, rank, payload, created_at) VALUES (?, ?, ?, ?)",
                [
                    ((rank << _SHIFT) | seq, rank, text, now)
                    for seq, (rank, text, _) in zip(seqs, rows, strict=True)
                ],
            )
            ranks = [r[0] for r in rows]
            self._count(db, ranks, +1)
            self._check_room(db)
            return seqs, ranks

        seqs: list[int]
        fresh: list[int]
        seqs, fresh = self._write(insert)
        if fresh and events.enabled:
            for rank in sorted(set(fresh)):
                events.emit(events.QueueEnqueued(self.name, fresh.count(rank), _BY_RANK[rank].name))
            self._emit_depth()
        return seqs

    def _insert_keyed_unchecked(
        self, db: sqlite3.Connection, rank: int, text: str, key: str | None, now: float
    ) -> tuple[int, bool]:
        if key is not None:
            row = db.execute("SELECT id FROM items WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return row[0] & _MASK, False
        db.execute(_NEXT_SEQS, (1,))
        seq: int = db.execute(_LAST_SEQ).fetchone()[0]
        db.execute(_INSERT, ((rank << _SHIFT) | seq, rank, text, key, now))
        db.execute(_COUNT, (1, rank))
        return seq, True

    # --- leasing --------------------------------------------------------------------------

    def lease(self, n: int = 10, visibility: float = 30.0) -> Lease:
        """Take up to `n` items, highest priority first, for `visibility` seconds.

        Use it as `with q.lease(n) as batch:`; see `Lease`. Items whose lease expired (a
        consumer that crashed or took too long) are available again to the next lease.

        Raises:
            ConfigError: `n` < 1 or `visibility` <= 0.

        Example:
            >>> q = OfflineQueue(":memory:")
            >>> _ = q.put_many([("low", Priority.LOW), ("high", Priority.HIGH)])
            >>> with q.lease(n=1) as batch:
            ...     [item.payload for item in batch]
            ['high']
        """
        if not (type(n) is int and n >= 1 and type(visibility) in (int, float)) or not (
            0 < visibility < _INF
        ):
            errors = Errors()
            errors.integer("n", n, minimum=1)
            errors.positive("visibility", visibility)
            raise_if(errors, self.name)
        return Lease(self, n, float(visibility))

    def _lease(self, n: int, visibility: float) -> tuple[int, list[Item]]:
        lease_id = random.getrandbits(62) + 1
        now = self.clock.time()
        until = now + visibility

        def take(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            # A SELECT, then an UPDATE by primary key or by a (rank, seq) range: one
            # `UPDATE ... WHERE seq IN (SELECT ...) RETURNING` costs twice as much, since both
            # the subquery and RETURNING materialise into an ephemeral table (a temporary
            # pager, allocated and freed on every call).
            rows: list[tuple[Any, ...]] = db.execute(_SELECT_READY, (now, n)).fetchall()
            if len(rows) == 1:
                db.execute(_LEASE_ONE, (until, lease_id, rows[0][0]))
            elif rows:
                # The rows are the first `n` available ones in id order, so the available
                # rows between the first and the last id are exactly them (the same
                # predicate, in the same transaction).
                db.execute(_LEASE_RANGE, (until, lease_id, rows[0][0], rows[-1][0], now))
            return rows

        rows = self._write(take, durable=False)
        loads = _loads
        return lease_id, [
            Item(id_ & _MASK, loads(text), _BY_RANK[id_ >> _SHIFT], attempts, key, len(text))
            for id_, text, attempts, key in rows
        ]

    def _delete(self, seqs: Sequence[int], lease_id: int | None) -> int:
        owned = "" if lease_id is None else " AND lease_id = ?"
        args: tuple[Any, ...] = (_dumps(list(seqs)),)
        if lease_id is not None:
            args += (lease_id,)
        sql = f"DELETE FROM items WHERE id IN ({_LIVE_IDS}){owned} RETURNING rank"

        def delete(db: sqlite3.Connection) -> int:
            ranks = db.execute(sql, args).fetchall()
            self._count(db, (r[0] for r in ranks), -1)
            return len(ranks)

        done: int = self._write(delete)
        if done and events.enabled:
            events.emit(events.QueueDelivered(self.name, done))
            self._emit_depth()
        return done

    def _ack_leased(self, items: Sequence[Item], lease_id: int, whole: bool = False) -> int:
        """Ack leased items that are still under this lease (`lease_id`), durably.

        `whole`: `items` are all the items this lease still holds, so a (rank, seq) range
        with `lease_id = ?` selects exactly them: one statement per priority, no RETURNING
        (whose ephemeral table costs more than the delete). Otherwise one DELETE by primary
        key per item (executemany). The ranks are known, so `counts` needs no read back."""
        groups: list[tuple[int, list[int]]] = []
        rank_of = _RANK_OF
        current = -1
        seqs: list[int] = []
        for item in items:
            rank = rank_of[item.priority]
            if rank != current:
                current = rank
                seqs = []
                groups.append((rank, seqs))
            seqs.append((rank << _SHIFT) | item.seq)
        if not groups:
            return 0

        def delete(db: sqlite3.Connection) -> int:
            changes: list[tuple[int, int]] = []
            done = 0
            for rank, ids in groups:
                if len(ids) == 1:
                    n = db.execute(_ACK_ONE, (ids[0], lease_id)).rowcount
                elif whole:
                    n = db.execute(_ACK_RANGE, (min(ids), max(ids), lease_id)).rowcount
                else:
                    n = db.executemany(_ACK_ONE, [(id_, lease_id) for id_ in ids]).rowcount
                if n:
                    changes.append((-n, rank))
                    done += n
            if len(changes) == 1:
                db.execute(_COUNT, changes[0])
            elif changes:
                db.executemany(_COUNT, changes)
            return done

        done: int = self._write(delete)
        if done and events.enabled:
            events.emit(events.QueueDelivered(self.name, done))
            self._emit_depth()
        return done

    def ack(self, seqs: int | Iterable[int]) -> int:
        """Delete delivered items (live ones: dead letters are left alone); returns how many.

        The delete is durable when `ack` returns: an acked item is never delivered again.

        Example:
            >>> q = OfflineQueue(":memory:")
            >>> seq = q.put("x")
            >>> q.ack([seq]), len(q)
            (1, 0)
        """
        return self._delete(_seqs(seqs), None)

    def nack(self, seqs: int | Iterable[int], error: str = "nacked") -> int:
        """Record a failed delivery: attempts + 1 and available again at once, or moved to
        the dead letters when attempts reach `max_attempts`. Returns how many were dead-lettered.

        Example:
            >>> q = OfflineQueue(":memory:", max_attempts=1)
            >>> seq = q.put("x")
            >>> q.nack([seq]), len(q), len(q.dead_letters())
            (1, 0, 1)
        """
        return self._fail(_seqs(seqs), error, None)

    def _fail(self, seqs: Sequence[int], error: str, lease_id: int | None) -> int:
        now = self.clock.time()
        limit = self.max_attempts
        reason = f"max_attempts: {error}"
        owned = "" if lease_id is None else " AND lease_id = ?"
        args: tuple[Any, ...] = (limit, limit, reason, limit, now, _dumps(list(seqs)))
        if lease_id is not None:
            args += (lease_id,)

        def fail(db: sqlite3.Connection) -> list[tuple[int, int]]:
            rows = db.execute(
                "UPDATE items SET attempts = attempts + 1, lease_until = NULL, lease_id = NULL, "
                f"id = CASE WHEN attempts + 1 >= ? THEN (id & {_MASK}) | {_DEAD_BASE} ELSE id END, "
                "error = CASE WHEN attempts + 1 >= ? THEN ? ELSE error END, "
                "dead_at = CASE WHEN attempts + 1 >= ? THEN ? ELSE dead_at END "
                f"WHERE id IN ({_LIVE_IDS}){owned} RETURNING id, rank",
                args,
            ).fetchall()
            dead = sorted((id_ & _MASK, rank) for id_, rank in rows if id_ >= _DEAD_BASE)
            self._count(db, (rank for _, rank in dead), +1, dead=True)
            return dead

        dead: list[tuple[int, int]] = self._write(fail)
        if dead and events.enabled:
            for seq, _ in dead:
                events.emit(events.QueueDeadLettered(self.name, seq, reason))
            self._emit_depth()
        return len(dead)

    def _release(self, seqs: Sequence[int], lease_id: int | None) -> None:
        owned = "" if lease_id is None else " AND lease_id = ?"
        args: tuple[Any, ...] = (_dumps(list(seqs)),)
        if lease_id is not None:
            args += (lease_id,)

        def release(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE items SET lease_until = NULL, lease_id = NULL "
                f"WHERE id IN ({_LIVE_IDS}){owned}",
                args,
            )

        self._write(release, durable=False)

    def _dead_letter(self, seq: int, reason: str, lease_id: int | None) -> bool:
        now = self.clock.time()
        owned = "" if lease_id is None else " AND lease_id = ?"
        args: tuple[Any, ...] = (reason, now, _dumps([seq]))
        if lease_id is not None:
            args += (lease_id,)

        def dead(db: sqlite3.Connection) -> bool:
            row = db.execute(
                f"UPDATE items SET id = (id & {_MASK}) | {_DEAD_BASE}, attempts = attempts + 1, "
                "error = ?, dead_at = ?, lease_until = NULL, lease_id = NULL "
                f"WHERE id IN ({_LIVE_IDS}){owned} RETURNING rank",
                args,
            ).fetchone()
            if row is not None:
                self._count(db, [row[0]], +1, dead=True)
            return row is not None

        moved: bool = self._write(dead)
        if moved and events.enabled:
            events.emit(events.QueueDeadLettered(self.name, seq, reason))
            self._emit_depth()
        return moved

    # --- dead letters ---------------------------------------------------------------------

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead letters, oldest seq first.

        Example:
            >>> q = OfflineQueue(":memory:")
            >>> q.dead_letters()
            []
        """
        rows = self._read(
            f"SELECT id & {_MASK}, payload, rank, attempts, key, error, dead_at FROM items "
            f"WHERE id >= {_DEAD_BASE} ORDER BY id LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [
            DeadLetter(seq, _loads(text), _BY_RANK[rank], attempts, key, error or "", dead_at)
            for seq, text, rank, attempts, key, error, dead_at in rows
        ]

    def requeue_dead(self, seqs: int | Iterable[int] | None = None) -> int:
        """Put dead letters back in the queue (all of them by default) with attempts reset
        to 0, keeping their seq (so their place in the order). Returns how many.

        Raises:
            QueueFull: they would take the queue over `max_items` (none requeued).
        """
        which = "" if seqs is None else _DEAD_IDS
        args = () if seqs is None else (_dumps(_seqs(seqs)),)

        def requeue(db: sqlite3.Connection) -> int:
            rows = db.execute(
                f"UPDATE items SET id = (rank << {_SHIFT}) | (id & {_MASK}), attempts = 0, "
                "error = NULL, dead_at = NULL, lease_until = NULL, lease_id = NULL "
                f"WHERE id >= {_DEAD_BASE}{which} RETURNING rank",
                args,
            ).fetchall()
            self._count(db, (r[0] for r in rows), -1, dead=True)
            self._check_room(db)
            return len(rows)

        n: int = self._write(requeue)
        if n and events.enabled:
            self._emit_depth()
        return n

    def purge_dead(self, seqs: int | Iterable[int] | None = None) -> int:
        """Delete dead letters (all of them by default); returns how many."""
        which = "" if seqs is None else _DEAD_IDS
        args = () if seqs is None else (_dumps(_seqs(seqs)),)

        def purge(db: sqlite3.Connection) -> int:
            n: int = db.execute(f"DELETE FROM items WHERE id >= {_DEAD_BASE}{which}", args).rowcount
            db.execute("UPDATE counts SET n = n - ? WHERE bucket = 4", (n,))
            return n

        n: int = self._write(purge)
        return n

    # --- looking --------------------------------------------------------------------------

    def items(self, start: int | None = None, stop: int | None = None) -> list[Item]:
        """Live items with `start <= seq < stop`, in seq order, without leasing them (e.g. to
        replay a range a client missed).

        Example:
            >>> q = OfflineQueue(":memory:")
            >>> _ = q.put_many([(i, Priority.NORMAL) for i in range(5)])
            >>> [item.payload for item in q.items(2, 4)]
            [1, 2]
        """
        lo = 0 if start is None else max(start, 0)
        hi = _MASK + 1 if stop is None else min(stop, _MASK + 1)
        if lo >= hi:
            return []
        # One id range per priority; SQLite walks the four ranges, then sorts by seq.
        rows = self._read(
            f"SELECT id & {_MASK} AS seq, payload, rank, attempts, key FROM items WHERE "
            + " OR ".join(["(id >= ? AND id < ?)"] * 4)
            + " ORDER BY seq",
            [
                bound
                for rank in range(4)
                for bound in ((rank << _SHIFT) | lo, (rank << _SHIFT) + hi)
            ],
        )
        return [
            Item(seq, _loads(text), _BY_RANK[rank], attempts, key, len(text))
            for seq, text, rank, attempts, key in rows
        ]

    def _counts(self) -> list[int]:
        rows = self._read("SELECT bucket, n FROM counts WHERE bucket < 5")
        counts = [0] * 5
        for bucket, n in rows:
            counts[bucket] = n
        return counts

    def __len__(self) -> int:
        """Live items: ready and leased (dead letters not included)."""
        return sum(self._counts()[:4])

    def stats(self) -> QueueStats:
        """A snapshot: depth per priority, leased items, dead letters.

        Example:
            >>> q = OfflineQueue(":memory:")
            >>> _ = q.put("x", priority=Priority.HIGH)
            >>> q.stats().by_priority["HIGH"]
            1
        """
        counts = self._counts()
        leased = self._read(
            f"SELECT count(*) FROM items WHERE id < {_DEAD_BASE} AND lease_until > ?",
            (self.clock.time(),),
        )[0][0]
        return QueueStats(
            depth=sum(counts[:4]),
            by_priority={_BY_RANK[r].name: counts[r] for r in range(4)},
            leased=leased,
            dead_letters=counts[_DEAD_BUCKET],
            max_items=self.max_items,
        )

    def _emit_depth(self) -> None:
        counts = self._counts()
        events.emit(events.QueueDepth(self.name, {_BY_RANK[r].name: counts[r] for r in range(4)}))

    # --- draining -------------------------------------------------------------------------

    def drain(
        self,
        send: Callable[[Item], object],
        batch: int = 50,
        rate: float | None = None,
        bytes_per_second: float | None = None,
        backoff: _Backoff | None = None,
        *,
        classifier: Classifier = DEFAULT_CLASSIFIER,
        visibility: float = 60.0,
    ) -> DrainReport:
        """Deliver queued items with `send(item)`, highest priority first.

        Items are leased `batch` at a time; the delivered ones are acked (one durable commit)
        at the end of each batch, so a crash mid-batch redelivers at most that batch
        (at-least-once: give items a `key` and make the sink idempotent). What `send` raises is
        classified: TRANSIENT (or RATE_LIMITED) leaves the item queued with attempts + 1 and,
        with `backoff=None`, ends this drain (one pass); with a `backoff`, the drain waits
        `backoff.delay(n)` (or the error's Retry-After, if longer) on the queue's clock and
        resumes, until the queue is empty. PERMANENT, or attempts reaching `max_attempts`,
        moves the item to the dead letters and draining goes on. Under a time budget
        (`rs.deadline`, a `Timeout`) the drain starts no lease, send or wait the budget cannot
        hold: it returns with `error=TimeoutExceeded` and the rest still queued.

        Args:
            send: delivers one `Item`; raises to refuse it.
            batch: items leased at a time.
            rate: at most this many items per second (None: unlimited).
            bytes_per_second: at most this many payload bytes per second (None: unlimited).
            backoff: anything with `delay(attempt, previous=None) -> float`, e.g.
                `Backoff.exponential(...)`; None: stop at the first TRANSIENT error.
            classifier: classifies what `send` raises.
            visibility: the lease of each batch, in seconds (items held longer by a stuck
                drain become available to others).

        Returns:
            A `DrainReport`.

        Example:
            >>> q = OfflineQueue(":memory:")
            >>> _ = q.put_many([(i, Priority.NORMAL) for i in range(3)])
            >>> q.drain(print, rate=100.0).delivered  # doctest: +ELLIPSIS
            Item(seq=1, payload=0, ...
            3
        """
        core = self._drain_core(batch, rate, bytes_per_second, backoff, classifier, visibility)
        result: object = None
        try:
            while True:
                kind, arg = core.send(result)
                if kind == "send":
                    try:
                        send(arg)
                        result = None
                    except Exception as exc:
                        result = exc
                elif kind == "sleep":
                    self.clock.sleep(arg)
                    result = None
                else:
                    result = arg()
        except StopIteration as stop:
            report: DrainReport = stop.value
            return report
        finally:
            core.close()

    async def adrain(
        self,
        send: Callable[[Item], Awaitable[object]],
        batch: int = 50,
        rate: float | None = None,
        bytes_per_second: float | None = None,
        backoff: _Backoff | None = None,
        *,
        classifier: Classifier = DEFAULT_CLASSIFIER,
        visibility: float = 60.0,
    ) -> DrainReport:
        """`drain` for an async `send`: the same logic; database work runs in worker threads
        (anyio, so asyncio and trio), waits on the queue's clock.

        Example:
            >>> import anyio
            >>> q = OfflineQueue(":memory:")
            >>> _ = q.put("x")
            >>> async def send(item): pass
            >>> anyio.run(q.adrain, send).delivered
            1
        """
        import anyio.to_thread

        core = self._drain_core(batch, rate, bytes_per_second, backoff, classifier, visibility)
        result: object = None
        try:
            while True:
                kind, arg = core.send(result)
                if kind == "send":
                    try:
                        await send(arg)
                        result = None
                    except Exception as exc:
                        result = exc
                elif kind == "sleep":
                    await self.clock.asleep(arg)
                    result = None
                else:
                    result = await anyio.to_thread.run_sync(arg)
        except StopIteration as stop:
            report: DrainReport = stop.value
            return report
        finally:
            core.close()

    def _drain_core(
        self,
        batch: int,
        rate: float | None,
        bytes_per_second: float | None,
        backoff: _Backoff | None,
        classifier: Classifier,
        visibility: float,
    ) -> Generator[_DrainOp, object, DrainReport]:
        """The one drain loop, sans-I/O: it yields ("db", fn) / ("send", item) /
        ("sleep", seconds) and the sync and async shells carry them out."""
        errors = Errors()
        errors.integer("batch", batch, minimum=1)
        if rate is not None:
            errors.positive("rate", rate)
        if bytes_per_second is not None:
            errors.positive("bytes_per_second", bytes_per_second)
        errors.positive("visibility", visibility)
        if backoff is not None and not callable(getattr(backoff, "delay", None)):
            errors.append(("backoff", f"must have a delay(attempt) method, got {backoff!r}"))
        raise_if(errors, self.name)

        if rate is not None:
            # Lease no more than the rate lets us send in half the visibility, so a slow,
            # paced batch does not outlive its lease.
            batch = max(1, min(batch, int(rate * visibility / 2)))
        clock = self.clock
        started = clock.monotonic()
        pacer = _Pacer(rate, bytes_per_second)
        delivered = dead = failures = 0
        previous: float | None = None
        error: BaseException | None = None
        held: list[Item] = []  # leased and not yet settled
        done: list[Item] = []  # sent, not yet acked
        lease_id = 0
        try:
            while True:
                # A time budget (rs.deadline, a Timeout) ends the drain where it runs out: no
                # lease, send or wait it cannot hold; the report says so (error=TimeoutExceeded).
                out = cannot_hold(0.0, self.name)
                if out is not None:
                    error = out
                    break
                leased = yield ("db", partial(self._lease, batch, visibility))
                lease_id, held = leased  # type: ignore[misc]
                if not held:
                    break
                stop = False
                pause = 0.0
                while held:
                    item = held[0]
                    wait = pacer.reserve(clock.monotonic(), item.size)
                    out = cannot_hold(wait, self.name)
                    if out is not None:
                        error, stop = out, True
                        break
                    if wait > 0:
                        yield ("sleep", wait)
                    outcome = yield ("send", item)
                    held.pop(0)
                    if outcome is None:
                        done.append(item)
                        failures = 0
                        previous = None
                        continue
                    exc: BaseException = outcome  # type: ignore[assignment]
                    verdict = classifier.classify(exc)
                    text = f"{type(exc).__name__}: {exc}"
                    if verdict.retryable:
                        n_dead = yield ("db", partial(self._fail, [item.seq], text, lease_id))
                        if n_dead:
                            dead += 1
                            continue
                        error = exc
                        stop = backoff is None
                        if backoff is not None:
                            failures += 1
                            pause = backoff.delay(failures, previous)
                            previous = pause
                            if verdict.retry_after is not None:
                                pause = max(pause, verdict.retry_after)
                        break
                    moved = yield (
                        "db",
                        partial(self._dead_letter, item.seq, f"permanent: {text}", lease_id),
                    )
                    if moved:
                        dead += 1
                if done:
                    # Failed items no longer carry the lease_id: with nothing left held,
                    # `done` is all that this lease still holds.
                    acked = yield ("db", partial(self._ack_leased, done, lease_id, not held))
                    delivered += acked  # type: ignore[operator]
                    done = []
                if held:
                    yield ("db", partial(self._release, [i.seq for i in held], lease_id))
                    held = []
                if stop:
                    break
                if pause > 0:
                    out = cannot_hold(pause, self.name)
                    if out is not None:
                        out.__cause__ = error
                        error = out
                        break
                    yield ("sleep", pause)
                if error is not None and not stop:
                    error = None  # resumed after a backoff: that error did not stop us
        finally:
            # Interrupted (KeyboardInterrupt, cancellation): keep what was sent, return the rest.
            # If the file itself failed, the leases simply expire.
            with contextlib.suppress(QueueError):
                if done:
                    self._ack_leased(done, lease_id, not held)
                if held:
                    self._release([i.seq for i in held], lease_id)
        remaining = len(self)
        return DrainReport(delivered, dead, remaining, clock.monotonic() - started, error)

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (idempotent). Leased items stay leased until their lease expires."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> OfflineQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OfflineQueue({self.path!r}, name={self.name!r}, max_items={self.max_items!r})"


def _seqs(seqs: int | Iterable[int]) -> list[int]:
    if isinstance(seqs, int):
        return [seqs]
    return [int(s) for s in seqs]


def _split_sql(script: str) -> Iterator[str]:
    """Statements of a script, keeping each trigger body whole (executescript would COMMIT)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
