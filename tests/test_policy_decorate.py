"""`decorate(policy, fn)`: the one place sync/async dispatch happens, at decoration time."""

from __future__ import annotations

import functools
import inspect
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest

import resilience as rs
from resilience import config
from resilience._policy import Policy, decorate, is_async


class Counting:
    """A policy that records which path each call took."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.paths.append("sync")
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        self.paths.append("async")
        return await fn(*args, **kwargs)


def test_a_policy_is_recognised_by_its_methods() -> None:
    assert isinstance(Counting(), Policy)
    assert not isinstance(object(), Policy)


def test_sync_function_keeps_its_signature_and_goes_through_call() -> None:
    policy = Counting()

    def charge(amount: int, *, currency: str = "EUR") -> str:
        """Charge a card."""
        return f"{amount} {currency}"

    wrapped = decorate(policy, charge)
    assert wrapped(3, currency="USD") == "3 USD"
    assert policy.paths == ["sync"]
    assert wrapped.__name__ == "charge"
    assert wrapped.__doc__ == "Charge a card."
    assert inspect.signature(wrapped) == inspect.signature(charge)
    assert wrapped.__wrapped__ is charge  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(wrapped)


@pytest.mark.anyio
async def test_async_function_goes_through_acall() -> None:
    policy = Counting()

    async def fetch(key: str) -> str:
        return key.upper()

    wrapped = decorate(policy, fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped("k") == "K"
    assert policy.paths == ["async"]
    assert inspect.signature(wrapped) == inspect.signature(fetch)


@pytest.mark.anyio
async def test_partials_and_async_callable_objects_are_async() -> None:
    policy = Counting()

    async def add(a: int, b: int) -> int:
        return a + b

    class Client:
        async def __call__(self, x: int) -> int:
            return x * 2

    assert await decorate(policy, functools.partial(add, 1))(2) == 3
    assert await decorate(policy, Client())(4) == 8
    assert policy.paths == ["async", "async"]


def test_sync_callable_objects_stay_sync() -> None:
    policy = Counting()

    class Client:
        def __call__(self, x: int) -> int:
            return x * 2

    assert decorate(policy, Client())(4) == 8
    assert decorate(policy, len)("abc") == 3
    assert policy.paths == ["sync", "sync"]


# --- the one "is it async" rule, as every decorator of the library applies it ---------------

FAST = rs.Backoff.constant(0)


def _op() -> str:
    return f"deco-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def resilient_op() -> Iterator[str]:
    """An operation the active config gives 3 attempts without waits (restored afterwards)."""
    op = _op()
    cfg = config.load(
        data={
            "operations": {
                op: {"retry": {"max_attempts": 3, "backoff": {"kind": "constant", "delay": 0}}}
            }
        },
        environ={"RESILIENCE_ENV": "testing"},
    )
    saved = config.use(cfg)
    yield op
    config.use(saved)


def _decorators(op: str) -> dict[str, Callable[[Callable[..., Any]], Any]]:
    """Each decorator users reach for, with three attempts where it retries."""
    return {
        "CircuitBreaker": rs.CircuitBreaker(_op()),
        "Retry": rs.Retry(max_attempts=3, backoff=FAST),
        "Retry(deadline)": rs.Retry(max_attempts=3, backoff=FAST, deadline=60),
        "Pipeline": rs.Pipeline(rs.Retry(max_attempts=3, backoff=FAST), rs.CircuitBreaker(_op())),
        "Bulkhead": rs.Bulkhead(4),
        "resilient": rs.resilient(op),
    }


RETRYING = {"Retry", "Retry(deadline)", "Pipeline", "resilient"}
NAMES = list(_decorators("x"))


class FlakyClient:
    """An object whose `__call__` is `async def`: fails twice, then answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, q: str) -> str:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.calls <= 2:
            raise ConnectionError("flaky")
        return q.upper()


@pytest.mark.anyio
@pytest.mark.parametrize("which", NAMES)
async def test_every_decorator_treats_an_async_callable_object_as_async(
    which: str, resilient_op: str
) -> None:
    client = FlakyClient()
    wrapped = _decorators(resilient_op)[which](client)
    assert inspect.iscoroutinefunction(wrapped)
    with anyio.fail_after(10):
        if which in RETRYING:
            assert await wrapped("q") == "Q"  # retried: the errors were seen
            assert client.calls == 3
        else:
            with pytest.raises(ConnectionError):
                await wrapped("q")  # an awaited failure, not a returned coroutine
            assert client.calls == 1


@pytest.mark.anyio
@pytest.mark.parametrize("which", NAMES)
async def test_every_decorator_treats_a_partial_of_an_async_callable_as_async(
    which: str, resilient_op: str
) -> None:
    client = FlakyClient()
    wrapped = _decorators(resilient_op)[which](functools.partial(functools.partial(client), "q"))
    assert inspect.iscoroutinefunction(wrapped)
    with anyio.fail_after(10):
        if which in RETRYING:
            assert await wrapped() == "Q"
        else:
            with pytest.raises(ConnectionError):
                await wrapped()


