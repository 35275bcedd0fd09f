"""log_events(): stdlib logging and structlog as users configure them, levels, rate limits,
no tracebacks, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilience as rs
from resilience import events
from resilience.metrics import log_events
from resilience.testing import VirtualClock

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_leftover_listeners() -> Iterator[None]:
    yield
    assert not events.enabled, "this test leaked a listener"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    """A child `python -c` with no test hooks: what a user's process does."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )


def _fallback_to_cache(name: str, clock: VirtualClock) -> rs.FallbackChain[Any]:
    up = {"live": True}

    def live(key: str) -> str:
        if not up["live"]:
            raise ConnectionError("down")
        return f"live-{key}"

    chain: rs.FallbackChain[Any] = rs.FallbackChain(
        rs.Step(live), rs.StaleCache(max_age=60), name=name, clock=clock
    )
    chain.execute("k")
    up["live"] = False
    return chain


# --- the standard library ---------------------------------------------------------------------


def test_stdlib_logger_gets_lines_at_the_right_levels(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("t.log.stdlib")
    caplog.set_level(logging.DEBUG, logger="t.log.stdlib")
    clock = VirtualClock()
    stop = log_events(logger, clock=clock)
    try:
        br = rs.CircuitBreaker("t.log.br", minimum_calls=2, open_duration=5, clock=clock)
        for _ in range(2):
            with pytest.raises(ConnectionError):
                br.call(_fail)
        with pytest.raises(rs.CircuitOpenError):
            br.call(int)
        clock.advance(5)
        for _ in range(3):
            br.call(int)
        rt = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(0.1), clock=clock, name="t.rt")
        with pytest.raises(ConnectionError):
            rt.call(_fail)
        served = _fallback_to_cache("t.log.fb", clock).execute("k")
        assert served.level is rs.DegradationLevel.CACHE_ONLY
    finally:
        stop()
    lines = [(r.levelno, r.getMessage().split()[0]) for r in caplog.records]
    assert (logging.WARNING, "state_transition") in lines  # closed -> open
    assert (logging.INFO, "state_transition") in lines  # half_open -> closed
    assert (logging.DEBUG, "call_rejected") in lines  # per call: DEBUG
    assert (logging.DEBUG, "retry_attempted") in lines
    assert (logging.INFO, "retry_gave_up") in lines
    assert (logging.WARNING, "fallback_served") in lines  # CACHE_ONLY
    opened = next(r for r in caplog.records if "to_state=open" in r.getMessage())
    assert "operation=t.log.br from_state=closed to_state=open" in opened.getMessage()
    assert opened.operation == "t.log.br"  # type: ignore[attr-defined]  # extra= fields
    served_line = next(r for r in caplog.records if r.getMessage().startswith("fallback_served"))
    assert served_line.degradation == "CACHE_ONLY"  # type: ignore[attr-defined]
    assert "degradation=CACHE_ONLY" in served_line.getMessage()
    assert not any("outcome=success" in r.getMessage() for r in caplog.records)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out


def _fail() -> None:
    raise ConnectionError("down")


