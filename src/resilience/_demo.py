"""`resilience demo`: the primitives working together against flaky HTTP services on 127.0.0.1.

Five acts. Each is a client protected by the library, run through phases against a local
service whose behaviour is switched at run time (up, flaky, down, or stopped for real):

1. `Retry` with backoff absorbs transient failures (the service fails ~30% of requests).
2. A `CircuitBreaker` opens during an outage, rejects calls fast, and closes after it.
3. A `FallbackChain` serves stale cached data (`DegradationLevel.CACHE_ONLY`) while the
   service is down, and live data again once it is back.
4. `Failover` across two servers: the primary is stopped, calls move to the secondary within
   the same call, and traffic returns to the primary once it is started again.
5. An `OfflineQueue` (a temporary SQLite file, deleted at the end) keeps writes during an
   outage and delivers them, most urgent first, once the service is back.

A phase sets what the service does and runs calls until its end condition holds (between a
minimum and a maximum time). After each act, checks say whether it showed what it should; the
exit status is 0 only when every check passed. The client side is stdlib (urllib) plus the
library; live counters come from `resilience.events`. `rich`, when importable and stdout is a
terminal, draws a live table.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import math
import os
import random
import shutil
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import resilience as rs

from . import events
from ._errors import CircuitOpenError

if TYPE_CHECKING:
    from .queue import Item

__all__ = ["run_demo"]


# --- the flaky service ----------------------------------------------------------------------


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


def _describe(exc: BaseException) -> str:
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


# --- acts and phases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """What the service does for a while, and when the phase has shown what it should."""

    name: str
    title: str
    service: str  # what the service does, as shown ("up", "down", "primary stopped", ...)
    min_seconds: float
    max_seconds: float
    done: Callable[[], bool] = lambda: False
    enter: Callable[[], None] | None = None


@dataclass
class Report:
    """What an act showed: one sentence, its figures, and the checks it had to pass."""

    what: str
    figures: str
    checks: list[tuple[str, bool]]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(passed for _, passed in self.checks)


class Act:
    """A client protected by the library, the phases it runs through, and what happened.

    Subclasses build their primitives in `__init__`, make one call in `step()`, read their
    live counters from events in `on_event()`, and judge the run in `report()`.
    """

    label = ""  # short name, for the summary
    title = ""
    columns: tuple[tuple[str, str], ...] = ()  # (header, tally key) shown live

    def __init__(self, service: FlakyService, fast: bool) -> None:
        self.service = service
        self.scale = 0.3 if fast else 1.0
        self.interval = 0.01 if fast else 0.025
        self.setup = ""
        self.phases: list[Phase] = []
        self.tallies: dict[str, Counter[str]] = {}
        self.current: Phase | None = None
        self.started = 0.0
        self.say: Callable[[str], None] = lambda text: None
        self.tick: Callable[[], None] = lambda: None

    @property
    def phase(self) -> str:
        return self.current.name if self.current else ""

    @property
    def tally(self) -> Counter[str]:
        return self.tallies[self.phase]

    def total(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for tally in self.tallies.values():
            total.update(tally)
        return total

    def mode(self, mode: str) -> Callable[[], None]:
        def enter() -> None:
            self.service.mode = mode

        return enter

    def step(self) -> None:
        raise NotImplementedError

    def state(self) -> tuple[str, str]:
        """The protected client's state in a few words, and a rich style for it."""
        return "", ""

    def detail(self) -> str:
        return ""

    def on_event(self, event: events.Event) -> None:
        pass

    def report(self) -> Report:
        raise NotImplementedError

    def close(self) -> None:
        pass


# --- act 1: retry --------------------------------------------------------------------------------


