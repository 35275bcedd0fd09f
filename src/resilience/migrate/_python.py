"""pybreaker, circuitbreaker and tenacity keyword arguments."""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from typing import Any

from ._core import (
    _backoff_max,
    _Bad,
    _bool,
    _breaker,
    _cap,
    _Entry,
    _int,
    _number,
    _Op,
    _positive,
    _rest,
    _retry,
    _Run,
    _seconds,
)

# --- pybreaker, circuitbreaker ----------------------------------------------------------------


def _kwargs(run: _Run, data: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    return {str(k).lower(): (v, str(k)) for k, v in data.items()}


def _op_name(run: _Run, s: Mapping[str, tuple[Any, str]]) -> str:
    if run.name:
        return run.name
    raw = s.get("name")
    if raw is not None and isinstance(raw[0], str) and raw[0].strip():
        return raw[0].strip()
    return "default"


def _consecutive_breaker(
    run: _Run,
    data: Mapping[str, Any],
    *,
    count_key: str,
    count_default: int,
    wait_key: str,
    wait_default: float,
    half_key: str | None,
    notes: Mapping[str, str],
) -> None:
    s = _kwargs(run, data)
    op = run.op(_op_name(run, s))
    count, wait, half = count_default, wait_default, 1
    src: dict[str, list[str]] = {}
    for key, convert, target in (
        (count_key, lambda v: _positive(_int(v)), "breaker.minimum_calls + window.size"),
        (wait_key, lambda v: _positive(_seconds(v)), "breaker.open_duration"),
        (half_key, lambda v: _positive(_int(v)), "breaker.half_open_calls"),
    ):
        if key is None or key not in s or s[key][0] is None:
            continue
        value = op.value(s[key][1], s[key][0], convert)
        if value is None:
            continue
        op.mapped(s[key][1], target)
        if key == count_key:
            count = value
            src["minimum_calls"] = src["window"] = [s[key][1]]
        elif key == wait_key:
            wait = value
            src["open_duration"] = [s[key][1]]
        else:
            half = value
            src["half_open_calls"] = [s[key][1]]
    _breaker(op, failure_rate=1.0, minimum_calls=count, window={"kind": "count", "size": count},
             open_duration=wait, half_open_calls=half, sources=src)  # fmt: skip
    used = {count_key, wait_key, "name"} | ({half_key} if half_key else set())
    if "name" in s:
        op.mapped(s["name"][1], "operation name")
    for key, (value, label) in s.items():
        if key not in used and value is None:
            op.ignored(label)
            used.add(key)
    _rest(op, s, used, ignored={"throw_new_error_on_trip"}, notes=notes)


def _pybreaker(run: _Run, data: Mapping[str, Any]) -> None:
    _consecutive_breaker(
        run,
        data,
        count_key="fail_max",
        count_default=5,
        wait_key="reset_timeout",
        wait_default=60.0,
        half_key="success_threshold",
        notes={
            "exclude": "exclusions are code: classify them PERMANENT with a Classifier",
            "listeners": "listeners are code: subscribe to resilience.events",
            "state_storage": "pass store= (MemoryStore, SQLiteStore, RedisStore) in code",
        },
    )


def _circuitbreaker(run: _Run, data: Mapping[str, Any]) -> None:
    _consecutive_breaker(
        run,
        data,
        count_key="failure_threshold",
        count_default=5,
        wait_key="recovery_timeout",
        wait_default=30.0,
        half_key=None,
        notes={
            "expected_exception": "exceptions are code: classify them with a Classifier",
            "fallback_function": "fallbacks are code: resilient(..., fallback=...) or "
            "FallbackChain",
        },
    )


# --- tenacity -------------------------------------------------------------------------------

_Term = tuple[str, list[Any], dict[str, Any]]
_TENACITY_ATTRS = {
    "stop_after_attempt": ("max_attempt_number",),
    "stop_after_delay": ("max_delay",),
    "stop_before_delay": ("max_delay",),
    "wait_fixed": ("wait_fixed",),
    "wait_exponential": ("multiplier", "max", "exp_base", "min"),
    "wait_random_exponential": ("multiplier", "max", "exp_base", "min"),
    "wait_exponential_jitter": ("multiplier", "max", "exp_base", "jitter"),
    "wait_incrementing": ("start", "increment", "max"),
    "wait_random": ("wait_random_min", "wait_random_max"),
}


def _term(value: Any) -> list[_Term]:
    """A tenacity stop/wait (object, expression text or JSON form) as terms; raises _Bad."""
    if isinstance(value, str):
        try:
            node = ast.parse(value.strip(), mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            raise _Bad(f"not a tenacity expression: {value!r:.60}") from None
        return _ast_terms(node)
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise _Bad(f"expected one strategy such as {{'stop_after_attempt': 3}}, got "
                       f"{dict(value)!r:.60}")  # fmt: skip
        ((name, args),) = value.items()
        if isinstance(args, Mapping):
            return [(str(name), [], {str(k): v for k, v in args.items()})]
        if isinstance(args, list | tuple):
            return [(str(name), list(args), {})]
        return [(str(name), [] if args is None else [args], {})]
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise _Bad("ambiguous number: write stop_after_attempt(n) or wait_fixed(s)")
    cls = type(value).__name__.lstrip("_")
    if cls in ("stop_any", "stop_all"):
        out: list[_Term] = []
        for sub in getattr(value, "stops", ()):
            out += _term(sub)
        return [(cls, [out], {})]
    if cls in ("wait_combine", "wait_chain"):
        return [(cls, [], {})]
    if cls in _TENACITY_ATTRS:
        kwargs = {a: getattr(value, a) for a in _TENACITY_ATTRS[cls] if hasattr(value, a)}
        if cls == "wait_exponential_jitter":
            kwargs["initial"] = kwargs.pop("multiplier", 1)
        return [(cls, [], kwargs)]
    if cls in ("stop_never", "wait_none"):
        return [(cls, [], {})]
    raise _Bad(f"not a tenacity strategy this migrator knows: {cls}")


def _ast_terms(node: ast.expr) -> list[_Term]:
    def name_of(n: ast.expr) -> str:
        if isinstance(n, ast.Name):
            return n.id
        if isinstance(n, ast.Attribute):
            return n.attr
        raise _Bad("expected a tenacity function such as stop_after_attempt(3)")

    def literal(n: ast.expr) -> Any:
        try:
            return ast.literal_eval(n)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            raise _Bad(f"arguments must be literal values, got {ast.unparse(n)!r:.60}") from None

    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr | ast.BitAnd):
        kind = "stop_any" if isinstance(node.op, ast.BitOr) else "stop_all"
        return [(kind, [_ast_terms(node.left) + _ast_terms(node.right)], {})]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [("wait_combine", [_ast_terms(node.left) + _ast_terms(node.right)], {})]
    if isinstance(node, ast.Call) and name_of(node.func) in ("wait_chain", "wait_combine"):
        inner: list[_Term] = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):  # wait_chain(*[wait_fixed(3)] * 3 + [...])
                raise _Bad("a chain built with * is not literal")
            inner += _ast_terms(arg)
        return [(name_of(node.func), [inner], {})]
    if isinstance(node, ast.Call):
        kwargs = {str(k.arg): literal(k.value) for k in node.keywords if k.arg}
        return [(name_of(node.func), [literal(a) for a in node.args], kwargs)]
    return [(name_of(node), [], {})]


