"""Reading the source (a path, text or a mapping) and detecting its format."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ._core import FORMATS, _norm, _Run
from ._dotnet import _POLLY_STRATEGIES
from ._env import _parse_env
from ._jvm import _split_key

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
