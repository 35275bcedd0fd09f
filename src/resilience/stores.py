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
import os
import sys
import threading
import time
import typing
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, NoReturn, Protocol, TypeVar, runtime_checkable

from . import events
from ._errors import ConfigError, StoreError
from ._validate import Errors, raise_if

if typing.TYPE_CHECKING:
    import sqlite3

__all__ = [
    "MAX_DEPTH",
    "MAX_RECORD_BYTES",
    "SQLITE_APPLICATION_ID",
    "SQLITE_SCHEMA_VERSION",
    "CorruptRecord",
    "InvalidRecord",
    "MemoryStore",
    "Record",
    "RedisStore",
    "SQLiteStore",
    "Store",
]

_T = TypeVar("_T")

MAX_RECORD_BYTES = 64 * 1024
"""Records longer than this (in their JSON form) are refused when written or read."""


MAX_DEPTH = 100
"""Records (and queue payloads) nested deeper than this are refused when written."""


class InvalidRecord(StoreError, TypeError):
    """A record or key a store cannot hold as given: not JSON-safe, a non-string key, nested
    more than `MAX_DEPTH` deep, a lone surrogate, over `MAX_RECORD_BYTES`. Nothing was
    stored. Also a `TypeError`, as before.

    Example:
        >>> try:
        ...     MemoryStore().set("k", {1: "x"})
        ... except InvalidRecord as e:
        ...     print(type(e).__name__)
        InvalidRecord
    """


