"""Layering raw operation tables: preset < [defaults] < the operation's table < env variables.

Layers are plain dicts of the file layout. Merging is per key, recursively for sub-tables
(a section, `retry.backoff`, `retry.budget`, `breaker.window`, `fallback.stale_cache`); a
sub-table whose `kind` changes replaces the lower one (an exponential backoff's `multiplier`
means nothing to a constant one); `false` replaces whatever was below (turns it off).
Origins are tracked per key path for `explain` and for error messages.

One rule links two keys: `breaker.open_duration_max` follows an `open_duration` set above the
preset unless it is set there too (`follow_open_duration`): writing `open_duration = 2.0` means
a breaker open for 2 s, not one that doubles up to the preset's 300 s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TABLE_PATHS", "copy_table", "follow_open_duration", "format_location", "merge_into"]

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


_OPEN = ("breaker", "open_duration")
_OPEN_MAX = ("breaker", "open_duration_max")


def origin_of(origins: Origins, path: Path) -> str | None:
    """The origin of the value at `path`: its own, else its closest table's."""
    return next((origins[path[:i]] for i in range(len(path), 0, -1) if path[:i] in origins), None)


def follow_open_duration(
    merged: dict[str, Any],
    layers: Iterable[tuple[Mapping[str, Any], str]],
    origins: Origins | None = None,
) -> None:
    """`breaker.open_duration_max` follows an explicitly set `open_duration` unless set itself.

    `layers` are those merged over the preset, lowest first. When one of them sets
    `open_duration` and none sets `open_duration_max`, the preset's maximum no longer applies:
    `open_duration_max` becomes `open_duration` (the breaker stays open that long every time;
    no doubling). Set `open_duration_max` too to let it grow.

    Example:
        >>> merged = {"breaker": {"open_duration": 2.0, "open_duration_max": 300.0}}
        >>> follow_open_duration(merged, [({"breaker": {"open_duration": 2.0}}, "file x")])
        >>> merged["breaker"]["open_duration_max"]
        2.0
    """
    set_by: str | None = None
    max_set = False
    for layer, label in layers:
        if "breaker" not in layer:
            continue
        breaker = layer["breaker"]
        if not isinstance(breaker, Mapping):  # off: what was set below is gone
            set_by, max_set = None, False
            continue
        if "open_duration" in breaker:
            set_by = label
        max_set = max_set or "open_duration_max" in breaker
    breaker = merged.get("breaker")
    if set_by is None or max_set or not isinstance(breaker, dict):
        return
    if breaker.get("open_duration_max") in (None, False) or "open_duration" not in breaker:
        return
    breaker["open_duration_max"] = breaker["open_duration"]
    if origins is not None:
        origins[_OPEN_MAX] = (
            f"follows breaker.open_duration (set by {set_by}); "
            "set breaker.open_duration_max to let it grow"
        )
