"""resilience.config: detection, presets, precedence, errors, files, env variables, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import resilience as rs
from resilience import config
from resilience.config import ConfigError, detect_environment, load

ENVS = ("development", "testing", "staging", "production")


# --- environment detection: every rule --------------------------------------------------


def test_empty_mapping_is_development_by_default() -> None:
    assert detect_environment({}) == ("development", "default")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"RESILIENCE_ENV": "production"}, ("production", "RESILIENCE_ENV")),
        ({"APP_ENV": "staging"}, ("staging", "APP_ENV")),
        ({"ENVIRONMENT": "testing"}, ("testing", "ENVIRONMENT")),
        ({"DEPLOY_ENV": "production"}, ("production", "DEPLOY_ENV")),
        ({"DEPLOYMENT_ENVIRONMENT": "staging"}, ("staging", "DEPLOYMENT_ENVIRONMENT")),
        ({"ENV": "dev"}, ("development", "ENV")),
        ({"PYTHON_ENV": "prod"}, ("production", "PYTHON_ENV")),
        ({"FLASK_ENV": "development"}, ("development", "FLASK_ENV")),
        ({"DJANGO_ENV": "stg"}, ("staging", "DJANGO_ENV")),
        ({"PYTEST_CURRENT_TEST": "tests/x.py::t (call)"}, ("testing", "PYTEST_CURRENT_TEST")),
        ({"CI": "true"}, ("testing", "CI")),
        ({"CI": "1"}, ("testing", "CI")),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, ("production", "KUBERNETES_SERVICE_HOST")),
    ],
)
def test_each_detection_rule(environ: dict[str, str], expected: tuple[str, str]) -> None:
    assert detect_environment(environ) == expected


def test_detection_order() -> None:
    everything = {
        "RESILIENCE_ENV": "staging",
        "APP_ENV": "production",
        "ENV": "development",
        "PYTEST_CURRENT_TEST": "x",
        "CI": "true",
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
    }
    assert detect_environment(everything) == ("staging", "RESILIENCE_ENV")
    del everything["RESILIENCE_ENV"]
    assert detect_environment(everything) == ("production", "APP_ENV")
    del everything["APP_ENV"]
    assert detect_environment(everything) == ("development", "ENV")
    del everything["ENV"]
    assert detect_environment(everything) == ("testing", "PYTEST_CURRENT_TEST")
    del everything["PYTEST_CURRENT_TEST"]
    # CI wins over Kubernetes: a CI runner in a pod is still CI
    assert detect_environment(everything) == ("testing", "CI")
    del everything["CI"]
    assert detect_environment(everything) == ("production", "KUBERNETES_SERVICE_HOST")


def test_empty_values_and_false_ci_do_not_decide() -> None:
    assert detect_environment({"RESILIENCE_ENV": " ", "APP_ENV": ""}) == ("development", "default")
    assert detect_environment({"CI": "false"}) == ("development", "default")


def test_posix_env_startup_file_is_not_an_environment() -> None:
    assert detect_environment({"ENV": "/home/me/.shrc"}) == ("development", "default")


@pytest.mark.parametrize(
    ("alias", "env"),
    [("prod", "production"), ("PRD", "production"), ("stg", "staging"), ("Stage", "staging"),
     ("dev", "development"), ("local", "development"), ("test", "testing"), ("ci", "testing")],
)  # fmt: skip
def test_aliases(alias: str, env: str) -> None:
    assert detect_environment({"APP_ENV": alias}) == (env, "APP_ENV")


def test_unknown_value_lists_the_accepted_ones() -> None:
    with pytest.raises(ConfigError) as info:
        detect_environment({"RESILIENCE_ENV": "moon"})
    ((loc, msg),) = info.value.errors
    assert loc == "RESILIENCE_ENV"
    for env in ENVS:
        assert env in msg
    assert "prod" in msg


def test_file_environment_is_below_resilience_env_but_above_detection() -> None:
    data = {"environment": "staging"}
    cfg = load(data=data, environ={"APP_ENV": "production", "CI": "true"})
    assert (cfg.environment, cfg.environment_source) == ("staging", "file data")
    cfg = load(data=data, environ={"RESILIENCE_ENV": "prod"})
    assert (cfg.environment, cfg.environment_source) == ("production", "RESILIENCE_ENV")


# --- presets -----------------------------------------------------------------------------


def test_presets_exist_and_environments_map_to_their_namesake() -> None:
    for name in (*ENVS, "critical", "high_throughput", "best_effort"):
        assert isinstance(config.PRESETS[name], config.OperationPolicy)
        assert config.PRESETS[name].preset == name
    for env in ENVS:
        cfg = load(environ={"RESILIENCE_ENV": env}, data={})
        assert cfg.operation("anything").table() | {"preset": env} == config.PRESETS[env].table()


def test_preset_intent() -> None:
    p = config.PRESETS
    # testing: no waits, few attempts, no breaker state between tests
    assert p["testing"].retry is not None
    assert p["testing"].retry.max_attempts <= 2
    assert p["testing"].retry.backoff is not None
    assert p["testing"].retry.backoff.delay == 0
    assert p["testing"].breaker is None
    assert p["testing"].timeout is None
    # production: bounded attempts, jittered exponential backoff, a deadline, breaker on
    prod = p["production"]
    assert prod.retry is not None
    assert prod.retry.max_attempts <= 3
    assert prod.retry.backoff is not None
    assert prod.retry.backoff.kind == "exponential"
    assert prod.retry.backoff.jitter == "full"
    assert prod.retry.deadline is not None
    assert prod.breaker is not None
    assert prod.timeout is not None
    # critical: more attempts within a stricter deadline, and a fallback
    crit = p["critical"]
    assert crit.retry is not None
    assert crit.retry.max_attempts > prod.retry.max_attempts
    assert crit.retry.deadline is not None
    assert crit.retry.deadline < prod.retry.deadline
    assert crit.fallback is not None
    # best effort never retries and sheds load first
    assert p["best_effort"].retry is None
    assert p["best_effort"].bulkhead is not None
    assert p["best_effort"].bulkhead.max_waiting == 0


def test_every_preset_builds_real_policies() -> None:
    for name, preset in config.PRESETS.items():
        policies = preset.policies(f"preset-{name}")
        assert len(policies) == len([s for s in preset.sections() if s != "fallback"])
        pipe = rs.Pipeline(*policies, name=name)
        assert pipe.call(lambda: 42) == 42


def test_a_user_preset_can_be_added() -> None:
    config.PRESETS["tiny"] = config.OperationPolicy.model_validate(
        {"retry": {"max_attempts": 2, "deadline": 1.0}}
    )
    try:
        cfg = load(data={"operations": {"x": {"preset": "tiny"}}}, environ={})
        assert cfg.operation("x").retry.max_attempts == 2  # type: ignore[union-attr]
        assert cfg.operation("x").breaker is None
    finally:
        del config.PRESETS["tiny"]


# --- precedence ---------------------------------------------------------------------


def test_precedence_preset_defaults_operation_env() -> None:
    data = {
        "defaults": {"retry": {"max_attempts": 2, "deadline": 5.0}},
        "operations": {"llm.generate": {"retry": {"max_attempts": 4}}},
    }
    env = {"RESILIENCE_ENV": "production"}
    cfg = load(data=data, environ=env)
    retry = cfg.operation("llm.generate").retry
    assert retry is not None
    assert retry.max_attempts == 4  # the operation's own
    assert retry.deadline == 5.0  # [defaults]
    assert retry.backoff is not None
    assert retry.backoff.initial == 0.2
    assert cfg.operation("other").retry.max_attempts == 2  # type: ignore[union-attr]

    env["RESILIENCE__OPERATIONS__LLM_GENERATE__RETRY__MAX_ATTEMPTS"] = "3"
    env["RESILIENCE__DEFAULTS__RETRY__DEADLINE"] = "6.5"
    cfg = load(data=data, environ=env)
    retry = cfg.operation("llm.generate").retry
    assert retry is not None
    assert retry.max_attempts == 3
    assert retry.deadline == 6.5
    origins = {k: o for k, _, o in cfg.explain("llm.generate")}
    assert (
        origins["retry.max_attempts"] == "RESILIENCE__OPERATIONS__LLM_GENERATE__RETRY__MAX_ATTEMPTS"
    )
    assert origins["retry.deadline"] == "RESILIENCE__DEFAULTS__RETRY__DEADLINE"
    assert origins["retry.backoff.initial"] == "preset production"
    assert origins["breaker.minimum_calls"] == "preset production"


def test_operation_preset_is_the_base_and_defaults_still_apply() -> None:
    data = {
        "defaults": {"timeout": 7.0},
        "operations": {"pay": {"preset": "critical"}},
    }
    cfg = load(data=data, environ={"RESILIENCE_ENV": "development"})
    pay = cfg.operation("pay")
    assert pay.preset == "critical"
    assert pay.timeout is not None
    assert pay.timeout.seconds == 7.0
    assert pay.bulkhead == config.PRESETS["critical"].bulkhead
    assert cfg.operation("other").preset == "development"


def test_false_turns_a_section_off_and_a_table_turns_it_back_on() -> None:
    data = {
        "defaults": {"breaker": False},
        "operations": {"a": {}, "b": {"breaker": {"minimum_calls": 3}}},
    }
    cfg = load(data=data, environ={"RESILIENCE_ENV": "production"})
    assert cfg.operation("a").breaker is None
    b = cfg.operation("b").breaker
    assert b is not None
    assert b.minimum_calls == 3
    assert b.open_duration is None
    off = load(data=data, environ={"RESILIENCE_ENV": "production",
                                   "RESILIENCE__OPERATIONS__B__BREAKER": "false"})  # fmt: skip
    assert off.operation("b").breaker is None


def test_backoff_kind_change_replaces_instead_of_merging() -> None:
    data = {"operations": {"x": {"retry": {"backoff": {"kind": "constant", "delay": 0.5}}}}}
    cfg = load(data=data, environ={"RESILIENCE_ENV": "production"})
    backoff = cfg.operation("x").retry.backoff  # type: ignore[union-attr]
    assert backoff is not None
    assert backoff.table() == {"kind": "constant", "delay": 0.5}
    # without a kind, keys merge into the kind below
    data = {"operations": {"x": {"retry": {"backoff": {"maximum": 1.0}}}}}
    backoff = load(data=data, environ={"RESILIENCE_ENV": "production"}).operation("x").retry.backoff  # type: ignore[union-attr]
    assert backoff is not None
    assert backoff.kind == "exponential"
    assert backoff.initial == 0.2
    assert backoff.maximum == 1.0


def test_env_operation_names_match_declared_operations_case_insensitively() -> None:
    data = {"operations": {"llm.generate": {}, "Billing-Charge": {}}}
    env = {
        "RESILIENCE_ENV": "testing",
        "RESILIENCE__OPERATIONS__LLM_GENERATE__TIMEOUT": "3",
        "RESILIENCE__OPERATIONS__billing_charge__RETRY__MAX_ATTEMPTS": "1",
        "RESILIENCE__OPERATIONS__search.users__TIMEOUT": "{ seconds = 1.5 }",
    }
    cfg = load(data=data, environ=env)
    assert cfg.operation("llm.generate").timeout.seconds == 3  # type: ignore[union-attr]
    assert cfg.operation("Billing-Charge").retry.max_attempts == 1  # type: ignore[union-attr]
    # an undeclared operation: any name that normalises the same way gets it
    assert cfg.operation("search.users").timeout.seconds == 1.5  # type: ignore[union-attr]
    assert cfg.operation("SEARCH_USERS").timeout.seconds == 1.5  # type: ignore[union-attr]
    assert cfg.operation("search.groups").timeout is None


def test_env_name_matching_two_operations_is_an_error() -> None:
    data = {"operations": {"llm.generate": {}, "llm_generate": {}}}
    env = {"RESILIENCE__OPERATIONS__LLM_GENERATE__TIMEOUT": "3"}
    with pytest.raises(ConfigError) as info:
        load(data=data, environ=env)
    assert "matches several operations" in str(info.value)
    # the exact name is never ambiguous
    env = {"RESILIENCE__OPERATIONS__llm_generate__TIMEOUT": "3"}
    cfg = load(data=data, environ=env)
    assert cfg.operation("llm_generate").timeout.seconds == 3  # type: ignore[union-attr]


def test_env_values_are_json_then_toml_then_strings() -> None:
    from resilience.config._load import parse_env_value

    assert parse_env_value("3") == 3
    assert parse_env_value("2.5") == 2.5
    assert parse_env_value("true") is True
    assert parse_env_value("null") is None
    assert parse_env_value('{"kind": "count", "size": 5}') == {"kind": "count", "size": 5}
    assert parse_env_value('{ kind = "time", seconds = 60 }') == {"kind": "time", "seconds": 60}
    assert parse_env_value("full") == "full"


def test_malformed_env_variable_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        load(data={}, environ={"RESILIENCE__OPERATIONS__ONLYOP": "1", "RESILIENCE__BOGUS__X": "1"})
    locs = [loc for loc, _ in info.value.errors]
    assert locs == ["RESILIENCE__BOGUS__X", "RESILIENCE__OPERATIONS__ONLYOP"]


# --- errors: every invalid field, with its location --------------------------------------


def test_every_invalid_field_is_listed_with_its_location() -> None:
    data = {
        "bogus": 1,
        "operations": {
            "llm.generate": {
                "retry": {"max_attempts": 0, "deadline": -1, "backoff": {"kind": "warp"}},
                "breaker": {"failure_rate_threshold": 2, "window": {"kind": "count", "size": 0}},
                "bulkhead": {"max_concurrent": "many"},
                "timeout": 0,
                "rate_limit": {"rate": -5, "colour": "red"},
                "preset": "nope",
                "hedge": {},
            }
        },
    }
    with pytest.raises(ConfigError) as info:
        load(
            data=data, environ={"RESILIENCE__OPERATIONS__LLM_GENERATE__BULKHEAD__MAX_WAITING": "-1"}
        )
    errors = dict(info.value.errors)
    op = 'operations."llm.generate"'
    expected = [
        "bogus",
        f"{op}.retry.max_attempts",
        f"{op}.retry.deadline",
        f"{op}.retry.backoff.kind",
        f"{op}.breaker.failure_rate_threshold",
        f"{op}.breaker.window.size",
        f"{op}.bulkhead.max_concurrent",
        f"{op}.bulkhead.max_waiting",
        f"{op}.timeout.seconds",
        f"{op}.rate_limit.rate",
        f"{op}.rate_limit.colour",
        f"{op}.preset",
        f"{op}.hedge",
    ]
    assert sorted(errors) == sorted(expected)
    assert errors[f"{op}.retry.max_attempts"] == "must be >= 1, got 0"
    assert (
        "RESILIENCE__OPERATIONS__LLM_GENERATE__BULKHEAD__MAX_WAITING"
        in errors[f"{op}.bulkhead.max_waiting"]
    )
    assert "critical" in errors[f"{op}.preset"]  # lists the accepted presets
    text = str(info.value)
    assert text.startswith("13 invalid settings")
    for loc in expected:
        assert loc in text


def test_a_bad_default_is_reported_once_not_per_operation() -> None:
    data = {
        "defaults": {"retry": {"max_attempts": 0}},
        "operations": {f"op{i}": {} for i in range(5)},
    }
    with pytest.raises(ConfigError) as info:
        load(data=data, environ={})
    assert [loc for loc, _ in info.value.errors] == ["defaults.retry.max_attempts"]


def test_error_messages_and_the_policy_constructor_say_the_same() -> None:
    with pytest.raises(ConfigError) as from_policy:
        rs.Retry(max_attempts=0)
    with pytest.raises(ConfigError) as from_config:
        load(data={"operations": {"x": {"retry": {"max_attempts": 0}}}}, environ={})
    assert from_policy.value.errors[0][1] == from_config.value.errors[0][1]


# --- retry storms ------------------------------------------------------------------------


def _storm(table: dict[str, Any], env: str) -> list[tuple[str, str]]:
    try:
        load(data={"operations": {"op": table}}, environ={"RESILIENCE_ENV": env})
    except ConfigError as exc:
        return exc.errors
    return []


def test_many_attempts_without_a_deadline_are_refused_unless_allowed() -> None:
    table = {"retry": {"max_attempts": 8, "deadline": False, "budget": {"ratio": 0.1}}}
    (err,) = _storm(table, "development")
    assert err[0] == "operations.op.retry.deadline"
    assert "retry storm" in err[1]
    assert _storm({"retry": {**table["retry"], "allow_retry_storm": True}}, "development") == []
    assert _storm({"retry": {**table["retry"], "deadline": 30.0}}, "development") == []


def test_zero_backoff_is_refused_outside_testing() -> None:
    table = {"retry": {"backoff": {"kind": "constant", "delay": 0}}}
    (err,) = _storm(table, "production")
    assert err[0] == "operations.op.retry.backoff"
    assert "429" in err[1]
    assert _storm(table, "testing") == []
    assert _storm({"retry": {**table["retry"], "allow_retry_storm": True}}, "staging") == []
    assert _storm({"retry": {"max_attempts": 1, **table["retry"]}}, "production") == []


def test_no_budget_in_production_with_many_attempts_is_refused() -> None:
    table = {"retry": {"max_attempts": 5, "budget": False}}
    (err,) = _storm(table, "production")
    assert err[0] == "operations.op.retry.budget"
    assert _storm(table, "staging") == []
    assert _storm({"retry": {"max_attempts": 3, "budget": False}}, "production") == []
    assert _storm({"retry": {**table["retry"], "allow_retry_storm": True}}, "production") == []


def test_an_operation_on_the_testing_preset_in_production_is_refused() -> None:
    (err,) = _storm({"preset": "testing"}, "production")
    assert err[0] == "operations.op.retry.backoff"


# --- files -----------------------------------------------------------------------------


TOML = """
environment = "production"
[defaults]
retry = { max_attempts = 3 }
[operations."llm.generate"]
preset = "critical"
timeout = 30.0
retry = { max_attempts = 5, deadline = 60.0, backoff = { kind = "exponential", initial = 0.5, multiplier = 2.0, maximum = 20.0, jitter = "full" } }
breaker = { failure_rate_threshold = 0.5, minimum_calls = 20, window = { kind = "count", size = 100 }, open_duration = 30.0, half_open_calls = 3 }
bulkhead = { max_concurrent = 50, max_waiting = 100 }
rate_limit = { rate = 100, per = 1.0, burst = 20 }
[operations."search"]
breaker = { window = { kind = "time", seconds = 60 } }
"""  # noqa: E501


def _check_design_example(cfg: config.Config) -> None:
    assert cfg.environment == "production"
    op = cfg.operation("llm.generate")
    assert op.preset == "critical"
    assert op.timeout is not None
    assert op.timeout.seconds == 30.0
    assert op.retry is not None
    assert op.retry.max_attempts == 5
    assert op.retry.deadline == 60.0
    assert op.breaker is not None
    assert op.breaker.window is not None
    assert op.breaker.window.size == 100
    assert op.bulkhead is not None
    assert op.bulkhead.max_waiting == 100
    assert op.rate_limit is not None
    assert op.rate_limit.burst == 20
    search = cfg.operation("search").breaker
    assert search is not None
    assert search.window is not None
    assert search.window.kind == "time"
    assert cfg.operations == ("llm.generate", "search")


def test_the_design_example_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "resilience.toml"
    path.write_text(TOML)
    _check_design_example(load(path, environ={}))


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load(environ={}).source == "presets"
    Path("pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load(environ={}).source == "presets"  # no [tool.resilience]: ignored
    Path("pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.resilience]\nenvironment = "staging"\n'
        '[tool.resilience.operations.x]\ntimeout = 1.0\n'
    )  # fmt: skip
    cfg = load(environ={})
    assert (cfg.source, cfg.environment) == ("pyproject.toml", "staging")
    Path("resilience.toml").write_text(TOML)
    assert load(environ={}).source == "resilience.toml"
    Path("other.json").write_text(json.dumps({"environment": "testing"}))
    cfg = load(environ={"RESILIENCE_CONFIG": "other.json"})
    assert (cfg.source, cfg.environment) == ("other.json", "testing")


def test_json_and_yaml_have_the_same_shape(tmp_path: Path) -> None:
    import tomllib

    import yaml

    data = tomllib.loads(TOML)
    (tmp_path / "c.json").write_text(json.dumps(data))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    _check_design_example(load(tmp_path / "c.json", environ={}))
    _check_design_example(load(tmp_path / "c.yml" if False else tmp_path / "c.yaml", environ={}))


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("bad.toml", "[operations\nx = 1", "not valid toml"),
        ("bad.json", "{", "not valid json"),
        ("bad.yaml", "a: [", "not valid yaml"),
        ("list.json", "[1, 2]", "must hold a table"),
        ("pyproject.toml", "[project]\nname='x'\n", "no [tool.resilience]"),
    ],
)
def test_malformed_files_give_a_clear_error(
    tmp_path: Path, name: str, text: str, needle: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    ((loc, msg),) = info.value.errors
    assert loc == str(path)
    assert needle in msg


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load("/nonexistent/resilience.toml", environ={})


# --- the config object ------------------------------------------------------------------


def test_unknown_operations_get_the_environment_preset_under_defaults() -> None:
    cfg = load(data={"defaults": {"timeout": 3.0}}, environ={"RESILIENCE_ENV": "staging"})
    p = cfg.operation("never.declared")
    assert p.preset == "staging"
    assert p.timeout.seconds == 3.0
    assert cfg.operation("never.declared") is p  # cached
    assert cfg.defaults is p


def test_with_operation_is_validated_and_leaves_the_original_alone() -> None:
    cfg = load(data={"operations": {"a": {"timeout": 1.0}}}, environ={"RESILIENCE_ENV": "testing"})
    new = cfg.with_operation("b", {"timeout": 2.0})
    assert new.operations == ("a", "b")
    assert cfg.operations == ("a",)
    with pytest.raises(ConfigError) as info:
        cfg.with_operation("c", {"timeout": -1})
    assert info.value.errors == [("operations.c.timeout.seconds", "must be > 0 and finite, got -1")]


def test_repr_holds_no_values() -> None:
    cfg = load(data={"operations": {"a": {"fallback": {"default": "s3cr3t-token"}}}}, environ={})
    assert "s3cr3t" not in repr(cfg)
    assert "1 operations" in repr(cfg)


def test_to_dict_round_trips() -> None:
    cfg = load(
        data={"operations": {"a": {"timeout": 1.0}}}, environ={"RESILIENCE_ENV": "production"}
    )
    layout = cfg.to_dict()
    again = load(data=layout, environ={})
    assert again.operation("a") == cfg.operation("a")
    assert again.environment == "production"


# --- the command line -----------------------------------------------------------------


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resilience", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli(tmp_path: Path) -> None:
    (tmp_path / "resilience.toml").write_text(TOML)
    (tmp_path / "bad.toml").write_text(
        '[operations."llm.generate"]\nretry = { max_attempts = 0 }\n'
    )
    out = _cli("presets", cwd=tmp_path)
    assert out.returncode == 0
    for name in config.PRESETS:
        assert name in out.stdout

    out = _cli("config", "validate", "resilience.toml", cwd=tmp_path)
    assert out.returncode == 0
    assert "valid (2 operations" in out.stdout
    out = _cli("config", "validate", "bad.toml", cwd=tmp_path)
    assert out.returncode == 1
    assert 'operations."llm.generate".retry.max_attempts: must be >= 1, got 0' in out.stderr

    out = _cli("config", "show", cwd=tmp_path)
    assert out.returncode == 0
    assert "llm.generate" in out.stdout
    assert "search" in out.stdout
    out = _cli("config", "show", "--operation", "llm.generate", cwd=tmp_path)
    assert out.returncode == 0
    assert "retry.max_attempts" in out.stdout

    out = _cli(
        "config", "explain", "llm.generate", cwd=tmp_path,
        env={"RESILIENCE__OPERATIONS__LLM_GENERATE__TIMEOUT": "12"},
    )  # fmt: skip
    assert out.returncode == 0
    assert "preset critical" in out.stdout
    assert "RESILIENCE__OPERATIONS__LLM_GENERATE__TIMEOUT" in out.stdout
    assert 'file resilience.toml [operations."llm.generate"]' in out.stdout


def test_cli_plain_text_without_rich(tmp_path: Path) -> None:
    # a directory shadowing `rich` makes it unimportable: the plain-text tables are used
    (tmp_path / "rich").mkdir()
    (tmp_path / "rich" / "__init__.py").write_text("raise ImportError('no rich here')\n")
    out = _cli("presets", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "production" in out.stdout
    assert "----" in out.stdout


def test_chaos_in_production_warns() -> None:
    pytest.importorskip("resilience.chaos")
    data = {"operations": {"x": {"chaos": {"error_rate": 0.1}}}}
    with pytest.warns(config.ChaosInProductionWarning, match="x"):
        cfg = load(data=data, environ={"RESILIENCE_ENV": "production"})
    assert cfg.warnings
    assert load(data=data, environ={"RESILIENCE_ENV": "staging"}).warnings == ()


def test_chaos_needs_the_fault_injection_policy() -> None:
    try:
        import resilience.chaos  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="not available"):
            load(data={"operations": {"x": {"chaos": {"error_rate": 0.1}}}}, environ={})
    else:
        load(data={"operations": {"x": {"chaos": {"error_rate": 0.1}}}}, environ={})


def test_environment_variables_still_override_a_registered_operation() -> None:
    env = {"RESILIENCE_ENV": "testing", "RESILIENCE__OPERATIONS__NEW_OP__TIMEOUT": "2.5"}
    cfg = load(data={}, environ=env)
    assert cfg.operation("new.op").timeout.seconds == 2.5  # type: ignore[union-attr]
    new = cfg.with_operation("new.op", {"timeout": 9.0, "retry": {"max_attempts": 1}})
    op = new.operation("new.op")
    assert op.timeout.seconds == 2.5  # type: ignore[union-attr]
    assert op.retry.max_attempts == 1  # type: ignore[union-attr]
    origins = {k: o for k, _, o in new.explain("new.op")}
    assert origins["timeout"] == "RESILIENCE__OPERATIONS__NEW_OP__TIMEOUT"
    assert origins["retry.max_attempts"] == "register()"