class CorruptRecord(StoreError):
    """The record at a key is not a JSON object of at most `MAX_RECORD_BYTES` (written by
    something else, or damaged). A `StoreError`: the store itself answered.

    Example:
        >>> issubclass(CorruptRecord, StoreError)
        True
    """


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
        now: float | None,
        tokens: float = 1.0,
    ) -> float:
        """Token bucket: take `tokens` from the bucket at `key` if it holds them.

        Returns 0.0 when they were taken, else the seconds until they will be available
        (nothing taken). A bucket starts full. `now` is the caller's clock reading, or None:
        the store's own clock (Redis: the server's `TIME`; SQLite: the clock of the host that
        holds the file; memory: `time.monotonic()`), so the skewed clock of one host cannot
        starve the others of a shared bucket.
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
        _check_key(key)
        raw = self._data.get(key)
        return None if raw is None else dict(json.loads(raw))

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        _check_key(key)
        raw = _encode(value)
        with self._lock:
            self._data[key] = raw

    def compare_and_set(
        self, key: str, expected: Mapping[str, Any] | None, value: Mapping[str, Any]
    ) -> bool:
        _check_key(key)
        raw = _encode(value)
        with self._lock:
            current = self._data.get(key)
            if expected is None:
                if current is not None:
                    return False
            elif current is None or current != _canonical(expected):
                return False  # both sides in canonical JSON: (1, 2) and [1, 2] compare equal
            self._data[key] = raw
            return True

    def delete(self, key: str) -> None:
        _check_key(key)
        with self._lock:
            self._data.pop(key, None)
            self._buckets.pop(key, None)

    def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: float | None,
        tokens: float = 1.0,
    ) -> float:
        _check_key(key)
        if now is None:
            now = time.monotonic()
        with self._lock:
            level, stamp = self._buckets.get(key, (capacity, now))
            return _take(self._buckets, key, level, stamp, capacity, refill_per_second, now, tokens)

    def keys(self) -> list[str]:
        """Every key with a record (for inspection)."""
        with self._lock:
            return sorted(self._data)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._data)} records)"


SQLITE_APPLICATION_ID = 0x52534C53
"""`PRAGMA application_id` of a `SQLiteStore` file ("RSLS")."""

SQLITE_SCHEMA_VERSION = 1
"""`PRAGMA user_version` of the `SQLiteStore` files this version writes; newer are refused."""

_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS buckets"
    " (key TEXT PRIMARY KEY, level REAL NOT NULL, stamp REAL NOT NULL) WITHOUT ROWID",
    f"PRAGMA application_id = {SQLITE_APPLICATION_ID}",
    f"PRAGMA user_version = {SQLITE_SCHEMA_VERSION}",
)
_SQLITE_TABLES = frozenset({"records", "buckets"})
_UPSERT_RECORD = (
    "INSERT INTO records (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_SQLITE_NOW = "SELECT (julianday('now') - 2440587.5) * 86400.0"  # Unix time, ms resolution
_UPSERT_BUCKET = (
    "INSERT INTO buckets (key, level, stamp) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET level = excluded.level, stamp = excluded.stamp"
)


class SQLiteStore:
    """A store in a SQLite file: survives restarts and is shared by every process that opens
    the same file (`shared` is True).

    The file is created with mode 0600 and runs in WAL mode (readers never wait for a
    writer). It holds two tables, `records` (key, JSON value) and `buckets` (the token
    buckets), and is marked with `PRAGMA application_id` "RSLS" and a schema version, checked
    on every open: a file of another application, or of a newer version of this library, is
    refused with `StoreError` and left untouched. `compare_and_set` and `take_tokens` run in
    a `BEGIN IMMEDIATE` transaction, so they are atomic across threads and processes. Commits
    use `synchronous=NORMAL`: they survive a crash of the process; a power cut may lose the
    last few changes (a breaker record or a bucket level, never a torn one).

    `sqlite3` is imported when the first `SQLiteStore` is built, not with `resilience`.
    `":memory:"` gives a private, non-shared store (for tests).

    Args:
        path: the database file (created if missing).
        busy_timeout: seconds to wait for another process's write lock before failing.

    Raises:
        StoreError: the file cannot be created or opened, is not a SQLite database, belongs
            to another application, or has a newer schema; later, an operation that fails.
        ConfigError: a bad argument.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "state.db")
        >>> with SQLiteStore(path) as store:
        ...     store.set("breaker:payments", {"state": "open"})
        >>> SQLiteStore(path).get("breaker:payments")
        {'state': 'open'}
    """

    shared = True

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        errors = Errors()
        if not isinstance(path, str | os.PathLike):
            errors.append(("path", f"must be a file path, got {type(path).__name__}"))
        errors.positive("busy_timeout", busy_timeout)
        raise_if(errors, "SQLiteStore")
        import sqlite3 as sq  # lazily: `import resilience` and the breaker must not pay for it

        self._sqlite3: Any = sq
        self.path = os.fspath(path)
        self._busy_timeout = float(busy_timeout)
        self._memory = self.path == ":memory:"
        if self._memory:
            self.shared = False
        self._lock = threading.Lock()
        self._closed = False
        self._db = self._open()
        self._pid = os.getpid()

    # --- opening ------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        sq = self._sqlite3
        if not self._memory:
            self._create_or_check()
        try:
            db: sqlite3.Connection = sq.connect(
                self.path, timeout=0.0, isolation_level=None, check_same_thread=False
            )
        except sq.Error as exc:
            raise StoreError(f"cannot open store file {self.path!r}: {exc}") from exc
        try:
            # Several processes may open a new file at once: wait out each other's locks.
            self._busy(self._initialise, db)
        except sq.Error as exc:
            db.close()
            raise StoreError(f"{self.path!r} is not a usable store file ({exc})") from exc
        except BaseException:
            db.close()
            raise
        return db

    def _initialise(self, db: sqlite3.Connection) -> None:
        from ._sqlite import make_ours

        make_ours(db, self.path, "store", lambda: self._check_header(db), _SQLITE_SCHEMA, "NORMAL")

    def _create_or_check(self) -> None:
        """Create a new file with mode 0600 (SQLite gives its -wal and -shm files the same
        mode), or check an existing one read-only, so a foreign file is never written to."""
        sq = self._sqlite3
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot create store file {self.path!r}: {exc}") from exc
        else:
            os.close(fd)
            return
        try:
            if os.path.getsize(self.path) == 0:
                return
        except OSError as exc:
            raise StoreError(f"cannot open store file {self.path!r}: {exc}") from exc
        from urllib.parse import quote

        uri = f"file:{quote(os.path.abspath(self.path))}?mode=ro"
        try:
            ro = sq.connect(uri, uri=True)
        except sq.Error as exc:
            raise StoreError(f"cannot open store file {self.path!r}: {exc}") from exc
        try:
            self._busy(self._check_header, ro)
        except sq.Error as exc:
            raise StoreError(
                f"{self.path!r} is not a usable store file ({exc}); it was left untouched"
            ) from exc
        finally:
            ro.close()

    def _check_header(self, db: sqlite3.Connection) -> None:
        from ._sqlite import header_problem

        problem = header_problem(
            db,
            self.path,
            kind="store",
            application_id=SQLITE_APPLICATION_ID,
            schema_version=SQLITE_SCHEMA_VERSION,
            own_names=_SQLITE_TABLES,
        )
        if problem:
            raise StoreError(problem)

    # --- plumbing -----------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"store {self.path!r} is closed")
        if self._pid != os.getpid():
            # A forked child must not use its parent's connection: open its own.
            self._db = self._open()
            self._pid = os.getpid()
        return self._db

    def _run(self, fn: Callable[[sqlite3.Connection], _T], key: str, *, write: bool) -> _T:
        """Run `fn` under the thread lock; with `write`, in one BEGIN IMMEDIATE transaction
        (which takes SQLite's write lock first: a read-modify-write cannot interleave)."""
        sq = self._sqlite3
        with self._lock:
            db = self._conn()
            try:
                if not write:
                    return self._busy(fn, db)
                self._busy(db.execute, "BEGIN IMMEDIATE")
                try:
                    result = fn(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                return result
            except sq.Error as exc:
                raise StoreError(
                    f"store {self.path!r}: {exc}; nothing was changed", operation=key
                ) from exc

    def _busy(self, fn: Callable[..., _T], *args: Any) -> _T:
        from ._sqlite import busy_retry

        return busy_retry(self._busy_timeout, fn, *args)

    def get(self, key: str) -> Record | None:
        _check_key(key)
        row = self._run(
            lambda db: db.execute("SELECT value FROM records WHERE key = ?", (key,)).fetchone(),
            key,
            write=False,
        )
        return None if row is None else _decode(row[0], key)

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        _check_key(key)
        raw = _encode(value)
        self._run(lambda db: db.execute(_UPSERT_RECORD, (key, raw)), key, write=False)

    def compare_and_set(
        self, key: str, expected: Mapping[str, Any] | None, value: Mapping[str, Any]
    ) -> bool:
        _check_key(key)
        raw = _encode(value)
        want = None if expected is None else _canonical(expected)

        def cas(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT value FROM records WHERE key = ?", (key,)).fetchone()
            current = None if row is None else row[0]
            if current != want:  # both in canonical JSON, as in MemoryStore
                return False
            db.execute(_UPSERT_RECORD, (key, raw))
            return True

        return self._run(cas, key, write=True)

    def delete(self, key: str) -> None:
        _check_key(key)

        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM records WHERE key = ?", (key,))
            db.execute("DELETE FROM buckets WHERE key = ?", (key,))

        self._run(delete, key, write=True)

    def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: float | None,
        tokens: float = 1.0,
    ) -> float:
        _check_key(key)
        _check_tokens(key, tokens)
        _check_bucket(key, capacity, refill_per_second, now)

        def take(db: sqlite3.Connection) -> float:
            # now=None: SQLite's clock (the host's that holds the file), read inside the
            # transaction, so a process with a wrong clock cannot move the bucket's time.
            at = db.execute(_SQLITE_NOW).fetchone()[0] if now is None else now
            row = db.execute("SELECT level, stamp FROM buckets WHERE key = ?", (key,)).fetchone()
            level, stamp = (capacity, at) if row is None else row
            level, stamp, wait = _bucket(level, stamp, capacity, refill_per_second, at, tokens)
            db.execute(_UPSERT_BUCKET, (key, level, stamp))
            return wait

        return self._run(take, key, write=True)

    # --- the rest -----------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Every key with a record (for inspection)."""
        rows = self._run(
            lambda db: db.execute("SELECT key FROM records ORDER BY key").fetchall(),
            "",
            write=False,
        )
        return [row[0] for row in rows]

    def close(self) -> None:
        """Close the connection (idempotent); later operations raise `StoreError`."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._pid == os.getpid():
                    self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


_CAS_LUA = """
local current = redis.call('GET', KEYS[1])
if ARGV[3] == '1' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

# The same steps as `_bucket`, in the same order, on the same IEEE doubles (%.17g round-trips
# them exactly). An idle bucket expires once it would be full again anyway (at least an hour,
# so a caller's clock that runs slower than the server's never sees a refill it did not earn).
_TAKE_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  -- the server's clock: every host sharing the bucket agrees on it, whatever their own
  if redis.replicate_commands then pcall(redis.replicate_commands) end
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[3])
end
local tokens = tonumber(ARGV[4])
local saved = redis.call('HMGET', KEYS[1], 'level', 'stamp')
local level, stamp = capacity, now
if saved[1] and saved[2] then
  level = tonumber(saved[1])
  stamp = tonumber(saved[2])
end
if now > stamp then
  level = level + (now - stamp) * rate
  stamp = now
end
if level > capacity then level = capacity end
local wait
if tokens > capacity then
  wait = 'inf'
elseif level >= tokens then
  level = level - tokens
  wait = '0'
elseif rate <= 0 then
  wait = 'inf'
else
  wait = string.format('%.17g', (tokens - level) / rate)
end
redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level),
           'stamp', string.format('%.17g', stamp))
