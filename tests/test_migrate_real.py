"""resilience.migrate on what real projects have: appsettings.json as .NET reads it, Spring
profiles and overlays, resilience4j's older names, and retry/breaker settings in Python code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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
from resilience.testing import VirtualClock

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
ENVIRONMENTS = ("development", "testing", "staging", "production")


def loads_everywhere(report: migrate.MigrationReport) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for env in ENVIRONMENTS:
            config.load(data=report.config, environ={"RESILIENCE_ENV": env})


def op(report: migrate.MigrationReport, name: str) -> dict[str, Any]:
    table: dict[str, Any] = report.config["operations"][name]
    return table


def honest(report: migrate.MigrationReport) -> None:
    """What every report promises: it loads, and nothing dropped hides behind a high score."""
    loads_everywhere(report)
    if report.unmapped or any(o.dynamic for o in report.operations.values()):
        assert report.confidence < 0.9
    for o in report.operations.values():
        if o.unmapped or o.dynamic:
            assert o.confidence < 0.9


# --- .NET ---------------------------------------------------------------------------------------


def test_appsettings_with_bom_comments_trailing_commas_and_own_section_names() -> None:
    report = migrate.migrate(FIXTURES / "dotnet" / "appsettings.json")
    assert report.format == "polly"
    # every section is its own operation, named by its path: nothing merges
    assert sorted(report.operations) == [
        "HttpClientPolicies",
        "HttpClients.CatalogApi.Resilience",
        "HttpClients.PaymentsApi.Resilience",
        "ResiliencePolicies.Inventory",
    ]
    v7 = op(report, "HttpClientPolicies")
    assert v7["retry"]["max_attempts"] == 4  # RetryCount 3 + the first call
    assert v7["retry"]["backoff"] == {"kind": "constant", "delay": 0.5}  # RetryDelayInMs
    # ExceptionsAllowedBeforeBreaking N: exactly N consecutive failures
    assert v7["breaker"]["window"] == {"kind": "count", "size": 5}
    assert v7["breaker"]["minimum_calls"] == 5
    assert v7["breaker"]["failure_rate_threshold"] == 1.0
    assert v7["breaker"]["open_duration"] == 30.0  # "00:00:30"
    assert v7["timeout"] == 10.0  # TimeoutInSeconds
    catalog = op(report, "HttpClients.CatalogApi.Resilience")
    payments = op(report, "HttpClients.PaymentsApi.Resilience")
    assert catalog["timeout"] == 20.0
    assert payments["timeout"] == 60.0
    assert catalog["attempt_timeout"] == 5.0  # AttemptTimeout
    assert payments["attempt_timeout"] == 10.0  # the standard handler's default
    assert catalog["retry"]["max_attempts"] == 5
    assert payments["retry"]["max_attempts"] == 2
    assert catalog["breaker"]["failure_rate_threshold"] == 0.2
    assert payments["breaker"]["failure_rate_threshold"] == 0.1  # Polly's default
    inventory = op(report, "ResiliencePolicies.Inventory")
    assert inventory["breaker"]["window"] == {"kind": "count", "size": 2}
    assert inventory["breaker"]["open_duration"] == 45.0  # BreakDurationInSeconds
    # Polly v8's own names are exact; a project's own names are read by what they say
    assert report.operations["HttpClients.CatalogApi.Resilience"].confidence == 1.0
    assert 0.5 < report.operations["HttpClientPolicies"].confidence < 1.0
    # secrets and unrelated sections are not ours: never read, never echoed
    assert "secret" not in report.to_toml() + report.summary()
    honest(report)


def test_polly_vocabulary_anywhere_in_the_tree_and_in_text() -> None:
    text = """{
      "Polly": {
        "Retry": { "RetryCount": 2, "SleepDurationInSeconds": 3, },
        "CircuitBreaker": { "ExceptionsAllowedBeforeBreaking": 4, "DurationOfBreakInSeconds": 20 },
        "Timeout": { "TimeoutInMilliseconds": 1500 },
      },
      "Smtp": { "Host": "mail", "Timeout": 30 },  // one generic name alone: not a policy
    }"""
    report = migrate.migrate(text)
    assert list(report.operations) == ["Polly"]
    polly = op(report, "Polly")
    assert polly["retry"]["max_attempts"] == 3
    assert polly["retry"]["backoff"] == {"kind": "constant", "delay": 3.0}
    assert polly["breaker"]["minimum_calls"] == 4
    assert polly["breaker"]["open_duration"] == 20.0
    assert polly["timeout"] == 1.5
    honest(report)


def test_dotnet_refuses_what_dotnet_refuses_and_a_missing_json5_is_explained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(migrate.MigrationError, match="duplicate key"):
        migrate.migrate('{"Retry": {"MaxRetryAttempts": 1}, "retry": {}}', format="polly")
    with pytest.raises(migrate.MigrationError, match="no Polly"):
        migrate.migrate('{"Logging": {"LogLevel": {"Default": "Information"}}}', format="polly")
    monkeypatch.setitem(sys.modules, "json5", None)
    with pytest.raises(rs.ConfigError, match=r"json5.*\[migrate\]"):
        migrate.migrate('{"Retry": {"MaxRetryAttempts": 1,},}', format="polly")
    # plain JSON needs nothing extra
    assert migrate.migrate('{"Retry": {"MaxRetryAttempts": 1}}', format="polly").operations


# --- Spring profiles and overlays --------------------------------------------------------------


def test_multi_document_yaml_reads_the_base_and_lists_the_profiles() -> None:
    path = FIXTURES / "spring" / "application.yml"
    base = migrate.migrate(path)
    assert base.profiles == ["prod", "dev", "test"]
    assert base.profile is None
    inventory = op(base, "inventory")
    # a count window of 5 without minimumNumberOfCalls decides after 5 calls (not 100)
    assert inventory["breaker"]["window"] == {"kind": "count", "size": 5}
    assert inventory["breaker"]["minimum_calls"] == 5
    assert inventory["breaker"]["open_duration"] == 10.0
    assert inventory["retry"]["max_attempts"] == 3
    assert any("--profile dev" in w for w in base.warnings)  # spring.profiles.active
    prod = migrate.migrate(path, profile="prod")  # spring.config.activate.on-profile
    assert op(prod, "inventory")["breaker"]["open_duration"] == 60.0
    assert op(prod, "inventory")["retry"]["max_attempts"] == 3
    test = migrate.migrate(path, profile="test")  # spring.profiles: dev | test
    assert op(test, "inventory")["retry"]["max_attempts"] == 1
    assert op(test, "inventory")["breaker"]["open_duration"] == 10.0
    assert "profiles in the source: prod, dev, test" in prod.summary()
    honest(prod)


@pytest.mark.parametrize(
    ("expression", "active", "expected"),
    [
        ("prod", {"prod"}, True),
        ("prod,eu", {"eu"}, True),
        ("prod & eu", {"prod"}, False),
        ("prod & eu", {"prod", "eu"}, True),
        ("!dev", {"prod"}, True),
        ("!dev", {"dev"}, False),
        ("(a | b) & !c", {"b"}, True),
        ("(a | b) & !c", {"b", "c"}, False),
    ],
)
def test_spring_profile_expressions(expression: str, active: set[str], expected: bool) -> None:
    text = (
        "resilience4j.retry.instances.x.maxAttempts: 2\n---\n"
        f"spring.config.activate.on-profile: '{expression}'\n"
        "resilience4j.retry.instances.x.maxAttempts: 4\n"
    )
    report = migrate.migrate(text, format="resilience4j", profile=",".join(sorted(active)))
    assert op(report, "x")["retry"]["max_attempts"] == (4 if expected else 2)


def test_overlays_merge_over_their_base_and_an_overlay_alone_says_so(tmp_path: Path) -> None:
    base, prod = (
        FIXTURES / "spring" / "application.yml",
        FIXTURES / "spring" / "application-prod.yml",
    )
    report = migrate.migrate([base, prod])
    inventory = op(report, "inventory")
    assert inventory["retry"]["max_attempts"] == 5  # from the overlay
    assert inventory["retry"]["backoff"] == {"kind": "constant", "delay": 1.0}
    assert inventory["breaker"]["window"] == {"kind": "count", "size": 5}  # from the base
    assert report.source.endswith("application-prod.yml")
    alone = migrate.migrate(prod)
    assert alone.confidence < 0.9
    assert any("profile overlay" in w for w in alone.warnings)
    # a .properties overlay over YAML: Spring's flat keys
    props = tmp_path / "application-eu.properties"
    props.write_text("resilience4j.retry.instances.inventory.maxAttempts=2\n")
    mixed = migrate.migrate([base, props])
    assert op(mixed, "inventory")["retry"]["max_attempts"] == 2
    assert op(mixed, "inventory")["breaker"]["minimum_calls"] == 5


# --- resilience4j per version ----------------------------------------------------------------


def test_resilience4j_0x_names_limiters_and_ring_buffers() -> None:
    report = migrate.migrate(FIXTURES / "spring" / "legacy-0x.yml")
    a = op(report, "backendA")
    # ringBufferSizeInClosedState n: the failure rate is decided once n calls are in the ring
    assert a["breaker"]["window"] == {"kind": "count", "size": 5}
    assert a["breaker"]["minimum_calls"] == 5
    assert a["breaker"]["open_duration"] == 5.0  # waitInterval: 5000 (ms)
    assert a["breaker"]["half_open_calls"] == 3
    assert a["retry"]["backoff"] == {"kind": "constant", "delay": 0.1}  # waitInterval: 100
    assert a["bulkhead"]["max_concurrent"] == 10  # maxConcurrentCall
    assert a["rate_limit"]["rate"] == 10.0  # ratelimiter.limiters
    assert a["rate_limit"]["per"] == 1.0  # limitRefreshPeriodInMillis
    assert report.unmapped == []
    honest(report)


def test_count_window_minimum_is_never_above_the_window() -> None:
    report = migrate.migrate(
        {
            "resilience4j.circuitbreaker.instances.a.slidingWindowSize": 10,
            "resilience4j.circuitbreaker.instances.a.minimumNumberOfCalls": 50,
            "resilience4j.circuitbreaker.instances.b.slidingWindowType": "TIME_BASED",
            "resilience4j.circuitbreaker.instances.b.slidingWindowSize": 10,
        }
    )
    assert op(report, "a")["breaker"]["minimum_calls"] == 10
    # a time window keeps resilience4j's minimumNumberOfCalls (100 by default)
    assert op(report, "b")["breaker"]["minimum_calls"] == 100


def test_env_inline_comments_and_the_cli_names_its_flag(tmp_path: Path) -> None:
    env = tmp_path / "legacy.env"
    env.write_text(
        "PAYMENTS_FAIL_MAX=5      # consecutive failures\n"
        'PAYMENTS_RESET_TIMEOUT="30" # seconds\n'
        "PAYMENTS_TIMEOUT_MS=2500\n"
    )
    report = migrate.migrate(env)
    assert op(report, "payments")["breaker"]["minimum_calls"] == 5
    assert op(report, "payments")["breaker"]["open_duration"] == 30.0
    assert op(report, "payments")["timeout"] == 2.5
    unknown = tmp_path / "odd.yml"
    unknown.write_text("something: 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "resilience", "migrate", str(unknown)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--format" in out.stderr
    assert "format=" in out.stderr.replace("--format", "")


# --- Python code --------------------------------------------------------------------------


def test_python_sites_golden() -> None:
    report = migrate.migrate(FIXTURES / "python")
    assert report.format == "python"
    ops = report.operations
    assert sorted(ops) == [
        "shop.breakers.cache_breaker",
        "shop.breakers.db_breaker",
        "shop.breakers.events_breaker",
        "shop.orders.charge",
        "shop.orders.fetch_order",
        "shop.orders.notify",
        "shop.orders.ping",
        "shop.orders.poll",
        "shop.orders.refund",
        "shop.orders.report",
        "shop.orders.sync",
    ]  # the project's own @retry(3) and urllib3's Retry(total=5) are not sites
    db = ops["shop.breakers.db_breaker"]
    assert (db.library, db.function) == ("pybreaker", "db_breaker")
    assert db.site is not None
    assert db.site.endswith("breakers.py:10")
    assert len(db.uses) == 3  # built once, used by two functions: one operation
    assert op(report, "shop.breakers.db_breaker")["breaker"] | {} == {
        "failure_rate_threshold": 1.0,
        "slow_call_threshold": False,
        "slow_call_rate_threshold": 1.0,
        "minimum_calls": 4,  # FAILS, a module constant
        "window": {"kind": "count", "size": 4},
        "open_duration": 90.0,  # timedelta(seconds=90)
        "open_duration_max": False,
        "half_open_calls": 1,
    }
    assert op(report, "shop.breakers.cache_breaker")["breaker"]["open_duration"] == 60.0
    assert op(report, "shop.breakers.cache_breaker")["breaker"]["minimum_calls"] == 5
    assert ops["shop.breakers.events_breaker"].library == "aiobreaker"
    assert op(report, "shop.breakers.events_breaker")["breaker"]["open_duration"] == 20.0
    fetch = op(report, "shop.orders.fetch_order")["retry"]
    assert fetch["max_attempts"] == 4
    assert fetch["deadline"] == 30.0
    assert fetch["backoff"] == {
        "kind": "exponential",
        "initial": 0.5,
        "multiplier": 2.0,
        "maximum": 8.0,
        "jitter": False,
    }
    notify = op(report, "shop.orders.notify")["retry"]  # stamina's own defaults
    assert notify["max_attempts"] == 10
    assert notify["deadline"] == 45.0
    assert notify["backoff"]["initial"] == 0.1
    assert notify["backoff"]["maximum"] == 5.0
    sync = ops["shop.orders.sync"]
    assert sync.library == "backoff"
    assert sync.dynamic == ["retry.max_attempts"]  # settings.TRIES: never guessed
    assert "max_attempts" not in op(report, "shop.orders.sync").get("retry", {})
    assert op(report, "shop.orders.ping")["breaker"]["open_duration"] == 30.0  # bare @circuit
    assert op(report, "shop.orders.report")["breaker"]["minimum_calls"] == 7  # class attributes
    assert op(report, "shop.orders.report")["breaker"]["open_duration"] == 120.0
    assert ops["shop.orders.poll"].function == "poll"  # async for ... in AsyncRetrying(...)
    assert op(report, "shop.orders.poll")["retry"]["backoff"] == {"kind": "constant", "delay": 1.0}
    assert op(report, "shop.orders.charge")["retry"]["max_attempts"] == 2  # retry_context
    assert op(report, "shop.orders.charge")["retry"]["deadline"] is False  # timeout=None
    refund = op(report, "shop.orders.refund")["retry"]  # on_exception(...)(raw_refund)
    assert refund["max_attempts"] == 3
    assert refund["backoff"] == {"kind": "constant", "delay": 2.0, "jitter": "full"}
    honest(report)


@pytest.mark.parametrize(
    ("wait", "attempts", "backoff", "exact"),
    [
        ("wait_chain(wait_fixed(1), wait_fixed(2), wait_fixed(4))", 4,
         {"kind": "exponential", "initial": 1.0, "multiplier": 2.0, "maximum": 4.0,
          "jitter": False}, True),
        ("wait_chain(*[wait_fixed(3)] * 3 + [wait_fixed(7)] * 2)", 3,
         {"kind": "constant", "delay": 3.0}, True),  # 2 waits: both 3 s
        ("wait_chain(*[wait_fixed(3)] * 3 + [wait_fixed(7)] * 2)", 5,
         {"kind": "linear", "initial": 3.0, "step": 4 / 3, "maximum": 7.0, "jitter": False},
         False),
        ("wait_fixed(1) + wait_fixed(2)", 3, {"kind": "constant", "delay": 3.0}, True),
        ("wait_exponential(multiplier=1, min=4, max=10)", 5, None, False),
    ],
)  # fmt: skip
def test_tenacity_chains_and_sums_of_waits(
    wait: str, attempts: int, backoff: dict[str, Any] | None, exact: bool
) -> None:
    source = (
        "from tenacity import *\n"
        f"@retry(stop=stop_after_attempt({attempts}), wait={wait}, "
        "retry=retry_if_exception_type(ConnectionError))\ndef f():\n    pass\n"
    )
    report = migrate.migrate(source, format="python")
    got = op(report, "module.f")["retry"]["backoff"]
    if backoff is not None:
        assert got == pytest.approx(backoff)
    assert (report.confidence == 1.0) is exact
    honest(report)


def test_python_imports_and_aliases_decide_what_is_a_site(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "from tenacity import retry\n"
        "def retry(n):\n    return lambda f: f\n"  # shadows the import
        "@retry(3)\ndef f():\n    pass\n"
    )
    (tmp_path / "b.py").write_text(
        "import tenacity as t\nfrom tenacity import stop_after_attempt as saa\n"
        "@t.retry(stop=saa(2), wait=t.wait_fixed(0.5))\ndef g():\n    pass\n"
        "from requests.adapters import Retry\nr = Retry(total=5)\n"
    )
    report = migrate.migrate(tmp_path)
    assert list(report.operations) == ["b.g"]
    assert op(report, "b.g")["retry"]["max_attempts"] == 2
    with pytest.raises(migrate.MigrationError, match="no tenacity"):
        migrate.migrate(tmp_path / "a.py")


def test_rewrite_prints_a_diff_that_compiles_and_writes_only_when_asked(tmp_path: Path) -> None:
    project = tmp_path / "python"
    shutil.copytree(FIXTURES / "python", project)
    before = {p: p.read_text() for p in project.rglob("*.py")}
    out = subprocess.run(
        [sys.executable, "-m", "resilience", "migrate", str(project), "--rewrite"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert '+@rs.resilient("shop.orders.fetch_order")' in out.stdout
    assert '+@rs.resilient("shop.breakers.db_breaker")' in out.stdout
    assert "+import resilience as rs" in out.stdout
    assert {p: p.read_text() for p in project.rglob("*.py")} == before  # dry run
    report = migrate.migrate(project)
    migrate.rewrite(report, write=True)
    orders = project / "shop" / "orders.py"
    new = orders.read_text()
    compile(new, str(orders), "exec")
    site_lines = {
        line for places in report.rewrites.values() for path, line in places if path == str(orders)
    }
    kept = [line for n, line in enumerate(before[orders].splitlines(), 1) if n not in site_lines]
    assert all(line in new.splitlines() for line in kept)  # every line that is not a site
    assert "@retry(3)" in new
    assert "Retry(total=5" in new
    assert new.count("import resilience as rs") == 1


# --- fuzz: never a crash, never a confident report that dropped something -------------------

KEYS = st.sampled_from(
    [
        "Retry", "CircuitBreaker", "AttemptTimeout", "TotalRequestTimeout", "Timeout",
        "MaxRetryAttempts", "RetryCount", "Delay", "BackoffType", "UseJitter", "FailureRatio",
        "MinimumThroughput", "SamplingDuration", "BreakDuration", "DurationOfBreak",
        "ExceptionsAllowedBeforeBreaking", "TimeoutInSeconds", "BreakDurationInSeconds",
        "HttpClients", "Resilience", "x", "Enabled", "Name",
    ]
)  # fmt: skip
VALUES = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.sampled_from(["00:00:30", "00:00:00.5", "1.00:00:00", "Exponential", "Linear", "x", ""]),
)
TREES = st.recursive(
    VALUES, lambda inner: st.dictionaries(KEYS, inner, max_size=5), max_leaves=15
).filter(lambda t: isinstance(t, dict))


def report_or_error(source: Any, **kwargs: Any) -> migrate.MigrationReport | None:
    try:
        report = migrate.migrate(source, **kwargs)
    except migrate.MigrationError:
        return None
    honest(report)
    return report


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, st.booleans(), st.booleans())
def test_fuzz_json5(tree: dict[str, Any], comments: bool, bom: bool) -> None:
    text = json.dumps(tree, indent=1)
    if comments:  # what .NET accepts: comments and trailing commas
        text = text.replace("{\n", "{ // c\n").replace("\n}", ",\n /* c */ }").replace("{,", "{")
    report_or_error(("\ufeff" if bom else "") + text, format="polly")
    report_or_error(text)


R4J_KEYS = st.sampled_from(
    ["slidingWindowSize", "minimumNumberOfCalls", "failureRateThreshold", "waitInterval",
     "waitDurationInOpenState", "ringBufferSizeInClosedState", "slidingWindowType", "maxAttempts",
     "waitDuration", "maxConcurrentCall", "limitForPeriod", "timeoutDuration", "bogusKey"]
)  # fmt: skip
R4J_VALUES = st.one_of(
    st.integers(-3, 500), st.sampled_from(["10s", "COUNT_BASED", "TIME_BASED", "PT1M", "x"])
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "prod", "dev & eu", "!dev"]),
            st.sampled_from(["circuitbreaker", "retry", "bulkhead", "ratelimiter", "timelimiter"]),
            st.dictionaries(R4J_KEYS, R4J_VALUES, max_size=4),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([None, "prod", "dev,eu"]),
)
def test_fuzz_multi_document_yaml(
    docs: list[tuple[str, str, dict[str, Any]]], profile: Any
) -> None:
    import yaml

    parts = []
    for activation, module, settings_ in docs:
        doc: dict[str, Any] = {"resilience4j": {module: {"instances": {"svc": settings_}}}}
        if activation:
            doc["spring"] = {"config": {"activate": {"on-profile": activation}}}
        parts.append(yaml.safe_dump(doc))
    report_or_error("---\n".join(parts), format="resilience4j", profile=profile)


CALLS = st.sampled_from(
    [
        "@retry(stop=stop_after_attempt({a}), wait=wait_fixed({b}))",
        "@retry(stop=stop_after_attempt({a}) | stop_after_delay({b}), wait=wait_exponential("
        "multiplier={b}, max={a}))",
        "@retry(stop=stop_after_delay({b}) & stop_after_attempt({a}), wait=wait_random(0, {b}))",
        "@retry(wait=wait_incrementing(start={b}, increment={b}, max={a}))",
        "@retry(stop=stop_after_attempt({a}), wait=wait_fixed({b}) + wait_random(0, 1))",
        "@retry(stop=stop_after_attempt(N), retry=retry_if_exception_type(ValueError))",
        "@stamina.retry(on=ConnectionError, attempts={a}, timeout={b}, wait_initial={b})",
        "@backoff.on_exception(backoff.expo, ConnectionError, max_tries={a}, factor={b})",
        "@backoff.on_exception(backoff.fibo, ConnectionError, max_time={b})",
        "@pybreaker.CircuitBreaker(fail_max={a}, reset_timeout={b})",
        "@circuit(failure_threshold={a}, recovery_timeout={b})",
        "@circuit(failure_threshold=settings.x)",
        "@retry",
    ]
)
NUMBERS = st.one_of(st.integers(-2, 50), st.floats(-1, 100, allow_nan=False), st.just("N"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(CALLS, NUMBERS, NUMBERS), min_size=1, max_size=4))
def test_fuzz_python_decorators(calls: list[tuple[str, Any, Any]]) -> None:
    lines = [
        "import backoff, pybreaker, stamina",
        "from circuitbreaker import circuit",
        "from tenacity import *",
        "N = 3",
    ]
    for index, (template, a, b) in enumerate(calls):
        lines += [template.format(a=a, b=b), f"def f{index}():", "    pass"]
    source = "\n".join(lines) + "\n"
    compile(source, "<fuzz>", "exec")
    report_or_error(source, format="python")


# --- equivalence with the real libraries ------------------------------------------------------

WAITS = st.one_of(
    st.builds(lambda w: f"wait_fixed({w})", st.sampled_from([0.1, 0.5, 1, 2.5])),
    st.builds(
        lambda m, x, e: f"wait_exponential(multiplier={m}, max={x}, exp_base={e})",
        st.sampled_from([0.1, 0.5, 1]),
        st.sampled_from([2, 5, 60]),
        st.sampled_from([2, 3]),
    ),
    st.builds(
        lambda s, i: f"wait_incrementing(start={s}, increment={i}, max=10)",
        st.sampled_from([0.1, 1]),
        st.sampled_from([0, 0.5, 2]),
    ),
    st.builds(
        lambda ws: "wait_chain(" + ", ".join(f"wait_fixed({w})" for w in sorted(ws)) + ")",
        st.lists(st.sampled_from([0.5, 1, 3]), min_size=1, max_size=2),
    ),
    st.builds(
        lambda a, b: f"wait_fixed({a}) + wait_fixed({b})",
        st.sampled_from([0, 1]),
        st.sampled_from([0.5, 2]),
    ),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5), WAITS, st.lists(st.booleans(), max_size=8))
def test_tenacity_sites_make_the_same_attempts_and_waits(
    attempts: int, wait: str, failures: list[bool]
) -> None:
    decorator = f"stop=stop_after_attempt({attempts}), wait={wait}"
    source = f"from tenacity import *\n\n@retry({decorator})\ndef call():\n    pass\n"
    report = migrate.migrate(source, format="python")
    assert report.confidence >= 0.9  # these are exact
    cfg = config.load(data=report.config, environ={"RESILIENCE_ENV": "production"})
    clock = VirtualClock()
    ours = cfg.operation("module.call").retry.build("module.call", clock=clock)
    namespace: dict[str, Any] = {}
    exec("from tenacity import *", namespace)  # the decorator's own arguments, evaluated
    their_sleeps: list[float] = []
    theirs = tenacity.Retrying(
        **eval(f"dict({decorator})", namespace), sleep=their_sleeps.append, reraise=True
    )
    assert _drive(ours.call, failures) == _drive(theirs, failures)
    assert clock.sleeps == pytest.approx(their_sleeps)


def _drive(retrying: Any, failures: list[bool]) -> tuple[int, str]:
    """(attempts made, outcome) of one call that fails as `failures` says, then succeeds."""
    queue = list(failures)
    calls = 0

    def fn() -> str:
        nonlocal calls
        calls += 1
        if queue and queue.pop(0):
            raise ConnectionError("down")
        return "ok"

    try:
        return calls, str(retrying(fn))
    except ConnectionError:
        return calls, "error"


STEPS = st.lists(
    st.one_of(st.sampled_from(["ok", "fail"]), st.sampled_from([5.0, 40.0, 120.0])),
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5), st.sampled_from([10, 30, 60]), st.integers(1, 3), STEPS)
def test_pybreaker_sites_open_at_the_same_call(
    fail_max: int, reset: int, success: int, steps: list[Any]
) -> None:
    import datetime

    source = (
        "import pybreaker\n"
        f"breaker = pybreaker.CircuitBreaker(fail_max={fail_max}, reset_timeout={reset}, "
        f"success_threshold={success})\n"
    )
    report = migrate.migrate(source, format="python")
    assert report.confidence == 1.0
    clock = VirtualClock()
    cfg = config.load(data=report.config, environ={"RESILIENCE_ENV": "production"})
    ours = cfg.operation("module.breaker").breaker.build("module.breaker", clock=clock)
    theirs = pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=reset, success_threshold=success
    )
    for step in steps:
        if isinstance(step, float):  # time passes on both sides
            clock.advance(step)
            opened = theirs._state_storage.opened_at
            if opened is not None:
                theirs._state_storage.opened_at = opened - datetime.timedelta(seconds=step)
            continue
        ran: list[str] = []

        def fn(side: str, outcome: str = step, ran: list[str] = ran) -> None:
            ran.append(side)
            if outcome == "fail":
                raise ConnectionError("down")

        for side, breaker, rejected in (
            ("ours", ours, rs.CircuitOpenError),
            ("theirs", theirs, pybreaker.CircuitBreakerError),
        ):
            try:
                breaker.call(fn, side)
            except (ConnectionError, rejected):
                pass
        # the same call runs on both sides, or is rejected on both
        assert ("ours" in ran) == ("theirs" in ran), (step, ran)


def test_a_retry_and_a_breaker_on_one_function_are_one_operation(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(
        "from tenacity import retry, stop_after_attempt, wait_fixed\n"
        "from circuitbreaker import circuit\n\n"
        "@circuit(failure_threshold=4)\n"
        "@retry(stop=stop_after_attempt(3), wait=wait_fixed(1))\n"
        "def fetch():\n    pass\n\n"
        "@retry(stop=stop_after_attempt(2), wait=wait_fixed(1))\n"
        "@retry(stop=stop_after_attempt(3), wait=wait_fixed(1))\n"
        "def twice():\n    pass\n"
    )
    report = migrate.migrate(tmp_path)
    assert sorted(report.operations) == ["svc.fetch", "svc.twice", "svc.twice.2"]
    fetch = report.operations["svc.fetch"]
    assert fetch.library == "circuitbreaker+tenacity"
    assert set(op(report, "svc.fetch")) >= {"retry", "breaker"}
    assert any("retry is outside the breaker" in w for w in report.warnings)
    assert any("a second site for 'svc.twice'" in w for w in report.warnings)  # never silent
    diff = migrate.rewrite(report)
    assert diff.count('+@rs.resilient("svc.fetch")') == 1
    assert '+@rs.resilient("svc.twice.2")' in diff


def test_purgatory_factories_and_their_decorators(tmp_path: Path) -> None:
    (tmp_path / "pay.py").write_text(
        "from purgatory import AsyncCircuitBreakerFactory\n\n"
        "breakers = AsyncCircuitBreakerFactory(default_threshold=3, default_ttl=45)\n\n"
        '@breakers("payments", threshold=2)\nasync def pay():\n    pass\n\n'
        '@breakers("ledger")\nasync def ledger():\n    pass\n'
    )
    report = migrate.migrate(tmp_path)
    assert op(report, "pay.pay")["breaker"]["minimum_calls"] == 2  # its own threshold
    assert op(report, "pay.ledger")["breaker"]["minimum_calls"] == 3  # the factory's
    assert op(report, "pay.ledger")["breaker"]["open_duration"] == 45.0
    assert report.operations["pay.pay"].library == "purgatory"
    honest(report)


def test_dotnet_overlays_merge_case_insensitively() -> None:
    base = '{"Polly": {"RetryCount": 3, "RetryDelayInSeconds": 2}}'
    production = '{"polly": {"retrycount": 5}}'  # .NET keys ignore case
    report = migrate.migrate([base, production])
    assert list(report.operations) == ["Polly"]
    assert op(report, "Polly")["retry"]["max_attempts"] == 5
    assert op(report, "Polly")["retry"]["backoff"] == {"kind": "constant", "delay": 2.0}


def test_option_classes_as_projects_write_them() -> None:
    # shapes of real options classes bound from appsettings.json
    text = """{
      "HttpClientPolicyConfiguration": { "RetryCount": 3, "RetryDelayInMs": 500,
        "RetryTimeoutInSeconds": 5, "BreakDurationInSeconds": 30, "MaxAttemptBeforeBreak": 3,
        "HandlerTimeoutInMinutes": 5 },
      "PollySettings": { "RetryCount": 3, "RetryIntervalInSeconds": 2,
        "CircuitBreakerDurationInSeconds": 30, "CircuitBreakerExceptionsAllowedBeforeBreaking": 5,
        "RateLimitMaxRequest": 100, "RateLimitTimeWindowInSeconds": 60 },
      "PolicyOptions": {
        "HttpCircuitBreaker": {
          "DurationOfBreak": "00:01:00", "ExceptionsAllowedBeforeBreaking": 20 },
        "HttpRetry": { "Count": 3, "BackoffPower": 2 } }
    }"""
    report = migrate.migrate(text)
    assert sorted(report.operations) == ["HttpClientPolicyConfiguration", "PolicyOptions",
                                         "PollySettings"]  # fmt: skip
    first = op(report, "HttpClientPolicyConfiguration")
    assert first["attempt_timeout"] == 5.0  # RetryTimeoutInSeconds: each try
    assert first["breaker"]["minimum_calls"] == 3  # MaxAttemptBeforeBreak
    assert "timeout" not in first  # HandlerTimeoutInMinutes is the handler's lifetime
    second = op(report, "PollySettings")
    assert second["rate_limit"] == {"rate": 100.0, "per": 60.0}
    assert second["breaker"]["open_duration"] == 30.0
    third = op(report, "PolicyOptions")
    assert third["breaker"]["window"] == {"kind": "count", "size": 20}
    # Math.Pow(BackoffPower, retryAttempt): 2, 4, 8 s
    assert third["retry"]["backoff"]["initial"] == 2.0
    assert third["retry"]["backoff"]["multiplier"] == 2.0
    assert all(0.5 < o.confidence < 1.0 for o in report.operations.values())  # read by name
    honest(report)


def test_exception_types_the_classifier_already_retries_map_exactly() -> None:
    source = (
        "import openai, httpx\nfrom tenacity import *\n"
        "@retry(stop=stop_after_attempt(4), wait=wait_random_exponential(multiplier=1, max=60),"
        " retry=retry_if_exception_type((openai.RateLimitError, httpx.ConnectError)))\n"
        "def complete():\n    pass\n"
        "@retry(stop=stop_after_attempt(9), wait=wait_fixed(1),"
        " retry=retry_if_exception_type(ValueError))\n"
        "def parse():\n    pass\n"
    )
    report = migrate.migrate(source, format="python")
    assert report.operations["module.complete"].confidence == 1.0
    assert report.operations["module.complete"].unmapped == []
    parse = report.operations["module.parse"]
    assert parse.unmapped  # ValueError is not retried here unless you say so: on=...
    assert op(report, "module.parse")["retry"]["max_attempts"] == 5  # 9, no deadline: clamped
    assert parse.confidence < 0.9
    honest(report)


def test_yaml_anchors_merge_keys_and_duplicates() -> None:
    text = (
        "shared: &shared\n  slidingWindowSize: 10\n  failureRateThreshold: 50\n"
        "resilience4j.circuitbreaker.instances.a:\n  <<: *shared\n  slidingWindowSize: 4\n"
    )
    report = migrate.migrate(text, format="resilience4j")
    assert op(report, "a")["breaker"]["window"] == {"kind": "count", "size": 4}  # an override
    assert op(report, "a")["breaker"]["failure_rate_threshold"] == 0.5
    with pytest.raises(migrate.MigrationError, match="duplicate key 'maxAttempts'"):
        migrate.migrate(  # Spring Boot refuses a key given twice
            "resilience4j.retry.instances.a:\n  maxAttempts: 2\n  maxAttempts: 3\n",
            format="resilience4j",
        )
