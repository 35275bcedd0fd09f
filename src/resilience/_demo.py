"""`resilience demo`: the primitives at work against a flaky HTTP service on 127.0.0.1.

The demo is a list of acts; an act is a protected client and a list of phases; a phase sets
what the service does ("up" or "down") and runs calls until its end condition holds (between
a minimum and a maximum time). Everything is stdlib (http.server, urllib.request) plus the
library itself; `rich`, when importable and stdout is a terminal, draws a live table.

Later acts (retry, fallback, failover, the offline queue) append to `build_acts()`.
"""

from __future__ import annotations

import http.server
import json
import math
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import events
from ._errors import CircuitOpenError

__all__ = ["run_demo"]


# --- the flaky service ----------------------------------------------------------------------


class FlakyService:
    """A local HTTP service whose behaviour is switched at run time.

    "up": 200 with a small JSON body. "down": every other request gets 503 with
    `Retry-After: 1`, the others have their connection dropped without a response.
    """

    def __init__(self) -> None:
        self.mode = "up"
        self.requests = 0
        self._lock = threading.Lock()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                with service._lock:
                    service.requests += 1
                    n = service.requests
                    mode = service.mode
                if mode == "up":
                    body = json.dumps({"ok": True, "request": n}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif n % 2:
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.close_connection = True  # drop it: the client sees a reset/EOF

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the demo prints its own lines

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/quote"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FlakyService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def fetch(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET `url` and decode its JSON body (urllib: an HTTPError for 4xx/5xx)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        exc.close()  # the error carries the open response; .status and .headers stay readable
        raise


# --- acts and phases --------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts for one phase (or the whole act)."""

    calls: int = 0
    successes: int = 0
    failures: int = 0
    rejections: int = 0
    failure_seconds: float = 0.0
    rejection_seconds: float = 0.0

    def add(self, other: Tally) -> None:
        self.calls += other.calls
        self.successes += other.successes
        self.failures += other.failures
        self.rejections += other.rejections
        self.failure_seconds += other.failure_seconds
        self.rejection_seconds += other.rejection_seconds


@dataclass(frozen=True)
class Phase:
    """What the service does for a while, and when the phase has shown what it should."""

    name: str
    title: str
    service: str  # "up" | "down"
    min_seconds: float
    max_seconds: float
    done: Callable[[Act], bool] = lambda act: False


@dataclass
class Act:
    """A protected client, the phases to run it through, and what happened."""

    title: str
    subject: Any  # the policy being shown (it has .name, .state and .snapshot())
    call: Callable[[], object]
    phases: list[Phase]
    transitions: list[tuple[float, str, str, str]] = field(default_factory=list)
    tallies: dict[str, Tally] = field(default_factory=dict)
    phase: str = ""
    started: float = 0.0

    def saw(self, from_state: str, to_state: str) -> bool:
        return any(t[1] == from_state and t[2] == to_state for t in self.transitions)

    def total(self) -> Tally:
        total = Tally()
        for tally in self.tallies.values():
            total.add(tally)
        return total


def build_acts(url: str, fast: bool) -> list[Act]:
    """The demo's acts, in order. Timings are short; `fast` shortens them further."""
    import resilience as rs

    scale = 0.35 if fast else 1.0
    open_duration = 1.0 * scale
    breaker = rs.CircuitBreaker(
        "demo-quotes",
        failure_rate_threshold=0.5,
        minimum_calls=6,
        window=rs.CountWindow(10),
        open_duration=open_duration,
        half_open_calls=3,
    )

    def quote() -> object:
        return breaker.call(fetch, url)

    def has_opened(act: Act) -> bool:
        return act.saw("closed", "open") and act.tallies["outage"].rejections >= 10

    def has_closed(act: Act) -> bool:
        return act.saw("half_open", "closed") and str(act.subject.state) == "closed"

    return [
        Act(
            title="Circuit breaker: stop calling what is failing, probe, recover",
            subject=breaker,
            call=quote,
            phases=[
                Phase("healthy", "service up: calls go through", "up", 1.2 * scale, 1.2 * scale),
                Phase(
                    "outage",
                    "service down (503s, dropped connections): the breaker opens and rejects fast",
                    "down",
                    2.2 * scale,
                    8.0 * scale,
                    has_opened,
                ),
                Phase(
                    "recovery",
                    "service back: after open_duration, half-open trial calls, then closed",
                    "up",
                    open_duration + 0.6 * scale,
                    10.0 * scale,
                    has_closed,
                ),
            ],
        )
    ]


# --- output -------------------------------------------------------------------------------------


class _Plain:
    """Plain text lines: one per phase, one per state transition, a status every ~second."""

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

    def update(self, act: Act, service: FlakyService, now: float, force: bool = False) -> None:
        if force or now - self._last >= self.every:
            self._last = now
            self.line("    " + _status(act, service))


class _Rich:
    """A rich Live table, refreshed as calls happen; transitions print above it."""

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

    def update(self, act: Act, service: FlakyService, now: float, force: bool = False) -> None:
        if not force and now - self._last < 0.05:
            return
        self._last = now
        from rich.table import Table

        snap = act.subject.snapshot()
        state = str(snap["state"])
        colour = {"closed": "green", "open": "red", "half_open": "yellow"}.get(state, "white")
        table = Table(title=act.title, title_justify="left")
        for column in ("phase", "service", "breaker", "calls", "ok", "failed", "rejected"):
            table.add_column(column, justify="right" if column[0] in "cofr" else "left")
        for phase in act.phases:
            tally = act.tallies.get(phase.name)
            if tally is None:
                continue
            current = phase.name == act.phase
            table.add_row(
                phase.name,
                phase.service if not current else f"[bold]{service.mode}[/]",
                f"[{colour}]{state}[/]" if current else "",
                str(tally.calls),
                str(tally.successes),
                str(tally.failures),
                str(tally.rejections),
            )
        caption = f"window: {snap['calls']} calls, failure rate {snap['failure_rate']:.0%}"
        remaining = _remaining(snap)
        table.caption = f"{caption}; {remaining}" if remaining else caption
        self.live.update(table)


def _remaining(snap: dict[str, Any]) -> str:
    remaining = snap.get("remaining", 0.0)
    if str(snap["state"]) == "open" and isinstance(remaining, float) and math.isfinite(remaining):
        return f"next trial in {remaining:.2f} s"
    return ""


def _status(act: Act, service: FlakyService) -> str:
    snap = act.subject.snapshot()
    tally = act.tallies[act.phase]
    extra = _remaining(snap)
    return (
        f"service {service.mode:<4} | breaker {snap['state']!s:<9} | calls {tally.calls:>3}"
        f" ok {tally.successes:>3} failed {tally.failures:>3} rejected {tally.rejections:>3}"
        + (f" | {extra}" if extra else "")
    )


# --- running ------------------------------------------------------------------------------------


def _run_act(act: Act, service: FlakyService, view: _Plain | _Rich, fast: bool) -> None:
    interval = 0.01 if fast else 0.025
    name = act.subject.name
    act.started = time.monotonic()

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.StateTransition) and event.operation == name:
            at = time.monotonic() - act.started
            act.transitions.append((at, event.from_state, event.to_state, event.reason))
            why = f" ({event.reason})" if event.reason else ""
            view.line(f"  [{at:5.2f} s] breaker {event.from_state} -> {event.to_state}{why}")

    view.line(f"== {act.title}")
    unsubscribe = events.subscribe(on_event)
    try:
        for phase in act.phases:
            act.phase = phase.name
            tally = act.tallies[phase.name] = Tally()
            service.mode = phase.service
            view.line(f"-- {phase.name}: {phase.title}")
            start = time.monotonic()
            while True:
                now = time.monotonic()
                elapsed = now - start
                if elapsed >= phase.max_seconds or (
                    elapsed >= phase.min_seconds and phase.done(act)
                ):
                    break
                t0 = time.perf_counter()
                try:
                    act.call()
                except CircuitOpenError:
                    tally.rejections += 1
                    tally.rejection_seconds += time.perf_counter() - t0
                except Exception:
                    tally.failures += 1
                    tally.failure_seconds += time.perf_counter() - t0
                else:
                    tally.successes += 1
                tally.calls += 1
                view.update(act, service, time.monotonic())
                time.sleep(interval)
            view.update(act, service, time.monotonic(), force=True)
    finally:
        unsubscribe()


