"""Polly (v7 and v8) and Microsoft.Extensions.Http.Resilience settings in appsettings.json.

Real projects bind Polly settings from sections with their own names (`HttpClientPolicies`,
`Polly`, `ResiliencePolicies`, one per client...), with Polly v8's option names (`Retry`,
`CircuitBreaker`, `AttemptTimeout`, `TotalRequestTimeout`, `MaxRetryAttempts`, ...) or with
the parameter names of Polly v7's API (`RetryCount`, `ExceptionsAllowedBeforeBreaking`,
`DurationOfBreak`, ...). So sections are recognised by their vocabulary, wherever they are in
the tree; each section that holds resilience settings becomes one operation named by its path
(`HttpClients.CatalogApi.Resilience`), so two sections never merge. Polly v8's own option names
map exactly; names a project chose (read by what they say) map with a lower confidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ._core import (
    _TIMESPAN,
    _backoff_max,
    _Bad,
    _bool,
    _breaker,
    _int,
    _norm,
    _number,
    _Op,
    _percent,
    _retry,
    _Run,
    _timespan,
)
from ._jvm import _EXCEPTIONS_NOTE

# --- vocabulary -----------------------------------------------------------------------------

# strategy containers: normalised key -> the strategy
# fmt: off
_CONTAINERS = {
    "retry": "retry", "retrypolicy": "retry", "retryoptions": "retry", "retrystrategy": "retry",
    "retrysettings": "retry", "waitandretry": "retry", "httpretry": "retry",
    "httpcircuitbreaker": "breaker", "httptimeout": "timeout", "circuitbreaker": "breaker",
    "circuitbreakerpolicy": "breaker", "breaker": "breaker", "circuitbreakeroptions": "breaker",
    "circuitbreakerstrategy": "breaker", "circuitbreakersettings": "breaker",
    "advancedcircuitbreaker": "breaker", "totalrequesttimeout": "timeout", "timeout": "timeout",
    "timeoutpolicy": "timeout", "timeoutoptions": "timeout", "timeoutstrategy": "timeout",
    "attempttimeout": "attempt_timeout", "ratelimiter": "ratelimiter", "bulkhead": "bulkhead",
    "bulkheadpolicy": "bulkhead", "hedging": "hedging", "endpoint": "hedging",
}
# Polly v8's option names inside its strategy containers: these map exactly
_V8 = {
    "retry": {
        "backofftype", "delay", "maxdelay", "maxretryattempts", "name", "shouldhandle",
        "shouldretryafterheader", "usejitter",
    },
    "breaker": {
        "breakduration", "breakdurationgenerator", "failureratio", "minimumthroughput", "name",
        "samplingduration", "shouldhandle",
    },
    "timeout": {"name", "timeout"},
    "attempt_timeout": {"name", "timeout"},
}
# flat setting names -> (slot, quality): the slot says what the setting is
_SLOTS: dict[str, tuple[str, float]] = {
    # retry
    "maxretryattempts": ("retries", 1.0), "retrycount": ("retries", 0.9),
    "maxretries": ("retries", 0.85), "maxretrycount": ("retries", 0.9),
    "numberofretries": ("retries", 0.9), "retries": ("retries", 0.85),
    "retryattempts": ("retries", 0.85), "retrylimit": ("retries", 0.85),
    "retrytimes": ("retries", 0.85), "count": ("retries", 0.8), "maxattempts": ("attempts", 0.85),
    "delay": ("delay", 1.0), "retrydelay": ("delay", 0.9), "sleepduration": ("delay", 0.9),
    "retryinterval": ("delay", 0.9), "waitduration": ("delay", 0.9), "retrywait": ("delay", 0.9),
    "retrywaittime": ("delay", 0.9), "initialdelay": ("delay", 0.9),
    "firstretrydelay": ("delay", 0.9), "medianfirstretrydelay": ("median", 0.8),
    "backofftype": ("backofftype", 1.0), "usejitter": ("usejitter", 1.0),
    "maxdelay": ("maxdelay", 1.0), "maxretrydelay": ("maxdelay", 0.9),
    "retrybackoffpower": ("power", 0.85), "backoffpower": ("power", 0.85),
    "exponentialbase": ("power", 0.85), "backoffexponent": ("power", 0.85),
    "backoffmultiplier": ("power", 0.85), "shouldretryafterheader": ("retryafter", 1.0),
    "waitandretrycount": ("retries", 0.9),
    # breaker
    "exceptionsallowedbeforebreaking": ("consecutive", 1.0),
    "handledeventsallowedbeforebreaking": ("consecutive", 1.0),
    "eventsallowedbeforebreaking": ("consecutive", 0.9),
    "failuresallowedbeforebreaking": ("consecutive", 0.9),
    "allowedexceptions": ("consecutive", 0.85), "consecutivefailures": ("consecutive", 0.9),
    "maxconsecutivefailures": ("consecutive", 0.9), "maxfailures": ("consecutive", 0.85),
    "failurethreshold": ("threshold", 0.9), "failureratio": ("ratio", 1.0),
    "failurerate": ("ratio", 0.85), "failureratethreshold": ("ratio", 0.9),
    "minimumthroughput": ("throughput", 1.0), "samplingduration": ("sampling", 1.0),
    "breakduration": ("break", 1.0), "durationofbreak": ("break", 1.0),
    "circuitbreakerduration": ("break", 0.9), "openduration": ("break", 0.9),
    "breakdurationgenerator": ("code", 0.0), "maxattemptbeforebreak": ("consecutive", 0.85),
    "maxattemptsbeforebreak": ("consecutive", 0.85),
    "failuresbeforebreaking": ("consecutive", 0.9),
    # timeout
    "timeout": ("timeout", 0.9), "requesttimeout": ("timeout", 0.9),
    "totalrequesttimeout": ("timeout", 1.0), "totaltimeout": ("timeout", 0.9),
    "overalltimeout": ("timeout", 0.9), "httpclienttimeout": ("timeout", 0.85),
    # attempt_timeout
    "attempttimeout": ("attempt_timeout", 1.0), "perattempttimeout": ("attempt_timeout", 0.9),
    "timeoutperattempt": ("attempt_timeout", 0.9), "timeoutperretry": ("attempt_timeout", 0.9),
    "retrytimeout": ("attempt_timeout", 0.85),
    # rate_limit
    "ratelimitmaxrequest": ("ratecount", 0.85), "ratelimitmaxrequests": ("ratecount", 0.85),
    "ratelimitpermits": ("ratecount", 0.85), "ratelimittimewindow": ("rateper", 0.85),
    "ratelimitwindow": ("rateper", 0.85),
    # bulkhead
    "maxparallelization": ("parallel", 1.0), "maxqueuingactions": ("queue", 1.0),
    "permitlimit": ("parallel", 1.0), "queuelimit": ("queue", 1.0),
    "maxconcurrentrequests": ("parallel", 0.85), "maxconcurrency": ("parallel", 0.85),
}
_SLOT_SECTION = {
    "retries": "retry", "attempts": "retry", "delay": "retry", "median": "retry",
    "backofftype": "retry", "usejitter": "retry", "maxdelay": "retry", "power": "retry",
    "retryafter": "retry", "consecutive": "breaker", "threshold": "breaker", "ratio": "breaker",
    "throughput": "breaker", "sampling": "breaker", "break": "breaker", "code": "breaker",
    "timeout": "timeout", "attempt_timeout": "attempt_timeout", "parallel": "bulkhead",
    "queue": "bulkhead", "ratecount": "rate_limit", "rateper": "rate_limit",
}
# a setting named with its strategy in front: CircuitBreakerDurationOfBreak, RetryDelay
_PREFIXES = (
    "circuitbreaker", "breaker", "cb", "retry", "http", "policy", "polly", "bulkhead", "timeout",
)
_UNITS = (
    ("inmilliseconds", 0.001), ("milliseconds", 0.001), ("millis", 0.001), ("inms", 0.001),
    ("ms", 0.001), ("inseconds", 1.0), ("seconds", 1.0), ("secs", 1.0), ("insec", 1.0),
    ("sec", 1.0), ("inminutes", 60.0), ("minutes", 60.0), ("mins", 60.0),
)
# fmt: on
# words that mark a key as a resilience setting even when this reader does not know it
_RESILIENCE_WORDS = re.compile(
    r"retr|break|circuit|timeout|jitter|backoff|delay|throughput|bulkhead|ratelimit|attempt|"
    r"sampling|hedg|sleep|failure|exception|parallel|queuing"
)


def _lookup(key: str) -> tuple[str, str, float, float | None] | None:
    """(slot, the name it was read as, quality, unit in seconds or None) for a flat key."""
    unit: float | None = None
    stem = key
    for suffix, seconds in _UNITS:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem, unit = stem[: -len(suffix)], seconds
            break
    candidates = [(key, None), (stem, unit)]
    for prefix in _PREFIXES:
        for name, u in list(candidates[:2]):
            if name.startswith(prefix) and len(name) > len(prefix):
                candidates.append((name[len(prefix) :], u))
    for name, u in candidates:
        if name in _SLOTS:
            slot, quality = _SLOTS[name]
            return slot, name, quality, u
    for name, u in candidates:  # DurationOfBreakInSeconds and friends
        if name.startswith("durationofbreak"):
            return "break", "durationofbreak", 0.9, u
    return None


def _looks_like_polly(data: Mapping[str, Any]) -> bool:
    """True when some section of the tree holds Polly-like resilience settings."""

    def visit(node: Any, name: str, depth: int) -> bool:
        if not isinstance(node, Mapping) or depth > 32:
            return False
        if _section_kind(node, name):
            return True
        return any(visit(v, str(k), depth + 1) for k, v in node.items())

    return visit(data, "", 0)


# --- walking the tree ---------------------------------------------------------------------


# fmt: off
_WEAK = {
    "count", "delay", "failurerate", "httpclienttimeout", "maxattempts", "maxconcurrency",
    "maxconcurrentrequests", "maxfailures", "maxretries", "overalltimeout", "requesttimeout",
    "retries", "retryattempts", "retrylimit", "retrytimes", "timeout", "totaltimeout",
}
# fmt: on


def _section_kind(node: Mapping[str, Any], name: str) -> bool:
    """Does this mapping hold resilience settings of its own (not only in sub-sections)?

    A Polly v8 strategy object or a name only resilience settings use (RetryCount,
    DurationOfBreak...) is enough; generic names (Timeout, Delay, MaxRetries) count only beside
    another recognised setting, or in a section whose name says resilience (`HttpPolicies`)."""
    strong, weak = 0, 0
    for key, value in node.items():
        k = _norm(str(key))
        strategy = _CONTAINERS.get(k)
        if strategy is not None and isinstance(value, Mapping) and k != "timeout":
            return True
        if isinstance(value, Mapping | list):
            continue
        found = _lookup(k)
        if found is None or (found[1] == "count"):
            continue
        if found[1] in _WEAK or found[2] < 0.9:
            weak += 1
        else:
            strong += 1
    if strong:
        return True
    named = bool(
        _RESILIENCE_WORDS.search(_norm(name)) or re.search(r"polly|resilien|polic", _norm(name))
    )
    return weak >= 2 or (weak >= 1 and named)


def _polly(run: _Run, data: Mapping[str, Any]) -> None:
    found: list[tuple[str, Mapping[str, Any]]] = []
    skipped = 0

    def walk(node: Mapping[str, Any], path: tuple[str, ...], depth: int) -> None:
        nonlocal skipped
        if depth > 32:
            return
        own = _section_kind(node, path[-1] if path else "")
        if own:
            found.append((".".join(path), node))
        for key, value in node.items():
            k = _norm(str(key))
            if isinstance(value, Mapping):
                if own and k in _CONTAINERS:
                    continue
                walk(value, (*path, str(key)), depth + 1)
            elif not own:
                skipped += 1

    walk(data, (), 0)
    if skipped:
        run.warn(f"{skipped} setting(s) outside resilience sections were skipped")
    if not found:
        run.problem(
            "polly",
            "no Polly or Microsoft.Extensions.Http.Resilience settings found "
            "(Retry, CircuitBreaker, Timeout, AttemptTimeout, TotalRequestTimeout, "
            "RetryCount, DurationOfBreak, ExceptionsAllowedBeforeBreaking, ...)",
        )
        return
    taken: dict[str, str] = {}
    for where, node in found:
        name = where or run.name or "default"
        folded = name.lower()  # .NET configuration keys are case-insensitive
        if folded in taken:
            run.problem(where or name, f"names the same operation as {taken[folded]!r}")
            continue
        taken[folded] = where or name
        _section(run.op(name), node, f"{where}." if where else "")


class _Setting:
    __slots__ = ("label", "name", "quality", "raw", "unit")

    def __init__(self, raw: Any, label: str, name: str, quality: float, unit: float | None) -> None:
        self.raw, self.label, self.name, self.quality, self.unit = raw, label, name, quality, unit


def _section(op: _Op, node: Mapping[str, Any], prefix: str) -> None:
    """One operation: its strategy containers and its flat settings, grouped by strategy."""
    groups: dict[str, dict[str, _Setting]] = {}
    v8: set[str] = set()  # strategies given as Polly v8 option objects
    disabled: dict[str, str] = {}
    for key, value in node.items():
        k, label = _norm(str(key)), prefix + str(key)
        strategy = _CONTAINERS.get(k)
        if strategy is not None and isinstance(value, Mapping):
            if strategy in ("hedging",):
                op.unmapped(label, "hedging has no equivalent here")
                continue
            if strategy in ("ratelimiter", "bulkhead"):
                _limiter(op, value, label)
                continue
            own = {_norm(str(i)) for i in value} - {"name", "shouldhandle", "enabled"}
            # Polly v8's option objects: its container names holding its own option names
            exact = (
                strategy in _V8
                and k in ("retry", "circuitbreaker", "totalrequesttimeout", "attempttimeout",
                          "timeout")
                and (not own or bool(own & _V8[strategy]))
            )  # fmt: skip
            if exact:
                v8.add(strategy)
            for inner, inner_value in value.items():
                ik, ilabel = _norm(str(inner)), f"{label}.{inner}"
                if ik == "name":
                    op.ignored(ilabel)
                    continue
                if ik == "enabled":
                    try:
                        if not _bool(inner_value):
                            disabled[strategy] = ilabel
                        else:
                            op.ignored(ilabel)
                    except _Bad:
                        op.run.problem(ilabel, f"must be true or false, got {inner_value!r:.60}")
                    continue
                if ik == "shouldhandle":
                    op.unmapped(ilabel, _EXCEPTIONS_NOTE.replace("Java", ".NET"))
                    continue
                if strategy in ("timeout", "attempt_timeout") and ik in (
                    "timeout",
                    "timeoutduration",
                ):
                    slot: tuple[str, str, float, float | None] | None = (
                        strategy,
                        ik,
                        1.0 if exact else 0.9,
                        None,
                    )
                else:
                    slot = _lookup(ik)
                if slot is None or isinstance(inner_value, Mapping | list):
                    op.unmapped(ilabel, "not a resilience option this migrator knows")
                    continue
                section = _SLOT_SECTION[slot[0]]
                if slot[0] in ("timeout", "attempt_timeout"):
                    section = strategy if strategy in ("timeout", "attempt_timeout") else section
                quality = slot[2] if not (exact and ik in _V8.get(strategy, ())) else 1.0
                if section != strategy and strategy not in ("timeout", "attempt_timeout"):
                    quality = min(quality, 0.85)
                groups.setdefault(section, {})[slot[0]] = _Setting(
                    inner_value, ilabel, ik, quality, slot[3]
                )
            groups.setdefault(strategy, {})
            continue
        if strategy in ("timeout", "attempt_timeout") and not isinstance(value, Mapping | list):
            groups.setdefault(strategy, {})[strategy] = _Setting(
                value,
                label,
                k,
                1.0 if k in ("totalrequesttimeout", "attempttimeout") else 0.9,
                None,
            )
            if k in ("totalrequesttimeout", "attempttimeout"):
                v8.add(strategy)
            continue
        if isinstance(value, Mapping):
            continue  # a sub-section: its own operation (or none)
        slot = _lookup(k)
        if slot is not None and slot[1] == "count":
            slot = None  # "Count" means a retry count only inside a Retry section
        if slot is None or isinstance(value, list):
            if k in ("name", "enabled") or k.startswith(("handlerlifetime", "handlertimeout")):
                op.ignored(label)  # HttpClient's handler lifetime: not a resilience setting
            elif _RESILIENCE_WORDS.search(k):
                op.unmapped(label, "not a resilience setting this migrator knows")
            continue  # BaseUrl, ApiKey...: not ours
        groups.setdefault(_SLOT_SECTION[slot[0]], {})[slot[0]] = _Setting(
            value, label, slot[1], slot[2], slot[3]
        )
    standard = bool(v8 & {"timeout", "attempt_timeout"}) and (
        "totalrequesttimeout" in {_norm(str(k)) for k in node}
        or "attempttimeout" in {_norm(str(k)) for k in node}
    )
    if standard:  # the standard resilience handler: all five strategies, always
        for strategy in ("timeout", "retry", "breaker", "attempt_timeout"):
            if strategy not in groups:
                groups[strategy] = {}
                v8.add(strategy)
        op.warn(
            "read as AddStandardResilienceHandler options: the strategies not set keep "
            "its defaults (30 s total timeout, 3 retries, 10 s per attempt, ...)"
        )
    for strategy, label in disabled.items():
        op.section(strategy, False, label)
        op.mapped(label, strategy)
        groups.pop(strategy, None)
    if "retry" in groups:
        # Polly v8 options bound from configuration are, in practice, those of
        # Microsoft.Extensions.Http.Resilience (HttpRetryStrategyOptions): Exponential, jitter
        _retry_from(op, groups["retry"], "retry" in v8, standard or "retry" in v8)
    if "breaker" in groups:
        _breaker_from(op, groups["breaker"], "breaker" in v8)
    for strategy, default in (("timeout", 30.0), ("attempt_timeout", 10.0)):
        if strategy in groups:
            _timeout_from(op, strategy, groups[strategy], default if strategy in v8 else None)
    if "bulkhead" in groups:
        _limiter_settings(op, groups["bulkhead"])
    if "rate_limit" in groups:
        _rate_from(op, groups["rate_limit"])


# --- values ---------------------------------------------------------------------------------


def _duration(op: _Op, s: _Setting) -> float | None:
    """Seconds from a TimeSpan text, or a number in the key's unit (seconds when none)."""
    raw = s.raw
    if isinstance(raw, str) and (_TIMESPAN.match(raw) or raw.strip().upper().startswith("P")):
        seconds: float | None = op.value(s.label, raw, _timespan)
        return seconds
    value = op.value(s.label, raw, _number)
    if value is None:
        return None
    if value < 0:
        op.run.problem(s.label, f"must be >= 0, got {value:g}")
        return None
    if s.unit is None:
        s.quality = min(s.quality, 0.8)
        op.warn(
            f"{s.label}: a bare number, read as seconds (the class it binds to decides; "
            "a TimeSpan would read it as days)"
        )
        return float(value)
    return float(value) * s.unit


