"""The httpx transports against real HTTP servers on 127.0.0.1 (started and stopped by fixtures)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import resilience as rs
from _servers import Drop, Hang, HTTPTestServer, Reply
from resilience import events
from resilience.integrations.httpx import AsyncResilientTransport, ResilientTransport
from resilience.testing import VirtualClock

FAST = httpx.Timeout(2.0, read=0.25)  # the hanging server costs a quarter second per attempt


@pytest.fixture
def make_server() -> Iterator[Callable[[], HTTPTestServer]]:
    started: list[HTTPTestServer] = []

    def make() -> HTTPTestServer:
        srv = HTTPTestServer().start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(make_server: Callable[[], HTTPTestServer]) -> HTTPTestServer:
    return make_server()


def pool_of(t: ResilientTransport | AsyncResilientTransport) -> Any:
    return t.transport._pool  # type: ignore[attr-defined]


def all_idle(t: ResilientTransport | AsyncResilientTransport) -> bool:
    return all(c.is_idle() for c in pool_of(t).connections)


def client(t: ResilientTransport) -> httpx.Client:
    return httpx.Client(transport=t, timeout=FAST)


def test_a_healthy_request_passes_through(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.default = Reply(200, b"hello", {"X-Test": "1"})
    t = ResilientTransport(clock=clock)
    with client(t) as c:
        r = c.get(server.url + "/a?b=1")
    assert r.status_code == 200
    assert r.content == b"hello"
    assert r.headers["x-test"] == "1"
    assert [s.path for s in server.requests] == ["/a?b=1"]
    assert clock.sleeps == []


def test_500_is_retried_then_succeeds(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.script(Reply(500, b"oops"), Reply(502))
    server.default = Reply(200, b"fine")
    t = ResilientTransport(clock=clock)
    with client(t) as c:
        r = c.get(server.url + "/")
        assert r.status_code == 200
        assert r.content == b"fine"
        assert len(server.requests) == 3
        assert len(clock.sleeps) == 2  # backoff waits, on the injected clock
        assert all_idle(t)
        assert len(pool_of(t).connections) == 1  # every failed response released its connection


def test_when_retries_run_out_the_last_response_is_returned(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.default = Reply(500, b"still broken", {"X-Attempt": "n"})
    t = ResilientTransport(clock=clock, breaker={"minimum_calls": 100})
    with client(t) as c:
        r = c.get(server.url + "/x")
        assert r.status_code == 500
        assert r.text == "still broken"
        assert r.headers["x-attempt"] == "n"
        assert r.request.url == server.url + "/x"
        with pytest.raises(httpx.HTTPStatusError):
            r.raise_for_status()
        assert len(server.requests) == 3
        assert all_idle(t)
        # and streaming works on it as on any response
        with c.stream("GET", server.url + "/y") as s:
            assert s.status_code == 500
            assert b"".join(s.iter_bytes()) == b"still broken"
    assert len(server.requests) == 6


def test_503_and_429_honour_retry_after(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.script(
        Reply(503, headers={"Retry-After": "2"}),
        Reply(429, headers={"Retry-After": "3"}),
    )
    t = ResilientTransport(clock=clock)
    with client(t) as c:
        assert c.get(server.url).status_code == 200
    assert clock.sleeps == [2.0, 3.0]


def test_429_given_up_is_returned_to_the_caller(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.default = Reply(429, b"slow down", {"Retry-After": "1"})
    t = ResilientTransport(clock=clock)
    with client(t) as c:
        r = c.get(server.url)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert clock.sleeps == [1.0, 1.0]


def test_permanent_statuses_are_not_retried(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.default = Reply(404, b"nope")
    t = ResilientTransport(clock=clock)
    with client(t) as c:
        assert c.get(server.url).status_code == 404
        assert c.get(server.url).status_code == 404
    assert len(server.requests) == 2
    assert t.breaker_for(httpx.URL(server.url)).state is rs.CircuitState.CLOSED


def test_hanging_server_times_out_and_the_timeout_is_raised_as_httpx_raises_it(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.default = Hang(5)
    t = ResilientTransport(policy=rs.Retry(max_attempts=2, clock=clock), clock=clock)
    start = time.monotonic()
    with client(t) as c, pytest.raises(httpx.ReadTimeout):
        c.get(server.url)
    assert time.monotonic() - start < 2.0
    assert len(server.requests) == 2


def test_timeout_then_success(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.script(Hang(5))
    server.default = Reply(200, b"late but fine")
    t = ResilientTransport(clock=clock)
    with client(t) as c:
        assert c.get(server.url).text == "late but fine"


def test_dropped_connections(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.script(Drop())
    t = ResilientTransport(clock=clock)
    with client(t) as c:
        assert c.get(server.url).status_code == 200
        server.default = Drop()
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(server.url)


def test_non_idempotent_methods_are_sent_once(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.default = Reply(503, b"busy")
    t = ResilientTransport(clock=clock)
    with client(t) as c:
        r = c.post(server.url, content=b"charge 10 EUR")
        assert r.status_code == 503
        assert len(server.requests) == 1
        assert server.requests[0].body == b"charge 10 EUR"
        # PUT is idempotent: retried, body resent each time
        c.put(server.url, content=b"v=1")
    assert [s.body for s in server.requests[1:]] == [b"v=1"] * 3
    # told otherwise, POST is retried too
    t2 = ResilientTransport(clock=clock, retry_methods={"GET", "POST"})
    with client(t2) as c:
        c.post(server.url, json={"a": 1})
    assert [s.method for s in server.requests[4:]] == ["POST"] * 3


def test_non_idempotent_requests_still_count_in_the_breaker(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.default = Reply(500)
    t = ResilientTransport(clock=clock, breaker={"minimum_calls": 3})
    with client(t) as c:
        for _ in range(3):
            assert c.post(server.url).status_code == 500
        with pytest.raises(rs.CircuitOpenError):
            c.post(server.url)
    assert len(server.requests) == 3


def test_a_breaker_per_host(make_server: Callable[[], HTTPTestServer], clock: VirtualClock) -> None:
    bad, good = make_server(), make_server()
    bad.default = Reply(503)
    t = ResilientTransport(clock=clock, breaker={"minimum_calls": 5, "open_duration": 10.0})
    with client(t) as c:
        c.get(bad.url)  # 3 attempts, 3 failures
        with pytest.raises(rs.CircuitOpenError):
            c.get(bad.url)  # 2 more failures open the breaker; the 3rd attempt is refused
        assert t.breaker_for(httpx.URL(bad.url)).state is rs.CircuitState.OPEN
        assert len(bad.requests) == 5
        with pytest.raises(rs.CircuitOpenError) as info:
            c.get(bad.url + "/again")
        assert len(bad.requests) == 5  # rejected without a request
        assert 0 < info.value.remaining <= 10.0
        assert c.get(good.url).status_code == 200  # the other host is not affected
        assert t.breaker_for(httpx.URL(good.url)).state is rs.CircuitState.CLOSED
        # after open_duration the breaker lets trial requests through
        bad.default = Reply(200)
        clock.advance(10.0)
        for _ in range(3):
            assert c.get(bad.url).status_code == 200
        assert t.breaker_for(httpx.URL(bad.url)).state is rs.CircuitState.CLOSED


def test_failover_across_base_urls_with_a_real_outage(
    make_server: Callable[[], HTTPTestServer], clock: VirtualClock
) -> None:
    primary, secondary = make_server(), make_server()
    primary.default = Reply(200, b"primary")
    secondary.default = Reply(200, b"secondary")
    seen: list[events.Event] = []
    stop = events.subscribe(seen.append)
    t = ResilientTransport(
        tiers=[primary.url, secondary.url],
        breaker={"minimum_calls": 3},
        probe_interval=5.0,
        clock=clock,
    )
    try:
        with client(t) as c:
            # the client is pointed at a logical host: the tiers supply scheme, host and port
            r = c.get("http://directory.internal/users/ann?x=1")
            assert r.text == "primary"
            assert primary.requests[-1].path == "/users/ann?x=1"
            assert primary.requests[-1].headers["Host"] == f"127.0.0.1:{primary.port}"

            primary.stop()  # a real outage: the port refuses connections
            for i in range(5):
                r = c.get(f"http://directory.internal/q{i}")
                assert r.text == "secondary"  # within the same request
            assert [s.path for s in secondary.requests] == [f"/q{i}" for i in range(5)]
            assert t.failover.active_tier == f"127.0.0.1:{secondary.port}"  # never a URL

            primary.start()  # restarted on the same port
            assert t.failover.tiers[0].name == f"127.0.0.1:{primary.port}"
            assert c.get("http://directory.internal/still").text == "secondary"
            clock.advance(5.0)  # probe interval: the primary's breaker lets a trial through
            for _ in range(3):
                assert c.get("http://directory.internal/back").text == "primary"
            assert t.failover.active_tier == t.failover.tiers[0].name
            assert all_idle(t)
    finally:
        stop()
    kinds = [type(e).__name__ for e in seen if isinstance(e, events.FailoverSwitched)]
    assert kinds == ["FailoverSwitched", "FailoverSwitched"]
    assert any(isinstance(e, events.TierRecovered) for e in seen)


def test_tiers_each_5xx_moves_on_and_last_response_is_returned(
    make_server: Callable[[], HTTPTestServer], clock: VirtualClock
) -> None:
    a, b = make_server(), make_server()
    a.default = Reply(503, b"a busy")
    b.default = Reply(500, b"b broken")
    t = ResilientTransport(tiers=[a.url, b.url], breaker={"minimum_calls": 100}, clock=clock)
    with client(t) as c:
        r = c.get("http://svc/x")
    assert r.status_code == 500
    assert r.text == "b broken"
    assert len(a.requests) == len(b.requests) == 3  # 3 attempts, each across both tiers


def test_non_idempotent_fails_over_only_when_not_sent(
    make_server: Callable[[], HTTPTestServer], clock: VirtualClock
) -> None:
    a, b = make_server(), make_server()
    t = ResilientTransport(tiers=[a.url, b.url], clock=clock)
    with client(t) as c:
        a.default = Reply(503, b"a busy")
        r = c.post("http://svc/pay", content=b"10")
        assert (r.status_code, r.text) == (503, "a busy")  # sent to a: not resent to b
        assert b.requests == []
        a.stop()  # connection refused: the request never left, so b may take it
        r = c.post("http://svc/pay", content=b"11")
        assert r.status_code == 200
        assert [s.body for s in b.requests] == [b"11"]


def test_all_tiers_down_raises_the_transport_error(
    make_server: Callable[[], HTTPTestServer], clock: VirtualClock
) -> None:
    a, b = make_server(), make_server()
    a.stop()
    b.stop()
    t = ResilientTransport(tiers=[a.url, b.url], breaker={"minimum_calls": 100}, clock=clock)
    with client(t) as c, pytest.raises(httpx.ConnectError):
        c.get("http://svc/")


def test_a_user_policy_is_used_for_idempotent_requests(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.default = Reply(502)
    policy = rs.Retry(max_attempts=5, backoff=rs.Backoff.constant(0.5), clock=clock)
    t = ResilientTransport(policy=policy, clock=clock)
    with client(t) as c:
        assert c.get(server.url).status_code == 502
    assert len(server.requests) == 5
    assert clock.sleeps == [0.5] * 4


def test_a_pipeline_as_policy(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.script(Reply(503), Drop(), Reply(504))
    pipe = rs.Pipeline(
        rs.Retry(max_attempts=4, backoff=rs.Backoff.constant(0.25), clock=clock), name="api"
    )
    t = ResilientTransport(policy=pipe, clock=clock)
    with client(t) as c:
        assert c.get(server.url).status_code == 200
        assert c.post(server.url).status_code == 200  # sent once, outside the policy
    assert len(server.requests) == 5
    assert clock.sleeps == [0.25] * 3


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(rs.ConfigError) as info:
        ResilientTransport(
            policy=3,
            transport=httpx.AsyncHTTPTransport(),  # type: ignore[arg-type]
            tiers=["ftp://x", "http://a:1", "http://a:1"],
            retry_methods="GET",
            breaker=[],  # type: ignore[arg-type]
            probe_interval=0,
        )
    locs = [loc for loc, _ in info.value.errors]
    assert locs == [
        "policy",
        "transport",
        "tiers[0]",
        "tiers[2]",
        "retry_methods",
        "breaker",
        "probe_interval",
    ]
    with pytest.raises(rs.ConfigError):
        ResilientTransport(tiers=[])
    with pytest.raises(rs.ConfigError, match="only scheme, host and port"):
        ResilientTransport(tiers=["http://a:1/api/v2"])
    # breaker settings are checked at construction, not at the first request to a host
    with pytest.raises(rs.ConfigError) as info:
        ResilientTransport(breaker={"minimum_calls": 0})
    assert info.value.errors[0][0] == "breaker.minimum_calls"
    with pytest.raises(rs.ConfigError) as info:
        ResilientTransport(breaker={"minimum_call": 5})
    assert "minimum_call" in info.value.errors[0][1]
    with pytest.raises(rs.ConfigError):
        AsyncResilientTransport(transport=httpx.HTTPTransport())  # type: ignore[arg-type]


def test_httpx_is_imported_only_by_the_integration() -> None:
    import subprocess
    import sys

    code = (
        "import sys, resilience as rs; rs.Failover; rs.FallbackChain; rs.Retry; rs.CircuitBreaker;"
        "import resilience.integrations; print('httpx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- async ------------------------------------------------------------------------------------


def aclient(t: AsyncResilientTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=t, timeout=FAST)


@pytest.mark.anyio
async def test_async_retries_retry_after_and_last_response(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.script(Reply(503, headers={"Retry-After": "2"}), Drop())
    t = AsyncResilientTransport(clock=clock, breaker={"minimum_calls": 100})
    async with aclient(t) as c:
        r = await c.get(server.url)
        assert r.status_code == 200
        assert clock.sleeps[0] == 2.0
        server.default = Reply(500, b"down")
        r = await c.get(server.url)
        assert (r.status_code, r.text) == (500, "down")
        r = await c.post(server.url)
        assert r.status_code == 500
        assert all_idle(t)
    assert len(server.requests) == 3 + 3 + 1


@pytest.mark.anyio
async def test_async_timeout_is_raised(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.default = Hang(5)
    t = AsyncResilientTransport(policy=rs.Retry(max_attempts=2, clock=clock), clock=clock)
    async with aclient(t) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(server.url)
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_async_failover_with_real_restart(
    make_server: Callable[[], HTTPTestServer], clock: VirtualClock
) -> None:
    primary, secondary = make_server(), make_server()
    primary.default = Reply(200, b"primary")
    secondary.default = Reply(200, b"secondary")
    t = AsyncResilientTransport(
        tiers=[primary.url, secondary.url], breaker={"minimum_calls": 2}, clock=clock
    )
    async with aclient(t) as c:
        assert (await c.get("http://svc/")).text == "primary"
        primary.stop()
        for _ in range(4):
            assert (await c.get("http://svc/")).text == "secondary"
        with pytest.raises(rs.CircuitOpenError):
            await t.failover.breaker(t.failover.tiers[0].name).acall(_noop)
        primary.start()
        clock.advance(5.0)
        for _ in range(3):  # the half-open trials
            assert (await c.get("http://svc/")).text == "primary"
        assert t.failover.active_tier == t.failover.tiers[0].name
    assert len(secondary.requests) == 4


async def _noop() -> None:
    return None


# --- any transport, bounded budgets, keys, names, errors (issue 13) -----------------------------


def _mock(statuses: list[int], seen: list[httpx.Request], **headers: str) -> httpx.MockTransport:
    """A MockTransport answering with these statuses in turn (then 200), as httpx users test."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = statuses.pop(0) if statuses else 200
        return httpx.Response(status, text=f"answer {len(seen)}", headers=headers)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_mock_transport_responses_already_read(method: str, clock: VirtualClock) -> None:
    seen: list[httpx.Request] = []
    t = ResilientTransport(transport=_mock([503, 500, 502, 503], seen), clock=clock)
    with httpx.Client(transport=t) as c:
        r = c.request(method, "http://api.internal/x", content=b"body")
    if method == "POST":  # sent once: the caller gets the 503 as httpx gives it
        assert (r.status_code, r.text, len(seen)) == (503, "answer 1", 1)
    else:  # three attempts, then the last answer
        assert (r.status_code, r.text, len(seen)) == (502, "answer 3", 3)
        assert [s.content for s in seen] == [b"body"] * 3
    assert r.request.url == "http://api.internal/x"
    with pytest.raises(httpx.HTTPStatusError):
        r.raise_for_status()