if rate > 0 then
  local ttl = math.max(2 * capacity / rate, 3600)
  if ttl > 2592000 then ttl = 2592000 end
  redis.call('EXPIRE', KEYS[1], string.format('%.0f', math.ceil(ttl)))
else
  redis.call('PERSIST', KEYS[1])
end
return wait
"""


class RedisStore:
    """A store in Redis: one state for every process and host that uses the same server and
    prefix (`shared` is True).

    Records are JSON strings at `prefix + key` (readable with `redis-cli GET`); token buckets
    are hashes at `prefix + "tokens:" + key` (so record keys starting with "tokens:" are
    reserved). `compare_and_set` and `take_tokens` are Lua scripts, atomic on the server, sent
    once and then called by their SHA (EVALSHA). Idle buckets expire on their own.

    `redis` (redis-py, the `redis` extra) is imported when the first `RedisStore` is built.
    The connection is made on first use, not here, so building a breaker while Redis is
    down does not fail. A password in the URL never appears in `repr()`, `str()` or in the
    errors this store raises.

    Args:
        url_or_client: a URL (`redis://[[user]:password@]host[:port][/db]`, `rediss://...`,
            `unix://...`) or a ready `redis.Redis` or `redis.asyncio.Redis` client (its
            decoding setting does not matter). From a client, the other kind is built with
            the same connection settings: a `redis.asyncio` client for each asyncio event
            loop, or the blocking client an async app's client lacks (the client you pass
            is used as it is or mirrored, never reconfigured).
        prefix: put before every key, so several applications can share one server.
        timeout: seconds for connecting and for each command (URL only; a client you pass
            keeps its own settings).

    Raises:
        ConfigError: redis-py is not installed, or a bad argument (an unparsable URL).
        StoreError: (from the operations) the server cannot be reached or refused a command.

    Example:
        >>> store = RedisStore("redis://:s3cret@127.0.0.1:6379/0", prefix="myapp:")
        >>> store
        RedisStore('redis://:***@127.0.0.1:6379/0', prefix='myapp:')
    """

    shared = True

    def __init__(
        self, url_or_client: Any, prefix: str = "resilience:", *, timeout: float = 5.0
    ) -> None:
        errors = Errors()
        if not isinstance(prefix, str):
            errors.append(("prefix", f"must be a string, got {type(prefix).__name__}"))
        errors.positive("timeout", timeout)
        if not isinstance(url_or_client, str) and not callable(
            getattr(url_or_client, "register_script", None)
        ):
            errors.append(
                (
                    "url_or_client",
                    f"must be a redis URL or a redis.Redis client, got "
                    f"{type(url_or_client).__name__}",
                )
            )
        raise_if(errors, "RedisStore")
        try:
            import redis  # lazily: only the users of RedisStore need redis-py
        except ImportError:
            raise ConfigError(
                [
                    (
                        "url_or_client",
                        "RedisStore needs redis-py: pip install 'resilience-primitives[redis]'",
                    )
                ],
                operation="RedisStore",
            ) from None
        # TypeError, ValueError: a URL whose query redis-py parsed but the connection refuses
        self._failures: tuple[type[BaseException], ...] = (
            redis.RedisError,
            OSError,
            TypeError,
            ValueError,
        )
        self.prefix = prefix
        # Event loops' own clients (redis.asyncio), made on first async use in each loop
        self._native: weakref.WeakKeyDictionary[Any, _Native] = weakref.WeakKeyDictionary()
        self._afactory: Callable[[], Any] | None
        if isinstance(url_or_client, str):
            self._where, self._secrets = _redact_url(url_or_client)
            url = url_or_client
            options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
            options.update(_driver_options())
            self._afactory = lambda: _redis_asyncio().Redis.from_url(url, **options)
            try:
                self._client: Any = redis.Redis.from_url(url_or_client, **options)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    [
                        (
                            "url_or_client",
                            f"not a usable redis URL {self._where!r}: "
                            f"{_scrub(str(exc), self._secrets)}",
                        )
                    ],
                    operation="RedisStore",
                ) from None
        else:
            kwargs = getattr(
                getattr(url_or_client, "connection_pool", None), "connection_kwargs", {}
            )
            self._secrets = tuple(s for s in (kwargs.get("password"),) if isinstance(s, str) and s)
            where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
            self._where = f"redis client {where}/{kwargs.get('db', 0)}"
            if isinstance(url_or_client, _redis_asyncio().Redis):
                # An async app's client: its connections belong to one loop and its methods
                # are coroutines, so both kinds of client are built from its settings.
                blocking = _twin(url_or_client, redis)
                if blocking is None:
                    raise ConfigError(
                        [("url_or_client", "cannot mirror this redis.asyncio client; pass a URL")],
                        operation="RedisStore",
                    )
                self._client = blocking()
            else:
                self._client = url_or_client
            self._afactory = _twin(url_or_client, _redis_asyncio())
        self._cas = self._client.register_script(_CAS_LUA)
        self._take = self._client.register_script(_TAKE_LUA)

    def _fail(self, exc: BaseException, key: str) -> NoReturn:
        text = f"{type(exc).__name__}: {exc}"
        scrubbed = _scrub(text, self._secrets)
        error = StoreError(f"redis store {self._where}: {scrubbed}", operation=key)
        if scrubbed != text or _scrub(repr(exc), self._secrets) != repr(exc):
            raise error from None  # the original would show the password
        raise error from exc

    # --- the Store protocol -------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        _check_key(key)
        try:
            raw = self._client.get(self.prefix + key)
        except self._failures as exc:
            self._fail(exc, key)
        return None if raw is None else _decode(raw, key)

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        _check_key(key)
        raw = _encode(value)
        try:
            self._client.set(self.prefix + key, raw)
        except self._failures as exc:
            self._fail(exc, key)

    def compare_and_set(
        self, key: str, expected: Mapping[str, Any] | None, value: Mapping[str, Any]
    ) -> bool:
        _check_key(key)
        args = _cas_args(expected, value)
        try:
            done = self._cas(keys=[self.prefix + key], args=args)
        except self._failures as exc:
            self._fail(exc, key)
        return bool(int(done))

    def delete(self, key: str) -> None:
        _check_key(key)
        try:
            self._client.delete(self.prefix + key, self._bucket_key(key))
        except self._failures as exc:
            self._fail(exc, key)

    def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: float | None,
        tokens: float = 1.0,
    ) -> float:
        args = self._take_args(key, capacity, refill_per_second, now, tokens)
        try:
            wait = self._take(keys=[self._bucket_key(key)], args=args)
        except self._failures as exc:
            self._fail(exc, key)
        return float(wait)

    @staticmethod
    def _take_args(
        key: str, capacity: float, rate: float, now: float | None, tokens: float
    ) -> list[str]:
        _check_key(key)
        _check_tokens(key, tokens)
        _check_bucket(key, capacity, rate, now)
        return [repr(float(capacity)), repr(float(rate)),
                "" if now is None else repr(float(now)), repr(float(tokens))]  # fmt: skip

    def _bucket_key(self, key: str) -> str:
        return f"{self.prefix}tokens:{key}"

    # --- the same on an event loop -------------------------------------------------------
    #
    # On asyncio each loop gets its own redis.asyncio client (connections belong to a loop),
    # closed when the loop shuts down; elsewhere (trio, or a client we cannot mirror) the
    # blocking operation runs on a worker thread. Either way the loop thread never blocks.

    def _loop_native(self) -> bool:
        """Whether the running event loop talks to Redis itself (asyncio with redis.asyncio)."""
        return self._afactory is not None and _async_library() == "asyncio"

    async def _aclient(self) -> _Native | None:
        if not self._loop_native():
            return None
        import asyncio

        loop = asyncio.get_running_loop()
        native = self._native.get(loop)
        if native is None:
            assert self._afactory is not None
            try:
                client = self._afactory()
            except self._failures:
                self._afactory = None  # cannot mirror this client: worker threads it is
                return None
            native = self._native[loop] = _Native(client, lambda: self._native.pop(loop, None))
            await native.closer.__anext__()  # closes the client as the loop shuts down
        return native

    async def aget(self, key: str) -> Record | None:
        """`get` for async callers: never blocks the event loop."""
        native = await self._aclient()
        if native is None:
            return await _to_thread(self.get, key)
        _check_key(key)
        try:
            raw = await native.client.get(self.prefix + key)
        except self._failures as exc:
            self._fail(exc, key)
        return None if raw is None else _decode(raw, key)

    async def aset(self, key: str, value: Mapping[str, Any]) -> None:
        """`set` for async callers: never blocks the event loop."""
        native = await self._aclient()
        if native is None:
            return await _to_thread(self.set, key, value)
        _check_key(key)
        raw = _encode(value)
        try:
            await native.client.set(self.prefix + key, raw)
        except self._failures as exc:
            self._fail(exc, key)

    async def acompare_and_set(
        self, key: str, expected: Mapping[str, Any] | None, value: Mapping[str, Any]
    ) -> bool:
        """`compare_and_set` for async callers: never blocks the event loop."""
        native = await self._aclient()
        if native is None:
            return await _to_thread(self.compare_and_set, key, expected, value)
        _check_key(key)
        args = _cas_args(expected, value)
        try:
            done = await native.cas(keys=[self.prefix + key], args=args)
        except self._failures as exc:
            self._fail(exc, key)
        return bool(int(done))

    async def atake_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: float | None,
        tokens: float = 1.0,
    ) -> float:
        """`take_tokens` for async callers: never blocks the event loop."""
        native = await self._aclient()
        if native is None:
            return await _to_thread(
                self.take_tokens,
                key,
                capacity=capacity,
                refill_per_second=refill_per_second,
                now=now,
                tokens=tokens,
            )
        args = self._take_args(key, capacity, refill_per_second, now, tokens)
        try:
            wait = await native.take(keys=[self._bucket_key(key)], args=args)
        except self._failures as exc:
            self._fail(exc, key)
        return float(wait)

    async def aclose(self) -> None:
        """Close the connections of the running loop's client, and the blocking client's."""
        import asyncio

        native = self._native.get(asyncio.get_running_loop())
        if native is not None:
            await native.closer.aclose()
        self.close()

    # --- the rest -----------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Every key with a record under this prefix (for inspection; uses SCAN)."""
        start = len(self.prefix)
        tokens = self.prefix + "tokens:"
        try:
            found = self._client.scan_iter(match=_glob_escape(self.prefix) + "*", count=500)
            names = [k.decode() if isinstance(k, bytes) else str(k) for k in found]
        except self._failures as exc:
            self._fail(exc, "")
        return sorted(n[start:] for n in names if not n.startswith(tokens))

    def close(self) -> None:
        """Close the client's connections (a client you passed in is closed too)."""
        try:
            self._client.close()
        except self._failures:
            pass

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r})"


