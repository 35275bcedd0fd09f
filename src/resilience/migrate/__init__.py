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
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ._core import _ENVIRONMENTS, FORMATS, MigrationError, _confidence, _Entry, _Run, _sanitise
from ._dotnet import _polly
from ._env import _env
from ._jvm import _flatten, _hystrix, _r4j
from ._python import _circuitbreaker, _pybreaker, _tenacity
from ._read import _detect, _read
from ._report import MigrationReport, OperationReport
from ._rewrite import rewrite

__all__ = [
    "FORMATS",
    "MigrationError",
    "MigrationReport",
    "OperationReport",
    "cli",
    "migrate",
    "rewrite",
]

# --- the entry point -------------------------------------------------------------------------


def migrate(
    source: str | Path | Mapping[str, Any] | Sequence[str | Path | Mapping[str, Any]],
    format: str = "auto",  # the contract's name
    profile: str | None = None,
    *,
    name: str | None = None,
    preset: str | None = None,
    unset: str = "preset",
) -> MigrationReport:
    """Convert legacy resilience settings into this library's configuration.

    Args:
        source: a file path (`.yml`/`.yaml`, `.properties`, `.json`, `.env`; `.py` or a
            directory for Python code), the file's text, or a mapping (parsed YAML/JSON, flat
            properties, or a library's constructor kwargs, e.g. `{"fail_max": 5,
            "reset_timeout": 60}` or tenacity's `{"stop": stop_after_attempt(3), "wait":
            wait_fixed(1)}`). A list of them is a base followed by overlays merged over it
            in order (`["application.yml", "application-prod.yml"]`), as Spring and .NET do.
        format: "auto" (detected), or one of `FORMATS`.
        profile: the Spring profile(s) to activate, comma-separated: the documents of a
            multi-document YAML (or `#---` properties) file whose
            `spring.config.activate.on-profile` (or `spring.profiles`) matches are merged over
            the base documents. None: the base documents only (the report lists the profiles).
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
        MigrationError: (a `ConfigError`) the source cannot be read, or holds values the
            legacy library itself would refuse; `.errors` lists every problem as
            (`file:key`, message).

    Example:
        >>> from resilience import migrate
        >>> r = migrate.migrate({"hystrix.command.getUser.circuitBreaker.sleepWindowInMilliseconds":
        ...                      "7000"})
        >>> r.format, r.config["operations"]["getUser"]["breaker"]["open_duration"]
        ('hystrix', 7.0)
    """
    if format != "auto" and format not in FORMATS:
        raise MigrationError([("format", f"must be 'auto' or one of {', '.join(FORMATS)}; "
                               f"got {format!r}")])  # fmt: skip
    if unset not in ("preset", "off"):
        raise MigrationError([("unset", f"must be 'preset' or 'off'; got {unset!r}")])
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise MigrationError([("name", f"must be a non-empty string, got {name!r}")])
    if profile is not None and (not isinstance(profile, str) or not profile.strip()):
        raise MigrationError([("profile", f"must be a non-empty string, got {profile!r}")])
    if preset is not None:
        from ..config import PRESETS

        if preset not in PRESETS:
            raise MigrationError([("preset", f"unknown preset {preset!r}; accepted: "
                                   f"{', '.join(PRESETS)}")])  # fmt: skip
    try:
        return _migrate(source, format, profile, name, preset, unset)
    except MigrationError:
        raise
    except ConfigError as exc:
        raise MigrationError(exc.errors) from None
    except RecursionError:
        raise MigrationError([("source", "nested too deeply")]) from None
    except Exception as exc:  # a value no check foresaw: still a MigrationError, never a crash
        raise MigrationError([("source", f"cannot migrate ({type(exc).__name__}: {exc}); "
                               "please report this as a bug")]) from None  # fmt: skip


def _migrate(source: Any, fmt: str, profile: str | None, name: str | None, preset: str | None,
             unset: str) -> MigrationReport:  # fmt: skip
    if fmt == "python" or (fmt == "auto" and _is_python(source)):
        from ._source import _python_source

        if not isinstance(source, str | Path):
            raise MigrationError([("source", "format 'python' reads a .py file, a directory or "
                                   f"source text, got {type(source).__name__}")])  # fmt: skip
        text = isinstance(source, str) and ("\n" in source or not source.strip())
        run = _Run("python", "<text>" if text else str(source), name, unset)
        found = _python_source(run, source)
        if run.problems:
            raise MigrationError(run.problems)
        report = _build_report(run, preset)
        found.annotate(report)
        return report
    read = _read(source, fmt, profile)
    data, label, kind = read.data, read.label, read.kind
    if fmt == "auto":
        fmt = _detect(data, kind, label)
    run = _Run(fmt, label, name, unset)
    run.warnings += read.warnings
    for overlay in read.overlays:
        run.entries.append(_Entry(f"{overlay} (its base file)", 0.5))
        run.warn(f"{overlay} is a profile overlay: the settings it does not set come from its "
                 "base file (application.yml / appsettings.json), not the library's defaults; "
                 f"migrate both: resilience migrate <base> {overlay}")  # fmt: skip
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
        raise MigrationError(run.problems)
    report = _build_report(run, preset)
    report.profiles = list(read.profiles)
    report.profile = profile
    return report


def _is_python(source: Any) -> bool:
    if isinstance(source, Path | str) and not isinstance(source, Mapping):
        if isinstance(source, str) and ("\n" in source or len(source) > 1024
                                        or not source.strip()):  # fmt: skip
            return False
        try:
            path = Path(source)
            return path.suffix == ".py" or path.is_dir()
        except (OSError, ValueError):
            return False
    return False


def _build_report(run: _Run, preset: str | None) -> MigrationReport:
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
            from ..config._models import SECTIONS

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
    confidence = _confidence(all_entries)
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

    from ..config import load

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


def cli(args: argparse.Namespace) -> int:
    """Run `resilience migrate LEGACY_FILE... [--format F] [--profile P] [-o resilience.toml]
    [--check] [--rewrite [--write]]`.

    Without `-o` the TOML goes to stdout and the report to stderr; with `-o` the report goes
    to stdout. `--check` prints the report and exits 1 when the confidence is below 1 or a
    setting is unmapped. Several files: a base, then overlays merged over it. `--rewrite`
    (Python code) prints a unified diff that puts `@rs.resilient(...)` in place of each
    site's decorator; `--write` applies it. Unreadable or invalid legacy input exits 2.

    Example:
        >>> from resilience.__main__ import _parser
        >>> cli(_parser().parse_args(["migrate", "no-such-file.properties"]))  # message on stderr
        2
    """
    files = args.legacy_file if isinstance(args.legacy_file, list) else [args.legacy_file]
    paths = [Path(f) for f in files]
    try:
        report = migrate(
            paths[0] if len(paths) == 1 else paths,
            format=getattr(args, "format", "auto"),
            profile=getattr(args, "profile", None),
            name=getattr(args, "name", None),
            preset=getattr(args, "preset", None),
            unset=getattr(args, "unset", "preset"),
        )
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if getattr(args, "rewrite", False) or getattr(args, "write", False):
        if report.format != "python":
            print("--rewrite reads Python code (.py files or a directory)", file=sys.stderr)
            return 2
        try:
            diff = rewrite(report, write=getattr(args, "write", False))
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        sys.stdout.write(diff)
        print(report.summary(), file=sys.stderr)
        return 0
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
