"""Flat KEY=VALUE settings: Spring-style RESILIENCE4J_* / HYSTRIX_* variables and named
settings such as PAYMENTS_TIMEOUT_MS."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ._core import (
    _SIMPLE,
    _backoff_max,
    _breaker,
    _int,
    _iso,
    _non_negative,
    _norm,
    _number,
    _Op,
    _positive,
    _retry,
    _Run,
    _spring_duration,
)
from ._jvm import (
    _HYSTRIX_COMMAND_KEYS,
    _HYSTRIX_IGNORED,
    _HYSTRIX_POOL_IGNORED,
    _HYSTRIX_POOL_KEYS,
    _R4J_COMMON_IGNORED,
    _R4J_KEYS,
    _hystrix,
    _r4j,
)

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
# words between the operation's name and the setting's: PAYMENTS_CIRCUIT_BREAKER_FAIL_MAX
_CONTEXT_WORDS = frozenset(
    {"RETRY", "RETRIES", "CIRCUIT", "BREAKER", "CB", "BULKHEAD", "REQUEST", "HTTP", "CLIENT"}
)


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
        if value[:1] in ("'", '"') and value.find(value[0], 1) > 0:
            value = value[1 : value.find(value[0], 1)]  # "x" # comment
        else:
            value = re.split(r"\s#", value, maxsplit=1)[0].strip()  # 5   # consecutive failures
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
                    prefix = tokens[:-n]
                    while prefix and prefix[-1] in _CONTEXT_WORDS:  # PAYMENTS_RETRY_MAX_ATTEMPTS
                        prefix = prefix[:-1]
                    name = "_".join(prefix).lower() or run.name or "default"
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
