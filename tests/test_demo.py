"""`resilience demo`: real local services, real primitives, real (short) time.

The demo's exit status is its own verdict (every act showed what it should); these tests also
read the story it tells, act by act, so a demo that printed "ok" without the events behind it
would fail here.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

import pytest

import resilience as rs
from resilience import events
from resilience._demo import FlakyService, RetryAct, _run, fetch, post, run_demo

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _acts(text: str) -> dict[str, str]:
    """The output of each act, by the first word of its title (up to the next act)."""
    parts = re.split(r"^== \d+/\d+ ", text, flags=re.M)
    acts = {part.split()[0].strip(":").lower(): part for part in parts[1:]}
    summary = acts[list(acts)[-1]].partition("== Summary")
    acts[list(acts)[-1]] = summary[0]
    return acts


def _unwrap(text: str) -> str:
    """The act's lines with the wrapped figures joined back into one line."""
    return re.sub(r"\n {5}(?=\S)", " ", text)


def _after(text: str, marker: str) -> str:
    assert marker in text, (marker, text)
    return text.partition(marker)[2]


def _check_retry(text: str) -> None:
    assert "retry: attempt 1 failed" in text
    m = re.search(
        r"=> ok: the service failed (\d+) of (\d+) requests .*; (\d+) of (\d+) calls", text
    )
    assert m, text
    failed, requests, served, calls = map(int, m.groups())
    assert served == calls > 0  # every call served...
    assert 0 < failed < requests  # ...although the service really failed some requests
    figures = re.search(r"(\d+) calls, (\d+) served, (\d+) retries", text)
    assert figures, text
    assert int(figures.group(3)) >= failed


def _check_breaker(text: str) -> None:
    transitions = re.findall(r"\] breaker (\w+) -> (\w+)", text)
    assert ("closed", "open") in transitions, text
    assert ("open", "half_open") in transitions, text
    # the breaker opened before it closed again, and ended closed
    assert transitions.index(("closed", "open")) < transitions.index(("half_open", "closed"))
    assert transitions[-1] == ("half_open", "closed"), text
    m = re.search(r"(\d+) calls: (\d+) ok, (\d+) failed, (\d+) rejected", text)
    assert m, text
    calls, ok, failed, rejected = map(int, m.groups())
    assert calls == ok + failed + rejected
    assert ok > 0
    assert failed > 0
    assert rejected >= 10  # while open it rejected instead of calling the service
    assert failed < rejected  # the breaker, not the dead service, answered most calls
    assert re.search(r"a rejection took \d+ us on average", text)
    assert "final state: closed" in text


def _check_fallback(text: str) -> None:
    outage = _after(text, "-- outage:")
    assert "fallback: using cached data (DegradationLevel.CACHE_ONLY" in outage
    recovery = _after(outage, "-- recovery:")
    assert "fallback: live data again (DegradationLevel.FULL)" in recovery
    m = re.search(
        r"(\d+) calls: FULL (\d+), CACHE_ONLY (\d+) .* default (\d+), unanswered (\d+)", text
    )
    assert m, text
    calls, full, cached, default, unanswered = map(int, m.groups())
    assert calls == full + cached
    assert full > 0
    assert cached > 0
    assert default == unanswered == 0


def _check_failover(text: str) -> None:
    stopped = re.search(r"primary server stopped: port (\d+) closed", text)
    assert stopped, text
    moved = _after(text, stopped.group(0))
    assert (
        "a call to the primary failed (connection refused) and was served by the secondary" in moved
    )
    assert "failover primary -> secondary" in moved
    back = _after(moved, f"primary server started again on port {stopped.group(1)}")
    assert "health check of primary: passed" in back
    assert "failover secondary -> primary" in back
    m = re.search(
        r"(\d+) calls: primary (\d+), secondary (\d+) \((\d+) moved mid-call\), lost (\d+)", text
    )
    assert m, text
    calls, primary, secondary, moved_calls, lost = map(int, m.groups())
    assert calls == primary + secondary
    assert lost == 0
    assert primary > 0
    assert secondary > 0
    assert moved_calls > 0


def _check_queue(text: str) -> None:
    path = re.search(r"rs\.OfflineQueue\('([^']+)'", text)
    assert path, text
    assert not Path(path.group(1)).parent.exists()  # the temporary file and its folder are gone
    assert re.search(r"write 1 \(.+\) failed \(.+\): queued as seq 1", text)
    drain = _after(text, "-- back:")
    m = re.search(r"drain: (\d+) delivered in [\d.]+ s, 0 left; delivery order ([CHNL]+)", drain)
    assert m, text
    assert int(m.group(1)) == len(m.group(2)) >= 10
    assert re.fullmatch(r"C*H*N*L*", m.group(2))  # most urgent first
    assert len(set(m.group(2))) >= 3  # a mix of priorities, not a trivial order
    assert "outbox.db deleted" in text


def _check_story(text: str) -> None:
    acts = {name: _unwrap(part) for name, part in _acts(text).items()}
    assert list(acts) == ["retry", "circuit", "fallback", "failover", "offline"], list(acts)
    _check_retry(acts["retry"])
    _check_breaker(acts["circuit"])
    _check_fallback(acts["fallback"])
    _check_failover(acts["failover"])
    _check_queue(acts["offline"])
    summary = _after(text, "== Summary")
    for label in ("retry", "circuit breaker", "fallback", "failover", "offline queue"):
        assert re.search(rf"^ \d  {label} +ok ", summary, flags=re.M), (label, summary)
    checks = re.findall(r"^  \[(ok|FAIL)\] ", summary, flags=re.M)
    assert checks == ["ok"] * 16, summary
    m = re.search(r"demo finished in ([\d.]+) s: 5 of 5 acts showed what they should", summary)
    assert m, summary
    assert float(m.group(1)) < 15  # aim: ~4 s with --fast, on a loaded shared machine too


