"""`resilience demo`: a real local service, a real breaker, real (short) time."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resilience import events
from resilience._demo import FlakyService, fetch, run_demo

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _check_story(text: str) -> None:
    transitions = re.findall(r"breaker (\w+) -> (\w+)", text)
    assert ("closed", "open") in transitions, text
    assert ("open", "half_open") in transitions, text
    assert ("half_open", "closed") in transitions, text
    # the breaker opened before it closed again, and ended closed
    assert transitions.index(("closed", "open")) < transitions.index(("half_open", "closed"))
    assert transitions[-1] == ("half_open", "closed"), text
    assert "final state: closed" in text
    summary = re.search(
        r"calls (\d+), successes (\d+), failures (\d+), rejections (\d+), time ([\d.]+) s", text
    )
    assert summary, text
    calls, successes, failures, rejections = map(int, summary.groups()[:4])
    assert calls == successes + failures + rejections
    assert successes > 0
    assert failures > 0
    assert rejections >= 10  # while open it rejected instead of calling the service
    assert failures < rejections  # the breaker, not the dead service, answered most calls
    assert re.search(r"a rejection took \d+ us on average", text)


def test_demo_command_runs_by_itself_and_tells_the_story() -> None:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "resilience", "demo", "--fast", "--plain"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    _check_story(result.stdout)
    assert "\x1b[" not in result.stdout  # plain: no terminal escapes
    assert elapsed < 30, f"demo --fast took {elapsed:.1f} s"


def test_run_demo_in_process() -> None:
    out = io.StringIO()  # not a terminal: plain lines even without plain=True
    start = time.monotonic()
    assert run_demo(fast=True, out=out) == 0
    assert time.monotonic() - start < 30
    _check_story(out.getvalue())
    assert "\x1b[" not in out.getvalue()
    assert not events.enabled  # the demo's listener is gone


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_view_on_a_terminal() -> None:
    pytest.importorskip("rich")
    out = FakeTerminal()
    assert run_demo(fast=True, plain=False, out=out) == 0
    text = out.getvalue()
    assert "\x1b[" in text  # drawn with terminal escapes
    for word in ("phase", "healthy", "outage", "recovery", "rejected"):
        assert word in text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    _check_story(plain)


def test_flaky_service_modes_and_how_urllib_errors_classify() -> None:
    import urllib.error

    import resilience as rs

    with FlakyService() as service:
        assert fetch(service.url)["ok"] is True
        service.mode = "down"
        errors: list[Exception] = []
        for _ in range(4):
            try:
                fetch(service.url)
            except Exception as exc:
                errors.append(exc)
        service.mode = "up"
        assert fetch(service.url)["ok"] is True
        assert service.requests == 6
    assert len(errors) == 4  # nothing succeeded while down
    http_errors = [e for e in errors if isinstance(e, urllib.error.HTTPError)]
    dropped = [e for e in errors if not isinstance(e, urllib.error.HTTPError)]
    assert http_errors
    assert dropped
    for e in http_errors:
        assert (e.code, e.headers["Retry-After"]) == (503, "1")
    # what the breaker sees: urllib's 503 (by its .status) and the dropped connection are
    # both TRANSIENT, and the 503's Retry-After is read
    for e in errors:
        assert rs.DEFAULT_CLASSIFIER.classify(e).verdict is rs.Verdict.TRANSIENT, repr(e)
    assert rs.DEFAULT_CLASSIFIER.classify(http_errors[0]).retry_after == 1.0