def _done(op: _Op, s: _Setting, target: str, quality: float | None = None, note: str = "") -> None:
    op.mapped(s.label, target, s.quality if quality is None else min(quality, s.quality), note)


def _retry_from(op: _Op, g: dict[str, _Setting], v8: bool, http: bool) -> None:
    retries: int | None = None
    if "retries" in g:
        retries = op.value(g["retries"].label, g["retries"].raw, _int)
        if retries is not None and not 0 <= retries <= 2**31 - 1:
            op.run.problem(g["retries"].label, f"must be in [1, 2147483647], got {retries}")
            retries = None
        if retries is not None:
            _done(op, g["retries"], "retry.max_attempts (retries + 1)")
    elif "attempts" in g:
        attempts_raw = op.value(g["attempts"].label, g["attempts"].raw, _int)
        if attempts_raw is not None and attempts_raw >= 1:
            retries = attempts_raw - 1
            _done(op, g["attempts"], "retry.max_attempts")
    if retries is None and v8:
        retries = 3
    if retries == 0:
        op.section("retry", False, *[s.label for s in g.values()])
        return
    kind_text: str | None = None
    if "backofftype" in g:
        text = str(g["backofftype"].raw).strip().lower()
        if text not in ("constant", "linear", "exponential"):
            op.run.problem(
                g["backofftype"].label,
                f"must be Constant, Linear or Exponential, got {g['backofftype'].raw!r}",
            )
        else:
            kind_text = text
            _done(op, g["backofftype"], "retry.backoff.kind")
    jitter: bool | None = None
    if "usejitter" in g:
        jitter = op.value(g["usejitter"].label, g["usejitter"].raw, _bool)
    delay = _duration(op, g["delay"]) if "delay" in g else None
    cap = _duration(op, g["maxdelay"]) if "maxdelay" in g else None
    attempts = (retries if retries is not None else 3) + 1
    backoff: dict[str, Any] | None = None
    if "median" in g:  # Polly.Contrib's DecorrelatedJitterBackoffV2(medianFirstRetryDelay, n)
        median = _duration(op, g["median"])
        if median:
            backoff = {
                "kind": "exponential",
                "initial": median,
                "multiplier": 2.0,
                "maximum": cap or _backoff_max(median, 2.0, attempts),
                "jitter": "full",
            }
            _done(
                op,
                g["median"],
                "retry.backoff",
                0.8,
                "decorrelated jitter around a median "
                "first delay: here exponential with full jitter from that delay",
            )
    elif v8 or kind_text or jitter is not None or (delay is not None and "power" not in g):
        default_kind = "exponential" if http else "constant"
        kind = kind_text or default_kind
        use_jitter = jitter if jitter is not None else http
        if kind_text is None and v8:
            op.warn(
                "retry: BackoffType not set: Microsoft.Extensions.Http.Resilience's "
                "default (Exponential with jitter) assumed; a plain Polly "
                "RetryStrategyOptions defaults to Constant without jitter"
            )
        if not v8 and kind_text is None and "delay" in g:
            g["delay"].quality = min(g["delay"].quality, 0.8)
            op.warn(
                f"{g['delay'].label}: read as a constant wait between retries (Polly v7 "
                "computes its waits in code: check the sleep duration provider)"
            )
        if delay is None:
            delay = 2.0 if v8 else None
        if delay is not None:
            backoff = _polly_backoff(op, g, kind, delay, cap, use_jitter, attempts)
        if "delay" in g and delay is not None:
            _done(op, g["delay"], "retry.backoff")
        if "maxdelay" in g and cap is not None:
            _done(op, g["maxdelay"], "retry.backoff.maximum")
    elif "power" in g:
        power = op.value(g["power"].label, g["power"].raw, _number)
        if power is not None and power >= 1:
            initial = delay if delay else power  # Math.Pow(power, retryAttempt): power^1 first
            backoff = {
                "kind": "exponential",
                "initial": initial,
                "multiplier": power,
                "maximum": cap or _backoff_max(initial, power, attempts),
                "jitter": False,
            }
            note = "read as waits of delay x power^(n-1)" if delay else "read as power^n seconds"
            _done(op, g["power"], "retry.backoff.multiplier", 0.8, note)
            if "delay" in g:
                _done(op, g["delay"], "retry.backoff.initial", 0.8)
    if backoff is None:
        op.entries.append(_entry(f"{_first_label(g)} (waits)", 0.7))
        op.warn(
            "retry: no delay setting: the waits between retries are in code (a sleep "
            "duration provider); the preset's backoff applies"
        )
    retry_after: bool | None = None
    if "retryafter" in g:
        retry_after = op.value(g["retryafter"].label, g["retryafter"].raw, _bool)
        _done(op, g["retryafter"], "retry.respect_retry_after")
    elif http:
        retry_after = True
    _retry(
        op,
        attempts=attempts if retries is not None or v8 else None,
        backoff=backoff,
        respect_retry_after=retry_after,
        sources={
            "max_attempts": [g[k].label for k in ("retries", "attempts") if k in g],
            "backoff": [
                g[k].label
                for k in ("delay", "maxdelay", "backofftype", "usejitter", "median", "power")
                if k in g
            ],
        },
    )
    if retries is None and not v8:
        op.table["retry"].pop("max_attempts", None)
        op.warn("retry: no retry count: the preset's max_attempts applies")