@pytest.mark.parametrize("which", NAMES)
def test_generators_are_refused_at_decoration_saying_why(which: str, resilient_op: str) -> None:
    def rows() -> Iterator[int]:
        yield 1

    async def arows() -> AsyncIterator[int]:
        yield 1

    class Stream:
        def __call__(self) -> Iterator[int]:
            yield 1

    for fn, what in (
        (rows, "a generator"),
        (arows, "an async generator"),
        (Stream(), "a generator"),
    ):
        with pytest.raises(TypeError) as info:
            _decorators(resilient_op)[which](fn)
        message = str(info.value)
        assert what in message, message
        assert "iterated" in message, message


@pytest.mark.anyio
@pytest.mark.parametrize("which", NAMES)
async def test_decorators_over_classmethod_and_staticmethod_work(
    which: str, resilient_op: str
) -> None:
    decorators = _decorators(resilient_op)
    deco = decorators[which]

    class Service:
        @deco
        @classmethod
        def make(cls, x: int) -> tuple[type, int]:
            return cls, x

        @deco
        @staticmethod
        async def ping(x: int) -> int:
            return x

    assert Service.make(1) == (Service, 1)
    assert Service().make(2) == (Service, 2)
    with anyio.fail_after(10):
        assert await Service.ping(3) == 3
        assert await Service().ping(4) == 4


@pytest.mark.parametrize("which", NAMES)
def test_a_decorated_partial_is_named_after_the_function(which: str, resilient_op: str) -> None:
    async def fetch(url: str, timeout: float) -> str:
        """Fetch a page."""
        return url

    def lookup(user: str, field: str) -> str:
        return user

    decorators = _decorators(resilient_op)
    wrapped = decorators[which](functools.partial(fetch, timeout=1.0))
    assert (wrapped.__name__, wrapped.__doc__) == ("fetch", "Fetch a page.")
    assert decorators[which](functools.partial(lookup, field="x")).__name__ == "lookup"
    assert decorators[which](FlakyClient()).__name__ == "FlakyClient"


@pytest.mark.parametrize("which", NAMES)
def test_a_sync_path_refuses_a_returned_coroutine(which: str, resilient_op: str) -> None:
    # `lambda q: client(q)` looks sync until it runs: the sync path must not hand back an
    # un-awaited coroutine as a success. It says to use the async path; no warning is left.
    client = FlakyClient()
    wrapped = _decorators(resilient_op)[which](lambda q: client(q))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="async"):
            wrapped("q")
    assert client.calls == 0


def test_is_async_follows_the_design_list() -> None:
    async def fetch() -> None: ...

    class Client:
        async def __call__(self) -> None: ...

        async def get(self) -> None: ...

    class Sync:
        def __call__(self) -> None: ...

    yes = [
        fetch,
        Client(),
        Client().get,
        functools.partial(functools.partial(Client())),
        functools.partial(fetch),
    ]
    no = [len, Sync(), lambda: fetch(), functools.partial(Sync()), Client, print]
    assert [is_async(f) for f in yes] == [True] * len(yes)
    assert [is_async(f) for f in no] == [False] * len(no)


# --- @pipeline composes its stages' own decorators: same behaviour as pipe.call ---------------


@pytest.mark.anyio
async def test_a_decorated_pipeline_behaves_like_its_call() -> None:
    from resilience import events
    from resilience.testing import VirtualClock

    clock = VirtualClock()
    seen: list[Any] = []
    stop = events.subscribe(seen.append)
    try:
        br = rs.CircuitBreaker("llm", minimum_calls=10, clock=clock)
        bh = rs.Bulkhead(1)
        pipe = rs.Pipeline(rs.Retry(max_attempts=3, backoff=FAST, clock=clock), br, bh)
        calls = 0

        @pipe
        async def generate(prompt: str) -> str:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise ConnectionError("busy")
            return prompt.upper()

        @pipe
        def sync_generate(prompt: str) -> str:
            return prompt

        with anyio.fail_after(10):
            assert await generate("hi") == "HI"
        assert sync_generate("x") == "x"
    finally:
        stop()
    assert calls == 3
    assert br.snapshot()["calls"] == 4  # every attempt went through the breaker
    assert br.snapshot()["failures"] == 2
    assert bh.running == 0  # the slot came back each time
    # an unnamed Retry reports the next stage's name, as under pipe.call
    assert {e.operation for e in seen if isinstance(e, events.RetryAttempted)} == {"llm"}
    assert (generate.__name__, sync_generate.__name__) == ("generate", "sync_generate")
    assert inspect.iscoroutinefunction(generate)


@pytest.mark.anyio
async def test_pipeline_call_and_acall_are_the_first_stage_bound_to_the_rest() -> None:
    pipe = rs.Pipeline(rs.Retry(max_attempts=2, backoff=FAST), rs.Bulkhead(2), name="p")

    async def double(x: int) -> int:
        return 2 * x

    assert pipe.call(max, 3, 7) == 7
    with anyio.fail_after(10):
        assert await pipe.acall(double, 4) == 8
        assert await rs.Pipeline().acall(double, 1) == 2
    assert rs.Pipeline().call(min, 1, 2) == 1
    assert isinstance(pipe, Policy)

    class SyncOnly:
        def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    with pytest.raises(TypeError, match="no acall"):
        await rs.Pipeline(SyncOnly(), name="s").acall(double, 1)  # type: ignore[arg-type]
