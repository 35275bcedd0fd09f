"""Retry: what is retried, how long it waits, when it stops, and what the caller sees."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

import resilience as rs
from resilience import events
from resilience.testing import VirtualClock


class HTTPError(Exception):
    """Looks like an HTTP client's error: a response with a status and headers."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = type("Response", (), {"status_code": status, "headers": headers or {}})()


class Flaky:
    """Fails with the given errors in turn, then returns 'ok'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.args: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        self.args.append((args, tuple(sorted(kwargs.items()))))
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self, *args: Any, **kwargs: Any) -> str:
        return self(*args, **kwargs)


ENGINE = "tenacity"


@pytest.fixture(autouse=True, params=["tenacity", "native"])
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs on both engines: the decisions must not depend on the engine."""
    global ENGINE
    ENGINE = request.param
    yield ENGINE
    ENGINE = "tenacity"


def Retry(*args: Any, **kwargs: Any) -> rs.Retry:
    return rs.Retry(*args, engine=ENGINE, **kwargs)  # type: ignore[arg-type]


def test_transient_failures_are_retried_with_the_backoffs_waits(clock: VirtualClock) -> None:
    fn = Flaky(ConnectionError("reset"), TimeoutError("slow"))
    rt = Retry(max_attempts=3, backoff=rs.Backoff.linear(1.0, 1.0, 10.0), clock=clock)
    assert rt.call(fn, 1, key="v") == "ok"
    assert fn.calls == 3
    assert clock.sleeps == [1.0, 2.0]
    assert fn.args == [((1,), (("key", "v"),))] * 3  # the same arguments every attempt


def test_a_permanent_error_is_reraised_at_once_as_is(clock: VirtualClock, seen: list[Any]) -> None:
    error = ValueError("bad input")
    fn = Flaky(error)
    rt = Retry(max_attempts=5, clock=clock)
    with pytest.raises(ValueError) as info:
        rt.call(fn)
    assert info.value is error
    assert fn.calls == 1
    assert clock.sleeps == []
    assert "is PERMANENT" in error.__notes__[0]  # says why it was not retried
    assert [type(e).__name__ for e in seen] == ["RetryGaveUp"]
    assert seen[0].reason == "permanent"


def test_a_permanent_error_after_a_transient_one_stops_the_loop(clock: VirtualClock) -> None:
    fn = Flaky(ConnectionError(), PermissionError("denied"), ConnectionError())
    with pytest.raises(PermissionError):
        Retry(max_attempts=5, backoff=rs.Backoff.constant(0.1), clock=clock).call(fn)
    assert fn.calls == 2


def test_exhaustion_reraises_the_last_error_with_a_note(clock: VirtualClock) -> None:
    last = ConnectionError("third")
    fn = Flaky(ConnectionError("first"), ConnectionError("second"), last)
    rt = Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), name="payments", clock=clock)
    with pytest.raises(ConnectionError) as info:
        rt.call(fn)
    assert info.value is last
    (note,) = info.value.__notes__
    assert "'payments'" in note
    assert "3 attempts" in note


def test_the_same_exception_object_keeps_a_single_note(clock: VirtualClock) -> None:
    error = ConnectionError("shared")

    def always() -> None:
        raise error

    rt = Retry(max_attempts=2, backoff=rs.Backoff.constant(0), clock=clock)
    for _ in range(5):
        with pytest.raises(ConnectionError):
            rt.call(always)
    assert len(error.__notes__) == 1


def test_retry_exhausted_only_for_a_retryable_result(clock: VirtualClock) -> None:
    clf = rs.Classifier(result=lambda r: rs.Verdict.TRANSIENT if r is None else None)
    rt = Retry(max_attempts=3, backoff=rs.Backoff.constant(1), classifier=clf, clock=clock)
    with pytest.raises(rs.RetryExhausted) as info:
        rt.call(lambda: None)
    assert info.value.attempts == 3
    assert info.value.last_result is None
    answers = iter([None, None, 42])
    assert rt.call(lambda: next(answers)) == 42


def test_a_zero_wait_never_sleeps(clock: VirtualClock) -> None:
    fn = Flaky(ConnectionError(), ConnectionError())
    assert Retry(max_attempts=3, backoff=rs.Backoff.constant(0), clock=clock).call(fn) == "ok"
    assert clock.sleeps == []


def test_retry_after_in_seconds_is_honoured(clock: VirtualClock) -> None:
    fn = Flaky(HTTPError(429, {"Retry-After": "7"}))
    rt = Retry(max_attempts=2, backoff=rs.Backoff.constant(0.5), clock=clock)
    assert rt.call(fn) == "ok"
    assert clock.sleeps == [7.0]