class RetryAct(Act):
    label = "retry"
    title = "Retry with backoff: transient failures absorbed"
    columns = (("calls", "calls"), ("served", "ok"), ("failed", "failed"), ("retries", "retries"))

    def __init__(self, service: FlakyService, fast: bool) -> None:
        super().__init__(service, fast)
        self.retry = rs.Retry(
            max_attempts=5,
            backoff=rs.Backoff.exponential(initial=0.02, multiplier=2.0, maximum=0.2),
            name="demo-retry",
        )
        self.setup = (
            "rs.Retry(max_attempts=5, backoff=rs.Backoff.exponential(initial=0.02, "
            "multiplier=2.0, maximum=0.2)) around each GET"
        )
        self.retries = 0
        self.last_attempts = 0
        self.most_attempts = 0
        self.waited = 0.0
        self.requests0 = self.failures0 = 0
        s = self.scale
        self.phases = [
            Phase(
                "flaky",
                "the service fails ~30% of requests (503s, dropped connections); "
                "the retries absorb them",
                "flaky (~30% fail)",
                2.0 * s,
                8.0 * s,
                lambda: self.tally["calls"] >= 15,
                self._enter,
            )
        ]

    def _enter(self) -> None:
        self.requests0, self.failures0 = self.service.requests, self.service.failures
        self.service.mode = "flaky"

    def step(self) -> None:
        tally = self.tally
        before = self.retries
        try:
            self.retry.call(fetch, self.service.quote_url())
        except Exception as exc:
            tally["failed"] += 1
            self.say(f"a call failed after {self.retries - before + 1} attempts: {_describe(exc)}")
        else:
            tally["ok"] += 1
        tally["calls"] += 1
        self.last_attempts = self.retries - before + 1
        self.most_attempts = max(self.most_attempts, self.last_attempts)

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.RetryAttempted) and event.operation == "demo-retry":
            self.retries += 1
            self.waited += event.delay
            self.tally["retries"] += 1
            if self.retries <= 3:
                self.say(
                    f"retry: attempt {event.attempt} failed ({event.error}); "
                    f"next attempt in {event.delay * 1e3:.0f} ms"
                )
            elif self.retries == 4:
                self.say("(further retries are counted, not printed)")

    def _service_figures(self) -> tuple[int, int]:
        return (self.service.requests - self.requests0, self.service.failures - self.failures0)

    def state(self) -> tuple[str, str]:
        n = self.last_attempts
        return f"last call: {n} attempt{'s' if n != 1 else ''}", "green" if n <= 1 else "yellow"

    def detail(self) -> str:
        requests, failures = self._service_figures()
        return f"service: {failures} of {requests} requests failed"

    def report(self) -> Report:
        total = self.total()
        calls, ok = total["calls"], total["ok"]
        requests, failures = self._service_figures()
        rate = failures / requests if requests else 0.0
        return Report(
            f"the service failed {failures} of {requests} requests ({rate:.0%}); "
            f"{ok} of {calls} calls were served",
            f"{calls} calls, {ok} served, {self.retries} retries "
            f"(backoff waits {self.waited:.2f} s in all), at most {self.most_attempts} "
            "attempts for one call",
            [
                (f"every call was served ({ok} of {calls})", calls > 0 and ok == calls),
                (f"the service did fail ({failures} of {requests} requests)", failures > 0),
                (
                    f"each failed request was retried ({self.retries} retries)",
                    self.retries >= failures > 0,
                ),
            ],
        )


# --- act 2: circuit breaker --------------------------------------------------------------------


