"""What failing over costs: the extra latency a call pays to be served by the secondary.

1. In process: the secondary called directly vs through `Failover` when the primary fails fast
   (its breaker still closed, so every call tries it first) and when its breaker is open; a
   hand-written try/except failover is the floor.
2. Over real HTTP on 127.0.0.1 (httpx): the secondary server directly vs through
   `ResilientTransport(tiers=[primary, secondary])` with the primary refusing connections.
3. A hanging primary: each call is bounded by the configured read timeout, and once the
   primary's breaker opens, calls stop paying it.

Run: .venv/bin/python -m benchmarks.failover
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from pathlib import Path

import httpx

import resilience as rs
from resilience.integrations.httpx import ResilientTransport

from ._harness import compare, fmt_time, loop, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _servers import Hang, HTTPTestServer, Reply

TARGET_EXTRA = 1e-3  # seconds


def in_process() -> None:
    def primary(x: int) -> int:
        raise ConnectionError("primary down")

    def secondary(x: int) -> int:
        return x

    never_open = {"failure_rate_threshold": 1.0, "minimum_calls": 10**6}
    fo_tries = rs.Failover(
        [rs.Tier("p", primary), rs.Tier("s", secondary)], name="b1", breaker=never_open
    )
    fo_tries.breaker("p").disable()  # every call tries the failing primary first
    fo_open = rs.Failover([rs.Tier("p", primary), rs.Tier("s", secondary)], name="b2")
    fo_open.breaker("p").force_open()  # the primary is skipped by its breaker
    fo_healthy = rs.Failover([rs.Tier("s", secondary), rs.Tier("p", primary)], name="b3")

    def hand(x: int) -> int:
        try:
            return primary(x)
        except ConnectionError:
            return secondary(x)

    # what users write today: a peer breaker per tier and a loop
    import pybreaker

    pb = [pybreaker.CircuitBreaker(fail_max=10**9), pybreaker.CircuitBreaker(fail_max=10**9)]
    pb_open = [pybreaker.CircuitBreaker(), pybreaker.CircuitBreaker()]
    pb_open[0].open()

    def pybreaker_tiers(breakers: list[pybreaker.CircuitBreaker], x: int) -> int:
        for br, fn in zip(breakers, (primary, secondary), strict=True):
            try:
                return int(br.call(fn, x))
            except (ConnectionError, pybreaker.CircuitBreakerError):
                continue
        raise RuntimeError("all tiers failed")

    results = compare(
        {
            "secondary direct": loop(lambda: secondary(1)),
            "hand try/except failover": loop(lambda: hand(1)),
            "Failover, primary fails fast": loop(lambda: fo_tries.call(1)),
            "Failover, primary breaker open": loop(lambda: fo_open.call(1)),
            "Failover, primary healthy": loop(lambda: fo_healthy.call(1)),
            "pybreaker per tier, primary fails fast": loop(lambda: pybreaker_tiers(pb, 1)),
            "pybreaker per tier, primary open": loop(lambda: pybreaker_tiers(pb_open, 1)),
        },
        number=20_000,
        repeat=9,
    )
    print(table("in process: served by the secondary", results, baseline="secondary direct"))
    extra = results["Failover, primary fails fast"] - results["secondary direct"]
    print(f"extra latency, primary failing fast: {fmt_time(extra)} (target <= 1 ms)\n")


def _refused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connections are refused at once
    return int(port)


def _median_latency(client: httpx.Client, url: str, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url)
        samples.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.status_code
    return statistics.median(samples)


def over_http() -> None:
    secondary = HTTPTestServer().start()
    secondary.default = Reply(200, b"secondary")
    hanging = HTTPTestServer().start()
    hanging.default = Hang(30)
    dead = f"http://127.0.0.1:{_refused_port()}"
    timeout = httpx.Timeout(2.0, read=0.1)
    try:
        direct = httpx.Client(timeout=timeout)
        closed = httpx.Client(
            transport=ResilientTransport(tiers=[dead, secondary.url]), timeout=timeout
        )
        closed._transport.failover.breaker(dead).disable()  # type: ignore[attr-defined]
        opened = httpx.Client(
            transport=ResilientTransport(tiers=[dead, secondary.url]), timeout=timeout
        )
        opened._transport.failover.breaker(dead).force_open()  # type: ignore[attr-defined]
        healthy = httpx.Client(transport=ResilientTransport(tiers=[secondary.url]), timeout=timeout)
        url = "http://svc.internal/item"
        for c in (direct, closed, opened, healthy):  # warm the pools
            _median_latency(c, secondary.url if c is direct else url, 20)
        rounds: dict[str, list[float]] = {"direct": [], "refused": [], "open": [], "one": []}
        for _ in range(7):  # interleaved rounds
            rounds["direct"].append(_median_latency(direct, secondary.url + "/item", 100))
            rounds["one"].append(_median_latency(healthy, url, 100))
            rounds["refused"].append(_median_latency(closed, url, 100))
            rounds["open"].append(_median_latency(opened, url, 100))
        res = {
            "secondary direct (httpx)": statistics.median(rounds["direct"]),
            "transport, one healthy tier": statistics.median(rounds["one"]),
            "tiers, primary refuses connections": statistics.median(rounds["refused"]),
            "tiers, primary breaker open": statistics.median(rounds["open"]),
        }
        print(table("over HTTP on 127.0.0.1", res, baseline="secondary direct (httpx)"))
        extra = res["tiers, primary refuses connections"] - res["secondary direct (httpx)"]
        ok = "OK" if extra <= TARGET_EXTRA else "OVER TARGET"
        print(f"extra latency, primary refusing connections: {fmt_time(extra)} ({ok}, <= 1 ms)")
        extra_open = res["tiers, primary breaker open"] - res["secondary direct (httpx)"]
        print(f"extra latency, primary's breaker open: {fmt_time(extra_open)}\n")

        # a hanging primary: bounded by the read timeout; then its breaker opens
        t = ResilientTransport(
            tiers=[hanging.url, secondary.url], breaker={"minimum_calls": 3}, probe_interval=60
        )
        hung = httpx.Client(transport=t, timeout=timeout)
        lat = []
        for _ in range(6):
            t0 = time.perf_counter()
            assert hung.get(url).text == "secondary"
            lat.append(time.perf_counter() - t0)
        print("## primary hangs (read timeout 0.1 s, breaker opens after 3 calls)")
        for i, v in enumerate(lat, 1):
            print(f"call {i}: {fmt_time(v)}")
        bounded = all(v <= 0.1 + 0.05 for v in lat[:3])
        print(
            f"first calls bounded by the timeout (+50 ms): {bounded}; "
            f"after the breaker opens: {fmt_time(statistics.median(lat[3:]))}"
        )
        for c in (direct, closed, opened, healthy, hung):
            c.close()
    finally:
        secondary.stop()
        hanging.stop()


def main() -> None:
    in_process()
    over_http()


if __name__ == "__main__":
    main()
