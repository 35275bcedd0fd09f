"""What the HTTP integrations cost per request when nothing fails.

1. Over real HTTP on 127.0.0.1 (a keep-alive server in this process): `httpx.Client` with its
   plain transport vs with `ResilientTransport` (the default policy: Retry + a breaker per
   host); the same for `httpx.AsyncClient`, and for a `requests.Session` with the plain
   `HTTPAdapter` vs `ResilientAdapter`. Target: <= 1.05x of the plain transport's time.
2. Over `httpx.MockTransport` (no network): the transport's own overhead, in microseconds.

Times are CPU seconds of this process (`time.process_time`: the client and the in-process
server threads), interleaved and reshuffled per repetition: on a shared machine, wall time
mostly measures the neighbours.

Run: .venv/bin/python -m benchmarks.http_clients
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import requests
from requests.adapters import HTTPAdapter

from resilience.integrations.httpx import AsyncResilientTransport, ResilientTransport
from resilience.integrations.requests import ResilientAdapter

from ._harness import Case, compare, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _servers import HTTPTestServer, Reply

TARGET = 1.05


def loop(fn: Callable[[], object]) -> Case:
    """A case that calls `fn()` n times; CPU seconds."""

    def case(n: int) -> float:
        start = time.process_time()
        for _ in range(n):
            fn()
        return time.process_time() - start

    return case


def async_case(transport: httpx.AsyncBaseTransport, url: str) -> Case:
    client = httpx.AsyncClient(transport=transport)

    async def body(n: int) -> float:
        start = time.process_time()
        for _ in range(n):
            await client.get(url)
        return time.process_time() - start

    loop_ = asyncio.new_event_loop()

    def case(n: int) -> float:
        return loop_.run_until_complete(body(n))

    return case


def session(adapter: HTTPAdapter) -> requests.Session:
    s = requests.Session()
    s.mount("http://", adapter)
    return s


def main() -> None:
    srv = HTTPTestServer().start()
    srv.default = Reply(200, b"ok")
    url = srv.url + "/item"
    plain = httpx.Client(transport=httpx.HTTPTransport())
    resilient = httpx.Client(transport=ResilientTransport())
    results = compare(
        {
            "httpx.Client, plain transport": loop(lambda: plain.get(url)),
            "httpx.Client, ResilientTransport": loop(lambda: resilient.get(url)),
            "httpx.AsyncClient, plain transport": async_case(httpx.AsyncHTTPTransport(), url),
            "httpx.AsyncClient, AsyncResilientTransport": async_case(
                AsyncResilientTransport(), url
            ),
        },
        number=200,
        repeat=21,
    )
    print(table("GET over 127.0.0.1 (keep-alive), per request", results))
    sync_ratio = (
        results["httpx.Client, ResilientTransport"] / results["httpx.Client, plain transport"]
    )
    async_ratio = (
        results["httpx.AsyncClient, AsyncResilientTransport"]
        / results["httpx.AsyncClient, plain transport"]
    )
    plain_s, resilient_s = session(HTTPAdapter()), session(ResilientAdapter())
    req = compare(
        {
            "requests, HTTPAdapter": loop(lambda: plain_s.get(url)),
            "requests, ResilientAdapter": loop(lambda: resilient_s.get(url)),
        },
        number=200,
        repeat=21,
    )
    print(table("requests over 127.0.0.1 (keep-alive), per request", req))
    req_ratio = req["requests, ResilientAdapter"] / req["requests, HTTPAdapter"]

    def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="ok")

    mock_plain = httpx.Client(transport=httpx.MockTransport(ok))
    mock_res = httpx.Client(transport=ResilientTransport(transport=httpx.MockTransport(ok)))
    mock = compare(
        {
            "MockTransport": loop(lambda: mock_plain.get("http://api.internal/x")),
            "ResilientTransport(MockTransport)": loop(
                lambda: mock_res.get("http://api.internal/x")
            ),
        },
        number=2000,
        repeat=21,
    )
    print(table("httpx.Client over MockTransport (no network), per request", mock))
    extra = mock["ResilientTransport(MockTransport)"] - mock["MockTransport"]
    srv.stop()
    print(
        f"\nratios to the plain transport: httpx sync {sync_ratio:.3f}x, async "
        f"{async_ratio:.3f}x, requests {req_ratio:.3f}x (target <= {TARGET}x); "
        f"the transport's own cost: {extra * 1e6:.1f} us per request"
    )


if __name__ == "__main__":
    main()