def _cas_args(expected: Mapping[str, Any] | None, value: Mapping[str, Any]) -> list[str]:
    raw = _encode(value)
    if expected is None:
        return ["", raw, "1"]
    return [_canonical(expected), raw, "0"]


_DRIVER: dict[str, Any] | None = None


def _driver_options() -> dict[str, Any]:
    """What tells redis-py who we are, worked out once. Left to itself, redis-py 6+ reads
    its own version from the installed package's metadata for every connection it opens:
    a few milliseconds on the event loop each time a pool grows."""
    global _DRIVER
    if _DRIVER is None:
        try:
            from redis.driver_info import DriverInfo  # redis-py >= 7

            _DRIVER = {"driver_info": DriverInfo()}
        except ImportError:  # redis-py 5 and 6: the version is a plain argument
            from redis.utils import get_lib_version

            _DRIVER = {"lib_version": get_lib_version()}  # type: ignore[no-untyped-call]
    return _DRIVER


def _redis_asyncio() -> Any:
    import redis.asyncio

    return redis.asyncio


class _Native:
    """One event loop's redis.asyncio client, its scripts, and the async generator whose
    finalisation (at the loop's `shutdown_asyncgens`, which asyncio.run does) closes it."""

    def __init__(self, client: Any, forget: Callable[[], object]) -> None:
        self.client = client
        self.cas = client.register_script(_CAS_LUA)
        self.take = client.register_script(_TAKE_LUA)
        self.closer = _close_at_shutdown(client, forget)


