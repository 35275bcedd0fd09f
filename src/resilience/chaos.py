"""FaultInjection: seeded chaos as a policy; `soak()`: a faulty workload, then leak detection.

`FaultInjection` sits where a dependency would fail: alone, as a decorator, or as the innermost
stage of a `Pipeline`, so the retries, breakers and fallbacks around it meet the faults they were
built for. Each call takes 64 bits from its own `random.Random(seed)`: the high 32 decide
whether to add `latency` seconds (slept on the injected clock, so `VirtualClock` makes it
free), the low 32 whether to raise `error` instead of calling through. The same draw per call
whatever the rates, so one seed always gives the same sequence of faults.

Example:
    >>> import resilience as rs
    >>> chaos = rs.FaultInjection(error_rate=0.5, seed=7, name="db")
    >>> outcomes = []
    >>> for _ in range(6):
    ...     try:
    ...         outcomes.append(chaos.call(lambda: "ok"))
    ...     except ConnectionError:
    ...         outcomes.append("fault")
    >>> outcomes == chaos.plan(6)
    True
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from . import events
from ._clock import SYSTEM_CLOCK, Clock
from ._policy import Decorator
from ._validate import Errors, raise_if

__all__ = ["FaultInjection", "SoakReport", "soak"]

P = ParamSpec("P")
R = TypeVar("R")

ErrorSpec = type[BaseException] | Callable[[], BaseException]

_NAMES = {
    (False, False): "ok",
    (False, True): "fault",
    (True, False): "slow",
    (True, True): "slow+fault",
}


_LOW = 0xFFFFFFFF


def _cut(rate: float) -> int:
    """A rate as a threshold on 32 random bits: 0 never, 1.0 always (2**32 > any value)."""
    return round(rate * 2**32)


def _check_rate(e: Errors, key: str, value: object) -> None:
    v = e._number(key, value)
    if v is not None and not 0.0 <= v <= 1.0:
        e.append((key, f"must be in [0, 1], got {value!r}"))


class FaultInjection(Decorator):
    """Raise `error` with probability `error_rate`, add `latency` with `latency_rate`.

    Args:
        error_rate: chance in [0, 1] that a call raises instead of running.
        error: what to raise: an exception class (built fresh each time with a message naming
            this injector), or a callable returning a fresh exception instance (for classes
            that need other arguments, e.g. an HTTP error carrying a 503 response). One
            instance given directly is refused: raising the same object again and again grows
            its traceback.
        latency: seconds slept (on `clock`) before a call that draws latency; None: never.
        latency_rate: chance in [0, 1] that a call is delayed by `latency` (needs `latency`).
        seed: seeds the injector's own random generator: the same seed gives the same faults.
        clock: where latency is slept; `VirtualClock` in tests.
        name: shown in errors and events (default "chaos").

    Raises:
        ConfigError: a rate outside [0, 1], a negative latency, latency_rate without latency,
            or an `error` that is neither an exception class nor a factory.

    Attributes:
        enabled: set it to False to stop injecting (calls go straight through and draw
            nothing), True to resume. `error_rate` and `latency_rate` may be set too (checked).
            Counters: `errors` and `delays` injected so far.

    Example:
        >>> import resilience as rs
        >>> from resilience.testing import VirtualClock
        >>> clock = VirtualClock()
        >>> slow = rs.FaultInjection(error_rate=0, latency=2.0, latency_rate=1.0, clock=clock)
        >>> slow.call(sum, [1, 2]), clock.monotonic()
        (3, 2.0)
    """

    __slots__ = (
        "_bits",
        "_error",
        "_error_cut",
        "_error_rate",
        "_latency_cut",
        "_latency_rate",
        "_lock",
        "_message",
        "clock",
        "delays",
        "enabled",
        "error",
        "errors",
        "latency",
        "name",
        "seed",
    )

    def __init__(
        self,
        error_rate: float = 0.1,
        error: ErrorSpec = ConnectionError,
        latency: float | None = None,
        latency_rate: float = 0.0,
        seed: int | str | bytes | None = None,
        *,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        raise_if(
            FaultInjection.validate(
                error_rate=error_rate,
                error=error,
                latency=latency,
                latency_rate=latency_rate,
                seed=seed,
                name=name,
            ),
            name,
        )
        self.error = error
        self.latency = None if latency is None else float(latency)
        self.error_rate = error_rate
        self.latency_rate = latency_rate
        self.seed = seed
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.name = name or "chaos"
        self.enabled = True
        self.errors = self.delays = 0
        self._bits = random.Random(seed).getrandbits
        self._lock = threading.Lock()
        self._message = f"fault injected by {self.name!r}"
        self._error: Callable[[], BaseException]
        if isinstance(error, type):
            cls, message = error, self._message
            self._error = lambda: cls(message)
        else:
            self._error = error

    @staticmethod
    def validate(
        *,
        error_rate: object = 0.1,
        error: object = ConnectionError,
        latency: object = None,
        latency_rate: object = 0.0,
        seed: object = None,
        name: object = None,
        clock: object = None,
    ) -> list[tuple[str, str]]:
        """Every problem with these arguments, as (argument, message).

        Example:
            >>> for problem in FaultInjection.validate(error_rate=1.5, latency=-1):
            ...     print(problem)
            ('error_rate', 'must be in [0, 1], got 1.5')
            ('latency', 'must be >= 0 and finite, got -1')
        """
        e = Errors()
        _check_rate(e, "error_rate", error_rate)
        _check_rate(e, "latency_rate", latency_rate)
        if latency is not None:
            e.non_negative("latency", latency)
        elif isinstance(latency_rate, int | float) and latency_rate > 0:
            e.append(("latency_rate", "needs latency (seconds) to be set"))
        if isinstance(error, BaseException):
            e.append(
                (
                    "error",
                    "must be an exception class or a factory returning a fresh exception, "
                    f"not one instance ({error!r}); e.g. error=lambda: {type(error).__name__}(...)",
                )
            )
        elif isinstance(error, type):
            if not issubclass(error, Exception):
                e.append(("error", f"must be an Exception subclass, got {error.__name__}"))
        elif not callable(error):
            e.append(("error", f"must be an exception class or a callable, got {error!r}"))
        if seed is not None and not isinstance(seed, int | str | bytes):
            e.append(("seed", f"must be an int, str, bytes or None, got {type(seed).__name__}"))
        if name is not None and not isinstance(name, str):
            e.append(("name", f"must be a string, got {type(name).__name__}"))
        return e

    # --- the core: one decision per call, no I/O ---------------------------------------------

    @property
    def error_rate(self) -> float:
        """The chance that a call raises; settable (checked) between phases of a test."""
        return self._error_rate

    @error_rate.setter
    def error_rate(self, value: float) -> None:
        self._error_rate = self._rate("error_rate", value)
        self._error_cut = _cut(self._error_rate)

    @property
    def latency_rate(self) -> float:
        """The chance that a call is delayed by `latency`; settable (checked)."""
        return self._latency_rate

    @latency_rate.setter
    def latency_rate(self, value: float) -> None:
        if self.latency is None and value:
            raise_if([("latency_rate", "needs latency (seconds) to be set")], self.name)
        self._latency_rate = self._rate("latency_rate", value)
        self._latency_cut = _cut(self._latency_rate)

    def _rate(self, key: str, value: object) -> float:
        e = Errors()
        _check_rate(e, key, value)
        raise_if(e, getattr(self, "name", None))
        return float(value)  # type: ignore[arg-type]

    def _outcome(self, bits: int) -> tuple[float, bool]:
        """(latency to add, whether to fail) for one call's 64 random bits: the high 32 decide
        the latency, the low 32 the error."""
        latency = self.latency
        delay = latency if latency is not None and (bits >> 32) < self._latency_cut else 0.0
        return delay, (bits & _LOW) < self._error_cut

    def _faulted(self, bits: int) -> tuple[float, bool]:
        """The slow path, for a call whose bits fell under a rate: count, emit, decide."""
        delay, fail = self._outcome(bits)
        with self._lock:
            self.delays += delay > 0
            self.errors += fail
        if events.enabled:
            if delay:
                events.emit(events.FaultInjected(self.name, "latency", f"{delay:g}s"))
            if fail:
                events.emit(events.FaultInjected(self.name, "error", self._error_name()))
        return delay, fail

    def _error_name(self) -> str:
        return getattr(self.error, "__name__", type(self.error).__name__)

    def _raise(self) -> None:
        exc = self._error()
        if not isinstance(exc, BaseException):
            raise TypeError(
                f"FaultInjection {self.name!r}: error factory returned {exc!r}, not an exception"
            )
        raise exc

    def plan(self, n: int) -> list[str]:
        """The first `n` outcomes an injector with this seed and rates produces: "ok",
        "fault", "slow" or "slow+fault" (a fresh generator: this injector's own is untouched).

        Example:
            >>> FaultInjection(error_rate=0.5, seed=1).plan(4)
            ['fault', 'ok', 'ok', 'fault']
        """
        bits = random.Random(self.seed).getrandbits
        out = []
        for _ in range(n):
            delay, fail = self._outcome(bits(64))
            out.append(_NAMES[bool(delay), fail])
        return out

    # --- the shells ----------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn(*args, **kwargs)`, maybe late, maybe not at all (raising `error`).

        Raises:
            The injected error; otherwise whatever `fn` raises.
        """
        if self.enabled:
            # One C call per call: atomic under the GIL, so threads never share a draw and
            # the multiset of outcomes is the seed's, whatever the interleaving.
            bits = self._bits(64)
            if (bits >> 32) < self._latency_cut or (bits & _LOW) < self._error_cut:
                delay, fail = self._faulted(bits)
                if delay:
                    self.clock.sleep(delay)
                if fail:
                    self._raise()
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await `fn(*args, **kwargs)` with the same faults as `call` (asyncio or trio)."""
        if self.enabled:
            # One C call per call: atomic under the GIL, so threads never share a draw and
            # the multiset of outcomes is the seed's, whatever the interleaving.
            bits = self._bits(64)
            if (bits >> 32) < self._latency_cut or (bits & _LOW) < self._error_cut:
                delay, fail = self._faulted(bits)
                if delay:
                    await self.clock.asleep(delay)
                if fail:
                    self._raise()
        return await fn(*args, **kwargs)

    def __repr__(self) -> str:
        return (
            f"FaultInjection(error_rate={self.error_rate}, error={self._error_name()}, "
            f"latency={self.latency}, latency_rate={self.latency_rate}, name={self.name!r})"
        )


# --- soak runner -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SoakReport:
    """What a `soak()` run did and whether it leaked.

    Attributes:
        duration: seconds the workload ran.
        calls, successes, failures, rejections: outcomes of the calls (a rejection is a
            `CircuitOpenError` or `BulkheadFull`; a failure is any other error that got out).
        faults: faults the injector raised (retries absorb most of them).
        threads: live threads before and after the run (workers joined).
        fds: open file descriptors before and after (None where they cannot be counted).
        memory_growth: bytes still allocated at the end beyond the level after the warm-up
            (tracemalloc, after a full garbage collection).
        leaks: what leaked, one line each; empty when nothing did.
        transitions: the breaker's state changes, {(from_state, to_state): count}.
        recoveries: how often the breaker closed again after a trial (half_open -> closed).

    Example:
        >>> report = soak(duration=0.1, workers=1, error_rate=0.0)
        >>> report.ok, report.leaks
        (True, ())
    """

    duration: float
    calls: int
    successes: int
    failures: int
    rejections: int
    faults: int
    threads: tuple[int, int]
    fds: tuple[int | None, int | None]
    memory_growth: int
    leaks: tuple[str, ...]
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def recoveries(self) -> int:
        """Times the breaker closed again after its trial calls succeeded."""
        return self.transitions.get(("half_open", "closed"), 0)

    @property
    def ok(self) -> bool:
        """True when nothing leaked."""
        return not self.leaks

    def summary(self) -> str:
        """A few lines for people: counts, resources, verdict."""
        rate = self.calls / self.duration if self.duration > 0 else 0.0
        lines = [
            f"soak: {self.calls} calls in {self.duration:.1f} s ({rate:,.0f}/s): "
            f"{self.successes} ok, {self.failures} failed, {self.rejections} rejected, "
            f"{self.faults} faults injected",
            f"threads {self.threads[0]} -> {self.threads[1]}, "
            f"fds {self.fds[0]} -> {self.fds[1]}, memory growth {self.memory_growth:,} B",
            f"breaker: {sum(self.transitions.values())} transitions, "
            f"{self.recoveries} recoveries"
            + "".join(f"; {a} -> {b} x{n}" for (a, b), n in sorted(self.transitions.items())),
        ]
        lines += [f"LEAK: {leak}" for leak in self.leaks] or ["no leaks"]
        return "\n".join(lines)


def _open_fds() -> int | None:
    import os

    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path)) - 1  # the listing's own descriptor
        except OSError:
            continue
    return None


def _soak_work(i: int) -> int:
    import json

    return len(json.loads(json.dumps({"i": i, "items": list(range(i % 16))})))


_MAX_SOAK_WORKERS = 256
"""More threads than this measure the interpreter's scheduler, not the library (and may not
start at all): `soak()` refuses them as bad input."""


def soak(
    fn: Callable[[int], object] | None = None,
    *,
    duration: float = 10.0,
    calls: int | None = None,
    workers: int = 4,
    error_rate: float = 0.2,
    latency: float | None = None,
    latency_rate: float = 0.0,
    seed: int | str | bytes | None = 0,
    memory_limit: int = 1_000_000,
    name: str = "soak",
    processes: int = 1,
    store: str | None = None,
    outages: int = 2,
    store_restarts: int = 1,
    worker_kills: int = 1,
    max_rss_growth: float = 0.05,
    converge_within: float = 2.0,
) -> Any:
    """Run `fn(i)` from `workers` threads for `duration` seconds through a full pipeline
    (Retry > CircuitBreaker > Bulkhead > FaultInjection), then check for leaks.

    With `processes` > 1 or a `store`, it soaks a fleet instead and returns a `FleetReport`
    (`resilience._fleet`): `processes` worker processes (each with `workers` threads) share
    one breaker and one rate limit through `store` ("sqlite", "sqlite:PATH", "redis" for a
    redis-server started here, or a "redis://" URL), each writes to its own outbox drained to
    a sink and keeps a CRDT replica synced through the store; on a seeded schedule the backend
    goes down `outages` times, the store is killed and restarted (the file locked, for
    SQLite) `store_restarts` times and a worker is SIGKILLed and restarted `worker_kills`
    times. It passes when every outage was recovered from, no acknowledged item was lost, the
    replicas converged within `converge_within` seconds and RSS grew less than
    `max_rss_growth`.

    After a warm-up (the first fifth of the run) the traced memory is noted; at the end, with
    the workers joined and garbage collected, a growth beyond `memory_limit` bytes, more live
    threads or more open file descriptors than before the run are reported as leaks. The run
    after the warm-up lasts at least four fifths of `duration`, however long the warm-up and
    the baseline's garbage collection took on a busy machine.

    Args:
        fn: the call to soak, given a call counter (default: a small JSON round trip).
        duration: seconds to run (> 0). Real time: this is a soak, not a unit test.
        calls: run exactly this many calls instead (>= 5; `duration` is then unused): the
            warm-up is the first fifth of them, and the workers are joined before the
            baseline, so the result does not depend on the machine's speed or load.
        workers: threads calling at once (1 to 256).
        error_rate, latency, latency_rate, seed: the `FaultInjection` settings.
        memory_limit: bytes of growth tolerated after the warm-up (>= 0).
        name: the operation name of the policies built (events, metrics, health).

    Returns:
        A `SoakReport`; `report.ok` is False when something leaked.

    Raises:
        ConfigError: a bad argument (all listed).

    Example:
        >>> from resilience.chaos import soak
        >>> report = soak(duration=0.2, workers=2)
        >>> report.ok, report.calls > 0
        (True, True)
    """
    if processes != 1 or store is not None:
        return _fleet_soak(
            fn=fn, duration=duration, workers=workers, error_rate=error_rate, latency=latency,
            latency_rate=latency_rate, seed=seed, processes=processes, store=store,
            outages=outages, store_restarts=store_restarts, worker_kills=worker_kills,
            max_rss_growth=max_rss_growth, converge_within=converge_within,
        )  # fmt: skip
    e = Errors()
    if fn is not None and not callable(fn):
        e.append(("fn", f"must be callable, got {type(fn).__name__}"))
    e.positive("duration", duration)
    if calls is not None:
        e.integer("calls", calls, minimum=5)
    e.integer("workers", workers, minimum=1)
    if isinstance(workers, int) and workers > _MAX_SOAK_WORKERS:
        e.append(("workers", f"must be <= {_MAX_SOAK_WORKERS} (one thread each), got {workers}"))
    e.integer("memory_limit", memory_limit, minimum=0)
    e.extend(
        FaultInjection.validate(
            error_rate=error_rate, latency=latency, latency_rate=latency_rate, seed=seed, name=name
        )
    )
    raise_if(e, name)

    import gc
    import time
    import tracemalloc

    from ._errors import BulkheadFull, CircuitOpenError
    from .breaker import CircuitBreaker, CountWindow
    from .bulkhead import Bulkhead
    from .pipeline import Pipeline
    from .retry import Backoff, Retry

    work: Callable[[int], object] = fn if fn is not None else _soak_work
    chaos = FaultInjection(
        error_rate=error_rate, latency=latency, latency_rate=latency_rate, seed=seed, name=name
    )
    pipe = Pipeline(
        Retry(max_attempts=3, backoff=Backoff.exponential(0.001, 2.0, 0.01, seed=0), name=name),
        CircuitBreaker(name, minimum_calls=20, window=CountWindow(50), open_duration=0.05),
        Bulkhead(max_concurrent=workers, max_waiting=workers, name=name),
        chaos,
        name=name,
    )
    counts = [0, 0, 0, 0]  # calls, successes, failures, rejections
    lock = threading.Lock()
    transitions: dict[tuple[str, str], int] = {}

    def on_event(event: events.Event) -> None:
        if type(event) is events.StateTransition and event.operation == name:
            with lock:
                key = (event.from_state, event.to_state)
                transitions[key] = transitions.get(key, 0) + 1

    stop = threading.Event()
    issued = [0]  # calls handed out so far
    limit = [calls if calls is not None else 1 << 62]  # hand out calls below this

    def take() -> int | None:
        with lock:
            i = issued[0]
            if i >= limit[0]:
                return None
            issued[0] = i + 1
            return i

    def worker() -> None:
        ok = failed = rejected = 0
        while not stop.is_set():
            i = take()
            if i is None:
                break
            try:
                pipe.call(work, i)
                ok += 1
            except (CircuitOpenError, BulkheadFull):
                rejected += 1
            except Exception:
                failed += 1
        with lock:
            counts[0] += ok + failed + rejected
            counts[1] += ok
            counts[2] += failed
            counts[3] += rejected

    tracing = tracemalloc.is_tracing()
    gc.collect()
    threads_before, fds_before = threading.active_count(), _open_fds()
    if not tracing:
        tracemalloc.start()
    unsubscribe = events.subscribe(on_event)

    def run_workers() -> list[threading.Thread]:
        pool = [threading.Thread(target=worker, name=f"soak-{i}") for i in range(workers)]
        for t in pool:
            t.start()
        return pool

    try:
        start = time.monotonic()
        if calls is not None:  # by count: the warm-up's workers are joined, then the rest run
            limit[0] = calls // 5
            for t in run_workers():
                t.join()
            gc.collect()
            baseline = tracemalloc.get_traced_memory()[0]
            limit[0] = calls
            for t in run_workers():
                t.join()
        else:
            pool = run_workers()
            time.sleep(duration / 5)
            gc.collect()
            baseline = tracemalloc.get_traced_memory()[0]
            # at least 4/5 of the duration after the baseline: on a busy machine the warm-up's
            # sleep and the collection can overrun, which left no time to measure a leak in
            now = time.monotonic()
            time.sleep(max(start + duration - now, duration * 4 / 5))
            stop.set()
            for t in pool:
                t.join()
            del pool
        elapsed = time.monotonic() - start
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        stop.set()
        unsubscribe()
        if not tracing:
            tracemalloc.stop()
    threads_after, fds_after = threading.active_count(), _open_fds()
    leaks: list[str] = []
    if growth > memory_limit:
        leaks.append(f"memory grew by {growth:,} B after the warm-up (limit {memory_limit:,} B)")
    if threads_after > threads_before:
        leaks.append(f"{threads_after - threads_before} thread(s) still running after the run")
    if fds_before is not None and fds_after is not None and fds_after > fds_before:
        leaks.append(f"{fds_after - fds_before} file descriptor(s) left open")
    return SoakReport(
        duration=elapsed,
        calls=counts[0],
        successes=counts[1],
        failures=counts[2],
        rejections=counts[3],
        faults=chaos.errors,
        threads=(threads_before, threads_after),
        fds=(fds_before, fds_after),
        memory_growth=growth,
        leaks=tuple(leaks),
        transitions=dict(transitions),
    )


def _fleet_soak(
    *, fn: object, duration: float, workers: int, error_rate: float, latency: float | None,
    latency_rate: float, seed: int | str | bytes | None, processes: int, store: str | None,
    outages: int, store_restarts: int, worker_kills: int, max_rss_growth: float,
    converge_within: float,
) -> Any:  # fmt: skip
    e = Errors()
    if fn is not None:
        e.append(("fn", "a fleet soak runs its own workload in each process: pass fn=None"))
    e.positive("duration", duration)
    e.integer("workers", workers, minimum=1)
    e.integer("processes", processes, minimum=1)
    for key, value in (("outages", outages), ("store_restarts", store_restarts),
                       ("worker_kills", worker_kills)):  # fmt: skip
        e.integer(key, value, minimum=0)
    e.non_negative("max_rss_growth", max_rss_growth)
    e.positive("converge_within", converge_within)
    spec = store if store is not None else "sqlite"
    if not isinstance(spec, str) or not spec.startswith(("sqlite", "redis")):
        e.append(("store", f"must be 'sqlite[:PATH]', 'redis' or a redis:// URL, got {store!r}"))
    if not isinstance(seed, int):
        e.append(("seed", "a fleet soak takes an integer seed"))
    e.extend(
        FaultInjection.validate(error_rate=error_rate, latency=latency, latency_rate=latency_rate)
    )
    raise_if(e, "soak")
    from ._fleet import fleet_soak

    return fleet_soak(
        duration=duration, processes=processes, store=spec, threads=workers,
        error_rate=error_rate, latency=latency, latency_rate=latency_rate, seed=int(seed or 0),
        outages=outages, store_restarts=store_restarts, worker_kills=worker_kills,
        max_rss_growth=max_rss_growth, converge_within=converge_within,
    )  # fmt: skip


def cli(args: Any) -> int:
    """Run `resilience soak`: print the report; exit 1 when something leaked, 2 on bad
    arguments."""
    from ._errors import ConfigError

    try:
        report = soak(
            duration=args.duration,
            workers=args.workers,
            error_rate=args.error_rate,
            latency=args.latency,
            latency_rate=args.latency_rate,
            seed=args.seed,
            memory_limit=args.memory_limit,
            processes=getattr(args, "processes", 1),
            store=getattr(args, "store", None),
            outages=getattr(args, "outages", 2),
            store_restarts=getattr(args, "store_restarts", 1),
            worker_kills=getattr(args, "worker_kills", 1),
            max_rss_growth=getattr(args, "max_rss_growth", 0.05),
            converge_within=getattr(args, "converge_within", 2.0),
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1