def _flat_stops(terms: list[_Term]) -> tuple[list[_Term], bool]:
    out: list[_Term] = []
    every = False
    for name, args, kwargs in terms:
        if name in ("stop_any", "stop_all"):
            every = every or name == "stop_all"
            inner, inner_all = _flat_stops(args[0] if args else [])
            out += inner
            every = every or inner_all
        else:
            out.append((name, args, kwargs))
    return out, every


def _arg(args: list[Any], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _tenacity(run: _Run, data: Mapping[str, Any]) -> None:
    s = _kwargs(run, data)
    op = run.op(_op_name(run, s))
    # shorthand: {"stop_after_attempt": 5, "wait_fixed": 1} at the top
    for key in list(s):
        if key.startswith(("stop_", "wait_")):
            value, label = s.pop(key)
            group = "stop" if key.startswith("stop_") else "wait"
            term = {key: value}
            if group in s:
                s[group] = ([*s[group][0], term] if isinstance(s[group][0], list)
                            else [s[group][0], term], s[group][1] + ", " + label)  # fmt: skip
            else:
                s[group] = (term, label)
    attempts: int | None = None
    deadline: float | None = None
    stop_label = ""
    if "stop" in s:
        raw, stop_label = s["stop"]
        items = raw if isinstance(raw, list) else [raw]
        terms: list[_Term] = []
        for item in items:
            got = op.value(stop_label, item, _term)
            terms += got or []
        flat, every = _flat_stops(terms)
        quality = 0.5 if every and len(flat) > 1 else 1.0
        for name, args, kwargs in flat:
            try:
                if name == "stop_after_attempt":
                    attempts = int(_positive(_int(_arg(args, kwargs, 0, "max_attempt_number", 0))))
                elif name in ("stop_after_delay", "stop_before_delay"):
                    deadline = _positive(_seconds(_arg(args, kwargs, 0, "max_delay", None)))
                    if name == "stop_after_delay":  # stop_before_delay is our deadline exactly
                        quality = min(quality, 0.9)
                        op.warn(f"{stop_label}: tenacity's stop_after_delay still sleeps and "
                                "tries once more after a wait that crosses the delay; here no "
                                "wait starts that would cross the deadline")  # fmt: skip
                elif name == "stop_never":
                    pass
                else:
                    op.unmapped(f"{stop_label} ({name})", "no equivalent stop condition here")
                    quality = min(quality, 0.5)
            except _Bad as exc:
                run.problem(f"{stop_label} ({name})", str(exc))
        if terms:
            op.mapped(stop_label, "retry.max_attempts / retry.deadline", quality,
                      "stop_all (&) is read as either limit ending the retries"
                      if quality < 0.9 else "")  # fmt: skip
    if attempts is None:
        where = stop_label or "stop (not set)"
        if deadline is None:
            op.warn(f"{where}: tenacity retries forever; unbounded retries are refused here: "
                    "max_attempts and deadline come from the preset")  # fmt: skip
            op.entries.append(_Entry(where, 0.5, "retry.max_attempts"))
        else:
            attempts = 100
            op.warn(f"{where}: no attempt limit, only a {deadline:g} s deadline: "
                    "max_attempts = 100 within that deadline")  # fmt: skip
    backoff: dict[str, Any] | None = None
    if "wait" in s:
        raw, label = s["wait"]
        items = raw if isinstance(raw, list) else [raw]
        terms = []
        for item in items:
            terms += op.value(label, item, _term) or []
        if len(terms) > 1:
            terms = [("wait_combine", [terms], {})]
        if terms:
            backoff = _tenacity_wait(op, label, terms[0], attempts or 3)
    else:
        op.warn("wait (not set): tenacity does not wait between attempts; a backoff that "
                "never waits is refused here: the preset's backoff applies")  # fmt: skip
    respect = None
    _retry(op, attempts=attempts, backoff=backoff, deadline=deadline, respect_retry_after=respect,
           sources={"max_attempts": [stop_label], "backoff": [s["wait"][1]] if "wait" in s else [],
                    "deadline": [stop_label]})  # fmt: skip
    if attempts is None:
        op.table["retry"].pop("max_attempts", None)
        op.table["retry"].pop("deadline", None)
    if "reraise" in s:
        raw, label = s["reraise"]
        flag = op.value(label, raw, _bool)
        if flag is True:
            op.mapped(label, "(the original error is always re-raised here)")
        elif flag is False:
            op.mapped(
                label,
                "(the original error is always re-raised here)",
                0.9,
                "tenacity raised RetryError; here the last error is re-raised as is",
            )
    used = {"stop", "wait", "reraise", "name"}
    if "name" in s:
        op.mapped(s["name"][1], "operation name")
    for key, (value, label) in s.items():
        if key not in used and value is None:
            op.ignored(label)
            used.add(key)
    _rest(
        op,
        s,
        used,
        ignored={"sleep", "enabled"},
        notes={
            "retry": "retry predicates are code: classify errors with a Classifier",
            "before": "hooks are code: subscribe to resilience.events",
            "after": "hooks are code: subscribe to resilience.events",
            "before_sleep": "hooks are code: subscribe to resilience.events",
            "retry_error_callback": "a callback on exhaustion is a fallback here: "
            "resilient(..., fallback=...)",
            "retry_error_cls": "the last error is re-raised as is here",
        },
    )


def _bounds(term: _Term, n: int) -> tuple[float, float]:
    """(shortest, longest) wait tenacity's `term` gives after the n-th attempt failed."""
    name, args, kwargs = term

    def num(index: int, key: str, default: float) -> float:
        return float(_seconds(_arg(args, kwargs, index, key, default)))

    def power(initial: float, base: float) -> float:
        try:
            return initial * base ** (n - 1)
        except OverflowError:
            return math.inf

    if name == "wait_fixed":
        w = num(0, "wait", _arg(args, kwargs, 0, "wait_fixed", 0.0))
        return w, w
    if name in ("wait_exponential", "wait_random_exponential"):
        mult, cap = num(0, "multiplier", 1.0), float(_cap(_arg(args, kwargs, 1, "max", math.inf)))
        base, low = float(_number(_arg(args, kwargs, 2, "exp_base", 2.0))), num(3, "min", 0.0)
        high = max(max(0.0, low), min(power(mult, base), cap))
        return (low if name == "wait_random_exponential" else high), high
    if name == "wait_exponential_jitter":
        initial, cap = num(0, "initial", 1.0), float(_cap(_arg(args, kwargs, 1, "max", math.inf)))
        base, jitter = float(_number(_arg(args, kwargs, 2, "exp_base", 2.0))), num(3, "jitter", 1.0)
        value = power(initial, base)
        return min(value, cap), min(value + jitter, cap)
    if name == "wait_incrementing":
        start, step = num(0, "start", 0.0), num(1, "increment", 100.0)
        cap = float(_cap(_arg(args, kwargs, 2, "max", math.inf)))
        value = max(0.0, min(start + step * (n - 1), cap))
        return value, value
    if name == "wait_random":
        return num(0, "min", 0.0), num(1, "max", 1.0)
    if name == "wait_none":
        return 0.0, 0.0
    if name == "wait_combine" and args:
        parts = [_bounds(t, n) for t in args[0]]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    if name == "wait_chain" and args and args[0]:
        chain = args[0]
        return _bounds(chain[min(n - 1, len(chain) - 1)], n)
    raise _Bad(f"no equivalent for {name}")


def _fit(op: _Op, label: str, term: _Term, attempts: int) -> dict[str, Any] | None:
    """A chain or sum of waits as the Backoff that gives the same waits for every retry the
    attempts allow (exact when one exists), else the closest one (approximate)."""
    waits = max(min(attempts - 1, 64), 2)
    try:
        bounds = [_bounds(term, n) for n in range(1, waits + 1)]
    except _Bad:
        op.unmapped(f"{label} ({term[0]})", "a combined or chained wait with parts that have "
                    "no equivalent: pick a Backoff kind; the preset's backoff applies")  # fmt: skip
        return None
    random = any(lo != hi for lo, hi in bounds)
    seq = [(lo + hi) / 2 for lo, hi in bounds]
    if any(not math.isfinite(v) for v in seq) or seq[0] < 0:
        op.unmapped(f"{label} ({term[0]})", "waits without a bound have no equivalent here")
        return None
    top = max(seq)

    def same(candidate: list[float]) -> bool:
        return all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(
            candidate, seq, strict=True))  # fmt: skip

    first = seq[0]
    backoff: dict[str, Any]
    step = seq[1] - seq[0]
    ratio = seq[1] / seq[0] if seq[0] > 0 else 0.0
    if same([first] * len(seq)):
        backoff, exact = {"kind": "constant", "delay": first}, True
    elif step >= 0 and same([min(first + step * i, top) for i in range(len(seq))]):
        backoff = {"kind": "linear", "initial": first, "step": step, "maximum": top,
                   "jitter": False}  # fmt: skip
        exact = True
    elif ratio >= 1 and same([min(first * ratio**i, top) for i in range(len(seq))]):
        backoff = {"kind": "exponential", "initial": first, "multiplier": ratio,
                   "maximum": top, "jitter": False}  # fmt: skip
        exact = True
    else:  # the nearest shape: linear from the first wait to the longest
        grow = (top - first) / max(seq.index(top), 1)
        backoff = {"kind": "linear", "initial": first, "step": grow, "maximum": top,
                   "jitter": False}  # fmt: skip
        exact = False
    quality = 1.0 if exact and not random else 0.8 if exact else 0.7
    note = "" if quality == 1.0 else (
        "the waits' mean is kept; their random spread is not" if exact else
        "these waits have no exact equivalent: a linear backoff from the first wait to the "
        "longest")  # fmt: skip
    op.mapped(label, f"retry.backoff ({backoff['kind']})", quality, note)
    return backoff


