from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilience as rs
from resilience import events
from resilience.fallback import Default, DegradationLevel, FallbackChain, StaleCache, Step
from resilience.testing import VirtualClock


class Service:
    """A dependency that can be switched up and down; records calls."""

    def __init__(self, name: str, error: BaseException | None = None) -> None:
        self.name = name
        self.error = error
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((args, tuple(sorted(kwargs.items()))))
        if self.error is not None:
            raise self.error
        return f"{self.name}:{args}:{sorted(kwargs.items())}"


def test_public_names_are_exported() -> None:
    assert rs.FallbackChain is FallbackChain
    assert rs.DegradationLevel.CACHE_ONLY is DegradationLevel.CACHE_ONLY
    assert rs.Served is not None
    assert rs.Step is Step
    assert rs.StaleCache is StaleCache
    assert rs.Default is Default


def test_levels_are_ordered_as_designed() -> None:
    assert list(DegradationLevel) == sorted(DegradationLevel)
    assert [lv.name for lv in DegradationLevel] == ["FULL", "DEGRADED", "LIMITED", "CACHE_ONLY"]


def test_first_step_serves_full_without_event(seen: list[events.Event]) -> None:
    live = Service("live")
    chain = FallbackChain(Step(live), Default("d"), name="quotes")
    served = chain.execute("ACME", depth=2)
    assert served.value == "live:('ACME',):[('depth', 2)]"
    assert served.level is DegradationLevel.FULL
    assert not served.degraded
    assert served.source == "Service"  # a callable object: its type name
    assert served.errors == ()
    assert [e for e in seen if isinstance(e, events.FallbackServed)] == []


def test_transient_failure_falls_through_and_is_reported(seen: list[events.Event]) -> None:
    boom = ConnectionError("primary down")
    primary = Service("p", boom)
    secondary = Service("s")
    chain = FallbackChain(
        Step(primary, name="primary"),
        Step(secondary, level=DegradationLevel.DEGRADED, name="replica"),
        name="quotes",
    )
    served = chain.execute(1)
    assert served.value == "s:(1,):[]"
    assert served.level is DegradationLevel.DEGRADED
    assert served.degraded
    assert served.source == "replica"
    assert served.errors == (boom,)
    assert primary.calls == secondary.calls == [((1,), ())]
    fb = [e for e in seen if isinstance(e, events.FallbackServed)]
    assert fb == [events.FallbackServed("quotes", "DEGRADED", "replica", 1)]


def test_permanent_error_is_raised_not_masked_by_cache() -> None:
    primary = Service("p")
    chain = FallbackChain(Step(primary), StaleCache(), Default("d"))
    assert chain(7) == "p:(7,):[]"  # now cached
    primary.error = ValueError("bad symbol")
    with pytest.raises(ValueError, match="bad symbol"):
        chain.execute(7)
    primary.error = ConnectionError("down")
    assert chain.execute(7).source == "stale_cache"


def test_a_step_can_override_what_falls_through() -> None:
    # fall_through types: the step decides alone (a ValueError now falls through)
    chain = FallbackChain(
        Step(Service("p", ValueError("x")), fall_through=(ValueError,)), Default("d")
    )
    assert chain.execute().value == "d"
    # a predicate that refuses: even a transient error is raised
    err = ConnectionError("c")
    chain = FallbackChain(Step(Service("p", err), fall_through=lambda e: False), Default("d"))
    with pytest.raises(ConnectionError):
        chain.execute()
    # a per-step classifier
    clf = rs.Classifier(transient=(KeyError,))
    chain = FallbackChain(Step(Service("p", KeyError("k")), classifier=clf), Default("d"))
    assert chain.execute().source == "default"
    # the chain's classifier applies to every step without its own
    chain = FallbackChain(Step(Service("p", KeyError("k"))), Default("d"), classifier=clf)
    assert chain.execute().value == "d"
    chain = FallbackChain(Step(Service("p", KeyError("k"))), Default("d"))
    with pytest.raises(KeyError):
        chain.execute()


def test_open_circuit_and_timeouts_fall_through() -> None:
    for err in (rs.CircuitOpenError("x", 3.0), TimeoutError(), rs.TimeoutExceeded(1.0)):
        chain = FallbackChain(Step(Service("p", err)), Default("d"))
        assert chain.execute().source == "default"