@pytest.mark.anyio
async def test_async_mock_transport(clock: VirtualClock) -> None:
    seen: list[httpx.Request] = []
    t = AsyncResilientTransport(transport=_mock([503, 200], seen), clock=clock)
    async with httpx.AsyncClient(transport=t) as c:
        assert (await c.get("http://api.internal/")).text == "answer 2"
        seen.clear()
        t2 = AsyncResilientTransport(transport=_mock([500, 500, 500], seen), clock=clock)
        async with httpx.AsyncClient(transport=t2) as c2:
            r = await c2.get("http://api.internal/")
        assert (r.status_code, r.text) == (500, "answer 3")


def test_mock_transport_streaming_response(clock: VirtualClock) -> None:
    calls: list[int] = []
    healthy_after = [3]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        status = 503 if len(calls) < healthy_after[0] else 200
        chunks = iter([b"par", b"t-", str(len(calls)).encode()])
        return httpx.Response(status, content=chunks)  # a stream, not read yet

    t = ResilientTransport(
        transport=httpx.MockTransport(handler), breaker={"minimum_calls": 100}, clock=clock
    )
    with httpx.Client(transport=t) as c:
        with c.stream("GET", "http://api.internal/") as r:
            assert b"".join(r.iter_bytes()) == b"part-3"
        healthy_after[0] = 100  # from now on every answer is a 503 stream
        r = c.get("http://api.internal/")
        assert (r.status_code, r.text) == (503, "part-6")