def _tenacity_wait(op: _Op, label: str, term: _Term, attempts: int) -> dict[str, Any] | None:
    name, args, kwargs = term
    if name in ("wait_combine", "wait_chain"):
        return _fit(op, label, term, attempts)

    def num(index: int, key: str, default: float) -> float:
        return _seconds(_arg(args, kwargs, index, key, default))

    try:
        if name == "wait_fixed":
            delay = num(0, "wait", _arg(args, kwargs, 0, "wait_fixed", 0.0))
            op.mapped(label, "retry.backoff (constant)")
            return {"kind": "constant", "delay": delay}
        if name in ("wait_exponential", "wait_random_exponential"):
            mult = num(0, "multiplier", 1.0)
            cap = _cap(_arg(args, kwargs, 1, "max", math.inf))
            base = _number(_arg(args, kwargs, 2, "exp_base", 2.0)) if "exp_base" in kwargs or \
                len(args) > 2 else 2.0  # fmt: skip
            low = num(3, "min", 0.0)
            initial = max(mult, low)
            if base < 1:
                raise _Bad(f"exp_base must be >= 1, got {base:g}")
            maximum = cap if cap < 1e15 else _backoff_max(initial, base, attempts)
            op.mapped(label, "retry.backoff (exponential)", 1.0 if low <= mult else 0.9,
                      "" if low <= mult else "tenacity holds the first waits at min; here they "
                      "grow from min")  # fmt: skip
            jitter = "full" if name == "wait_random_exponential" else False
            return {"kind": "exponential", "initial": initial, "multiplier": base,
                    "maximum": max(maximum, initial), "jitter": jitter}  # fmt: skip
        if name == "wait_exponential_jitter":
            initial = num(0, "initial", 1.0)
            cap = _cap(_arg(args, kwargs, 1, "max", math.inf))
            base = _number(_arg(args, kwargs, 2, "exp_base", 2.0))
            if base < 1:
                raise _Bad(f"exp_base must be >= 1, got {base:g}")
            maximum = cap if cap < 1e15 else _backoff_max(initial, base, attempts)
            op.mapped(
                label,
                "retry.backoff (exponential)",
                0.9,
                "tenacity adds up to `jitter` seconds to each wait; here 'equal' jitter",
            )
            return {"kind": "exponential", "initial": initial, "multiplier": base,
                    "maximum": max(maximum, initial), "jitter": "equal"}  # fmt: skip
        if name == "wait_incrementing":
            start = num(0, "start", 0.0)
            step = num(1, "increment", 100.0)
            cap = _cap(_arg(args, kwargs, 2, "max", math.inf))
            maximum = cap if cap < 1e15 else start + step * max(attempts - 2, 0)
            op.mapped(label, "retry.backoff (linear)")
            return {"kind": "linear", "initial": start, "step": step,
                    "maximum": max(maximum, start), "jitter": False}  # fmt: skip
        if name == "wait_random":
            low = num(0, "min", _arg(args, kwargs, 0, "wait_random_min", 0.0))
            high = num(1, "max", _arg(args, kwargs, 1, "wait_random_max", 1.0))
            if high < low:
                raise _Bad(f"max ({high:g}) must be >= min ({low:g})")
            exact = low == 0 or low * 2 == high
            op.mapped(
                label,
                "retry.backoff (constant, jittered)",
                1.0 if exact else 0.8,
                "" if exact else "tenacity waits U(min, max); here between max/2 and max",
            )
            return {"kind": "constant", "delay": high, "jitter": "full" if low == 0 else "equal"}
        if name == "wait_none":
            op.mapped(
                label,
                "retry.backoff",
                0.5,
                "a backoff that never waits is refused here: the preset's backoff applies",
            )
            return None
        op.unmapped(f"{label} ({name})", "combined or chained waits have no equivalent: pick a "
                    "Backoff kind; the preset's backoff applies")  # fmt: skip
        return None
    except _Bad as exc:
        op.run.problem(f"{label} ({name})", str(exc))
        return None
