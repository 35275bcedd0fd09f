"""The migration report and its TOML form."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
        library: for code (format "python"): the legacy library ("tenacity", "pybreaker",
            "stamina", "backoff", "circuitbreaker", "aiobreaker", "purgatory").
        site: for code: "path:line" of the decorator or constructor call.
        function: for code: the decorated function's qualified name, or the name the
            breaker or retrier is assigned to.
        dynamic: for code: the settings that are not literal in the source, as dotted paths
            ("retry.max_attempts"); they are not in `overrides` (never guessed).
        uses: for code: every place that uses this operation ("path:line"), the site first.

    Example:
        >>> from resilience.migrate import migrate
        >>> key = "resilience4j.circuitbreaker.instances.backendA.failureRateThreshold"
        >>> op = migrate({key: "50"}, format="resilience4j").operations["backendA"]
        >>> op.confidence, op.mapped[0][1], op.overrides["breaker"]["failure_rate_threshold"]
        (1.0, 'breaker.failure_rate_threshold', 0.5)
    """

    name: str
    preset: str | None
    overrides: dict[str, Any]
    confidence: float
    mapped: list[tuple[str, str]] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    library: str | None = None
    site: str | None = None
    function: str | None = None
    dynamic: list[str] = field(default_factory=list)
    uses: list[str] = field(default_factory=list)


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
        profiles: the Spring profiles the source has documents for.
        profile: the profile(s) read (None: the base documents only).

    Example:
        >>> from resilience.migrate import migrate
        >>> key = "hystrix.command.GetUser.circuitBreaker.errorThresholdPercentage"
        >>> report = migrate({key: "50"}, format="hystrix")
        >>> report.format, list(report.operations), report.unmapped
        ('hystrix', ['GetUser'], [])
    """

    format: str
    source: str
    config: dict[str, Any]
    operations: dict[str, OperationReport]
    confidence: float
    unmapped: list[str]
    warnings: list[str]
    ignored: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    profile: str | None = None
    rewrites: dict[str, list[tuple[str, int]]] = field(default_factory=dict, repr=False)
    """For code: per operation, the (file, line) of each decorator `--rewrite` replaces."""

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
                if op.site:
                    lines.append(
                        f"# {op.library} at {_comment(op.site)} ({_comment(op.function or '')})"
                    )
                lines += [f"# dynamic (set it by hand): {_comment(d)}" for d in op.dynamic]
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
        if self.profiles:
            out.append(f"profiles in the source: {', '.join(self.profiles)}; read: "
                       f"{self.profile or 'base documents only'}")  # fmt: skip
        for op in self.operations.values():
            where = f" ({op.library} at {op.site})" if op.site else ""
            out.append(f"  {op.name}: confidence {op.confidence:.2f}{where}")
            out += [f"    dynamic: {d}" for d in op.dynamic]
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