def test_stale_cache_is_keyed_by_arguments() -> None:
    svc = Service("p")
    chain = FallbackChain(Step(svc), StaleCache(), name="dir")
    chain("alice", scope="all", limit=1)
    chain("bob")
    svc.error = ConnectionError("down")
    a = chain.execute("alice", limit=1, scope="all")  # kwargs order does not matter
    assert a.value == "p:('alice',):[('limit', 1), ('scope', 'all')]"
    assert a.level is DegradationLevel.CACHE_ONLY
    assert a.source == "stale_cache"
    assert chain.execute("bob").value == "p:('bob',):[]"
    with pytest.raises(rs.AllFallbacksFailed) as info:
        chain.execute("carol")  # never seen: nothing to serve
    assert len(info.value.errors) == 2
    assert isinstance(info.value.errors[0], ConnectionError)
    assert "no cached result" in str(info.value.errors[1])


def test_stale_cache_respects_max_age_on_the_injected_clock(clock: VirtualClock) -> None:
    svc = Service("p")
    chain = FallbackChain(Step(svc), StaleCache(max_age=60.0), Default("d"), clock=clock)
    chain("k")
    svc.error = ConnectionError()
    clock.advance(59.0)
    assert chain.execute("k").source == "stale_cache"
    clock.advance(2.0)
    served = chain.execute("k")
    assert served.source == "default"
    assert "older than max_age" in str(served.errors[1])


def test_stale_cache_own_clock_wins(clock: VirtualClock) -> None:
    other = VirtualClock()
    cache = StaleCache(max_age=10.0, clock=other)
    chain = FallbackChain(Step(Service("p")), cache, clock=clock)
    assert cache.clock is other
    chain("k")
    clock.advance(100)  # the chain's clock does not age this cache
    assert cache.get(("k",), {}) == "p:('k',):[]"
    other.advance(11)
    with pytest.raises(rs.ResilienceError):
        cache.get(("k",), {})


def test_stale_cache_is_a_bounded_lru() -> None:
    cache = StaleCache(max_size=3)
    for k in "abc":
        cache.put((k,), {}, k.upper())
    assert cache.get(("a",), {}) == "A"  # touch a: b is now the oldest
    cache.put(("d",), {}, "D")
    assert len(cache) == 3
    with pytest.raises(rs.ResilienceError):
        cache.get(("b",), {})
    assert [cache.get((k,), {}) for k in "acd"] == ["A", "C", "D"]
    cache.clear()
    assert len(cache) == 0


def test_unhashable_arguments_are_neither_stored_nor_served() -> None:
    svc = Service("p")
    chain = FallbackChain(Step(svc), StaleCache(), Default("d"))
    assert chain(["x"]) == "p:(['x'],):[]"
    svc.error = ConnectionError()
    served = chain.execute(["x"])
    assert served.source == "default"
    assert "not hashable" in str(served.errors[1])


def test_custom_cache_key() -> None:
    svc = Service("p")
    cache = StaleCache(key=lambda user, **_: user.lower())
    chain = FallbackChain(Step(svc), cache)
    chain("Alice", trace_id=1)
    svc.error = ConnectionError()
    assert chain.execute("ALICE", trace_id=2).value == "p:('Alice',):[('trace_id', 1)]"


def test_a_failing_key_function_never_fails_the_call() -> None:
    cache = StaleCache(key=lambda user: {"tenant": user}["missing"])
    chain = FallbackChain(Step(lambda user: f"hi {user}"), cache)
    assert chain("ann") == "hi ann"
    assert len(cache) == 0


def test_only_real_steps_feed_the_cache() -> None:
    svc = Service("p", ConnectionError())
    cache = StaleCache()
    chain = FallbackChain(Step(svc), cache, Default("fallback"))
    assert chain("k") == "fallback"
    assert len(cache) == 0  # a default is not "the last good result"
    deg = Service("replica")
    chain = FallbackChain(Step(svc), Step(deg, level=DegradationLevel.DEGRADED), cache)
    chain("k")
    deg.error = ConnectionError()
    assert chain.execute("k").value == "replica:('k',):[]"


def test_default_value_and_factory() -> None:
    chain = FallbackChain(Step(Service("p", OSError())), Default(lambda user: f"guest-{user}"))
    assert chain.execute("u1").value == "guest-u1"
    chain = FallbackChain(
        Step(Service("p", OSError())), Default("deny", level=DegradationLevel.DEGRADED)
    )
    served = chain.execute("u1")
    assert (served.value, served.level, served.source) == (
        "deny",
        DegradationLevel.DEGRADED,
        "default",
    )


def test_all_failed_lists_one_error_per_step_in_order() -> None:
    e1, e2, e3 = ConnectionError("a"), TimeoutError("b"), OSError("c")

    def broken() -> None:
        raise e3

    chain = FallbackChain(
        Step(Service("1", e1)), Step(Service("2", e2)), Default(broken), name="ops"
    )
    with pytest.raises(rs.AllFallbacksFailed) as info:
        chain.execute()
    assert info.value.errors == [e1, e2, e3]
    assert info.value.operation == "ops"
    assert "ops" in str(info.value)
    assert "3 steps failed" in str(info.value)


