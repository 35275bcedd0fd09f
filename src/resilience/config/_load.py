"""Loading: files, environment variables, layering, validation, the `Config` object.

Precedence, lowest first: the preset (the operation's `preset`, else `[defaults].preset`, else
the environment's), the file's `[defaults]`, the file's `[operations."<op>"]` table (or a
`register()`ed one), then `RESILIENCE__...` environment variables.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .._errors import ConfigError
from . import _presets
from ._checks import storm_problems
from ._detect import detect_environment, normalize_environment
from ._merge import copy_table, follow_open_duration, format_location, merge_into
from ._models import OperationPolicy, problems_of, safe_url, scrub_messages, unknown_key

__all__ = ["ChaosInProductionWarning", "Config", "load", "parse_env_value"]

ENV_PREFIX = "RESILIENCE__"
CONFIG_VARIABLE = "RESILIENCE_CONFIG"
_TOP_KEYS = ("environment", "defaults", "operations")
_MISS_CACHE = 10_000

Problem = tuple[tuple[str, ...], str]


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower())


def parse_env_value(text: str) -> Any:
    """An environment variable's value: JSON, else a TOML literal, else the string itself.

    Example:
        >>> parse_env_value("5"), parse_env_value("false"), parse_env_value("fast")
        (5, False, 'fast')
        >>> parse_env_value('{ kind = "constant", delay = 0.5 }')
        {'kind': 'constant', 'delay': 0.5}
    """
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, KeyError):
        return text


@dataclass(frozen=True, slots=True)
class _EnvEntry:
    variable: str
    token: str | None  # the <OP> part; None for RESILIENCE__DEFAULTS__...
    path: tuple[str, ...]
    value: Any

    def layer(self) -> dict[str, Any]:
        table: Any = self.value
        for key in reversed(self.path):
            table = {key: table}
        return table  # type: ignore[no-any-return]


def _env_entries(environ: Mapping[str, str]) -> tuple[list[_EnvEntry], list[Problem]]:
    entries: list[_EnvEntry] = []
    problems: list[Problem] = []
    for variable in sorted(environ):
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        parts = variable[len(ENV_PREFIX) :].split("__")
        head = parts[0].upper()
        value = parse_env_value(environ[variable])
        if head == "OPERATIONS" and len(parts) >= 3 and all(parts[1:]):
            path = tuple(p.lower() for p in parts[2:])
            entries.append(_EnvEntry(variable, parts[1], path, value))
        elif head == "DEFAULTS" and len(parts) >= 2 and all(parts[1:]):
            entries.append(_EnvEntry(variable, None, tuple(p.lower() for p in parts[1:]), value))
        else:
            problems.append(
                (
                    (variable,),
                    "expected RESILIENCE__OPERATIONS__<OP>__<SETTING>[__<KEY>...] or "
                    "RESILIENCE__DEFAULTS__<SETTING>[__<KEY>...]",
                )
            )
    entries.sort(key=lambda e: (len(e.path), e.variable))
    return entries, problems


def _read_file(path: Path) -> dict[str, Any]:
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([(label, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([(label, f"cannot read: {exc}")]) from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data: Any = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError(
                    [(label, "YAML needs PyYAML: pip install 'resilience-primitives[yaml]'")]
                ) from None
            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
            if path.name == "pyproject.toml":
                tool = data.get("tool", {})
                if not isinstance(tool, dict) or "resilience" not in tool:
                    raise ConfigError([(label, "has no [tool.resilience] table")])
                data = tool["resilience"]
    except ConfigError:
        raise
    except Exception as exc:  # the parsers' own errors: JSON, TOML, YAML
        raise ConfigError([(label, f"not valid {suffix.lstrip('.') or 'TOML'}: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([(label, f"must hold a table at the top, got {type(data).__name__}")])
    return data


def _discover(environ: Mapping[str, str]) -> Path | None:
    explicit = environ.get(CONFIG_VARIABLE)
    if explicit:
        return Path(explicit)
    local = Path("resilience.toml")
    if local.is_file():
        return local
    pyproject = Path("pyproject.toml")
    if pyproject.is_file():
        try:
            tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return pyproject  # reading it again reports the problem
        if isinstance(tool, dict) and "resilience" in tool:
            return pyproject
    return None


class Config:
    """A loaded, validated configuration: the environment and every operation's policy.

    Immutable: `register()` and `with_operation()` make a new one. Build it with `load()`.

    Attributes:
        environment: "development", "testing", "staging" or "production".
        environment_source: what decided it: a variable name, "file <path>", a rule or
            "default".
        preset: the environment's default preset.
        source: the file read, or "presets" when none.
        warnings: things that are allowed but worth knowing.

    Example:
        >>> cfg = load(data={"operations": {"payments": {"preset": "critical"}}}, environ={})
        >>> cfg.environment, list(cfg.operations), cfg.operation("payments").retry.max_attempts
        ('development', ['payments'], 5)
    """

    __slots__ = (
        "_default",
        "_defaults",
        "_env_defaults",
        "_env_only",
        "_env_ops",
        "_misses",
        "_origins",
        "_patches",
        "_policies",
        "_tables",
        "environment",
        "environment_source",
        "preset",
        "source",
        "warnings",
    )

    environment: str
    environment_source: str
    preset: str
    source: str
    warnings: tuple[str, ...]
    _defaults: dict[str, Any]
    _tables: dict[str, dict[str, Any]]
    _origins: dict[str, str]
    _patches: dict[str, tuple[dict[str, Any], str]]  # operation -> (register(merge=True), label)
    _env_defaults: list[_EnvEntry]
    _env_ops: dict[str, list[_EnvEntry]]  # operation (or normalised token) -> entries
    _policies: dict[str, OperationPolicy]
    _env_only: dict[str, OperationPolicy]
    _default: OperationPolicy
    _misses: dict[str, OperationPolicy]

    # -- reading ------------------------------------------------------------------------

    def operation(self, name: str) -> OperationPolicy:
        """The merged policy of operation `name` (the environment's defaults if undeclared).

        Example:
            >>> from resilience import config
            >>> cfg = config.load(environ={"RESILIENCE_ENV": "production"})
            >>> cfg.operation("anything").retry.max_attempts
            3
        """
        policy = self._policies.get(name)
        if policy is not None:
            return policy
        policy = self._misses.get(name)
        if policy is not None:
            return policy
        policy = self._env_only.get(_norm(name), self._default)
        if len(self._misses) < _MISS_CACHE:
            self._misses[name] = policy
        return policy

    @property
    def operations(self) -> tuple[str, ...]:
        """The declared operations (file, registered), sorted."""
        return tuple(sorted(self._policies))

    @property
    def environment_operations(self) -> dict[str, tuple[str, ...]]:
        """Operations named only by `RESILIENCE__OPERATIONS__<OP>__...` variables.

        They are not declared in the file nor registered: their settings apply to any
        operation whose name normalises to the key (lower case, runs of other characters as
        `_`: `payment.charge` and `Payment-Charge` are `payment_charge`). Maps that key to the
        variables that set it.

        Example:
            >>> from resilience import config
            >>> cfg = config.load(data={}, environ={
            ...     "RESILIENCE__OPERATIONS__PAYMENT_CHARGE__TIMEOUT": "1"})
            >>> cfg.environment_operations
            {'payment_charge': ('RESILIENCE__OPERATIONS__PAYMENT_CHARGE__TIMEOUT',)}
        """
        return {
            key: tuple(e.variable for e in entries)
            for key, entries in sorted(self._env_ops.items())
            if key not in self._tables and key in self._env_only
        }

    @property
    def defaults(self) -> OperationPolicy:
        """What an undeclared operation gets: the environment's preset under `[defaults]`."""
        return self._default

    def explain(self, name: str) -> list[tuple[str, Any, str]]:
        """Where each value of `name`'s policy came from: `[(setting, value, origin), ...]`.

        Origins read "preset production", "file resilience.toml [defaults]", "file
        resilience.toml [operations.\\"x\\"]", "register()", "environment default", or the
        environment variable's name. Values are shown as written (`"2s"` stays `"2s"`).

        One rule links two settings: when a layer above the preset sets
        `breaker.open_duration` and no layer above the preset sets `open_duration_max`,
        `open_duration_max` follows `open_duration` (the breaker stays open that long each
        time, no doubling up to the preset's maximum); its origin then reads "follows
        breaker.open_duration (set by ...)". Set `open_duration_max` too to let it grow.

        Environment variables of different depth for one setting: the deeper one wins
        (`..._RETRY__MAX_ATTEMPTS=2` over `..._RETRY='{max_attempts=5}'`), whatever the
        variables' names.

        A password in a `store` URL is shown as `***`.

        Example:
            >>> from resilience import config
            >>> cfg = config.load(environ={"RESILIENCE_ENV": "testing",
            ...     "RESILIENCE__OPERATIONS__PAY__RETRY__MAX_ATTEMPTS": "4"})
            >>> [row for row in cfg.explain("pay") if row[0] == "retry.max_attempts"]
            [('retry.max_attempts', 4, 'RESILIENCE__OPERATIONS__PAY__RETRY__MAX_ATTEMPTS')]
        """
        origins: dict[tuple[str, ...], str] = {}
        if name in self._tables:
            merged = self._merge(name, self._tables[name], self._env_ops.get(name, []), origins)
        else:
            entries = self._env_ops.get(_norm(name), []) if name not in self._policies else []
            merged = self._merge(name, None, entries, origins)
        rows: list[tuple[str, Any, str]] = []

        def walk(table: Mapping[str, Any], path: tuple[str, ...]) -> None:
            for key, value in table.items():
                p = (*path, key)
                if isinstance(value, dict) and value:
                    walk(value, p)
                    continue
                origin = next(
                    (origins[p[:i]] for i in range(len(p), 0, -1) if p[:i] in origins), "?"
                )
                rows.append(
                    (format_location(p), safe_url(value) if key == "store" else value, origin)
                )

        walk(merged, ())
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration in the file layout (every operation fully merged).

        `store` URLs are as written, passwords included (so the result loads back); show it
        to people through `config show`, which hides them.
        """
        return {
            "environment": self.environment,
            "defaults": self._default.table(),
            "operations": {n: self._policies[n].table() for n in self.operations},
        }

    def __repr__(self) -> str:
        return (
            f"Config(environment={self.environment!r} from {self.environment_source}, "
            f"source={self.source!r}, {len(self._policies)} operations)"
        )

    # -- changing (a new Config each time) --------------------------------------------------

    def with_operation(
        self,
        name: str,
        table: Mapping[str, Any],
        *,
        origin: str = "register()",
        merge: bool = False,
    ) -> Config:
        """A copy with operation `name`'s table replaced by `table`, or patched (validated).

        Args:
            name: the operation.
            table: the shape of one `[operations."<name>"]` table.
            origin: the label `explain` shows for the values `table` sets.
            merge: False replaces the operation's table (file or earlier `register`);
                True merges `table` over it key by key, as a layer above it: settings it does
                not name stay as they were (so policies built from them keep their state).

        Raises:
            ConfigError: `table` (merged with the preset, `[defaults]` and environment
                variables) is invalid; this config is unchanged.

        Example:
            >>> from resilience import config
            >>> cfg = config.load(data={"operations": {"x": {"timeout": 3.0}}}, environ={})
            >>> new = cfg.with_operation("x", {"retry": {"max_attempts": 2}}, merge=True)
            >>> new.operation("x").timeout.seconds, new.operation("x").retry.max_attempts
            (3.0, 2)
        """
        if not isinstance(name, str) or not name:
            raise ConfigError([("operation", f"must be a non-empty string, got {name!r}")])
        if not isinstance(table, Mapping):
            raise ConfigError(
                [(format_location(("operations", name)), f"must be a table, got {table!r:.80}")]
            )
        entries = self._env_ops.get(name) or self._env_ops.get(_norm(name), [])
        new = self._copy()
        if merge and name in self._tables:
            patch: dict[str, Any] = {}
            if name in self._patches:
                patch = copy_table(self._patches[name][0])
            merge_into(patch, copy_table(dict(table)), origin)
            new._patches = {**self._patches, name: (patch, origin)}
        else:
            new._tables = {**self._tables, name: dict(table)}
            new._origins = {**self._origins, name: origin}
            new._patches = {k: v for k, v in self._patches.items() if k != name}
        problems: list[Problem] = []
        policy = new._validate_operation(name, new._tables[name], entries, problems)
        if problems or policy is None:
            raise ConfigError(_located(problems), operation=name)
        new._policies = {**self._policies, name: policy}
        new._env_ops = {**self._env_ops, name: entries}
        return new

    def _copy(self) -> Config:
        new = Config.__new__(Config)
        for slot in Config.__slots__:
            setattr(new, slot, getattr(self, slot))
        new._misses = {}
        return new

    # -- building -----------------------------------------------------------------------

    def _merge(
        self,
        name: str | None,
        table: Mapping[str, Any] | None,
        entries: list[_EnvEntry],
        origins: dict[tuple[str, ...], str] | None = None,
        table_origin: str | None = None,
    ) -> dict[str, Any]:
        layers: list[tuple[Mapping[str, Any], str]] = [
            (self._defaults, f"file {self.source} [defaults]")
        ]
        layers += [(e.layer(), e.variable) for e in self._env_defaults]
        if table is not None and name is not None:
            label = (
                table_origin
                or self._origins.get(name)
                or f"file {self.source} [{format_location(('operations', name))}]"
            )
            layers.append((table, label))
            if name in self._patches:
                layers.append(self._patches[name])
        layers += [(e.layer(), e.variable) for e in entries]
        chosen = None
        for layer, _ in layers:
            if "preset" in layer:
                chosen = layer["preset"]
        base_name = chosen if isinstance(chosen, str) and chosen in _presets.PRESETS else None
        base_name = base_name or self.preset
        merged: dict[str, Any] = copy_table(_preset_table(base_name))
        if origins is not None:
            for key in merged:
                origins[(key,)] = f"preset {base_name}"
            origins[("preset",)] = "environment default"
        for layer, label in layers:
            merge_into(merged, layer, label, origins)
        follow_open_duration(merged, layers, origins)
        return merged

    def _validate_operation(
        self,
        name: str | None,
        table: Mapping[str, Any] | None,
        entries: list[_EnvEntry],
        problems: list[Problem],
        table_origin: str | None = None,
        skip: frozenset[Problem] = frozenset(),
    ) -> OperationPolicy | None:
        """Merge and validate; problems (relative paths prefixed) go to `problems`."""
        location: tuple[str, ...] = ("defaults",) if name is None else ("operations", name)
        merged = self._merge(name, table, entries, None, table_origin)
        policy: OperationPolicy | None = None
        try:
            policy = OperationPolicy.model_validate(merged)
        except ValidationError as exc:
            found = problems_of(exc)
        else:
            found = storm_problems(policy, self.environment)
        found = [p for p in scrub_messages(found, merged) if p not in skip]
        if found:
            origins: dict[tuple[str, ...], str] = {}
            self._merge(name, table, entries, origins, table_origin)
            for path, message in found:
                origin = next(
                    (origins[path[:i]] for i in range(len(path), 0, -1) if path[:i] in origins),
                    None,
                )
                note = f" (set by {origin})" if origin and origin.isupper() else ""
                problems.append(((*location, *path), message + note))
            return None
        return policy


def _located(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(format_location(p), m) for p, m in problems]


_PRESET_CACHE: dict[int, tuple[OperationPolicy, dict[str, Any]]] = {}


def _preset_table(name: str) -> dict[str, Any]:
    policy = _presets.PRESETS[name]
    hit = _PRESET_CACHE.get(id(policy))
    if hit is None or hit[0] is not policy:
        hit = _PRESET_CACHE[id(policy)] = (policy, policy.table())
    return hit[1]


def load(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    data: Mapping[str, Any] | None = None,
) -> Config:
    """Load, merge and validate the configuration.

    Args:
        path: a TOML, JSON or YAML file (a `pyproject.toml` is read at `[tool.resilience]`).
            None: `$RESILIENCE_CONFIG`, else `./resilience.toml`, else `[tool.resilience]` in
            `./pyproject.toml`, else the presets alone.
        environ: the environment variables to read (default `os.environ`): the environment
            is detected from them and `RESILIENCE__...` variables override the file.
        data: the file's content as a mapping, instead of `path`.

    Returns:
        A `Config`; make it active with `use(cfg)`.

    Raises:
        ConfigError: anything invalid; `.errors` lists every problem with its location, e.g.
            `operations."llm.generate".retry.max_attempts`. Nothing is applied.

    Example:
        >>> from resilience import config
        >>> cfg = config.load(data={"operations": {"llm.generate": {"preset": "critical"}}},
        ...                   environ={"APP_ENV": "prod"})
        >>> cfg.environment, cfg.environment_source, cfg.operation("llm.generate").preset
        ('production', 'APP_ENV', 'critical')
    """
    environ = os.environ if environ is None else environ
    if data is None:
        file = Path(path) if path is not None else _discover(environ)
        source = str(file) if file is not None else "presets"
        raw: dict[str, Any] = _read_file(file) if file is not None else {}
    else:
        source = "data"
        if not isinstance(data, Mapping):
            raise ConfigError([("", f"must be a table, got {type(data).__name__}")])
        raw = dict(data)
    return _build(raw, source, environ)


def _build(raw: dict[str, Any], source: str, environ: Mapping[str, str]) -> Config:
    problems: list[Problem] = []
    for key in raw:
        if key not in _TOP_KEYS:
            problems.append(((str(key),), unknown_key(key, _TOP_KEYS)))
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append((("defaults",), f"must be a table, got {defaults!r:.80}"))
        defaults = {}
    operations = raw.get("operations", {})
    if not isinstance(operations, dict):
        problems.append((("operations",), f"must be a table, got {operations!r:.80}"))
        operations = {}
    tables: dict[str, dict[str, Any]] = {}
    for name, table in operations.items():
        if isinstance(table, dict):
            tables[str(name)] = table
        else:
            problems.append((("operations", str(name)), f"must be a table, got {table!r:.80}"))

    environment, env_source = "development", "default"
    try:
        if raw.get("environment") is not None and not (environ.get("RESILIENCE_ENV") or "").strip():
            environment = normalize_environment(raw["environment"])
            env_source = f"file {source}"
        else:
            environment, env_source = detect_environment(environ)
    except ConfigError as exc:
        problems += [((loc,), msg) for loc, msg in exc.errors]

    entries, env_problems = _env_entries(environ)
    problems += env_problems

    cfg = Config.__new__(Config)
    cfg.environment = environment
    cfg.environment_source = env_source
    cfg.preset = environment
    cfg.source = source
    cfg._defaults = defaults
    cfg._tables = tables
    cfg._origins = {}  # operation -> its table's origin when not the file (register())
    cfg._patches = {}
    cfg._env_defaults = [e for e in entries if e.token is None]
    cfg._misses = {}

    # environment variables -> operations
    env_ops: dict[str, list[_EnvEntry]] = {}
    by_norm: dict[str, list[str]] = {}
    for n in tables:
        by_norm.setdefault(_norm(n), []).append(n)
    for e in entries:
        if e.token is None:
            continue
        if e.token in tables:
            target = e.token
        else:
            matches = by_norm.get(_norm(e.token), [])
            if len(matches) > 1:
                problems.append(
                    (
                        (e.variable,),
                        f"matches several operations ({', '.join(matches)}); "
                        "write the operation's exact name",
                    )
                )
                continue
            target = matches[0] if matches else _norm(e.token)
        env_ops.setdefault(target, []).append(e)
    cfg._env_ops = env_ops

    default = cfg._validate_operation(None, None, [], problems)
    # an operation inherits [defaults]: report a defaults problem once, under defaults
    skip_rel = frozenset(
        (p[1:], m.split(" (set by ")[0]) for p, m in problems if p[:1] == ("defaults",)
    )
    policies: dict[str, OperationPolicy] = {}
    for name, table in tables.items():
        p = cfg._validate_operation(name, table, env_ops.get(name, []), problems, skip=skip_rel)
        if p is not None:
            policies[name] = p
    env_only: dict[str, OperationPolicy] = {}
    for key, key_entries in env_ops.items():
        if key in tables:
            continue
        p = cfg._validate_operation(key, None, key_entries, problems, skip=skip_rel)
        if p is not None:
            env_only[key] = p
    if problems:
        raise ConfigError(_located(problems))
    assert default is not None
    notes: list[str] = []
    if environment == "production":
        chaotic = [n for n, p in policies.items() if p.chaos is not None]
        chaotic += [f"{k} (environment variables)" for k, p in env_only.items() if p.chaos]
        if default.chaos is not None:
            chaotic.insert(0, "[defaults]")
        if chaotic:
            notes.append(
                f"fault injection (chaos) is enabled in production for: {', '.join(chaotic)}"
            )
    for note in notes:
        warnings.warn(note, ChaosInProductionWarning, stacklevel=3)
    notes += _undeclared_notes(env_ops, tables, env_only, source)
    cfg._default = default
    cfg._policies = policies
    cfg._env_only = env_only
    cfg.warnings = tuple(notes)
    return cfg


def _undeclared_notes(
    env_ops: Mapping[str, list[_EnvEntry]],
    tables: Mapping[str, Any],
    env_only: Mapping[str, OperationPolicy],
    source: str,
) -> list[str]:
    """A note per operation named only by environment variables (a typo, or code-only)."""
    declared = {_norm(n): n for n in tables}
    out = []
    for key in sorted(env_only):
        variables = ", ".join(e.variable for e in env_ops.get(key, []))
        close = difflib.get_close_matches(key, list(declared), n=1, cutoff=0.75)
        hint = f"; did you mean {declared[close[0]]!r}?" if close else ""
        where = "any config file" if source == "presets" else source
        out.append(
            f"{variables}: operation {key!r} is not declared in {where}; these settings apply "
            f"to any operation whose name normalises to {key!r}"
            + (f" (e.g. {key.replace('_', '.')!r})" if "_" in key else "")
            + hint
        )
    return out


class ChaosInProductionWarning(UserWarning):
    """A loaded config injects faults (a `chaos` section) in the production environment.

    Example:
        >>> issubclass(ChaosInProductionWarning, UserWarning)
        True
    """