async def _close_at_shutdown(client: Any, forget: Callable[[], object]) -> AsyncGenerator[None]:
    try:
        yield
    finally:
        forget()  # the entry refers to the loop (its connections do): drop it, or it stays
        try:
            await client.aclose()
        except Exception:  # pragma: no cover - the loop is going away anyway
            pass


def _twin(client: Any, api: Any) -> Callable[[], Any] | None:
    """A factory of clients of `api` (the `redis` module, or `redis.asyncio`) that reach the
    same server as the `client` a user passed, with the same connection settings; None when
    it cannot be mirrored (then async callers use a worker thread)."""
    try:
        import inspect

        pool = client.connection_pool
        kind = {
            "Connection": api.Connection,
            "SSLConnection": api.SSLConnection,
            "UnixDomainSocketConnection": api.UnixDomainSocketConnection,
        }[pool.connection_class.__name__]
        accepted: set[str] = set()
        for cls in kind.__mro__:
            init = cls.__dict__.get("__init__")
            if init is not None:
                accepted.update(inspect.signature(init).parameters)
        # the other client's retry and callbacks are objects of the other API
        skip = {"self", "retry", "redis_connect_func", "connection_pool", "event_dispatcher"}
        kwargs = {
            k: v for k, v in pool.connection_kwargs.items() if k in accepted and k not in skip
        }
    except Exception:
        return None
    return lambda: api.Redis(connection_pool=api.ConnectionPool(connection_class=kind, **kwargs))


