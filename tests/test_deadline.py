"""Time budgets (rs.deadline, rs.remaining) and local rejections, as the primitives meet them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import resilience as rs
from resilience import config, events
from resilience.config import load
from resilience.config._presets import PRESET_TABLES
from resilience.testing import VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


# --- rs.deadline / rs.remaining ------------------------------------------------------------


def test_no_budget_by_default() -> None:
    assert rs.remaining() is None


def test_nested_budgets_take_the_smaller(clock: VirtualClock) -> None:
    with rs.deadline(5.0, clock=clock):
        clock.advance(2.0)
        with rs.deadline(10.0, clock=clock):
            assert rs.remaining() == 3.0
        with rs.deadline(1.0, clock=clock):
            assert rs.remaining() == 1.0
        assert rs.remaining() == 3.0
    assert rs.remaining() is None


def test_an_inner_budget_never_outlives_its_outer_one_on_another_clock(
    clock: VirtualClock,
) -> None:
    other = VirtualClock()
    with rs.deadline(5.0, clock=clock), rs.deadline(10.0, clock=other):
        clock.advance(4.0)  # the outer budget's clock moves; the inner one's does not
        assert rs.remaining() == 1.0


def test_remaining_never_goes_negative(clock: VirtualClock) -> None:
    with rs.deadline(1.0, clock=clock):
        clock.advance(5.0)
        assert rs.remaining() == 0.0


def test_the_budget_follows_threads_started_with_the_context(clock: VirtualClock) -> None:
    import contextvars

    seen: list[float | None] = []
    with rs.deadline(2.0, clock=clock):
        ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(lambda: seen.append(rs.remaining()),))
    thread.start()
    thread.join(2)
    assert seen == [2.0]


@pytest.mark.anyio
async def test_the_budget_follows_async_tasks_and_to_thread(clock: VirtualClock) -> None:
    seen: list[float | None] = []

    async def child() -> None:
        seen.append(rs.remaining())

    async with rs.deadline(3.0, clock=clock):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        seen.append(await anyio.to_thread.run_sync(rs.remaining))
    assert seen == [3.0, 3.0]
    assert rs.remaining() is None


# --- local rejections are not dependency failures ------------------------------------------


def _open(breaker: rs.CircuitBreaker, clock: VirtualClock) -> None:
    def down() -> None:
        raise ConnectionError("down")

    while breaker.state is not rs.CircuitState.OPEN:
        with pytest.raises(ConnectionError):
            breaker.call(down)


@pytest.mark.parametrize(
    "rejection",
    [
        rs.BulkheadFull(1, 0, operation="x"),
        rs.RateLimited(0.5, operation="x"),
        rs.CircuitOpenError("other", 5.0),
    ],
    ids=["bulkhead", "rate_limit", "breaker"],
)
def test_a_breaker_counts_local_rejections_neither_way(
    rejection: rs.LocalRejection, clock: VirtualClock
) -> None:
    breaker = rs.CircuitBreaker("svc", minimum_calls=3, half_open_calls=1, clock=clock)

    def shed() -> None:
        raise rejection

    for _ in range(10):
        with pytest.raises(rs.LocalRejection):
            breaker.call(shed)
    assert breaker.state is rs.CircuitState.CLOSED
    assert breaker.snapshot()["calls"] == 0
    # half-open: a rejected trial frees its slot (it neither closes nor re-opens the breaker)
    _open(breaker, clock)
    clock.advance(60.0)
    with pytest.raises(rs.LocalRejection):
        breaker.call(shed)
    assert breaker.state is rs.CircuitState.HALF_OPEN
    assert breaker.call(lambda: "ok") == "ok"  # the freed slot takes the real trial
    assert breaker.state is rs.CircuitState.CLOSED


@pytest.mark.anyio
async def test_async_breaker_counts_local_rejections_neither_way(clock: VirtualClock) -> None:
    breaker = rs.CircuitBreaker("asvc", minimum_calls=3, clock=clock)

    async def shed() -> None:
        raise rs.RateLimited(1.0, operation="x")

    for _ in range(5):
        with pytest.raises(rs.RateLimited):
            await breaker.acall(shed)
    assert breaker.state is rs.CircuitState.CLOSED


def test_a_recursive_function_is_not_rejected_into_reopening(clock: VirtualClock) -> None:
    # issue 11, seen 3: the inner call was refused (half-open, no trial left) and the outer
    # one counted that refusal as a failed trial: the breaker re-opened every time
    breaker = rs.CircuitBreaker("tree", minimum_calls=2, half_open_calls=1, clock=clock)

    @breaker
    def depth(n: int) -> int:
        return 0 if n == 0 else 1 + depth(n - 1)

    _open(breaker, clock)
    clock.advance(60.0)
    with pytest.raises(rs.CircuitOpenError):
        depth(3)
    assert breaker.state is rs.CircuitState.HALF_OPEN  # not re-opened by its own refusal
    assert depth(0) == 0
    assert breaker.state is rs.CircuitState.CLOSED
    assert depth(3) == 3


# --- a late cooperative call counts as slow ----------------------------------------------


def test_a_late_call_inside_a_timeout_is_a_slow_trial(clock: VirtualClock) -> None:
    breaker = rs.CircuitBreaker("db", minimum_calls=2, half_open_calls=1, clock=clock)
    _open(breaker, clock)
    clock.advance(60.0)

    def ignores_the_budget() -> str:
        clock.advance(5.0)
        return "done"

    pipe = rs.Pipeline(rs.Timeout(1.0, clock=clock), breaker)
    assert pipe.call(ignores_the_budget) == "done"  # the result is kept...
    assert breaker.state is rs.CircuitState.OPEN  # ...and the trial was slow: not healthy
    assert "slow" in breaker.snapshot()["reason"]


def test_a_late_call_under_a_timeout_inside_the_breaker_is_slow(clock: VirtualClock) -> None:
    breaker = rs.CircuitBreaker("db2", minimum_calls=2, half_open_calls=1, clock=clock)
    _open(breaker, clock)
    clock.advance(60.0)
    pipe = rs.Pipeline(breaker, rs.Timeout(1.0, clock=clock))
    assert pipe.call(clock.advance, 5.0) is None
    assert breaker.state is rs.CircuitState.OPEN


def test_a_call_on_time_is_a_good_trial(clock: VirtualClock) -> None:
    breaker = rs.CircuitBreaker("db3", minimum_calls=2, half_open_calls=1, clock=clock)
    _open(breaker, clock)
    clock.advance(60.0)
    pipe = rs.Pipeline(breaker, rs.Timeout(1.0, clock=clock))
    pipe.call(clock.advance, 0.5)
    assert breaker.state is rs.CircuitState.CLOSED
    # an earlier late call in this context does not make a later one slow
    rs.Timeout(1.0, clock=clock).call(clock.advance, 2.0)
    _open(breaker, clock)
    clock.advance(60.0)
    pipe.call(clock.advance, 0.5)
    assert breaker.state is rs.CircuitState.CLOSED


@pytest.mark.parametrize("form", ["call", "decorator"])
def test_late_calls_open_a_closed_breaker_by_slow_rate(clock: VirtualClock, form: str) -> None:
    """CLOSED, a count window, a `slow_call_threshold` longer than the Timeout inside: a call
    that came back late (2 s against 1 s) is slow although faster than the threshold, so the
    breaker's lock-free success path must notice the late mark. Without one, the window also
    shows the late calls (but only a threshold lets slowness open a CLOSED breaker)."""
    breaker = rs.CircuitBreaker(
        f"late-{form}",
        window=rs.CountWindow(4),
        minimum_calls=4,
        slow_call_threshold=10.0,
        slow_call_rate_threshold=0.5,
        clock=clock,
    )
    timeout = rs.Timeout(1.0, clock=clock)

    def late() -> str:
        return timeout.call(lambda: (clock.advance(2.0), "late")[1])

    def on_time() -> str:
        return timeout.call(lambda: "fast")

    run = breaker.call if form == "call" else lambda fn: breaker(fn)()
    assert [run(on_time), run(on_time), run(late), run(late)] == ["fast", "fast", "late", "late"]
    assert breaker.state is rs.CircuitState.OPEN  # 2 of 4 slow: the slow-call rate opened it
    assert "slow" in breaker.snapshot()["reason"]
    plain = rs.CircuitBreaker(f"late-plain-{form}", window=rs.CountWindow(8), clock=clock)
    run = plain.call if form == "call" else lambda fn: plain(fn)()
    run(on_time)
    run(late)
    assert plain.snapshot()["slow_calls"] == 1


# --- presets: never a thread hop ----------------------------------------------------------


@pytest.fixture
def no_active_config() -> Iterator[None]:
    saved = config.use(None)
    yield
    config.use(saved)


@pytest.mark.usefixtures("no_active_config")
@pytest.mark.parametrize("preset", sorted(PRESET_TABLES))
def test_a_sync_resilient_function_runs_on_the_callers_thread(preset: str) -> None:
    # issue 11: under the production preset a sync function ran on "resilience-timeout-op_0"
    op = f"op-{uuid.uuid4().hex[:8]}"
    data = {"operations": {op: {"preset": preset}}}
    config.use(load(data=data, environ={"RESILIENCE_ENV": "testing"}))
    request = threading.local()
    request.user = "alice"
    seen: list[Any] = []

    @rs.resilient(op)
    def handler() -> str:
        seen.append((threading.get_ident(), getattr(request, "user", None), rs.remaining()))
        return "ok"

    before = {t.ident for t in threading.enumerate()}
    assert handler() == "ok"
    ((ident, user, budget),) = seen
    assert ident == threading.get_ident()
    assert user == "alice"
    if PRESET_TABLES[preset].get("timeout"):
        assert budget is not None  # the preset's timeout is a budget on this thread
    assert {t.ident for t in threading.enumerate()} <= before  # no thread was started


@pytest.mark.parametrize("preset", sorted(PRESET_TABLES))
def test_every_preset_timeout_is_cooperative(preset: str) -> None:
    from resilience.config._presets import PRESETS

    policy = PRESETS[preset]
    for section in (policy.timeout, policy.attempt_timeout):
        if section is not None:
            assert section.build("op").mode == "cooperative"


def test_timeout_events_say_late(clock: VirtualClock) -> None:
    seen: list[Any] = []
    stop = events.subscribe(seen.append)
    try:
        rs.Timeout(1.0, name="op", clock=clock).call(clock.advance, 2.0)
    finally:
        stop()
    (event,) = [e for e in seen if isinstance(e, events.TimeoutOccurred)]
    assert event.late is True


# --- drain stops at the budget ------------------------------------------------------------


@pytest.fixture
def queue(tmp_path: Any, clock: VirtualClock) -> Iterator[rs.OfflineQueue]:
    q = rs.OfflineQueue(str(tmp_path / "q.db"), clock=clock)
    q.put_many([(i, rs.Priority.NORMAL) for i in range(10)])
    yield q
    q.close()


def test_drain_sends_nothing_the_budget_cannot_hold(
    queue: rs.OfflineQueue, clock: VirtualClock
) -> None:
    sent: list[float] = []
    with rs.deadline(1.0, clock=clock):
        report = queue.drain(lambda item: sent.append(clock.monotonic()), rate=4.0)
    # one item every 0.25 s: at 0, .25, .5, .75; the next wait would land on the deadline
    assert sent == [0.0, 0.25, 0.5, 0.75]
    assert report.delivered == 4
    assert report.remaining == 6  # the rest stays queued, not leased
    assert isinstance(report.error, rs.TimeoutExceeded)
    assert queue.drain(lambda item: None).delivered == 6  # nothing was left leased


def test_drain_starts_no_backoff_wait_past_the_budget(
    queue: rs.OfflineQueue, clock: VirtualClock
) -> None:
    def down(item: Any) -> None:
        raise ConnectionError("sink down")

    with rs.deadline(1.0, clock=clock):
        report = queue.drain(down, backoff=rs.Backoff.constant(2.0))
    assert clock.sleeps == []
    assert isinstance(report.error, rs.TimeoutExceeded)
    assert isinstance(report.error.__cause__, ConnectionError)
    assert report.remaining == 10


def test_a_used_up_budget_drains_nothing(queue: rs.OfflineQueue, clock: VirtualClock) -> None:
    sent: list[Any] = []
    with rs.deadline(1.0, clock=clock):
        clock.advance(1.0)
        report = queue.drain(sent.append)
    assert sent == []
    assert report.remaining == 10


@pytest.mark.anyio
async def test_adrain_stops_at_the_budget(queue: rs.OfflineQueue, clock: VirtualClock) -> None:
    sent: list[float] = []

    async def send(item: Any) -> None:
        sent.append(clock.monotonic())

    with anyio.fail_after(10):
        async with rs.deadline(1.0, clock=clock):
            report = await queue.adrain(send, rate=4.0)
    assert sent == [0.0, 0.25, 0.5, 0.75]
    assert isinstance(report.error, rs.TimeoutExceeded)


# --- a fallback chain starts no step the budget cannot hold --------------------------------


def test_a_used_up_budget_skips_to_the_cache_and_default(clock: VirtualClock) -> None:
    calls: list[str] = []

    def primary(x: int) -> str:
        calls.append("primary")
        if len(calls) > 1:
            raise ConnectionError("down")
        return f"live {x}"

    def secondary(x: int) -> str:
        calls.append("secondary")
        return f"secondary {x}"

    chain = rs.FallbackChain(
        rs.Step(primary),
        rs.Step(secondary, level=rs.DegradationLevel.DEGRADED),
        rs.StaleCache(max_age=300.0, clock=clock),
        rs.Default("n/a"),
    )
    assert chain.execute(1).value == "live 1"  # fills the cache
    with rs.deadline(1.0, clock=clock):
        clock.advance(1.0)
        served = chain.execute(1)
    assert served.value == "live 1"  # from the cache: no remote step was started
    assert served.level is rs.DegradationLevel.CACHE_ONLY
    assert calls == ["primary"]
    assert [type(e) for e in served.errors] == [rs.TimeoutExceeded, rs.TimeoutExceeded]


@pytest.mark.anyio
async def test_async_chain_with_no_time_left_serves_the_default(clock: VirtualClock) -> None:
    calls: list[str] = []

    async def primary() -> str:
        calls.append("primary")
        return "live"

    chain = rs.FallbackChain(rs.Step(primary), rs.Default("n/a"))
    async with rs.deadline(1.0, clock=clock):
        assert (await chain.aexecute()).value == "live"
        clock.advance(1.0)
        assert (await chain.aexecute()).value == "n/a"
    assert calls == ["primary"]


# --- the httpx transport lowers request timeouts to what the budget has left ----------------


def test_httpx_request_timeouts_are_lowered_to_the_budget(clock: VirtualClock) -> None:
    httpx = pytest.importorskip("httpx")
    from resilience.integrations.httpx import ResilientTransport

    seen: list[dict[str, float]] = []

    def handler(request: Any) -> Any:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200)

    transport = ResilientTransport(transport=httpx.MockTransport(handler), clock=clock)
    with httpx.Client(transport=transport, timeout=httpx.Timeout(5.0, read=0.5)) as c:
        c.get("http://svc/a")
        with rs.deadline(2.0, clock=clock):
            clock.advance(1.0)
            c.get("http://svc/b")
            clock.advance(1.0)
            with pytest.raises(rs.TimeoutExceeded):  # nothing left: nothing is sent
                c.post("http://svc/c")
    assert seen == [
        {"connect": 5.0, "read": 0.5, "write": 5.0, "pool": 5.0},
        {"connect": 1.0, "read": 0.5, "write": 1.0, "pool": 1.0},
    ]


def test_a_hanging_server_is_cut_at_the_budget_not_the_client_timeout() -> None:
    httpx = pytest.importorskip("httpx")
    from _servers import Hang, HTTPTestServer
    from resilience.integrations.httpx import ResilientTransport

    server = HTTPTestServer().start()
    try:
        server.default = Hang(5)
        transport = ResilientTransport(policy=rs.Retry(max_attempts=5))
        begin = time.monotonic()
        with httpx.Client(transport=transport, timeout=10.0) as c:
            with pytest.raises(rs.TimeoutExceeded) as info:
                rs.Timeout(0.3).call(c.get, server.url)
        assert time.monotonic() - begin < 3.0  # not the client's 10 s
        assert isinstance(info.value.__cause__, httpx.TimeoutException)
    finally:
        server.stop()


def test_an_infinite_budget_is_no_limit_and_nesting_still_takes_the_smaller(
    clock: VirtualClock,
) -> None:
    import math

    with rs.deadline(math.inf, clock=clock):
        assert rs.remaining() == math.inf
        with rs.deadline(2.0, clock=clock):
            assert rs.remaining() == 2.0


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), "5"])
def test_a_bad_budget_is_a_config_error(seconds: Any) -> None:
    with pytest.raises(rs.ConfigError) as info:
        rs.deadline(seconds)
    assert info.value.errors[0][0] == "seconds"
