"""`resilience observability`: the shipped alert rules and dashboard name only metrics the
collector really emits, in a run that exercises every primitive."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resilience as rs
from resilience import config
from resilience.metrics import FAMILIES, MetricsCollector
from resilience.testing import VirtualClock

ROOT = Path(__file__).resolve().parent.parent


def _down(*args: Any) -> Any:
    raise ConnectionError("down")


def _emitted_by_every_primitive(namespace: str = "resilience") -> set[str]:
    """The sample names a collector exposes after every primitive has done its work."""
    clock = VirtualClock()
    collector = MetricsCollector(namespace=namespace).attach()
    queue = rs.OfflineQueue(":memory:", name="x.queue", max_attempts=1)
    try:
        br = rs.CircuitBreaker("x.op", minimum_calls=2, clock=clock)  # breaker
        br.call(int)
        rt = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(0.1), clock=clock)  # retry
        with pytest.raises((ConnectionError, rs.CircuitOpenError)):
            rs.Pipeline(rt, br).call(_down)
        with pytest.raises(rs.CircuitOpenError):
            br.call(int)
        chain = rs.FallbackChain(rs.Step(_down), rs.Default(0), name="x.op")  # fallback
        assert chain() == 0
        fo = rs.Failover(  # failover
            [rs.Tier("a", _down), rs.Tier("b", lambda: "b")],
            name="x.fo",
            breaker={"minimum_calls": 2},
            clock=clock,
        )
        for _ in range(4):
            assert fo.call() == "b"
        queue.put({"n": 1})  # queue: depth, enqueued, delivered, dead letters
        queue.put({"n": 2})
        queue.drain(lambda item: _down() if item.payload["n"] == 2 else None)
        limiter = rs.RateLimiter(rate=1, per=60.0, name="x.op", clock=clock)  # rate limiter
        limiter.call(int)
        with pytest.raises(rs.RateLimited):
            limiter.call(int)
        bulkhead = rs.Bulkhead(1, name="x.op")  # bulkhead
        bulkhead.call(int)
        timeout = rs.Timeout(0.01, name="x.op")  # timeout (real cancellation, async)
        with pytest.raises(rs.TimeoutExceeded):
            anyio.run(timeout.acall, anyio.sleep, 5)
        chaos = rs.FaultInjection(error_rate=1.0, name="x.op")  # chaos
        with pytest.raises(ConnectionError):
            chaos.call(int)
        previous = config.use(config.load(environ={"RESILIENCE_ENV": "testing"}))  # config
        config.use(previous)
    finally:
        collector.detach()
        queue.close()
    text = generate_latest(collector.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "resilience", "observability", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _expressions(rules: dict[str, Any], board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the rule file and the dashboard (queries of variables too)."""
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs += [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return exprs


def _names_in(expr: str, namespace: str) -> set[str]:
    return set(re.findall(rf"\b{namespace}_[a-zA-Z0-9_]+", expr))


@pytest.fixture(scope="module")
def emitted() -> set[str]:
    return _emitted_by_every_primitive()


def test_every_family_is_emitted_by_the_run(emitted: set[str]) -> None:
    # the run really exercises everything: each family has at least one sample
    for family in FAMILIES:
        name = f"resilience_{family.name}"
        assert name in emitted or f"{name}_count" in emitted, name


def test_exported_rules_and_dashboard_name_only_emitted_metrics(
    tmp_path: Path, emitted: set[str]
) -> None:
    out = _cli("--alerts", "rules.yml", "--dashboard", "board.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rules = yaml.safe_load((tmp_path / "rules.yml").read_text())
    board = json.loads((tmp_path / "board.json").read_text())

    used = set().union(*(_names_in(e, "resilience") for e in _expressions(rules, board)))
    assert used, "no metric names found in the expressions"
    assert used - emitted == set(), f"named but never emitted: {sorted(used - emitted)}"


def test_the_rules_cover_what_operators_page_on(tmp_path: Path) -> None:
    out = _cli("--alerts", "rules.yml", "--breaker-open-minutes", "7", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rules = yaml.safe_load((tmp_path / "rules.yml").read_text())["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    assert set(by_name) == {
        "ResilienceCircuitOpen",
        "ResilienceFallbackShareHigh",
        "ResilienceRetriesExhausted",
        "ResilienceQueueGrowing",
        "ResilienceDeadLetters",
        "ResilienceRateLimitedShareHigh",
    }
    assert by_name["ResilienceCircuitOpen"]["for"] == "7m"
    for rule in rules:
        notes = rule["annotations"]
        assert notes["summary"], rule["alert"]
        assert notes["description"], rule["alert"]
        assert notes["runbook"].startswith("Runbook:"), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_the_dashboard_has_a_panel_per_family_and_per_operation_variables(
    tmp_path: Path,
) -> None:
    out = _cli("--dashboard", "board.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    board = json.loads((tmp_path / "board.json").read_text())
    titles = [p["title"] for p in board["panels"]]
    assert titles == [f"resilience_{f.name}" for f in FAMILIES]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "operation", "queue", "client"} <= set(variables)
    calls = next(p for p in board["panels"] if p["title"] == "resilience_calls_total")
    assert 'operation=~"$operation"' in calls["targets"][0]["expr"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_a_namespace_is_followed_everywhere(tmp_path: Path) -> None:
    out = _cli("--alerts", "r.yml", "--dashboard", "d.json", "--namespace", "shop", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "r.yml").read_text() + (tmp_path / "d.json").read_text()
    assert "resilience_" not in text.replace("resilience-primitives", "")
    rules = yaml.safe_load((tmp_path / "r.yml").read_text())
    board = json.loads((tmp_path / "d.json").read_text())
    used = set().union(*(_names_in(e, "shop") for e in _expressions(rules, board)))
    assert used
    assert used <= _emitted_by_every_primitive("shop")


def test_nothing_to_write_is_a_usage_error(tmp_path: Path) -> None:
    out = _cli(cwd=tmp_path)
    assert out.returncode == 2
    assert "--alerts" in out.stderr


def test_docstring_examples_run() -> None:
    import doctest

    import resilience._observability as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