def _entry(key: str, quality: float) -> Any:
    from ._core import _Entry

    return _Entry(key, quality)


def _first_label(g: Mapping[str, _Setting]) -> str:
    return next(iter(g.values())).label.rsplit(".", 1)[0] if g else "retry"


def _polly_backoff(
    op: _Op,
    g: Mapping[str, _Setting],
    kind: str,
    delay: float,
    cap: float | None,
    jitter: bool | None,
    attempts: int,
) -> dict[str, Any]:
    if kind == "exponential":
        backoff = {
            "kind": "exponential",
            "initial": delay,
            "multiplier": 2.0,
            "maximum": max(cap or _backoff_max(delay, 2.0, attempts), delay),
            "jitter": "full" if jitter else False,
        }
    elif kind == "linear":
        backoff = {
            "kind": "linear",
            "initial": delay,
            "step": delay,
            "maximum": max(cap or delay * max(attempts - 1, 1), delay),
            "jitter": "equal" if jitter else False,
        }
    else:
        backoff = {"kind": "constant", "delay": delay}
        if jitter:
            backoff["jitter"] = "equal"
    if jitter and "usejitter" in g:
        _done(
            op,
            g["usejitter"],
            "retry.backoff.jitter",
            0.9 if kind == "exponential" else 0.8,
            "Polly's jitter distribution differs; here "
            + ("'full' jitter" if kind == "exponential" else "'equal' jitter"),
        )
    elif "usejitter" in g:
        _done(op, g["usejitter"], "retry.backoff.jitter")
    return backoff