class BreakerAct(Act):
    label = "circuit breaker"
    title = "Circuit breaker: stop calling what is failing, probe, recover"
    columns = (("calls", "calls"), ("ok", "ok"), ("failed", "failed"), ("rejected", "rejected"))

    def __init__(self, service: FlakyService, fast: bool) -> None:
        super().__init__(service, fast)
        s = self.scale
        open_duration = round(1.0 * s, 2)
        self.breaker = rs.CircuitBreaker(
            "demo-quotes",
            failure_rate_threshold=0.5,
            minimum_calls=6,
            window=rs.CountWindow(10),
            open_duration=open_duration,
            half_open_calls=3,
        )
        self.setup = (
            "rs.CircuitBreaker('demo-quotes', failure_rate_threshold=0.5, minimum_calls=6, "
            f"window=rs.CountWindow(10), open_duration={open_duration:g}, half_open_calls=3)"
        )
        self.transitions: list[tuple[float, str, str, str]] = []
        self.seconds = {"rejected": 0.0, "failed": 0.0}
        self.phases = [
            Phase(
                "healthy",
                "service up: calls go through",
                "up",
                1.2 * s,
                1.2 * s,
                enter=self.mode("up"),
            ),
            Phase(
                "outage",
                "service down (503s, dropped connections): the breaker opens and rejects fast",
                "down",
                2.2 * s,
                8.0 * s,
                lambda: self.saw("closed", "open") and self.tally["rejected"] >= 10,
                self.mode("down"),
            ),
            Phase(
                "recovery",
                "service back: after open_duration, half-open trial calls, then closed",
                "up",
                open_duration + 0.6 * s,
                10.0 * s,
                lambda: self.saw("half_open", "closed") and self.breaker.state.value == "closed",
                self.mode("up"),
            ),
        ]

    def saw(self, from_state: str, to_state: str) -> bool:
        return any(t[1] == from_state and t[2] == to_state for t in self.transitions)

    def step(self) -> None:
        tally = self.tally
        t0 = time.perf_counter()
        try:
            self.breaker.call(fetch, self.service.quote_url())
        except CircuitOpenError:
            tally["rejected"] += 1
            self.seconds["rejected"] += time.perf_counter() - t0
        except Exception:
            tally["failed"] += 1
            self.seconds["failed"] += time.perf_counter() - t0
        else:
            tally["ok"] += 1
        tally["calls"] += 1

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.StateTransition) and event.operation == "demo-quotes":
            at = time.monotonic() - self.started
            self.transitions.append((at, event.from_state, event.to_state, event.reason))
            why = f" ({event.reason})" if event.reason else ""
            self.say(f"breaker {event.from_state} -> {event.to_state}{why}")

    def state(self) -> tuple[str, str]:
        state = str(self.breaker.state.value)
        return f"breaker {state}", {"closed": "green", "open": "red"}.get(state, "yellow")

    def detail(self) -> str:
        snap = self.breaker.snapshot()
        text = f"window: {snap['calls']} calls, failure rate {snap['failure_rate']:.0%}"
        remaining = snap.get("remaining", 0.0)
        if str(snap["state"]) == "open" and isinstance(remaining, float):
            text += f"; next trial in {remaining:.2f} s"
        return text

    def report(self) -> Report:
        total = self.total()
        rejected, failed = total["rejected"], total["failed"]
        path = " -> ".join(["closed", *(to for _, _, to, _ in self.transitions)])
        figures = (
            f"{total['calls']} calls: {total['ok']} ok, {failed} failed, {rejected} rejected; "
            f"transitions: {path}"
        )
        if rejected and failed:
            per_rejection = self.seconds["rejected"] / rejected
            per_failure = self.seconds["failed"] / failed
            figures += (
                f"; a rejection took {per_rejection * 1e6:.0f} us on average, a call that "
                f"reached the failing service {per_failure * 1e3:.1f} ms "
                f"({per_failure / max(per_rejection, 1e-9):.0f}x)"
            )
        state = str(self.breaker.state.value)
        closed = self.saw("half_open", "closed") and state == "closed"
        return Report(
            f"opened during the outage, rejected {rejected} calls without calling the service, "
            f"and closed again after the recovery (final state: {state})",
            figures,
            [
                ("it opened during the outage", self.saw("closed", "open")),
                (
                    f"while open it rejected calls ({rejected}) instead of calling the failing "
                    f"service ({failed})",
                    rejected >= 10 and failed < rejected,
                ),
                ("half-open trial calls closed it after the recovery", closed),
            ],
        )


# --- act 3: fallback chain -------------------------------------------------------------------

SYMBOLS = ("ACME", "GLOBEX", "INITECH")


