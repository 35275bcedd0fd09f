"""A process-wide, weakly referenced registry of named primitives (for `health()` and metrics).

Primitives register themselves when built; registering keeps nothing alive: when the last
strong reference to a breaker goes, it leaves the registry. A later primitive with the same
kind and name replaces the earlier one.

Example:
    >>> from resilience import _registry
    >>> class Thing: pass
    >>> t = Thing()
    >>> _registry.register("thing", "a", t)
    >>> _registry.registered("thing") == {"a": t}
    True
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["kinds", "register", "registered", "unregister"]

_lock = threading.Lock()
_by_kind: dict[str, weakref.WeakValueDictionary[str, Any]] = {}


def register(kind: str, name: str, obj: object) -> None:
    """Remember `obj` (weakly) as the `kind` named `name`, e.g. ("breaker", "payments")."""
    with _lock:
        table = _by_kind.get(kind)
        if table is None:
            table = _by_kind[kind] = weakref.WeakValueDictionary()
        table[name] = obj


def unregister(kind: str, name: str, obj: object | None = None) -> None:
    """Forget `name` (only if it is still `obj`, when given)."""
    with _lock:
        table = _by_kind.get(kind)
        if table is None:
            return
        current = table.get(name)
        if current is not None and (obj is None or current is obj):
            del table[name]


def registered(kind: str) -> dict[str, Any]:
    """The live primitives of `kind`, by name (a strong copy: iterate it freely)."""
    with _lock:
        table = _by_kind.get(kind)
        return {} if table is None else dict(table.items())


def kinds() -> list[str]:
    """Every kind with at least one live primitive, sorted."""
    with _lock:
        return sorted(k for k, table in _by_kind.items() if len(table))
