"""The active configuration: what `@resilient` reads; swapped atomically at run time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import events
from .._errors import ConfigError
from .._resilient import _lock
from ._load import Config, load

__all__ = ["current", "register", "use"]

_active: Config | None = None


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
        if cfg is None:
            from .. import _resilient

            _active = None
            _resilient._reset()
        else:
            _swap(cfg)
        if events.enabled:
            events.emit(events.ConfigChanged("*", cfg.environment if cfg is not None else ""))
        return previous


def register(name: str, table: Mapping[str, Any]) -> Config:
    """Add or replace operation `name` in the active config, validated, at run time.

    `table` has the shape of one `[operations."<name>"]` table. Environment variables for
    the operation still override it.

    Returns:
        The new active config.

    Raises:
        ConfigError: the table is invalid; the active config is unchanged.

    Example:
        >>> from resilience import config
        >>> cfg = config.register("search", {"timeout": 2.0, "retry": {"max_attempts": 2}})
        >>> cfg.operation("search").timeout.seconds
        2.0
    """
    with _lock:
        new = current().with_operation(name, table)
        _swap(new)
        if events.enabled:
            events.emit(events.ConfigChanged(name, new.environment))
        return new


def _swap(cfg: Config) -> None:
    """Rebuild every live `@resilient` pipeline from `cfg`, then make `cfg` active."""
    global _active
    from .. import _resilient

    with _lock:
        commit = _resilient._prepare(cfg)  # builds everything first; raises before any change
        _active = cfg
        commit()
