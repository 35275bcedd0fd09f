"""Configuration: pydantic models, presets, environment detection, per-operation overrides.

`load()` reads a file (TOML, JSON, YAML) and the environment variables, layers them over a
preset chosen by the detected environment, and validates everything with the policies' own
argument checks. `use()` and `register()` change the active configuration at run time, which
`@resilient("operation")` functions follow.

Importing this package loads pydantic; `import resilience` does not import it.

Example:
    >>> from resilience import config
    >>> cfg = config.load(
    ...     data={"operations": {"llm.generate": {"retry": {"max_attempts": 4}}}},
    ...     environ={"RESILIENCE_ENV": "staging"},
    ... )
    >>> cfg.environment, cfg.operation("llm.generate").retry.max_attempts
    ('staging', 4)
"""

from __future__ import annotations

from .._errors import ConfigError
from ._active import current, register, use
from ._detect import ALIASES, ENVIRONMENTS, detect_environment, normalize_environment
from ._load import ChaosInProductionWarning, Config, load
from ._models import (
    BackoffSettings,
    BreakerSettings,
    BudgetSettings,
    BulkheadSettings,
    ChaosSettings,
    FallbackSettings,
    OperationPolicy,
    RateLimitSettings,
    RetrySettings,
    StaleCacheSettings,
    TimeoutSettings,
    WindowSettings,
)
from ._presets import PRESETS

__all__ = [
    "ALIASES",
    "ENVIRONMENTS",
    "PRESETS",
    "BackoffSettings",
    "BreakerSettings",
    "BudgetSettings",
    "BulkheadSettings",
    "ChaosInProductionWarning",
    "ChaosSettings",
    "Config",
    "ConfigError",
    "FallbackSettings",
    "OperationPolicy",
    "RateLimitSettings",
    "RetrySettings",
    "StaleCacheSettings",
    "TimeoutSettings",
    "WindowSettings",
    "current",
    "detect_environment",
    "load",
    "normalize_environment",
    "register",
    "use",
]
