"""Safety checks on a whole operation policy, beyond each argument's bounds: retry storms.

They refuse (with `ConfigError`) policies that turn an outage into a self-inflicted one,
unless the retry section says `allow_retry_storm = true`:

* more than `MANY_ATTEMPTS` attempts with no deadline;
* a backoff that never waits (a 429 answered by an immediate retry), outside `testing`;
* in production, more than `PRODUCTION_ATTEMPTS_WITHOUT_BUDGET` attempts with no retry budget.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

from ._models import BackoffSettings, OperationPolicy

__all__ = ["MANY_ATTEMPTS", "PRODUCTION_ATTEMPTS_WITHOUT_BUDGET", "storm_problems"]

MANY_ATTEMPTS = 5
PRODUCTION_ATTEMPTS_WITHOUT_BUDGET = 3

_ALLOW = "or set allow_retry_storm = true in the retry section"


@functools.cache
def _retry_defaults() -> dict[str, Any]:
    retry = importlib.import_module("resilience.retry").Retry
    return {
        p.name: p.default
        for p in inspect.signature(retry).parameters.values()
        if p.default is not p.empty
    }


@functools.cache
def _backoff_defaults(kind: str) -> dict[str, Any]:
    backoff = importlib.import_module("resilience.retry").Backoff
    return {
        p.name: p.default
        for p in inspect.signature(getattr(backoff, kind)).parameters.values()
        if p.default is not p.empty
    }


def _never_waits(settings: BackoffSettings | None) -> bool:
    """Whether a backoff's every delay is 0 (read from the settings: nothing is built)."""
    if settings is None:
        return _never_waits_args("exponential", _backoff_defaults("exponential"))
    args = _backoff_defaults(settings.kind) | {
        k: getattr(settings, k) for k in settings.model_fields_set
    }
    return _never_waits_args(settings.kind, args)


def _never_waits_args(kind: str, args: dict[str, Any]) -> bool:
    if kind == "constant":
        return bool(args["delay"] == 0)
    if args.get("maximum") == 0:
        return True
    if kind == "linear":
        return bool(args["initial"] == 0 and args["step"] == 0)
    if kind == "exponential":
        return bool(args["initial"] == 0)
    return False


def storm_problems(policy: OperationPolicy, environment: str) -> list[tuple[tuple[str, ...], str]]:
    """The retry-storm problems of `policy` in `environment`, as (path, message).

    Example:
        >>> p = OperationPolicy.model_validate({"retry": {"max_attempts": 10}})
        >>> storm_problems(p, "development")[0][0]
        ('retry', 'deadline')
    """
    retry = policy.retry
    if retry is None or retry.allow_retry_storm:
        return []
    args = _retry_defaults() | {k: getattr(retry, k) for k in retry.model_fields_set}
    attempts = args["max_attempts"]
    if attempts <= 1:
        return []
    out: list[tuple[tuple[str, ...], str]] = []
    if attempts > MANY_ATTEMPTS and args["deadline"] is None:
        out.append(
            (
                ("retry", "deadline"),
                f"{attempts} attempts with no deadline can turn an outage into a retry storm; "
                f"set a deadline or at most {MANY_ATTEMPTS} attempts, {_ALLOW}",
            )
        )
    if environment != "testing" and _never_waits(retry.backoff):
        out.append(
            (
                ("retry", "backoff"),
                "a backoff that never waits retries rate-limited (429) and failing calls at "
                f"once, multiplying the load; use a non-zero backoff, {_ALLOW}",
            )
        )
    if (
        environment == "production"
        and attempts > PRODUCTION_ATTEMPTS_WITHOUT_BUDGET
        and args["budget"] is None
    ):
        out.append(
            (
                ("retry", "budget"),
                f"{attempts} attempts with no retry budget in production can multiply the load "
                "on a failing dependency; set budget = { ratio = 0.2 }, "
                f"at most {PRODUCTION_ATTEMPTS_WITHOUT_BUDGET} attempts, {_ALLOW}",
            )
        )
    return out
