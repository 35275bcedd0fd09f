"""Argument checks shared by the policies and the config models: the one place bounds live.

Each policy has a `validate(**kwargs) -> list[(argument, message)]` built from these checks;
its constructor raises `ConfigError` with all of them, and `resilience.config` calls the same
function, so the two can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ._errors import ConfigError

__all__ = ["Errors", "raise_if"]


class Errors(list[tuple[str, str]]):
    """A list of (argument, message) with the common checks as methods.

    Example:
        >>> e = Errors()
        >>> e.positive("open_duration", -1)
        >>> e
        [('open_duration', 'must be > 0 and finite, got -1')]
    """

    def _number(self, name: str, value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.append((name, f"must be a number, got {type(value).__name__} {value!r}"))
            return None
        try:
            if math.isnan(value):
                self.append((name, "must be a number, got nan"))
                return None
            return float(value)
        except OverflowError:  # an int beyond float range: as good as infinite
            return math.inf if value > 0 else -math.inf

    def positive(self, name: str, value: object, *, finite: bool = True) -> None:
        v = self._number(name, value)
        if v is not None and (v <= 0 or (finite and math.isinf(v))):
            self.append((name, f"must be > 0{' and finite' if finite else ''}, got {value!r}"))

    def non_negative(self, name: str, value: object, *, finite: bool = True) -> None:
        v = self._number(name, value)
        if v is not None and (v < 0 or (finite and math.isinf(v))):
            self.append((name, f"must be >= 0{' and finite' if finite else ''}, got {value!r}"))

    def fraction(self, name: str, value: object) -> None:
        """In (0, 1]."""
        v = self._number(name, value)
        if v is not None and not 0 < v <= 1:
            self.append((name, f"must be in (0, 1], got {value!r}"))

    def integer(self, name: str, value: object, *, minimum: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.append((name, f"must be an integer, got {type(value).__name__} {value!r}"))
        elif value < minimum:
            self.append((name, f"must be >= {minimum}, got {value!r}"))

    def at_least(self, name: str, value: object, other_name: str, other: object) -> None:
        """`value >= other`, when both are numbers (each is checked on its own elsewhere)."""
        if (
            isinstance(value, int | float)
            and isinstance(other, int | float)
            and not isinstance(value, bool)
            and value < other
        ):
            self.append((name, f"must be >= {other_name} ({other!r}), got {value!r}"))

    def one_of(self, name: str, value: object, choices: Iterable[object]) -> None:
        options = list(choices)
        if value not in options:
            self.append((name, f"must be one of {', '.join(map(repr, options))}; got {value!r}"))


def raise_if(errors: list[tuple[str, str]], operation: str | None = None) -> None:
    """Raise `ConfigError` listing every error, if there is any."""
    if errors:
        raise ConfigError(errors, operation=operation)
