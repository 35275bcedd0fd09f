"""resilience.config: detection, presets, precedence, errors, files, env variables, CLI."""

from __future__ import annotations

import json
import os
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


SRC = str(Path(rs.__file__).resolve().parent.parent)  # the tree under test, not an install


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(env or {})
    # the child imports the tree under test first (a directory given by a test goes before it)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), SRC]))
    return subprocess.run(
        [sys.executable, "-m", "resilience", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **env},
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
    assert "open 30 s doubling to 300 s" in out.stdout  # production's breaker

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


def test_cli_subprocesses_run_the_tree_under_test(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import resilience; print(resilience.__file__)"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert Path(out.stdout.strip()).resolve() == Path(rs.__file__).resolve()


# --- durations written as strings ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0),
     ("PT1M", 60.0), ("PT0.5S", 0.5), ("1h30m", 5400.0), ("45", 45.0), (" 250 ms ", 0.25)],
)  # fmt: skip
def test_durations_as_strings(text: str, seconds: float) -> None:
    from resilience._duration import parse_duration

    assert parse_duration(text) == seconds


def test_every_seconds_setting_accepts_a_duration_string() -> None:
    table = {
        "timeout": "10s",
        "attempt_timeout": {"seconds": "500ms"},
        "retry": {
            "max_attempts": 3,
            "deadline": "PT1M",
            "max_retry_after": "30s",
            "backoff": {"kind": "exponential", "initial": "100ms", "maximum": "2s"},
            "budget": {"ratio": 0.2, "ttl": "10s"},
        },
        "breaker": {
            "open_duration": "2m",
            "open_duration_max": "1h",
            "slow_call_threshold": "1.5s",
            "window": {"kind": "time", "seconds": "1m"},
        },
        "bulkhead": {"max_concurrent": 2, "max_wait": "250ms"},
        "rate_limit": {"rate": 10, "per": "1m", "max_wait": "1s"},
        "fallback": {"stale_cache": {"max_age": "5m"}},
    }
    p = load(data={"operations": {"x": table}}, environ={}).operation("x")
    assert p.timeout.seconds == 10.0  # type: ignore[union-attr]
    assert p.attempt_timeout.seconds == 0.5  # type: ignore[union-attr]
    r = p.retry
    assert r is not None
    assert (r.deadline, r.max_retry_after) == (60.0, 30.0)
    assert (r.backoff.initial, r.backoff.maximum) == (0.1, 2.0)  # type: ignore[union-attr]
    assert r.budget.ttl == 10.0  # type: ignore[union-attr]
    b = p.breaker
    assert b is not None
    assert (b.open_duration, b.open_duration_max, b.slow_call_threshold) == (120.0, 3600.0, 1.5)
    assert b.window.seconds == 60.0  # type: ignore[union-attr]
    assert p.bulkhead.max_wait == 0.25  # type: ignore[union-attr]
    assert (p.rate_limit.per, p.rate_limit.max_wait) == (60.0, 1.0)  # type: ignore[union-attr]
    assert p.fallback.stale_cache.max_age == 300.0  # type: ignore[union-attr]
    # the built policies got seconds, not strings
    policies = p.policies("x")
    assert policies


