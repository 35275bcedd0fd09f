"""The demo's flaky HTTP services on 127.0.0.1 and the stdlib client that calls them."""

from __future__ import annotations

import http.server
import json
import math
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from .._errors import CircuitOpenError

__all__ = ["FlakyService", "MetricsEndpoint", "describe", "fetch", "post"]


class _Server(http.server.ThreadingHTTPServer):
    # server_close() joins the request threads: the demo leaves no thread behind
    daemon_threads = False

    def __init__(self, address: tuple[str, int], service: FlakyService) -> None:
        self.service = service
        super().__init__(address, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _service(self) -> FlakyService:
        server = self.server
        assert isinstance(server, _Server)
        return server.service

    def do_GET(self) -> None:
        service = self._service()
        path, _, query = self.path.partition("?")
        if path == "/health":
            up = service.mode != "down"
            self._reply(200 if up else 503, {"ok": up, "server": service.name})
            return
        outcome, n = service.decide()
        if outcome != "ok":
            self._fail(outcome)
            return
        symbol = query.partition("symbol=")[2] or "ACME"
        price = round(100.0 + 5.0 * math.sin(n / 7.0), 2)
        self._reply(
            200,
            {
                "ok": True,
                "server": service.name,
                "symbol": symbol,
                "price": price,
                "request": n,
                "at": time.time(),
            },
        )

    def do_POST(self) -> None:
        service = self._service()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        outcome, _ = service.decide()
        if outcome != "ok":
            self._fail(outcome)
            return
        service.record(json.loads(body))
        self._reply(201, {"ok": True})

    def _reply(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fail(self, outcome: str) -> None:
        if outcome.startswith("503"):
            self.send_response(503)
            if outcome == "503+retry-after":
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.close_connection = True  # drop it: the client sees a reset/EOF

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the demo prints its own lines


class FlakyService:
    """A local HTTP service whose behaviour is switched at run time.

    Modes: "up" (200 and a small JSON body), "flaky" (about `failure_rate` of the requests
    fail, never more than 3 in a row, drawn from a seeded generator) and "down" (every
    request fails). Every other failure is a 503 (with `Retry-After: 1` when down: a Retry
    would honour it), the others a connection dropped without a response. `stop()` closes
    the port for real; `start()` opens the same port again.

    Routes: GET /quote?symbol=S, POST /write (its JSON body is appended to `received`), and
    GET /health (200 unless the mode is "down"; not counted in `requests`).
    """

    def __init__(self, name: str = "quotes", *, failure_rate: float = 0.3, seed: int = 7) -> None:
        self.name = name
        self.mode = "up"
        self.failure_rate = failure_rate
        self.requests = 0
        self.failures = 0
        self.received: list[Any] = []
        self._rng = random.Random(seed)
        self._streak = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._server: _Server | None = _Server(("127.0.0.1", 0), self)
        self.port: int = self._server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.quote_url()

    def quote_url(self, symbol: str = "ACME") -> str:
        return f"{self.base}/quote?symbol={symbol}"

    @property
    def write_url(self) -> str:
        return f"{self.base}/write"

    @property
    def health_url(self) -> str:
        return f"{self.base}/health"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def decide(self) -> tuple[str, int]:
        """One request's fate and its number: "ok", "503" (flaky), "503+retry-after" (down)
        or "drop"."""
        with self._lock:
            self.requests += 1
            n = self.requests
            if self.mode == "up":
                fail = False
            elif self.mode == "flaky":
                fail = self._streak < 3 and self._rng.random() < self.failure_rate
            else:
                fail = True
            if not fail:
                self._streak = 0
                return "ok", n
            self._streak += 1
            self.failures += 1
            if self.failures % 2 == 0:
                return "drop", n
            return ("503" if self.mode == "flaky" else "503+retry-after"), n

    def record(self, payload: Any) -> None:
        with self._lock:
            self.received.append(payload)

    def start(self) -> FlakyService:
        """Serve (again, on the same port after `stop()`)."""
        if self._thread is None:
            if self._server is None:
                self._server = _Server(("127.0.0.1", self.port), self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"resilience-demo-{self.name}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port (connections are refused until `start()`)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            if thread is not None:
                server.shutdown()
                thread.join(timeout=5)
            server.server_close()

    def __enter__(self) -> FlakyService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fetch(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET `url` and decode its JSON body (urllib: an HTTPError for 4xx/5xx)."""
    return _open(urllib.request.Request(url), timeout)


def post(url: str, payload: Any, timeout: float = 2.0) -> dict[str, Any]:
    """POST `payload` as JSON to `url` and decode the JSON answer."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    return _open(request, timeout)


def _open(request: urllib.request.Request, timeout: float) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        exc.close()  # the error carries the open response; .status and .headers stay readable
        raise


def describe(exc: BaseException) -> str:
    """A few words for an error, as a user would say it."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, CircuitOpenError):
        return "its breaker is open"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):  # http.client.RemoteDisconnected too
        return "connection dropped"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


class MetricsEndpoint:
    """`GET /metrics` on 127.0.0.1: what Prometheus scrapes, from one registry.

    The body is `prometheus_client.generate_latest(registry)`, as `start_http_server` serves it;
    a server of our own so that it works on every prometheus-client release we support and is
    shut down (its thread joined) when the demo ends.
    """

    def __init__(self, registry: Any) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.partition("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/metrics"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="resilience-demo-metrics",
            daemon=True,
        )
        self._thread.start()

    def scrape(self, timeout: float = 2.0) -> str:
        """One scrape, as Prometheus does it: the text exposition format."""
        with urllib.request.urlopen(self.url, timeout=timeout) as response:
            return str(response.read().decode("utf-8"))

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()
