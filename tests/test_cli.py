"""The `resilience` command as a user runs it: a child process importing the tree under test."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import resilience as rs
from resilience import config

ROOT = Path(__file__).resolve().parent.parent
SRC = str(Path(rs.__file__).resolve().parent.parent)  # the tree under test, not an install


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resilience", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SRC, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version(tmp_path: Path) -> None:
    out = _cli("--version", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"resilience-primitives {rs.__version__}"


def test_validate_without_a_file_reads_the_discovered_config_and_the_environment(
    tmp_path: Path,
) -> None:
    out = _cli("config", "validate", cwd=tmp_path)  # nothing to discover: the presets
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no config file found (presets): valid (0 operations;")
    (tmp_path / "resilience.toml").write_text('[operations."payment.charge"]\ntimeout = "10s"\n')
    out = _cli("config", "validate", cwd=tmp_path, env={"RESILIENCE_ENV": "staging"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("resilience.toml: valid (1 operation;")
    assert "environment staging from RESILIENCE_ENV" in out.stdout
    assert out.stderr == ""
    # an environment variable is validated too, and named in the error
    bad = {"RESILIENCE__OPERATIONS__PAYMENT_CHARGE__RETRY__MAX_ATTEMPTS": "0"}
    out = _cli("config", "validate", cwd=tmp_path, env=bad)
    assert out.returncode == 1
    assert 'operations."payment.charge".retry.max_attempts: must be >= 1, got 0' in out.stderr
    assert "(set by RESILIENCE__OPERATIONS__PAYMENT_CHARGE__RETRY__MAX_ATTEMPTS)" in out.stderr
    # $RESILIENCE_CONFIG is discovered as well
    (tmp_path / "other.json").write_text('{"operations": {"a": {}, "b": {}}}')
    out = _cli("config", "validate", cwd=tmp_path, env={"RESILIENCE_CONFIG": "other.json"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("other.json: valid (2 operations;")


def test_operations_only_in_the_environment_are_warned_about_and_shown(tmp_path: Path) -> None:
    (tmp_path / "resilience.toml").write_text('[operations."payments.charge"]\ntimeout = 5\n')
    env = {"RESILIENCE__OPERATIONS__PAYMENT_CHARGE__TIMEOUT": "1"}
    out = _cli("config", "validate", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "1 more only in the environment" in out.stdout
    assert (
        "warning: RESILIENCE__OPERATIONS__PAYMENT_CHARGE__TIMEOUT: operation 'payment_charge' is "
        "not declared in resilience.toml"
    ) in out.stderr
    assert "did you mean 'payments.charge'?" in out.stderr

    out = _cli("config", "show", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert 'operation "payments.charge"' in out.stdout
    assert (
        'operation "payment_charge" (only in the environment: '
        "RESILIENCE__OPERATIONS__PAYMENT_CHARGE__TIMEOUT)"
    ) in out.stdout
    assert "warning: RESILIENCE__OPERATIONS__PAYMENT_CHARGE__TIMEOUT" in out.stderr
    out = _cli("config", "explain", "payment.charge", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "(not declared: defaults and environment variables apply)" in out.stdout
    assert "RESILIENCE__OPERATIONS__PAYMENT_CHARGE__TIMEOUT" in out.stdout
    # no variable, no warning
    out = _cli("config", "show", cwd=tmp_path)
    assert out.stderr == ""
    assert "only in the environment" not in out.stdout


def test_explain_documents_the_open_duration_rule(tmp_path: Path) -> None:
    (tmp_path / "resilience.toml").write_text("[operations.pay]\nbreaker = { open_duration = 2 }\n")
    # plain-text tables (a shadowed `rich`): one row per line, nothing wrapped
    (tmp_path / "rich").mkdir()
    (tmp_path / "rich" / "__init__.py").write_text("raise ImportError('no rich here')\n")
    env = {"RESILIENCE_ENV": "production", "PYTHONPATH": os.pathsep.join([str(tmp_path), SRC])}
    out = _cli("config", "explain", "pay", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "open_duration_max" in line)
    assert row.split()[:2] == ["breaker.open_duration_max", "2"]
    assert row.endswith(
        "follows breaker.open_duration (set by file resilience.toml [operations.pay]); "
        "set breaker.open_duration_max to let it grow"
    )


def test_presets_show_the_open_duration_doubling(tmp_path: Path) -> None:
    out = _cli("presets", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    flat = " ".join(out.stdout.split())
    for name, preset in config.PRESETS.items():
        b = preset.breaker
        if b is not None and b.open_duration_max is not None:
            assert f"open {b.open_duration:g} s doubling to {b.open_duration_max:g} s" in flat, name
    assert "open 5 s doubling" not in flat  # development's breaker does not double


def test_demo_refuses_an_unknown_act(tmp_path: Path) -> None:
    out = _cli("demo", "--help", cwd=tmp_path)
    assert out.returncode == 0
    for act in ("retry", "crdt", "config", "migrate", "metrics"):
        assert act in out.stdout


# --- the CLI page of the docs ----------------------------------------------------------------


def _hook() -> object:
    spec = importlib.util.spec_from_file_location("cli_hook", ROOT / "docs" / "_hooks" / "cli.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_page_is_generated_from_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    from resilience.__main__ import _parser

    hook = _hook()
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert hook.MARKER in page  # type: ignore[attr-defined]
    monkeypatch.setenv("COLUMNS", "100")
    text = hook.on_page_markdown(page, page=None)  # type: ignore[attr-defined]
    assert hook.MARKER not in text  # type: ignore[attr-defined]
    assert _parser().format_help().rstrip() in text
    for command in ("demo", "config", "config show", "config validate", "config explain",
                    "presets", "migrate", "soak", "observability"):  # fmt: skip
        assert f"## resilience {command}\n" in text, command
    assert "--version" in text
    assert os.environ["COLUMNS"] == "100"  # put back as it was


# --- help texts and bad input, as a new user meets them ----------------------------------------


def _subcommand_parsers() -> dict[str, object]:
    import argparse

    from resilience.__main__ import _parser

    out: dict[str, object] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out[f"{prefix}{name}"] = sub
                    walk(sub, f"{prefix}{name} ")

    walk(_parser(), "")
    return out


def test_every_subcommand_and_option_has_help_and_a_description() -> None:
    import argparse

    parsers = _subcommand_parsers()
    assert set(parsers) >= {"demo", "config show", "config validate", "config explain",
                            "presets", "migrate", "soak", "observability"}  # fmt: skip
    for name, parser in parsers.items():
        assert isinstance(parser, argparse.ArgumentParser)
        assert parser.description, f"resilience {name} --help has no description"
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"resilience {name}: {action.dest} has no help"


def test_the_top_level_help_names_every_command() -> None:
    from resilience.__main__ import _parser

    description = _parser().description or ""
    for word in ("demo", "config", "presets", "migrat", "soak", "alert", "dashboard"):
        assert word in description, word


def test_config_validate_takes_the_file_as_an_option_too(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text("[operations.a]\nretry = { max_attempts = 0 }\n")
    out = _cli("config", "validate", "--file", "mine.toml", cwd=tmp_path)
    assert out.returncode == 1
    assert "operations.a.retry.max_attempts" in out.stderr
    both = _cli("config", "validate", "mine.toml", "-f", "mine.toml", cwd=tmp_path)
    assert both.returncode == 2
    assert "give the file once" in both.stderr


def test_observability_bad_options_are_listed_not_a_traceback(tmp_path: Path) -> None:
    out = _cli("observability", "--alerts", "a.yml", "--namespace", "bad name",
               "--fallback-share", "5", "--breaker-open-minutes", "0", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "3 invalid settings" in out.stderr
    for field in ("namespace", "fallback_share", "breaker_open_minutes"):
        assert field in out.stderr
    assert not (tmp_path / "a.yml").exists()  # nothing half-written


def test_observability_unwritable_output_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    out = _cli("observability", "--alerts", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == f"cannot write {tmp_path}: Is a directory"
    missing = tmp_path / "no" / "such" / "dashboard.json"
    out = _cli("observability", "--dashboard", str(missing), cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"cannot write {missing}" in out.stderr


def test_observability_without_a_namespace_writes_bare_metric_names(tmp_path: Path) -> None:
    out = _cli("observability", "--alerts", "a.yml", "--namespace", "", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "resilience_calls_total" not in (tmp_path / "a.yml").read_text()
    assert "calls_total" in (tmp_path / "a.yml").read_text()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_ctrl_c_ends_a_soak_with_one_line_and_status_130(tmp_path: Path) -> None:
    import signal
    import time

    child = subprocess.Popen(
        [sys.executable, "-m", "resilience", "soak", "--duration", "60", "--workers", "2"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SRC},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(os.listdir(f"/proc/{child.pid}/task")) < 3:  # the workers are running
            assert time.monotonic() < deadline, "the soak's workers never started"
            assert child.poll() is None, child.communicate()
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip() == "resilience soak: interrupted"