def _breaker_from(op: _Op, g: dict[str, _Setting], v8: bool) -> None:
    def value(slot: str, convert: Callable[[Any], Any]) -> Any:
        return op.value(g[slot].label, g[slot].raw, convert) if slot in g else None

    brk = _duration(op, g["break"]) if "break" in g else None
    if brk is not None and not 0.5 <= brk <= 86400:
        op.run.problem(g["break"].label, f"must be between 0.5 s and 1 day, got {brk:g} s")
        brk = None
    consecutive = value("consecutive", _int)
    threshold = value("threshold", _number)
    if (
        threshold is not None
        and consecutive is None
        and threshold >= 1
        and threshold == int(threshold)
    ):  # a count: "FailureThreshold": 5
        consecutive = int(threshold)
        g["consecutive"] = g.pop("threshold")
        threshold = None
    if "code" in g:
        op.unmapped(
            g["code"].label,
            "a break-duration generator is code: open_duration_max "
            "doubles the open duration on each re-open",
        )
    if consecutive is not None:
        if consecutive < 1:
            op.run.problem(g["consecutive"].label, f"must be >= 1, got {consecutive}")
            return
        _done(op, g["consecutive"], "breaker.window + minimum_calls (consecutive failures)")
        if brk is None:
            op.warn("breaker: no break duration: 30 s assumed (Polly requires one in code)")
            op.entries.append(_entry(f"{_first_label(g)} (break duration)", 0.7))
        else:
            _done(op, g["break"], "breaker.open_duration")
        for extra in ("ratio", "throughput", "sampling"):
            if extra in g:
                op.unmapped(
                    g[extra].label,
                    "a consecutive-failure breaker has no "
                    "failure ratio, throughput or sampling window",
                )
        _breaker(
            op,
            failure_rate=1.0,
            minimum_calls=consecutive,
            window={"kind": "count", "size": consecutive},
            open_duration=brk or 30.0,
            half_open_calls=1,
            sources={
                "window": [g["consecutive"].label],
                "minimum_calls": [g["consecutive"].label],
                "open_duration": [g["break"].label] if "break" in g else [],
            },
        )
        return
    ratio = value("ratio", _number)
    if threshold is not None:
        ratio = threshold
        g["ratio"] = g.pop("threshold")
    if ratio is not None and ratio > 1 and g["ratio"].name != "failureratio":
        ratio = op.value(g["ratio"].label, ratio, _percent)
        if ratio is not None:
            op.warn(f"{g['ratio'].label}: read as a percentage")
            g["ratio"].quality = min(g["ratio"].quality, 0.85)
    if ratio is not None and not 0 <= ratio <= 1:
        op.run.problem(g["ratio"].label, f"must be in [0, 1], got {ratio:g}")
        ratio = None
    throughput = value("throughput", _int)
    if throughput is not None and not 2 <= throughput <= 2**31 - 1:
        op.run.problem(g["throughput"].label, f"must be in [2, 2147483647], got {throughput}")
        throughput = None
    sampling = _duration(op, g["sampling"]) if "sampling" in g else None
    if sampling is not None and not 0.5 <= sampling <= 86400:
        op.run.problem(g["sampling"].label, f"must be between 0.5 s and 1 day, got {sampling:g} s")
        sampling = None
    targets = {
        "ratio": "breaker.failure_rate_threshold",
        "throughput": "breaker.minimum_calls",
        "sampling": "breaker.window",
        "break": "breaker.open_duration",
    }
    got = {"ratio": ratio, "throughput": throughput, "sampling": sampling, "break": brk}
    for slot, target in targets.items():
        if slot in g and got[slot] is not None:
            _done(op, g[slot], target)
    if not v8 and ratio is None:
        op.warn(
            "breaker: no failure ratio or consecutive-failure count: Polly v8's defaults assumed"
        )
        op.entries.append(_entry(f"{_first_label(g)} (failure ratio)", 0.7))
    _breaker(
        op,
        failure_rate=ratio if ratio is not None else 0.1,
        minimum_calls=throughput if throughput is not None else 100,
        window={"kind": "time", "seconds": sampling if sampling is not None else 30.0},
        open_duration=brk if brk is not None else 5.0,
        half_open_calls=1,
        sources={targets[k].split(".")[1]: [g[k].label] for k in targets if k in g},
    )


