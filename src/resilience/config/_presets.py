"""The built-in presets: named, validated operation tables (see docs/config.md for the why).

An environment's default preset is the preset of the same name. Every number here is a
keyword argument of a policy and is checked by that policy's own `validate`.
"""

from __future__ import annotations

from typing import Any

from . import _models
from ._models import OperationPolicy, validate_table

__all__ = ["PRESETS", "PRESET_TABLES"]

# Every timeout here is cooperative (the default mode): a sync function runs on the caller's
# thread (threading.local, DB sessions and request state keep working) under a time budget that
# Retry, the httpx transport and drain honour; async calls are cancelled at the limit.
# `attempt_timeout` bounds each attempt inside the retry (Polly's AttemptTimeout,
# resilience4j's TimeLimiter); `timeout` bounds the whole call, retries and waits included.

_PRODUCTION: dict[str, Any] = {
    # a hung dependency costs at most 10 s of the caller's time
    "timeout": {"seconds": 10.0},
    # and one attempt at most 3 s, so a hung first attempt leaves time for a second
    "attempt_timeout": {"seconds": 3.0},
    # 3 attempts, jittered exponential waits (0.2 s, 0.4 s, ... up to 5 s), all within 8 s,
    # and at most 20% extra load from retries (plus 10 a second) so failures do not multiply
    "retry": {
        "max_attempts": 3,
        "backoff": {
            "kind": "exponential",
            "initial": 0.2,
            "multiplier": 2.0,
            "maximum": 5.0,
            "jitter": "full",
        },
        "deadline": 8.0,
        "budget": {"ratio": 0.2, "min_per_second": 10},
    },
    # open when half of the last 100 calls failed (after 20), probe after 30 s, doubling to 5 min
    "breaker": {
        "failure_rate_threshold": 0.5,
        "minimum_calls": 20,
        "window": {"kind": "count", "size": 100},
        "open_duration": 30.0,
        "open_duration_max": 300.0,
        "half_open_calls": 3,
    },
}

PRESET_TABLES: dict[str, dict[str, Any]] = {
    # short waits and quick recovery, so a developer sees every policy act in seconds
    "development": {
        "timeout": {"seconds": 30.0},
        "attempt_timeout": {"seconds": 10.0},
        "retry": {
            "max_attempts": 3,
            "backoff": {
                "kind": "exponential",
                "initial": 0.1,
                "multiplier": 2.0,
                "maximum": 2.0,
                "jitter": "full",
            },
            "deadline": 30.0,
        },
        "breaker": {
            "failure_rate_threshold": 0.5,
            "minimum_calls": 5,
            "window": {"kind": "count", "size": 20},
            "open_duration": 5.0,
            "half_open_calls": 1,
        },
    },
    # no waits, few attempts, no state carried between tests (no breaker), no timeouts
    "testing": {
        "retry": {"max_attempts": 2, "backoff": {"kind": "constant", "delay": 0.0}},
    },
    # production's numbers, with a breaker that probes sooner so a deploy recovers quickly
    "staging": {
        **_PRODUCTION,
        "breaker": {**_PRODUCTION["breaker"], "open_duration": 15.0, "open_duration_max": 120.0},
    },
    "production": _PRODUCTION,
    # revenue-critical: more attempts within a stricter deadline, a retry budget, its own
    # capacity (bulkhead) and the last good answer when everything else fails
    "critical": {
        "timeout": {"seconds": 5.0},
        "attempt_timeout": {"seconds": 1.0},
        "retry": {
            "max_attempts": 5,
            "backoff": {
                "kind": "exponential",
                "initial": 0.05,
                "multiplier": 2.0,
                "maximum": 1.0,
                "jitter": "full",
            },
            "deadline": 4.0,
            "budget": {"ratio": 0.3, "min_per_second": 20},
        },
        "breaker": {
            "failure_rate_threshold": 0.5,
            "minimum_calls": 20,
            "window": {"kind": "count", "size": 50},
            "open_duration": 10.0,
            "open_duration_max": 60.0,
            "half_open_calls": 5,
        },
        "bulkhead": {"max_concurrent": 200, "max_waiting": 200},
        "fallback": {"stale_cache": {"max_age": 300.0}},
    },
    # many cheap calls: tight timeout, one retry within a small budget, a time-based window
    # (call counts fill a count window in milliseconds), a wide bulkhead that never queues
    "high_throughput": {
        "timeout": {"seconds": 2.0},
        "attempt_timeout": {"seconds": 0.7},
        "retry": {
            "max_attempts": 2,
            "backoff": {
                "kind": "exponential",
                "initial": 0.05,
                "multiplier": 2.0,
                "maximum": 0.5,
                "jitter": "full",
            },
            "deadline": 1.5,
            "budget": {"ratio": 0.1, "min_per_second": 5},
        },
        "breaker": {
            "failure_rate_threshold": 0.5,
            "minimum_calls": 100,
            "window": {"kind": "time", "seconds": 10.0},
            "open_duration": 15.0,
            "half_open_calls": 10,
        },
        "bulkhead": {"max_concurrent": 1000, "max_waiting": 0},
    },
    # nice to have: no retries (no extra load on a struggling dependency), a breaker that
    # opens early and stays open long, and a small bulkhead that sheds load first
    "best_effort": {
        "timeout": {"seconds": 3.0},
        "breaker": {
            "failure_rate_threshold": 0.3,
            "minimum_calls": 10,
            "window": {"kind": "count", "size": 20},
            "open_duration": 60.0,
            "open_duration_max": 600.0,
            "half_open_calls": 1,
        },
        "bulkhead": {"max_concurrent": 10, "max_waiting": 0},
    },
}

PRESETS: dict[str, OperationPolicy] = {
    name: validate_table({"preset": name, **table}, ("presets", name))
    for name, table in PRESET_TABLES.items()
}
"""The presets by name. Add your own: `PRESETS["mine"] = OperationPolicy.model_validate(...)`
(before loading the configs that name it)."""

_models._PRESET_NAMES = lambda: tuple(PRESETS)