def test_bare_callables_are_full_steps() -> None:
    chain = FallbackChain(Service("p", ConnectionError()), lambda: "second")
    served = chain.execute()
    assert served.value == "second"
    assert served.level is DegradationLevel.FULL


def test_base_exceptions_are_not_swallowed() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    chain = FallbackChain(Step(interrupted), Default("d"))
    with pytest.raises(KeyboardInterrupt):
        chain.execute()


def test_bad_input_is_a_config_error_at_construction() -> None:
    with pytest.raises(rs.ConfigError) as info:
        Step("not callable")  # type: ignore[arg-type]
    assert info.value.errors[0][0] == "fn"
    with pytest.raises(rs.ConfigError) as info:
        Step(len, level="FULL", name="", classifier="x", fall_through=3)  # type: ignore[arg-type]
    assert [loc for loc, _ in info.value.errors] == ["level", "name", "classifier", "fall_through"]
    with pytest.raises(rs.ConfigError):
        FallbackChain()
    with pytest.raises(rs.ConfigError) as info:
        FallbackChain(Step(len), 42, "nope", name="")  # type: ignore[arg-type]
    assert [loc for loc, _ in info.value.errors] == ["steps[1]", "steps[2]", "name"]
    with pytest.raises(rs.ConfigError) as info:
        StaleCache(max_age=0, max_size=0, key=3)  # type: ignore[arg-type]
    assert [loc for loc, _ in info.value.errors] == ["max_age", "max_size", "key"]
    with pytest.raises(rs.ConfigError):
        Default("x", level=2)  # type: ignore[arg-type]
    assert StaleCache.validate(max_age=float("inf")) == []


def test_sync_execute_refuses_async_steps() -> None:
    async def live() -> str:
        return "x"

    chain = FallbackChain(Step(live), Default("d"))
    with pytest.raises(TypeError, match="aexecute"):
        chain.execute()


@pytest.mark.anyio
async def test_aexecute_mixes_sync_and_async_steps(seen: list[events.Event]) -> None:
    calls: list[str] = []

    async def live(user: str) -> str:
        calls.append("live")
        raise ConnectionError("down")

    def replica(user: str) -> str:
        calls.append("replica")
        raise TimeoutError

    async def guess(user: str) -> str:
        return f"guess-{user}"

    chain = FallbackChain(
        Step(live),
        Step(replica, level=DegradationLevel.DEGRADED),
        StaleCache(),
        Default(guess),
        name="profile",
    )
    served = await chain.aexecute("ann")
    assert served.value == "guess-ann"
    assert served.level is DegradationLevel.LIMITED
    assert calls == ["live", "replica"]
    assert len(served.errors) == 3
    assert await chain.acall("ann") == "guess-ann"
    assert [e.degradation for e in seen if isinstance(e, events.FallbackServed)] == ["LIMITED"] * 2


@pytest.mark.anyio
async def test_aexecute_caches_and_raises_permanent() -> None:
    state = {"error": None}

    async def live(k: int) -> int:
        if state["error"] is not None:
            raise state["error"]
        return k * 2

    chain = FallbackChain(Step(live), StaleCache())
    assert (await chain.aexecute(4)).value == 8
    state["error"] = ConnectionError()  # type: ignore[assignment]
    served = await chain.aexecute(4)
    assert served.value == 8
    assert served.source == "stale_cache"
    state["error"] = PermissionError()  # type: ignore[assignment]
    with pytest.raises(PermissionError):
        await chain.aexecute(4)