def test_default_policy_is_bounded(clock: VirtualClock) -> None:
    seen: list[httpx.Request] = []
    t = ResilientTransport(transport=_mock([503, 503], seen, **{"Retry-After": "240"}), clock=clock)
    with httpx.Client(transport=t, timeout=5) as c:
        r = c.get("http://api.internal/")
    # a wait of 240 s would cross the 30 s budget: the 503 is returned at once
    assert r.status_code == 503
    assert len(seen) == 1
    assert clock.sleeps == []
    # and under 30 s of waits the default stops at the deadline, not at an unbounded total
    seen.clear()
    t = ResilientTransport(transport=_mock([503] * 5, seen, **{"Retry-After": "20"}), clock=clock)
    with httpx.Client(transport=t, timeout=5) as c:
        assert c.get("http://api.internal/").status_code == 503
    assert clock.sleeps == [20.0]
    assert t.policy.deadline == 30.0
    assert t.policy.max_attempts == 3


def test_the_budget_lowers_request_timeouts(server: HTTPTestServer) -> None:
    server.default = Hang(5)
    t = ResilientTransport(policy=rs.Retry(max_attempts=1))
    with httpx.Client(transport=t, timeout=5.0) as c:
        start = time.monotonic()
        with rs.deadline(0.3), pytest.raises(httpx.ReadTimeout):
            c.get(server.url)
        assert time.monotonic() - start < 3.0  # not the client's 5 s (generous: loaded CI)
        seen: list[dict[str, float]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.extensions["timeout"])
            return httpx.Response(200)

        t2 = ResilientTransport(transport=httpx.MockTransport(handler))
        with httpx.Client(transport=t2, timeout=httpx.Timeout(5.0, connect=0.1)) as c2:
            with rs.deadline(1.0):
                c2.get("http://api.internal/")
            c2.get("http://api.internal/")
        assert 0.5 < seen[0]["read"] <= 1.0
        assert seen[0]["connect"] == 0.1
        assert seen[1]["read"] == 5.0  # the default 30 s budget does not lower a 5 s timeout