class FallbackAct(Act):
    label = "fallback"
    title = "Fallback chain: stale cached data while the service is down"
    columns = (
        ("calls", "calls"),
        ("FULL", "full"),
        ("CACHE_ONLY", "cached"),
        ("default", "default"),
        ("unanswered", "failed"),
    )

    def __init__(self, service: FlakyService, fast: bool) -> None:
        super().__init__(service, fast)
        s = self.scale
        self.breaker = rs.CircuitBreaker(
            "demo-fallback-live",
            failure_rate_threshold=0.5,
            minimum_calls=4,
            window=rs.CountWindow(8),
            open_duration=round(0.5 * s, 2),
            half_open_calls=1,
        )

        def live(symbol: str) -> dict[str, Any]:
            quote: dict[str, Any] = self.breaker.call(fetch, service.quote_url(symbol))
            return quote

        self.chain = rs.FallbackChain(
            rs.Step(live, name="live"),
            rs.StaleCache(max_age=60.0),
            rs.Default(lambda symbol: {"symbol": symbol, "price": None}),
            name="demo-fallback",
        )
        self.setup = (
            "rs.FallbackChain(rs.Step(live), rs.StaleCache(max_age=60.0), rs.Default(...)); "
            "live() is a GET behind its own CircuitBreaker"
        )
        self.calls = 0
        self.level: rs.DegradationLevel | None = None
        self.source = ""
        self.age = 0.0
        self.oldest = 0.0
        self.notices = 0
        self.opened = False
        self.phases = [
            Phase(
                "warm",
                "service up: live answers (DegradationLevel.FULL), each one kept by the StaleCache",
                "up",
                0.8 * s,
                6.0 * s,
                lambda: self.tally["full"] >= 2 * len(SYMBOLS),
                self.mode("up"),
            ),
            Phase(
                "outage",
                "service down: the chain serves the last good answer (CACHE_ONLY)",
                "down",
                1.5 * s,
                8.0 * s,
                lambda: self.opened and self.tally["cached"] >= 10,
                self.mode("down"),
            ),
            Phase(
                "recovery",
                "service back: live answers (FULL) again once the breaker lets calls through",
                "up",
                0.2 * s,
                8.0 * s,
                lambda: self.tally["full"] >= 3,
                self.mode("up"),
            ),
        ]

    def step(self) -> None:
        tally = self.tally
        symbol = SYMBOLS[self.calls % len(SYMBOLS)]
        self.calls += 1
        tally["calls"] += 1
        try:
            served = self.chain.execute(symbol)
        except Exception as exc:
            tally["failed"] += 1
            self.say(f"fallback: no answer at all: {_describe(exc)}")
            return
        level = served.level
        if level is rs.DegradationLevel.FULL:
            tally["full"] += 1
        elif level is rs.DegradationLevel.CACHE_ONLY:
            tally["cached"] += 1
            self.age = time.time() - float(served.value["at"])
            self.oldest = max(self.oldest, self.age)
            if served.errors and isinstance(served.errors[0], CircuitOpenError):
                tally["skipped"] += 1  # answered without a request to the dead service
        else:
            tally["default"] += 1
        if level is not self.level:
            old, self.level, self.source = self.level, level, served.source
            if level is rs.DegradationLevel.CACHE_ONLY:
                why = _describe(served.errors[0]) if served.errors else "?"
                self.say(
                    f"fallback: using cached data (DegradationLevel.{level.name}, "
                    f"{self.age:.1f} s old); the live step failed: {why}"
                )
            elif level is rs.DegradationLevel.FULL and old is not None:
                self.say(f"fallback: live data again (DegradationLevel.{level.name})")
            elif level is not rs.DegradationLevel.FULL:
                self.say(
                    "fallback: no cached answer, serving the default "
                    f"(DegradationLevel.{level.name})"
                )

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.FallbackServed) and event.operation == "demo-fallback":
            self.notices += 1  # what a UI listens to, to show "using cached data"
        elif isinstance(event, events.StateTransition) and event.operation == "demo-fallback-live":
            self.opened = self.opened or event.to_state == "open"
            self.say(f"the live step's breaker {event.from_state} -> {event.to_state}")

    def state(self) -> tuple[str, str]:
        if self.level is None:
            return "", ""
        style = {"FULL": "green", "CACHE_ONLY": "yellow"}.get(self.level.name, "red")
        return f"{self.level.name} from {self.source}", style

    def detail(self) -> str:
        text = f"live step's breaker {self.breaker.state.value}"
        if self.level is rs.DegradationLevel.CACHE_ONLY:
            text += f"; cached answer {self.age:.1f} s old"
        return text

    def report(self) -> Report:
        total = self.total()
        outage = self.tallies.get("outage", Counter())
        recovery = self.tallies.get("recovery", Counter())
        return Report(
            f"while the service was down, {outage['cached']} calls got cached data "
            f"(CACHE_ONLY, up to {self.oldest:.1f} s old) instead of an error; "
            "live data (FULL) again after it came back",
            f"{total['calls']} calls: FULL {total['full']}, CACHE_ONLY {total['cached']} "
            f"({total['skipped']} of them without calling the dead service: breaker open), "
            f"default {total['default']}, unanswered {total['failed']}; "
            f"{self.notices} FallbackServed events",
            [
                (
                    f"every call was answered ({total['calls'] - total['failed']} of "
                    f"{total['calls']})",
                    total["calls"] > 0 and total["failed"] == 0,
                ),
                (
                    f"during the outage every answer was cached data ({outage['cached']} of "
                    f"{outage['calls']} CACHE_ONLY)",
                    outage["calls"] > 0 and outage["cached"] == outage["calls"],
                ),
                (
                    f"live answers (FULL) again after the recovery ({recovery['full']})",
                    recovery["full"] > 0 and self.level is rs.DegradationLevel.FULL,
                ),
            ],
        )


# --- act 4: failover -------------------------------------------------------------------------