def _demo_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("resilience-demo-")]


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
    assert elapsed < 20, f"demo --fast took {elapsed:.1f} s"


def test_run_demo_in_process_cleans_up() -> None:
    before = set(threading.enumerate())
    out = io.StringIO()  # not a terminal: plain lines even without plain=True
    assert run_demo(fast=True, out=out) == 0
    text = out.getvalue()
    _check_story(text)
    assert "\x1b[" not in text
    assert not events.enabled  # the demo's listeners are gone
    assert not _demo_threads()  # every server thread was stopped
    deadline = time.monotonic() + 2.0
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)  # request threads are joined by server_close(); allow a moment
    assert not set(threading.enumerate()) - before


def test_a_demo_that_does_not_show_its_point_exits_1() -> None:
    # The retry act without retries: the flaky service's failures reach the caller, and the
    # demo says so instead of claiming success.
    class NoRetry(RetryAct):
        def __init__(self, service: FlakyService, fast: bool) -> None:
            super().__init__(service, fast)
            self.retry = rs.Retry(max_attempts=1, name="demo-retry")

    out = io.StringIO()
    assert _run([NoRetry], True, True, out) == 1
    text = out.getvalue()
    assert "=> FAILED: the service failed" in text
    assert re.search(r"\[FAIL\] 1 retry: every call was served \((\d+) of (\d+)\)", text)
    assert "[FAIL] 1 retry: each failed request was retried (0 retries)" in text
    assert "0 of 1 acts showed what they should" in text


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_view_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "160")
    out = FakeTerminal()
    assert run_demo(fast=True, plain=False, out=out, acts=["circuit breaker", "failover"]) == 0
    text = out.getvalue()
    assert "\x1b[" in text  # drawn with terminal escapes
    plain = ANSI.sub("", text)
    for word in ("phase", "service", "healthy", "outage", "recovery", "rejected", "breaker open"):
        assert word in plain, word
    for word in ("primary stopped", "active tier: secondary", "moved", "lost"):
        assert word in plain, word
    assert "== 1/2 Circuit breaker" in plain
    assert "== 2/2 Failover" in plain
    assert "Summary" in plain
    assert "✓ traffic returned to the primary" in plain
    assert "2 of 2 acts showed what they should (7 of 7 checks passed)" in plain
    assert not events.enabled
    assert not _demo_threads()


def test_flaky_service_modes_and_how_urllib_errors_classify() -> None:
    with FlakyService() as service:
        assert fetch(service.url)["ok"] is True
        service.mode = "down"
        errors: list[Exception] = []
        for _ in range(4):
            try:
                fetch(service.url)
            except Exception as exc:
                errors.append(exc)
        with pytest.raises(urllib.error.HTTPError):
            fetch(service.health_url)  # the health check says so too
        service.mode = "up"
        assert fetch(service.url)["ok"] is True
        assert service.requests == 6  # health checks are not counted
    assert len(errors) == 4  # nothing succeeded while down
    http_errors = [e for e in errors if isinstance(e, urllib.error.HTTPError)]
    dropped = [e for e in errors if not isinstance(e, urllib.error.HTTPError)]
    assert http_errors
    assert dropped
    for e in http_errors:
        assert (e.code, e.headers["Retry-After"]) == (503, "1")
    # what the breaker sees: urllib's 503 (by its .status) and the dropped connection are
    # both TRANSIENT, and the 503's Retry-After is read
    for err in errors:
        assert rs.DEFAULT_CLASSIFIER.classify(err).verdict is rs.Verdict.TRANSIENT, repr(err)
    assert rs.DEFAULT_CLASSIFIER.classify(http_errors[0]).retry_after == 1.0


def test_flaky_mode_fails_about_30_percent_never_4_in_a_row() -> None:
    with FlakyService(seed=3) as service:
        service.mode = "flaky"
        outcomes = []
        answers = []
        for _ in range(200):
            try:
                fetch(service.url)
                outcomes.append("ok")
            except urllib.error.HTTPError as exc:
                outcomes.append("x")
                answers.append((exc.code, exc.headers["Retry-After"]))
            except OSError:
                outcomes.append("x")
    assert set(answers) == {(503, None)}  # flaky 503s do not ask to wait
    failures = outcomes.count("x")
    assert 40 <= failures <= 80  # ~30% of 200
    assert "xxxx" not in "".join(outcomes)  # so Retry(max_attempts=5) always gets through
    assert service.failures == failures


def test_stopped_for_real_then_back_on_the_same_port() -> None:
    with FlakyService("primary") as service:
        port = service.port
        assert post(service.write_url, {"id": 1})["ok"] is True
        service.stop()
        assert not service.running
        with pytest.raises(urllib.error.URLError) as refused:
            fetch(service.url, timeout=1)
        assert isinstance(refused.value.reason, ConnectionRefusedError)
        service.start()
        assert service.port == port
        assert post(service.write_url, {"id": 2})["ok"] is True
        assert service.received == [{"id": 1}, {"id": 2}]
    assert not service.running