async def _to_thread(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    import functools

    import anyio.to_thread

    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def _async_library() -> str | None:
    """The event loop running on this thread ("asyncio" or "trio"), or None. (sniffio alone
    misses asyncio callbacks, such as a task's done-callback: no task is current there.)"""
    try:
        import sniffio

        return sniffio.current_async_library()
    except Exception:
        pass
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return "asyncio"


def _native_async(store: object) -> bool:
    """Whether `store` does its I/O on the running event loop itself (RedisStore on
    asyncio): its `a`-prefixed operations are then awaited right there."""
    native = getattr(store, "_loop_native", None)
    return native is not None and bool(native())


def _report_unavailable(kind: str, name: str | None, store: object, exc: BaseException) -> None:
    """A primitive lost its store: one `StoreUnavailable` event and one warning log line.
    Called once per outage by the primitive; never raises (it runs inside a protected call)."""
    try:
        where = _describe(store)
        error = f"{type(exc).__name__}: {exc}"[:_MAX_TEXT]
        if events.enabled:
            events.emit(events.StoreUnavailable(name or kind, where, error))
        import logging

        logging.getLogger("resilience.stores").warning(
            "%s %r cannot use its store %s (%s); it goes on with its local state",
            kind,
            name,
            where,
            error,
        )
    except Exception:  # pragma: no cover - reporting must never fail the protected call
        pass


def _report_recovered(kind: str, name: str | None, store: object, downtime: float) -> None:
    """The end of an outage `_report_unavailable` reported: a `StoreRecovered` event and a
    log line; never raises."""
    try:
        where = _describe(store)
        if events.enabled:
            events.emit(events.StoreRecovered(name or kind, where, downtime))
        import logging

        logging.getLogger("resilience.stores").warning(
            "%s %r reaches its store %s again after %.1f s", kind, name, where, downtime
        )
    except Exception:  # pragma: no cover
        pass


_MAX_TEXT = 500


def _on_event_loop() -> bool:
    """True on a thread that runs an async event loop (asyncio or trio): no store I/O here."""
    return _async_library() is not None


def _in_process(store: object) -> bool:
    """True for a store that does no I/O (a `MemoryStore`): it may be used from any thread."""
    return isinstance(store, MemoryStore)


class _Background:
    """One daemon thread that runs store writes handed over by event-loop threads, in the
    order they were handed over (a breaker's transitions stay in order)."""

    def __init__(self) -> None:
        import queue

        self._queue: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, fn: Callable[[], object]) -> None:
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()  # after a fork the parent's thread is not ours
                self._thread = threading.Thread(
                    target=self._run, name="resilience-store-writer", daemon=True
                )
                self._thread.start()
        self._queue.put(fn)

    def _run(self) -> None:
        while True:
            fn = self._queue.get()
            try:
                fn()
            except Exception:  # pragma: no cover - the callers report their own failures
                pass


