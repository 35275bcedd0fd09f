"""Reading the source (a path, text or a mapping) as the legacy runtime reads it, merging
overlays and Spring profiles, and detecting the format."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._core import FORMATS, MigrationError, _norm, _Run
from ._dotnet import _looks_like_polly
from ._env import _parse_env
from ._jvm import _flatten, _split_key

_MAX_BYTES = 16 * 1024 * 1024  # a config file larger than this is not a config file


@dataclass
class _Source:
    """What was read: the merged mapping and what the report must say about it."""

    data: Mapping[str, Any]
    label: str
    kind: str  # "flat" (properties, env) or "nested"
    profiles: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)  # profile files read without their base
    fold: bool = False  # .NET JSON: keys are case-insensitive when files are merged


# --- JSON as .NET reads it ------------------------------------------------------------------


class _Duplicate(Exception):
    pass


def _unique_pairs(pairs: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    # .NET's JSON configuration provider refuses a key given twice in one object, and its
    # keys are case-insensitive: "Retry" and "retry" are the same key there
    pairs = list(pairs)
    seen: set[Any] = set()
    for key, _ in pairs:
        folded = key.lower() if isinstance(key, str) else key
        if folded in seen:
            raise _Duplicate(key)
        seen.add(folded)
    return dict(pairs)


def _parse_json(text: str, label: str) -> Any:
    text = text.removeprefix("\ufeff")
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except _Duplicate as dup:
        raise MigrationError(
            [
                (
                    label,
                    f"duplicate key {dup.args[0]!r} in one object (.NET "
                    "refuses it; keys are case-insensitive there)",
                )
            ]
        ) from None
    except (ValueError, RecursionError) as exc:
        strict_error = exc
    try:
        import json5
    except ImportError:
        raise MigrationError(
            [
                (
                    label,
                    f"not valid JSON: {strict_error} (comments and trailing "
                    "commas need json5: pip install "
                    "'resilience-primitives[migrate]')",
                )
            ]
        ) from None
    try:
        return json5.loads(text, object_pairs_hook=_unique_pairs)
    except _Duplicate as dup:
        raise MigrationError(
            [
                (
                    label,
                    f"duplicate key {dup.args[0]!r} in one object (.NET "
                    "refuses it; keys are case-insensitive there)",
                )
            ]
        ) from None
    except RecursionError:
        raise MigrationError([(label, "nested too deeply")]) from None
    except Exception as exc:  # json5's own errors (ValueError and others)
        raise MigrationError([(label, f"not valid JSON: {exc}")]) from None


# --- YAML documents and Spring profiles ---------------------------------------------------


def _yaml_documents(text: str, label: str) -> list[Any]:
    try:
        import yaml
    except ImportError:
        raise MigrationError(
            [(label, "YAML needs PyYAML: pip install 'resilience-primitives[yaml]'")]
        ) from None

    class Loader(yaml.SafeLoader):
        """Refuses a key given twice in one mapping, as Spring Boot's YAML loader does."""

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:  # the keys written here (`<<:` merges may be overridden)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            try:
                hashed = key in seen
            except TypeError:
                raise MigrationError(
                    [
                        (
                            label,
                            f"line {key_node.start_mark.line + 1}: a mapping key must be a scalar",
                        )
                    ]
                ) from None
            if hashed:
                raise MigrationError(
                    [(label, f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")]
                )
            seen.add(key)
        loader.flatten_mapping(node)
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        docs = list(yaml.load_all(text, Loader=Loader))
    except MigrationError:
        raise
    except RecursionError:
        raise MigrationError([(label, "nested too deeply")]) from None
    except Exception as exc:  # yaml's own errors
        raise MigrationError([(label, f"not valid YAML: {exc}")]) from None
    return [{} if d is None else d for d in docs] or [{}]


_ACTIVATION = (("spring", "config", "activate", "onprofile"), ("spring", "profiles"))


def _activation(doc: Mapping[str, Any]) -> str | None:
    """The profile expression a Spring document is activated by, or None (a base document)."""
    for segments, value in _flatten(doc):
        normed = tuple(_norm(s) for s in segments)
        if normed in _ACTIVATION and value is not None and not isinstance(value, Mapping):
            if isinstance(value, list):
                return ",".join(str(v) for v in value)
            return str(value)
    return None


def _active_by_default(doc: Mapping[str, Any]) -> list[str]:
    for segments, value in _flatten(doc):
        if tuple(_norm(s) for s in segments) == ("spring", "profiles", "active") and value:
            items = value if isinstance(value, list) else str(value).split(",")
            return [str(v).strip() for v in items if str(v).strip()]
    return []


_TOKEN = re.compile(r"\s*([()!&|,]|[^()!&|,\s]+)")


def _profile_names(expression: str) -> list[str]:
    return [t for t in _TOKEN.findall(expression) if t not in "()!&|,"]


def _matches(expression: str, active: set[str]) -> bool:
    """Spring's profile expressions: `prod`, `prod,eu` (any), `prod & eu`, `!dev`, `(a | b)`."""
    tokens = _TOKEN.findall(expression)
    pos = 0

    def peek() -> str | None:
        return str(tokens[pos]) if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return str(tokens[pos - 1])

    def unary() -> bool:
        token = peek()
        if token == "!":
            take()
            return not unary()
        if token == "(":
            take()
            value = any_of()
            if peek() == ")":
                take()
            return value
        if token is None or token in ")&|,":
            raise ValueError(expression)
        return take() in active

    def binary() -> bool:
        value = unary()
        while peek() in ("&", "|"):
            op = take()
            right = unary()
            value = (value and right) if op == "&" else (value or right)
        return value

    def any_of() -> bool:
        value = binary()
        while peek() == ",":
            take()
            value = binary() or value
        return value

    try:
        result = any_of()
    except (ValueError, IndexError, RecursionError):
        return expression.strip() in active
    return result


def _select_documents(
    docs: list[Any], label: str, profile: str | None, source: _Source
) -> list[Mapping[str, Any]]:
    active = {p.strip() for p in (profile or "").split(",") if p.strip()}
    chosen: list[Mapping[str, Any]] = []
    for index, doc in enumerate(docs, 1):
        if not isinstance(doc, Mapping):
            raise MigrationError(
                [
                    (
                        f"{label} (document {index})",
                        f"must hold a mapping at the top, got {type(doc).__name__}",
                    )
                ]
            )
        expression = _activation(doc)
        if expression is None:
            chosen.append(doc)
            for name in _active_by_default(doc):
                if name not in active:
                    source.warnings.append(
                        f"{label}: spring.profiles.active = {name} (Spring activates it when no "
                        f"profile is given); its documents were not read: pass --profile {name}"
                    )
            continue
        for name in _profile_names(expression):
            if name not in source.profiles:
                source.profiles.append(name)
        if active and _matches(expression, active):
            chosen.append(doc)
    if source.profiles and not active:
        source.warnings.append(
            f"{label}: only the base document was read; profile documents: "
            f"{', '.join(source.profiles)} (pass profile= / --profile NAME)"
        )
    return chosen


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any], fold: bool = False
                ) -> dict[str, Any]:  # fmt: skip
    """Spring / .NET overlay semantics: mappings merge key by key; anything else replaces."""
    for key, value in over.items():
        if fold and key not in base and isinstance(key, str):
            key = next((k for k in base if isinstance(k, str) and k.lower() == key.lower()), key)
        mine = base.get(key)
        if isinstance(mine, dict) and isinstance(value, Mapping):
            _deep_merge(mine, value, fold)
        else:
            base[key] = _copy(value)
    return base


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# --- .properties --------------------------------------------------------------------------


