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

from ._models import OperationPolicy

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


def _never_waits(backoff: Any) -> bool:
    if backoff.maximum == 0:
        return True
    if backoff.kind == "linear":
        return bool(backoff.initial == 0 and backoff.step == 0)
    if backoff.kind in ("exponential", "constant"):
        return bool(backoff.initial == 0)
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
    args = _retry_defaults() | retry.arguments()
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
    backoff = args["backoff"]
    if backoff is None:
        backoff = importlib.import_module("resilience.retry").Backoff.exponential()
    if environment != "testing" and _never_waits(backoff):
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
