"""The active configuration: what `@resilient` reads; swapped atomically at run time.

A swap is announced to listeners (`listen`): what is built from the config (the pipelines
of `@resilient` functions) registers itself here, so this module imports nothing built from
it. Every listener prepares first; only when all have prepared does the config change and
every prepared switch run, so a config that cannot be built changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from .. import events
from .._errors import ConfigError
from ._load import Config, load

__all__ = ["current", "register", "use"]

_active: Config | None = None
_lock = threading.RLock()
"""Guards the active config and its swaps; listeners may take their own lock inside it."""
Listener = Callable[[Config | None], Callable[[], None]]
_listeners: list[Listener] = []


def listen(prepare: Listener) -> None:
    """Have `prepare(cfg)` called (under `_lock`) before each swap of the active config.

    `cfg` is the config about to become active, or None when it is being forgotten
    (`use(None)`). `prepare` builds whatever it needs and returns the function that switches
    to it; raising (a `ConfigError`) vetoes the swap: nothing changes anywhere. Registering
    the same listener twice has no effect.
    """
    with _lock:
        if prepare not in _listeners:
            _listeners.append(prepare)


def current() -> Config:
    """The active config; on first use (nothing `use`d yet), `load()` with the defaults.

    Example:
        >>> from resilience import config
        >>> config.current().environment in ("development", "testing", "staging", "production")
        True
    """
    cfg = _active
    if cfg is not None:
        return cfg
    with _lock:
        if _active is None:
            _swap(load())
        assert _active is not None
        return _active


def use(cfg: Config | None) -> Config | None:
    """Make `cfg` the active config: `@resilient` functions rebuild their pipelines from it.

    `use(None)` forgets the active config (the next `@resilient` call loads one again and
    builds fresh policies); handy to undo a `use` in tests.

    The swap is atomic per operation: calls already running finish on the policies they
    started with; an operation whose settings did not change keeps its policy objects (a
    breaker keeps its state); a breaker whose settings did not change is kept even when other
    sections of its operation change.

    Returns:
        The config that was active before (None if none): `use(previous)` restores it.

    Raises:
        ConfigError: building a policy failed; nothing was changed.

    Example:
        >>> from resilience import config
        >>> previous = config.use(config.load(environ={"RESILIENCE_ENV": "testing"}))
        >>> config.current().environment
        'testing'
    """
    global _active
    if cfg is not None and not isinstance(cfg, Config):
        raise ConfigError([("config", f"must be a Config from config.load(), got {cfg!r:.80}")])
    with _lock:
        previous = _active
        _swap(cfg)
        if events.enabled:
            events.emit(events.ConfigChanged("*", cfg.environment if cfg is not None else ""))
        return previous


def register(name: str, table: Mapping[str, Any], *, merge: bool = False) -> Config:
    """Add, replace or patch operation `name` in the active config, validated, at run time.

    `table` has the shape of one `[operations."<name>"]` table. Environment variables for
    the operation still override it.

    Args:
        name: the operation.
        table: its settings.
        merge: False (the default) replaces the operation's table; True patches it: only the
            settings `table` names change, the rest stay as the file (or an earlier
            `register`) set them, so the policies they built are kept (a breaker keeps its
            state, a bulkhead its running calls).

    Returns:
        The new active config.

    Raises:
        ConfigError: the table is invalid; the active config is unchanged.

    Example:
        >>> from resilience import config
        >>> cfg = config.register("search", {"timeout": 2.0, "retry": {"max_attempts": 2}})
        >>> cfg.operation("search").timeout.seconds
        2.0
        >>> cfg = config.register("search", {"timeout": "500ms"}, merge=True)
        >>> cfg.operation("search").timeout.seconds, cfg.operation("search").retry.max_attempts
        (0.5, 2)
    """
    with _lock:
        new = current().with_operation(name, table, merge=merge)
        _swap(new)
        if events.enabled:
            events.emit(events.ConfigChanged(name, new.environment))
        return new


def _swap(cfg: Config | None) -> None:
    """Let every listener build from `cfg`, then make `cfg` active and switch them all."""
    global _active
    with _lock:
        commits = [prepare(cfg) for prepare in _listeners]  # raises before any change
        _active = cfg
        for commit in commits:
            commit()