def _parse_properties(text: str, label: str) -> dict[str, str]:
    try:
        import javaproperties
    except ImportError:  # optional: the small reader below
        pass
    else:
        try:
            return dict(javaproperties.loads(text))
        except Exception as exc:  # its own errors (bad escapes)
            raise MigrationError([(label, f"not valid .properties: {exc}")]) from None
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


def _properties_documents(text: str, label: str) -> list[dict[str, str]]:
    # Spring Boot 2.4+: `#---` (or `!---`) alone on a line separates documents
    parts = re.split(r"(?m)^[#!]---[ \t]*$", text)
    return [_parse_properties(part, label) for part in parts]


# --- one source ---------------------------------------------------------------------------

_KEY_VALUE = re.compile(r"^\s*([#!].*\n\s*)*(export\s+)?[A-Za-z_][\w.\-\[\]]*\s*=")
_ENV_LINE = re.compile(r"^\s*(#.*\n\s*)*(export\s+)?[A-Z_][A-Z0-9_]*\s*=")
_SUFFIXES = (".yml", ".yaml", ".json", ".properties", ".env")
_OVERLAY_NAME = re.compile(
    r"^(application|bootstrap|appsettings)[-.](?P<profile>[\w.-]+)\.\w+$", re.I
)


def _as_path(source: Any) -> Path | None:
    if isinstance(source, Path):
        return source
    if (
        isinstance(source, str)
        and "\n" not in source
        and len(source) < 1024
        and "=" not in source
        and not source.lstrip().startswith(("{", "["))
    ):
        candidate = Path(source)
        try:
            if candidate.suffix.lower() in (*_SUFFIXES, ".py") or candidate.exists():
                return candidate
        except (OSError, ValueError):
            return None
    return None


