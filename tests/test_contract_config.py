"""Acceptance tests, DESIGN.md's contract: config and presets, the TOML file layout (loaded
from a real file), environment detection, ConfigError and environment-variable overrides."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

import resilience as rs

config = pytest.importorskip("resilience.config")

LAYOUT = """\
environment = "production"            # optional: otherwise detected
[defaults]                            # over the preset, for every operation
retry = { max_attempts = 3 }
[operations."llm.generate"]
preset = "critical"                   # optional: otherwise the environment's preset
timeout = 30.0                        # seconds, Timeout around the whole call
retry = { max_attempts = 5, deadline = 60.0, backoff = { kind = "exponential", initial = 0.5, multiplier = 2.0, maximum = 20.0, jitter = "full" } }
breaker = { failure_rate_threshold = 0.5, minimum_calls = 20, window = { kind = "count", size = 100 }, open_duration = 30.0, half_open_calls = 3 }
bulkhead = { max_concurrent = 50, max_waiting = 100 }
rate_limit = { rate = 100, per = 1.0, burst = 20 }
"""  # noqa: E501


def test_load_signature() -> None:
    params = inspect.signature(config.load).parameters
    assert params["path"].default is None
    assert params["environ"].default is None


def test_the_layout_example_loads_from_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "resilience.toml"
    path.write_text(LAYOUT)
    cfg = config.load(path=path, environ={})
    assert cfg.environment == "production"
    assert isinstance(cfg.environment_source, str)
    assert cfg.environment_source
    op = cfg.operation("llm.generate")
    assert isinstance(op, config.OperationPolicy)
    assert op.preset == "critical"
    assert op.timeout is not None
    assert op.timeout.seconds == 30.0
    assert op.retry is not None
    assert op.retry.max_attempts == 5
    assert op.retry.deadline == 60.0
    backoff = op.retry.backoff
    assert backoff is not None
    assert (backoff.kind, backoff.initial, backoff.multiplier, backoff.maximum, backoff.jitter) == (
        "exponential",
        0.5,
        2.0,
        20.0,
        "full",
    )
    br = op.breaker
    assert br is not None
    assert (br.failure_rate_threshold, br.minimum_calls, br.open_duration, br.half_open_calls) == (
        0.5,
        20,
        30.0,
        3,
    )
    assert br.window is not None
    assert br.window.kind == "count"
    assert br.window.size == 100
    assert op.bulkhead is not None
    assert (op.bulkhead.max_concurrent, op.bulkhead.max_waiting) == (50, 100)
    assert op.rate_limit is not None
    assert (op.rate_limit.rate, op.rate_limit.per, op.rate_limit.burst) == (100, 1.0, 20)
    # [defaults] applies to every other operation, over the environment's preset
    other = cfg.operation("some.other.op")
    assert other.retry is not None
    assert other.retry.max_attempts == 3


def test_json_and_yaml_have_the_same_shape(tmp_path: Path) -> None:
    data = {
        "environment": "staging",
        "operations": {"llm.generate": {"retry": {"max_attempts": 4}, "timeout": 5.0}},
    }
    (tmp_path / "c.json").write_text(json.dumps(data))
    cfg = config.load(path=tmp_path / "c.json", environ={})
    assert cfg.environment == "staging"
    assert cfg.operation("llm.generate").retry.max_attempts == 4
    yaml = pytest.importorskip("yaml")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    cfg = config.load(path=tmp_path / "c.yaml", environ={})
    assert cfg.operation("llm.generate").timeout.seconds == 5.0


def test_time_window_and_backoff_kinds(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        '[operations."a"]\n'
        'breaker = { window = { kind = "time", seconds = 60 } }\n'
        'retry = { backoff = { kind = "constant", delay = 0.5 } }\n'
        '[operations."b"]\n'
        'retry = { backoff = { kind = "linear", initial = 0.1, step = 0.2, maximum = 2.0 } }\n'
        '[operations."c"]\n'
        'retry = { backoff = { kind = "decorrelated", initial = 0.1, maximum = 5.0 } }\n'
    )
    cfg = config.load(path=path, environ={})
    window = cfg.operation("a").breaker.window
    assert window.kind == "time"
    assert window.seconds == 60
    assert cfg.operation("a").retry.backoff.kind == "constant"
    assert cfg.operation("b").retry.backoff.kind == "linear"
    assert cfg.operation("c").retry.backoff.kind == "decorrelated"


def test_a_section_set_to_false_turns_that_policy_off(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        "[defaults]\nretry = { max_attempts = 3 }\n"
        '[operations."x"]\nretry = false\nbreaker = false\n'
    )
    cfg = config.load(path=path, environ={"RESILIENCE_ENV": "production"})
    op = cfg.operation("x")
    assert op.retry is None
    assert op.breaker is None
    assert cfg.operation("y").retry is not None


def test_path_none_reads_resilience_toml_then_pyproject_then_presets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config.load(environ={})  # neither file: presets alone
    assert cfg.environment == "development"
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.resilience.operations."op"]\nretry = { max_attempts = 7 }\n'
    )
    assert config.load(environ={}).operation("op").retry.max_attempts == 7
    (tmp_path / "resilience.toml").write_text('[operations."op"]\nretry = { max_attempts = 6 }\n')
    assert config.load(environ={}).operation("op").retry.max_attempts == 6


def test_operation_is_preset_then_defaults_then_its_own() -> None:
    cfg = config.load(
        data={
            "defaults": {"retry": {"max_attempts": 4}, "timeout": 9.0},
            "operations": {"op": {"retry": {"max_attempts": 2}}},
        },
        environ={"RESILIENCE_ENV": "production"},
    )
    preset = config.PRESETS["production"]
    op = cfg.operation("op")
    assert op.retry.max_attempts == 2  # its own
    assert op.timeout.seconds == 9.0  # [defaults]
    if preset.breaker is not None:  # the preset for the rest
        assert op.breaker == preset.breaker


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ("development", "default")),
        ({"RESILIENCE_ENV": "staging"}, ("staging", "RESILIENCE_ENV")),
        ({"PYTEST_CURRENT_TEST": "tests/x.py::t (call)"}, ("testing", "PYTEST_CURRENT_TEST")),
        ({"CI": "true"}, ("testing", "CI")),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, ("production", "KUBERNETES_SERVICE_HOST")),
        (
            {"RESILIENCE_ENV": "production", "PYTEST_CURRENT_TEST": "x", "CI": "true"},
            ("production", "RESILIENCE_ENV"),
        ),
    ],
)
def test_detect_environment(environ: dict[str, str], expected: tuple[str, str]) -> None:
    got = config.detect_environment(environ)
    assert isinstance(got, tuple)
    assert got == expected


def test_detect_environment_decides_from_the_mapping_alone() -> None:
    # this very process runs under pytest: the mapping given, not os.environ, decides
    assert config.detect_environment({}) == ("development", "default")
    cfg = config.load(data={}, environ={"CI": "true"})
    assert (cfg.environment, cfg.environment_source) == ("testing", "CI")
    cfg = config.load(data={}, environ={"RESILIENCE_ENV": "staging"})
    assert cfg.environment_source == "RESILIENCE_ENV"


def test_presets() -> None:
    names = {
        "development",
        "testing",
        "staging",
        "production",
        "critical",
        "high_throughput",
        "best_effort",
    }
    assert names <= set(config.PRESETS)
    assert all(isinstance(p, config.OperationPolicy) for p in config.PRESETS.values())
    # an environment's default preset is the preset of the same name
    for env in ("development", "testing", "staging", "production"):
        cfg = config.load(data={}, environ={"RESILIENCE_ENV": env})
        op = cfg.operation("anything")
        assert op.retry == config.PRESETS[env].retry
        assert op.breaker == config.PRESETS[env].breaker


def test_config_error_lists_every_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[operations."a"]\nretry = { max_attempts = 0 }\n'
        "breaker = { failure_rate_threshold = 1.5 }\n"
        '[operations."b"]\nbulkhead = { max_concurrent = -1 }\n'
    )
    with pytest.raises(rs.ConfigError) as info:
        config.load(path=path, environ={})
    errors = info.value.errors
    assert isinstance(errors, list)
    assert len(errors) >= 3
    assert all(isinstance(e, tuple) and len(e) == 2 for e in errors)
    text = str(info.value)
    for loc, msg in errors:
        assert loc in text
        assert msg in text
    locations = " ".join(loc for loc, _ in errors)
    assert "max_attempts" in locations
    assert "failure_rate_threshold" in locations
    assert "max_concurrent" in locations


def test_env_overrides_files(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(LAYOUT)
    cfg = config.load(
        path=path,
        environ={
            "RESILIENCE_ENV": "staging",
            "RESILIENCE__OPERATIONS__LLM_GENERATE__RETRY__MAX_ATTEMPTS": "2",
            "RESILIENCE__OPERATIONS__LLM_GENERATE__TIMEOUT": "12.5",
        },
    )
    assert cfg.environment == "staging"  # RESILIENCE_ENV beats the file's environment
    op = cfg.operation("llm.generate")
    assert op.retry.max_attempts == 2
    assert op.retry.deadline == 60.0  # the rest of the file's section stays
    assert op.timeout.seconds == 12.5


def test_env_override_errors_are_config_errors() -> None:
    with pytest.raises(rs.ConfigError) as info:
        config.load(
            data={"operations": {"x": {}}},
            environ={"RESILIENCE__OPERATIONS__X__RETRY__MAX_ATTEMPTS": "zero"},
        )
    assert any(
        "RESILIENCE__OPERATIONS__X__RETRY__MAX_ATTEMPTS" in f"{loc} {msg}"
        for loc, msg in info.value.errors
    ) or "max_attempts" in str(info.value)


def test_use_and_register(tmp_path: Path) -> None:
    cfg = config.load(data={}, environ={"RESILIENCE_ENV": "testing"})
    previous = config.use(cfg)
    try:
        active = config.register(
            "new.op", {"retry": {"max_attempts": 2, "backoff": {"kind": "constant", "delay": 0.01}}}
        )
        assert active.operation("new.op").retry.max_attempts == 2
        calls: list[int] = []

        @rs.resilient("new.op")
        def op() -> str:
            calls.append(1)
            if len(calls) < 2:
                raise ConnectionError("once")
            return "done"

        assert op() == "done"
        assert len(calls) == 2
        with pytest.raises(rs.ConfigError):
            config.register("bad.op", {"retry": {"max_attempts": -1}})
        # nothing half-applied
        assert config.current().operation("new.op").retry.max_attempts == 2
        # replace one operation at run time: @resilient follows
        config.register("new.op", {"retry": False, "breaker": False})
        calls.clear()
        with pytest.raises(ConnectionError):
            op()
        assert len(calls) == 1
    finally:
        config.use(previous)


def test_operation_policy_builds_the_policies_by_keyword(tmp_path: Path) -> None:
    # "each section's keys are that policy's keyword arguments"
    path = tmp_path / "r.toml"
    path.write_text(LAYOUT)
    op = config.load(path=path, environ={}).operation("llm.generate")
    kwargs: dict[str, Any] = op.bulkhead.model_dump(exclude_none=True)
    bh = rs.Bulkhead(**kwargs)
    assert (bh.max_concurrent, bh.max_waiting) == (50, 100)
    rl_kwargs: dict[str, Any] = op.rate_limit.model_dump(exclude_none=True)
    rl = rs.RateLimiter(**rl_kwargs)
    assert (rl.rate, rl.per, rl.burst) == (100, 1.0, 20)


def test_an_operations_preset_then_defaults_then_its_own() -> None:
    cfg = config.load(
        data={
            "defaults": {"retry": {"max_attempts": 3}},
            "operations": {"op": {"preset": "critical", "bulkhead": {"max_concurrent": 7}}},
        },
        environ={"RESILIENCE_ENV": "development"},
    )
    op = cfg.operation("op")
    critical = config.PRESETS["critical"]
    assert op.preset == "critical"
    assert op.retry.max_attempts == 3  # [defaults] over the preset
    if critical.retry is not None:
        assert op.retry.backoff == critical.retry.backoff  # the rest from the preset
    assert op.breaker == critical.breaker
    assert op.bulkhead.max_concurrent == 7  # its own


def test_env_override_for_an_operation_no_file_declares() -> None:
    cfg = config.load(data={}, environ={"RESILIENCE__OPERATIONS__SEARCH_USERS__TIMEOUT": "3"})
    assert cfg.operation("search.users").timeout.seconds == 3.0
