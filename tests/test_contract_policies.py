"""Acceptance tests, DESIGN.md's contract: timeout, bulkhead, rate limiter, fallback, pipeline,
@resilient and tiered failover, called exactly as the contract writes them."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import resilience as rs
from resilience.testing import VirtualClock

# --- timeout, bulkhead, rate limiter -----------------------------------------------------


def test_timeout_sync_runs_in_a_worker_and_raises_at_the_deadline() -> None:
    release = threading.Event()
    threads: list[int] = []

    def stuck() -> str:
        threads.append(threading.get_ident())
        release.wait(5)
        return "late"

    t = rs.Timeout(0.05, mode="thread")  # the default, "cooperative", runs on this thread
    t0 = time.perf_counter()
    try:
        with pytest.raises(rs.TimeoutExceeded):
            t.call(stuck)
    finally:
        release.set()
    assert time.perf_counter() - t0 < 2.0  # the caller did not wait for the call
    assert threads
    assert threads[0] != threading.get_ident()
    assert issubclass(rs.TimeoutExceeded, rs.ResilienceError)
    assert rs.Timeout(2.0).call(lambda x: x * 2, 21) == 42


@pytest.mark.anyio
async def test_timeout_async_really_cancels() -> None:
    import anyio

    cancelled = []

    async def slow() -> None:
        try:
            await anyio.sleep(5)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    t0 = time.perf_counter()
    with pytest.raises(rs.TimeoutExceeded):
        await rs.Timeout(0.05).acall(slow)
    assert cancelled == [True]
    assert time.perf_counter() - t0 < 2.0


def test_bulkhead_full_when_both_are_taken() -> None:
    bh = rs.Bulkhead(max_concurrent=1, max_waiting=0)
    assert inspect.signature(rs.Bulkhead).parameters["max_concurrent"].default == 10
    assert inspect.signature(rs.Bulkhead).parameters["max_waiting"].default == 0
    inside = threading.Event()
    release = threading.Event()

    def hold() -> str:
        inside.set()
        release.wait(5)
        return "held"

    out: list[str] = []
    worker = threading.Thread(target=lambda: out.append(bh.call(hold)))
    worker.start()
    try:
        assert inside.wait(5)
        with pytest.raises(rs.BulkheadFull):
            bh.call(lambda: "no room")
    finally:
        release.set()
        worker.join(5)
    assert out == ["held"]
    assert bh.call(lambda: "room again") == "room again"


def test_bulkhead_waiting_slot_is_used() -> None:
    bh = rs.Bulkhead(max_concurrent=1, max_waiting=1)
    inside = threading.Event()
    release = threading.Event()

    def hold() -> str:
        inside.set()
        release.wait(5)
        return "first"

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(bh.call(hold)))
    first.start()
    assert inside.wait(5)
    second = threading.Thread(target=lambda: results.append(bh.call(lambda: "second")))
    second.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the second caller is queued (one waiting slot)
        try:
            bh.call(lambda: "third")
        except rs.BulkheadFull:
            break
        time.sleep(0.001)
    else:  # pragma: no cover
        pytest.fail("a third caller was never rejected")
    release.set()
    first.join(5)
    second.join(5)
    assert sorted(results) == ["first", "second"]


def test_rate_limiter_token_bucket_and_retry_after() -> None:
    clock = VirtualClock()
    params = inspect.signature(rs.RateLimiter).parameters
    assert [params[n].default for n in ("rate", "per", "burst", "store")] == [100, 1.0, None, None]
    rl = rs.RateLimiter(rate=10, per=1.0, burst=None, store=None, clock=clock)
    for _ in range(10):  # burst None: a full second's worth
        assert rl.call(lambda: "ok") == "ok"
    with pytest.raises(rs.RateLimited) as info:
        rl.call(lambda: "ok")
    assert info.value.retry_after == pytest.approx(0.1)
    clock.advance(0.1)
    assert rl.call(lambda: "ok") == "ok"
    rl = rs.RateLimiter(rate=10, per=1.0, burst=2, clock=clock)
    rl.call(lambda: 1)
    rl.call(lambda: 2)
    with pytest.raises(rs.RateLimited):
        rl.call(lambda: 3)


def test_rate_limiter_with_a_store() -> None:
    clock = VirtualClock()
    store = rs.stores.MemoryStore()
    a = rs.RateLimiter(rate=2, per=1.0, store=store, name="shared", clock=clock)
    b = rs.RateLimiter(rate=2, per=1.0, store=store, name="shared", clock=clock)
    a.call(lambda: None)
    b.call(lambda: None)
    with pytest.raises(rs.RateLimited):
        a.call(lambda: None)


# --- fallback ---------------------------------------------------------------------------


def test_degradation_level_is_ordered() -> None:
    L = rs.DegradationLevel
    assert [m.name for m in L] == ["FULL", "DEGRADED", "LIMITED", "CACHE_ONLY"]
    assert L.FULL < L.DEGRADED < L.LIMITED < L.CACHE_ONLY


def _chain(state: dict[str, Any], clock: VirtualClock) -> rs.FallbackChain:
    def primary(sym: str) -> str:
        if state["primary_down"]:
            raise ConnectionError("primary down")
        return f"{sym}: live"

    def secondary(sym: str) -> str:
        if state["secondary_down"]:
            raise TimeoutError("secondary down")
        return f"{sym}: delayed"

    return rs.FallbackChain(
        rs.Step(primary, level=rs.DegradationLevel.FULL),
        rs.Step(secondary, level=rs.DegradationLevel.DEGRADED),
        rs.StaleCache(max_age=300.0, clock=clock),
        rs.Default(lambda sym: f"{sym}: n/a", level=rs.DegradationLevel.LIMITED),
        name="quotes",
    )


def test_fallback_chain_served_value_level_source_errors() -> None:
    clock = VirtualClock()
    state = {"primary_down": False, "secondary_down": False}
    chain = _chain(state, clock)
    served = chain.execute("ACME")
    assert isinstance(served, rs.Served)
    value, level, source, errors = served  # Served(value, level, source, errors)
    assert (value, level) == ("ACME: live", rs.DegradationLevel.FULL)
    assert source.endswith("primary")  # the step's name: its function's __qualname__
    assert list(errors) == []
    assert served.value == value
    assert served.level is level
    assert served.source == source

    state["primary_down"] = True
    served = chain.execute("ACME")
    assert served.value == "ACME: delayed"
    assert served.level is rs.DegradationLevel.DEGRADED
    assert served.source.endswith("secondary")
    assert len(served.errors) == 1
    assert isinstance(served.errors[0], ConnectionError)

    # the stale cache serves the last good result for the same arguments
    state["secondary_down"] = True
    served = chain.execute("ACME")
    assert served.value == "ACME: delayed"
    assert served.level is rs.DegradationLevel.CACHE_ONLY
    # ... not for other arguments: the default then
    served = chain.execute("OTHER")
    assert served.value == "OTHER: n/a"
    assert served.level is rs.DegradationLevel.LIMITED
    # ... and not once it is older than max_age
    clock.advance(301)
    assert chain.execute("ACME").value == "ACME: n/a"
    # chain(*a, **kw): the value alone
    assert chain("ACME") == "ACME: n/a"
    state["primary_down"] = False
    assert chain("ACME") == "ACME: live"


def test_default_takes_a_value_and_all_fallbacks_failed_has_one_error_per_step() -> None:
    chain = rs.FallbackChain(rs.Step(lambda: 1 / 0), rs.Default("busy"), name="x")
    # ZeroDivisionError is PERMANENT: re-raised, not fallen through (classifier decides)
    with pytest.raises(ZeroDivisionError):
        chain()

    def down() -> None:
        raise ConnectionError("a")

    def also_down() -> None:
        raise TimeoutError("b")

    assert rs.FallbackChain(rs.Step(down), rs.Default("busy"))() == "busy"
    chain = rs.FallbackChain(
        rs.Step(down), rs.Step(also_down, level=rs.DegradationLevel.DEGRADED), name="x"
    )
    with pytest.raises(rs.AllFallbacksFailed) as info:
        chain.execute()
    assert len(info.value.errors) == 2
    assert isinstance(info.value.errors[0], ConnectionError)
    assert isinstance(info.value.errors[1], TimeoutError)


@pytest.mark.anyio
async def test_fallback_aexecute() -> None:
    async def primary(q: str) -> str:
        raise ConnectionError("down")

    chain = rs.FallbackChain(
        rs.Step(primary, level=rs.DegradationLevel.FULL),
        rs.Default("busy", level=rs.DegradationLevel.LIMITED),
        name="quotes",
    )
    served = await chain.aexecute("q")
    assert served.value == "busy"
    assert served.level is rs.DegradationLevel.LIMITED
    assert served.source == "default"


def test_fallback_level_is_in_the_events() -> None:
    from resilience import events

    seen: list[Any] = []
    unsubscribe = events.subscribe(seen.append)
    try:
        chain = rs.FallbackChain(
            rs.Step(lambda: (_ for _ in ()).throw(ConnectionError())), rs.Default("d"), name="evt"
        )
        assert chain() == "d"
    finally:
        unsubscribe()
    # the event's field is `degradation` (DESIGN: never a logging-reserved name like `level`)
    levels = [
        getattr(e, "degradation", None) for e in seen if getattr(e, "operation", None) == "evt"
    ]
    assert (
        rs.DegradationLevel.LIMITED in levels
        or "LIMITED" in map(str, levels)
        or any(str(lv).upper().endswith("LIMITED") for lv in levels if lv is not None)
    )


# --- pipeline ------------------------------------------------------------------------------


def test_pipeline_as_written_outermost_first() -> None:
    pipe = rs.Pipeline(
        rs.Timeout(5),
        rs.Retry(max_attempts=3),
        rs.CircuitBreaker("llm"),
        rs.Bulkhead(20),
        name="llm",
    )
    assert pipe.call(lambda a, *, b: a + b, 1, b=2) == 3

    @pipe
    def generate(prompt: str) -> str:
        return prompt.upper()

    assert generate("hi") == "HI"

    @pipe
    async def agenerate(prompt: str) -> str:
        return prompt.lower()

    assert inspect.iscoroutinefunction(agenerate)
    assert asyncio.run(agenerate("HI")) == "hi"

    async def via_acall() -> str:
        async def fn(p: str) -> str:
            return p * 2

        return await pipe.acall(fn, "ab")

    assert asyncio.run(via_acall()) == "abab"


def test_pipeline_order_retry_outside_breaker() -> None:
    # Retry outside the breaker: each attempt is one breaker call; once the breaker opens,
    # the retry sees CircuitOpenError (retryable, RATE_LIMITED) and the breaker keeps it out.
    clock = VirtualClock()
    br = rs.CircuitBreaker("llm", minimum_calls=2, window=rs.CountWindow(2), clock=clock)
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    pipe = rs.Pipeline(
        rs.Retry(max_attempts=5, backoff=rs.Backoff.constant(0.01), deadline=1.0, clock=clock),
        br,
        name="llm",
    )
    with pytest.raises((ConnectionError, rs.CircuitOpenError)):
        pipe.call(down)
    assert len(calls) == 2  # the breaker opened after two; no more reached the function
    assert br.state is rs.CircuitState.OPEN


# --- @resilient -------------------------------------------------------------------------------


@pytest.fixture
def active_config(tmp_path: Path) -> Iterator[Any]:
    from resilience import config

    (tmp_path / "resilience.toml").write_text(
        '[operations."llm.generate"]\n'
        'retry = { max_attempts = 3, backoff = { kind = "constant", delay = 0.01 } }\n'
        "breaker = false\n"
    )
    cfg = config.load(path=tmp_path / "resilience.toml", environ={})
    previous = config.use(cfg)
    try:
        yield cfg
    finally:
        config.use(previous)


def test_resilient_uses_the_active_config(active_config: Any) -> None:
    calls: list[int] = []

    @rs.resilient("llm.generate")
    def generate(prompt: str) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("flaky")
        return prompt

    assert generate("hi") == "hi"
    assert len(calls) == 3  # max_attempts = 3 from the file


def test_resilient_with_fallback_default(active_config: Any) -> None:
    @rs.resilient("llm.generate", fallback=rs.Default("busy"))
    def generate(prompt: str) -> str:
        raise ConnectionError("down")

    assert generate("hi") == "busy"


# --- tiered failover ---------------------------------------------------------------------


class _DC:
    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.calls = 0

    def search(self, q: str) -> str:
        self.calls += 1
        if self.down:
            raise ConnectionError(f"{self.name} down")
        return f"{self.name}:{q}"


def _failover(clock: VirtualClock, **kw: Any) -> tuple[rs.Failover, _DC, _DC, _DC]:
    dc1, dc2, dc3 = _DC("dc1"), _DC("dc2"), _DC("dc3")
    fo = rs.Failover(
        [rs.Tier("dc1", dc1.search), rs.Tier("dc2", dc2.search), rs.Tier("dc3", dc3.search)],
        name="ldap",
        health_check=kw.pop("health_check", None),
        probe_interval=5.0,
        breaker={"failure_rate_threshold": 0.5, "minimum_calls": 5},
        classifier=rs.DEFAULT_CLASSIFIER,
        clock=clock,
    )
    return fo, dc1, dc2, dc3


def test_failover_best_tier_first_and_the_same_call_moves_on() -> None:
    clock = VirtualClock()
    fo, dc1, _dc2, _dc3 = _failover(clock)
    assert fo.call("alice") == "dc1:alice"
    assert fo.active_tier == "dc1"
    dc1.down = True
    assert fo.call("bob") == "dc2:bob"  # the same call moved on
    served = fo.execute("carol")
    assert isinstance(served, rs.Served)
    assert served.source == "dc2"
    assert served.value == "dc2:carol"
    assert len(served.errors) == 1
    status = fo.tiers_status()
    assert isinstance(status, dict)
    assert set(status) == {"dc1", "dc2", "dc3"}


def test_failover_permanent_error_is_raised() -> None:
    clock = VirtualClock()
    dc = _DC("dc1")
    calls = []

    def bad(q: str) -> str:
        calls.append(q)
        raise ValueError("bad query")

    fo = rs.Failover([rs.Tier("dc1", bad), rs.Tier("dc2", dc.search)], name="p", clock=clock)
    with pytest.raises(ValueError):
        fo.call("x")
    assert dc.calls == 0


def test_all_tiers_failed_has_errors_per_tier() -> None:
    clock = VirtualClock()
    fo, dc1, dc2, dc3 = _failover(clock)
    dc1.down = dc2.down = dc3.down = True
    with pytest.raises(rs.AllTiersFailed) as info:
        fo.call("x")
    assert set(info.value.errors) == {"dc1", "dc2", "dc3"}
    assert all(isinstance(e, ConnectionError) for e in info.value.errors.values())


def test_failover_returns_to_primary_after_a_half_open_trial() -> None:
    clock = VirtualClock()
    fo, dc1, _dc2, _dc3 = _failover(clock)
    dc1.down = True
    for i in range(5):
        fo.call(i)
    assert fo.active_tier == "dc2"
    dc1.down = False
    clock.advance(5.0)  # probe_interval: the breaker's open_duration
    results = {fo.call("x") for _ in range(5)}
    assert "dc1:x" in results
    assert fo.active_tier == "dc1"


def test_failover_returns_to_primary_after_a_successful_probe() -> None:
    clock = VirtualClock()
    probed: list[str] = []
    dc1_ok = {"ok": False}

    def health_check(tier: rs.Tier) -> bool:
        probed.append(tier.name)
        return tier.name != "dc1" or dc1_ok["ok"]

    fo, dc1, _dc2, _dc3 = _failover(clock, health_check=health_check)
    dc1.down = True
    for i in range(5):
        fo.call(i)
    assert fo.active_tier == "dc2"
    dc1.down = False
    dc1_ok["ok"] = True
    clock.advance(5.0)
    for _ in range(3):
        fo.call("y")
    assert "dc1" in probed
    assert fo.active_tier == "dc1"
    assert fo.call("z") == "dc1:z"


@pytest.mark.anyio
async def test_failover_acall() -> None:
    clock = VirtualClock()

    async def down(q: str) -> str:
        raise ConnectionError("down")

    async def up(q: str) -> str:
        return f"up:{q}"

    fo = rs.Failover([rs.Tier("a", down), rs.Tier("b", up)], name="async-fo", clock=clock)
    assert await fo.acall("q") == "up:q"


def test_failover_async_health_check_probes_for_sync_calls() -> None:
    clock = VirtualClock()
    state = {"down": True}

    def a(x: int) -> str:
        if state["down"]:
            raise ConnectionError("a down")
        return "a"

    async def health_check(tier: rs.Tier) -> bool:  # "sync or async"
        return tier.name != "a" or not state["down"]

    fo = rs.Failover(
        [rs.Tier("a", a), rs.Tier("b", lambda x: "b")],
        name="contract-fo-hc",
        health_check=health_check,
        breaker={"minimum_calls": 2},
        clock=clock,
    )
    for _ in range(3):
        fo.call(1)
    assert fo.active_tier == "b"
    state["down"] = False
    clock.advance(5.0)
    assert [fo.call(1) for _ in range(3)][-1] == "a"
    assert fo.active_tier == "a"


def test_failover_moves_on_for_rate_limited_too() -> None:
    class TooMany(Exception):
        status_code = 429

    def limited() -> str:
        raise TooMany()

    fo = rs.Failover(
        [rs.Tier("a", limited), rs.Tier("b", lambda: "b")],
        name="contract-fo-rl",
        clock=VirtualClock(),
    )
    assert fo.execute().source == "b"


@pytest.mark.anyio
async def test_bulkhead_async_full() -> None:
    import anyio

    bh = rs.Bulkhead(max_concurrent=1, max_waiting=0)
    release = anyio.Event()
    entered = anyio.Event()

    async def hold() -> int:
        entered.set()
        await release.wait()
        return 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(bh.acall, hold)
        await entered.wait()
        with pytest.raises(rs.BulkheadFull):
            await bh.acall(hold)
        release.set()


@pytest.mark.anyio
async def test_rate_limiter_async() -> None:
    clock = VirtualClock()
    rl = rs.RateLimiter(rate=1, per=1.0, clock=clock)

    async def fn() -> str:
        return "ok"

    assert await rl.acall(fn) == "ok"
    with pytest.raises(rs.RateLimited) as info:
        await rl.acall(fn)
    assert info.value.retry_after == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("build", "fields"),
    [
        (
            lambda: rs.CircuitBreaker(
                "x", failure_rate_threshold=0, minimum_calls=0, half_open_calls=0
            ),
            {"failure_rate_threshold", "minimum_calls", "half_open_calls"},
        ),
        (lambda: rs.Retry(max_attempts=0, deadline=-1), {"max_attempts", "deadline"}),
        (lambda: rs.Timeout(0), {"seconds"}),
        (lambda: rs.Bulkhead(max_concurrent=0, max_waiting=-1), {"max_concurrent", "max_waiting"}),
        (lambda: rs.RateLimiter(rate=0, per=0), {"rate", "per"}),
        (lambda: rs.FaultInjection(error_rate=2, latency_rate=-1), {"error_rate", "latency_rate"}),
        (
            lambda: rs.OfflineQueue(":memory:", max_items=0, max_attempts=0),
            {"max_items", "max_attempts"},
        ),
        (lambda: rs.Failover([], probe_interval=0), {"tiers", "probe_interval"}),
        (lambda: rs.RetryBudget(ratio=2, min_per_second=-1), {"ratio", "min_per_second"}),
    ],
)
def test_bad_arguments_raise_config_error_listing_every_bad_field(
    build: Any, fields: set[str]
) -> None:
    with pytest.raises(rs.ConfigError) as info:
        build()
    assert {loc for loc, _ in info.value.errors} == fields
    text = str(info.value)
    assert all(field in text for field in fields)
    assert isinstance(info.value, rs.ResilienceError)


def test_reset_restores_the_base_open_duration() -> None:
    clock = VirtualClock()
    br = rs.CircuitBreaker(
        "payments",
        minimum_calls=1,
        open_duration=10.0,
        open_duration_max=100.0,
        half_open_calls=1,
        clock=clock,
    )

    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        br.call(down)
    clock.advance(10)
    with pytest.raises(ConnectionError):
        br.call(down)  # failed trial: re-open for 20 s
    assert br.snapshot()["open_duration"] == 20.0
    br.reset()
    with pytest.raises(ConnectionError):
        br.call(down)
    assert br.snapshot()["remaining"] == pytest.approx(10.0)


def test_failover_probes_a_down_tier_every_probe_interval() -> None:
    clock = VirtualClock()
    probes: list[float] = []

    def health_check(tier: rs.Tier) -> bool:
        probes.append(clock.monotonic())
        return False  # still down: real traffic stays away

    calls: list[int] = []

    def a() -> str:
        calls.append(1)
        raise ConnectionError("a down")

    fo = rs.Failover(
        [rs.Tier("a", a), rs.Tier("b", lambda: "b")],
        name="contract-fo-probe",
        health_check=health_check,
        probe_interval=5.0,
        breaker={"minimum_calls": 2},
        clock=clock,
    )
    for _ in range(30):
        assert fo.call() == "b"
        clock.advance(1)
    assert len(probes) >= 4
    assert all(b - a >= 5.0 for a, b in itertools.pairwise(probes))
    assert len(calls) == 2  # a failing probe keeps real calls off the tier
    assert fo.active_tier == "b"


@pytest.mark.anyio
async def test_pipeline_acall_on_both_backends_cancels_at_the_timeout() -> None:
    import anyio

    clock = VirtualClock()
    pipe = rs.Pipeline(
        rs.Timeout(0.05),
        rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.01), clock=clock),
        rs.CircuitBreaker("contract.llm.async", clock=clock),
        rs.Bulkhead(20),
        name="llm",
    )
    attempts: list[int] = []

    async def flaky(prompt: str) -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("once")
        return prompt.upper()

    assert await pipe.acall(flaky, "hi") == "HI"
    assert len(attempts) == 2

    cancelled: list[bool] = []

    async def hangs(prompt: str) -> str:
        try:
            await anyio.sleep(5)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise
        return prompt

    with pytest.raises(rs.TimeoutExceeded):
        await pipe.acall(hangs, "x")
    assert cancelled == [True]
