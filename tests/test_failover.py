from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilience as rs
from resilience import events
from resilience.failover import Failover, Tier
from resilience.testing import VirtualClock


class Backend:
    """A server you can take down and bring back; records every request it saw."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: BaseException | None = None
        self.seen: list[Any] = []

    def __call__(self, request: Any) -> str:
        self.seen.append(request)
        if self.error is not None:
            raise self.error
        return f"{self.name}:{request}"

    def down(self, error: BaseException | None = None) -> None:
        self.error = error or ConnectionError(f"{self.name} unreachable")

    def up(self) -> None:
        self.error = None


def only(kind: type[events.Event], got: list[events.Event]) -> list[Any]:
    return [e for e in got if isinstance(e, kind)]


def three(clock: VirtualClock, **kwargs: Any) -> tuple[Failover, Backend, Backend, Backend]:
    a, b, c = Backend("dc1"), Backend("dc2"), Backend("dc3")
    fo = Failover(
        [Tier("dc1", a), Tier("dc2", b), Tier("dc3", c)], name="ldap", clock=clock, **kwargs
    )
    return fo, a, b, c


def test_public_names() -> None:
    assert rs.Failover is Failover
    assert rs.Tier is Tier


def test_healthy_primary_serves_everything(clock: VirtualClock, seen: list[events.Event]) -> None:
    fo, _a, b, _ = three(clock)
    served = fo.execute("uid=ann")
    assert served.value == "dc1:uid=ann"
    assert served.source == "dc1"
    assert served.level is rs.DegradationLevel.FULL
    assert served.errors == ()
    assert fo.call("x") == "dc1:x"
    assert fo("y") == "dc1:y"
    assert b.seen == []
    assert fo.active_tier == "dc1"
    assert only(events.FailoverSwitched, seen) == []


def test_transient_failure_moves_the_same_call_on(
    clock: VirtualClock, seen: list[events.Event]
) -> None:
    fo, a, b, _ = three(clock)
    err = ConnectionError("dc1 reset")
    a.down(err)
    req = object()
    served = fo.execute(req)
    assert served.source == "dc2"
    assert served.level is rs.DegradationLevel.DEGRADED
    assert served.errors == (err,)
    assert a.seen == [req]
    assert b.seen == [req]  # the very same request, not a new one


def test_primary_breaker_opens_then_calls_skip_it(
    clock: VirtualClock, seen: list[events.Event]
) -> None:
    fo, a, _b, _ = three(clock, breaker={"failure_rate_threshold": 0.5, "minimum_calls": 5})
    a.down()
    for i in range(20):
        assert fo.call(i) == f"dc2:{i}"
    assert len(a.seen) == 5  # after 5 failures its breaker opened: no more traffic to dc1
    assert fo.breaker("dc1").state is rs.CircuitState.OPEN
    assert fo.active_tier == "dc2"
    switched = only(events.FailoverSwitched, seen)
    assert len(switched) == 1
    assert (switched[0].from_tier, switched[0].to_tier) == ("dc1", "dc2")
    assert "dc1" in switched[0].reason
    assert "unreachable" in switched[0].reason
    status = fo.tiers_status()
    assert status["dc1"]["up"] is False
    assert status["dc1"]["state"] == "open"
    assert status["dc2"]["active"] is True
    assert status["dc1"]["last_error"].startswith("ConnectionError")


def test_permanent_errors_are_raised_not_failed_over(clock: VirtualClock) -> None:
    fo, a, b, _ = three(clock)
    a.down(ValueError("malformed filter"))
    for _ in range(10):
        with pytest.raises(ValueError, match="malformed"):
            fo.call("(&(")
    assert b.seen == []
    assert fo.breaker("dc1").state is rs.CircuitState.CLOSED  # not the server's fault


def test_all_tiers_failed_lists_each_tier(clock: VirtualClock) -> None:
    fo, a, b, c = three(clock)
    a.down()
    b.down(TimeoutError("slow"))
    c.down(OSError("no route"))
    with pytest.raises(rs.AllTiersFailed) as info:
        fo.call("q")
    assert list(info.value.errors) == ["dc1", "dc2", "dc3"]
    assert isinstance(info.value.errors["dc2"], TimeoutError)
    assert info.value.operation == "ldap"


def test_open_breakers_show_up_as_circuit_open_errors(clock: VirtualClock) -> None:
    fo, a, b, c = three(clock, breaker={"minimum_calls": 2})
    for x in (a, b, c):
        x.down()
    for _ in range(2):
        with pytest.raises(rs.AllTiersFailed):
            fo.call("q")
    with pytest.raises(rs.AllTiersFailed) as info:
        fo.call("q")
    assert all(isinstance(e, rs.CircuitOpenError) for e in info.value.errors.values())
    assert len(a.seen) == 2


def test_return_to_primary_through_half_open_trials(
    clock: VirtualClock, seen: list[events.Event]
) -> None:
    fo, a, b, _ = three(clock, probe_interval=5.0, breaker={"minimum_calls": 5})
    a.down()
    for i in range(10):
        fo.call(i)
    assert fo.active_tier == "dc2"
    a.up()
    clock.advance(4.9)
    fo.call("still dc2")
    assert b.seen[-1] == "still dc2"
    clock.advance(0.2)  # the breaker half-opens after probe_interval
    assert fo.execute("trial").source == "dc1"
    for i in range(3):
        assert fo.execute(i).source == "dc1"
    assert fo.breaker("dc1").state is rs.CircuitState.CLOSED
    assert fo.active_tier == "dc1"
    assert [e.tier for e in only(events.TierRecovered, seen)] == ["dc1"]
    moves = [(e.from_tier, e.to_tier) for e in only(events.FailoverSwitched, seen)]
    assert moves == [("dc1", "dc2"), ("dc2", "dc1")]


def test_failed_half_open_trial_still_serves_the_call(clock: VirtualClock) -> None:
    fo, a, _b, _ = three(clock, probe_interval=5.0, breaker={"minimum_calls": 5})
    a.down()
    for i in range(5):
        fo.call(i)
    clock.advance(5.0)
    n = len(a.seen)
    served = fo.execute("trial")
    assert len(a.seen) == n + 1  # dc1 got its trial ...
    assert served.source == "dc2"  # ... failed, and the call moved on
    assert fo.breaker("dc1").state is rs.CircuitState.OPEN


def test_health_check_probes_every_interval_and_brings_primary_back(
    clock: VirtualClock, seen: list[events.Event]
) -> None:
    probes: list[tuple[str, float]] = []
    healthy = {"dc1": False}

    def check(tier: Tier) -> bool:
        probes.append((tier.name, clock.monotonic()))
        return healthy.get(tier.name, True)

    fo, a, _b, _ = three(
        clock, health_check=check, probe_interval=5.0, breaker={"minimum_calls": 5}
    )
    a.down()
    for i in range(5):
        fo.call(i)
    assert fo.active_tier == "dc2"
    # calls within the interval do not probe
    for _ in range(10):
        clock.advance(0.4)
        fo.call("x")
    assert probes == []
    clock.advance(1.1)
    fo.call("x")
    assert probes == [("dc1", 5.1)]
    # the failed probe holds dc1 down: no real traffic even though its breaker half-opened
    before = len(a.seen)
    for _ in range(5):
        clock.advance(0.5)
        assert fo.execute("y").source == "dc2"
    assert len(a.seen) == before
    assert fo.tiers_status()["dc1"]["held_down"] is True
    assert len(probes) == 1
    clock.advance(2.6)  # the next probe is due 5 s after the failed one
    a.up()
    healthy["dc1"] = True
    served = fo.execute("back")
    assert len(probes) == 2
    assert served.source == "dc1"  # the very call that ran the probe
    assert fo.breaker("dc1").state is rs.CircuitState.CLOSED
    assert fo.active_tier == "dc1"
    assert [e.tier for e in only(events.TierRecovered, seen)] == ["dc1"]


def test_health_check_that_raises_counts_as_unhealthy(clock: VirtualClock) -> None:
    def check(tier: Tier) -> bool:
        raise RuntimeError("probe crashed")

    fo, a, _, _ = three(clock, health_check=check, probe_interval=1.0, breaker={"minimum_calls": 2})
    a.down()
    fo.call(1)
    fo.call(2)
    clock.advance(1.0)
    assert fo.execute(3).source == "dc2"
    assert fo.tiers_status()["dc1"]["held_down"] is True


def test_a_forced_open_tier_is_not_probed_back(clock: VirtualClock) -> None:
    probes: list[str] = []

    def check(tier: Tier) -> bool:
        probes.append(tier.name)
        return True

    fo, a, _b, _ = three(clock, health_check=check, probe_interval=1.0)
    fo.breaker("dc1").force_open()  # an operator takes dc1 out of rotation
    assert fo.execute("q").source == "dc2"
    clock.advance(10.0)
    for _ in range(3):
        assert fo.execute("q").source == "dc2"
    assert probes == []
    assert a.seen == []
    fo.breaker("dc1").reset()  # and puts it back
    assert fo.execute("q").source == "dc1"
    assert fo.active_tier == "dc1"


def test_cascade_to_tertiary_and_back(clock: VirtualClock, seen: list[events.Event]) -> None:
    fo, a, b, _c = three(clock, probe_interval=5.0, breaker={"minimum_calls": 3})
    a.down()
    for i in range(3):
        assert fo.execute(i).source == "dc2"
    b.down()
    for i in range(3):
        assert fo.execute(i).source == "dc3"
    assert fo.active_tier == "dc3"
    a.up()
    clock.advance(5.0)
    for _ in range(3):
        assert fo.execute("q").source == "dc1"
    assert fo.active_tier == "dc1"
    moves = [(e.from_tier, e.to_tier) for e in only(events.FailoverSwitched, seen)]
    assert moves == [("dc1", "dc2"), ("dc2", "dc3"), ("dc3", "dc1")]


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(rs.ConfigError) as info:
        Failover([])
    assert info.value.errors[0][0] == "tiers"
    with pytest.raises(rs.ConfigError) as info:
        Failover([Tier("a", print), Tier("a", print)])
    assert "duplicate" in info.value.errors[0][1]
    with pytest.raises(rs.ConfigError):
        Tier("a", "not callable")  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError):
        Tier("", print)
    with pytest.raises(rs.ConfigError) as info:
        Failover(
            ["print"],  # type: ignore[list-item]
            name="",
            probe_interval=0,
            health_check=3,  # type: ignore[arg-type]
            breaker=[1],  # type: ignore[arg-type]
        )
    locs = [loc for loc, _ in info.value.errors]
    assert locs == ["tiers[0]", "name", "health_check", "probe_interval", "breaker"]
    with pytest.raises(rs.ConfigError) as info:
        Failover([Tier("a", print)], breaker={"minimum_calls": 0})
    assert info.value.errors[0][0] == "breaker.minimum_calls"
    with pytest.raises(rs.ConfigError) as info:
        Failover([Tier("a", print)], breaker={"no_such_option": 1})
    assert info.value.errors[0][0] == "breaker"


def test_sync_call_refuses_async_tiers() -> None:
    async def tier(q: str) -> str:
        return q

    fo = Failover([Tier("a", tier)])
    with pytest.raises(TypeError, match="acall"):
        fo.call("q")


def test_threads_every_call_is_served(clock: VirtualClock) -> None:
    counter = iter(range(10**9))
    lock = threading.Lock()
    secondary = Backend("s")

    def primary(req: int) -> str:
        with lock:
            n = next(counter)
        if n % 2:
            raise ConnectionError("flaky")
        return "p"

    # a 50% failure rate stays below this threshold: the breaker never opens
    fo = Failover(
        [Tier("p", primary), Tier("s", secondary)],
        clock=clock,
        breaker={"failure_rate_threshold": 1.0},
    )
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(300):
                assert fo.call(i) in ("p", f"s:{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(secondary.seen) == 900  # exactly the calls the primary failed


@pytest.mark.anyio
async def test_async_tiers_and_async_health_check(clock: VirtualClock) -> None:
    healthy = {"on": False}
    calls: list[str] = []

    async def dc1(q: str) -> str:
        calls.append("dc1")
        if not healthy["on"]:
            raise ConnectionError("down")
        return f"dc1:{q}"

    def dc2(q: str) -> str:  # a sync tier is fine in acall
        calls.append("dc2")
        return f"dc2:{q}"

    async def check(tier: Tier) -> bool:
        return healthy["on"]

    fo = Failover(
        [Tier("dc1", dc1), Tier("dc2", dc2)],
        health_check=check,
        probe_interval=2.0,
        breaker={"minimum_calls": 2},
        clock=clock,
    )
    assert await fo.acall("a") == "dc2:a"
    assert (await fo.aexecute("b")).source == "dc2"
    assert fo.active_tier == "dc2"
    calls.clear()
    assert await fo.acall("c") == "dc2:c"
    assert calls == ["dc2"]
    healthy["on"] = True
    clock.advance(2.0)
    served = await fo.aexecute("d")
    assert served.source == "dc1"
    assert fo.active_tier == "dc1"


@pytest.mark.anyio
async def test_concurrent_async_callers_lose_nothing_during_an_outage(clock: VirtualClock) -> None:
    import anyio

    state = {"up": True}
    served: list[str] = []

    async def primary(i: int) -> str:
        await anyio.sleep(0)
        if not state["up"]:
            raise ConnectionError("down")
        return "primary"

    async def secondary(i: int) -> str:
        await anyio.sleep(0)
        return "secondary"

    fo = Failover(
        [Tier("primary", primary), Tier("secondary", secondary)],
        breaker={"minimum_calls": 5},
        clock=clock,
    )

    async def caller(i: int) -> None:
        if i == 50:
            state["up"] = False
        served.append(await fo.acall(i))

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(caller, i)
    assert len(served) == 200
    assert served.count("secondary") >= 100
    assert fo.active_tier == "secondary"


@pytest.mark.anyio
async def test_background_probes_under_async_with(seen: list[events.Event]) -> None:
    # real (tiny) waits: the background task sleeps on the system clock
    healthy = {"on": False}
    probes: list[float] = []

    async def dc1(q: str) -> str:
        if not healthy["on"]:
            raise ConnectionError("down")
        return "dc1"

    async def dc2(q: str) -> str:
        return "dc2"

    def check(tier: Tier) -> bool:
        probes.append(time.monotonic())
        return healthy["on"]

    fo = Failover(
        [Tier("dc1", dc1), Tier("dc2", dc2)],
        health_check=check,
        probe_interval=0.02,
        breaker={"minimum_calls": 2, "open_duration": 60.0},
    )
    async with fo:
        await fo.acall(1)
        await fo.acall(2)
        assert fo.active_tier == "dc2"
        import anyio

        with anyio.fail_after(5):
            while len(probes) < 2:
                await anyio.sleep(0.005)
        assert fo.active_tier == "dc2"
        healthy["on"] = True
        with anyio.fail_after(5):
            while fo.tiers_status()["dc1"]["up"] is False:
                await anyio.sleep(0.005)
        # recovered by the background probe, without a single call
        assert fo.active_tier == "dc1"
        assert await fo.acall(3) == "dc1"
    assert [e.tier for e in only(events.TierRecovered, seen)] == ["dc1"]


@pytest.mark.anyio
async def test_a_blocking_health_check_does_not_stall_the_event_loop() -> None:
    import anyio

    release = threading.Event()
    started = threading.Event()

    def slow_check(tier: Tier) -> bool:
        started.set()
        release.wait(5)  # a blocking probe (think: an LDAP bind that hangs)
        return False

    async def dc1(q: int) -> str:
        raise ConnectionError("down")

    async def dc2(q: int) -> str:
        return "dc2"

    fo = Failover(
        [Tier("dc1", dc1), Tier("dc2", dc2)],
        health_check=slow_check,
        probe_interval=0.01,
        breaker={"minimum_calls": 2, "open_duration": 60.0},
    )
    t0 = time.monotonic()
    async with fo:
        await fo.acall(1)
        await fo.acall(2)
        with anyio.fail_after(5):
            while not started.is_set():
                await anyio.sleep(0.005)
        for i in range(20):  # the probe blocks a worker thread, not us
            assert await fo.acall(i) == "dc2"
    assert time.monotonic() - t0 < 2.0  # leaving does not wait for the hung probe
    release.set()
    assert fo.tiers_status()["dc1"]["up"] is False


@pytest.mark.anyio
async def test_async_with_lets_errors_out_and_can_be_reentered() -> None:
    fo = Failover([Tier("a", print)], health_check=lambda t: True, probe_interval=0.01)
    with pytest.raises(ValueError, match="boom"):
        async with fo:
            raise ValueError("boom")
    async with fo:
        with pytest.raises(RuntimeError, match="already running"):
            async with fo:
                pass
    assert fo._task_group is None
    import anyio

    with anyio.move_on_after(0.05) as scope:  # cancelled from outside while inside the block
        async with fo:
            await anyio.sleep(10)
    assert scope.cancelled_caught
    assert fo._task_group is None


@given(st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=1, max_size=20))
def test_law_each_call_served_by_first_healthy_tier(pattern: list[list[bool]]) -> None:
    """With breakers that never open, each call goes to the first tier that is up now."""
    backends = [Backend(n) for n in ("t0", "t1", "t2")]
    fo = Failover([Tier(b.name, b) for b in backends], clock=VirtualClock())
    for b in backends:
        fo.breaker(b.name).disable()
    for i, ups in enumerate(pattern):
        for b, up in zip(backends, ups, strict=True):
            b.up() if up else b.down()
        if not any(ups):
            with pytest.raises(rs.AllTiersFailed):
                fo.call(i)
            continue
        first = ups.index(True)
        served = fo.execute(i)
        assert served.source == f"t{first}"
        assert len(served.errors) == first


# --- what users pass as tiers ---------------------------------------------------------------


class AsyncDC:
    """A data centre client whose `__call__` is `async def`."""

    def __init__(self, name: str, up: bool) -> None:
        self.name, self.up, self.calls = name, up, 0

    async def __call__(self, q: str) -> str:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if not self.up:
            raise ConnectionError(f"{self.name} unreachable")
        return f"{self.name}:{q}"

    async def search(self, q: str) -> str:
        return await self(q)


@pytest.mark.anyio
async def test_async_tiers_of_every_shape_are_awaited_and_their_failures_counted() -> None:
    dc1, dc2, dc3 = AsyncDC("dc1", False), AsyncDC("dc2", False), AsyncDC("dc3", True)
    fo = Failover(
        [
            Tier("dc1", dc1),  # async __call__
            Tier("dc2", lambda q: dc2.search(q)),  # a lambda returning a coroutine
            Tier("dc3", functools.partial(dc3.search)),
        ],
        breaker={"minimum_calls": 2, "failure_rate_threshold": 0.5},
    )
    with anyio.fail_after(10):
        for _ in range(2):
            served = await fo.aexecute("q")
            assert (served.value, served.source) == ("dc3:q", "dc3")
    # the failures reached the tiers' breakers (not an un-awaited coroutine as a success)
    assert fo.breaker("dc1").state.name == "OPEN"
    assert fo.breaker("dc2").state.name == "OPEN"
    assert fo.breaker("dc3").snapshot()["failures"] == 0


def test_sync_call_refuses_a_tier_that_returned_a_coroutine() -> None:
    dc = AsyncDC("dc", True)
    fo = Failover([Tier("dc", lambda q: dc.search(q))])
    with pytest.raises(TypeError, match="async"):
        fo.call("q")
    assert fo.breaker("dc").snapshot()["calls"] == 0


def test_bare_callables_get_unique_default_tier_names() -> None:
    class Replica:
        def __init__(self, up: bool) -> None:
            self.up = up

        def search(self, q: str) -> str:
            if not self.up:
                raise ConnectionError("down")
            return q

    a, b = Replica(False), Replica(True)
    fo = Failover([a.search, b.search, Tier("backup", print)])
    names = [t.name for t in fo.tiers]
    assert names[0].endswith("Replica.search")
    assert names[1] == names[0] + "#2"
    assert names[2] == "backup"
    assert fo.execute("q").source == names[1]  # which instance served is visible


def test_generator_tiers_are_refused() -> None:
    def rows(q: str) -> Iterator[str]:
        yield q

    with pytest.raises(rs.ConfigError, match="generator"):
        Tier("rows", rows)
    with pytest.raises(rs.ConfigError, match="generator"):
        Failover([rows])