_background = _Background()


def _in_background(fn: Callable[[], object]) -> None:
    """Run `fn()` on the store-writer daemon thread (FIFO), not on the caller's thread."""
    _background.submit(fn)


class _LoopWriter:
    """What `_Background` is for threads, on an asyncio loop for natively async stores: one
    task per loop runs the jobs handed over, in order, without a thread. When the loop shuts
    down with jobs left (asyncio.run cancels every task), they go to the writer thread in
    their blocking form; so does the job it was running when `rerun` says that is safe (a
    write whose outcome is unknown is safe to repeat; counting a trial call is not)."""

    def __init__(self) -> None:
        self._queues: weakref.WeakKeyDictionary[Any, deque[_Job]] = weakref.WeakKeyDictionary()
        self._tasks: set[Any] = set()

    def submit(self, job: _Job) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = deque()
        queue.append(job)
        if len(queue) == 1:  # nobody is draining it
            task = loop.create_task(self._drain(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self, queue: deque[_Job]) -> None:
        import asyncio

        while queue:
            run, _, rerun = queue[0]
            try:
                await run()
            except asyncio.CancelledError:
                if not rerun:
                    queue.popleft()
                while queue:  # the loop is shutting down: finish on the writer thread
                    _in_background(queue.popleft()[1])
                raise
            except Exception:  # pragma: no cover - the callers report their own failures
                pass
            queue.popleft()


_Job = tuple[Callable[[], Awaitable[object]], Callable[[], object], bool]
_loop_writer = _LoopWriter()


def _defer(
    store: object,
    run: Callable[[], Awaitable[object]],
    blocking: Callable[[], object],
    *,
    rerun: bool,
) -> None:
    """Hand store work over from an event loop thread: to the loop's writer task when the
    store is natively async there (`run`), else to the writer thread (`blocking`)."""
    if _native_async(store):
        _loop_writer.submit((run, blocking, rerun))
    else:
        _in_background(blocking)


def _describe(store: object) -> str:
    try:
        return repr(store)[:_MAX_TEXT]  # the stores' reprs never show a password
    except Exception:
        return type(store).__name__


def _check_bucket(key: str, capacity: float, rate: float, now: float | None) -> None:
    # A NaN would be stored as NULL (SQLite) or "nan" (Redis) and poison the bucket for good.
    errors = [
        (name, f"must be a number, got {value!r}")
        for name, value in (("capacity", capacity), ("refill_per_second", rate))
        if isinstance(value, float) and math.isnan(value)
    ]
    if now is not None and not math.isfinite(now):
        errors.append(("now", f"must be a finite clock reading, got {now!r}"))
    if errors:
        raise ConfigError(errors, operation=key)


def _decode(raw: str | bytes, key: str) -> Record:
    # A record is read from a peer: bounded in size (and so in parsing work) before trusted.
    if len(raw) > MAX_RECORD_BYTES:
        raise CorruptRecord(
            f"the record at {key!r} is {len(raw)} bytes, over {MAX_RECORD_BYTES}", operation=key
        )
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecord(f"the record at {key!r} is not JSON: {exc}", operation=key) from None
    if not isinstance(value, dict):
        raise CorruptRecord(f"the record at {key!r} is not a JSON object", operation=key)
    return value


def _redact_url(url: str) -> tuple[str, tuple[str, ...]]:
    """The URL with its password replaced by ***, and the secrets to scrub from messages."""
    from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

    secrets: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable redis URL>", (url,)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, sep, password = userinfo.partition(":")
        secret = password if sep else user  # "redis://secret@host": redis-py's username
        if secret:
            secrets += [secret, unquote(secret)]
        netloc = f"{user}:***@{host}" if sep else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() == "password" for name, _ in pairs):
            secrets += [v for name, v in pairs if name.lower() == "password" and v]
            pairs = [(n, "***" if n.lower() == "password" else v) for n, v in pairs]
            query = urlencode(pairs, safe="*")
    safe = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return safe, tuple(sorted({s for s in secrets if s}, key=len, reverse=True))


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


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
    _check_tokens(key, tokens)
    level, stamp, wait = _bucket(level, stamp, capacity, rate, now, tokens)
    buckets[key] = (level, stamp)
    return wait