def _read_one(source: Any, fmt: str, profile: str | None) -> _Source:
    if isinstance(source, Mapping):
        return _Source(source, "<mapping>", "nested")
    path = _as_path(source)
    if path is None and not isinstance(source, str):
        raise MigrationError(
            [
                (
                    "source",
                    "must be a file path, the file's text or a mapping, "
                    f"got {type(source).__name__}",
                )
            ]
        )
    if path is not None:
        label = str(path)
        try:
            if path.stat().st_size > _MAX_BYTES:
                raise MigrationError([(label, f"larger than {_MAX_BYTES} bytes")])
            text = path.read_bytes().decode("utf-8-sig")
        except FileNotFoundError:
            raise MigrationError([(label, "file not found")]) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise MigrationError([(label, f"cannot read: {exc}")]) from None
        suffix = path.suffix.lower()
    else:
        label, text, suffix = "<text>", str(source).removeprefix("\ufeff"), ""
    if not suffix or suffix not in _SUFFIXES:
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")) or fmt == "polly":
            suffix = ".json"
        elif fmt == "env" or _KEY_VALUE.match(text):
            suffix = ".env" if fmt == "env" or _ENV_LINE.match(text) else ".properties"
        else:
            suffix = ".yaml"
    out = _Source({}, label, "nested")
    if suffix == ".json":
        data: Any = _parse_json(text, label)
        if not isinstance(data, Mapping):
            raise MigrationError(
                [(label, f"must hold a mapping at the top, got {type(data).__name__}")]
            )
        out.data = data
        out.fold = True
    elif suffix in (".yml", ".yaml"):
        merged: dict[str, Any] = {}
        for doc in _select_documents(_yaml_documents(text, label), label, profile, out):
            _deep_merge(merged, doc)
        out.data = merged
    elif suffix == ".env" or (fmt == "env" and suffix != ".properties"):
        probe = _Run("env", label, None, "preset")
        out.data = _parse_env(text, probe)
        if probe.problems:
            raise MigrationError(probe.problems)
        out.kind = "flat"
    else:
        merged = {}
        for doc in _select_documents(_properties_documents(text, label), label, profile, out):
            merged.update(doc)
        out.data = merged
        out.kind = "flat"
    if path is not None:
        m = _OVERLAY_NAME.match(path.name)
        if m and m.group("profile").lower() not in ("json", "yml", "yaml", "properties"):
            out.overlays.append(path.name)
    return out


def _read(source: Any, fmt: str, profile: str | None = None) -> _Source:
    """Read one source, or several (a base, then overlays merged over it, in order)."""
    if isinstance(source, str | Path | Mapping):
        return _unknown_profiles(_read_one(source, fmt, profile), profile, [])
    if not isinstance(source, Sequence) or not source:
        raise MigrationError(
            [
                (
                    "source",
                    "must be a file path, the file's text, a mapping, or a "
                    f"non-empty list of them; got {type(source).__name__}",
                )
            ]
        )
    parts = [_read_one(s, fmt, profile) for s in source]
    kinds = {p.kind for p in parts}
    merged: dict[str, Any] = {}
    for part in parts:
        data = part.data
        if len(kinds) > 1 and part.kind == "nested":  # properties over YAML: Spring's keys
            data = {".".join(seg): value for seg, value in _flatten(data)}
        if len(kinds) > 1 or part.kind == "flat":
            merged.update(data)
        else:
            _deep_merge(merged, data, all(p.fold for p in parts))
    out = _Source(
        merged,
        " + ".join(p.label for p in parts),
        "flat" if "flat" in kinds else "nested",
    )
    for part in parts:
        out.profiles += [p for p in part.profiles if p not in out.profiles]
        out.warnings += part.warnings
    # an overlay read after its base is what Spring does; only the first file can lack one
    out.overlays = parts[0].overlays
    return _unknown_profiles(out, profile, [o for p in parts[1:] for o in p.overlays])


def _unknown_profiles(source: _Source, profile: str | None, overlays: list[str]) -> _Source:
    """Warn about a profile asked for that no document and no overlay file is for."""
    named = {m.group("profile") for o in overlays if (m := _OVERLAY_NAME.match(o))}
    asked = {p.strip() for p in (profile or "").split(",") if p.strip()}
    unknown = sorted(asked - set(source.profiles) - named)
    if unknown:
        source.warnings.append(f"no document for profile(s) {', '.join(unknown)}")
    return source


# --- detecting the format -----------------------------------------------------------------

_PYBREAKER_KEYS = {
    "fail_max",
    "reset_timeout",
    "success_threshold",
    "exclude",
    "listeners",
    "state_storage",
    "throw_new_error_on_trip",
}
_CIRCUITBREAKER_KEYS = {
    "failure_threshold",
    "recovery_timeout",
    "expected_exception",
    "fallback_function",
}
_TENACITY_KEYS = {
    "stop",
    "wait",
    "retry",
    "reraise",
    "before",
    "after",
    "before_sleep",
    "retry_error_callback",
    "retry_error_cls",
    "sleep",
}


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
    if kind == "nested" and _looks_like_polly(data):
        return "polly"
    if kind == "flat" and keys:
        return "env"
    raise MigrationError(
        [
            (
                label,
                "cannot tell the legacy format; pass --format (format= in "
                "Python), one of " + ", ".join(FORMATS),
            )
        ]
    )