def test_stdlib_in_a_child_process_under_basic_config() -> None:
    # logging.basicConfig(): root at WARNING, a StreamHandler on stderr. The first release
    # raised TypeError for every event and printed a traceback each time.
    code = """
import logging, resilience as rs
from resilience.metrics import log_events
logging.basicConfig(format="%(levelname)s %(message)s")
stop = log_events(logging.getLogger("app.resilience"))
br = rs.CircuitBreaker("child.db", minimum_calls=2)
def down():
    raise ConnectionError("down")
for _ in range(50):
    try:
        br.call(down)
    except (ConnectionError, rs.CircuitOpenError):
        pass
stop()
print("done")
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    # at the default WARNING level: the breaker opening, and nothing per call
    assert lines == ["WARNING state_transition operation=child.db from_state=closed "
                     'to_state=open reason="2 of 2 calls failed"']  # fmt: skip


def test_a_flood_of_rejections_is_rate_limited_with_one_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="t.log.flood")
    clock = VirtualClock()
    stop = log_events(logging.getLogger("t.log.flood"), max_per_second=5, clock=clock)
    br = rs.CircuitBreaker("t.log.flood", clock=clock)
    br.force_open()
    try:
        for _ in range(10_000):
            with pytest.raises(rs.CircuitOpenError):
                br.call(int)
    finally:
        stop()
    rejected = [r for r in caplog.records if r.getMessage().startswith("call_rejected")]
    summary = [r for r in caplog.records if r.getMessage().startswith("log_suppressed")]
    assert len(rejected) == 5
    assert len(summary) == 1
    assert summary[0].suppressed == 9_995  # type: ignore[attr-defined]
    assert summary[0].suppressed_event == "call_rejected"  # type: ignore[attr-defined]
    assert len(caplog.records) <= 5 + 1 + 1  # + the forced_open transition


def test_the_next_window_says_how_many_were_held_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="t.log.window")
    clock = VirtualClock()
    stop = log_events(logging.getLogger("t.log.window"), max_per_second=2, clock=clock)
    try:
        for _ in range(7):
            events.emit(events.CallRejected("t.w", "rate_limited", None))
        clock.advance(1.0)
        events.emit(events.CallRejected("t.w", "rate_limited", None))
        events.emit(events.CallRejected("t.other", "rate_limited", None))  # its own budget
    finally:
        stop()
    msgs = [r.getMessage() for r in caplog.records]
    assert [m.split()[1] for m in msgs] == ["operation=t.w"] * 3 + ["operation=t.other"]
    assert "suppressed=5" in msgs[2]
    assert not any("log_suppressed" in m for m in msgs)  # nothing left held back


def test_levels_below_the_logger_cost_no_line_and_no_rate_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="t.log.info")
    clock = VirtualClock()
    stop = log_events(logging.getLogger("t.log.info"), max_per_second=1, clock=clock)
    try:
        for _ in range(100):
            events.emit(events.RetryAttempted("t.i", 1, 0.1, "transient", "ConnectionError"))
        events.emit(events.StateTransition("t.i", "closed", "open", "x"))
    finally:
        stop()
    assert [r.getMessage().split()[0] for r in caplog.records] == ["state_transition"]


def test_a_logger_adapter_works(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="t.log.adapter")
    adapter = logging.LoggerAdapter(logging.getLogger("t.log.adapter"), {"service": "shop"})
    stop = log_events(adapter)
    try:
        events.emit(events.FailoverSwitched("t.ldap", "dc1", "dc2", "tier 'dc1' is down"))
    finally:
        stop()
    assert caplog.records[0].levelno == logging.WARNING
    assert caplog.records[0].getMessage().startswith("failover_switched operation=t.ldap")


# --- structlog --------------------------------------------------------------------------------


def test_structlog_default_configuration_in_a_child_process() -> None:
    # structlog's defaults include add_log_level, which used to overwrite the fallback's level
    code = """
import structlog, resilience as rs
from resilience.metrics import log_events
from resilience.testing import VirtualClock
clock = VirtualClock()
stop = log_events(structlog.get_logger())
up = [True]
def live(k):
    if not up[0]:
        raise ConnectionError("down")
    return k
chain = rs.FallbackChain(rs.Step(live), rs.StaleCache(max_age=60), name="child.fb", clock=clock)
chain.execute("k")
up[0] = False
print("served", chain.execute("k").level.name)
stop()
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    line = next(x for x in out.stdout.splitlines() if "fallback_served" in x)
    assert "warning" in line
    assert "degradation=CACHE_ONLY" in line
    assert "served CACHE_ONLY" in out.stdout


def test_structlog_with_add_log_level_and_json() -> None:
    import structlog

    buffer = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(buffer),
        cache_logger_on_first_use=False,
    )
    try:
        clock = VirtualClock()
        stop = log_events(structlog.get_logger(), clock=clock)
        try:
            _fallback_to_cache("t.log.json", clock).execute("k")
            events.emit(events.StateTransition("t.log.json", "open", "half_open", ""))
        finally:
            stop()
    finally:
        structlog.reset_defaults()
    lines = [json.loads(x) for x in buffer.getvalue().splitlines()]
    served = next(x for x in lines if x["event"] == "fallback_served")
    assert served["level"] == "warning"  # the log level, as add_log_level writes it
    assert served["degradation"] == "CACHE_ONLY"  # the fallback's level survives
    assert served["source"] == "stale_cache"
    probing = next(x for x in lines if x["event"] == "state_transition")
    assert probing["level"] == "info"


