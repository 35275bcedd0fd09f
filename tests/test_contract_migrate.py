"""Acceptance tests, DESIGN.md's contract: the legacy migrator, every format it names, from real
files, and the `resilience migrate` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

migrate = pytest.importorskip("resilience.migrate")
config = pytest.importorskip("resilience.config")

ROOT = Path(__file__).resolve().parent.parent

R4J_YAML = """\
resilience4j:
  circuitbreaker:
    instances:
      payments:
        failureRateThreshold: 50
        minimumNumberOfCalls: 20
        slidingWindowSize: 100
        waitDurationInOpenState: 30s
        permittedNumberOfCallsInHalfOpenState: 3
  retry:
    instances:
      payments:
        maxAttempts: 4
        waitDuration: 500ms
"""

R4J_PROPERTIES = """\
resilience4j.circuitbreaker.instances.payments.failureRateThreshold=50
resilience4j.circuitbreaker.instances.payments.minimumNumberOfCalls=20
resilience4j.circuitbreaker.instances.payments.waitDurationInOpenState=30s
"""

HYSTRIX = """\
hystrix.command.getUser.circuitBreaker.errorThresholdPercentage=50
hystrix.command.getUser.circuitBreaker.requestVolumeThreshold=20
hystrix.command.getUser.circuitBreaker.sleepWindowInMilliseconds=7000
hystrix.command.getUser.execution.isolation.thread.timeoutInMilliseconds=2000
"""

POLLY = {
    "Retry": {"MaxRetryAttempts": 3, "Delay": "00:00:01", "BackoffType": "Exponential"},
    "CircuitBreaker": {
        "FailureRatio": 0.5,
        "MinimumThroughput": 10,
        "SamplingDuration": "00:00:30",
        "BreakDuration": "00:00:15",
    },
    "Timeout": {"Timeout": "00:00:05"},
}

ENV = """\
PAYMENTS_RETRY_MAX_ATTEMPTS=4
PAYMENTS_TIMEOUT=5
"""


def _check(report: Any) -> None:
    assert isinstance(report.config, dict)
    assert isinstance(report.config.get("operations"), dict)
    assert isinstance(report.confidence, float)
    assert 0.0 <= report.confidence <= 1.0
    assert isinstance(report.unmapped, list)
    assert all(isinstance(u, str) for u in report.unmapped)
    assert isinstance(report.warnings, list)
    assert all(isinstance(w, str) for w in report.warnings)
    for name, op in report.operations.items():
        assert name in report.config["operations"]
        assert op.preset is None or op.preset in config.PRESETS
        assert isinstance(op.overrides, dict)
        assert 0.0 <= op.confidence <= 1.0
    text = report.to_toml()
    assert isinstance(text, str)
    # the TOML is the file layout: it loads, in every environment
    data = tomllib.loads(text)
    for env in ("development", "testing", "staging", "production"):
        cfg = config.load(data=data, environ={"RESILIENCE_ENV": env})
        for name in report.operations:
            cfg.operation(name)


def test_resilience4j_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "application.yml"
    path.write_text(R4J_YAML)
    report = migrate.migrate(path)
    _check(report)
    op = report.config["operations"]["payments"]
    assert op["breaker"]["failure_rate_threshold"] == 0.5
    assert op["breaker"]["minimum_calls"] == 20
    assert op["breaker"]["open_duration"] == 30.0
    assert op["breaker"]["half_open_calls"] == 3
    assert op["retry"]["max_attempts"] == 4
    assert report.operations["payments"].confidence > 0.5
    # a str path and format= work the same
    again = migrate.migrate(str(path), format="resilience4j")
    assert again.config == report.config


def test_resilience4j_properties_file(tmp_path: Path) -> None:
    path = tmp_path / "application.properties"
    path.write_text(R4J_PROPERTIES)
    report = migrate.migrate(path, format="resilience4j")
    _check(report)
    assert report.config["operations"]["payments"]["breaker"]["open_duration"] == 30.0


def test_hystrix_properties_file(tmp_path: Path) -> None:
    path = tmp_path / "hystrix.properties"
    path.write_text(HYSTRIX)
    report = migrate.migrate(path, format="hystrix")
    _check(report)
    op = report.config["operations"]["getUser"]
    assert op["breaker"]["open_duration"] == 7.0
    assert op["breaker"]["failure_rate_threshold"] == 0.5
    timeout = op["timeout"]
    assert (timeout["seconds"] if isinstance(timeout, dict) else timeout) == 2.0


def test_polly_json_file(tmp_path: Path) -> None:
    path = tmp_path / "polly.json"
    path.write_text(json.dumps(POLLY))
    report = migrate.migrate(path, format="polly")
    _check(report)
    (op,) = report.config["operations"].values()
    assert op["breaker"]["failure_rate_threshold"] == 0.5
    assert op["breaker"]["open_duration"] == 15.0


@pytest.mark.parametrize(
    ("fmt", "kwargs", "section"),
    [
        ("pybreaker", {"fail_max": 5, "reset_timeout": 60}, "breaker"),
        ("circuitbreaker", {"failure_threshold": 5, "recovery_timeout": 30}, "breaker"),
    ],
)
def test_breaker_libraries_from_a_dict_and_from_json(
    tmp_path: Path, fmt: str, kwargs: dict[str, Any], section: str
) -> None:
    report = migrate.migrate(kwargs, format=fmt)
    _check(report)
    (op,) = report.config["operations"].values()
    assert op[section]["minimum_calls"] == 5
    path = tmp_path / f"{fmt}.json"
    path.write_text(json.dumps(kwargs))
    assert migrate.migrate(path, format=fmt).config == report.config


def test_pybreaker_is_consecutive_failures() -> None:
    # pybreaker's fail_max counts consecutive failures: a window of that many, all failed
    report = migrate.migrate({"fail_max": 5, "reset_timeout": 60}, format="pybreaker")
    (op,) = report.config["operations"].values()
    br = op["breaker"]
    assert br["failure_rate_threshold"] == 1.0
    assert br["open_duration"] == 60.0


def test_tenacity_kwargs() -> None:
    import tenacity

    report = migrate.migrate(
        {"stop": tenacity.stop_after_attempt(4), "wait": tenacity.wait_fixed(1)},
        format="tenacity",
    )
    _check(report)
    (op,) = report.config["operations"].values()
    assert op["retry"]["max_attempts"] == 4


def test_flat_env_file(tmp_path: Path) -> None:
    path = tmp_path / "legacy.env"
    path.write_text(ENV)
    report = migrate.migrate(path, format="env")
    _check(report)


def test_unmapped_settings_are_listed_and_lower_confidence() -> None:
    report = migrate.migrate(
        {
            "hystrix.command.getUser.circuitBreaker.sleepWindowInMilliseconds": "7000",
            "hystrix.command.getUser.fallback.isolation.semaphore.maxConcurrentRequests": "10",
            "hystrix.command.getUser.someUnknownThing": "x",
        },
        format="hystrix",
    )
    assert report.unmapped
    assert report.confidence < 1.0


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "resilience", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_migrate(tmp_path: Path) -> None:
    (tmp_path / "application.yml").write_text(R4J_YAML)
    out = _cli("migrate", "application.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "payments" in out.stdout
    tomllib.loads(out.stdout)
    out = _cli(
        "migrate",
        "application.yml",
        "--format",
        "resilience4j",
        "-o",
        "resilience.toml",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    cfg = config.load(path=tmp_path / "resilience.toml", environ={})
    assert cfg.operation("payments").breaker.minimum_calls == 20
    check = _cli("migrate", "application.yml", "--check", cwd=tmp_path)
    assert check.returncode in (0, 1)
