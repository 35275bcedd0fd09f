"""resilience4j (Spring Boot keys) and Netflix Hystrix."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ._core import (
    _backoff_max,
    _bool,
    _breaker,
    _int,
    _lower,
    _ms,
    _non_negative,
    _norm,
    _number,
    _Op,
    _percent,
    _positive,
    _rest,
    _retry,
    _Run,
    _spring_duration,
)

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
        "waitinterval",
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
        "waitinterval",
    },
    "bulkhead": {"maxconcurrentcalls", "maxwaitduration", "maxconcurrentcall", "maxwaittime"},
    "threadpoolbulkhead": {
        "maxthreadpoolsize",
        "corethreadpoolsize",
        "queuecapacity",
        "keepaliveduration",
        "contextpropagators",
        "contextpropagator",
    },
    "ratelimiter": {
        "limitforperiod",
        "limitrefreshperiod",
        "timeoutduration",
        "limitrefreshperiodinmillis",
        "timeoutinmillis",
    },
    "timelimiter": {"timeoutduration", "cancelrunningfuture", "timeoutinmillis"},
}
# resilience4j 0.x (and early 1.x) Spring Boot names -> today's; bare numbers are milliseconds
# in both, as Spring reads a Duration
_R4J_ALIASES = {
    "circuitbreaker": {"waitinterval": "waitdurationinopenstate",
                       "waitdurationinopenstatemillis": "waitdurationinopenstate"},
    "retry": {"waitinterval": "waitduration", "waitdurationmillis": "waitduration"},
    "bulkhead": {"maxconcurrentcall": "maxconcurrentcalls", "maxwaittime": "maxwaitduration",
                 "maxwaittimemillis": "maxwaitduration"},
    "ratelimiter": {"limitrefreshperiodinmillis": "limitrefreshperiod",
                    "timeoutinmillis": "timeoutduration"},
    "timelimiter": {"timeoutinmillis": "timeoutduration"},
}  # fmt: skip
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
        if kind in ("instances", "backends", "limiters", "configs") and len(segments) >= 5:
            kind = "configs" if kind == "configs" else "instances"
            key = _norm(".".join(segments[4:]))
            key = _R4J_ALIASES.get(module, {}).get(key, key)
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

    # a semaphore bulkhead after a thread pool: the semaphore (resilience4j's default type) wins
    order = ["circuitbreaker", "retry", "threadpoolbulkhead", "bulkhead", "ratelimiter",
             "timelimiter"]  # fmt: skip
    for (kind, module, name), settings in sorted(
        groups.items(), key=lambda item: order.index(item[0][1])
    ):
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
    if not time_based and minimum > size:
        # resilience4j decides a count window after min(minimumNumberOfCalls, window size)
        # calls (CircuitBreakerMetrics); 1.x's ringBufferSizeInClosedState: when the ring is full
        minimum = size
        src_m = src_m + src_w
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
    if "bulkhead" in op.table:  # both kinds for one instance: only one bulkhead here
        op.warn("a bulkhead and a thread-pool-bulkhead: the semaphore bulkhead's limits are used "
                "(@Bulkhead's default type); the thread pool's are dropped")  # fmt: skip
        _lower(op, ("bulkhead", ""), 0.0)
        for path in [p for p in op.sources if p[0] == "bulkhead"]:
            del op.sources[path]
        del op.table["bulkhead"]
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
            op.sources.setdefault(("bulkhead", "max_concurrent"), []).append(s[key][1])
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
        op.sources.setdefault(("bulkhead", "max_waiting"), []).append(label)
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
            op.mapped(label, "attempt_timeout")
    # Spring's aspect order puts the TimeLimiter inside the Retry: it bounds each attempt
    op.section("attempt_timeout", seconds, label)
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
