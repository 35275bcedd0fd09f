"""`resilience config show|validate|explain` and `resilience presets`.

Tables use rich when it is installed (the `cli` extra), plain aligned text otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .._errors import ConfigError
from ._load import Config, load
from ._models import OperationPolicy, redact_table
from ._presets import PRESETS

__all__ = ["run"]


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    return "null" if v is None else str(v)


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, ["-" * w for w in widths], *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        print()
        return
    table = Table(title=escape(title), title_justify="left")
    for h in header:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*(escape(str(c)) for c in r))
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    console.print(table)


def _flat(table: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("backoff", "window", "budget"):
            out += _flat(value, name + ".")
        else:
            out.append((name, _value(value)))
    return out


def _show_policy(title: str, policy: OperationPolicy) -> None:
    _table(title, ["setting", "value"], _flat(redact_table(policy.table())))


def _errors(exc: ConfigError) -> int:
    print(str(exc), file=sys.stderr)
    return 1


def _header(cfg: Config) -> None:
    print(f"environment: {cfg.environment} (from {cfg.environment_source})")
    print(f"source: {cfg.source}; default preset: {cfg.preset}")
    print()


def _warn(cfg: Config) -> None:
    for note in cfg.warnings:
        print(f"warning: {note}", file=sys.stderr)


def _show(args: argparse.Namespace) -> int:
    cfg = load(args.file)
    _header(cfg)
    if args.operation:
        _show_policy(f'operation "{args.operation}"', cfg.operation(args.operation))
        _warn(cfg)
        return 0
    _show_policy("defaults (any undeclared operation)", cfg.defaults)
    for name in cfg.operations:
        _show_policy(f'operation "{name}"', cfg.operation(name))
    for key, variables in cfg.environment_operations.items():
        title = f'operation "{key}" (only in the environment: {", ".join(variables)})'
        _show_policy(title, cfg.operation(key))
    _warn(cfg)
    return 0


def _validate(args: argparse.Namespace) -> int:
    cfg = load(args.file)
    n = len(cfg.operations)
    what = args.file or (
        "no config file found (presets)" if cfg.source == "presets" else cfg.source
    )
    extra = len(cfg.environment_operations)
    print(
        f"{what}: valid ({n} operation{'s' if n != 1 else ''}"
        + (f", {extra} more only in the environment" if extra else "")
        + f"; environment {cfg.environment} from {cfg.environment_source})"
    )
    _warn(cfg)
    return 0


def _explain(args: argparse.Namespace) -> int:
    cfg = load(args.file)
    _header(cfg)
    declared = ""
    if args.operation not in cfg.operations:
        declared = " (not declared: defaults apply)"
        if any(o.startswith("RESILIENCE__OPERATIONS__") for _, _, o in cfg.explain(args.operation)):
            declared = " (not declared: defaults and environment variables apply)"
    rows = [(k, _value(v), o) for k, v, o in cfg.explain(args.operation)]
    _table(f'operation "{args.operation}"{declared}', ["setting", "value", "from"], rows)
    _warn(cfg)
    return 0


def _presets() -> int:
    rows = []
    for name, p in PRESETS.items():
        r = p.retry
        rows.append(
            (
                name,
                f"{p.timeout.seconds:g} s" if p.timeout else "off",
                _retry(r.table()) if r else "off",
                _breaker(p.breaker.table()) if p.breaker else "off",
                _bulkhead(p.bulkhead.table()) if p.bulkhead else "off",
                _fallback(p.fallback.table()) if p.fallback else "off",
            )
        )
    _table(
        "presets (an environment's default preset has its name)",
        ["preset", "timeout", "retry", "breaker", "bulkhead", "fallback"],
        rows,
    )
    return 0


def _retry(t: dict[str, Any]) -> str:
    parts = [f"{t.get('max_attempts', 3)} attempts"]
    b = t.get("backoff")
    if b:
        if b["kind"] == "constant":
            parts.append(f"constant {b.get('delay', 0):g} s")
        else:
            lo, hi = b.get("initial", 0.1), b.get("maximum", 10.0)
            parts.append(f"{b['kind']} {lo:g}..{hi:g} s")
    if t.get("deadline"):
        parts.append(f"deadline {t['deadline']:g} s")
    if t.get("budget"):
        parts.append(f"budget {t['budget'].get('ratio', 0.2):.0%}")
    return ", ".join(parts)


def _breaker(t: dict[str, Any]) -> str:
    w = t.get("window", {})
    window = f"{w['size']} calls" if "size" in w else f"{w.get('seconds', 60):g} s"
    opened = f"open {t.get('open_duration', 30):g} s"
    if t.get("open_duration_max"):
        opened += f" doubling to {t['open_duration_max']:g} s"
    return (
        f"{t.get('failure_rate_threshold', 0.5):.0%} of {window} "
        f"(min {t.get('minimum_calls', 10)}), {opened}"
    )


def _bulkhead(t: dict[str, Any]) -> str:
    return f"{t.get('max_concurrent', 10)} running, {t.get('max_waiting', 0)} waiting"


def _fallback(t: dict[str, Any]) -> str:
    parts = []
    if t.get("stale_cache"):
        parts.append(f"stale cache {t['stale_cache'].get('max_age', 300):g} s")
    if "default" in t:
        parts.append(f"default {_value(t['default'])}")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Run `config show|validate|explain` or `presets`; returns the exit status."""
    try:
        if args.command == "presets":
            return _presets()
        action = getattr(args, "config_command", None)
        if action == "show":
            return _show(args)
        if action == "validate":
            return _validate(args)
        if action == "explain":
            return _explain(args)
    except ConfigError as exc:
        return _errors(exc)
    print(f"unknown command: {args.command} {getattr(args, 'config_command', '')}", file=sys.stderr)
    return 2
