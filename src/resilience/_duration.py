"""Durations written as text: "500ms", "10s", "1.5s", "2m", "1h", "1h30m", ISO 8601 "PT1M".

One parser for everything that reads seconds from a file or an environment variable (config
today; the migrator can use it too). A number is seconds already and is returned as is.
"""

from __future__ import annotations

import math
import re

__all__ = ["DURATION_HINT", "parse_duration"]

DURATION_HINT = "a number of seconds or a duration such as '500ms', '10s', '2m', '1h' or 'PT1M'"

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?:ns|us|µs|ms|sec|min|s|m|h|d)"
_UNITS_RE = re.compile(rf"^(?:\s*{_PART})+\s*$", re.I)
_ONE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ns|us|µs|ms|sec|min|s|m|h|d)", re.I)
_ISO = re.compile(
    r"^\s*P(?:([0-9.]+)D)?(?:T(?:([0-9.]+)H)?(?:([0-9.]+)M)?(?:([0-9.]+)S)?)?\s*$", re.I
)
_NUMBER = re.compile(r"^\s*[0-9]+(?:\.[0-9]*)?\s*$")


def parse_duration(value: str | float) -> float:
    """Seconds from a number or a duration string.

    Accepted: a number (seconds), a number with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`),
    several of them (`"1h30m"`), or ISO 8601 (`"PT1M"`, `"PT0.5S"`, `"P1D"`).

    Raises:
        ValueError: anything else (negative durations included), with what is accepted.

    Example:
        >>> parse_duration("500ms"), parse_duration("1.5s"), parse_duration("2m")
        (0.5, 1.5, 120.0)
        >>> parse_duration("PT1M"), parse_duration("1h30m"), parse_duration(3)
        (60.0, 5400.0, 3)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(f"must be {DURATION_HINT}, got {value!r:.60}")
    seconds: float | None = None
    if _NUMBER.match(value):
        seconds = float(value)
    elif _UNITS_RE.match(value):
        seconds = sum(float(n) * _UNITS[u.lower()] for n, u in _ONE.findall(value))
    else:
        m = _ISO.match(value)
        if m and any(m.groups()):
            try:
                d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            except ValueError:
                pass
            else:
                seconds = d * 86400 + h * 3600 + mi * 60 + s
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(f"must be {DURATION_HINT}, got {value!r:.60}")
    return seconds
