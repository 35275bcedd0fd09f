"""Legacy migration: resilience4j, Hystrix, Polly, pybreaker, tenacity, circuitbreaker and flat
environment settings -> this library's configuration, with a report of how sure it is.

Every legacy setting is either mapped (exactly, or approximately with a warning saying what
differs), ignored (it has no effect on behaviour: metrics buffers, health indicators), or left
unmapped (exception class lists, hooks, hedging...): unmapped settings are listed with their
original key and lower the confidence. Units are converted (percent -> fraction, ms -> s,
`10s` / `PT10S` / `00:00:30` -> seconds) and, for each policy the legacy library had, the
settings it did not write are filled with *that library's* defaults, so the migrated
operation behaves like the old one rather than like our presets. Policies the legacy source
had no section for are left to the preset (or turned off with `unset="off"`).

The produced config always loads (`resilience.config.load(data=report.config)`) in every
environment: legacy values this library refuses (unbounded retries, a backoff that never
waits, a zero failure ratio) are clamped or left to the preset, with a warning.

Example:
    >>> from resilience import migrate
    >>> report = migrate.migrate({"fail_max": 5, "reset_timeout": 60, "name": "db"})
    >>> report.format, report.confidence
    ('pybreaker', 1.0)
    >>> report.config["operations"]["db"]["breaker"]["minimum_calls"]
    5
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ConfigError

__all__ = ["FORMATS", "MigrationReport", "OperationReport", "cli", "migrate"]

FORMATS: tuple[str, ...] = (
    "resilience4j",
    "hystrix",
    "polly",
    "pybreaker",
    "tenacity",
    "circuitbreaker",
    "env",
)
"""The legacy formats `migrate()` reads (and "auto", which detects one of them)."""

_ENVIRONMENTS = ("development", "testing", "staging", "production")
# the production preset's retry budget: added when more than 3 attempts would otherwise be
# refused in production (see resilience.config's retry-storm checks)
_BUDGET = {"ratio": 0.2, "min_per_second": 10}
_MANY_ATTEMPTS = 5
_ATTEMPTS_WITHOUT_BUDGET = 3


# --- the report ------------------------------------------------------------------------------


@dataclass
class OperationReport:
    """How one operation was migrated.

    Attributes:
        name: the operation's name (the legacy instance, command or client name).
        preset: the preset it is written over (None: the environment's preset).
        overrides: the operation's table in the file layout (what `config["operations"][name]`
            holds, without `preset`).
        confidence: 0..1, the mean of its legacy settings' mapping quality (1 exact, below 1
            approximate, 0 unmapped); settings without effect on behaviour do not count.
        mapped: `(legacy key, our setting)` pairs.
        unmapped: the legacy keys that could not be expressed.
        warnings: what differs, what was clamped, what was assumed.
    """

    name: str
    preset: str | None
    overrides: dict[str, Any]
    confidence: float
    mapped: list[tuple[str, str]] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class MigrationReport:
    """The result of `migrate()`: the config and how far to trust it.

    Attributes:
        format: the legacy format read ("resilience4j", "hystrix", ...).
        source: the file read, or "<mapping>" / "<text>".
        config: the file layout of `resilience.config` (`{"operations": {...}}`, and
            `"defaults"` when the legacy source had defaults for every command/instance).
        operations: one `OperationReport` per operation.
        confidence: 0..1 over every legacy setting read (1.0: everything mapped exactly).
        unmapped: every legacy key that could not be expressed, in source order.
        ignored: legacy keys without effect on behaviour here (metrics, health indicators).
        warnings: every warning (each operation's, prefixed with its name, and the global ones).
    """

    format: str
    source: str
    config: dict[str, Any]
    operations: dict[str, OperationReport]
    confidence: float
    unmapped: list[str]
    warnings: list[str]
    ignored: list[str] = field(default_factory=list)

    def to_toml(self) -> str:
        """The config as a `resilience.toml`, with the report as comments.

        Example:
            >>> from resilience import migrate
            >>> print(migrate.migrate({"fail_max": 3}, format="pybreaker", name="db").to_toml())
            ... # doctest: +ELLIPSIS
            # Migrated from pybreaker (<mapping>); confidence 1.00
            ...
            [operations.db]
            breaker = { failure_rate_threshold = 1.0, ... }
            <BLANKLINE>
        """
        lines = [f"# Migrated from {self.format} ({self.source}); confidence {self.confidence:.2f}"]
        for key in self.unmapped:
            lines.append(f"# unmapped: {_comment(key)}")
        for key, value in self.config.items():
            if not isinstance(value, dict):
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        if "defaults" in self.config:
            lines += ["", "[defaults]", *_toml_table_lines(self.config["defaults"])]
        if not self.config.get("operations"):
            lines += ["", "[operations]"]
        for name, table in self.config.get("operations", {}).items():
            op = self.operations.get(name)
            lines.append("")
            if op is not None:
                lines.append(f"# confidence {op.confidence:.2f}")
                lines += [f"# {_comment(w)}" for w in op.warnings]
            lines.append(f"[operations.{_toml_key(name)}]")
            lines += _toml_table_lines(table)
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """A human-readable report (what `resilience migrate --check` prints)."""
        out = [
            f"format: {self.format}; source: {self.source}",
            f"confidence: {self.confidence:.2f}; operations: {len(self.operations)}; "
            f"unmapped: {len(self.unmapped)}",
        ]
        for op in self.operations.values():
            out.append(f"  {op.name}: confidence {op.confidence:.2f}")
        out += [f"unmapped: {k}" for k in self.unmapped]
        out += [f"warning: {w}" for w in self.warnings]
        return "\n".join(out)


def _comment(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else "?" for c in str(text)).split())


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):  # pragma: no cover - the config is validated: finite
            raise ValueError(value)
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")  # pragma: no cover


def _toml_table_lines(table: Mapping[str, Any]) -> list[str]:
    return [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]


# --- reading values ----------------------------------------------------------------------------


class _Bad(Exception):
    """A legacy value that is invalid in the legacy library itself."""


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Bad(f"must be a number, got {value!r}")
    if isinstance(value, int | float):
        result = float(value)
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
        counted = [e.quality for e in self.entries if e.quality >= 0]
        return round(sum(counted) / len(counted), 4) if counted else 1.0


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


# --- resilience4j -----------------------------------------------------------------------------

_R4J_MODULES = {
    "circuitbreaker": "circuitbreaker",
    "retry": "retry",
    "bulkhead": "bulkhead",
    "threadpoolbulkhead": "threadpoolbulkhead",
    "ratelimiter": "ratelimiter",
    "timelimiter": "timelimiter",
}
_R4J_IGNORED_MODULES = {"micrometer", "scheduled", "thread"}
_R4J_COMMON_IGNORED = {
    "eventconsumerbuffersize",
    "registerhealthindicator",
    "allowhealthindicatortofail",
    "writablestacktraceenabled",
    "ignoreclassbindingexceptions",
    "subscribeforevents",
    "baseconfig",
}
_R4J_KEYS = {
    "circuitbreaker": {
        "failureratethreshold",
        "slowcallratethreshold",
        "slowcalldurationthreshold",
        "slidingwindowtype",
        "slidingwindowsize",
        "minimumnumberofcalls",
        "permittednumberofcallsinhalfopenstate",
        "waitdurationinopenstate",
        "maxwaitdurationinhalfopenstate",
        "transitiontostateafterwaitduration",
        "automatictransitionfromopentohalfopenenabled",
        "initialstate",
        "recordexceptions",
        "ignoreexceptions",
        "recordfailurepredicate",
        "ignoreexceptionpredicate",
        "recordresultpredicate",
        "enableexponentialbackoff",
        "exponentialbackoffmultiplier",
        "exponentialmaxwaitdurationinopenstate",
        "enablerandomizedwait",
        "randomizedwaitfactor",
        "ringbuffersizeinclosedstate",
        "ringbuffersizeinhalfopenstate",
    },
    "retry": {
        "maxattempts",
        "maxretryattempts",
        "waitduration",
        "enableexponentialbackoff",
        "exponentialbackoffmultiplier",
        "exponentialmaxwaitduration",
        "enablerandomizedwait",
        "randomizedwaitfactor",
        "retryexceptions",
        "ignoreexceptions",
        "retryexceptionpredicate",
        "resultpredicate",
        "consumeresultbeforeretryattempt",
        "intervalbifunction",
        "failaftermaxattempts",
    },
    "bulkhead": {"maxconcurrentcalls", "maxwaitduration"},
    "threadpoolbulkhead": {
        "maxthreadpoolsize",
        "corethreadpoolsize",
        "queuecapacity",
        "keepaliveduration",
        "contextpropagators",
        "contextpropagator",
    },
    "ratelimiter": {"limitforperiod", "limitrefreshperiod", "timeoutduration"},
    "timelimiter": {"timeoutduration", "cancelrunningfuture"},
}
_EXCEPTIONS_NOTE = (
    "exception and predicate classes are Java code; classify errors with a "
    "resilience.Classifier (transient=..., permanent=...) in code"
)

Settings = dict[str, tuple[Any, str]]  # normalised key -> (value, original key)


def _split_key(key: str) -> list[str]:
    """`a.b[c.d].e` -> ["a", "b", "c.d", "e"] (Spring's bracket notation for dotted names)."""
    out: list[str] = []
    for m in re.finditer(r"\[([^\]]*)\]|([^.\[\]]+)", key):
        if m.group(1) is not None:
            if out and not m.group(1).isdigit():
                out.append(m.group(1))
            elif out:
                out[-1] += f"[{m.group(1)}]"
        else:
            out.append(m.group(2))
    return out


def _flatten(data: Any, prefix: tuple[str, ...] = (), out: list[Any] | None = None) -> list[Any]:
    """Nested mappings -> [(segments, value)], dotted keys split, lists kept as values."""
    out = [] if out is None else out
    if isinstance(data, Mapping) and (data or not prefix):
        for key, value in data.items():
            _flatten(value, (*prefix, *(_split_key(str(key)) or [str(key)])), out)
    else:
        out.append((prefix, data))
    return out


def _r4j(run: _Run, flat: list[tuple[tuple[str, ...], Any]], labels: list[str]) -> None:
    groups: dict[tuple[str, str, str], Settings] = {}
    outside = 0
    for (segments, value), label in zip(flat, labels, strict=True):
        if not segments or _norm(segments[0]) != "resilience4j":
            outside += 1
            continue
        if len(segments) < 3:
            run.unmapped(label, "not a resilience4j setting this migrator knows")
            continue
        module = _norm(segments[1])
        if module in _R4J_IGNORED_MODULES:
            run.ignored(label)
            continue
        if module not in _R4J_MODULES:
            run.unmapped(label, "unknown resilience4j module")
            continue
        kind = _norm(segments[2])
        if kind in ("instances", "backends", "configs") and len(segments) >= 5:
            kind = "configs" if kind == "configs" else "instances"
            key = _norm(".".join(segments[4:]))
            groups.setdefault((kind, module, segments[3]), {})[key] = (value, label)
        elif "aspectorder" in _norm(".".join(segments[2:])):
            run.unmapped(label, "the order of policies is fixed here: timeout, retry, "
                         "rate limit, breaker, bulkhead (outermost first)")  # fmt: skip
        elif kind == "metrics":
            run.ignored(label)
        else:
            run.unmapped(label, "not a resilience4j setting this migrator knows")
    if outside:
        run.warn(f"{outside} setting(s) outside resilience4j.* were skipped")
    if not groups:
        if not run.entries:
            run.problem("resilience4j", "no resilience4j settings found")
        return

    def resolve(module: str, settings: Settings, where: str) -> Settings:
        chain = [settings]
        seen: set[str] = set()
        base_raw = settings.get("baseconfig")
        base = str(base_raw[0]) if base_raw else None
        if base is None and ("configs", module, "default") in groups and where != "default":
            base = "default"
        while base is not None and base not in seen:
            seen.add(base)
            parent = groups.get(("configs", module, base))
            if parent is None:
                run.problem(
                    base_raw[1] if base_raw else where, f"baseConfig {base!r} is not defined"
                )
                break
            chain.append(parent)
            parent_base = parent.get("baseconfig")
            base = str(parent_base[0]) if parent_base else None
        merged: Settings = {}
        for layer in reversed(chain):
            merged.update(layer)
        return merged

    for (kind, module, name), settings in groups.items():
        if kind == "instances":
            op = run.op(name)
            _R4J_MAPPERS[module](op, resolve(module, settings, name))
        elif name == "default":
            _R4J_MAPPERS[module](run.defaults_op(), resolve(module, settings, "default"))
    unused = {
        (module, name) for kind, module, name in groups if kind == "configs" and name != "default"
    }
    for module, name in sorted(unused):
        if not any(
            k == "instances" and m == module and str(s.get("baseconfig", ("",))[0]) == name
            for (k, m, _), s in groups.items()
        ):
            run.warn(f"resilience4j.{module}.configs.{name} is used by no instance: skipped")


def _r4j_breaker(op: _Op, s: Settings) -> None:
    def get(key: str, convert: Callable[[Any], Any], default: Any, target: str,
            quality: float = 1.0, note: str = "") -> tuple[Any, list[str]]:  # fmt: skip
        if key not in s:
            return default, []
        raw, label = s[key]
        value = op.value(label, raw, convert)
        if value is None:
            return default, [label]
        op.mapped(label, target, quality, note)
        return value, [label]

    def pct(v: Any) -> float:
        return _positive(_percent(v), " (percent)")

    failure, src_f = get("failureratethreshold", pct, 0.5, "breaker.failure_rate_threshold")
    slow_rate, src_sr = get("slowcallratethreshold", pct, 1.0, "breaker.slow_call_rate_threshold")
    slow, src_s = get("slowcalldurationthreshold", lambda v: _positive(_spring_duration(v)),
                      60.0, "breaker.slow_call_threshold")  # fmt: skip
    kind_raw = s.get("slidingwindowtype")
    time_based = False
    src_w: list[str] = []
    if kind_raw is not None:
        text = str(kind_raw[0]).strip().upper().replace("-", "_")
        if text in ("COUNT_BASED", "TIME_BASED"):
            time_based = text == "TIME_BASED"
            op.mapped(kind_raw[1], "breaker.window.kind")
            src_w.append(kind_raw[1])
        else:
            op.run.problem(kind_raw[1], f"must be COUNT_BASED or TIME_BASED, got {kind_raw[0]!r}")
    size_key = "slidingwindowsize" if "slidingwindowsize" in s else "ringbuffersizeinclosedstate"
    size, src = get(size_key, lambda v: _positive(_int(v)), 100, "breaker.window")
    src_w += src
    window: dict[str, Any] = (
        {"kind": "time", "seconds": float(size)} if time_based else {"kind": "count", "size": size}
    )
    minimum, src_m = get("minimumnumberofcalls", lambda v: _positive(_int(v)), 100,
                         "breaker.minimum_calls")  # fmt: skip
    half_key = (
        "permittednumberofcallsinhalfopenstate"
        if "permittednumberofcallsinhalfopenstate" in s
        else "ringbuffersizeinhalfopenstate"
    )
    half, src_h = get(half_key, lambda v: _positive(_int(v)), 10, "breaker.half_open_calls", 0.9,
                      "resilience4j closes when the trial calls' failure rate is below the "
                      "threshold; here every trial call must succeed")  # fmt: skip
    wait, src_o = get("waitdurationinopenstate", lambda v: _positive(_spring_duration(v)), 60.0,
                      "breaker.open_duration")  # fmt: skip
    used = {
        "failureratethreshold", "slowcallratethreshold", "slowcalldurationthreshold",
        "slidingwindowtype", size_key, "minimumnumberofcalls", half_key,
        "waitdurationinopenstate",
    }  # fmt: skip
    maximum: float | None = None
    src_x: list[str] = []
    exp = s.get("enableexponentialbackoff")
    if exp is not None and op.value(exp[1], exp[0], _bool):
        used |= {"enableexponentialbackoff", "exponentialbackoffmultiplier",
                 "exponentialmaxwaitdurationinopenstate"}  # fmt: skip
        mult_raw = s.get("exponentialbackoffmultiplier")
        mult = op.value(mult_raw[1], mult_raw[0], _number) if mult_raw else 1.5
        cap_raw = s.get("exponentialmaxwaitdurationinopenstate")
        cap = op.value(cap_raw[1], cap_raw[0], _spring_duration) if cap_raw else None
        maximum = max(cap, wait) if cap else wait * 64
        exact = mult == 2.0
        op.mapped(exp[1], "breaker.open_duration_max", 1.0 if exact else 0.8,
                  "" if exact else f"the open duration grows by x{mult} there; here it doubles "
                  "on each re-open, up to open_duration_max")  # fmt: skip
        for extra in (mult_raw, cap_raw):
            if extra:
                op.mapped(extra[1], "breaker.open_duration_max", 1.0 if exact else 0.8)
        if not cap_raw:
            op.warn(f"{exp[1]}: no exponentialMaxWaitDurationInOpenState; open_duration_max "
                    f"set to 64 x open_duration ({maximum:g} s)")  # fmt: skip
        src_x = [exp[1]] + [e[1] for e in (mult_raw, cap_raw) if e]
    elif exp is not None:
        op.ignored(exp[1])
        used.add("enableexponentialbackoff")
    _breaker(
        op,
        failure_rate=failure,
        minimum_calls=minimum,
        window=window,
        open_duration=wait,
        half_open_calls=half,
        slow_call_threshold=slow,
        slow_call_rate=slow_rate,
        open_duration_max=maximum,
        sources={
            "failure_rate_threshold": src_f,
            "slow_call_rate_threshold": src_sr,
            "slow_call_threshold": src_s,
            "window": src_w,
            "minimum_calls": src_m,
            "half_open_calls": src_h,
            "open_duration": src_o,
            "open_duration_max": src_x,
        },
    )
    _rest(
        op,
        s,
        used,
        ignored=_R4J_COMMON_IGNORED | {"automatictransitionfromopentohalfopenenabled"},
        notes={
            "recordexceptions": _EXCEPTIONS_NOTE,
            "ignoreexceptions": _EXCEPTIONS_NOTE,
            "recordfailurepredicate": _EXCEPTIONS_NOTE,
            "ignoreexceptionpredicate": _EXCEPTIONS_NOTE,
            "recordresultpredicate": "result predicates are code: pass Classifier(result=...)",
            "initialstate": "the state is not configuration here: call force_open() or "
            "disable() at run time",
            "enablerandomizedwait": "the open duration is not randomised here",
            "randomizedwaitfactor": "the open duration is not randomised here",
            "maxwaitdurationinhalfopenstate": "HALF_OPEN waits for its trial calls here, "
            "however long they take",
            "transitiontostateafterwaitduration": "HALF_OPEN always follows OPEN here",
        },
        neutral={
            "initialstate": lambda v: str(v).strip().upper() == "CLOSED",
            "enablerandomizedwait": lambda v: not _bool(v),
            "maxwaitdurationinhalfopenstate": lambda v: _spring_duration(v) == 0,
            "transitiontostateafterwaitduration": lambda v: str(v).strip().upper() == "OPEN",
        },
    )


def _r4j_retry(op: _Op, s: Settings) -> None:
    used: set[str] = set()
    sources: dict[str, list[str]] = {"max_attempts": [], "backoff": []}
    attempts = 3
    key = "maxattempts" if "maxattempts" in s else "maxretryattempts"
    if key in s:
        raw, label = s[key]
        value = op.value(label, raw, lambda v: _positive(_int(v)))
        if value is not None:
            attempts = value
            op.mapped(label, "retry.max_attempts")
            sources["max_attempts"].append(label)
        used.add(key)
    wait = 0.5
    if "waitduration" in s:
        raw, label = s["waitduration"]
        value = op.value(label, raw, _spring_duration)
        if value is not None:
            wait = value
            op.mapped(label, "retry.backoff")
        sources["backoff"].append(label)
        used.add("waitduration")
    jitter: str | None = None
    randomized = s.get("enablerandomizedwait")
    if randomized is not None:
        used |= {"enablerandomizedwait", "randomizedwaitfactor"}
        if op.value(randomized[1], randomized[0], _bool):
            jitter = "equal"
            note = ("resilience4j spreads each wait +-randomizedWaitFactor around it; "
                    "here 'equal' jitter waits between half the delay and the delay")  # fmt: skip
            op.mapped(randomized[1], "retry.backoff.jitter", 0.8, note)
            factor = s.get("randomizedwaitfactor")
            if factor:
                op.mapped(factor[1], "retry.backoff.jitter", 0.8)
        else:
            op.ignored(randomized[1])
            if "randomizedwaitfactor" in s:
                op.ignored(s["randomizedwaitfactor"][1])
        sources["backoff"].append(randomized[1])
    exp = s.get("enableexponentialbackoff")
    backoff: dict[str, Any]
    if exp is not None and op.value(exp[1], exp[0], _bool):
        used |= {"enableexponentialbackoff", "exponentialbackoffmultiplier",
                 "exponentialmaxwaitduration"}  # fmt: skip
        op.mapped(exp[1], "retry.backoff.kind")
        mult = 1.5
        mult_raw = s.get("exponentialbackoffmultiplier")
        if mult_raw:
            value = op.value(mult_raw[1], mult_raw[0], _number)
            if value is not None:
                mult = value
                op.mapped(mult_raw[1], "retry.backoff.multiplier")
        cap_raw = s.get("exponentialmaxwaitduration")
        cap = op.value(cap_raw[1], cap_raw[0], _spring_duration) if cap_raw else None
        if cap_raw and cap is not None:
            op.mapped(cap_raw[1], "retry.backoff.maximum")
        maximum = cap if cap is not None else _backoff_max(wait, mult, attempts)
        backoff = {"kind": "exponential", "initial": wait, "multiplier": mult,
                   "maximum": max(maximum, wait), "jitter": jitter or False}  # fmt: skip
        sources["backoff"] += [exp[1]] + [e[1] for e in (mult_raw, cap_raw) if e]
    else:
        if exp is not None:
            op.ignored(exp[1])
            used.add("enableexponentialbackoff")
        backoff = {"kind": "constant", "delay": wait}
        if jitter:
            backoff["jitter"] = jitter
    _retry(op, attempts=attempts, backoff=backoff, sources=sources)
    _rest(
        op,
        s,
        used,
        ignored=_R4J_COMMON_IGNORED,
        notes={
            "retryexceptions": _EXCEPTIONS_NOTE,
            "ignoreexceptions": _EXCEPTIONS_NOTE,
            "retryexceptionpredicate": _EXCEPTIONS_NOTE,
            "resultpredicate": "result predicates are code: pass Classifier(result=...)",
            "intervalbifunction": "custom interval functions are code: pick a Backoff kind",
            "consumeresultbeforeretryattempt": "hooks are code: subscribe to resilience.events",
            "failaftermaxattempts": "RetryExhausted is raised when the last attempt returned "
            "a retryable result",
        },
        neutral={"failaftermaxattempts": lambda v: _bool(v) in (True, False)},
    )


def _r4j_bulkhead(op: _Op, s: Settings) -> None:
    used = {"maxconcurrentcalls", "maxwaitduration"}
    concurrent = 25
    if "maxconcurrentcalls" in s:
        raw, label = s["maxconcurrentcalls"]
        value = op.value(label, raw, lambda v: _positive(_int(v)))
        if value is not None:
            concurrent = value
            op.mapped(label, "bulkhead.max_concurrent")
        op.sources.setdefault(("bulkhead", "max_concurrent"), []).append(label)
    op.put("bulkhead", "max_concurrent", concurrent)
    wait = 0.0
    if "maxwaitduration" in s:
        raw, label = s["maxwaitduration"]
        value = op.value(label, raw, _spring_duration)
        if value is not None:
            wait = value
            op.mapped(label, "bulkhead.max_wait", 1.0 if wait == 0 else 0.8,
                      "" if wait == 0 else "resilience4j lets any number of callers wait; "
                      "here at most max_waiting (set to max_concurrent) wait")  # fmt: skip
        op.sources.setdefault(("bulkhead", "max_wait"), []).append(label)
    if wait > 0:
        op.put("bulkhead", "max_waiting", concurrent)
        op.put("bulkhead", "max_wait", wait)
    else:
        op.put("bulkhead", "max_waiting", 0)
        op.put("bulkhead", "max_wait", False)
    _rest(op, s, used, ignored=_R4J_COMMON_IGNORED)


def _r4j_thread_pool(op: _Op, s: Settings) -> None:
    used = {"maxthreadpoolsize", "corethreadpoolsize", "queuecapacity"}
    size, queue = None, 100
    for key in ("maxthreadpoolsize", "corethreadpoolsize"):
        if key in s and size is None:
            raw, label = s[key]
            size = op.value(label, raw, lambda v: _positive(_int(v)))
            if size is not None:
                op.mapped(label, "bulkhead.max_concurrent")
                op.sources.setdefault(("bulkhead", "max_concurrent"), []).append(label)
        elif key in s:
            op.mapped(s[key][1], "bulkhead.max_concurrent", 0.9,
                      "a thread pool's core size has no equivalent; max_concurrent is its "
                      "maximum size")  # fmt: skip
    if size is None:
        size = 8
        op.warn("thread-pool-bulkhead: no maxThreadPoolSize; max_concurrent = 8 assumed "
                "(resilience4j uses the number of CPUs)")  # fmt: skip
    if "queuecapacity" in s:
        raw, label = s["queuecapacity"]
        value = op.value(label, raw, lambda v: _non_negative(_int(v)))
        if value is not None:
            queue = value
            op.mapped(label, "bulkhead.max_waiting")
    if "bulkhead" in op.table:
        op.warn("both a bulkhead and a thread-pool-bulkhead: the thread pool's limits are used")
    op.put("bulkhead", "max_concurrent", int(size))
    op.put("bulkhead", "max_waiting", int(queue))
    op.put("bulkhead", "max_wait", False)
    _rest(op, s, used, ignored=_R4J_COMMON_IGNORED | {"keepaliveduration", "contextpropagators",
                                                       "contextpropagator"})  # fmt: skip


def _r4j_rate_limiter(op: _Op, s: Settings) -> None:
    limit, period, timeout = 50.0, 5e-7, 5.0
    got = {}
    for key, convert in (
        ("limitforperiod", lambda v: _positive(float(_int(v)))),
        ("limitrefreshperiod", lambda v: _positive(_spring_duration(v))),
        ("timeoutduration", _spring_duration),
    ):
        if key in s:
            raw, label = s[key]
            got[key] = op.value(label, raw, convert)
            if got[key] is not None:
                op.mapped(label, "rate_limit", 0.9 if key == "limitforperiod" else 1.0,
                          "resilience4j refills all permits at each period; here tokens refill "
                          "continuously (a token bucket holding limitForPeriod)"
                          if key == "limitforperiod" else "")  # fmt: skip
    limit = got.get("limitforperiod") or limit
    period = got.get("limitrefreshperiod") or period
    timeout = got["timeoutduration"] if got.get("timeoutduration") is not None else timeout
    labels = [s[k][1] for k in got]
    op.put("rate_limit", "rate", limit, *labels)
    op.put("rate_limit", "per", period)
    op.put("rate_limit", "burst", limit)
    op.put("rate_limit", "wait", timeout > 0)
    op.put("rate_limit", "max_wait", timeout if timeout > 0 else False)
    _rest(op, s, set(got), ignored=_R4J_COMMON_IGNORED | {"drainpermissionsonresult"})


def _r4j_time_limiter(op: _Op, s: Settings) -> None:
    seconds = 1.0
    label = ""
    if "timeoutduration" in s:
        raw, label = s["timeoutduration"]
        value = op.value(label, raw, lambda v: _positive(_spring_duration(v)))
        if value is not None:
            seconds = value
            op.mapped(label, "timeout")
    op.section("timeout", seconds, label)
    _rest(op, s, {"timeoutduration"}, ignored=_R4J_COMMON_IGNORED | {"cancelrunningfuture"})


_R4J_MAPPERS: dict[str, Callable[[_Op, Settings], None]] = {
    "circuitbreaker": _r4j_breaker,
    "retry": _r4j_retry,
    "bulkhead": _r4j_bulkhead,
    "threadpoolbulkhead": _r4j_thread_pool,
    "ratelimiter": _r4j_rate_limiter,
    "timelimiter": _r4j_time_limiter,
}


# --- Hystrix ------------------------------------------------------------------------------

_HYSTRIX_COMMAND_KEYS = {
    "execution.isolation.strategy",
    "execution.isolation.thread.timeoutinmilliseconds",
    "execution.timeout.enabled",
    "execution.isolation.semaphore.maxconcurrentrequests",
    "circuitbreaker.enabled",
    "circuitbreaker.requestvolumethreshold",
    "circuitbreaker.sleepwindowinmilliseconds",
    "circuitbreaker.errorthresholdpercentage",
    "circuitbreaker.forceopen",
    "circuitbreaker.forceclosed",
    "metrics.rollingstats.timeinmilliseconds",
    "metrics.rollingstats.numbuckets",
    "threadpoolkeyoverride",
}
_HYSTRIX_IGNORED = {
    "execution.isolation.thread.interruptontimeout",
    "execution.isolation.thread.interruptonfuturecancel",
    "metrics.rollingpercentile.enabled",
    "metrics.rollingpercentile.timeinmilliseconds",
    "metrics.rollingpercentile.numbuckets",
    "metrics.rollingpercentile.bucketsize",
    "metrics.healthsnapshot.intervalinmilliseconds",
    "requestcache.enabled",
    "requestlog.enabled",
}
_HYSTRIX_POOL_KEYS = {
    "coresize",
    "maximumsize",
    "allowmaximumsizetodivergefromcoresize",
    "maxqueuesize",
    "queuesizerejectionthreshold",
}
_HYSTRIX_POOL_IGNORED = {
    "keepalivetimeminutes",
    "metrics.rollingstats.timeinmilliseconds",
    "metrics.rollingstats.numbuckets",
}


def _hnorm(key: str) -> str:
    return ".".join(_norm(p) for p in key.split("."))


def _hystrix(run: _Run, flat: list[tuple[tuple[str, ...], Any]], labels: list[str]) -> None:
    commands: dict[str, Settings] = {}
    pools: dict[str, Settings] = {}
    outside = 0
    for (segments, value), label in zip(flat, labels, strict=True):
        if not segments or _norm(segments[0]) != "hystrix":
            outside += 1
            continue
        group = _norm(segments[1]) if len(segments) > 1 else ""
        if group in ("command", "threadpool") and len(segments) >= 4:
            key = _hnorm(".".join(segments[3:]))
            target = commands if group == "command" else pools
            target.setdefault(segments[2], {})[key] = (value, label)
        elif group == "collapser":
            run.unmapped(label, "request collapsing has no equivalent here")
        else:
            run.unmapped(label, "not a Hystrix setting this migrator knows")
    if outside:
        run.warn(f"{outside} setting(s) outside hystrix.* were skipped")
    if not commands and not pools:
        if not run.entries:
            run.problem("hystrix", "no hystrix.command.* or hystrix.threadpool.* settings found")
        return
    default = commands.get("default", {})
    default_pool = pools.get("default", {})
    used_pools: set[str] = set()
    names = [n for n in commands if n != "default"]
    for name in names:
        own = commands[name]
        settings = {**default, **own}
        pool_name = str(settings["threadpoolkeyoverride"][0]) if "threadpoolkeyoverride" in \
            settings else name  # fmt: skip
        used_pools.add(pool_name)
        pool = {**default_pool, **pools.get(pool_name, {})}
        _hystrix_command(run.op(name), settings, pool)
    if default or default_pool:
        _hystrix_command(run.defaults_op(), dict(default), dict(default_pool))
    for pool_name, pool in pools.items():
        if pool_name != "default" and pool_name not in used_pools:
            for _, label in pool.values():
                note = f"thread pool {pool_name!r} is used by no command here (set "
                run.unmapped(label, note + "threadPoolKeyOverride, or name it after the command)")


def _hystrix_command(op: _Op, s: Settings, pool: Settings) -> None:
    def get(key: str, convert: Callable[[Any], Any], default: Any, target: str,
            quality: float = 1.0, note: str = "") -> tuple[Any, list[str]]:  # fmt: skip
        if key not in s:
            return default, []
        raw, label = s[key]
        value = op.value(label, raw, convert)
        if value is None:
            return default, [label]
        op.mapped(label, target, quality, note)
        return value, [label]

    # timeout
    enabled, src_te = get("execution.timeout.enabled", _bool, True, "timeout")
    seconds, src_t = get("execution.isolation.thread.timeoutinmilliseconds",
                         lambda v: _positive(_ms(v)), 1.0, "timeout")  # fmt: skip
    op.section("timeout", seconds if enabled else False, *src_te, *src_t)
    if enabled:
        op.run.warn("Hystrix times out each execution; here the timeout covers the whole call "
                    "(with its retries, if the preset adds them)")  # fmt: skip
    # breaker
    on, src_on = get("circuitbreaker.enabled", _bool, True, "breaker")
    threshold, src_f = get("circuitbreaker.errorthresholdpercentage", _percent, 0.5,
                           "breaker.failure_rate_threshold", 0.9,
                           "Hystrix also counts timeouts and rejections as errors; here only "
                           "the failures the classifier calls transient count")  # fmt: skip
    volume, src_m = get("circuitbreaker.requestvolumethreshold", lambda v: _positive(_int(v)),
                        20, "breaker.minimum_calls")  # fmt: skip
    sleep, src_o = get("circuitbreaker.sleepwindowinmilliseconds", lambda v: _positive(_ms(v)),
                       5.0, "breaker.open_duration")  # fmt: skip
    window_s, src_w = get("metrics.rollingstats.timeinmilliseconds",
                          lambda v: _positive(_ms(v)), 10.0, "breaker.window")  # fmt: skip
    buckets, src_b = get("metrics.rollingstats.numbuckets", lambda v: _positive(_int(v)), 10,
                         "breaker.window.buckets")  # fmt: skip
    used = {"execution.timeout.enabled", "execution.isolation.thread.timeoutinmilliseconds",
            "circuitbreaker.enabled", "circuitbreaker.errorthresholdpercentage",
            "circuitbreaker.requestvolumethreshold", "circuitbreaker.sleepwindowinmilliseconds",
            "metrics.rollingstats.timeinmilliseconds", "metrics.rollingstats.numbuckets",
            "threadpoolkeyoverride", "execution.isolation.strategy",
            "execution.isolation.semaphore.maxconcurrentrequests"}  # fmt: skip
    if "threadpoolkeyoverride" in s:
        op.mapped(s["threadpoolkeyoverride"][1], "bulkhead")
    if on:
        _breaker(
            op,
            failure_rate=threshold,
            minimum_calls=volume,
            window={"kind": "time", "seconds": window_s, "buckets": buckets},
            open_duration=sleep,
            half_open_calls=1,
            sources={
                "failure_rate_threshold": src_f + src_on,
                "minimum_calls": src_m,
                "open_duration": src_o,
                "window": src_w + src_b,
            },
        )
    else:
        op.section("breaker", False, *src_on)
    # isolation -> bulkhead
    strategy = "THREAD"
    if "execution.isolation.strategy" in s:
        raw, label = s["execution.isolation.strategy"]
        text = str(raw).strip().upper()
        if text in ("THREAD", "SEMAPHORE"):
            strategy = text
            op.mapped(label, "bulkhead")
        else:
            op.run.problem(label, f"must be THREAD or SEMAPHORE, got {raw!r}")
    if strategy == "SEMAPHORE":
        limit, src_c = get("execution.isolation.semaphore.maxconcurrentrequests",
                           lambda v: _positive(_int(v)), 10, "bulkhead.max_concurrent")  # fmt: skip
        op.put("bulkhead", "max_concurrent", limit, *src_c)
        op.put("bulkhead", "max_waiting", 0)
        op.put("bulkhead", "max_wait", False)
        for _, label in pool.values():
            op.ignored(label)
    else:
        if "execution.isolation.semaphore.maxconcurrentrequests" in s:
            op.ignored(s["execution.isolation.semaphore.maxconcurrentrequests"][1])
        _hystrix_pool(op, pool)
    _rest(
        op,
        s,
        used,
        ignored=_HYSTRIX_IGNORED,
        notes={
            "fallback.enabled": "fallbacks are code here: FallbackChain, or "
            "resilient(..., fallback=...)",
            "fallback.isolation.semaphore.maxconcurrentrequests": "fallbacks are not "
            "isolated separately here",
            "circuitbreaker.forceopen": "the state is not configuration here: call "
            "force_open() at run time",
            "circuitbreaker.forceclosed": "the state is not configuration here: call "
            "disable() at run time",
        },
        neutral={
            "circuitbreaker.forceopen": lambda v: not _bool(v),
            "circuitbreaker.forceclosed": lambda v: not _bool(v),
            "fallback.enabled": lambda v: True,
        },
    )


def _hystrix_pool(op: _Op, pool: Settings) -> None:
    def get(key: str, convert: Callable[[Any], Any], default: Any) -> tuple[Any, list[str]]:
        if key not in pool:
            return default, []
        raw, label = pool[key]
        value = op.value(label, raw, convert)
        return (default if value is None else value), [label]

    core, src_c = get("coresize", lambda v: _positive(_int(v)), 10)
    maximum, src_x = get("maximumsize", lambda v: _positive(_int(v)), 10)
    diverge, src_d = get("allowmaximumsizetodivergefromcoresize", _bool, False)
    queue, src_q = get("maxqueuesize", _int, -1)
    reject, src_r = get("queuesizerejectionthreshold", _int, 5)
    for label in src_c:
        op.mapped(label, "bulkhead.max_concurrent")
    for label in src_x + src_d:
        op.mapped(label, "bulkhead.max_concurrent", 1.0 if not diverge or maximum == core else 0.9,
                  "" if not diverge or maximum == core else "a pool that grows from coreSize "
                  "to maximumSize: max_concurrent is maximumSize")  # fmt: skip
    waiting = 0 if queue < 0 else max(min(queue, reject), 0)
    for label in src_q + src_r:
        op.mapped(label, "bulkhead.max_waiting")
    op.put("bulkhead", "max_concurrent", maximum if diverge else core, *src_c, *src_x, *src_d)
    op.put("bulkhead", "max_waiting", waiting, *src_q, *src_r)
    op.put("bulkhead", "max_wait", False)
    _rest(op, pool, _HYSTRIX_POOL_KEYS, ignored=_HYSTRIX_POOL_IGNORED)


# --- Polly / Microsoft.Extensions.Http.Resilience -----------------------------------------

_POLLY_STRATEGIES = {
    "retry",
    "circuitbreaker",
    "totalrequesttimeout",
    "attempttimeout",
    "ratelimiter",
    "timeout",
    "hedging",
    "endpoint",
}


def _ci(table: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    return {_norm(k): (v, str(k)) for k, v in table.items()}


def _polly(run: _Run, data: Mapping[str, Any]) -> None:
    found: list[tuple[str, Mapping[str, Any], str]] = []
    outside = 0

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        nonlocal outside
        if any(_norm(k) in _POLLY_STRATEGIES for k in node) and (
            path or any(isinstance(v, Mapping) or _norm(k) == "timeout" for k, v in node.items())
        ):
            name = path[-1] if path else (run.name or "default")
            found.append((name, node, ".".join(path)))
            return
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, (*path, str(key)))
            else:
                outside += 1

    walk(data, ())
    if outside:
        run.warn(f"{outside} setting(s) outside resilience options were skipped")
    if not found:
        run.problem("polly", "no Retry, CircuitBreaker, Timeout, TotalRequestTimeout, "
                    "AttemptTimeout or RateLimiter options found")  # fmt: skip
        return
    for name, node, where in found:
        op = run.op(name)
        prefix = f"{where}." if where else ""
        for key, (value, original) in _ci(node).items():
            label = prefix + original
            if key == "retry" and isinstance(value, Mapping):
                _polly_retry(op, _ci(value), label)
            elif key == "circuitbreaker" and isinstance(value, Mapping):
                _polly_breaker(op, _ci(value), label)
            elif key in ("totalrequesttimeout", "timeout"):
                _polly_timeout(op, value, label)
            elif key == "ratelimiter" and isinstance(value, Mapping):
                _polly_limiter(op, _ci(value), label)
            elif key == "attempttimeout":
                note = "no per-attempt timeout here: the timeout covers the whole call "
                op.unmapped(label, note + "(TotalRequestTimeout); bound retries with deadline")
            elif key == "hedging":
                op.unmapped(label, "hedging has no equivalent here")
            elif key == "name":
                op.ignored(label)
            else:
                op.unmapped(label, "not a resilience option this migrator knows")


def _sub(s: Mapping[str, tuple[Any, str]], prefix: str) -> Settings:
    return {k: (v, f"{prefix}.{o}") for k, (v, o) in s.items()}


def _polly_retry(op: _Op, raw: Mapping[str, tuple[Any, str]], prefix: str) -> None:
    s = _sub(raw, prefix)
    values: dict[str, Any] = {}
    for key, convert in (
        ("maxretryattempts", _int),
        ("backofftype", lambda v: str(v).strip().lower()),
        ("delay", _timespan),
        ("maxdelay", _timespan),
        ("usejitter", _bool),
        ("shouldretryafterheader", _bool),
    ):
        if key in s:
            value = op.value(s[key][1], s[key][0], convert)
            if value is not None:
                values[key] = value
    retries = values.get("maxretryattempts", 3)
    if not 1 <= retries <= 2**31 - 1:
        op.run.problem(s["maxretryattempts"][1], f"must be in [1, 2147483647], got {retries}")
        retries = 3
    kind = values.get("backofftype", "exponential")
    if kind not in ("constant", "linear", "exponential"):
        op.run.problem(s["backofftype"][1], f"must be Constant, Linear or Exponential, got {kind}")
        kind = "exponential"
    delay = values.get("delay", 2.0)
    jitter = values.get("usejitter", True)
    attempts = retries + 1
    quality = {"usejitter": 1.0}
    if kind == "exponential":
        cap = values.get("maxdelay") or _backoff_max(delay, 2.0, attempts)
        backoff = {"kind": "exponential", "initial": delay, "multiplier": 2.0,
                   "maximum": max(cap, delay), "jitter": "full" if jitter else False}  # fmt: skip
        if jitter:
            quality["usejitter"] = 0.9
    elif kind == "linear":
        cap = values.get("maxdelay") or delay * max(attempts - 1, 1)
        backoff = {"kind": "linear", "initial": delay, "step": delay,
                   "maximum": max(cap, delay), "jitter": "equal" if jitter else False}  # fmt: skip
        if jitter:
            quality["usejitter"] = 0.8
    else:
        backoff = {"kind": "constant", "delay": delay}
        if jitter:
            backoff["jitter"] = "equal"
            quality["usejitter"] = 0.8
    targets = {
        "maxretryattempts": "retry.max_attempts (MaxRetryAttempts + 1)",
        "backofftype": "retry.backoff.kind",
        "delay": "retry.backoff",
        "maxdelay": "retry.backoff.maximum",
        "usejitter": "retry.backoff.jitter",
        "shouldretryafterheader": "retry.respect_retry_after",
    }
    for key in values:
        note = ""
        if key == "usejitter" and quality[key] < 1:
            note = "Polly's jitter distribution differs; here " + (
                "'full' jitter" if kind == "exponential" else "'equal' jitter"
            )
        op.mapped(s[key][1], targets[key], quality.get(key, 1.0), note)
    labels = [s[k][1] for k in values]
    _retry(op, attempts=attempts, backoff=backoff,
           respect_retry_after=values.get("shouldretryafterheader", True),
           sources={"max_attempts": labels, "backoff": labels})  # fmt: skip
    _rest(op, s, values, ignored={"name"},
          notes={"shouldhandle": _EXCEPTIONS_NOTE.replace("Java", ".NET")})  # fmt: skip


def _polly_breaker(op: _Op, raw: Mapping[str, tuple[Any, str]], prefix: str) -> None:
    s = _sub(raw, prefix)
    values: dict[str, Any] = {}
    checks: dict[str, tuple[Callable[[Any], Any], float, float]] = {
        "failureratio": (_number, 0.0, 1.0),
        "minimumthroughput": (_int, 2, 2**31 - 1),
        "samplingduration": (_timespan, 0.5, 86400.0),
        "breakduration": (_timespan, 0.5, 86400.0),
    }
    targets = {
        "failureratio": "breaker.failure_rate_threshold",
        "minimumthroughput": "breaker.minimum_calls",
        "samplingduration": "breaker.window",
        "breakduration": "breaker.open_duration",
    }
    for key, (convert, low, high) in checks.items():
        if key in s:
            value = op.value(s[key][1], s[key][0], convert)
            if value is not None and not low <= value <= high:
                op.run.problem(s[key][1], f"must be in [{low:g}, {high:g}], got {value:g}")
            elif value is not None:
                values[key] = value
                op.mapped(s[key][1], targets[key])
    sources = {targets[k].split(".")[1]: [s[k][1]] for k in values}
    _breaker(
        op,
        failure_rate=values.get("failureratio", 0.1),
        minimum_calls=values.get("minimumthroughput", 100),
        window={"kind": "time", "seconds": values.get("samplingduration", 30.0)},
        open_duration=values.get("breakduration", 5.0),
        half_open_calls=1,
        sources=sources,
    )
    _rest(op, s, values, ignored={"name"},
          notes={"shouldhandle": _EXCEPTIONS_NOTE.replace("Java", ".NET"),
                 "breakdurationgenerator": "open_duration_max doubles the open duration "
                 "on each re-open; a generator is code"})  # fmt: skip


def _polly_timeout(op: _Op, value: Any, label: str) -> None:
    if isinstance(value, Mapping):
        s = _sub(_ci(value), label)
        if "timeout" not in s:
            op.section("timeout", 30.0)
            _rest(op, s, ())
            return
        raw, label_in = s["timeout"]
        _rest(op, s, {"timeout"}, ignored={"name"})
        value, label = raw, label_in
    seconds = op.value(label, value, _timespan)
    if seconds is not None and not 0.01 <= seconds <= 86400:
        op.run.problem(label, f"must be between 00:00:00.010 and 1.00:00:00, got {seconds:g} s")
        seconds = None
    if seconds is not None:
        op.mapped(label, "timeout")
        op.section("timeout", seconds, label)


def _polly_limiter(op: _Op, raw: Mapping[str, tuple[Any, str]], prefix: str) -> None:
    s = _sub(raw, prefix)
    inner = s.get("defaultratelimiteroptions")
    used: set[str] = set()
    if inner is not None and isinstance(inner[0], Mapping):
        used.add("defaultratelimiteroptions")
        s_in = _sub(_ci(inner[0]), inner[1])
    else:
        s_in = s
    limits: dict[str, int] = {}
    for key in ("permitlimit", "queuelimit"):
        if key in s_in:
            value = op.value(s_in[key][1], s_in[key][0], _int)
            if value is not None and value < (1 if key == "permitlimit" else 0):
                op.run.problem(s_in[key][1], f"must be >= {1 if key == 'permitlimit' else 0}")
            elif value is not None:
                limits[key] = value
                op.mapped(s_in[key][1], "bulkhead." + (
                    "max_concurrent" if key == "permitlimit" else "max_waiting"))  # fmt: skip
    op.put("bulkhead", "max_concurrent", limits.get("permitlimit", 1000))
    op.put("bulkhead", "max_waiting", limits.get("queuelimit", 0))
    op.put("bulkhead", "max_wait", False)
    op.warn(f"{prefix}: the standard handler's rate limiter is a concurrency limiter: a bulkhead")
    if s_in is not s:
        _rest(op, s_in, limits)
        _rest(op, s, used)
    else:
        _rest(op, s, limits)


# --- pybreaker, circuitbreaker ----------------------------------------------------------------


def _kwargs(run: _Run, data: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    return {str(k).lower(): (v, str(k)) for k, v in data.items()}


def _op_name(run: _Run, s: Mapping[str, tuple[Any, str]]) -> str:
    if run.name:
        return run.name
    raw = s.get("name")
    if raw is not None and isinstance(raw[0], str) and raw[0].strip():
        return raw[0].strip()
    return "default"


def _consecutive_breaker(
    run: _Run,
    data: Mapping[str, Any],
    *,
    count_key: str,
    count_default: int,
    wait_key: str,
    wait_default: float,
    half_key: str | None,
    notes: Mapping[str, str],
) -> None:
    s = _kwargs(run, data)
    op = run.op(_op_name(run, s))
    count, wait, half = count_default, wait_default, 1
    src: dict[str, list[str]] = {}
    for key, convert, target in (
        (count_key, lambda v: _positive(_int(v)), "breaker.minimum_calls + window.size"),
        (wait_key, lambda v: _positive(_seconds(v)), "breaker.open_duration"),
        (half_key, lambda v: _positive(_int(v)), "breaker.half_open_calls"),
    ):
        if key is None or key not in s or s[key][0] is None:
            continue
        value = op.value(s[key][1], s[key][0], convert)
        if value is None:
            continue
        op.mapped(s[key][1], target)
        if key == count_key:
            count = value
            src["minimum_calls"] = src["window"] = [s[key][1]]
        elif key == wait_key:
            wait = value
            src["open_duration"] = [s[key][1]]
        else:
            half = value
            src["half_open_calls"] = [s[key][1]]
    _breaker(op, failure_rate=1.0, minimum_calls=count, window={"kind": "count", "size": count},
             open_duration=wait, half_open_calls=half, sources=src)  # fmt: skip
    used = {count_key, wait_key, "name"} | ({half_key} if half_key else set())
    if "name" in s:
        op.mapped(s["name"][1], "operation name")
    for key, (value, label) in s.items():
        if key not in used and value is None:
            op.ignored(label)
            used.add(key)
    _rest(op, s, used, ignored={"throw_new_error_on_trip"}, notes=notes)


def _pybreaker(run: _Run, data: Mapping[str, Any]) -> None:
    _consecutive_breaker(
        run,
        data,
        count_key="fail_max",
        count_default=5,
        wait_key="reset_timeout",
        wait_default=60.0,
        half_key="success_threshold",
        notes={
            "exclude": "exclusions are code: classify them PERMANENT with a Classifier",
            "listeners": "listeners are code: subscribe to resilience.events",
            "state_storage": "pass store= (MemoryStore, SQLiteStore, RedisStore) in code",
        },
    )


def _circuitbreaker(run: _Run, data: Mapping[str, Any]) -> None:
    _consecutive_breaker(
        run,
        data,
        count_key="failure_threshold",
        count_default=5,
        wait_key="recovery_timeout",
        wait_default=30.0,
        half_key=None,
        notes={
            "expected_exception": "exceptions are code: classify them with a Classifier",
            "fallback_function": "fallbacks are code: resilient(..., fallback=...) or "
            "FallbackChain",
        },
    )


# --- tenacity -------------------------------------------------------------------------------

_Term = tuple[str, list[Any], dict[str, Any]]
_TENACITY_ATTRS = {
    "stop_after_attempt": ("max_attempt_number",),
    "stop_after_delay": ("max_delay",),
    "stop_before_delay": ("max_delay",),
    "wait_fixed": ("wait_fixed",),
    "wait_exponential": ("multiplier", "max", "exp_base", "min"),
    "wait_random_exponential": ("multiplier", "max", "exp_base", "min"),
    "wait_exponential_jitter": ("multiplier", "max", "exp_base", "jitter"),
    "wait_incrementing": ("start", "increment", "max"),
    "wait_random": ("wait_random_min", "wait_random_max"),
}


def _term(value: Any) -> list[_Term]:
    """A tenacity stop/wait (object, expression text or JSON form) as terms; raises _Bad."""
    if isinstance(value, str):
        try:
            node = ast.parse(value.strip(), mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            raise _Bad(f"not a tenacity expression: {value!r:.60}") from None
        return _ast_terms(node)
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise _Bad(f"expected one strategy such as {{'stop_after_attempt': 3}}, got "
                       f"{dict(value)!r:.60}")  # fmt: skip
        ((name, args),) = value.items()
        if isinstance(args, Mapping):
            return [(str(name), [], {str(k): v for k, v in args.items()})]
        if isinstance(args, list | tuple):
            return [(str(name), list(args), {})]
        return [(str(name), [] if args is None else [args], {})]
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise _Bad("ambiguous number: write stop_after_attempt(n) or wait_fixed(s)")
    cls = type(value).__name__.lstrip("_")
    if cls in ("stop_any", "stop_all"):
        out: list[_Term] = []
        for sub in getattr(value, "stops", ()):
            out += _term(sub)
        return [(cls, [out], {})]
    if cls in ("wait_combine", "wait_chain"):
        return [(cls, [], {})]
    if cls in _TENACITY_ATTRS:
        kwargs = {a: getattr(value, a) for a in _TENACITY_ATTRS[cls] if hasattr(value, a)}
        if cls == "wait_exponential_jitter":
            kwargs["initial"] = kwargs.pop("multiplier", 1)
        return [(cls, [], kwargs)]
    if cls in ("stop_never", "wait_none"):
        return [(cls, [], {})]
    raise _Bad(f"not a tenacity strategy this migrator knows: {cls}")


def _ast_terms(node: ast.expr) -> list[_Term]:
    def name_of(n: ast.expr) -> str:
        if isinstance(n, ast.Name):
            return n.id
        if isinstance(n, ast.Attribute):
            return n.attr
        raise _Bad("expected a tenacity function such as stop_after_attempt(3)")

    def literal(n: ast.expr) -> Any:
        try:
            return ast.literal_eval(n)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            raise _Bad(f"arguments must be literal values, got {ast.unparse(n)!r:.60}") from None

    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr | ast.BitAnd):
        kind = "stop_any" if isinstance(node.op, ast.BitOr) else "stop_all"
        return [(kind, [_ast_terms(node.left) + _ast_terms(node.right)], {})]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [("wait_combine", [], {})]
    if isinstance(node, ast.Call):
        kwargs = {str(k.arg): literal(k.value) for k in node.keywords if k.arg}
        return [(name_of(node.func), [literal(a) for a in node.args], kwargs)]
    return [(name_of(node), [], {})]


def _flat_stops(terms: list[_Term]) -> tuple[list[_Term], bool]:
    out: list[_Term] = []
    every = False
    for name, args, kwargs in terms:
        if name in ("stop_any", "stop_all"):
            every = every or name == "stop_all"
            inner, inner_all = _flat_stops(args[0] if args else [])
            out += inner
            every = every or inner_all
        else:
            out.append((name, args, kwargs))
    return out, every


def _arg(args: list[Any], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _tenacity(run: _Run, data: Mapping[str, Any]) -> None:
    s = _kwargs(run, data)
    op = run.op(_op_name(run, s))
    # shorthand: {"stop_after_attempt": 5, "wait_fixed": 1} at the top
    for key in list(s):
        if key.startswith(("stop_", "wait_")):
            value, label = s.pop(key)
            group = "stop" if key.startswith("stop_") else "wait"
            term = {key: value}
            if group in s:
                s[group] = ([*s[group][0], term] if isinstance(s[group][0], list)
                            else [s[group][0], term], s[group][1] + ", " + label)  # fmt: skip
            else:
                s[group] = (term, label)
    attempts: int | None = None
    deadline: float | None = None
    stop_label = ""
    if "stop" in s:
        raw, stop_label = s["stop"]
        items = raw if isinstance(raw, list) else [raw]
        terms: list[_Term] = []
        for item in items:
            got = op.value(stop_label, item, _term)
            terms += got or []
        flat, every = _flat_stops(terms)
        quality = 0.5 if every and len(flat) > 1 else 1.0
        for name, args, kwargs in flat:
            try:
                if name == "stop_after_attempt":
                    attempts = int(_positive(_int(_arg(args, kwargs, 0, "max_attempt_number", 0))))
                elif name in ("stop_after_delay", "stop_before_delay"):
                    deadline = _positive(_seconds(_arg(args, kwargs, 0, "max_delay", None)))
                elif name == "stop_never":
                    pass
                else:
                    op.unmapped(f"{stop_label} ({name})", "no equivalent stop condition here")
                    quality = min(quality, 0.5)
            except _Bad as exc:
                run.problem(f"{stop_label} ({name})", str(exc))
        if terms:
            op.mapped(stop_label, "retry.max_attempts / retry.deadline", quality,
                      "stop_all (&) is read as either limit ending the retries"
                      if quality < 1 else "")  # fmt: skip
    if attempts is None:
        where = stop_label or "stop (not set)"
        if deadline is None:
            op.warn(f"{where}: tenacity retries forever; unbounded retries are refused here: "
                    "max_attempts and deadline come from the preset")  # fmt: skip
            op.entries.append(_Entry(where, 0.5, "retry.max_attempts"))
        else:
            attempts = 100
            op.warn(f"{where}: no attempt limit, only a {deadline:g} s deadline: "
                    "max_attempts = 100 within that deadline")  # fmt: skip
    backoff: dict[str, Any] | None = None
    if "wait" in s:
        raw, label = s["wait"]
        items = raw if isinstance(raw, list) else [raw]
        terms = []
        for item in items:
            terms += op.value(label, item, _term) or []
        if len(terms) > 1:
            terms = [("wait_combine", [], {})]
        if terms:
            backoff = _tenacity_wait(op, label, terms[0], attempts or 3)
    else:
        op.warn("wait (not set): tenacity does not wait between attempts; a backoff that "
                "never waits is refused here: the preset's backoff applies")  # fmt: skip
    respect = None
    _retry(op, attempts=attempts, backoff=backoff, deadline=deadline, respect_retry_after=respect,
           sources={"max_attempts": [stop_label], "backoff": [s["wait"][1]] if "wait" in s else [],
                    "deadline": [stop_label]})  # fmt: skip
    if attempts is None:
        op.table["retry"].pop("max_attempts", None)
        op.table["retry"].pop("deadline", None)
    if "reraise" in s:
        raw, label = s["reraise"]
        flag = op.value(label, raw, _bool)
        if flag is True:
            op.mapped(label, "(the original error is always re-raised here)")
        elif flag is False:
            op.mapped(
                label,
                "(the original error is always re-raised here)",
                0.9,
                "tenacity raised RetryError; here the last error is re-raised as is",
            )
    used = {"stop", "wait", "reraise", "name"}
    if "name" in s:
        op.mapped(s["name"][1], "operation name")
    for key, (value, label) in s.items():
        if key not in used and value is None:
            op.ignored(label)
            used.add(key)
    _rest(
        op,
        s,
        used,
        ignored={"sleep", "enabled"},
        notes={
            "retry": "retry predicates are code: classify errors with a Classifier",
            "before": "hooks are code: subscribe to resilience.events",
            "after": "hooks are code: subscribe to resilience.events",
            "before_sleep": "hooks are code: subscribe to resilience.events",
            "retry_error_callback": "a callback on exhaustion is a fallback here: "
            "resilient(..., fallback=...)",
            "retry_error_cls": "the last error is re-raised as is here",
        },
    )


def _tenacity_wait(op: _Op, label: str, term: _Term, attempts: int) -> dict[str, Any] | None:
    name, args, kwargs = term

    def num(index: int, key: str, default: float) -> float:
        return _seconds(_arg(args, kwargs, index, key, default))

    try:
        if name == "wait_fixed":
            delay = num(0, "wait", _arg(args, kwargs, 0, "wait_fixed", 0.0))
            op.mapped(label, "retry.backoff (constant)")
            return {"kind": "constant", "delay": delay}
        if name in ("wait_exponential", "wait_random_exponential"):
            mult = num(0, "multiplier", 1.0)
            cap = _cap(_arg(args, kwargs, 1, "max", math.inf))
            base = _number(_arg(args, kwargs, 2, "exp_base", 2.0)) if "exp_base" in kwargs or \
                len(args) > 2 else 2.0  # fmt: skip
            low = num(3, "min", 0.0)
            initial = max(mult, low)
            if base < 1:
                raise _Bad(f"exp_base must be >= 1, got {base:g}")
            maximum = cap if cap < 1e15 else _backoff_max(initial, base, attempts)
            op.mapped(label, "retry.backoff (exponential)", 1.0 if low <= mult else 0.9,
                      "" if low <= mult else "tenacity holds the first waits at min; here they "
                      "grow from min")  # fmt: skip
            jitter = "full" if name == "wait_random_exponential" else False
            return {"kind": "exponential", "initial": initial, "multiplier": base,
                    "maximum": max(maximum, initial), "jitter": jitter}  # fmt: skip
        if name == "wait_exponential_jitter":
            initial = num(0, "initial", 1.0)
            cap = _cap(_arg(args, kwargs, 1, "max", math.inf))
            base = _number(_arg(args, kwargs, 2, "exp_base", 2.0))
            if base < 1:
                raise _Bad(f"exp_base must be >= 1, got {base:g}")
            maximum = cap if cap < 1e15 else _backoff_max(initial, base, attempts)
            op.mapped(
                label,
                "retry.backoff (exponential)",
                0.9,
                "tenacity adds up to `jitter` seconds to each wait; here 'equal' jitter",
            )
            return {"kind": "exponential", "initial": initial, "multiplier": base,
                    "maximum": max(maximum, initial), "jitter": "equal"}  # fmt: skip
        if name == "wait_incrementing":
            start = num(0, "start", 0.0)
            step = num(1, "increment", 100.0)
            cap = _cap(_arg(args, kwargs, 2, "max", math.inf))
            maximum = cap if cap < 1e15 else start + step * max(attempts - 2, 0)
            op.mapped(label, "retry.backoff (linear)")
            return {"kind": "linear", "initial": start, "step": step,
                    "maximum": max(maximum, start), "jitter": False}  # fmt: skip
        if name == "wait_random":
            low = num(0, "min", _arg(args, kwargs, 0, "wait_random_min", 0.0))
            high = num(1, "max", _arg(args, kwargs, 1, "wait_random_max", 1.0))
            if high < low:
                raise _Bad(f"max ({high:g}) must be >= min ({low:g})")
            exact = low == 0 or low * 2 == high
            op.mapped(
                label,
                "retry.backoff (constant, jittered)",
                1.0 if exact else 0.8,
                "" if exact else "tenacity waits U(min, max); here between max/2 and max",
            )
            return {"kind": "constant", "delay": high, "jitter": "full" if low == 0 else "equal"}
        if name == "wait_none":
            op.mapped(
                label,
                "retry.backoff",
                0.5,
                "a backoff that never waits is refused here: the preset's backoff applies",
            )
            return None
        op.unmapped(f"{label} ({name})", "combined or chained waits have no equivalent: pick a "
                    "Backoff kind; the preset's backoff applies")  # fmt: skip
        return None
    except _Bad as exc:
        op.run.problem(f"{label} ({name})", str(exc))
        return None


# --- flat environment -------------------------------------------------------------------------

_GENERIC: list[tuple[tuple[str, ...], str, str]] = [
    # (suffix tokens, setting, unit: s|ms|n)
    (("TIMEOUT", "MS"), "timeout", "ms"),
    (("TIMEOUT", "MILLIS"), "timeout", "ms"),
    (("TIMEOUT", "SECONDS"), "timeout", "s"),
    (("TIMEOUT",), "timeout", "s"),
    (("MAX", "RETRIES"), "retries", "n"),
    (("RETRIES",), "retries", "n"),
    (("RETRY", "COUNT"), "retries", "n"),
    (("MAX", "ATTEMPTS"), "attempts", "n"),
    (("RETRY", "ATTEMPTS"), "attempts", "n"),
    (("RETRY", "DELAY", "MS"), "retry_delay", "ms"),
    (("RETRY", "DELAY"), "retry_delay", "s"),
    (("RETRY", "BACKOFF"), "retry_delay", "s"),
    (("BACKOFF", "FACTOR"), "retry_delay", "s"),
    (("RETRY", "MAX", "DELAY"), "retry_max_delay", "s"),
    (("BACKOFF", "MAX"), "retry_max_delay", "s"),
    (("FAIL", "MAX"), "failures", "n"),
    (("FAILURE", "THRESHOLD"), "failures", "n"),
    (("FAILURE", "RATE", "THRESHOLD"), "failure_rate", "n"),
    (("RESET", "TIMEOUT", "MS"), "open", "ms"),
    (("RESET", "TIMEOUT"), "open", "s"),
    (("RECOVERY", "TIMEOUT"), "open", "s"),
    (("OPEN", "DURATION"), "open", "s"),
    (("MAX", "CONCURRENT"), "concurrent", "n"),
    (("MAX", "CONCURRENCY"), "concurrent", "n"),
    (("CONCURRENCY",), "concurrent", "n"),
    (("RATE", "LIMIT"), "rate", "n"),
    (("REQUESTS", "PER", "SECOND"), "rate", "n"),
    (("RPS",), "rate", "n"),
]
_GENERIC.sort(key=lambda g: -len(g[0]))


def _parse_env(text: str, run: _Run) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", key):
            run.problem(f"line {number}", f"expected KEY=VALUE, got {line!r:.60}")
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def _env(run: _Run, data: Mapping[str, Any]) -> None:
    r4j_flat: list[tuple[tuple[str, ...], Any]] = []
    r4j_labels: list[str] = []
    hystrix_flat: list[tuple[tuple[str, ...], Any]] = []
    hystrix_labels: list[str] = []
    generic: dict[str, dict[str, tuple[Any, str, str]]] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        tokens = [t for t in re.split(r"[_.\-]+", key.upper()) if t]
        if len(tokens) >= 5 and tokens[0] == "RESILIENCE4J":
            module = _norm(tokens[1])
            if module == "threadpool" and len(tokens) > 2 and tokens[2] == "BULKHEAD":
                tokens = [tokens[0], "THREADPOOLBULKHEAD", *tokens[3:]]
                module = "threadpoolbulkhead"
            known = _R4J_KEYS.get(module, set()) | _R4J_COMMON_IGNORED
            rest = tokens[3:]
            split = _suffix(rest, known)
            name = "_".join(rest[:split]).lower()
            r4j_flat.append(((tokens[0], tokens[1], tokens[2], name, "".join(rest[split:])),
                             value))  # fmt: skip
            r4j_labels.append(key)
        elif len(tokens) >= 4 and tokens[0] == "HYSTRIX" and tokens[1] in ("COMMAND", "THREADPOOL"):
            known = {k.replace(".", "") for k in _HYSTRIX_COMMAND_KEYS | _HYSTRIX_IGNORED |
                     _HYSTRIX_POOL_KEYS | _HYSTRIX_POOL_IGNORED}  # fmt: skip
            rest = tokens[2:]
            split = _suffix(rest, known)
            name = "_".join(rest[:split]).lower()
            prop = "".join(rest[split:]).lower()
            full = next((k for k in _HYSTRIX_COMMAND_KEYS | _HYSTRIX_IGNORED | _HYSTRIX_POOL_KEYS
                         | _HYSTRIX_POOL_IGNORED if k.replace(".", "") == prop), prop)  # fmt: skip
            hystrix_flat.append((("hystrix", tokens[1].lower(), name, *full.split(".")), value))
            hystrix_labels.append(key)
        else:
            for suffix, setting, unit in _GENERIC:
                n = len(suffix)
                if tuple(tokens[-n:]) == suffix and len(tokens) >= n:
                    name = "_".join(tokens[:-n]).lower() or run.name or "default"
                    generic.setdefault(name, {})[setting] = (value, key, unit)
                    break
            else:
                run.unmapped(key, "not a setting this migrator recognises")
    if r4j_flat:
        _r4j(run, r4j_flat, r4j_labels)
    if hystrix_flat:
        _hystrix(run, hystrix_flat, hystrix_labels)
    for name, settings in generic.items():
        _env_generic(run.op(name), settings)
    if not (r4j_flat or hystrix_flat or generic) and not run.entries:
        run.problem("env", "no settings found")
    if generic:
        run.warn("flat variables were read by their names (e.g. PAYMENTS_TIMEOUT_MS, "
                 "PAYMENTS_MAX_RETRIES): check the units and meanings assumed")  # fmt: skip


def _suffix(tokens: list[str], known: set[str]) -> int:
    """Where the setting name starts in `tokens` (the longest known suffix), else 1."""
    for i in range(1, len(tokens)):
        if "".join(tokens[i:]).lower() in known:
            return i
    return 1 if len(tokens) > 1 else 0


def _env_duration(raw: Any, unit: str) -> float:
    if isinstance(raw, str) and (_SIMPLE.match(raw) or _iso(raw) is not None):
        return _spring_duration(raw)
    value = _non_negative(_number(raw))
    return value / 1000.0 if unit == "ms" else value


def _env_generic(op: _Op, s: dict[str, tuple[Any, str, str]]) -> None:
    q = 0.8  # read by name: the meaning is a guess

    def get(setting: str, convert: Callable[[Any], Any]) -> Any:
        if setting not in s:
            return None
        raw, label, unit = s[setting]
        value = op.value(label, raw, lambda v: convert(v) if unit == "n" else
                         _positive(_env_duration(v, unit)))  # fmt: skip
        return value

    def done(setting: str, target: str, note: str = "") -> None:
        if setting in s:
            op.mapped(s[setting][1], target, q, note)

    timeout = get("timeout", _number)
    if timeout is not None:
        done("timeout", "timeout", "read as " + ("milliseconds" if s["timeout"][2] == "ms"
                                                 else "seconds"))  # fmt: skip
        op.section("timeout", timeout, s["timeout"][1])
    retries = get("retries", lambda v: _non_negative(_int(v)))
    attempts = get("attempts", lambda v: _positive(_int(v)))
    if retries is not None:
        attempts = int(retries) + 1
        done("retries", "retry.max_attempts", "read as retries after the first attempt")
    elif attempts is not None:
        attempts = int(attempts)
        done("attempts", "retry.max_attempts", "read as attempts, the first included")
    delay = get("retry_delay", _number)
    cap = get("retry_max_delay", _number)
    if attempts is not None or delay is not None:
        backoff = None
        if delay is not None:
            done("retry_delay", "retry.backoff", "read as the first wait of an exponential "
                 "backoff (x2 per retry)")  # fmt: skip
            maximum = cap if cap is not None else _backoff_max(delay, 2.0, attempts or 3)
            backoff = {"kind": "exponential", "initial": delay, "multiplier": 2.0,
                       "maximum": max(maximum, delay), "jitter": "full"}  # fmt: skip
            if cap is not None:
                done("retry_max_delay", "retry.backoff.maximum")
        _retry(op, attempts=attempts, backoff=backoff)
        if attempts is None:
            op.table["retry"].pop("deadline", None)
    elif cap is not None:
        op.unmapped(s["retry_max_delay"][1], "a maximum delay without a retry")
    failures = get("failures", lambda v: _positive(_int(v)))
    rate = get("failure_rate", lambda v: _number(v))
    wait = get("open", _number)
    if failures is not None or rate is not None or wait is not None:
        if rate is not None and rate > 1:
            rate = rate / 100.0
            op.warn(f"{s['failure_rate'][1]}: read as a percentage")
        count = failures or 5
        done("failures", "breaker (consecutive failures)")
        done("failure_rate", "breaker.failure_rate_threshold")
        done("open", "breaker.open_duration")
        _breaker(
            op,
            failure_rate=rate if rate is not None else 1.0,
            minimum_calls=count if rate is None else 20,
            window={"kind": "count", "size": count if rate is None else 100},
            open_duration=wait if wait is not None else 30.0,
            half_open_calls=1,
        )
    concurrent = get("concurrent", lambda v: _positive(_int(v)))
    if concurrent is not None:
        done("concurrent", "bulkhead.max_concurrent")
        op.put("bulkhead", "max_concurrent", concurrent, s["concurrent"][1])
        op.put("bulkhead", "max_waiting", 0)
    per_second = get("rate", lambda v: _positive(_number(v)))
    if per_second is not None:
        done("rate", "rate_limit.rate", "read as calls per second")
        op.put("rate_limit", "rate", per_second, s["rate"][1])
        op.put("rate_limit", "per", 1.0)


# --- reading the source -----------------------------------------------------------------------


def _parse_properties(text: str, label: str) -> dict[str, str]:
    try:
        import javaproperties
    except ImportError:  # optional: the small reader below
        pass
    else:
        try:
            return dict(javaproperties.loads(text))
        except Exception as exc:  # its own errors (bad escapes)
            raise ConfigError([(label, f"not valid .properties: {exc}")]) from None
    out: dict[str, str] = {}  # a small reader: comments, key=value / key: value, continuations
    pending = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if not pending and (not stripped or stripped[0] in "#!"):
            continue
        if stripped.endswith("\\") and not stripped.endswith("\\\\"):
            pending += stripped[:-1]
            continue
        stripped, pending = pending + stripped, ""
        m = re.match(r"^((?:\\.|[^=:\s])+)\s*[=:\s]\s*(.*)$", stripped)
        if m:
            out[m.group(1).replace("\\", "")] = m.group(2)
        else:
            out[stripped] = ""
    return out


_KEY_VALUE = re.compile(r"^\s*([#!].*\n\s*)*(export\s+)?[A-Za-z_][\w.\-\[\]]*\s*=")
_ENV_LINE = re.compile(r"^\s*(#.*\n\s*)*(export\s+)?[A-Z_][A-Z0-9_]*\s*=")


def _read(source: Any, fmt: str) -> tuple[Any, str, str]:
    """(data, label, kind): data is a Mapping; kind is 'flat' (properties/env) or 'nested'."""
    if isinstance(source, Mapping):
        return source, "<mapping>", "nested"
    path: Path | None = None
    if isinstance(source, Path):
        path = source
    elif isinstance(source, str):
        if "\n" not in source and len(source) < 1024 and "=" not in source:
            candidate = Path(source)
            try:
                if candidate.suffix.lower() in (".yml", ".yaml", ".json", ".properties", ".env") \
                        or candidate.is_file():  # fmt: skip
                    path = candidate
            except (OSError, ValueError):
                path = None
    else:
        raise ConfigError([("source", "must be a file path, the file's text or a mapping, "
                            f"got {type(source).__name__}")])  # fmt: skip
    if path is not None:
        label = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError([(label, "file not found")]) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError([(label, f"cannot read: {exc}")]) from None
        suffix = path.suffix.lower()
    else:
        label, text, suffix = "<text>", str(source), ""
    if not suffix:
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            suffix = ".json"
        elif fmt == "env" or (fmt != "polly" and _KEY_VALUE.match(text)):
            suffix = ".env" if fmt == "env" or _ENV_LINE.match(text) else ".properties"
        else:
            suffix = ".yaml"
    if suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError([(label, f"not valid JSON: {exc}")]) from None
        kind = "nested"
    elif suffix in (".yml", ".yaml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                [(label, "YAML needs PyYAML: pip install 'resilience-primitives[yaml]'")]
            ) from None
        try:
            data = yaml.safe_load(text)
        except Exception as exc:  # yaml's own errors
            raise ConfigError([(label, f"not valid YAML: {exc}")]) from None
        kind = "nested"
        if data is None:
            data = {}
    elif suffix == ".env" or (fmt == "env" and suffix != ".properties"):
        probe = _Run("env", label, None, "preset")
        data = _parse_env(text, probe)
        if probe.problems:
            raise ConfigError(probe.problems)
        kind = "flat"
    else:
        data = _parse_properties(text, label)
        kind = "flat"
    if not isinstance(data, Mapping):
        raise ConfigError([(label, f"must hold a mapping at the top, got {type(data).__name__}")])
    return data, label, kind


_PYBREAKER_KEYS = {"fail_max", "reset_timeout", "success_threshold", "exclude", "listeners",
                   "state_storage", "throw_new_error_on_trip"}  # fmt: skip
_CIRCUITBREAKER_KEYS = {"failure_threshold", "recovery_timeout", "expected_exception",
                        "fallback_function"}  # fmt: skip
_TENACITY_KEYS = {"stop", "wait", "retry", "reraise", "before", "after", "before_sleep",
                  "retry_error_callback", "retry_error_cls", "sleep"}  # fmt: skip


def _detect(data: Mapping[str, Any], kind: str, label: str) -> str:
    keys = [str(k) for k in data]
    heads = {_norm(_split_key(k)[0]) if _split_key(k) else "" for k in keys}
    if "resilience4j" in heads:
        return "resilience4j"
    if "hystrix" in heads:
        return "hystrix"
    upper = [k for k in keys if k.upper().startswith(("RESILIENCE4J_", "HYSTRIX_"))]
    if upper:
        return "env"
    lower = {k.lower() for k in keys}
    if lower & _PYBREAKER_KEYS:
        return "pybreaker"
    if lower & _CIRCUITBREAKER_KEYS:
        return "circuitbreaker"
    # exact case: Polly's "Retry" is not tenacity's `retry`
    if set(keys) & _TENACITY_KEYS or any(k.startswith(("stop_", "wait_")) for k in keys):
        return "tenacity"

    def has_polly(node: Any, depth: int = 0) -> bool:
        if not isinstance(node, Mapping) or depth > 8:
            return False
        if any(_norm(str(k)) in _POLLY_STRATEGIES for k in node):
            return True
        return any(has_polly(v, depth + 1) for v in node.values())

    if has_polly(data):
        return "polly"
    if kind == "flat" and keys:
        return "env"
    raise ConfigError([(label, "cannot tell the legacy format; pass format= one of "
                        + ", ".join(FORMATS))])  # fmt: skip


# --- making the config valid ---------------------------------------------------------------


def _problems(table: dict[str, Any], defaults: dict[str, Any] | None, preset: str | None
              ) -> list[tuple[tuple[str, ...], str, str]]:  # fmt: skip
    """(path, message, environment) for `table` over the preset and `defaults`, every env."""
    from pydantic import ValidationError

    from .config import _checks, _merge, _models, _presets

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


# --- the entry point -------------------------------------------------------------------------


def migrate(
    source: str | Path | Mapping[str, Any],
    format: str = "auto",  # the contract's name
    *,
    name: str | None = None,
    preset: str | None = None,
    unset: str = "preset",
) -> MigrationReport:
    """Convert legacy resilience settings into this library's configuration.

    Args:
        source: a file path (`.yml`/`.yaml`, `.properties`, `.json`, `.env`), the file's text,
            or a mapping (parsed YAML/JSON, flat properties, or a library's constructor kwargs,
            e.g. `{"fail_max": 5, "reset_timeout": 60}` or tenacity's `{"stop":
            stop_after_attempt(3), "wait": wait_fixed(1)}`).
        format: "auto" (detected), or one of `FORMATS`.
        name: the operation's name for formats that have none (pybreaker, tenacity,
            circuitbreaker, a Polly options object at the top). Default: the legacy `name`
            argument, else "default".
        preset: written as each operation's `preset` (None: the environment's preset).
        unset: what becomes of the policies the legacy source did not configure: "preset"
            (they come from the preset) or "off" (written as `false`).

    Returns:
        A `MigrationReport`; `report.config` loads with `resilience.config.load(data=...)`
        in every environment.

    Raises:
        ConfigError: the source cannot be read, or holds values the legacy library itself
            would refuse; `.errors` lists every problem as (`file:key`, message).

    Example:
        >>> from resilience import migrate
        >>> r = migrate.migrate({"hystrix.command.getUser.circuitBreaker.sleepWindowInMilliseconds":
        ...                      "7000"})
        >>> r.format, r.config["operations"]["getUser"]["breaker"]["open_duration"]
        ('hystrix', 7.0)
    """
    if format != "auto" and format not in FORMATS:
        raise ConfigError([("format", f"must be 'auto' or one of {', '.join(FORMATS)}; "
                            f"got {format!r}")])  # fmt: skip
    if unset not in ("preset", "off"):
        raise ConfigError([("unset", f"must be 'preset' or 'off'; got {unset!r}")])
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError([("name", f"must be a non-empty string, got {name!r}")])
    if preset is not None:
        from .config import PRESETS

        if preset not in PRESETS:
            raise ConfigError([("preset", f"unknown preset {preset!r}; accepted: "
                                f"{', '.join(PRESETS)}")])  # fmt: skip
    try:
        return _migrate(source, format, name, preset, unset)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError([("source", "nested too deeply")]) from None
    except Exception as exc:  # a value no check foresaw: still a ConfigError, never a crash
        raise ConfigError([("source", f"cannot migrate ({type(exc).__name__}: {exc}); "
                            "please report this as a bug")]) from None  # fmt: skip


def _migrate(source: Any, fmt: str, name: str | None, preset: str | None,
             unset: str) -> MigrationReport:  # fmt: skip
    data, label, kind = _read(source, fmt)
    if fmt == "auto":
        fmt = _detect(data, kind, label)
    run = _Run(fmt, label, name, unset)
    if fmt in ("resilience4j", "hystrix"):
        flat: list[tuple[tuple[str, ...], Any]] = []
        labels: list[str] = []
        for segments, value in _flatten(data):
            flat.append((tuple(segments), value))
            labels.append(".".join(segments))
        (_r4j if fmt == "resilience4j" else _hystrix)(run, flat, labels)
    elif fmt == "polly":
        _polly(run, data)
    elif fmt == "env":
        _env(run, {str(k): v for k, v in data.items()})
    else:
        {"pybreaker": _pybreaker, "circuitbreaker": _circuitbreaker, "tenacity": _tenacity}[fmt](
            run, data
        )
    if run.problems:
        raise ConfigError(run.problems)
    return _report(run, preset)


def _report(run: _Run, preset: str | None) -> MigrationReport:
    config: dict[str, Any] = {}
    defaults_table: dict[str, Any] | None = None
    if run.defaults is not None:
        _sanitise(run.defaults, None, preset)
        defaults_table = run.defaults.table
        if defaults_table:
            config["defaults"] = defaults_table
    operations: dict[str, Any] = {}
    reports: dict[str, OperationReport] = {}
    all_entries: list[_Entry] = list(run.entries)
    warnings = list(run.warnings)
    if run.defaults is not None:
        all_entries += run.defaults.entries
        warnings += [f"[defaults]: {w}" for w in run.defaults.warnings]
    for op_name, op in run.ops.items():
        if run.unset == "off":
            from .config._models import SECTIONS

            for section in SECTIONS:
                if section not in op.table and section not in (defaults_table or {}):
                    op.table[section] = False
        _sanitise(op, defaults_table, preset)
        table = dict(op.table)
        if preset is not None:
            table = {"preset": preset, **table}
        operations[op_name] = table
        reports[op_name] = OperationReport(
            name=op_name,
            preset=preset,
            overrides=dict(op.table),
            confidence=op.confidence(),
            mapped=[(e.key, e.target) for e in op.entries if e.quality > 0],
            unmapped=_unique(e.key for e in op.entries if e.quality == 0),
            warnings=list(op.warnings),
        )
        all_entries += op.entries
        warnings += [f"{op_name}: {w}" for w in op.warnings]
    config["operations"] = operations
    _final_check(config, reports, warnings)
    counted: dict[str, float] = {}
    for entry in all_entries:  # a key inherited by several operations counts once, at its worst
        if entry.quality >= 0:
            counted[entry.key] = min(counted.get(entry.key, 1.0), entry.quality)
    confidence = round(sum(counted.values()) / len(counted), 4) if counted else 1.0
    if not operations and not defaults_table:
        confidence = 0.0
        warnings.append("no operation could be migrated")
    return MigrationReport(
        format=run.format,
        source=run.label,
        config=config,
        operations=reports,
        confidence=confidence,
        unmapped=_unique(e.key for e in all_entries if e.quality == 0),
        warnings=warnings,
        ignored=_unique(e.key for e in all_entries if e.quality < 0),
    )


def _final_check(config: dict[str, Any], reports: dict[str, OperationReport],
                 warnings: list[str]) -> None:  # fmt: skip
    """Load the whole config in every environment (what users will do)."""
    import warnings as _warnings

    from .config import load

    for env in _ENVIRONMENTS:
        try:
            with _warnings.catch_warnings():
                _warnings.simplefilter("ignore")
                load(data=config, environ={"RESILIENCE_ENV": env})
        except ConfigError as exc:  # pragma: no cover - every table was checked alone
            config["operations"] = {}
            config.pop("defaults", None)
            for report in reports.values():
                report.overrides = {}
                report.confidence = 0.0
            warnings.append(f"the migrated config did not load ({exc.errors[0][1]}); "
                            "nothing was kept")  # fmt: skip
            return


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `resilience migrate` arguments (used by `resilience.__main__`)."""
    parser.add_argument("legacy_file", help="legacy settings: .yml/.yaml, .properties, .json, .env")
    parser.add_argument("--format", "-f", default="auto", choices=("auto", *FORMATS))
    parser.add_argument("--output", "-o", default=None, help="write the TOML here")
    parser.add_argument(
        "--check", action="store_true", help="print the report; exit 1 unless all mapped exactly"
    )
    parser.add_argument("--name", default=None, help="operation name for formats with none")
    parser.add_argument("--preset", default=None, help="the preset each operation is written over")
    parser.add_argument(
        "--unset",
        default="preset",
        choices=("preset", "off"),
        help="policies the legacy file did not configure: from the preset, or off",
    )


def cli(args: argparse.Namespace) -> int:
    """Run `resilience migrate LEGACY_FILE [--format F] [-o resilience.toml] [--check]`.

    Without `-o` the TOML goes to stdout and the report to stderr; with `-o` the report goes
    to stdout. `--check` prints the report and exits 1 when the confidence is below 1 or a
    setting is unmapped. Unreadable or invalid legacy input exits 2.
    """
    try:
        report = migrate(
            Path(args.legacy_file),
            format=getattr(args, "format", "auto"),
            name=getattr(args, "name", None),
            preset=getattr(args, "preset", None),
            unset=getattr(args, "unset", "preset"),
        )
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    output = getattr(args, "output", None)
    check = getattr(args, "check", False)
    if output:
        try:
            Path(output).write_text(report.to_toml(), encoding="utf-8")
        except OSError as exc:
            print(f"cannot write {output}: {exc}", file=sys.stderr)
            return 2
        print(report.summary())
    elif check:
        print(report.summary())
    else:
        sys.stdout.write(report.to_toml())
        print(report.summary(), file=sys.stderr)
    if check and (report.confidence < 1.0 or report.unmapped):
        return 1
    return 0