def test_retry_after_never_shortens_the_backoff(clock: VirtualClock) -> None:
    fn = Flaky(HTTPError(503, {"Retry-After": "1"}))
    Retry(max_attempts=2, backoff=rs.Backoff.constant(4), clock=clock).call(fn)
    assert clock.sleeps == [4.0]


def test_retry_after_as_an_http_date_is_honoured(clock: VirtualClock) -> None:
    # measured on the policy's clock (its wall time), not time.time()
    when = email.utils.formatdate(clock.time() + 30, usegmt=True)
    fn = Flaky(HTTPError(429, {"Retry-After": when}))
    Retry(max_attempts=2, backoff=rs.Backoff.constant(0.1), clock=clock).call(fn)
    assert clock.sleeps == [30.0]


@pytest.mark.anyio
async def test_async_retry_after_as_an_http_date_is_measured_on_the_clock(
    clock: VirtualClock,
) -> None:
    clock.advance(1000.0)  # the policy's wall clock is far from the real one
    when = email.utils.formatdate(clock.time() + 12, usegmt=True)
    fn = Flaky(HTTPError(503, {"Retry-After": when}))
    assert (
        await Retry(max_attempts=2, backoff=rs.Backoff.constant(0), clock=clock).acall(fn.acall)
        == "ok"
    )
    assert clock.sleeps == [12.0]


def test_retry_after_can_be_ignored(clock: VirtualClock) -> None:
    fn = Flaky(HTTPError(429, {"Retry-After": "60"}))
    rt = Retry(
        max_attempts=2,
        backoff=rs.Backoff.constant(2),
        respect_retry_after=False,
        clock=clock,
    )
    rt.call(fn)
    assert clock.sleeps == [2.0]


def test_rate_limited_without_retry_after_never_retries_at_once(clock: VirtualClock) -> None:
    fn = Flaky(HTTPError(429), HTTPError(429))
    Retry(max_attempts=3, backoff=rs.Backoff.constant(0), clock=clock).call(fn)
    assert len(clock.sleeps) == 2
    assert all(s > 0 for s in clock.sleeps)
    # with jitter it keeps at least half the un-jittered delay
    clock2 = VirtualClock()
    fn2 = Flaky(*[HTTPError(429) for _ in range(50)])
    rt = Retry(
        max_attempts=51,
        backoff=rs.Backoff.exponential(1.0, 1.0, 1.0, jitter="full", seed=1),
        clock=clock2,
    )
    rt.call(fn2)
    assert min(clock2.sleeps) >= 0.5


def test_a_retry_after_beyond_max_retry_after_gives_up_at_once(
    clock: VirtualClock, seen: list[Any]
) -> None:
    fn = Flaky(HTTPError(429, {"Retry-After": "86400"}))
    with pytest.raises(HTTPError) as info:
        Retry(max_attempts=5, clock=clock).call(fn)
    assert fn.calls == 1
    assert clock.sleeps == []
    assert "max_retry_after" in info.value.__notes__[0]
    assert [e.reason for e in seen if isinstance(e, events.RetryGaveUp)] == ["retry_after"]


def test_the_deadline_cuts_retries(clock: VirtualClock, seen: list[Any]) -> None:
    fn = Flaky(*[ConnectionError() for _ in range(10)])
    rt = Retry(max_attempts=10, backoff=rs.Backoff.constant(1.0), deadline=2.5, clock=clock)
    with pytest.raises(ConnectionError) as info:
        rt.call(fn)
    # attempts at t=0, 1, 2; the wait to t=3 would cross the deadline: stop at once
    assert fn.calls == 3
    assert clock.sleeps == [1.0, 1.0]
    assert clock.monotonic() == 2.0
    assert "deadline" in info.value.__notes__[0]
    assert [e.reason for e in seen if isinstance(e, events.RetryGaveUp)] == ["deadline"]


def test_a_wait_that_lands_exactly_on_the_deadline_ends_the_loop(clock: VirtualClock) -> None:
    fn = Flaky(*[ConnectionError() for _ in range(10)])
    rt = Retry(max_attempts=10, backoff=rs.Backoff.constant(0.5), deadline=1.0, clock=clock)
    with pytest.raises(ConnectionError) as info:
        rt.call(fn)
    # attempts at 0 and 0.5; the next wait would end at exactly 1.0, the deadline: no attempt
    # there (docs/retry.md: "no wait ever crosses the deadline", landing on it included)
    assert fn.calls == 2
    assert clock.sleeps == [0.5]
    assert "deadline" in info.value.__notes__[0]