def test_stale_cache_under_threads_stays_bounded_and_consistent() -> None:
    cache = StaleCache(max_size=50)
    chain = FallbackChain(Step(lambda k: k * 10), cache)

    def work(offset: int) -> None:
        for i in range(500):
            chain((i + offset) % 200)

    threads = [threading.Thread(target=work, args=(n * 37,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 50
    for key in list(cache._data):
        assert cache.get(key, {}) == key[0] * 10


OUTCOMES = st.lists(st.sampled_from(["ok", "transient", "permanent"]), min_size=1, max_size=6)


@given(OUTCOMES)
def test_law_first_answer_before_any_permanent_error_is_served(outcomes: list[str]) -> None:
    calls: list[int] = []

    def make(i: int, outcome: str) -> Callable[[], int]:
        def step() -> int:
            calls.append(i)
            if outcome == "transient":
                raise ConnectionError(i)
            if outcome == "permanent":
                raise ValueError(i)
            return i

        return step

    chain = FallbackChain(*(Step(make(i, o), name=f"s{i}") for i, o in enumerate(outcomes)))
    stop = next(i for i, o in enumerate([*outcomes, "ok"]) if o != "transient")
    if stop == len(outcomes):
        with pytest.raises(rs.AllFallbacksFailed) as info:
            chain.execute()
        assert len(info.value.errors) == len(outcomes)
    elif outcomes[stop] == "permanent":
        with pytest.raises(ValueError):
            chain.execute()
    else:
        served = chain.execute()
        assert served.value == stop
        assert served.source == f"s{stop}"
        assert len(served.errors) == stop
    assert calls == list(range(min(stop + 1, len(outcomes))))


CACHE_OPS = st.lists(
    st.tuples(st.sampled_from(["put", "get", "tick"]), st.integers(0, 6)), max_size=60
)


@given(CACHE_OPS, st.integers(1, 4))
def test_law_stale_cache_matches_a_model_lru(ops: list[tuple[str, int]], size: int) -> None:
    from collections import OrderedDict

    clock = VirtualClock()
    cache = StaleCache(max_age=3.0, max_size=size, clock=clock)
    model: OrderedDict[int, tuple[float, int]] = OrderedDict()
    version = 0
    for op, k in ops:
        if op == "tick":
            clock.advance(k / 2)
        elif op == "put":
            version += 1
            cache.put((k,), {}, (k, version))
            model[k] = (clock.monotonic(), version)
            model.move_to_end(k)
            while len(model) > size:
                model.popitem(last=False)
        else:
            hit = model.get(k)
            if hit is not None:
                model.move_to_end(k)
            if hit is None or clock.monotonic() - hit[0] > 3.0:
                with pytest.raises(rs.ResilienceError):
                    cache.get((k,), {})
            else:
                assert cache.get((k,), {}) == (k, hit[1])
        assert len(cache) == len(model)


# --- what users pass as steps -------------------------------------------------------------------


class AsyncClient:
    """An object whose `__call__` is `async def`, as SDK clients often are."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.calls = 0

    async def __call__(self, q: str) -> str:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.answer is None:
            raise ConnectionError("down")
        return f"{self.answer}:{q}"

    async def get(self, q: str) -> str:
        return await self(q)


@pytest.mark.anyio
async def test_async_callable_objects_and_coroutine_lambdas_are_awaited() -> None:
    down = AsyncClient(None)
    also_down = AsyncClient(None)
    up = AsyncClient("up")
    chain = FallbackChain(
        Step(down),  # an object with async __call__
        Step(lambda q: also_down.get(q)),  # a lambda returning a coroutine
        Step(functools.partial(up.get)),
        Default("n/a"),
    )
    with anyio.fail_after(10):
        served = await chain.aexecute("q")
    assert served.value == "up:q"  # the first two failed, and their errors were seen
    assert [type(e) for e in served.errors] == [ConnectionError, ConnectionError]
    assert (down.calls, also_down.calls) == (1, 1)


@pytest.mark.anyio
async def test_an_async_default_factory_object_is_awaited() -> None:
    chain = FallbackChain(Step(AsyncClient(None)), Default(AsyncClient("cached")))
    with anyio.fail_after(10):
        assert await chain.acall("q") == "cached:q"


def test_sync_execute_refuses_a_step_that_returned_a_coroutine() -> None:
    client = AsyncClient("up")
    chain = FallbackChain(Step(lambda q: client.get(q)), Default("n/a"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="aexecute"):
            chain.execute("q")  # not served as an un-awaited coroutine, not masked


def test_generator_steps_are_refused() -> None:
    def rows(q: str) -> Iterator[str]:
        yield q

    with pytest.raises(rs.ConfigError, match="generator"):
        Step(rows)


def test_default_names_are_unique_within_a_chain() -> None:
    class Replica:
        def __init__(self, name: str, up: bool) -> None:
            self.name, self.up = name, up

        def get(self, q: str) -> str:
            if not self.up:
                raise ConnectionError(self.name)
            return f"{self.name}:{q}"

    a, b = Replica("a", False), Replica("b", True)
    shared = Step(a.get)
    chain = FallbackChain(shared, b.get, Default("x"), Default("y"))
    assert [s.name for s in chain.steps] == [
        "test_default_names_are_unique_within_a_chain.<locals>.Replica.get",
        "test_default_names_are_unique_within_a_chain.<locals>.Replica.get#2",
        "default",
        "default#2",
    ]
    served = chain.execute("q")
    assert served.value == "b:q"
    assert served.source.endswith("Replica.get#2")  # tells which instance served
    assert shared.name.endswith("Replica.get")  # the user's object is not renamed
    b.up = False
    assert chain.execute("q").source == "default"


def test_a_partial_step_is_named_after_its_function() -> None:
    def lookup(region: str, q: str) -> str:
        return q

    assert Step(functools.partial(lookup, "eu")).name.endswith("lookup")
