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
from resilience.demo import ACT_NAMES, FlakyService, fetch, post, run_demo
from resilience.demo._run import _run
from resilience.demo.retry import RetryAct

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
    # timed over loops of rejected calls, not one perf_counter pair per call
    cost = re.search(r"a rejection costs ([\d.]+) us \(best of 5 loops of 200 rejected", text)
    assert cost, text
    assert 0 < float(cost.group(1)) < 1000
    assert "final state: closed" in text


def _check_fallback(text: str) -> None:
    outage = _after(text, "-- outage:")
    assert "fallback: using cached data (DegradationLevel.CACHE_ONLY" in outage
    recovery = _after(outage, "-- recovery:")
    assert "fallback: live data again (DegradationLevel.FULL)" in recovery
    m = re.search(
        r"(\d+) calls: FULL (\d+), CACHE_ONLY (\d+) \((\d+) during the outage, (\d+) after it"
        r".* default (\d+), unanswered (\d+); (\d+) FallbackServed",
        text,
    )
    assert m, text
    calls, full, cached, outage, after, default, unanswered, notices = map(int, m.groups())
    assert calls == full + cached
    assert cached == outage + after == notices
    # one number per fact: the sentence says the same number as the figures
    said = re.search(r"=> ok: (\d+) calls got cached data", text)
    assert said, text
    assert int(said.group(1)) == cached
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


def _check_crdt(text: str) -> None:
    assert "alice (offline): add 'stove'" in text
    assert "bob (offline): add 'tent'" in text
    online = _after(text, "-- online:")
    docs = re.findall(r"\] (alice|bob): +(\{.*\})$", online, flags=re.M)
    assert [who for who, _ in docs] == ["alice", "bob"], online
    assert docs[0][1] == docs[1][1]  # the same document on both
    assert "'tent'" in docs[0][1]  # the concurrent re-add won
    assert "'rope'" not in docs[0][1]  # the remove nobody undid held
    assert "['Camping trip', 'Trip to the coast']" in docs[0][1]  # both titles kept


def _check_config(text: str) -> None:
    loads = re.findall(r"config\.load\(\): environment (\w+) \(from (\w+)\)", text)
    assert loads == [("development", "APP_ENV"), ("production", "APP_ENV")], text
    assert "retry.deadline = 5s (file data" in text  # as the file wrote it, traced by explain()
    opened = re.findall(r"(\w+): the breaker opened after (\d+) failed requests", text)
    assert opened == [("development", "5"), ("production", "20")], text


def _check_migrate(text: str) -> None:
    assert "minimum_calls = 10" in text
    assert "the migrated breaker opened after 10 failed calls" in text
    assert "temporary folder deleted" in text


def _check_metrics(text: str) -> None:
    url = re.search(r"serving (http://127\.0\.0\.1:\d+/metrics)", text)
    assert url, text
    assert 'resilience_retries_total{operation="demo-metrics"}' in text
    facts = re.findall(r"([\w ,:']+): said (\d+), scraped (\d+)", text)
    assert len(facts) == 6, facts  # its own, plus one per earlier act but the CRDTs...
    for what, said, scraped in facts:
        assert said == scraped, what
    with pytest.raises(OSError):
        fetch(url.group(1), timeout=1)  # the endpoint is gone


ALL = ["retry", "circuit", "fallback", "failover", "offline", "crdts:", "config:", "migrate:",
       "metrics:"]  # fmt: skip


def _check_story(text: str, limit: float = 10.0) -> None:
    acts = {name: _unwrap(part) for name, part in _acts(text).items()}
    assert list(acts) == [a.strip(":") for a in ALL], list(acts)
    _check_retry(acts["retry"])
    _check_breaker(acts["circuit"])
    _check_fallback(acts["fallback"])
    _check_failover(acts["failover"])
    _check_queue(acts["offline"])
    _check_crdt(acts["crdts"])
    _check_config(acts["config"])
    _check_migrate(acts["migrate"])
    _check_metrics(acts["metrics"])
    summary = _after(text, "== Summary")
    labels = ("retry", "circuit breaker", "fallback", "failover", "offline queue", "crdt",
              "config", "migrate", "metrics")  # fmt: skip
    for label in labels:
        assert re.search(rf"^ \d  {label} +ok ", summary, flags=re.M), (label, summary)
    checks = re.findall(r"^  \[(ok|FAIL)\] ", summary, flags=re.M)
    assert checks == ["ok"] * 32, summary
    m = re.search(r"demo finished in ([\d.]+) s: 9 of 9 acts showed what they should", summary)
    assert m, summary
    # --fast aims at under 10 s; allow for a loaded 2-core machine
    assert float(m.group(1)) < 2 * limit


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
    assert elapsed < 25, f"demo --fast took {elapsed:.1f} s"


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
    assert "a rejection costs" in plain
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


@pytest.mark.parametrize("act", ["crdt", "config", "migrate", "metrics"])
def test_one_act_runs_alone(act: str) -> None:
    out = io.StringIO()
    assert run_demo(fast=True, act=act, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "== 1/1 " in text
    assert "1 of 1 acts showed what they should" in text
    if act == "metrics":  # alone, it checks its own retries against the service's failures
        assert "this act's retries = the service's failed requests" in text
    assert not events.enabled
    assert not _demo_threads()


def test_the_command_line_runs_one_act_and_knows_the_acts() -> None:
    from resilience.__main__ import DEMO_ACTS

    assert DEMO_ACTS == ACT_NAMES
    result = subprocess.run(
        [sys.executable, "-m", "resilience", "demo", "crdt", "--fast"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== 1/1 CRDTs" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "resilience", "demo", "nope"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "invalid choice: 'nope'" in bad.stderr
    with pytest.raises(ValueError, match="no such act: nope"):
        run_demo(act="nope")


def test_a_metrics_figure_that_disagrees_fails_the_act() -> None:
    # the scrape is compared with what the acts said: an act that misreports is caught
    from resilience.demo._act import Run
    from resilience.demo.metrics import MetricsAct

    class Liar(RetryAct):
        def report(self):  # type: ignore[no-untyped-def]
            self.retries += 1  # says one retry more than happened
            return super().report()

    out = io.StringIO()
    assert _run([Liar, MetricsAct], True, True, out) == 1
    text = out.getvalue()
    assert re.search(r"retry act: retries: said (\d+), scraped (\d+)", text)
    assert "[FAIL] 2 metrics: every figure an earlier act printed is the scraped number" in text
    assert Run().played == {}
