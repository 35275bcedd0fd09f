"""What the SQLite-backed parts (the offline queue, SQLiteStore) share.

Imported only by them, so `import resilience` never loads sqlite3.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["busy_retry"]

T = TypeVar("T")

_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


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
