"""Act 2: a `CircuitBreaker` opens during an outage, rejects fast, closes after it."""

from __future__ import annotations

import time

import resilience as rs

from .. import events
from .._errors import CircuitOpenError
from ._act import Act, Phase, Report
from ._servers import FlakyService, fetch


class BreakerAct(Act):
    name = "breaker"
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
        self.seconds = {"failed": 0.0}
        self.timed = 0  # rejections made only to time them (not in the tallies)
        self.per_rejection = 0.0
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

    def _time_rejections(self, batches: int = 5, size: int = 200) -> None:
        """What one rejection costs: the best of `batches` loops of `size` rejected calls.

        One `perf_counter` pair per call would mostly time the timer, the scheduler and the
        demo's own printing on a loaded machine; a loop over the open breaker times the
        rejection itself (with this demo's event listeners attached, as a user's would be).
        """
        url = self.service.quote_url()
        best = float("inf")
        for _ in range(batches):
            t0 = time.perf_counter()
            for _ in range(size):
                try:
                    self.breaker.call(fetch, url)
                except CircuitOpenError:
                    self.timed += 1
                except Exception:  # the open time ran out mid-loop: this batch does not count
                    return
            best = min(best, (time.perf_counter() - t0) / size)
        self.per_rejection = best

    def saw(self, from_state: str, to_state: str) -> bool:
        return any(t[1] == from_state and t[2] == to_state for t in self.transitions)

    def step(self) -> None:
        tally = self.tally
        t0 = time.perf_counter()
        try:
            self.breaker.call(fetch, self.service.quote_url())
        except CircuitOpenError:
            tally["rejected"] += 1
            if not self.timed:
                self._time_rejections()
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
        if self.per_rejection and failed:
            per_failure = self.seconds["failed"] / failed
            figures += (
                f"; a rejection costs {self.per_rejection * 1e6:.1f} us (best of 5 loops of 200 "
                f"rejected calls, {self.timed} timed in all, not counted above), a call that "
                f"reached the failing service {per_failure * 1e3:.1f} ms "
                f"({per_failure / self.per_rejection:.0f}x)"
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