def test_the_policy_deadline_lowers_request_timeouts(server: HTTPTestServer) -> None:
    server.default = Hang(5)
    t = ResilientTransport(policy=rs.Retry(max_attempts=5, deadline=0.4))
    with httpx.Client(transport=t, timeout=5.0) as c, pytest.raises(httpx.ReadTimeout):
        start = time.monotonic()
        c.get(server.url)
    assert time.monotonic() - start < 3.0  # not 5 attempts of 5 s (generous: loaded CI)
    assert len(server.requests) == 1


def test_a_used_up_budget_sends_nothing(server: HTTPTestServer, clock: VirtualClock) -> None:
    t = ResilientTransport(clock=clock)
    with httpx.Client(transport=t) as c, rs.deadline(1.0, clock=clock):
        clock.advance(2.0)
        with pytest.raises(rs.TimeoutExceeded):
            c.get(server.url)
    assert server.requests == []


def test_key_route_keeps_other_paths_open(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.default = lambda seen: Reply(500) if seen.path.startswith("/reports") else Reply(200)
    t = ResilientTransport(key="route", breaker={"minimum_calls": 3}, clock=clock)
    with client(t) as c:
        c.get(server.url + "/reports?id=1")
        with pytest.raises(rs.CircuitOpenError):
            c.get(server.url + "/reports?id=2")
        assert c.get(server.url + "/users").status_code == 200  # same host, another route
        assert c.post(server.url + "/reports").status_code == 500  # another method: its own
        # one operation name for all of them: the host's, never a path
        names = {
            t.breaker_for(httpx.Request(m, server.url + p)).name
            for m, p in [("GET", "/reports"), ("GET", "/users"), ("POST", "/reports")]
        }
        assert names == {f"httpx:127.0.0.1:{server.port}"}
        # health() sees the worst breaker of the name
        assert rs.health()["breakers"][f"httpx:127.0.0.1:{server.port}"]["state"] == "open"
    # by host (the default) the failing route would have closed /users too
    t2 = ResilientTransport(breaker={"minimum_calls": 3}, clock=clock)
    with client(t2) as c:
        c.get(server.url + "/reports")
        with pytest.raises(rs.CircuitOpenError):
            c.get(server.url + "/users")


def test_key_callable(clock: VirtualClock) -> None:
    seen: list[httpx.Request] = []
    t = ResilientTransport(
        transport=_mock([500] * 6, seen),
        key=lambda r: r.headers.get("X-Tenant", "none"),
        breaker={"minimum_calls": 3},
        name="billing",
        clock=clock,
    )
    with httpx.Client(transport=t) as c:
        c.get("http://api.internal/", headers={"X-Tenant": "a"})
        with pytest.raises(rs.CircuitOpenError) as info:
            c.get("http://api.internal/", headers={"X-Tenant": "a"})
        assert info.value.name == "billing"
        assert c.get("http://api.internal/", headers={"X-Tenant": "b"}).status_code == 500
    with pytest.raises(rs.ConfigError, match="key"):
        ResilientTransport(key="path")


def test_one_operation_name_and_no_url_in_labels(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.script(Reply(503), Reply(503))
    seen: list[events.Event] = []
    stop = events.subscribe(seen.append)
    try:
        with client(ResilientTransport(clock=clock)) as c:
            c.get(server.url + "/a/b?c=d")
        with client(ResilientTransport(clock=clock, name="pricing")) as c:
            server.script(Reply(503))
            c.get(server.url + "/x")
    finally:
        stop()
    ops = {e.operation for e in seen}
    assert ops == {f"httpx:127.0.0.1:{server.port}", "pricing"}
    kinds = {type(e).__name__ for e in seen if e.operation == "pricing"}
    assert {"RetryAttempted", "CallCompleted"} <= kinds
    with pytest.raises(rs.ConfigError):
        ResilientTransport(name="http://x/y")


def test_open_breaker_is_an_httpx_error(server: HTTPTestServer, clock: VirtualClock) -> None:
    import traceback

    from resilience.integrations.httpx import CircuitOpenTransportError

    server.default = Reply(503)
    t = ResilientTransport(clock=clock, breaker={"minimum_calls": 2})
    with client(t) as c:
        with pytest.raises(httpx.HTTPError) as info:
            for _ in range(3):
                c.get(server.url)
    err = info.value
    assert isinstance(err, CircuitOpenTransportError)
    assert isinstance(err, rs.CircuitOpenError)
    assert isinstance(err, httpx.TransportError)
    assert err.request.url == server.url + "/" or str(err.request.url).startswith(server.url)
    assert err.name == f"httpx:127.0.0.1:{server.port}"
    assert err.remaining > 0
    text = "".join(traceback.format_exception(err))
    assert "_ResponseFailure" not in text
    assert "is open" in str(err)


def test_a_transport_error_after_a_failed_response_shows_no_private_context(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    import traceback

    server.script(Reply(503), Reply(503))
    server.default = Drop()
    t = ResilientTransport(clock=clock, breaker={"minimum_calls": 100})
    with client(t) as c, pytest.raises(httpx.RemoteProtocolError) as info:
        c.get(server.url)
    assert "_ResponseFailure" not in "".join(traceback.format_exception(info.value))


def test_streaming_request_bodies_are_resent_only_when_replayable(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.default = Reply(503)
    t = ResilientTransport(clock=clock, breaker={"minimum_calls": 100})

    def body() -> Iterator[bytes]:
        yield b"chunk-1;"
        yield b"chunk-2"

    with client(t) as c:
        assert c.put(server.url, content=body()).status_code == 503
        assert [s.body for s in server.requests] == [b"chunk-1;chunk-2"]  # once: not replayable
        assert server.requests[0].headers["Transfer-Encoding"] == "chunked"
        assert c.put(server.url, content=b"in memory").status_code == 503
        assert len(server.requests) == 4  # bytes are replayable: 3 attempts


@pytest.mark.anyio
async def test_async_keys_names_and_open_breaker_error(clock: VirtualClock) -> None:
    from resilience.integrations.httpx import CircuitOpenTransportError

    seen: list[httpx.Request] = []
    t = AsyncResilientTransport(
        transport=_mock([503] * 3, seen), key="route", breaker={"minimum_calls": 3}, clock=clock
    )
    async with httpx.AsyncClient(transport=t) as c:
        assert (await c.get("http://api.internal/a")).status_code == 503
        with pytest.raises(httpx.TransportError) as info:
            await c.get("http://api.internal/a")
        assert isinstance(info.value, CircuitOpenTransportError)
        assert info.value.name == "httpx:api.internal"
        assert (await c.get("http://api.internal/b")).status_code == 200  # another route
    assert len(seen) == 4
