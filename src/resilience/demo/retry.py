"""Act 1: `Retry` with backoff absorbs transient failures."""

from __future__ import annotations

from typing import TYPE_CHECKING

import resilience as rs

from .. import events
from ._act import Act, Phase, Report
from ._servers import FlakyService, describe, fetch

if TYPE_CHECKING:
    pass


class RetryAct(Act):
    name = "retry"
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
            self.say(f"a call failed after {self.retries - before + 1} attempts: {describe(exc)}")
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
