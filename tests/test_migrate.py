"""resilience.migrate: legacy settings -> config that loads, with an honest report."""

from __future__ import annotations

import json
import sys
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pybreaker
import pytest
import tenacity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resilience as rs
from resilience import config, migrate
from resilience.__main__ import main
from resilience.testing import VirtualClock

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
ENVIRONMENTS = ("development", "testing", "staging", "production")


def loads_everywhere(report: migrate.MigrationReport) -> dict[str, config.Config]:
    """The migrated config loads in every environment (what the migrator promises)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for env in ENVIRONMENTS:
            out[env] = config.load(data=report.config, environ={"RESILIENCE_ENV": env})
    return out


def op(report: migrate.MigrationReport, name: str) -> dict[str, Any]:
    table: dict[str, Any] = report.config["operations"][name]
    return table


# --- every fixture -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "fmt"),
    [
        ("application.yml", "resilience4j"),
        ("resilience4j.properties", "resilience4j"),
        ("hystrix.properties", "hystrix"),
        ("appsettings.json", "polly"),
        ("pybreaker.json", "pybreaker"),
        ("circuitbreaker.json", "circuitbreaker"),
        ("tenacity.json", "tenacity"),
        ("legacy.env", "env"),
    ],
)
def test_each_fixture_is_detected_and_loads_everywhere(file: str, fmt: str) -> None:
    report = migrate.migrate(FIXTURES / file)
    assert report.format == fmt
    assert report.source.endswith(file)
    assert report.operations
    assert 0.0 < report.confidence <= 1.0
    for o in report.operations.values():
        assert 0.0 <= o.confidence <= 1.0
        assert o.overrides == op(report, o.name)
    loads_everywhere(report)
    # the same with the format named, and from the text instead of the file
    assert migrate.migrate(FIXTURES / file, format=fmt).config == report.config
    text = (FIXTURES / file).read_text()
    if fmt != "resilience4j" or file.endswith(".properties"):
        assert migrate.migrate(text, format=fmt).config == report.config


# --- resilience4j ------------------------------------------------------------------------------


def test_resilience4j_yaml_units_inheritance_and_report() -> None:
    report = migrate.migrate(FIXTURES / "application.yml")
    inv, pay = op(report, "inventory"), op(report, "payments")
    # configs.default is inherited (and is our [defaults]); the instance's own keys win
    assert inv["breaker"] == {
        "failure_rate_threshold": 0.5,  # 50 (%) from configs.default
        "slow_call_threshold": 2.0,  # 2s
        "slow_call_rate_threshold": 0.8,  # 80 (%)
        "minimum_calls": 20,
        "window": {"kind": "time", "seconds": 60.0},  # TIME_BASED, 60 (seconds)
        "open_duration": 30.0,
        "open_duration_max": False,
        "half_open_calls": 3,
    }
    assert report.config["defaults"]["breaker"]["window"] == {"kind": "count", "size": 50}
    assert pay["breaker"]["failure_rate_threshold"] == 0.25  # kebab-case key
    assert pay["breaker"]["open_duration"] == 60.0  # PT1M
    assert inv["retry"]["backoff"] == {
        "kind": "exponential",
        "initial": 0.2,
        "multiplier": 2.0,
        "maximum": 2.0,
        "jitter": False,
    }
    assert inv["retry"]["max_attempts"] == 4
    assert inv["retry"]["budget"] == {"ratio": 0.2, "min_per_second": 10}  # production needs one
    assert pay["retry"]["backoff"] == {"kind": "constant", "delay": 1.0}  # a bare 1000 is ms
    # the time limiter sits inside the retry (Spring's aspect order): it bounds each attempt
    assert pay["attempt_timeout"] == 3.0
    assert "timeout" not in pay
    assert pay["rate_limit"] == {
        "rate": 10.0,
        "per": 1.0,
        "burst": 10.0,
        "wait": False,
        "max_wait": False,
    }
    assert inv["bulkhead"] == {"max_concurrent": 20, "max_waiting": 0, "max_wait": False}
    # the exception list cannot be expressed: unmapped, with its original key
    key = "resilience4j.circuitbreaker.instances.inventory.recordExceptions"
    assert report.unmapped == [key]
    assert report.operations["inventory"].unmapped == [key]
    assert any("Classifier" in w for w in report.warnings)
    # health indicators and buffer sizes change nothing: ignored, not unmapped
    assert "resilience4j.circuitbreaker.configs.default.registerHealthIndicator" in report.ignored
    assert report.confidence < 1.0
    assert report.operations["inventory"].confidence < report.operations["payments"].confidence


def test_resilience4j_flat_mapping_base_config_and_legacy_names() -> None:
    report = migrate.migrate(
        {
            "resilience4j.circuitbreaker.configs.shared.ringBufferSizeInClosedState": "30",
            "resilience4j.circuitbreaker.configs.shared.waitDurationInOpenState": "5000",
            "resilience4j.circuitbreaker.backends.[orders.v2].baseConfig": "shared",
            "resilience4j.circuitbreaker.backends.[orders.v2].minimumNumberOfCalls": "10",
            "resilience4j.retry.instances.[orders.v2].maxRetryAttempts": "2",
        }
    )
    table = op(report, "orders.v2")
    assert table["breaker"]["window"] == {"kind": "count", "size": 30}
    assert table["breaker"]["open_duration"] == 5.0
    assert table["breaker"]["minimum_calls"] == 10
    assert table["retry"]["max_attempts"] == 2
    loads_everywhere(report)


def test_resilience4j_defaults_fill_what_the_legacy_file_left_out() -> None:
    report = migrate.migrate(
        {"resilience4j": {"circuitbreaker": {"instances": {"a": {"failureRateThreshold": 60}}}}}
    )
    breaker = op(report, "a")["breaker"]
    # resilience4j's own defaults, not our presets: the old behaviour is kept
    assert breaker["minimum_calls"] == 100
    assert breaker["window"] == {"kind": "count", "size": 100}
    assert breaker["open_duration"] == 60.0
    assert breaker["slow_call_threshold"] == 60.0
    assert report.confidence == 1.0
    assert report.unmapped == []
    # sections resilience4j did not have come from the preset
    cfg = loads_everywhere(report)["production"]
    assert cfg.operation("a").retry is not None
    assert cfg.operation("a").breaker.minimum_calls == 100


def test_resilience4j_open_state_backoff_and_randomized_retry_are_approximate() -> None:
    report = migrate.migrate(
        {
            "resilience4j.circuitbreaker.instances.a.waitDurationInOpenState": "10s",
            "resilience4j.circuitbreaker.instances.a.enableExponentialBackoff": "true",
            "resilience4j.circuitbreaker.instances.a.exponentialMaxWaitDurationInOpenState": "2m",
            "resilience4j.retry.instances.a.waitDuration": "100ms",
            "resilience4j.retry.instances.a.enableRandomizedWait": "true",
            "resilience4j.retry.instances.a.randomizedWaitFactor": "0.5",
        }
    )
    table = op(report, "a")
    assert table["breaker"]["open_duration_max"] == 120.0
    assert table["retry"]["backoff"] == {"kind": "constant", "delay": 0.1, "jitter": "equal"}
    assert report.unmapped == []
    assert report.confidence < 1.0  # x1.5 growth and a +-50% spread are not ours exactly
    loads_everywhere(report)


def test_resilience4j_unknown_base_config_and_bad_values_list_every_problem(
    tmp_path: Path,
) -> None:
    path = tmp_path / "application.properties"
    path.write_text(
        "resilience4j.circuitbreaker.instances.a.baseConfig=nope\n"
        "resilience4j.circuitbreaker.instances.a.failureRateThreshold=150\n"
        "resilience4j.circuitbreaker.instances.a.waitDurationInOpenState=soon\n"
        "resilience4j.retry.instances.a.maxAttempts=three\n"
    )
    with pytest.raises(rs.ConfigError) as info:
        migrate.migrate(path)
    locations = [loc for loc, _ in info.value.errors]
    prefix = f"{path}:resilience4j."
    assert sorted(locations) == sorted(
        [
            prefix + "circuitbreaker.instances.a.baseConfig",
            prefix + "circuitbreaker.instances.a.failureRateThreshold",
            prefix + "circuitbreaker.instances.a.waitDurationInOpenState",
            prefix + "retry.instances.a.maxAttempts",
        ]
    )
    assert "150" in str(info.value)
    assert "'soon'" in str(info.value)


def test_resilience4j_thread_pools_rate_limiters_and_both_bulkheads() -> None:
    report = migrate.migrate(
        {
            "resilience4j.bulkhead.instances.a.maxConcurrentCalls": 5,
            "resilience4j.thread-pool-bulkhead.instances.a.maxThreadPoolSize": 8,
            "resilience4j.thread-pool-bulkhead.instances.a.queueCapacity": 20,
            "resilience4j.ratelimiter.instances.b.limitForPeriod": 100,
            "resilience4j.ratelimiter.instances.b.limitRefreshPeriod": "1m",
            "resilience4j.ratelimiter.instances.b.timeoutDuration": "250ms",
            "resilience4j.bulkhead.instances.c.maxConcurrentCalls": 4,
            "resilience4j.bulkhead.instances.c.maxWaitDuration": "100ms",
        }
    )
    # both kinds: the semaphore bulkhead (resilience4j's default type) wins; the pool is dropped
    assert op(report, "a")["bulkhead"] == {"max_concurrent": 5, "max_waiting": 0, "max_wait": False}
    assert report.unmapped == [
        "resilience4j.thread-pool-bulkhead.instances.a.maxThreadPoolSize",
        "resilience4j.thread-pool-bulkhead.instances.a.queueCapacity",
    ]
    assert report.confidence < 0.9
    assert op(report, "b")["rate_limit"] == {
        "rate": 100.0,
        "per": 60.0,
        "burst": 100.0,
        "wait": True,
        "max_wait": 0.25,
    }
    # resilience4j lets any number wait up to maxWaitDuration; here a bounded line
    assert op(report, "c")["bulkhead"] == {"max_concurrent": 4, "max_waiting": 4, "max_wait": 0.1}
    assert report.operations["c"].confidence < 1.0
    loads_everywhere(report)


def test_spring_durations() -> None:
    def open_duration(value: object) -> float:
        report = migrate.migrate(
            {"resilience4j.circuitbreaker.instances.a.waitDurationInOpenState": value}
        )
        return float(op(report, "a")["breaker"]["open_duration"])

    assert open_duration("250ms") == 0.25
    assert open_duration("PT1M30S") == 90.0
    assert open_duration("2h") == 7200.0
    assert open_duration(1500) == 1.5  # a bare number is milliseconds
    assert open_duration("1d") == 86400.0


# --- Hystrix -------------------------------------------------------------------------------------


def test_hystrix_commands_defaults_isolation_and_pools() -> None:
    report = migrate.migrate(FIXTURES / "hystrix.properties")
    get_user, search = op(report, "GetUser"), op(report, "SearchUsers")
    assert get_user["timeout"] == 2.0  # hystrix.command.default, in ms
    assert get_user["breaker"] == {
        "failure_rate_threshold": 0.4,
        "slow_call_threshold": False,
        "slow_call_rate_threshold": 1.0,
        "minimum_calls": 20,
        "window": {"kind": "time", "seconds": 20.0, "buckets": 20},
        "open_duration": 10.0,
        "open_duration_max": False,
        "half_open_calls": 1,  # Hystrix lets one trial call through
    }
    # THREAD isolation: the pool of the same name is the bulkhead; its queue is bounded by
    # the smaller of maxQueueSize and queueSizeRejectionThreshold
    assert get_user["bulkhead"] == {"max_concurrent": 30, "max_waiting": 50, "max_wait": False}
    assert search["bulkhead"] == {"max_concurrent": 50, "max_waiting": 0, "max_wait": False}
    assert search["breaker"]["open_duration"] == 5.0  # Hystrix's default sleep window
    assert report.config["defaults"]["timeout"] == 2.0
    assert report.unmapped == []
    # Hystrix counts timeouts and rejections as errors: said, and not called exact
    assert report.operations["GetUser"].confidence < 1.0
    assert report.operations["SearchUsers"].confidence == 1.0
    cfg = loads_everywhere(report)["production"]
    assert cfg.operation("anything").timeout.seconds == 2.0  # [defaults] for undeclared ones


def test_hystrix_disabled_breaker_and_timeout_forced_state_and_collapser() -> None:
    report = migrate.migrate(
        {
            "hystrix": {
                "command": {
                    "Ping": {
                        "circuitBreaker": {"enabled": False, "forceOpen": True},
                        "execution": {"timeout": {"enabled": "false"}},
                    }
                },
                "collapser": {"Batch": {"maxRequestsInBatch": 100}},
            }
        }
    )
    ping = op(report, "Ping")
    assert ping["breaker"] is False
    assert ping["timeout"] is False
    assert sorted(report.unmapped) == [
        "hystrix.collapser.Batch.maxRequestsInBatch",
        "hystrix.command.Ping.circuitBreaker.forceOpen",
    ]
    assert any("force_open()" in w for w in report.warnings)
    loads_everywhere(report)


# --- Polly -------------------------------------------------------------------------------------


def test_polly_standard_handler_options() -> None:
    report = migrate.migrate(FIXTURES / "appsettings.json")
    catalog = op(report, "Resilience.catalog")  # named by its path in the file
    assert catalog["timeout"] == 20.0
    assert catalog["attempt_timeout"] == 10.0  # the standard handler's default
    assert catalog["retry"]["max_attempts"] == 5  # MaxRetryAttempts 4 + the first call
    assert catalog["retry"]["backoff"] == {
        "kind": "exponential",
        "initial": 0.5,
        "multiplier": 2.0,
        "maximum": 5.0,
        "jitter": False,
    }
    assert catalog["breaker"]["failure_rate_threshold"] == 0.2
    assert catalog["breaker"]["window"] == {"kind": "time", "seconds": 30.0}
    assert catalog["breaker"]["open_duration"] == 15.0
    assert catalog["bulkhead"] == {"max_concurrent": 200, "max_waiting": 10, "max_wait": False}
    assert report.confidence == 1.0


def test_polly_defaults_timespans_and_what_has_no_equivalent() -> None:
    report = migrate.migrate(
        {
            "Retry": {"Delay": "00:00:01", "ShouldRetryAfterHeader": False},
            "CircuitBreaker": {"BreakDuration": "1.00:00:00"},
            "AttemptTimeout": {"Timeout": "00:00:02"},
            "Hedging": {"MaxHedgedAttempts": 2},
        },
        name="search",
    )
    table = op(report, "search")
    # the standard handler's defaults: 3 retries, exponential with jitter
    assert table["retry"]["max_attempts"] == 4
    assert table["retry"]["backoff"]["kind"] == "exponential"
    assert table["retry"]["backoff"]["jitter"] == "full"
    assert table["retry"]["respect_retry_after"] is False
    assert table["breaker"]["open_duration"] == 86400.0
    assert table["breaker"]["failure_rate_threshold"] == 0.1
    assert table["attempt_timeout"] == 2.0  # per attempt, inside the retry
    assert report.unmapped == ["Hedging"]
    assert report.confidence < 0.9  # something was dropped
    loads_everywhere(report)


def test_polly_values_we_refuse_are_left_to_the_preset_with_a_warning() -> None:
    # FailureRatio 0 is valid in Polly (open on any failure); our threshold is in (0, 1]
    report = migrate.migrate({"CircuitBreaker": {"FailureRatio": 0}}, format="polly")
    breaker = op(report, "default")["breaker"]
    assert "failure_rate_threshold" not in breaker
    assert any("failure_rate_threshold" in w and "preset" in w for w in report.warnings)
    assert report.confidence < 1.0
    loads_everywhere(report)


def test_polly_out_of_range_values_are_errors() -> None:
    with pytest.raises(rs.ConfigError) as info:
        migrate.migrate(
            {"p": {"CircuitBreaker": {"FailureRatio": 1.5, "BreakDuration": "00:00:00.100"}}},
            format="polly",
        )
    assert sorted(loc for loc, _ in info.value.errors) == [
        "<mapping>:p.CircuitBreaker.BreakDuration",
        "<mapping>:p.CircuitBreaker.FailureRatio",
    ]


# --- pybreaker, circuitbreaker -----------------------------------------------------------------


def test_pybreaker_mapping_opens_exactly_when_pybreaker_does() -> None:
    kwargs = {"fail_max": 3, "reset_timeout": 30}
    report = migrate.migrate(kwargs, name="db")
    assert report.format == "pybreaker"
    assert report.confidence == 1.0
    cfg = loads_everywhere(report)["production"]
    ours = cfg.operation("db").breaker.build("db", clock=VirtualClock())
    theirs = pybreaker.CircuitBreaker(**kwargs)

    def fail() -> None:
        raise ConnectionError("down")

    def ok() -> str:
        return "ok"

    # the same sequence of outcomes through both: they open at the same call
    for fn in (fail, fail, ok, fail, fail, fail, ok):
        for breaker, opened in (
            (ours, rs.CircuitOpenError),
            (theirs, pybreaker.CircuitBreakerError),
        ):
            try:
                breaker.call(fn)
            except (ConnectionError, opened):
                pass
        assert (str(ours.state).lower().endswith("open")) == (theirs.current_state == "open"), fn
    assert theirs.current_state == "open"


def test_pybreaker_objects_timedelta_and_unmapped_code() -> None:
    import datetime

    report = migrate.migrate(
        {
            "fail_max": 4,
            "reset_timeout": datetime.timedelta(minutes=2),
            "exclude": [ValueError],
            "listeners": [pybreaker.CircuitBreakerListener()],
        },
        format="pybreaker",
    )
    assert op(report, "default")["breaker"]["open_duration"] == 120.0
    assert report.unmapped == ["exclude", "listeners"]
    assert report.confidence == pytest.approx(2 / 4)


def test_circuitbreaker_kwargs_including_class_attribute_names() -> None:
    report = migrate.migrate(
        {"FAILURE_THRESHOLD": 2, "RECOVERY_TIMEOUT": 10, "FALLBACK_FUNCTION": "cached"},
        format="circuitbreaker",
        name="geo",
    )
    breaker = op(report, "geo")["breaker"]
    assert breaker["minimum_calls"] == 2
    assert breaker["window"] == {"kind": "count", "size": 2}
    assert breaker["open_duration"] == 10.0
    assert report.unmapped == ["FALLBACK_FUNCTION"]


# --- tenacity --------------------------------------------------------------------------------


def test_tenacity_objects_map_to_the_same_waits() -> None:
    report = migrate.migrate(
        {
            "stop": tenacity.stop_after_attempt(5) | tenacity.stop_before_delay(20),
            "wait": tenacity.wait_exponential(multiplier=0.5, max=4),
            "reraise": True,
        },
        name="llm",
    )
    retry = op(report, "llm")["retry"]
    assert retry["max_attempts"] == 5
    assert retry["deadline"] == 20.0
    assert retry["backoff"] == {
        "kind": "exponential",
        "initial": 0.5,
        "multiplier": 2.0,
        "maximum": 4.0,
        "jitter": False,
    }
    assert report.confidence == 1.0
    # the waits our Backoff gives are tenacity's
    backoff = rs.Backoff.from_dict({**retry["backoff"], "jitter": None})  # false: none
    waiter = tenacity.wait_exponential(multiplier=0.5, max=4)

    class State:
        def __init__(self, n: int) -> None:
            self.attempt_number = n

    for n in range(1, 6):
        assert backoff.base(n) == waiter(State(n))  # type: ignore[arg-type]


def test_tenacity_text_forms_and_shorthand() -> None:
    text = migrate.migrate(
        {
            "stop": "tenacity.stop_after_attempt(3)",
            "wait": "wait_incrementing(start=1, increment=2)",
        }
    )
    assert op(text, "default")["retry"]["backoff"] == {
        "kind": "linear",
        "initial": 1.0,
        "step": 2.0,
        "maximum": 3.0,
        "jitter": False,
    }
    short = migrate.migrate({"stop_after_attempt": 2, "wait_fixed": 0.5}, format="tenacity")
    assert op(short, "default")["retry"]["max_attempts"] == 2
    assert op(short, "default")["retry"]["backoff"] == {"kind": "constant", "delay": 0.5}


def test_tenacity_unbounded_or_never_waiting_retries_are_left_to_the_preset() -> None:
    report = migrate.migrate({"retry": "retry_if_exception_type(IOError)"}, format="tenacity")
    retry = op(report, "default")["retry"]
    assert "max_attempts" not in retry
    assert "backoff" not in retry
    assert any("retries forever" in w for w in report.warnings)
    assert any("never waits" in w for w in report.warnings)
    assert report.unmapped == ["retry"]
    cfg = loads_everywhere(report)["production"]
    assert cfg.operation("default").retry.max_attempts == 3  # the preset's


def test_tenacity_approximations_lower_the_confidence() -> None:
    report = migrate.migrate(
        {
            "stop": tenacity.stop_after_attempt(3) & tenacity.stop_after_delay(5),
            "wait": tenacity.wait_random(1, 3),
        }
    )
    retry = op(report, "default")["retry"]
    assert retry["max_attempts"] == 3
    assert retry["deadline"] == 5.0
    assert retry["backoff"] == {"kind": "constant", "delay": 3.0, "jitter": "equal"}
    assert report.confidence < 1.0
    combined = migrate.migrate(
        {"stop": tenacity.stop_after_attempt(3), "wait": "wait_fixed(1) + wait_random(0, 1)"}
    )
    # a sum of waits: its mean (1.5 s) kept, the random spread is not
    assert combined.unmapped == []
    assert op(combined, "default")["retry"]["backoff"] == {"kind": "constant", "delay": 1.5}
    assert combined.confidence < 1.0
    loads_everywhere(combined)


def test_polly_clamping_lowers_only_the_clamped_setting() -> None:
    report = migrate.migrate(
        {"Retry": {"BackoffType": "Linear", "Delay": "00:00:00.2", "MaxRetryAttempts": 10}},
        name="x",
    )
    retry = op(report, "x")["retry"]
    assert retry["max_attempts"] == 5  # 11 attempts, no deadline: clamped
    assert retry["backoff"] == {
        "kind": "linear",
        "initial": 0.2,
        "step": 0.2,
        "maximum": 2.0,
        "jitter": "equal",
    }
    assert report.confidence == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-3)


def test_many_attempts_without_a_deadline_are_clamped() -> None:
    report = migrate.migrate({"stop": tenacity.stop_after_attempt(50), "wait": "wait_fixed(1)"})
    retry = op(report, "default")["retry"]
    assert retry["max_attempts"] == 5
    assert any("clamped" in w for w in report.warnings)
    assert report.confidence < 1.0
    loads_everywhere(report)


def test_tenacity_bad_expressions_are_config_errors() -> None:
    with pytest.raises(rs.ConfigError) as info:
        migrate.migrate({"stop": "stop_after_attempt(", "wait": "wait_fixed(x)"}, format="tenacity")
    assert [loc for loc, _ in info.value.errors] == ["<mapping>:stop", "<mapping>:wait"]


# --- env -----------------------------------------------------------------------------------------


def test_env_file_reads_spring_variables_and_named_settings() -> None:
    report = migrate.migrate(FIXTURES / "legacy.env")
    assert op(report, "inventory")["breaker"]["failure_rate_threshold"] == 0.3
    assert op(report, "inventory")["breaker"]["open_duration"] == 20.0
    search = op(report, "search")
    assert search["timeout"] == 1.5  # _MS
    assert search["retry"]["max_attempts"] == 3  # 2 retries + the first attempt
    assert op(report, "payments")["bulkhead"]["max_concurrent"] == 20
    # names are guesses: said, and not called exact
    assert report.operations["search"].confidence < 1.0
    assert report.operations["inventory"].confidence == 1.0


def test_env_names_skip_the_words_between_operation_and_setting() -> None:
    report = migrate.migrate(
        "PAYMENTS_RETRY_MAX_ATTEMPTS=4\nPAYMENTS_CIRCUIT_BREAKER_RESET_TIMEOUT=30\n"
        "PAYMENTS_REQUEST_TIMEOUT=PT5S\n",
        format="env",
    )
    assert list(report.operations) == ["payments"]
    table = op(report, "payments")
    assert table["retry"]["max_attempts"] == 4
    assert table["breaker"]["open_duration"] == 30.0
    assert table["timeout"] == 5.0


def test_env_mapping_and_unknown_variables() -> None:
    report = migrate.migrate(
        {"HYSTRIX_COMMAND_GETUSER_CIRCUITBREAKER_SLEEPWINDOWINMILLISECONDS": "8000", "HOME": "/"},
        format="env",
    )
    assert op(report, "getuser")["breaker"]["open_duration"] == 8.0
    assert report.unmapped == ["HOME"]


# --- the report, TOML, options ------------------------------------------------------------------


@pytest.mark.parametrize(
    "file",
    sorted(
        str(p.relative_to(FIXTURES))
        for p in FIXTURES.rglob("*")
        if (p.is_file() and p.suffix != ".py") or p.name == "python"
    ),
)
def test_to_toml_round_trips_and_loads(file: str, tmp_path: Path) -> None:
    report = migrate.migrate(FIXTURES / file)
    text = report.to_toml()
    assert tomllib.loads(text) == report.config
    path = tmp_path / "resilience.toml"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config.load(path, environ={"RESILIENCE_ENV": "production"})
    try:
        import tomli_w
    except ImportError:  # pragma: no cover
        return
    assert tomllib.loads(tomli_w.dumps(report.config)) == tomllib.loads(text)


def test_odd_operation_names_are_quoted_in_toml() -> None:
    report = migrate.migrate({"fail_max": 2}, name='we"ird name.ü')
    assert list(tomllib.loads(report.to_toml())["operations"]) == ['we"ird name.ü']


def test_preset_and_unset_off() -> None:
    report = migrate.migrate({"fail_max": 2}, name="db", preset="critical", unset="off")
    table = op(report, "db")
    assert table["preset"] == "critical"
    assert report.operations["db"].preset == "critical"
    assert table["retry"] is False
    assert table["timeout"] is False
    assert table["bulkhead"] is False
    policy = loads_everywhere(report)["production"].operation("db")
    assert policy.preset == "critical"
    assert policy.retry is None
    assert policy.breaker is not None


def test_bad_arguments() -> None:
    for kwargs in ({"format": "yaml"}, {"preset": "nope"}, {"unset": "maybe"}, {"name": ""}):
        with pytest.raises(rs.ConfigError):
            migrate.migrate({"fail_max": 2}, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match="cannot tell the legacy format"):
        migrate.migrate({"something": 1})
    with pytest.raises(rs.ConfigError, match="file not found"):
        migrate.migrate(Path("missing.yml"))
    with pytest.raises(rs.ConfigError, match="not valid JSON"):
        migrate.migrate("{oops", format="polly")
    with pytest.raises(rs.ConfigError):
        migrate.migrate(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        {"fail_max": 10**400},
        {"fail_max": 10**5000},
        {"fail_max": float("nan")},
        {"fail_max": object()},
        {"stop": "stop_after_attempt(" + "(" * 200 + ")" * 200 + ")"},
        {"stop": object()},
        {1: object()},
        {"Retry": {"Delay": object()}},
    ],
)
def test_hostile_values_are_config_errors_or_valid_reports(data: dict[Any, Any]) -> None:
    for fmt in ("auto", *migrate.FORMATS):
        report = report_or_errors(data, fmt)
        if report is not None:
            loads_everywhere(report)


def test_yaml_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(rs.ConfigError, match=r"PyYAML.*\[yaml\]"):
        migrate.migrate(FIXTURES / "application.yml")


def test_properties_without_javaproperties_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    with_lib = migrate.migrate(FIXTURES / "hystrix.properties")
    monkeypatch.setitem(sys.modules, "javaproperties", None)
    without = migrate.migrate(FIXTURES / "hystrix.properties")
    assert without.config == with_lib.config
    assert without.unmapped == with_lib.unmapped
    text = "a.b = 1\nresilience4j.retry.instances.x.maxAttempts : 2\nc=long \\\n  value\n"
    assert op(migrate.migrate(text, format="resilience4j"), "x")["retry"]["max_attempts"] == 2


# --- command line ------------------------------------------------------------------------------


def test_cli_prints_toml_and_writes_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", str(FIXTURES / "pybreaker.json")]) == 0
    out, err = capsys.readouterr()
    assert tomllib.loads(out)["operations"]["payments-db"]["breaker"]["minimum_calls"] == 5
    assert "confidence: 1.00" in err
    target = tmp_path / "resilience.toml"
    assert main(["migrate", str(FIXTURES / "hystrix.properties"), "-o", str(target)]) == 0
    out, _ = capsys.readouterr()
    assert "format: hystrix" in out
    config.load(target, environ={"RESILIENCE_ENV": "production"})


def test_cli_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", str(FIXTURES / "pybreaker.json"), "--check"]) == 0
    assert main(["migrate", str(FIXTURES / "application.yml"), "--check"]) == 1
    out, _ = capsys.readouterr()
    assert "unmapped: resilience4j.circuitbreaker.instances.inventory.recordExceptions" in out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fail_max": "many"}))
    assert main(["migrate", str(bad), "--format", "pybreaker"]) == 2
    assert f"{bad}:fail_max" in capsys.readouterr().err


# --- fuzz: a report or a ConfigError, and a report's config always loads ------------------------

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["10s", "PT5S", "00:00:30", "50", "0", "-1", "TIME_BASED", "SEMAPHORE"]),
)
_keys = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        [
            "fail_max",
            "reset_timeout",
            "success_threshold",
            "failure_threshold",
            "recovery_timeout",
            "stop",
            "wait",
            "reraise",
            "Retry",
            "CircuitBreaker",
            "FailureRatio",
            "MaxRetryAttempts",
            "Delay",
            "Timeout",
            "TotalRequestTimeout",
            "resilience4j.circuitbreaker.instances.a.failureRateThreshold",
            "resilience4j.retry.instances.a.maxAttempts",
            "resilience4j.retry.instances.a.waitDuration",
            "resilience4j.bulkhead.instances.a.maxConcurrentCalls",
            "hystrix.command.x.circuitBreaker.errorThresholdPercentage",
            "hystrix.command.default.execution.isolation.strategy",
            "hystrix.threadpool.x.coreSize",
            "X_TIMEOUT_MS",
            "X_MAX_RETRIES",
        ]
    ),
)
_tree = st.recursive(_leaf, lambda inner: st.dictionaries(_keys, inner, max_size=4), max_leaves=12)


def report_or_errors(source: Any, fmt: str) -> migrate.MigrationReport | None:
    """The report, or None after checking the ConfigError lists located problems."""
    errors: list[tuple[str, str]] = []
    try:
        return migrate.migrate(source, format=fmt)
    except rs.ConfigError as exc:
        errors = exc.errors
    assert errors
    assert all("please report" not in m for _, m in errors), errors  # no unforeseen crash
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.dictionaries(_keys, _tree, max_size=6),
    fmt=st.sampled_from(["auto", *migrate.FORMATS]),
)
def test_fuzz_mappings(data: dict[str, Any], fmt: str) -> None:
    report = report_or_errors(data, fmt)
    if report is None:
        return
    assert 0.0 <= report.confidence <= 1.0
    loads_everywhere(report)
    assert tomllib.loads(report.to_toml()) == report.config


@settings(max_examples=100, deadline=None)
@given(
    text=st.text(max_size=200),
    fmt=st.sampled_from(["auto", *migrate.FORMATS]),
)
def test_fuzz_text(text: str, fmt: str) -> None:
    report = report_or_errors(text + "\n", fmt)
    if report is None:
        return
    loads_everywhere(report)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.tuples(_keys, _leaf.map(str)), max_size=8),
    fmt=st.sampled_from(["auto", "resilience4j", "hystrix", "env"]),
)
def test_fuzz_key_value_files(
    lines: list[tuple[str, str]], fmt: str, tmp_path_factory: Any
) -> None:
    path = tmp_path_factory.mktemp("legacy") / "legacy.properties"
    text = "\n".join(f"{k.replace(chr(10), ' ')}={v.replace(chr(10), ' ')}" for k, v in lines)
    path.write_text(text + "\n", encoding="utf-8", errors="surrogatepass")
    report = report_or_errors(path, fmt)
    if report is None:
        return
    loads_everywhere(report)
    assert tomllib.loads(report.to_toml()) == report.config


def test_docstring_examples_run() -> None:
    import doctest
    import importlib

    for module in (
        migrate,
        *(
            importlib.import_module(f"resilience.migrate.{m}")
            for m in ("_report", "_core", "_rewrite")
        ),
    ):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0
        assert result.failed == 0