def test_a_retry_after_past_the_deadline_ends_the_loop(clock: VirtualClock) -> None:
    fn = Flaky(HTTPError(429, {"Retry-After": "30"}))
    with pytest.raises(HTTPError):
        Retry(max_attempts=3, deadline=10, clock=clock).call(fn)
    assert fn.calls == 1
    assert clock.sleeps == []


def test_the_deadline_counts_time_spent_in_attempts(clock: VirtualClock) -> None:
    def slow() -> None:
        clock.advance(4)
        raise ConnectionError()

    rt = Retry(max_attempts=10, backoff=rs.Backoff.constant(0), deadline=10, clock=clock)
    with pytest.raises(ConnectionError):
        rt.call(slow)
    assert clock.monotonic() == 12.0  # attempts at 0, 4, 8; at 12 the deadline has passed


def test_a_budget_caps_retries_under_a_storm(clock: VirtualClock, seen: list[Any]) -> None:
    budget = rs.RetryBudget(ratio=0.1, min_per_second=5)
    rt = Retry(max_attempts=5, backoff=rs.Backoff.constant(0), budget=budget, clock=clock)
    attempts = 0

    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError()

    calls = 1000
    for _ in range(calls):
        with pytest.raises(ConnectionError):
            rt.call(down)
    retries = attempts - calls
    assert retries <= 0.1 * calls + 5  # ratio x calls + the floor
    assert retries >= 0.1 * calls - 1  # and the budget is actually spent, not zero
    reasons = {e.reason for e in seen if isinstance(e, events.RetryGaveUp)}
    assert reasons == {"budget", "attempts"}


def test_the_budget_floor_refills_with_time(clock: VirtualClock) -> None:
    budget = rs.RetryBudget(ratio=0.01, min_per_second=2, clock=clock)
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]
    clock.advance(1.0)
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]


def test_budget_deposits_expire_after_ttl(clock: VirtualClock) -> None:
    budget = rs.RetryBudget(ratio=0.5, min_per_second=0, ttl=10, clock=clock)
    for _ in range(10):
        budget.deposit()
    clock.advance(30)
    assert not budget.try_withdraw()


def test_cancellation_and_keyboard_interrupt_are_never_retried(clock: VirtualClock) -> None:
    fn = Flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        Retry(max_attempts=3, clock=clock).call(fn)
    assert fn.calls == 1


def test_decorator_keeps_the_function(clock: VirtualClock) -> None:
    fn = Flaky(ConnectionError())

    @Retry(backoff=rs.Backoff.constant(0), clock=clock)
    def wrapped(x: int) -> str:
        """Docs."""
        return fn(x)

    assert wrapped(3) == "ok"
    assert wrapped.__name__ == "wrapped"
    assert wrapped.__doc__ == "Docs."


def test_events_for_each_retry(clock: VirtualClock, seen: list[Any]) -> None:
    fn = Flaky(ConnectionError(), HTTPError(429, {"Retry-After": "2"}))
    Retry(max_attempts=3, backoff=rs.Backoff.constant(1), name="api", clock=clock).call(fn)
    attempted = [e for e in seen if isinstance(e, events.RetryAttempted)]
    assert [(e.operation, e.attempt, e.delay, e.verdict) for e in attempted] == [
        ("api", 1, 1.0, "transient"),
        ("api", 2, 2.0, "rate_limited"),
    ]
    assert attempted[1].error == "HTTPError"


@pytest.mark.anyio
async def test_async_retry(clock: VirtualClock) -> None:
    fn = Flaky(ConnectionError(), TimeoutError())
    rt = Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), clock=clock)
    assert await rt.acall(fn.acall, "x") == "ok"
    assert clock.sleeps == [0.5, 0.5]
    assert fn.calls == 3


@pytest.mark.anyio
async def test_async_exhaustion_and_permanent(clock: VirtualClock) -> None:
    rt = Retry(max_attempts=2, backoff=rs.Backoff.constant(0), clock=clock)
    fn = Flaky(ConnectionError("a"), ConnectionError("b"))
    with pytest.raises(ConnectionError, match="b") as info:
        await rt.acall(fn.acall)
    assert "2 attempts" in info.value.__notes__[0]
    fn2 = Flaky(KeyError("k"))
    with pytest.raises(KeyError):
        await rt.acall(fn2.acall)
    assert fn2.calls == 1


@pytest.mark.anyio
async def test_async_decorator_and_deadline(clock: VirtualClock) -> None:
    fn = Flaky(*[ConnectionError() for _ in range(5)])

    @Retry(max_attempts=10, backoff=rs.Backoff.constant(2), deadline=5, clock=clock)
    async def op() -> str:
        return fn()

    with pytest.raises(ConnectionError):
        await op()
    assert fn.calls == 3
    assert clock.monotonic() == 4.0


