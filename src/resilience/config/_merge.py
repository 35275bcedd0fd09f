"""Layering raw operation tables: preset < [defaults] < the operation's table < env variables.

Layers are plain dicts of the file layout. Merging is per key, recursively for sub-tables
(a section, `retry.backoff`, `retry.budget`, `breaker.window`, `fallback.stale_cache`); a
sub-table whose `kind` changes replaces the lower one (an exponential backoff's `multiplier`
means nothing to a constant one); `false` replaces whatever was below (turns it off).
Origins are tracked per key path for `explain` and for error messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TABLE_PATHS", "copy_table", "format_location", "merge_into"]

# Paths (relative to an operation) whose dict values are merged key by key.
TABLE_PATHS: frozenset[tuple[str, ...]] = frozenset(
    {
        ("timeout",),
        ("attempt_timeout",),
        ("retry",),
        ("retry", "backoff"),
        ("retry", "budget"),
        ("breaker",),
        ("breaker", "window"),
        ("bulkhead",),
        ("rate_limit",),
        ("fallback",),
        ("fallback", "stale_cache"),
        ("chaos",),
    }
)

Path = tuple[str, ...]
Origins = dict[Path, str]

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def format_location(parts: Iterable[object]) -> str:
    """`("operations", "llm.generate", "retry")` -> `operations."llm.generate".retry`.

    Example:
        >>> format_location(["operations", "llm.generate", "retry", "max_attempts"])
        'operations."llm.generate".retry.max_attempts'
    """
    out = []
    for p in parts:
        if isinstance(p, int):
            out.append(f"[{p}]")
            continue
        s = str(p)
        out.append("." + (s if _BARE.match(s) else '"' + s.replace('"', '\\"') + '"'))
    return "".join(out).lstrip(".")


def copy_table(value: Any) -> Any:
    """A copy of nested dicts (leaves are shared: they are never mutated)."""
    if isinstance(value, dict):
        return {k: copy_table(v) for k, v in value.items()}
    return value


def _drop_under(origins: Origins, path: Path) -> None:
    n = len(path)
    for p in [p for p in origins if len(p) > n and p[:n] == path]:
        del origins[p]


def merge_into(
    base: dict[str, Any],
    over: Mapping[str, Any],
    origin: str,
    origins: Origins | None = None,
    path: Path = (),
) -> None:
    """Merge `over` into `base` in place (`base` must be a private copy).

    Args:
        base: the lower layers, merged so far.
        over: the layer on top.
        origin: a label for the values `over` sets ("file resilience.toml", an env variable).
        origins: path -> origin label, updated when given.
        path: where `base` sits below the operation (for recursion).
    """
    for key, value in over.items():
        p = (*path, key)
        if isinstance(value, dict) and p in TABLE_PATHS:
            current = base.get(key)
            if (
                not isinstance(current, dict)
                or ("kind" in value and value.get("kind") != current.get("kind"))
                # an explicit number for `timeout` over a table: replace
            ):
                current = {}
                if origins is not None:
                    _drop_under(origins, p)
                    origins[p] = origin
            base[key] = current
            merge_into(current, value, origin, origins, p)
        else:
            base[key] = copy_table(value)
            if origins is not None:
                _drop_under(origins, p)
                origins[p] = origin
