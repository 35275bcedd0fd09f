"""Shared parts of the migrator: reading legacy values, collecting one operation's
settings and their fate, writing sections, and making the result valid for us."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError

FORMATS: tuple[str, ...] = (
    "resilience4j",
    "hystrix",
    "polly",
    "pybreaker",
    "tenacity",
    "circuitbreaker",
    "env",
    "python",
)
"""The legacy formats `migrate()` reads (and "auto", which detects one of them)."""

DROPPED_CAP = 0.85
"""The highest confidence a migration gets when any legacy key or section was dropped."""


class MigrationError(ConfigError):
    """Legacy input that cannot be migrated: unreadable, ambiguous, or invalid in the legacy
    library itself. `.errors` lists every problem as (`file:key`, message).

    A `ConfigError`, so `except ConfigError` keeps working.

    Example:
        >>> from resilience import migrate
        >>> try:
        ...     migrate.migrate({"Retry": {"MaxRetryAttempts": -1}}, format="polly")
        ... except migrate.MigrationError as exc:
        ...     print(exc.errors[0][1])
        must be in [1, 2147483647], got -1
    """


_ENVIRONMENTS = ("development", "testing", "staging", "production")
# the production preset's retry budget: added when more than 3 attempts would otherwise be
# refused in production (see resilience.config's retry-storm checks)
_BUDGET = {"ratio": 0.2, "min_per_second": 10}
_MANY_ATTEMPTS = 5
_ATTEMPTS_WITHOUT_BUDGET = 3


# --- reading values ----------------------------------------------------------------------------


class _Bad(Exception):
    """A legacy value that is invalid in the legacy library itself."""


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Bad(f"must be a number, got {value!r}")
    if isinstance(value, int | float):
        try:
            result = float(value)
        except OverflowError:
            raise _Bad(
                f"must be a finite number, got a {int(value).bit_length()}-bit integer"
            ) from None
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise _Bad(f"must be a number, got {value!r}") from None
    else:
        raise _Bad(f"must be a number, got {type(value).__name__} {value!r:.60}")
    if not math.isfinite(result):
        raise _Bad(f"must be a finite number, got {value!r}")
    return result


def _int(value: Any) -> int:
    number = _number(value)
    if number != int(number):
        raise _Bad(f"must be a whole number, got {value!r}")
    return int(number)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _Bad(f"must be true or false, got {value!r:.60}")


def _positive(value: float, what: str = "") -> float:
    if value <= 0:
        raise _Bad(f"must be > 0{what}, got {value:g}")
    return value


def _non_negative(value: float) -> float:
    if value < 0:
        raise _Bad(f"must be >= 0, got {value:g}")
    return value


_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_SIMPLE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ns|us|µs|ms|s|m|h|d)\s*$", re.I)
_ISO = re.compile(
    r"^\s*(-)?P(?:([0-9.]+)D)?(?:T(?:([0-9.]+)H)?(?:([0-9.]+)M)?(?:([0-9.]+)S)?)?\s*$", re.I
)
_TIMESPAN = re.compile(r"^\s*(?:(\d+)\.)?(\d+):(\d+)(?::(\d+)(?:\.(\d+))?)?\s*$")


def _iso(text: str) -> float | None:
    m = _ISO.match(text)
    if not m or not any(m.group(i) for i in range(2, 6)):
        return None
    parts = [float(g) if g else 0.0 for g in m.groups()[1:]]
    seconds = parts[0] * 86400 + parts[1] * 3600 + parts[2] * 60 + parts[3]
    return -seconds if m.group(1) else seconds


def _spring_duration(value: Any) -> float:
    """Spring Boot's Duration: `10s`, `500ms`, `PT10S`; a bare number is milliseconds."""
    if isinstance(value, str):
        text = value.strip()
        m = _SIMPLE.match(text)
        if m:
            return _non_negative(float(m.group(1)) * _UNITS[m.group(2).lower()])
        iso = _iso(text)
        if iso is not None:
            return _non_negative(iso)
        if not re.match(r"^\s*-?[0-9.]+\s*$", text):
            raise _Bad(f"must be a duration such as 10s, 500ms or PT10S, got {value!r:.60}")
    return _non_negative(_number(value) / 1000.0)


