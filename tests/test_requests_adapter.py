"""`resilience.integrations.requests.ResilientAdapter` on real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator

import pytest
import requests

import resilience as rs
from _servers import Drop, Hang, HTTPTestServer, Reply
from resilience import events
from resilience.integrations.requests import CircuitOpenAdapterError, ResilientAdapter
from resilience.testing import VirtualClock


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


def session(adapter: ResilientAdapter) -> requests.Session:
    s = requests.Session()
    s.mount("http://", adapter)
    return s


def test_retries_then_succeeds(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.script(Reply(500, b"oops"), Drop())
    server.default = Reply(200, b"fine")
    with session(ResilientAdapter(clock=clock)) as s:
        r = s.get(server.url + "/a", timeout=2)
    assert (r.status_code, r.text) == (200, "fine")
    assert len(server.requests) == 3
    assert len(clock.sleeps) == 2


def test_last_response_is_returned_and_retry_after_honoured(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.default = Reply(503, b"busy", {"Retry-After": "2"})
    with session(ResilientAdapter(clock=clock, breaker={"minimum_calls": 100})) as s:
        r = s.get(server.url, timeout=2)
        assert (r.status_code, r.text, r.headers["Retry-After"]) == (503, "busy", "2")
        with pytest.raises(requests.HTTPError):
            r.raise_for_status()
        streamed = s.get(server.url, timeout=2, stream=True)
        assert b"".join(streamed.iter_content(2)) == b"busy"
    assert clock.sleeps == [2.0] * 4
    assert len(server.requests) == 6


def test_bounded_by_default(server: HTTPTestServer, clock: VirtualClock) -> None:
    server.default = Reply(503, headers={"Retry-After": "240"})
    with session(ResilientAdapter(clock=clock)) as s:
        assert s.get(server.url, timeout=2).status_code == 503
    assert len(server.requests) == 1  # 240 s would cross the 30 s budget
    assert clock.sleeps == []


def test_non_idempotent_and_streaming_bodies_are_sent_once(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.default = Reply(503)
    with session(ResilientAdapter(clock=clock, breaker={"minimum_calls": 100})) as s:
        assert s.post(server.url, data=b"charge 10", timeout=2).status_code == 503
        assert len(server.requests) == 1
        assert s.put(server.url, data=iter([b"a", b"b"]), timeout=2).status_code == 503
        assert len(server.requests) == 2  # a generator cannot be sent again
        assert s.put(server.url, data=b"v=1", timeout=2).status_code == 503
    assert [r.body for r in server.requests[2:]] == [b"v=1"] * 3


def test_transport_errors_are_raised_as_requests_raises_them(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.script(Reply(503))
    server.default = Hang(5)
    adapter = ResilientAdapter(policy=rs.Retry(max_attempts=2, clock=clock), clock=clock)
    with session(adapter) as s, pytest.raises(requests.exceptions.ReadTimeout) as info:
        s.get(server.url, timeout=(2, 0.25))
    assert "_ResponseFailure" not in "".join(traceback.format_exception(info.value))
    server.stop()
    with session(ResilientAdapter(clock=clock)) as s, pytest.raises(requests.ConnectionError):
        s.get(server.url, timeout=2)


def test_the_budget_lowers_timeouts(server: HTTPTestServer) -> None:
    server.default = Hang(5)
    with session(ResilientAdapter(policy=rs.Retry(max_attempts=1))) as s:
        start = time.monotonic()
        with rs.deadline(0.3), pytest.raises(requests.exceptions.ReadTimeout):
            s.get(server.url, timeout=5)
        assert time.monotonic() - start < 3.0  # not the 5 s hang; generous for a loaded CI


def test_open_breaker_is_a_requests_connection_error(
    server: HTTPTestServer, clock: VirtualClock
) -> None:
    server.default = Reply(500)
    adapter = ResilientAdapter(clock=clock, breaker={"minimum_calls": 3, "open_duration": 10})
    with session(adapter) as s:
        s.get(server.url + "/x", timeout=2)
        with pytest.raises(requests.ConnectionError) as info:
            s.get(server.url + "/y", timeout=2)
    err = info.value
    assert isinstance(err, CircuitOpenAdapterError)
    assert isinstance(err, rs.LocalRejection)
    assert err.name == f"requests:127.0.0.1:{server.port}"
    assert 0 < err.remaining <= 10
    assert "is open" in str(err)
    assert err.request is not None
    assert "_ResponseFailure" not in "".join(traceback.format_exception(err))
    assert len(server.requests) == 3


def test_key_route_and_one_operation_name(
    make_server: Callable[[], HTTPTestServer], clock: VirtualClock
) -> None:
    a, b = make_server(), make_server()
    a.default = lambda seen: Reply(500) if seen.path.startswith("/reports") else Reply(200)
    seen: list[events.Event] = []
    stop = events.subscribe(seen.append)
    try:
        adapter = ResilientAdapter(key="route", clock=clock, breaker={"minimum_calls": 3})
        with session(adapter) as s:
            s.get(a.url + "/reports", timeout=2)
            with pytest.raises(CircuitOpenAdapterError):
                s.get(a.url + "/reports?page=2", timeout=2)
            assert s.get(a.url + "/users", timeout=2).status_code == 200
            assert s.get(b.url + "/reports", timeout=2).status_code == 200
    finally:
        stop()
    assert {e.operation for e in seen} == {
        f"requests:127.0.0.1:{a.port}",
        f"requests:127.0.0.1:{b.port}",
    }
    with pytest.raises(rs.ConfigError) as info:
        ResilientAdapter(policy=3, key="path", name="", retry_methods="GET")
    assert [loc for loc, _ in info.value.errors] == ["policy", "key", "name", "retry_methods"]