def _timeout_from(op: _Op, section: str, g: dict[str, _Setting], default: float | None) -> None:
    s = g.get(section)
    if s is None:
        if default is not None:
            op.section(section, default)
        return
    seconds = _duration(op, s)
    if seconds is not None and not 0.01 <= seconds <= 86400:
        op.run.problem(s.label, f"must be between 00:00:00.010 and 1.00:00:00, got {seconds:g} s")
        seconds = None
    if seconds is not None:
        _done(op, s, section)
        op.section(section, seconds, s.label)


def _rate_from(op: _Op, g: dict[str, _Setting]) -> None:
    count = op.value(g["ratecount"].label, g["ratecount"].raw, _int) if "ratecount" in g else None
    per = _duration(op, g["rateper"]) if "rateper" in g else None
    if count is None or count < 1:
        for s in g.values():
            op.unmapped(s.label, "a rate limit needs a number of calls")
        return
    if per is None or per <= 0:
        per = 1.0
        op.warn(f"{g['ratecount'].label}: no time window: read as calls per second")
        g["ratecount"].quality = min(g["ratecount"].quality, 0.7)
    for s in g.values():
        _done(op, s, "rate_limit")
    op.put("rate_limit", "rate", float(count), g["ratecount"].label)
    op.put("rate_limit", "per", float(per))