class FailoverAct(Act):
    label = "failover"
    title = "Failover: a second server takes over, then traffic returns to the first"
    columns = (
        ("calls", "calls"),
        ("primary", "primary"),
        ("secondary", "secondary"),
        ("moved", "moved"),
        ("lost", "lost"),
    )

    def __init__(self, service: FlakyService, fast: bool) -> None:
        super().__init__(service, fast)
        s = self.scale
        self._stack = contextlib.ExitStack()
        try:
            self.primary = self._stack.enter_context(FlakyService("primary"))
            self.secondary = self._stack.enter_context(FlakyService("secondary"))
        except BaseException:
            self._stack.close()
            raise
        servers = {"primary": self.primary, "secondary": self.secondary}
        self.probes: Counter[bool] = Counter()

        def healthy(tier: rs.Tier) -> bool:
            try:
                fetch(servers[tier.name].health_url, timeout=0.5)
            except Exception as exc:
                if not self.probes[False]:
                    self.say(f"health check of {tier.name}: failed ({_describe(exc)})")
                self.probes[False] += 1
                return False
            self.probes[True] += 1
            self.say(f"health check of {tier.name}: passed")
            return True

        probe_interval = round(0.4 * s, 2)
        self.failover = rs.Failover(
            [
                rs.Tier("primary", functools.partial(fetch, self.primary.quote_url())),
                rs.Tier("secondary", functools.partial(fetch, self.secondary.quote_url())),
            ],
            name="demo-failover",
            health_check=healthy,
            probe_interval=probe_interval,
            breaker={
                "failure_rate_threshold": 0.5,
                "minimum_calls": 3,
                "window": rs.CountWindow(6),
            },
        )
        self.setup = (
            "rs.Failover([rs.Tier('primary', ...), rs.Tier('secondary', ...)], "
            f"health_check=..., probe_interval={probe_interval:g}, breaker=...) over "
            f"{self.primary.base} and {self.secondary.base}"
        )
        self.switches: list[tuple[str, str]] = []
        self.phases = [
            Phase(
                "both-up",
                "both servers up: the primary serves every call",
                "both up",
                0.6 * s,
                4.0 * s,
                lambda: self.tally["primary"] >= 5,
            ),
            Phase(
                "primary-stopped",
                "the primary server is stopped for real (its port closed): "
                "calls move to the secondary within the same call",
                "primary stopped",
                1.2 * s,
                8.0 * s,
                lambda: (
                    ("primary", "secondary") in self.switches
                    and self.tally["secondary"] >= 5
                    and self.probes[False] > 0
                ),
                self._stop_primary,
            ),
            Phase(
                "primary-back",
                "the primary is started again on the same port: its health check passes "
                "and traffic returns to it",
                "primary back",
                0.3 * s,
                8.0 * s,
                lambda: ("secondary", "primary") in self.switches and self.tally["primary"] >= 5,
                self._start_primary,
            ),
        ]

    def _stop_primary(self) -> None:
        self.primary.stop()
        self.say(f"primary server stopped: port {self.primary.port} closed")

    def _start_primary(self) -> None:
        self.primary.start()
        self.say(f"primary server started again on port {self.primary.port}")

    def step(self) -> None:
        tally = self.tally
        tally["calls"] += 1
        try:
            served = self.failover.execute()
        except Exception as exc:
            tally["lost"] += 1
            self.say(f"a call was lost: {_describe(exc)}")
            return
        tally[served.source] += 1
        tried_primary = served.errors and not isinstance(served.errors[0], CircuitOpenError)
        if served.source != "primary" and tried_primary:
            tally["moved"] += 1
            if sum(t["moved"] for t in self.tallies.values()) == 1:
                self.say(
                    f"a call to the primary failed ({_describe(served.errors[0])}) and was "
                    f"served by the {served.source} in the same call"
                )

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.FailoverSwitched) and event.operation == "demo-failover":
            self.switches.append((event.from_tier, event.to_tier))
            self.say(f"failover {event.from_tier} -> {event.to_tier} ({event.reason})")
        elif isinstance(event, events.TierRecovered) and event.operation == "demo-failover":
            self.say(f"tier {event.tier} recovered")
        elif isinstance(event, events.StateTransition) and event.operation.startswith(
            "demo-failover/"
        ):
            tier = event.operation.partition("/")[2]
            self.say(f"{tier}'s breaker {event.from_state} -> {event.to_state}")

    def state(self) -> tuple[str, str]:
        active = self.failover.active_tier
        return f"active tier: {active}", "green" if active == "primary" else "yellow"

    def detail(self) -> str:
        parts = []
        for name, status in self.failover.tiers_status().items():
            held = " (held down)" if status["held_down"] else ""
            parts.append(f"{name} {status['state']}{held}")
        return ", ".join(parts)

    def report(self) -> Report:
        total = self.total()
        stopped = self.tallies.get("primary-stopped", Counter())
        back = self.tallies.get("primary-back", Counter())
        path = " -> ".join(["primary", *(to for _, to in self.switches)])
        returned = (
            ("secondary", "primary") in self.switches
            and back["primary"] > 0
            and self.failover.active_tier == "primary"
        )
        return Report(
            f"the primary was stopped: {total['moved']} calls moved to the secondary within "
            "the same call, then the secondary served; after the restart the primary's health "
            "check passed and traffic returned to it",
            f"{total['calls']} calls: primary {total['primary']}, secondary "
            f"{total['secondary']} ({total['moved']} moved mid-call), lost {total['lost']}; "
            f"health checks {self.probes[False]} failed, {self.probes[True]} passed; "
            f"active tier: {path}",
            [
                (
                    f"no call was lost ({total['lost']} of {total['calls']})",
                    total["calls"] > 0 and total["lost"] == 0,
                ),
                (
                    f"calls moved to the secondary within the same call ({total['moved']})",
                    total["moved"] > 0,
                ),
                (
                    f"the secondary served while the primary was stopped ({stopped['secondary']})",
                    stopped["secondary"] > 0 and ("primary", "secondary") in self.switches,
                ),
                (f"traffic returned to the primary ({back['primary']} calls)", returned),
            ],
        )

    def close(self) -> None:
        self._stack.close()


