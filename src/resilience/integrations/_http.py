"""What the HTTP client integrations share (httpx transport, requests adapter): no client import.

One operation name can cover several breakers (key="route", or a callable key): `BreakerGroup`
stands in the registry for all of them, so `rs.health()` sees the worst one under that name.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FAILURE_STATUSES", "BreakerGroup", "lowered"]

FAILURE_STATUSES = frozenset({408, 425, 429, *range(500, 600)})
"""Statuses that count as failures inside the policy (the others are answers)."""

# worst first: what a group of breakers under one operation name reports to health()
_SEVERITY = {"forced_open": 0, "open": 1, "half_open": 2, "closed": 3, "disabled": 4}


class BreakerGroup:
    """Several breakers under one operation name, seen by health() as the worst of them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: list[Any] = []

    def add(self, breaker: Any) -> None:
        """Add a breaker of this name; from the second on, the group stands in the registry."""
        from .. import _registry

        self.members.append(breaker)
        if len(self.members) > 1:
            _registry.register("breaker", self.name, self)

    def _worst(self) -> Any:
        return min(self.members, key=lambda b: _SEVERITY.get(str(b.state.value), 5))

    @property
    def state(self) -> Any:
        return self._worst().state

    def snapshot(self) -> dict[str, Any]:
        return self._worst().snapshot()  # type: ignore[no-any-return]


def lowered(value: float | None, left: float) -> float:
    """A timeout no longer than the time left (None, no timeout, becomes the time left)."""
    return left if value is None or value > left else value