def _limiter(op: _Op, value: Mapping[str, Any], label: str) -> None:
    inner = None
    for key, sub in value.items():
        if _norm(str(key)) == "defaultratelimiteroptions" and isinstance(sub, Mapping):
            inner = (sub, f"{label}.{key}")
    table, where = inner if inner is not None else (value, label)
    g: dict[str, _Setting] = {}
    for key, raw in table.items():
        k, klabel = _norm(str(key)), f"{where}.{key}"
        slot = _lookup(k)
        if slot is not None and slot[0] in ("parallel", "queue"):
            g[slot[0]] = _Setting(raw, klabel, k, slot[2], None)
        elif k == "name":
            op.ignored(klabel)
        else:
            op.unmapped(klabel, "not a limiter option this migrator knows")
    if inner is not None:
        for key in value:
            if _norm(str(key)) not in ("defaultratelimiteroptions", "name"):
                op.unmapped(f"{label}.{key}", "not a limiter option this migrator knows")
    op.warn(f"{label}: a concurrency limiter here is a bulkhead")
    if not g:
        g["parallel"] = _Setting(1000, where, "permitlimit", 1.0, None)
        g["parallel"].label = ""
    _limiter_settings(op, g)


def _limiter_settings(op: _Op, g: dict[str, _Setting]) -> None:
    limits: dict[str, int] = {}
    for slot, low in (("parallel", 1), ("queue", 0)):
        if slot in g:
            value = op.value(g[slot].label, g[slot].raw, _int) if g[slot].label else 1000
            if value is not None and value < low:
                op.run.problem(g[slot].label, f"must be >= {low}, got {value}")
            elif value is not None:
                limits[slot] = value
                if g[slot].label:
                    _done(
                        op,
                        g[slot],
                        "bulkhead." + ("max_concurrent" if slot == "parallel" else "max_waiting"),
                    )
    op.put("bulkhead", "max_concurrent", limits.get("parallel", 1000))
    op.put("bulkhead", "max_waiting", limits.get("queue", 0))
    op.put("bulkhead", "max_wait", False)
