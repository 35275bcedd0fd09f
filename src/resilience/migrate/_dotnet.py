"""Polly v8 / Microsoft.Extensions.Http.Resilience JSON options."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._core import (
    _backoff_max,
    _bool,
    _breaker,
    _int,
    _norm,
    _number,
    _Op,
    _rest,
    _retry,
    _Run,
    _timespan,
)
from ._jvm import _EXCEPTIONS_NOTE, Settings

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

    def labels(*keys: str) -> list[str]:
        return [s[k][1] for k in keys if k in values]

    _retry(op, attempts=attempts, backoff=backoff,
           respect_retry_after=values.get("shouldretryafterheader", True),
           sources={"max_attempts": labels("maxretryattempts"),
                    "backoff": labels("backofftype", "delay", "maxdelay", "usejitter"),
                    "respect_retry_after": labels("shouldretryafterheader")})  # fmt: skip
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
