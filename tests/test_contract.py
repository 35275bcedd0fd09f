"""Acceptance tests: DESIGN.md's "Public API (the contract)", line by line, as written there.

Outcomes and classification, circuit breaker, retry. The rest of the contract is in
tests/test_contract_*.py. Every call here uses exactly the names, keywords and defaults the
contract shows; time is a VirtualClock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
from typing import Any

import pytest

import resilience as rs
from resilience.testing import VirtualClock

# --- outcomes and classification -------------------------------------------------------------


def test_verdict_members() -> None:
    assert issubclass(rs.Verdict, enum.Enum)
    assert {v.name for v in rs.Verdict} >= {"SUCCESS", "TRANSIENT", "PERMANENT", "RATE_LIMITED"}


def test_classification_is_frozen_with_the_three_fields() -> None:
    c = rs.Classification(rs.Verdict.TRANSIENT, 1.5, "why")
    assert (c.verdict, c.retry_after, c.reason) == (rs.Verdict.TRANSIENT, 1.5, "why")
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        c.verdict = rs.Verdict.SUCCESS  # type: ignore[misc]


class _HTTPError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status_code = status
        self.headers = headers or {}


class _Response:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}


class _WrappedHTTPError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = _Response(status, headers)


def test_classifier_as_written() -> None:
    clf = rs.Classifier(
        transient=(ConnectionError, TimeoutError),
        permanent=(ValueError,),
        http_status={429: rs.Verdict.RATE_LIMITED, 503: rs.Verdict.TRANSIENT},
        result=None,
    )
    got = clf.classify(ConnectionResetError("x"))  # a subclass matches
    assert isinstance(got, rs.Classification)
    assert got.verdict is rs.Verdict.TRANSIENT
    assert clf.classify(UnicodeDecodeError("utf-8", b"", 0, 1, "x")).verdict is rs.Verdict.PERMANENT
    assert clf.classify(_HTTPError(429)).verdict is rs.Verdict.RATE_LIMITED
    # merged over the defaults: codes not named keep their default verdicts
    assert clf.classify(_HTTPError(502)).verdict is rs.Verdict.TRANSIENT
    assert clf.classify(_HTTPError(404)).verdict is rs.Verdict.PERMANENT
    # a result is SUCCESS with result=None
    assert clf.classify("fine").verdict is rs.Verdict.SUCCESS


def test_classifier_http_status_overrides_a_default() -> None:
    clf = rs.Classifier(http_status={404: rs.Verdict.TRANSIENT})
    assert clf.classify(_HTTPError(404)).verdict is rs.Verdict.TRANSIENT
    assert clf.classify(_HTTPError(503)).verdict is rs.Verdict.TRANSIENT  # default kept


def test_classifier_result_callable() -> None:
    clf = rs.Classifier(result=lambda r: rs.Verdict.TRANSIENT if r == "retry me" else None)
    assert clf.classify("retry me").verdict is rs.Verdict.TRANSIENT
    assert clf.classify("ok").verdict is rs.Verdict.SUCCESS


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (ConnectionError(), rs.Verdict.TRANSIENT),
        (ConnectionRefusedError(), rs.Verdict.TRANSIENT),
        (TimeoutError(), rs.Verdict.TRANSIENT),
        (asyncio.TimeoutError(), rs.Verdict.TRANSIENT),  # noqa: UP041 (the contract names it)
        (OSError(5, "io"), rs.Verdict.TRANSIENT),
        (FileNotFoundError(), rs.Verdict.PERMANENT),
        (FileExistsError(), rs.Verdict.PERMANENT),
        (PermissionError(), rs.Verdict.PERMANENT),
        (IsADirectoryError(), rs.Verdict.PERMANENT),
        (NotADirectoryError(), rs.Verdict.PERMANENT),
        (KeyError("unknown"), rs.Verdict.PERMANENT),
        (RuntimeError("unknown"), rs.Verdict.PERMANENT),
    ],
)
def test_default_classifier_exception_defaults(error: BaseException, verdict: rs.Verdict) -> None:
    assert rs.DEFAULT_CLASSIFIER.classify(error).verdict is verdict


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (408, rs.Verdict.TRANSIENT),
        (425, rs.Verdict.TRANSIENT),
        (429, rs.Verdict.RATE_LIMITED),
        (500, rs.Verdict.TRANSIENT),
        (502, rs.Verdict.TRANSIENT),
        (503, rs.Verdict.TRANSIENT),
        (504, rs.Verdict.TRANSIENT),
        (400, rs.Verdict.PERMANENT),
        (401, rs.Verdict.PERMANENT),
        (403, rs.Verdict.PERMANENT),
        (404, rs.Verdict.PERMANENT),
        (409, rs.Verdict.PERMANENT),
        (422, rs.Verdict.PERMANENT),
    ],
)
def test_default_classifier_by_status(status: int, verdict: rs.Verdict) -> None:
    assert rs.DEFAULT_CLASSIFIER.classify(_HTTPError(status)).verdict is verdict
    assert rs.DEFAULT_CLASSIFIER.classify(_WrappedHTTPError(status)).verdict is verdict


def test_retry_after_from_headers_seconds_and_http_date() -> None:
    got = rs.DEFAULT_CLASSIFIER.classify(_HTTPError(429, {"Retry-After": "7"}))
    assert got.verdict is rs.Verdict.RATE_LIMITED
    assert got.retry_after == 7.0
    got = rs.DEFAULT_CLASSIFIER.classify(_WrappedHTTPError(503, {"Retry-After": "2.5"}))
    assert got.verdict is rs.Verdict.TRANSIENT
    assert got.retry_after == 2.5
    # an HTTP-date a little in the future (measured against the real wall clock)
    import email.utils
    import time

    date = email.utils.formatdate(time.time() + 120, usegmt=True)
    got = rs.DEFAULT_CLASSIFIER.classify(_HTTPError(429, {"Retry-After": date}))
    assert got.retry_after is not None
    assert 100 <= got.retry_after <= 121


def test_parse_retry_after_signature_and_semantics() -> None:
    sig = inspect.signature(rs.parse_retry_after)
    assert list(sig.parameters) == ["value", "now"]
    assert sig.parameters["now"].default is None
    assert rs.parse_retry_after("120") == 120.0
    now = 1767225600.0  # 2026-01-01T00:00:00Z
    assert rs.parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60.0
    assert rs.parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60.0
    assert rs.parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now) == 0.0  # past: no wait
    assert rs.parse_retry_after("soon") is None
    assert rs.parse_retry_after("-3") is None


# --- circuit breaker ------------------------------------------------------------------------


def _breaker(clock: VirtualClock, **kw: Any) -> rs.CircuitBreaker:
    kw.setdefault("minimum_calls", 4)
    kw.setdefault("window", rs.CountWindow(10))
    kw.setdefault("open_duration", 30.0)
    return rs.CircuitBreaker("payments", clock=clock, **kw)


def _fail() -> None:
    raise ConnectionError("down")


def test_breaker_constructor_exactly_as_written() -> None:
    clock = VirtualClock()
    br = rs.CircuitBreaker(
        "payments",
        failure_rate_threshold=0.5,
        slow_call_threshold=None,
        slow_call_rate_threshold=1.0,
        minimum_calls=10,
        window=rs.CountWindow(100),
        open_duration=30.0,
        open_duration_max=None,
        half_open_calls=3,
        classifier=rs.DEFAULT_CLASSIFIER,
        store=None,
        clock=clock,
    )
    assert br.state is rs.CircuitState.CLOSED
    assert rs.CircuitBreaker("other", window=rs.TimeWindow(seconds=60)).state == "closed"
    assert {s.name for s in rs.CircuitState} >= {
        "CLOSED",
        "OPEN",
        "HALF_OPEN",
        "FORCED_OPEN",
        "DISABLED",
    }
    # the keyword defaults are the ones the contract shows
    params = inspect.signature(rs.CircuitBreaker).parameters
    defaults = {
        "failure_rate_threshold": 0.5,
        "slow_call_threshold": None,
        "slow_call_rate_threshold": 1.0,
        "minimum_calls": 10,
        "open_duration": 30.0,
        "open_duration_max": None,
        "half_open_calls": 3,
        "store": None,
        "clock": None,
    }
    for name, default in defaults.items():
        assert params[name].default == default, name
    snap = br.snapshot()
    for key in ("state", "failure_rate", "slow_call_rate", "calls", "opened_at"):
        assert key in snap
    assert snap["calls"] == 0
    assert snap["opened_at"] is None


def test_breaker_default_store_is_a_memory_store() -> None:
    from resilience.stores import MemoryStore

    assert isinstance(rs.stores.MemoryStore(), MemoryStore)


def test_breaker_opens_at_the_failure_rate_and_rejects_with_name_and_remaining() -> None:
    clock = VirtualClock()
    br = _breaker(clock)

    @br
    def call(ok: bool) -> str:
        if not ok:
            raise ConnectionError("down")
        return "ok"

    assert call(True) == "ok"
    assert call(True) == "ok"
    with pytest.raises(ConnectionError):
        call(False)
    assert br.state is rs.CircuitState.CLOSED  # 3 calls < minimum_calls
    with pytest.raises(ConnectionError):
        call(False)  # 2/4 = 0.5 >= 0.5
    assert br.state is rs.CircuitState.OPEN
    clock.advance(10)
    with pytest.raises(rs.CircuitOpenError) as info:
        call(True)
    assert info.value.name == "payments"
    assert info.value.remaining == pytest.approx(20.0)
    assert isinstance(info.value, rs.ResilienceError)
    assert br.snapshot()["opened_at"] is not None
    clock.advance(20)
    assert br.state is rs.CircuitState.HALF_OPEN


def test_breaker_half_open_all_trials_must_succeed() -> None:
    clock = VirtualClock()
    br = _breaker(clock, half_open_calls=3)
    for _ in range(4):
        with pytest.raises(ConnectionError):
            br.call(_fail)
    clock.advance(30)
    assert br.state is rs.CircuitState.HALF_OPEN
    assert br.call(lambda: 1) == 1
    assert br.call(lambda: 2) == 2
    assert br.state is rs.CircuitState.HALF_OPEN
    assert br.call(lambda: 3) == 3
    assert br.state is rs.CircuitState.CLOSED
    # and a failed trial re-opens
    for _ in range(4):
        with pytest.raises(ConnectionError):
            br.call(_fail)
    clock.advance(30)
    br.call(lambda: 1)
    with pytest.raises(ConnectionError):
        br.call(_fail)
    assert br.state is rs.CircuitState.OPEN


def test_breaker_open_duration_max_doubles_on_reopen() -> None:
    clock = VirtualClock()
    br = _breaker(clock, open_duration=10.0, open_duration_max=25.0, half_open_calls=1)
    for _ in range(4):
        with pytest.raises(ConnectionError):
            br.call(_fail)
    assert br.snapshot()["remaining"] == pytest.approx(10.0)
    clock.advance(10)
    with pytest.raises(ConnectionError):
        br.call(_fail)
    assert br.snapshot()["remaining"] == pytest.approx(20.0)
    clock.advance(20)
    with pytest.raises(ConnectionError):
        br.call(_fail)
    assert br.snapshot()["remaining"] == pytest.approx(25.0)


def test_breaker_slow_calls_open_it() -> None:
    clock = VirtualClock()
    br = _breaker(clock, slow_call_threshold=2.0, slow_call_rate_threshold=0.5)

    def slow() -> str:
        clock.advance(2.0)  # "at least this slow counts as slow"
        return "late"

    for _ in range(2):
        br.call(lambda: "fast")
    for _ in range(2):
        assert br.call(slow) == "late"
    assert br.state is rs.CircuitState.OPEN
    assert br.snapshot()["slow_call_rate"] == pytest.approx(0.5)


def test_breaker_permanent_errors_do_not_count() -> None:
    clock = VirtualClock()
    br = _breaker(clock)
    for _ in range(10):
        with pytest.raises(_HTTPError):
            br.call(lambda: (_ for _ in ()).throw(_HTTPError(404)))
    assert br.state is rs.CircuitState.CLOSED
    assert br.snapshot()["failure_rate"] == 0.0


def test_breaker_time_window() -> None:
    clock = VirtualClock()
    br = rs.CircuitBreaker(
        "payments", minimum_calls=4, window=rs.TimeWindow(seconds=60), clock=clock
    )
    for _ in range(3):
        with pytest.raises(ConnectionError):
            br.call(_fail)
    clock.advance(120)  # those failures have left the window
    for _ in range(3):
        br.call(lambda: None)
    with pytest.raises(ConnectionError):
        br.call(_fail)
    assert br.state is rs.CircuitState.CLOSED  # 1/4 in the window


def test_forced_open_rejects_until_reset() -> None:
    clock = VirtualClock()
    br = _breaker(clock)
    br.force_open()
    assert br.state is rs.CircuitState.FORCED_OPEN
    clock.advance(10_000)  # no open_duration ends it
    with pytest.raises(rs.CircuitOpenError) as info:
        br.call(lambda: "x")
    assert info.value.name == "payments"
    assert br.state is rs.CircuitState.FORCED_OPEN
    br.reset()
    assert br.state is rs.CircuitState.CLOSED
    assert br.call(lambda: "x") == "x"


def test_disabled_lets_all_through_and_records_nothing() -> None:
    clock = VirtualClock()
    br = _breaker(clock)
    br.disable()
    assert br.state is rs.CircuitState.DISABLED
    from resilience import events

    seen: list[object] = []
    unsubscribe = events.subscribe(seen.append)
    try:
        for _ in range(50):
            with pytest.raises(ConnectionError):
                br.call(_fail)
    finally:
        unsubscribe()
    assert seen == []  # no call events either
    assert br.state is rs.CircuitState.DISABLED
    assert br.snapshot()["calls"] == 0
    assert br.call(lambda: "through") == "through"
    br.reset()
    assert br.state is rs.CircuitState.CLOSED
    assert br.snapshot()["calls"] == 0


def test_reset_gives_closed_with_an_empty_window() -> None:
    clock = VirtualClock()
    br = _breaker(clock)
    br.call(lambda: None)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            br.call(_fail)
    assert br.state is rs.CircuitState.OPEN
    br.reset()
    snap = br.snapshot()
    assert snap["state"] == rs.CircuitState.CLOSED
    assert snap["calls"] == 0
    assert snap["failure_rate"] == 0.0
    # empty, so three new failures are not a decision yet (minimum_calls=4)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            br.call(_fail)
    assert br.state is rs.CircuitState.CLOSED


def test_breaker_same_object_decorates_sync_and_async() -> None:
    br = rs.CircuitBreaker("payments")

    @br
    def charge(amount: int) -> int:
        return amount

    @br
    async def acharge(amount: int) -> int:
        return amount

    assert charge(3) == 3
    assert inspect.iscoroutinefunction(acharge)
    assert asyncio.run(acharge(4)) == 4
    assert br.call(charge, 5) == 5
    assert br.call(lambda a, *, b: a + b, 1, b=2) == 3
    assert br.snapshot()["calls"] == 5  # br.call(charge) passes the breaker twice


@pytest.mark.anyio
async def test_breaker_acall() -> None:
    clock = VirtualClock()
    br = _breaker(clock)

    async def down() -> None:
        raise ConnectionError("down")

    async def echo(x: int, *, y: int) -> int:
        return x + y

    assert await br.acall(echo, 1, y=2) == 3
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await br.acall(down)
    with pytest.raises(rs.CircuitOpenError):
        await br.acall(echo, 1, y=2)


# --- retry ----------------------------------------------------------------------------------


class _Flaky:
    def __init__(self, failures: list[BaseException], value: object = "ok") -> None:
        self.failures = list(failures)
        self.calls = 0
        self.value = value

    def __call__(self, *a: Any, **kw: Any) -> object:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.value


def test_retry_constructor_exactly_as_written() -> None:
    clock = VirtualClock()
    rt = rs.Retry(
        max_attempts=3,
        backoff=rs.Backoff.exponential(initial=0.1, multiplier=2.0, maximum=10.0, jitter="full"),
        deadline=None,
        classifier=rs.DEFAULT_CLASSIFIER,
        respect_retry_after=True,
        budget=None,
        name=None,
        clock=clock,
    )
    fn = _Flaky([ConnectionError(), ConnectionError()])
    assert rt.call(fn) == "ok"
    assert fn.calls == 3
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.1
    assert 0 <= clock.sleeps[1] <= 0.2
    params = inspect.signature(rs.Retry).parameters
    expected = {
        "max_attempts": 3,
        "deadline": None,
        "respect_retry_after": True,
        "budget": None,
        "name": None,
        "clock": None,
    }
    for name, default in expected.items():
        assert params[name].default == default, name
    assert params["classifier"].default is rs.DEFAULT_CLASSIFIER


def test_backoff_constructors_and_jitter_defaults() -> None:
    assert rs.Backoff.exponential().jitter == "full"
    assert rs.Backoff.constant(0.5).jitter is None
    assert rs.Backoff.linear(0.1, 0.2, 1.0).jitter is None
    # constant(d) waits exactly d
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=4, backoff=rs.Backoff.constant(0.5), clock=clock)
    assert rt.call(_Flaky([ConnectionError()] * 3)) == "ok"
    assert clock.sleeps == [0.5, 0.5, 0.5]
    # linear(initial, step, maximum)
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=5, backoff=rs.Backoff.linear(0.1, 0.2, 0.4), clock=clock)
    assert rt.call(_Flaky([ConnectionError()] * 4)) == "ok"
    assert clock.sleeps == pytest.approx([0.1, 0.3, 0.4, 0.4])
    # with jitter=None the first exponential delay is `initial`
    clock = VirtualClock()
    backoff = rs.Backoff.exponential(initial=0.1, multiplier=2.0, maximum=10.0, jitter=None)
    rt = rs.Retry(max_attempts=4, backoff=backoff, clock=clock)
    assert rt.call(_Flaky([ConnectionError()] * 3)) == "ok"
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])
    # decorrelated(initial, maximum): every delay within [initial, maximum]
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=20, backoff=rs.Backoff.decorrelated(0.1, 2.0), clock=clock)
    assert rt.call(_Flaky([ConnectionError()] * 19)) == "ok"
    assert len(clock.sleeps) == 19
    assert all(0.1 <= s <= 2.0 for s in clock.sleeps)


def test_no_wait_ever_crosses_the_deadline() -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=100, backoff=rs.Backoff.constant(3.0), deadline=10.0, clock=clock)
    fn = _Flaky([ConnectionError(f"#{i}") for i in range(100)])
    with pytest.raises(ConnectionError):
        rt.call(fn)
    assert clock.monotonic() <= 10.0
    assert sum(clock.sleeps) <= 10.0


def test_permanent_error_is_reraised_at_once_as_is() -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=5, clock=clock)
    error = ValueError("bad input")
    fn = _Flaky([error])
    with pytest.raises(ValueError) as info:
        rt.call(fn)
    assert info.value is error
    assert fn.calls == 1
    assert clock.sleeps == []


def test_exhausted_reraises_the_last_error_as_is_with_a_note() -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, clock=clock)
    errors = [ConnectionError("1"), ConnectionError("2"), ConnectionError("3")]
    with pytest.raises(ConnectionError) as info:
        rt.call(_Flaky(errors))
    assert info.value is errors[-1]
    notes = getattr(info.value, "__notes__", [])
    assert notes
    assert "3" in " ".join(notes)
    assert not isinstance(info.value, rs.RetryExhausted)


def test_deadline_exhaustion_also_reraises_the_last_error_with_a_note() -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=50, backoff=rs.Backoff.constant(1.0), deadline=2.5, clock=clock)
    fn = _Flaky([TimeoutError(str(i)) for i in range(50)])
    with pytest.raises(TimeoutError) as info:
        rt.call(fn)
    assert getattr(info.value, "__notes__", [])
    assert str(fn.calls) in " ".join(info.value.__notes__)


def test_retry_exhausted_only_when_the_last_attempt_returned_a_result() -> None:
    clock = VirtualClock()
    clf = rs.Classifier(result=lambda r: rs.Verdict.TRANSIENT if r is None else None)
    rt = rs.Retry(max_attempts=3, classifier=clf, clock=clock)
    calls = []

    def empty() -> None:
        calls.append(1)

    with pytest.raises(rs.RetryExhausted) as info:
        rt.call(empty)
    assert info.value.attempts == 3
    assert info.value.last_result is None
    assert len(calls) == 3
    # errors first, then a retryable result last: RetryExhausted
    fn = _Flaky([ConnectionError(), ConnectionError()], value=None)
    with pytest.raises(rs.RetryExhausted):
        rt.call(fn)
    # a retryable result, then an error last: the error as is
    seq: list[object] = [None, None]

    def mixed() -> object:
        if seq:
            return seq.pop()
        raise ConnectionError("last")

    with pytest.raises(ConnectionError):
        rt.call(mixed)


def test_only_transient_and_rate_limited_are_retried() -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, clock=clock)
    fn = _Flaky([_HTTPError(429), _HTTPError(503)])
    assert rt.call(fn) == "ok"
    assert fn.calls == 3
    fn = _Flaky([_HTTPError(404)])
    with pytest.raises(_HTTPError):
        rt.call(fn)
    assert fn.calls == 1


def test_rate_limited_waits_max_of_backoff_and_retry_after_capped_by_deadline() -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), clock=clock)
    fn = _Flaky([_HTTPError(429, {"Retry-After": "4"}), _HTTPError(429, {"Retry-After": "0.1"})])
    assert rt.call(fn) == "ok"
    assert clock.sleeps == [4.0, 0.5]
    # capped by the deadline: no wait past it
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), deadline=2.0, clock=clock)
    fn = _Flaky([_HTTPError(429, {"Retry-After": "60"})] * 3)
    with pytest.raises(_HTTPError):
        rt.call(fn)
    assert clock.monotonic() <= 2.0
    # respect_retry_after=False: the backoff alone
    clock = VirtualClock()
    rt = rs.Retry(
        max_attempts=2, backoff=rs.Backoff.constant(0.5), respect_retry_after=False, clock=clock
    )
    assert rt.call(_Flaky([_HTTPError(429, {"Retry-After": "60"})])) == "ok"
    assert clock.sleeps == [0.5]


def test_a_503_with_retry_after_waits_as_the_server_asked() -> None:
    # 503 is TRANSIENT (and stays so); its Retry-After is honoured like a 429's, so the httpx
    # transport's "(429 and 503 with Retry-After)" holds under any Retry policy
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), clock=clock)
    assert rs.DEFAULT_CLASSIFIER.classify(_HTTPError(503)).verdict is rs.Verdict.TRANSIENT
    fn = _Flaky([_HTTPError(503, {"Retry-After": "3"}), _HTTPError(503, {"Retry-After": "0.1"})])
    assert rt.call(fn) == "ok"
    assert clock.sleeps == [3.0, 0.5]  # never shorter than the backoff
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), deadline=2.0, clock=clock)
    with pytest.raises(_HTTPError):
        rt.call(_Flaky([_HTTPError(503, {"Retry-After": "60"})] * 3))
    assert clock.monotonic() <= 2.0  # capped by the deadline
    clock = VirtualClock()
    rt = rs.Retry(
        max_attempts=2, backoff=rs.Backoff.constant(0.5), respect_retry_after=False, clock=clock
    )
    assert rt.call(_Flaky([_HTTPError(503, {"Retry-After": "60"})])) == "ok"
    assert clock.sleeps == [0.5]


def test_retry_budget_bounds_retries_to_a_ratio_of_calls() -> None:
    clock = VirtualClock()
    budget = rs.RetryBudget(ratio=0.2, min_per_second=10)
    rt = rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(0.0), budget=budget, clock=clock)
    retried = 0
    for _ in range(200):
        fn = _Flaky([ConnectionError()])
        try:
            rt.call(fn)
        except ConnectionError:
            pass
        retried += fn.calls - 1
    # all 200 calls within one virtual second: 20% of them plus the per-second floor of 10
    assert 10 <= retried <= 0.2 * 200 + 10 + 1


def test_retry_decorator_sync_and_async_and_acall() -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, clock=clock)
    fn = _Flaky([ConnectionError()])

    @rt
    def sync(x: int) -> object:
        return (x, fn())

    assert sync(1) == (1, "ok")

    afn = _Flaky([ConnectionError()])

    @rt
    async def asyn(x: int) -> object:
        return (x, afn())

    assert inspect.iscoroutinefunction(asyn)
    assert asyncio.run(asyn(2)) == (2, "ok")

    flaky = _Flaky([TimeoutError()])

    async def attempt(x: int, *, k: int) -> object:
        return (x, k, flaky())

    async def via_acall() -> object:
        return await rt.acall(attempt, 1, k=2)

    assert asyncio.run(via_acall()) == (1, 2, "ok")
    assert flaky.calls == 2


def test_tenacity_kwargs_drives_tenacity_with_the_same_policy() -> None:
    import tenacity

    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.25), clock=clock)
    kwargs = rt.tenacity_kwargs()
    assert isinstance(kwargs, dict)
    fn = _Flaky([ConnectionError(), ConnectionError()])
    assert tenacity.Retrying(**kwargs)(fn) == "ok"
    assert fn.calls == 3
    fn = _Flaky([ValueError("permanent")])
    with pytest.raises(ValueError):
        tenacity.Retrying(**kwargs)(fn)
    assert fn.calls == 1
    # exhausted: the last error as is, with the note (not tenacity's RetryError)
    errors = [ConnectionError("1"), ConnectionError("2"), ConnectionError("3")]
    with pytest.raises(ConnectionError) as info:
        tenacity.Retrying(**rt.tenacity_kwargs())(_Flaky(errors))
    assert info.value is errors[-1]
    assert info.value.__notes__