def test_yaml_durations_and_environment_durations(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    f = tmp_path / "r.yaml"
    f.write_text("operations:\n  x:\n    timeout: 10s\n    retry: {deadline: PT30S}\n")
    cfg = load(f, environ={"RESILIENCE__OPERATIONS__X__BREAKER__OPEN_DURATION": "1.5s"})
    p = cfg.operation("x")
    assert p.timeout.seconds == 10.0  # type: ignore[union-attr]
    assert p.retry.deadline == 30.0  # type: ignore[union-attr]
    assert p.breaker.open_duration == 1.5  # type: ignore[union-attr]


def test_a_bad_duration_says_what_is_accepted_once() -> None:
    with pytest.raises(ConfigError) as info:
        load(data={"operations": {"x": {"timeout": "ten seconds", "retry": {"deadline": "-1s"}}}},
             environ={})  # fmt: skip
    errors = dict(info.value.errors)
    assert set(errors) == {"operations.x.timeout.seconds", "operations.x.retry.deadline"}
    for message in errors.values():
        assert "'500ms', '10s', '2m'" in message


# --- "did you mean" ------------------------------------------------------------------------


def test_a_percentage_for_a_rate_gets_did_you_mean() -> None:
    with pytest.raises(ConfigError) as info:
        load(data={"defaults": {"breaker": {"failure_rate_threshold": 50},
                                "retry": {"budget": {"ratio": 20}}}}, environ={})  # fmt: skip
    errors = dict(info.value.errors)
    assert "did you mean 0.5?" in errors["defaults.breaker.failure_rate_threshold"]
    assert "did you mean 0.2?" in errors["defaults.retry.budget.ratio"]


def test_misspelt_keys_get_did_you_mean() -> None:
    data = {
        "operation": {},
        "defaults": {
            "retries": {},
            "retry": {"max_attempt": 3, "backoff": {"kind": "exponental"}},
            "breaker": {"open_duraton": 3, "window": {"kind": "time", "bukets": 4}},
        },
    }
    with pytest.raises(ConfigError) as info:
        load(data=data, environ={})
    errors = dict(info.value.errors)
    assert "did you mean 'operations'?" in errors["operation"]
    assert "did you mean 'retry'?" in errors["defaults.retries"]
    assert "did you mean 'max_attempts'?" in errors["defaults.retry.max_attempt"]
    assert "did you mean 'exponential'?" in errors["defaults.retry.backoff.kind"]
    assert "did you mean 'open_duration'?" in errors["defaults.breaker.open_duraton"]
    assert "did you mean 'buckets'?" in errors["defaults.breaker.window.bukets"]
    # a key like nothing accepted gets the list only
    with pytest.raises(ConfigError) as info:
        load(data={"defaults": {"retry": {"zzz": 1}}}, environ={})
    assert "did you mean" not in str(info.value)


# --- open_duration_max follows an explicit open_duration --------------------------------------


def test_open_duration_max_follows_an_explicit_open_duration() -> None:
    data = {
        "operations": {
            "fixed": {"breaker": {"open_duration": 2.0}},
            "grows": {"breaker": {"open_duration": 2.0, "open_duration_max": 20.0}},
            "preset": {},
        }
    }
    cfg = load(data=data, environ={"RESILIENCE_ENV": "production"})
    fixed = cfg.operation("fixed").breaker
    assert fixed is not None
    assert (fixed.open_duration, fixed.open_duration_max) == (2.0, 2.0)
    assert cfg.operation("grows").breaker.open_duration_max == 20.0  # type: ignore[union-attr]
    assert cfg.operation("preset").breaker.open_duration_max == 300.0  # type: ignore[union-attr]
    why = {k: o for k, _, o in cfg.explain("fixed")}["breaker.open_duration_max"]
    assert why.startswith("follows breaker.open_duration (set by file data [operations.fixed])")
    # the built breaker stays open 2 s after each trial that fails: no doubling to 300 s
    from resilience.testing import VirtualClock

    clock = VirtualClock()
    breaker = fixed.build("fixed", clock)
    while breaker.state.value != "open":
        with pytest.raises(ConnectionError):
            breaker.call(_fail)
    for _ in range(3):
        assert breaker.snapshot()["remaining"] == pytest.approx(2.0)  # not 4, 8, 16 s...
        clock.advance(2.0)
        with pytest.raises(ConnectionError):
            breaker.call(_fail)  # the trial fails: open again, for 2 s again
        assert breaker.state.value == "open"


def _fail() -> None:
    raise ConnectionError("down")


def test_open_duration_max_set_in_a_lower_layer_is_kept() -> None:
    data = {
        "defaults": {"breaker": {"open_duration_max": 100.0}},
        "operations": {"x": {"breaker": {"open_duration": 5.0}}},
    }
    cfg = load(data=data, environ={"RESILIENCE_ENV": "production"})
    assert cfg.operation("x").breaker.open_duration_max == 100.0  # type: ignore[union-attr]
    env = {"RESILIENCE_ENV": "staging", "RESILIENCE__OPERATIONS__Y__BREAKER__OPEN_DURATION": "3"}
    cfg = load(data={}, environ=env)
    assert cfg.operation("y").breaker.open_duration_max == 3.0  # type: ignore[union-attr]


# --- register(merge=True) ---------------------------------------------------------------------


BREAKER = {"minimum_calls": 2}


def test_register_merge_patches_and_keeps_the_breaker() -> None:
    previous = config.use(
        load(
            data={"operations": {"pay": {"timeout": 5.0, "retry": False, "breaker": BREAKER}}},
            environ={"RESILIENCE_ENV": "development"},
        )
    )
    try:
        calls = 0

        @rs.resilient("pay")
        def pay() -> None:
            nonlocal calls
            calls += 1
            raise ConnectionError("down")

        for _ in range(3):
            with pytest.raises((ConnectionError, rs.CircuitOpenError)):
                pay()
        with pytest.raises(rs.CircuitOpenError):
            pay()
        cfg = config.register("pay", {"retry": {"max_attempts": 1}}, merge=True)
        op = cfg.operation("pay")
        assert op.retry.max_attempts == 1  # type: ignore[union-attr]
        assert op.timeout.seconds == 5.0  # type: ignore[union-attr]
        assert op.breaker.minimum_calls == 2  # type: ignore[union-attr]
        assert op.retry.max_attempts == 1  # type: ignore[union-attr]
        origins = {k: o for k, _, o in cfg.explain("pay")}
        assert origins["timeout"] == "file data [operations.pay]"
        assert origins["retry.max_attempts"] == "register()"
        # the breaker's settings did not change: it is the same breaker, still open
        before = calls
        with pytest.raises(rs.CircuitOpenError):
            pay()
        assert calls == before
        # two patches stack; replacing (the default) drops them and the file's table
        cfg = config.register("pay", {"timeout": "2s"}, merge=True)
        assert cfg.operation("pay").retry.max_attempts == 1  # type: ignore[union-attr]
        assert cfg.operation("pay").timeout.seconds == 2.0  # type: ignore[union-attr]
        cfg = config.register("pay", {"retry": {"max_attempts": 1}})
        assert cfg.operation("pay").timeout.seconds == 30.0  # type: ignore[union-attr]
        assert cfg.operation("pay").breaker.minimum_calls == 5  # type: ignore[union-attr]
        with pytest.raises(ConnectionError):
            pay()  # a new breaker (its settings changed): closed
        # an invalid patch changes nothing
        with pytest.raises(ConfigError):
            config.register("pay", {"retry": {"max_attempts": 0}}, merge=True)
        assert config.current() is cfg
    finally:
        config.use(previous)


# --- environment variables -----------------------------------------------------------------


def test_the_deeper_environment_variable_wins() -> None:
    op = "RESILIENCE__OPERATIONS__X__RETRY"
    for env in (
        {op: "{max_attempts=5}", f"{op}__MAX_ATTEMPTS": "2"},
        # the variables' names sort the other way round: still the deeper one
        {f"{op}__BACKOFF": '{kind="constant", delay=0.5}', f"{op}__BACKOFF__DELAY": "0.25",
         op: '{max_attempts=2, backoff={kind="constant", delay=1.0}}'},
        {"RESILIENCE__OPERATIONS__x__RETRY__MAX_ATTEMPTS": "2",
         "RESILIENCE__OPERATIONS__X__RETRY": "{max_attempts=5}"},
    ):  # fmt: skip
        cfg = load(data={"operations": {"x": {}}}, environ={"RESILIENCE_ENV": "testing", **env})
        retry = cfg.operation("x").retry
        assert retry is not None
        assert retry.max_attempts == 2, env
        origins = {k: o for k, _, o in cfg.explain("x")}
        deepest = max(env, key=lambda v: v.count("__"))
        key = "retry.backoff.delay" if "DELAY" in deepest else "retry.max_attempts"
        assert origins[key] == deepest
        if "DELAY" in deepest:
            assert retry.backoff.delay == 0.25  # type: ignore[union-attr]
    # the same depth for [defaults] and an operation: the operation's wins
    env = {
        "RESILIENCE__DEFAULTS__RETRY__MAX_ATTEMPTS": "4",
        "RESILIENCE__OPERATIONS__X__RETRY": "{max_attempts=2}",
    }
    cfg = load(data={}, environ=env)
    assert cfg.operation("x").retry.max_attempts == 2  # type: ignore[union-attr]


def test_operations_only_in_the_environment_are_listed_and_noted() -> None:
    env = {"RESILIENCE__OPERATIONS__PAYMNT_CHARGE__TIMEOUT": "1",
           "RESILIENCE__OPERATIONS__SEARCH__TIMEOUT": "2"}  # fmt: skip
    cfg = load(data={"operations": {"payment.charge": {}}}, environ=env)
    assert cfg.environment_operations == {
        "paymnt_charge": ("RESILIENCE__OPERATIONS__PAYMNT_CHARGE__TIMEOUT",),
        "search": ("RESILIENCE__OPERATIONS__SEARCH__TIMEOUT",),
    }
    notes = [w for w in cfg.warnings if "not declared" in w]
    assert len(notes) == 2
    assert "did you mean 'payment.charge'?" in notes[0]
    assert "did you mean" not in notes[1]
    # a declared operation's variables are no note
    cfg = load(data={"operations": {"payment.charge": {}}},
               environ={"RESILIENCE__OPERATIONS__PAYMENT_CHARGE__TIMEOUT": "1"})  # fmt: skip
    assert cfg.warnings == ()
    assert cfg.environment_operations == {}


@pytest.mark.parametrize(
    "module",
    ["resilience._duration", "resilience.config._models", "resilience.config._merge",
     "resilience.config._load", "resilience.config._active"],
)  # fmt: skip
def test_config_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    previous = config.use(None)
    try:
        result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    finally:
        config.use(previous)
    assert result.attempted > 0
    assert result.failed == 0