# --- act 5: offline queue ----------------------------------------------------------------------

WRITES = (
    ("payment", "CRITICAL", 2),
    ("message", "HIGH", 3),
    ("profile update", "NORMAL", 4),
    ("page view", "LOW", 5),
)


class QueueAct(Act):
    label = "offline queue"
    title = "Offline queue: keep writes during an outage, deliver the most urgent first"
    columns = (("writes", "writes"), ("queued", "queued"), ("delivered", "delivered"))

    def __init__(self, service: FlakyService, fast: bool) -> None:
        super().__init__(service, fast)
        s = self.scale
        self.dir = tempfile.mkdtemp(prefix="resilience-demo-")
        self.path = os.path.join(self.dir, "outbox.db")
        try:
            self.queue = rs.OfflineQueue(self.path, max_attempts=5, name="demo-outbox")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.setup = f"rs.OfflineQueue({self.path!r}, max_attempts=5): a temporary SQLite file"
        self.target = 16 if fast else 20
        self.rate = 200.0 if fast else 40.0
        self.interval = 0.01 if fast else 0.04
        self.rng = random.Random(11)
        self.written: list[int] = []
        self.queued: list[int] = []
        self.order: list[str] = []
        self.depth: dict[str, int] = {}
        self.received0 = 0
        self.remaining = -1
        self.removed = False
        self.drains: list[Any] = []
        self.phases = [
            Phase(
                "outage",
                "service down: each write fails and is queued durably, with its priority",
                "down",
                0.4 * s,
                10.0 * s,
                lambda: self.tally["queued"] >= self.target,
                self._enter_outage,
            ),
            Phase(
                "back",
                f"service back: drain(rate={self.rate:g}) delivers the queued writes, "
                "CRITICAL first, FIFO within a priority",
                "up",
                0.0,
                10.0 * s,
                lambda: self.remaining == 0,
                self.mode("up"),
            ),
        ]

    def _enter_outage(self) -> None:
        self.received0 = len(self.service.received)
        self.service.mode = "down"

    def step(self) -> None:
        if self.phase == "outage":
            self._write()
        else:
            self._drain()

    def _write(self) -> None:
        n = len(self.written) + 1
        kind, priority, _ = self.rng.choices(WRITES, weights=[w for *_, w in WRITES])[0]
        payload = {"id": n, "kind": kind, "priority": priority}
        self.written.append(n)
        self.tally["writes"] += 1
        try:
            post(self.service.write_url, payload, timeout=1.0)
        except Exception as exc:
            seq = self.queue.put(payload, priority=rs.Priority[priority], key=f"write-{n}")
            self.queued.append(n)
            if len(self.queued) <= 3:
                self.say(
                    f"write {n} ({kind}) failed ({_describe(exc)}): queued as seq {seq}, {priority}"
                )
            elif len(self.queued) == 4:
                self.say("(further writes are queued the same way)")
        else:
            self.tally["sent"] += 1

    def _drain(self) -> None:
        def send(item: Item) -> None:
            post(self.service.write_url, item.payload, timeout=1.0)
            self.order.append(item.priority.name)
            self.tally["delivered"] += 1
            self.tick()

        report = self.queue.drain(send, batch=8, rate=self.rate)
        self.drains.append(report)
        self.remaining = report.remaining
        order = "".join(p[0] for p in self.order)
        self.say(
            f"drain: {report.delivered} delivered in {report.duration:.2f} s, "
            f"{report.remaining} left; delivery order {order} (C=CRITICAL H=HIGH N=NORMAL L=LOW)"
        )

    def on_event(self, event: events.Event) -> None:
        if event.operation != "demo-outbox":
            return
        if isinstance(event, events.QueueEnqueued):
            self.tally["queued"] += event.count
        elif isinstance(event, events.QueueDepth):
            self.depth = dict(event.depth)

    def state(self) -> tuple[str, str]:
        depth = sum(self.depth.values())
        return f"queue depth {depth}", "yellow" if depth else "green"

    def detail(self) -> str:
        return ", ".join(f"{name} {n}" for name, n in self.depth.items() if n)

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                if self.remaining != 0:
                    self.remaining = len(self.queue)
            self.queue.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.removed = not os.path.exists(self.dir)

    def report(self) -> Report:
        received = [r for r in self.service.received[self.received0 :] if isinstance(r, dict)]
        ids = [int(r["id"]) for r in received]
        ranks = [rs.Priority[str(r["priority"])] for r in received]
        in_order = all(
            (ranks[i] > ranks[i + 1]) or (ranks[i] == ranks[i + 1] and ids[i] < ids[i + 1])
            for i in range(len(received) - 1)
        )
        by_priority = Counter(str(r["priority"]) for r in received)
        mix = ", ".join(f"{name} {by_priority[name]}" for _, name, _ in WRITES)
        order = "".join(p[0] for p in self.order)
        once = sorted(ids) == sorted(self.queued) and len(set(ids)) == len(ids)
        return Report(
            f"{len(self.queued)} writes failed during the outage and were queued in SQLite; "
            f"once the service was back drain() delivered them, most urgent first",
            f"queued {len(self.queued)} of {len(self.written)} writes; delivered {len(ids)} "
            f"({mix}) in the order {order}; left {self.remaining}; "
            f"{os.path.basename(self.path)} "
            + ("deleted" if self.removed else f"NOT deleted: {self.dir}"),
            [
                (
                    f"every queued write was delivered exactly once ({len(ids)} of "
                    f"{len(self.queued)})",
                    bool(self.queued) and once,
                ),
                ("they were delivered in priority order, FIFO within a priority", in_order),
                (
                    "the queue was empty at the end and its temporary file is deleted",
                    self.remaining == 0 and self.removed,
                ),
            ],
        )