def _check_tokens(key: str, tokens: float) -> None:
    if not tokens >= 0:  # negative would fill the bucket; NaN would poison it
        raise ConfigError([("tokens", f"must be >= 0, got {tokens!r}")], operation=key)


def _bucket(
    level: float, stamp: float, capacity: float, rate: float, now: float, tokens: float
) -> tuple[float, float, float]:
    """One token-bucket step: (new level, new stamp, wait). The Lua script of `RedisStore`
    does the same operations in the same order, so every store gives the same answers."""
    if now > stamp:
        level = level + (now - stamp) * rate
        stamp = now
    level = min(level, capacity)  # also when the caller lowered the capacity
    if tokens > capacity:
        return level, stamp, math.inf  # never satisfiable: say so instead of a useless wait
    if level >= tokens:
        return level - tokens, stamp, 0.0
    if rate <= 0:
        return level, stamp, math.inf
    return level, stamp, (tokens - level) / rate


def _encode(value: Mapping[str, Any]) -> str:
    try:
        record = dict(value)
        raw = json.dumps(record, allow_nan=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(f"store records must be JSON-safe dicts: {exc}") from None
    except RecursionError:
        raise InvalidRecord(f"store records must be nested at most {MAX_DEPTH} deep") from None
    problem = _json_problem(record, raw)
    if problem is not None:
        raise InvalidRecord(f"store records must be JSON-safe dicts: {problem}")
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord(f"store records must be at most {MAX_RECORD_BYTES} bytes as JSON")
    return raw


def _canonical(expected: Mapping[str, Any]) -> str:
    """`expected` of a compare-and-set in the stored form (only compared, never stored: a
    record read back from the store, however odd, must compare equal to itself)."""
    try:
        return json.dumps(dict(expected), allow_nan=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRecord(f"expected must be a JSON-safe dict: {exc}") from None


def _json_problem(value: object, text: str) -> str | None:
    """Why `value` (whose JSON is `text`) would not come back from JSON as it went in, or
    could not be read back at all: a non-string key (json would turn {1: x} into {"1": x}),
    nesting deeper than `MAX_DEPTH`, a lone surrogate (not encodable as UTF-8). None: fine.

    Cheap for the usual flat payload: the walk runs only when the JSON has nested containers.
    """
    if text.count("{") + text.count("[") <= 1:  # flat (or brackets inside strings: walked)
        if type(value) is dict:
            for key in value:
                if type(key) is not str:
                    return _walk(value)
    elif isinstance(value, dict | list | tuple):
        problem = _walk(value)
        if problem is not None:
            return problem
    if "\\ud" in text:  # \udXXX escapes: surrogate pairs are fine, lone ones are not
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return "a string holds a lone surrogate (not valid Unicode text)"
    return None


def _walk(value: object) -> str | None:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} deep"
        children: Any
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    return f"keys must be str, got {type(key).__name__} {key!r:.40}"
            children = item.values()
        else:
            children = item
        for child in children:
            if isinstance(child, dict | list | tuple):
                stack.append((child, depth + 1))
    return None


def _key_problem(key: object) -> str | None:
    """Why `key` cannot name a record (None when it can): not a str, or not valid UTF-8."""
    if not isinstance(key, str):
        return f"keys must be str, got {type(key).__name__}"
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return f"key {key!r:.60} holds a lone surrogate (not valid Unicode text)"
    return None


def _check_key(key: object) -> None:
    problem = _key_problem(key)
    if problem is not None:
        raise InvalidRecord(problem)