def _summary(act: Act, elapsed: float) -> list[str]:
    total = act.total()
    lines = [
        "== Summary: " + act.title.split(":")[0],
        f"  calls {total.calls}, successes {total.successes}, failures {total.failures}, "
        f"rejections {total.rejections}, time {elapsed:.1f} s",
    ]
    for phase in act.phases:
        t = act.tallies.get(phase.name)
        if t is not None:
            lines.append(
                f"  {phase.name:<9} calls {t.calls:>4}  ok {t.successes:>4}  "
                f"failed {t.failures:>4}  rejected {t.rejections:>4}"
            )
    path = " -> ".join(["closed", *(to for _, _, to, _ in act.transitions)])
    lines.append(f"  transitions ({len(act.transitions)}): {path}")
    if total.rejections and total.failures:
        rejected = total.rejection_seconds / total.rejections
        failed = total.failure_seconds / total.failures
        lines.append(
            f"  a rejection took {rejected * 1e6:.0f} us on average; a call that reached the "
            f"failing service {failed * 1e3:.1f} ms ({failed / max(rejected, 1e-9):.0f}x)"
        )
    lines.append(f"  final state: {act.subject.state}")
    return lines


def _wants_rich(plain: bool, out: TextIO) -> bool:
    if plain or not out.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def run_demo(fast: bool = False, plain: bool = False, *, out: TextIO | None = None) -> int:
    """Run the demo; returns 0 when every act showed what it should (the breaker opened
    during the outage and closed again after the recovery), 1 otherwise.

    Args:
        fast: shorter phases (about 3 s in all instead of about 8 s), for tests.
        plain: plain text lines even on a terminal with rich installed.
        out: where plain lines go (default: sys.stdout).
    """
    stream = out if out is not None else sys.stdout
    try:
        return _run(fast, plain, stream)
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=stream, flush=True)
        return 130


def _run(fast: bool, plain: bool, stream: TextIO) -> int:
    started = time.monotonic()
    ok = True
    with FlakyService() as service:
        acts = build_acts(service.url, fast)
        print(f"flaky service listening on {service.url}", file=stream, flush=True)
        for act in acts:
            view: _Plain | _Rich = (
                _Rich(stream) if _wants_rich(plain, stream) else _Plain(stream, fast)
            )
            with view:
                _run_act(act, service, view, fast)
            for line in _summary(act, time.monotonic() - act.started):
                print(line, file=stream, flush=True)
            shown = act.saw("closed", "open") and act.saw("half_open", "closed")
            if not shown or str(act.subject.state) != "closed":
                ok = False
                print("  the breaker did not both open and close again", file=stream)
    print(f"demo finished in {time.monotonic() - started:.1f} s", file=stream, flush=True)
    return 0 if ok else 1