def _timespan(value: Any) -> float:
    """.NET TimeSpan text: `00:00:30`, `1.02:00:00`, `00:00:00.500`; a bare number is days."""
    if isinstance(value, str):
        m = _TIMESPAN.match(value)
        if m:
            days, hours, minutes, seconds, fraction = m.groups()
            total = float(int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60)
            total += int(seconds or 0) + (float("0." + fraction) if fraction else 0.0)
            return _non_negative(float(total))
        iso = _iso(value)
        if iso is not None:
            return _non_negative(iso)
    try:
        days = _number(value)
    except _Bad:
        raise _Bad(f"must be a TimeSpan such as 00:00:30, got {value!r:.60}") from None
    return _non_negative(days * 86400.0)


def _seconds(value: Any) -> float:
    """A Python library's seconds (a number or a timedelta)."""
    if isinstance(value, datetime.timedelta):
        return _non_negative(value.total_seconds())
    return _non_negative(_number(value))


def _ms(value: Any) -> float:
    return _non_negative(_number(value)) / 1000.0


def _cap(value: Any) -> float:
    """A legacy maximum: a number, where infinity (tenacity's default) means none."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == math.inf:
        return math.inf
    return _number(value)


def _percent(value: Any) -> float:
    number = _number(value)
    if not 0 <= number <= 100:
        raise _Bad(f"must be a percentage in [0, 100], got {value!r}")
    return number / 100.0


def _norm(key: str) -> str:
    return re.sub(r"\[\d*\]$|[-_\s]", "", str(key)).lower()


# --- collecting one operation ---------------------------------------------------------------


@dataclass
class _Entry:
    key: str
    quality: float  # 1 exact, (0, 1) approximate, 0 unmapped, -1 ignored
    target: str = ""


class _Op:
    """One operation being built: its table and the fate of each legacy key."""

    def __init__(self, name: str, run: _Run) -> None:
        self.name = name
        self.run = run
        self.table: dict[str, Any] = {}
        self.entries: list[_Entry] = []
        self.sources: dict[tuple[str, str], list[str]] = {}
        self.warnings: list[str] = []

    # -- legacy keys -----------------------------------------------------------------------

    def mapped(self, key: str, target: str, quality: float = 1.0, note: str = "") -> None:
        self.entries.append(_Entry(key, quality, target))
        if note:
            self.warn(f"{key}: {note}")

    def unmapped(self, key: str, note: str = "") -> None:
        self.entries.append(_Entry(key, 0.0))
        if note:
            self.warn(f"{key}: {note}")

    def ignored(self, key: str) -> None:
        self.entries.append(_Entry(key, -1.0))

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def value(self, key: str, raw: Any, convert: Callable[[Any], Any]) -> Any:
        """`convert(raw)`, or None with a problem recorded when the legacy value is bad."""
        try:
            return convert(raw)
        except _Bad as exc:
            self.run.problem(key, str(exc))
            return None

    # -- our table ----------------------------------------------------------------------------

    def put(self, section: str, key: str, value: Any, *sources: str) -> None:
        self.table.setdefault(section, {})[key] = value
        self.sources.setdefault((section, key), []).extend(s for s in sources if s)

    def section(self, section: str, value: Any, *sources: str) -> None:
        self.table[section] = value
        self.sources.setdefault((section, ""), []).extend(s for s in sources if s)

    def confidence(self) -> float:
        return _confidence(self.entries)


def _confidence(entries: Iterable[_Entry]) -> float:
    """The mean quality of the keys that count; never >= 0.9 when one was dropped."""
    counted: dict[str, float] = {}
    for entry in entries:  # a key counted several times counts once, at its worst
        if entry.quality >= 0:
            counted[entry.key] = min(counted.get(entry.key, 1.0), entry.quality)
    if not counted:
        return 1.0
    value = round(sum(counted.values()) / len(counted), 4)
    return min(value, DROPPED_CAP) if 0.0 in counted.values() else value


class _Run:
    """One migration: the operations, problems with the legacy input, global notes."""

    def __init__(self, fmt: str, label: str, name: str | None, unset: str) -> None:
        self.format = fmt
        self.label = label
        self.name = name
        self.unset = unset
        self.ops: dict[str, _Op] = {}
        self.defaults: _Op | None = None
        self.problems: list[tuple[str, str]] = []
        self.entries: list[_Entry] = []  # legacy keys that belong to no operation
        self.warnings: list[str] = []

    def op(self, name: str) -> _Op:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            self.problem(repr(name), "an operation name must be valid Unicode text")
            name = name.encode("utf-8", "replace").decode("utf-8")
        op = self.ops.get(name)
        if op is None:
            op = self.ops[name] = _Op(name, self)
        return op

    def defaults_op(self) -> _Op:
        if self.defaults is None:
            self.defaults = _Op("[defaults]", self)
        return self.defaults

    def problem(self, key: str, message: str) -> None:
        self.problems.append((f"{self.label}:{key}", message))

    def unmapped(self, key: str, note: str = "") -> None:
        self.entries.append(_Entry(key, 0.0))
        if note:
            self.warn(f"{key}: {note}")

    def ignored(self, key: str) -> None:
        self.entries.append(_Entry(key, -1.0))

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)


def _rest(op: _Op, settings: Mapping[str, tuple[Any, str]], used: Iterable[str],
          ignored: Iterable[str] = (), notes: Mapping[str, str] | None = None,
          neutral: Mapping[str, Callable[[Any], bool]] | None = None) -> None:  # fmt: skip
    """Record every setting not in `used`: ignored, neutral (its value changes nothing) or
    unmapped (with the note that says what to do instead)."""
    used, ignored = set(used), set(ignored)
    notes, neutral = notes or {}, neutral or {}
    for key, (raw, label) in settings.items():
        if key in used:
            continue
        if key in ignored:
            op.ignored(label)
            continue
        check = neutral.get(key)
        if check is not None:
            try:
                if check(raw):
                    op.ignored(label)
                    continue
            except _Bad:
                pass
        op.unmapped(label, notes.get(key, "no equivalent setting here"))


# --- building sections ---------------------------------------------------------------------


def _breaker(
    op: _Op,
    *,
    failure_rate: float,
    minimum_calls: int,
    window: dict[str, Any],
    open_duration: float,
    half_open_calls: int,
    slow_call_threshold: float | None = None,
    slow_call_rate: float = 1.0,
    open_duration_max: float | None = None,
    sources: Mapping[str, list[str]] | None = None,
) -> None:
    sources = sources or {}
    values: dict[str, Any] = {
        "failure_rate_threshold": failure_rate,
        "slow_call_threshold": False if slow_call_threshold is None else slow_call_threshold,
        "slow_call_rate_threshold": slow_call_rate,
        "minimum_calls": minimum_calls,
        "window": window,
        "open_duration": open_duration,
        "open_duration_max": False if open_duration_max is None else open_duration_max,
        "half_open_calls": half_open_calls,
    }
    for key, value in values.items():
        op.put("breaker", key, value, *sources.get(key, []))


def _backoff_max(initial: float, multiplier: float, attempts: int) -> float:
    """The longest wait `attempts` attempts reach (an unbounded legacy backoff's cap)."""
    retries = max(attempts - 1, 1)
    try:
        value = initial * multiplier ** (retries - 1)
    except OverflowError:
        value = math.inf
    return float(min(max(value, initial), 86400.0))


def _retry(
    op: _Op,
    *,
    attempts: int | None,
    backoff: dict[str, Any] | None,
    deadline: float | None = None,
    respect_retry_after: bool | None = None,
    sources: Mapping[str, list[str]] | None = None,
) -> None:
    sources = sources or {}
    if attempts is not None:
        op.put("retry", "max_attempts", attempts, *sources.get("max_attempts", []))
    if backoff is not None:
        op.put("retry", "backoff", backoff, *sources.get("backoff", []))
    op.put("retry", "deadline", False if deadline is None else deadline,
           *sources.get("deadline", []))  # fmt: skip
    if respect_retry_after is not None:
        op.put("retry", "respect_retry_after", respect_retry_after,
               *sources.get("respect_retry_after", []))  # fmt: skip
    op.table.setdefault("retry", {})


# --- making the config valid ---------------------------------------------------------------


def _problems(table: dict[str, Any], defaults: dict[str, Any] | None, preset: str | None
              ) -> list[tuple[tuple[str, ...], str, str]]:  # fmt: skip
    """(path, message, environment) for `table` over the preset and `defaults`, every env."""
    from pydantic import ValidationError

    from ..config import _checks, _merge, _models, _presets

    out: list[tuple[tuple[str, ...], str, str]] = []
    for env in _ENVIRONMENTS:
        base = table.get("preset") or (defaults or {}).get("preset") or preset or env
        if base not in _presets.PRESET_TABLES:
            base = env
        merged = _merge.copy_table(_presets.PRESETS[base].table())
        if defaults:
            _merge.merge_into(merged, defaults, "defaults")
        _merge.merge_into(merged, table, "operation")
        try:
            policy = _models.OperationPolicy.model_validate(merged)
        except ValidationError as exc:
            found = _models.problems_of(exc)
        except Exception as exc:  # a check that broke on a value: still a problem
            found = [((), f"{type(exc).__name__}: {exc}")]
        else:
            found = _checks.storm_problems(policy, env)
        out += [(p, m, env) for p, m in found if (p, m) not in [(q, n) for q, n, _ in out]]
    return out


def _sanitise(op: _Op, defaults: dict[str, Any] | None, preset: str | None) -> None:
    """Clamp what the retry-storm checks refuse; drop what still does not validate."""
    retry = op.table.get("retry")
    if isinstance(retry, dict):
        attempts = retry.get("max_attempts")
        if (
            isinstance(attempts, int)
            and attempts > _MANY_ATTEMPTS
            and retry.get("deadline")
            in (
                None,
                False,
            )
        ):
            retry["max_attempts"] = _MANY_ATTEMPTS
            op.warn(f"retry: {attempts} attempts with no deadline would be refused "
                    f"(a retry storm): clamped to {_MANY_ATTEMPTS}")  # fmt: skip
            _lower(op, ("retry", "max_attempts"), 0.5)
            attempts = _MANY_ATTEMPTS
        if isinstance(attempts, int) and attempts > _ATTEMPTS_WITHOUT_BUDGET:
            retry["budget"] = dict(_BUDGET)
            op.warn(f"retry: {attempts} attempts need a retry budget in production: added "
                    "budget = { ratio = 0.2, min_per_second = 10 }")  # fmt: skip
        elif isinstance(attempts, int):
            retry["budget"] = False
        backoff = retry.get("backoff")
        if isinstance(backoff, dict) and _never_waits(backoff):
            del retry["backoff"]
            op.warn("retry.backoff: the legacy backoff never waits, which is refused here "
                    "(outside testing): the preset's backoff applies")  # fmt: skip
            _lower(op, ("retry", "backoff"), 0.5)
    for _ in range(12):
        problems = _problems(op.table, defaults, preset)
        if not problems:
            return
        path, message, env = problems[0]
        section = path[0] if path else ""
        key = path[1] if len(path) > 1 else ""
        current = op.table.get(section)
        if isinstance(current, dict) and key in current:
            value = current.pop(key)
            if not current:
                del op.table[section]
            op.warn(f"{section}.{key} = {value!r} is refused here ({message}; in {env}): "
                    "left to the preset")  # fmt: skip
            _lower(op, (section, key), 0.0)
        elif section in op.table:
            del op.table[section]
            op.warn(f"{section} is refused here ({message}; in {env}): left to the preset")
            _lower(op, (section, ""), 0.0)
        else:
            break
    problems = _problems(op.table, defaults, preset)
    if problems:  # pragma: no cover - nothing left that is ours to drop
        op.warn(
            f"could not express this operation's settings ({problems[0][1]}); the preset applies"
        )
        op.table.clear()
        for entry in op.entries:
            entry.quality = min(entry.quality, 0.0) if entry.quality >= 0 else entry.quality


def _never_waits(backoff: Mapping[str, Any]) -> bool:
    kind = backoff.get("kind")
    if kind == "constant":
        return backoff.get("delay") == 0
    if backoff.get("maximum") == 0:
        return True
    if kind == "linear":
        return backoff.get("initial") == 0 and backoff.get("step") == 0
    if kind == "exponential":
        return backoff.get("initial") == 0
    return False


def _lower(op: _Op, path: tuple[str, str], quality: float) -> None:
    labels = set(op.sources.get(path, []))
    if path[1] == "":
        for (section, _), found in op.sources.items():
            if section == path[0]:
                labels |= set(found)
    for entry in op.entries:
        if entry.key in labels and entry.quality > quality:
            entry.quality = quality
