"""Users' scenarios 11, 13, 16 and 19 (SCENARIOS.md) on real sockets and HTTP servers, with
virtual time wherever waiting is involved."""

from __future__ import annotations

import contextvars
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import resilience as rs
from resilience import events
from resilience.testing import VirtualClock


class Service:
    """A real HTTP server on 127.0.0.1 whose answer the test sets: a status code and headers."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self.hits = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.hits += 1
                body = b"ok" if service.status == 200 else b"nope"
                self.send_response(service.status)
                for k, v in service.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.client = httpx.Client(timeout=2.0)

    def get(self) -> str:
        response = self.client.get(self.url)
        response.raise_for_status()
        return response.text

    def close(self) -> None:
        self.client.close()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service() -> Iterator[Service]:
    s = Service()
    yield s
    s.close()


@pytest.fixture
def audit() -> Iterator[list[events.Event]]:
    seen: list[events.Event] = []
    stop = events.subscribe(seen.append)
    yield seen
    stop()


# --- 11. WebSocket-style reconnection --------------------------------------------------------


def test_reconnect_attempts_back_off_100_200_400_800_1600_ms() -> None:
    clock = VirtualClock()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: connecting is refused
    listener: socket.socket | None = None

    def connect() -> socket.socket:
        nonlocal listener
        if clock.monotonic() >= 3.1 and listener is None:  # the server comes back at t=3.1 s
            listener = socket.create_server(("127.0.0.1", port))
        return socket.create_connection(("127.0.0.1", port), timeout=1.0)

    reconnect = rs.Retry(
        max_attempts=10,
        backoff=rs.Backoff.exponential(initial=0.1, multiplier=2, jitter=None),
        clock=clock,
    )
    conn = reconnect.call(connect)
    try:
        assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    finally:
        conn.close()
        assert listener is not None
        listener.close()


# --- 13. Rate limits without a thundering herd ------------------------------------------------


def test_429s_back_off_with_jitter_within_a_budget_then_recover(
    service: Service, audit: list[Any]
) -> None:
    clock = VirtualClock()
    service.status, service.headers = 429, {"Retry-After": "2"}
    budget = rs.RetryBudget(ratio=0.2, min_per_second=1)
    clients = [
        rs.Retry(
            max_attempts=4,
            backoff=rs.Backoff.exponential(initial=1.0, maximum=8.0, seed=n),
            budget=budget,
            name=f"client{n}",
            clock=clock,
        )
        for n in range(20)
    ]
    failures: list[BaseException] = []
    for client in clients:
        try:
            client.call(service.get)
        except httpx.HTTPStatusError as e:
            failures.append(e)
    # every client was told, with the reason, and nobody hammered the provider
    assert len(failures) == 20
    assert all("gave up" in e.__notes__[0] for e in failures)
    retries = service.hits - 20
    assert retries <= 0.2 * 20 + 1 * (clock.monotonic() + 1)
    waits = [e.delay for e in audit if isinstance(e, events.RetryAttempted)]
    assert len(waits) == retries
    assert all(w >= 2.0 for w in waits)  # Retry-After honoured
    assert len({round(w, 6) for w in waits}) > 1 or len(waits) <= 1  # jittered, not in lockstep
    assert {e.reason for e in audit if isinstance(e, events.RetryGaveUp)} <= {"budget", "attempts"}
    # the limit resets: normal operation resumes, first try
    service.status, service.headers = 200, {}
    hits = service.hits
    assert [c.call(service.get) for c in clients[:5]] == ["ok"] * 5
    assert service.hits == hits + 5


def test_a_client_side_rate_limiter_keeps_us_under_the_providers_limit() -> None:
    clock = VirtualClock()
    limiter = rs.RateLimiter(rate=5, per=1.0, burst=5, wait=True, clock=clock)
    for _ in range(25):
        limiter.call(lambda: None)
    assert clock.monotonic() == pytest.approx(4.0)  # burst of 5, then 5 per second


# --- 16. The pipeline ---------------------------------------------------------------------------


def test_pipeline_lifecycle_on_a_real_service(service: Service) -> None:
    clock = VirtualClock()
    breaker = rs.CircuitBreaker(
        "quotes", minimum_calls=4, failure_rate_threshold=0.5, open_duration=30.0,
        half_open_calls=1, clock=clock,
    )  # fmt: skip
    pipe = rs.Pipeline(
        rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), deadline=10.0, clock=clock),
        breaker,
        rs.Bulkhead(8),
        name="quotes",
    )
    get = pipe(service.get)

    # healthy: first try, breaker closed
    assert get() == "ok"
    assert service.hits == 1
    assert breaker.state is rs.CircuitState.CLOSED

    # one transient failure: succeeds on retry
    service.status = 503
    hits = service.hits

    def recover_after_one() -> str:
        if service.hits > hits:
            service.status = 200
        return service.get()

    assert pipe.call(recover_after_one) == "ok"
    assert service.hits == hits + 2

    # a real outage: failures open the breaker; with retries exhausted the fallback answers
    service.status = 503
    chain = rs.FallbackChain(rs.Step(get), rs.Default("cached quote"), name="quotes")
    assert chain() == "cached quote"
    assert breaker.state is rs.CircuitState.OPEN
    hits = service.hits
    assert chain() == "cached quote"  # the open breaker spares the service: its 30 s wait
    # for the trial is past the retry's deadline, so the retry gives up at once
    assert service.hits == hits

    # the outage ends: after open_duration the breaker half-opens and closes by itself
    service.status = 200
    clock.advance(31)
    assert get() == "ok"
    assert breaker.state is rs.CircuitState.CLOSED


def test_concurrent_callers_during_instability_see_consistent_outcomes(service: Service) -> None:
    clock = VirtualClock()
    breaker = rs.CircuitBreaker("flaky", minimum_calls=10, open_duration=60.0, clock=clock)
    pipe = rs.Pipeline(
        rs.Retry(max_attempts=2, backoff=rs.Backoff.constant(0), clock=clock),
        breaker,
        rs.Bulkhead(4, max_waiting=100),
    )
    service.status = 503
    outcomes: list[str] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(10):
            try:
                pipe.call(service.get)
                result = "ok"
            except httpx.HTTPStatusError:
                result = "failed"
            except rs.CircuitOpenError:
                result = "rejected"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(outcomes) == 60  # every call got an answer of a known kind
    assert set(outcomes) <= {"failed", "rejected"}
    assert breaker.state is rs.CircuitState.OPEN
    assert "rejected" in outcomes
    assert service.hits < 60 * 2  # the breaker shed load


# --- 19. Transient vs permanent ---------------------------------------------------------------

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="")


def test_each_class_of_error_gets_its_own_strategy(service: Service, audit: list[Any]) -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.25), name="orders", clock=clock)

    service.status = 404  # PERMANENT: not retried
    with pytest.raises(httpx.HTTPStatusError):
        rt.call(service.get)
    assert service.hits == 1
    assert clock.sleeps == []

    service.status, service.headers = 429, {"Retry-After": "3"}  # RATE_LIMITED: waits 3 s
    with pytest.raises(httpx.HTTPStatusError) as info:
        rt.call(service.get)
    assert clock.sleeps == [3.0, 3.0]
    assert "3 attempts" in info.value.__notes__[0]  # exhaustion ends gracefully, with a note

    service.status, service.headers = 500, {}  # TRANSIENT: the backoff
    with pytest.raises(httpx.HTTPStatusError):
        rt.call(service.get)
    assert clock.sleeps[2:] == [0.25, 0.25]

    trail = [(type(e).__name__, getattr(e, "verdict", getattr(e, "reason", ""))) for e in audit]
    assert trail == [
        ("RetryGaveUp", "permanent"),
        ("RetryAttempted", "rate_limited"),
        ("RetryAttempted", "rate_limited"),
        ("RetryGaveUp", "attempts"),
        ("RetryAttempted", "transient"),
        ("RetryAttempted", "transient"),
        ("RetryGaveUp", "attempts"),
    ]


def test_request_context_survives_retries_and_timeouts(service: Service) -> None:
    clock = VirtualClock()
    seen: list[str] = []
    service.status = 503

    def handler() -> str:
        seen.append(REQUEST.get())
        if len(seen) == 3:
            service.status = 200
        return service.get()

    pipe = rs.Pipeline(
        rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.1), clock=clock),
        rs.Timeout(2.0),  # runs each attempt in a worker thread
    )
    token = REQUEST.set("req-7f3a")
    try:
        assert pipe.call(handler) == "ok"
    finally:
        REQUEST.reset(token)
    assert seen == ["req-7f3a"] * 3
