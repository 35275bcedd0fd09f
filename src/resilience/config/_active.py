"""The active configuration: what `@resilient` reads; swapped atomically at run time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def use(cfg: Config) -> Config:
    """Make `cfg` the active config: `@resilient` functions rebuild their pipelines from it.

    The swap is atomic per operation: calls already running finish on the policies they
    started with; an operation whose settings did not change keeps its policy objects (a
    breaker keeps its state); a breaker whose settings did not change is kept even when other
    sections of its operation change.

    Returns:
        The config that was active before (None if none).

    Raises:
        ConfigError: building a policy failed; nothing was changed.

    Example:
        >>> from resilience import config
        >>> previous = config.use(config.load(environ={"RESILIENCE_ENV": "testing"}))
        >>> config.current().environment
        'testing'
    """
    if not isinstance(cfg, Config):
        raise ConfigError([("config", f"must be a Config from config.load(), got {cfg!r:.80}")])
    with _lock:
        previous = _active
        _swap(cfg)
        return previous  # type: ignore[return-value]


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
        return new


def _swap(cfg: Config) -> None:
    """Rebuild every live `@resilient` pipeline from `cfg`, then make `cfg` active."""
    global _active
    from .. import _resilient

    with _lock:
        commit = _resilient._prepare(cfg)  # builds everything first; raises before any change
        _active = cfg
        commit()
