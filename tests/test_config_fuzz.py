"""Property tests: the models and the policies agree on bounds; loading never crashes."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resilience as rs
from resilience import config
from resilience.config import ConfigError, load
from resilience.config import _models as m

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=200),
    # large, but buildable: Bulkhead preallocates max_concurrent slots
    st.integers(min_value=-(10**9), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1, max_value=100),
    st.sampled_from(["full", "equal", "count", "time", "exponential", "", "x", "limited"]),
)


def _kwargs(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(names), SCALARS, max_size=len(names))


def _accepts(model: type[m._Section], data: dict[str, Any]) -> bool:
    from pydantic import ValidationError

    try:
        model.model_validate(data)
    except ValidationError:  # anything else fails the test
        return False
    return True


def _policy_accepts(build: Any, data: dict[str, Any]) -> bool:
    try:
        build(**data)
    except ConfigError:
        return False
    return True


# Each case: the model, its scalar settings, and how the policy itself is built from them
# (the constructor, which calls the policy's own validate). `false` means None in a file.
def _none_for_false(model: type[m._Section], data: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if v is False and k in model._nullable else v) for k, v in data.items()}


CASES: list[tuple[type[m._Section], list[str], Any]] = [
    (m.TimeoutSettings, ["seconds", "max_workers"], lambda **k: rs.Timeout(**k)),
    (
        m.RetrySettings,
        ["max_attempts", "deadline", "respect_retry_after", "max_retry_after"],
        lambda **k: rs.Retry(**k),
    ),
    (m.BudgetSettings, ["ratio", "min_per_second", "ttl"], lambda **k: rs.RetryBudget(**k)),
    (
        m.BreakerSettings,
        [
            "failure_rate_threshold",
            "slow_call_threshold",
            "slow_call_rate_threshold",
            "minimum_calls",
            "open_duration",
            "open_duration_max",
            "half_open_calls",
        ],
        lambda **k: rs.CircuitBreaker("fuzz", **k),
    ),
    (
        m.BulkheadSettings,
        ["max_concurrent", "max_waiting", "max_wait"],
        lambda **k: rs.Bulkhead(**k),
    ),
    (
        m.ChaosSettings,
        ["error_rate", "latency", "latency_rate", "seed"],
        lambda **k: rs.FaultInjection(**k),
    ),
    (
        m.RateLimitSettings,
        ["rate", "per", "burst", "wait", "max_wait"],
        lambda **k: rs.RateLimiter(**k),
    ),
]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_models_and_policies_agree_on_random_inputs(data: st.DataObject) -> None:
    model, names, build = data.draw(st.sampled_from(CASES))
    kwargs = data.draw(_kwargs(names))
    if model is m.TimeoutSettings and "seconds" not in kwargs:
        kwargs["seconds"] = data.draw(SCALARS)  # Timeout has no default for it
    accepted = _accepts(model, kwargs)
    assert accepted == _policy_accepts(build, _none_for_false(model, kwargs)), kwargs
    if accepted:  # what the model accepts, the model also builds
        assert model.model_validate(kwargs).arguments().keys() == kwargs.keys()


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["constant", "linear", "exponential", "decorrelated"]),
    values=st.dictionaries(
        st.sampled_from(["delay", "initial", "step", "multiplier", "maximum", "jitter"]),
        SCALARS,
    ),
)
def test_backoff_model_agrees_with_backoff_from_dict(kind: str, values: dict[str, Any]) -> None:
    table = {"kind": kind, **values}
    accepted = _accepts(m.BackoffSettings, table)
    try:
        rs.Backoff.from_dict(_none_for_false(m.BackoffSettings, table))
        built = True
    except (ConfigError, TypeError):  # TypeError: a key the kind does not take / a missing one
        built = False
    assert accepted == built, table
    if accepted:
        m.BackoffSettings.model_validate(table).build_argument()


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["count", "time"]),
    values=st.dictionaries(st.sampled_from(["size", "seconds", "buckets"]), SCALARS),
)
def test_window_model_agrees_with_the_windows(kind: str, values: dict[str, Any]) -> None:
    table = {"kind": kind, **values}
    accepted = _accepts(m.WindowSettings, table)
    try:
        (rs.CountWindow if kind == "count" else rs.TimeWindow)(**values)
        built = True
    except (ConfigError, TypeError):
        built = False
    assert accepted == built, table


# --- random documents: success or ConfigError, nothing else --------------------------------

KEYS = st.sampled_from(
    [
        "environment", "defaults", "operations", "preset", "timeout", "retry", "breaker",
        "bulkhead", "rate_limit", "fallback", "max_attempts", "deadline", "backoff", "kind",
        "initial", "maximum", "delay", "window", "size", "seconds", "budget", "ratio",
        "stale_cache", "default", "level", "allow_retry_storm", "llm.generate", "x",
    ]
)  # fmt: skip
TOML_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["production", "prod", "critical", "exponential", "count", "full"]),
)
TREES = st.recursive(
    TOML_SCALARS,
    lambda children: st.dictionaries(KEYS | st.text(max_size=5), children, max_size=6),
    max_leaves=30,
)


def _load_quietly(**kw: Any) -> None:
    try:
        cfg = load(**kw)
    except ConfigError:
        return
    for name in cfg.operations:
        cfg.explain(name)
        cfg.operation(name).policies(name)  # what validated also builds
    cfg.to_dict()


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(KEYS, TREES, max_size=5))
def test_random_dicts_load_or_raise_config_error(doc: dict[str, Any]) -> None:
    _load_quietly(data=doc, environ={})


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.dictionaries(
        st.sampled_from(["llm.generate", "pay", "a-b"]),
        st.dictionaries(KEYS, TREES, max_size=4),
        max_size=3,
    ),
    environment=st.sampled_from(["production", "testing", "dev", "moon", ""]),
)
def test_random_toml_files_load_or_raise_config_error(
    ops: dict[str, Any], environment: str
) -> None:
    doc: dict[str, Any] = {"operations": ops}
    if environment:
        doc["environment"] = environment
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):  # values TOML cannot hold (nan is fine, None is not)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resilience.toml"
        path.write_text(text)
        _load_quietly(path=path, environ={})


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200))
def test_random_file_text_loads_or_raises_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".toml", ".json", ".yaml"):
            path = Path(tmp) / f"resilience{suffix}"
            path.write_text(text)
            _load_quietly(path=path, environ={})


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    env=st.dictionaries(
        st.sampled_from(
            [
                "RESILIENCE_ENV",
                "APP_ENV",
                "RESILIENCE__OPERATIONS__LLM_GENERATE__RETRY__MAX_ATTEMPTS",
                "RESILIENCE__OPERATIONS__LLM_GENERATE__RETRY",
                "RESILIENCE__OPERATIONS__X__BREAKER__WINDOW",
                "RESILIENCE__DEFAULTS__TIMEOUT",
                "RESILIENCE__DEFAULTS",
                "RESILIENCE__OPERATIONS____",
                "RESILIENCE__",
            ]
        ),
        st.one_of(st.text(max_size=30), st.sampled_from(["3", "0", "false", "nan", "1e999", "{}"])),
    )
)
def test_random_environment_variables_load_or_raise_config_error(env: dict[str, str]) -> None:
    _load_quietly(data={"operations": {"llm.generate": {}}}, environ=env)


def test_nan_and_huge_numbers_are_config_errors() -> None:
    for bad in (math.nan, math.inf, 10**400, -(10**400)):
        with pytest.raises(ConfigError) as info:
            load(data={"operations": {"x": {"retry": {"deadline": bad}}}}, environ={})
        assert info.value.errors[0][0] == "operations.x.retry.deadline"


def test_every_model_field_is_a_policy_argument() -> None:
    import inspect

    for model, _, build in CASES:
        del build
        policy = {
            m.TimeoutSettings: rs.Timeout,
            m.RetrySettings: rs.Retry,
            m.BudgetSettings: rs.RetryBudget,
            m.BreakerSettings: rs.CircuitBreaker,
            m.BulkheadSettings: rs.Bulkhead,
            m.RateLimitSettings: rs.RateLimiter,
            m.ChaosSettings: rs.FaultInjection,
        }[model]
        params = set(inspect.signature(policy).parameters)
        assert set(model.model_fields) - model._config_only <= params, model
    assert isinstance(config.PRESETS, dict)
