"""What the SQLite-backed parts (the offline queue, SQLiteStore) share.

Imported only by them, so `import resilience` never loads sqlite3.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["ForeignFile", "busy_retry", "foreign_tables", "header_problem", "make_ours"]

T = TypeVar("T")

_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
_HEADER = (
    "SELECT (SELECT application_id FROM pragma_application_id),"
    " (SELECT user_version FROM pragma_user_version),"
    " (SELECT group_concat(name, char(31)) FROM sqlite_master)"
)


def busy_retry(timeout: float, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)`, waiting out another process's lock with short jittered sleeps.

    SQLite's own busy handler sleeps up to 100 ms at a time, which collapses throughput when
    several processes write to one file. Real time on purpose: this waits on I/O, not on a
    primitive's clock. Gives up (re-raising) after `timeout` seconds.
    """
    try:
        return fn(*args)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF not in _BUSY:
            raise
    deadline = time.monotonic() + timeout
    pause = 0.0001
    while True:
        time.sleep(pause * (0.5 + random.random()))
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _BUSY or time.monotonic() > deadline:
                raise
        pause = min(pause * 2, 0.005)


def header_problem(
    db: sqlite3.Connection,
    path: str,
    *,
    kind: str,
    application_id: int,
    schema_version: int,
    own_names: frozenset[str],
) -> str | None:
    """Why the file behind `db` is not ours to use (None when it is), read without writing.

    A file with no application id and no schema version is ours when it holds nothing but
    our own tables: empty, or being created by another process right now (the caller checks
    again under its write lock before creating anything).
    """
    # One statement, so one read snapshot: separate PRAGMAs outside a transaction could see
    # another process's commit land between them (user_version set, application_id not yet).
    app_id, version, names_text = db.execute(_HEADER).fetchone()
    if app_id == 0 and version == 0:
        names = set(names_text.split("\x1f")) if names_text else set()
        if names <= own_names:
            return None
    if app_id != application_id:
        return (
            f"{path!r} is a SQLite file of another application (application_id "
            f"{app_id:#x}, expected {application_id:#x}); it was left untouched"
        )
    if version > schema_version:
        return (
            f"{path!r} has {kind} schema version {version}, newer than this library's "
            f"{schema_version}; upgrade resilience to open it (the file was left untouched)"
        )
    if version < schema_version:
        return (
            f"{path!r} has {kind} schema version {version}, which this library does not "
            f"read (it writes {schema_version}); it was left untouched"
        )
    return None


class ForeignFile(sqlite3.DatabaseError):
    """Raised under the write lock when an unmarked file already holds tables."""


def foreign_tables(db: sqlite3.Connection, path: str, kind: str) -> None:
    """Under the write lock, before creating our schema in an unmarked file: refuse it if it
    holds any table at all. Our schema is created in one transaction together with its
    marks, so an unmarked file with tables (even ones named like ours) is someone else's."""
    names = [row[0] for row in db.execute("SELECT name FROM sqlite_master LIMIT 5")]
    if names:
        raise ForeignFile(
            f"{path!r} is not a {kind} file: it holds other tables ({', '.join(names)}) and "
            "no application id; it was left untouched"
        )


def make_ours(
    db: sqlite3.Connection,
    path: str,
    kind: str,
    check: Callable[[], None],
    schema: Iterable[str],
    synchronous: str,
) -> None:
    """Give a new file our schema, or check an existing one (`check` raises if it is not
    ours), then switch to WAL. Nothing is written, not even the switch to WAL, before the
    file is known to be ours or has been made ours: a refused file is left byte for byte as
    it was. Several processes may do this at once: the schema goes in inside one immediate
    transaction, after checking again (another may have created it meanwhile)."""
    check()
    if db.execute("PRAGMA user_version").fetchone()[0] == 0:
        db.execute("BEGIN IMMEDIATE")
        try:
            check()
            if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                foreign_tables(db, path, kind)
                for statement in schema:
                    db.execute(statement)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