def test_structlog_never_logs_secrets() -> None:
    import structlog
    from structlog.testing import capture_logs

    secret = "sk-live-SECRET-TOKEN"

    def leak(token: str) -> None:
        raise ConnectionError(f"auth failed for {token}")

    with capture_logs() as logs:
        stop = log_events(structlog.get_logger("resilience"))
        try:
            clock = VirtualClock()
            rt = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(1), clock=clock, name="t.s")
            br = rs.CircuitBreaker("t.s.br", minimum_calls=1, clock=clock)
            with pytest.raises((ConnectionError, rs.CircuitOpenError)):
                rs.Pipeline(rt, br).call(leak, secret)
            # reasons that quote an error message are cut down to the error's type
            events.emit(events.FailoverSwitched("t.s.fo", "a", "b", f"tier 'a' is down: "
                                                f"ConnectionError: {secret}"))  # fmt: skip
            events.emit(events.QueueDeadLettered("t.s.q", 3, f"permanent: ValueError: {secret}"))
        finally:
            stop()
    mine = [e for e in logs if str(e.get("operation", "")).startswith("t.s")]
    kinds = {(e["event"], e["log_level"]) for e in mine}
    assert ("retry_attempted", "debug") in kinds
    assert ("state_transition", "warning") in kinds
    attempted = next(e for e in mine if e["event"] == "retry_attempted")
    assert (attempted["attempt"], attempted["error"]) == (1, "ConnectionError")
    switched = next(e for e in mine if e["event"] == "failover_switched")
    assert switched["reason"] == "tier 'a' is down: ConnectionError"
    dead = next(e for e in mine if e["event"] == "queue_dead_lettered")
    assert dead["reason"] == "permanent: ValueError"
    assert secret not in repr(logs)


def test_the_default_logger_is_structlog() -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        stop = log_events()
        try:
            events.emit(events.ConfigChanged("*", "production"))
        finally:
            stop()
    assert logs == [
        {"event": "config_changed", "log_level": "info", "operation": "*",
         "environment": "production"}
    ]  # fmt: skip


# --- loggers that do not fit ------------------------------------------------------------------


def test_a_print_like_logger_gets_rendered_lines() -> None:
    lines: list[str] = []

    class Plain:
        def debug(self, msg: str) -> None:
            lines.append(msg)

        info = warning = debug

    stop = log_events(Plain())
    try:
        events.emit(events.TierRecovered("t.p", "dc1"))
    finally:
        stop()
    assert lines == ["tier_recovered operation=t.p tier=dc1"]


def test_a_broken_logger_never_breaks_the_call_nor_prints_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Broken:
        def debug(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("logging backend down")

        info = warning = debug

    stop = log_events(Broken())
    try:
        br = rs.CircuitBreaker("t.broken", minimum_calls=1)
        with pytest.raises(ConnectionError):
            br.call(_fail)
        for _ in range(3):
            with pytest.raises(rs.CircuitOpenError):
                br.call(int)
    finally:
        stop()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("resilience.log_events:") == 1  # said once, not per event


def test_bad_max_per_second_is_a_config_error() -> None:
    with pytest.raises(rs.ConfigError, match="max_per_second"):
        log_events(logging.getLogger("x"), max_per_second=0)


def test_a_logger_above_debug_keeps_the_breakers_fast_path() -> None:
    logger = logging.getLogger("t.log.fast")
    logger.setLevel(logging.INFO)
    stop = log_events(logger)
    try:
        assert events.enabled
        assert not events.per_call  # nothing per call will be logged: none is emitted
    finally:
        stop()
        logger.setLevel(logging.NOTSET)
    logger.setLevel(logging.DEBUG)
    stop = log_events(logger)
    try:
        assert events.per_call
    finally:
        stop()
        logger.setLevel(logging.NOTSET)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0, 2.5])),
        max_size=120,
    ),
    st.sampled_from([1, 2, 5]),
)
def test_rate_limit_law_nothing_lost_and_never_over_the_limit(
    script: list[tuple[str, float]], limit: int
) -> None:
    lines: list[tuple[float, dict[str, Any]]] = []
    clock = VirtualClock()

    class Capture:
        def debug(self, event: str, **fields: Any) -> None:
            lines.append((clock.monotonic(), {"event": event, **fields}))

        info = warning = debug

    stop = log_events(Capture(), max_per_second=limit, clock=clock)
    try:
        for op, advance in script:
            clock.advance(advance)
            events.emit(events.CallRejected(op, "rate_limited", None))
    finally:
        stop()
    for op in ("a", "b"):
        sent = sum(1 for o, _ in script if o == op)
        mine = [(t, f) for t, f in lines if f["operation"] == op]
        written = [t for t, f in mine if f["event"] == "call_rejected"]
        held = sum(f.get("suppressed", 0) for _, f in mine)
        assert len(written) + held == sent  # every event is a line or counted in one
        # windows of one second, each opened by the first line after the last one ended:
        # never more than `limit` lines in one
        start, count = None, 0
        for t in written:
            if start is None or t - start >= 1.0:
                start, count = t, 0
            count += 1
            assert count <= limit