def test_tenacity_kwargs_drive_tenacity_with_the_same_policy(clock: VirtualClock) -> None:
    rt = Retry(max_attempts=3, backoff=rs.Backoff.constant(0.25), clock=clock)
    fn = Flaky(ConnectionError(), ConnectionError())
    assert tenacity.Retrying(**rt.tenacity_kwargs())(fn) == "ok"
    assert clock.sleeps == [0.25, 0.25]
    perm = Flaky(ValueError())
    with pytest.raises(ValueError):
        tenacity.Retrying(**rt.tenacity_kwargs())(perm)
    assert perm.calls == 1
    down = Flaky(*[ConnectionError() for _ in range(5)])
    with pytest.raises(ConnectionError) as info:
        tenacity.Retrying(**rt.tenacity_kwargs())(down)
    assert down.calls == 3
    assert "3 attempts" in info.value.__notes__[0]


@pytest.mark.anyio
async def test_tenacity_kwargs_async(clock: VirtualClock) -> None:
    rt = Retry(max_attempts=3, backoff=rs.Backoff.constant(1), clock=clock)
    fn = Flaky(ConnectionError())
    retrying = tenacity.AsyncRetrying(**rt.tenacity_kwargs(asynchronous=True))
    assert await retrying(fn.acall) == "ok"
    assert clock.sleeps == [1.0]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": float("inf")}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": 0}, "deadline"),
        ({"backoff": 0.5}, "backoff"),
        ({"classifier": object()}, "classifier"),
        ({"budget": 0.2}, "budget"),
        ({"max_retry_after": -1}, "max_retry_after"),
    ],
)
def test_bad_arguments_raise_config_error_naming_them(
    kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(rs.ConfigError) as info:
        Retry(**kwargs)
    assert [loc for loc, _ in info.value.errors] == [argument]


def test_every_bad_argument_is_listed_at_once() -> None:
    errors = rs.Retry.validate(max_attempts=0, deadline=-5, budget="lots")
    assert {loc for loc, _ in errors} == {"max_attempts", "deadline", "budget"}
    assert rs.Retry.validate() == []
    with pytest.raises(rs.ConfigError):
        rs.RetryBudget(ratio=0)
    with pytest.raises(rs.ConfigError):
        rs.RetryBudget(min_per_second=-1)


def test_repr_names_the_policy() -> None:
    text = repr(Retry(max_attempts=4, name="x"))
    assert "max_attempts=4" in text
    with pytest.raises(rs.ConfigError):
        rs.Retry(engine="fast")  # type: ignore[arg-type]
    assert "Backoff.exponential" in text


def test_backoff_in_its_config_form(clock: VirtualClock) -> None:
    rt = Retry(backoff={"kind": "constant", "delay": 0.75}, clock=clock)
    rt.call(Flaky(ConnectionError()))
    assert clock.sleeps == [0.75]
    errors = rs.Retry.validate(backoff={"kind": "linear", "initial": -1, "step": 1})
    assert errors == [("backoff.initial", "must be >= 0 and finite, got -1")]
    with pytest.raises(rs.ConfigError) as info:
        Retry(backoff={"kind": "exponential", "base": 2})
    assert info.value.errors[0][0] == "backoff.base"


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["call", "retry"]), st.floats(0, 3)), min_size=1, max_size=300
    ),
    ratio=st.floats(0.01, 1.0),
    floor=st.integers(0, 20),
)
def test_budget_law_retries_never_exceed_ratio_times_calls_plus_the_floor(
    steps: list[tuple[str, float]], ratio: float, floor: int
) -> None:
    clock = VirtualClock()
    budget = rs.RetryBudget(ratio=ratio, min_per_second=floor, clock=clock)
    calls = retries = 0
    for kind, dt in steps:
        clock.advance(dt)
        if kind == "call":
            budget.deposit()
            calls += 1
        elif budget.try_withdraw():
            retries += 1
    assert retries <= ratio * calls + floor * (1 + clock.monotonic()) + 1e-6


# --- time budgets (rs.deadline, a Timeout around the retry) ---------------------------------


def test_no_wait_or_attempt_the_budget_cannot_hold(clock: VirtualClock) -> None:
    fn = Flaky(*[ConnectionError() for _ in range(10)])
    rt = Retry(max_attempts=10, backoff=rs.Backoff.constant(0.25), clock=clock)
    with rs.deadline(1.0, clock=clock), pytest.raises(rs.TimeoutExceeded) as info:
        rt.call(fn)
    # attempts at 0, .25, .5, .75; a wait landing exactly on the budget's end is not started
    assert fn.calls == 4
    assert clock.sleeps == [0.25, 0.25, 0.25]
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "after 4 attempts" in info.value.__notes__[-1]


