"""resilience: circuit breakers, retries, fallbacks, failover, offline queues and CRDTs.

Every public name is importable from here; modules load on first use, so
`import resilience` stays cheap and pydantic, prometheus_client, structlog and sqlite3 load
only when something needs them.

Example:
    >>> import resilience as rs
    >>> breaker = rs.CircuitBreaker("payments", minimum_calls=5)
    >>> breaker.state.name
    'CLOSED'
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._errors import (
    AllFallbacksFailed,
    AllTiersFailed,
    BulkheadFull,
    CircuitOpenError,
    ConfigError,
    CRDTError,
    LocalRejection,
    QueueError,
    QueueFull,
    RateLimited,
    ResilienceError,
    RetryExhausted,
    StoreError,
    TimeoutExceeded,
)

if TYPE_CHECKING:  # what type checkers see; at run time these load on first access
    from ._deadline import deadline, remaining
    from ._policy import Policy
    from ._resilient import resilient
    from .breaker import CircuitBreaker, CircuitState, CountWindow, TimeWindow
    from .bulkhead import Bulkhead
    from .chaos import FaultInjection
    from .classify import (
        DEFAULT_CLASSIFIER,
        Classification,
        Classifier,
        Verdict,
        parse_retry_after,
    )
    from .failover import Failover, Tier
    from .fallback import Default, DegradationLevel, FallbackChain, Served, StaleCache, Step
    from .metrics import Health, MetricsCollector, health
    from .pipeline import Pipeline
    from .queue import DrainReport, OfflineQueue, Priority
    from .ratelimit import RateLimiter
    from .retry import Backoff, Retry, RetryBudget
    from .timeout import Timeout

# public name -> the module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "Verdict": "classify",
    "Classification": "classify",
    "Classifier": "classify",
    "DEFAULT_CLASSIFIER": "classify",
    "parse_retry_after": "classify",
    "CircuitBreaker": "breaker",
    "CountWindow": "breaker",
    "TimeWindow": "breaker",
    "CircuitState": "breaker",
    "Retry": "retry",
    "Backoff": "retry",
    "RetryBudget": "retry",
    "Timeout": "timeout",
    "Bulkhead": "bulkhead",
    "RateLimiter": "ratelimit",
    "DegradationLevel": "fallback",
    "FallbackChain": "fallback",
    "Step": "fallback",
    "StaleCache": "fallback",
    "Default": "fallback",
    "Served": "fallback",
    "Pipeline": "pipeline",
    "Policy": "_policy",
    "resilient": "_resilient",
    "Failover": "failover",
    "Tier": "failover",
    "OfflineQueue": "queue",
    "Priority": "queue",
    "DrainReport": "queue",
    "MetricsCollector": "metrics",
    "Health": "metrics",
    "health": "metrics",
    "FaultInjection": "chaos",
    "deadline": "_deadline",
    "remaining": "_deadline",
}

__all__ = [
    "DEFAULT_CLASSIFIER",
    "AllFallbacksFailed",
    "AllTiersFailed",
    "Backoff",
    "Bulkhead",
    "BulkheadFull",
    "CRDTError",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Classification",
    "Classifier",
    "ConfigError",
    "CountWindow",
    "Default",
    "DegradationLevel",
    "DrainReport",
    "Failover",
    "FallbackChain",
    "FaultInjection",
    "Health",
    "LocalRejection",
    "MetricsCollector",
    "OfflineQueue",
    "Pipeline",
    "Policy",
    "Priority",
    "QueueError",
    "QueueFull",
    "RateLimited",
    "RateLimiter",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryExhausted",
    "Served",
    "StaleCache",
    "Step",
    "StoreError",
    "Tier",
    "TimeWindow",
    "Timeout",
    "TimeoutExceeded",
    "Verdict",
    "__version__",
    "deadline",
    "health",
    "parse_retry_after",
    "remaining",
    "resilient",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name == "__version__":
        from ._version import __version__

        return __version__
    raise AttributeError(f"module 'resilience' has no attribute {name!r}")


def __dir__() -> list[str]:
    own = (n for n, v in globals().items() if n.startswith("__") or _is_submodule(v))
    return sorted({*own, *__all__})


def _is_submodule(value: object) -> bool:
    return isinstance(value, ModuleType) and value.__name__.startswith(__name__ + ".")