ACTS: tuple[type[Act], ...] = (RetryAct, BreakerAct, FallbackAct, FailoverAct, QueueAct)


# --- output ---------------------------------------------------------------------------------------


class _Plain:
    """Plain text lines: one per phase and per notable event, a status line every ~second."""

    def __init__(self, out: TextIO, fast: bool) -> None:
        self.out = out
        self.every = 0.5 if fast else 1.0
        self._last = 0.0

    def __enter__(self) -> _Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def update(self, act: Act, now: float, force: bool = False) -> None:
        if force or now - self._last >= self.every:
            self._last = now
            self.line("    " + _status(act))


class _Rich:
    """A rich Live table, refreshed as calls happen; event lines print above it."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.live = Live(console=self.console, refresh_per_second=12, transient=False)
        self._last = 0.0

    def __enter__(self) -> _Rich:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def line(self, text: str) -> None:
        self.live.console.print(text, markup=False, highlight=False)

    def update(self, act: Act, now: float, force: bool = False) -> None:
        if not force and now - self._last < 0.05:
            return
        self._last = now
        from rich.table import Table
        from rich.text import Text

        text, style = act.state()
        table = Table(title=act.title, title_justify="left")
        table.add_column("phase")
        table.add_column("service")
        table.add_column("state")
        for header, _ in act.columns:
            table.add_column(header, justify="right")
        for phase in act.phases:
            tally = act.tallies.get(phase.name)
            if tally is None:
                continue
            current = phase is act.current
            table.add_row(
                phase.name,
                Text(phase.service, style="bold" if current else ""),
                Text(text, style=style) if current else "",
                *(str(tally[key]) for _, key in act.columns),
            )
        table.caption = act.detail()
        self.live.update(table)


def _status(act: Act) -> str:
    tally = act.tally
    text, _ = act.state()
    service = act.current.service if act.current else ""
    counts = " ".join(f"{header} {tally[key]:>3}" for header, key in act.columns)
    detail = act.detail()
    return f"service {service:<17} | {text:<24} | {counts}" + (f" | {detail}" if detail else "")


# --- running ------------------------------------------------------------------------------------


def _run_act(act: Act, view: _Plain | _Rich) -> None:
    act.started = time.monotonic()
    act.say = lambda text: view.line(f"  [{time.monotonic() - act.started:5.2f} s] {text}")
    act.tick = lambda: view.update(act, time.monotonic())
    unsubscribe = events.subscribe(act.on_event)
    try:
        for phase in act.phases:
            act.current = phase
            act.tallies[phase.name] = Counter()
            view.line(f"-- {phase.name}: {phase.title}")
            if phase.enter is not None:
                phase.enter()
            start = time.monotonic()
            while True:
                elapsed = time.monotonic() - start
                if elapsed >= phase.max_seconds or (elapsed >= phase.min_seconds and phase.done()):
                    break
                act.step()
                view.update(act, time.monotonic())
                time.sleep(act.interval)
            view.update(act, time.monotonic(), force=True)
    finally:
        unsubscribe()


def _wants_rich(plain: bool, out: TextIO) -> bool:
    if plain or not out.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def run_demo(
    fast: bool = False,
    plain: bool = False,
    *,
    out: TextIO | None = None,
    acts: Sequence[str] | None = None,
) -> int:
    """Run the demo; returns 0 when every act showed what it should, 1 otherwise.

    Args:
        fast: shorter phases (about 4 s in all instead of about 15 s), for tests.
        plain: plain text lines even on a terminal with rich installed.
        out: where the output goes (default: sys.stdout).
        acts: run only the acts with these labels ("retry", "circuit breaker", "fallback",
            "failover", "offline queue"); default: all five.
    """
    stream = out if out is not None else sys.stdout
    chosen = [cls for cls in ACTS if acts is None or cls.label in acts]
    try:
        return _run(chosen, fast, plain, stream)
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=stream, flush=True)
        return 130


def _run(chosen: list[type[Act]], fast: bool, plain: bool, stream: TextIO) -> int:
    started = time.monotonic()
    rich = _wants_rich(plain, stream)
    results: list[tuple[int, type[Act], Report]] = []

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    with FlakyService("quotes") as service:
        say(f"flaky service listening on {service.base}")
        for number, cls in enumerate(chosen, 1):
            say(f"== {number}/{len(chosen)} {cls.title}")
            report = _play(cls, service, fast, rich, stream, say)
            say(f"  => {'ok' if report.ok else 'FAILED'}: {report.what}")
            for line in textwrap.wrap(report.figures, 92):
                say(f"     {line}")
            results.append((number, cls, report))
    elapsed = time.monotonic() - started
    if rich:
        _summary_rich(results, elapsed, stream)
    else:
        for line in _summary_plain(results, elapsed):
            say(line)
    return 0 if results and all(report.ok for _, _, report in results) else 1


def _play(
    cls: type[Act],
    service: FlakyService,
    fast: bool,
    rich: bool,
    stream: TextIO,
    say: Callable[[str], None],
) -> Report:
    """Build and run one act; an act that could not run reports it instead of stopping all."""
    service.mode = "up"
    try:
        act = cls(service, fast)
    except Exception as exc:
        return Report(f"could not start: {exc!r}", "", [("the act started", False)])
    try:
        say(f"   {act.setup}")
        view: _Plain | _Rich = _Rich(stream) if rich else _Plain(stream, fast)
        with view:
            _run_act(act, view)
    except Exception as exc:
        return Report(f"stopped by an unexpected error: {exc!r}", "", [("the act ran", False)])
    finally:
        act.close()  # servers, files: also on Ctrl-C
    return act.report()


def _summary_lines(results: list[tuple[int, type[Act], Report]], elapsed: float) -> str:
    acts_ok = sum(report.ok for _, _, report in results)
    checks = [passed for _, _, report in results for _, passed in report.checks]
    return (
        f"demo finished in {elapsed:.1f} s: {acts_ok} of {len(results)} acts showed what they "
        f"should ({sum(checks)} of {len(checks)} checks passed)"
    )


def _summary_plain(results: list[tuple[int, type[Act], Report]], elapsed: float) -> list[str]:
    lines = ["", "== Summary", f" {'#':<2} {'act':<16} {'result':<7} what happened / figures"]
    indent = " " * 29
    for number, cls, report in results:
        text = textwrap.wrap(report.what, 72) + textwrap.wrap(report.figures, 72)
        result = "ok" if report.ok else "FAILED"
        lines.append(f" {number:<2} {cls.label:<16} {result:<7} {text[0] if text else ''}")
        lines.extend(indent + line for line in text[1:])
    lines.append("")
    lines.append("checks:")
    for number, cls, report in results:
        for description, passed in report.checks:
            lines.append(f"  [{'ok' if passed else 'FAIL'}] {number} {cls.label}: {description}")
    lines.append(_summary_lines(results, elapsed))
    return lines


def _summary_rich(
    results: list[tuple[int, type[Act], Report]], elapsed: float, stream: TextIO
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream)
    utf = console.encoding.lower().startswith("utf")
    marks = ("✓ ", "✗ ") if utf else ("ok ", "FAIL ")
    table = Table(title="Summary", title_justify="left", show_lines=True)
    for column in ("#", "act", "result", "what happened", "figures", "checks"):
        table.add_column(column)
    for number, cls, report in results:
        checks = Text()
        for i, (description, passed) in enumerate(report.checks):
            if i:
                checks.append("\n")
            checks.append(marks[0] if passed else marks[1], style="green" if passed else "bold red")
            checks.append(description)
        table.add_row(
            str(number),
            cls.label,
            Text("ok", style="green") if report.ok else Text("FAILED", style="bold red"),
            Text(report.what),
            Text(report.figures),
            checks,
        )
    console.print(table)
    console.print(_summary_lines(results, elapsed), markup=False, highlight=False)