def test_a_rate_limited_wait_longer_than_the_budget_is_not_started(clock: VirtualClock) -> None:
    fn = Flaky(HTTPError(429, {"Retry-After": "30"}))
    with rs.deadline(10.0, clock=clock), pytest.raises(rs.TimeoutExceeded):
        Retry(max_attempts=3, clock=clock).call(fn)
    assert fn.calls == 1
    assert clock.sleeps == []


def test_a_used_up_budget_starts_no_first_attempt(clock: VirtualClock) -> None:
    fn = Flaky()
    rt = Retry(max_attempts=3, clock=clock)
    with rs.deadline(1.0, clock=clock):
        clock.advance(1.0)
        with pytest.raises(rs.TimeoutExceeded):
            rt.call(fn)
        with pytest.raises(rs.TimeoutExceeded):
            rt(fn)()
    assert fn.calls == 0


@pytest.mark.anyio
async def test_async_retry_honours_the_budget(clock: VirtualClock) -> None:
    fn = Flaky(*[ConnectionError() for _ in range(10)])
    rt = Retry(max_attempts=10, backoff=rs.Backoff.constant(0.25), clock=clock)
    with pytest.raises(rs.TimeoutExceeded):
        async with rs.deadline(1.0, clock=clock):
            await rt.acall(fn.acall)
    assert fn.calls == 4
    assert clock.sleeps == [0.25, 0.25, 0.25]

    @rt
    async def decorated() -> str:
        return await fn.acall()

    async with rs.deadline(1.0, clock=clock):
        clock.advance(1.0)
        with pytest.raises(rs.TimeoutExceeded):
            await decorated()
    assert fn.calls == 4


def test_without_a_budget_nothing_changes(clock: VirtualClock) -> None:
    fn = Flaky(ConnectionError(), ConnectionError())
    assert Retry(max_attempts=3, backoff=rs.Backoff.constant(100.0), clock=clock).call(fn) == "ok"
    assert clock.sleeps == [100.0, 100.0]


# --- what the caller's traceback shows -------------------------------------------------------


def test_the_reraised_error_is_not_chained_to_the_first_attempts(clock: VirtualClock) -> None:
    first, last = ConnectionError("first"), ConnectionError("last")
    fn = Flaky(first, ConnectionError("second"), last)
    rt = Retry(max_attempts=3, backoff=rs.Backoff.constant(0), clock=clock)
    for call in (lambda: rt.call(fn), rt(fn)):
        fn.errors = [first, ConnectionError("second"), last]
        with pytest.raises(ConnectionError) as info:
            call()
        assert info.value is last
        assert info.value.__context__ is None  # no "During handling of the above exception"


@pytest.mark.anyio
async def test_async_reraised_error_is_not_chained(clock: VirtualClock) -> None:
    last = ConnectionError("last")
    fn = Flaky(ConnectionError("first"), last)
    rt = Retry(max_attempts=2, backoff=rs.Backoff.constant(0), clock=clock)
    with pytest.raises(ConnectionError) as info:
        await rt.acall(fn.acall)
    assert info.value is last
    assert info.value.__context__ is None


def test_an_error_keeps_the_context_it_had_inside_the_call(clock: VirtualClock) -> None:
    def wraps_its_own() -> None:
        try:
            raise KeyError("inner")
        except KeyError:
            raise ConnectionError("outer")  # noqa: B904 (implicit chaining is the point)

    with pytest.raises(ConnectionError) as info:
        Retry(max_attempts=2, backoff=rs.Backoff.constant(0), clock=clock).call(wraps_its_own)
    assert isinstance(info.value.__context__, KeyError)


# --- trio's timeout -------------------------------------------------------------------------


def test_trio_too_slow_error_is_transient() -> None:
    trio = pytest.importorskip("trio")
    assert rs.DEFAULT_CLASSIFIER.classify(trio.TooSlowError()).verdict is rs.Verdict.TRANSIENT


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])  # trio.fail_after runs on trio only
async def test_trio_too_slow_error_is_retried(clock: VirtualClock, anyio_backend: str) -> None:
    import trio

    calls = 0

    async def slow_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            with trio.fail_after(0.01):
                await trio.sleep(5)
        return "ok"

    rt = Retry(max_attempts=2, backoff=rs.Backoff.constant(0), clock=clock)
    with anyio.fail_after(5):
        assert await rt.acall(slow_once) == "ok"
    assert calls == 2
