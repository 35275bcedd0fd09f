"""Act 3: a `FallbackChain` serves stale cached data while the service is down."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import resilience as rs

from .. import events
from .._errors import CircuitOpenError
from ._act import Act, Phase, Report
from ._servers import FlakyService, describe, fetch

if TYPE_CHECKING:
    pass


SYMBOLS = ("ACME", "GLOBEX", "INITECH")


class FallbackAct(Act):
    name = "fallback"
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
            self.say(f"fallback: no answer at all: {describe(exc)}")
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
                why = describe(served.errors[0]) if served.errors else "?"
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
        cached = total["cached"]
        # one number per fact: every CACHE_ONLY answer is counted once, in `cached`; the
        # breakdown says when they were served (the recovery's came before the breaker's trial)
        return Report(
            f"{cached} calls got cached data (CACHE_ONLY, up to {self.oldest:.1f} s old) "
            "instead of an error, while the service was down and until its breaker let live "
            "calls through again; then live data (FULL)",
            f"{total['calls']} calls: FULL {total['full']}, CACHE_ONLY {cached} "
            f"({outage['cached']} during the outage, {recovery['cached']} after it while the "
            f"breaker was still open; {total['skipped']} without calling the dead service), "
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
                    f"one FallbackServed event per answer below FULL ({self.notices} for "
                    f"{cached + total['default']})",
                    self.notices == cached + total["default"],
                ),
                (
                    f"live answers (FULL) again after the recovery ({recovery['full']})",
                    recovery["full"] > 0 and self.level is rs.DegradationLevel.FULL,
                ),
            ],
        )
