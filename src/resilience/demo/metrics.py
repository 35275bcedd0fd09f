"""Act 9: a Prometheus scrape of this run's metrics, checked against what the acts said.

A `MetricsCollector` was attached when the demo started, so it saw every act's events. This
act makes some retried calls of its own, then scrapes `GET /metrics` over HTTP and parses the
text as Prometheus would. Each figure the earlier acts printed (retries, breaker transitions,
fallbacks, failover switches, queued writes) must be the number in the scrape: one number per
fact. Its own retries are checked against the service's count of failed requests.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import resilience as rs

from .. import events
from ._act import Act, Phase, Report
from ._servers import FlakyService, MetricsEndpoint, fetch

__all__ = ["MetricsAct"]

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    """Sample name -> [(labels, value)] of a scrape (prometheus_client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((dict(sample.labels), float(sample.value)))
    return out


def total(samples: Samples, name: str, **labels: str) -> int:
    """The sum of a counter's samples whose labels include `labels`."""
    rows = samples.get(name, [])
    return int(sum(v for got, v in rows if all(got.get(k) == x for k, x in labels.items())))


class MetricsAct(Act):
    name = "metrics"
    label = "metrics"
    title = "Metrics: a Prometheus scrape of this run, checked against the acts' figures"
    columns = (("calls", "calls"), ("retries", "retries"), ("scrapes", "scrapes"))

    def __init__(self, service: FlakyService, fast: bool) -> None:
        super().__init__(service, fast)
        self.retry = rs.Retry(
            max_attempts=5,
            backoff=rs.Backoff.exponential(initial=0.01, multiplier=2.0, maximum=0.05),
            name="demo-metrics",
        )
        self.endpoint: MetricsEndpoint | None = None
        self.samples: Samples = {}
        self.text = ""
        self.failures0 = 0
        self.failures = 0
        self.setup = (
            "rs.MetricsCollector(registry=CollectorRegistry()) attached for the whole run; "
            "GET /metrics on 127.0.0.1, parsed with prometheus_client.parser"
        )
        s = self.scale
        self.phases = [
            Phase(
                "traffic",
                "flaky service: retried calls of this act's own (operation demo-metrics)",
                "flaky (~30% fail)",
                0.4 * s,
                5.0 * s,
                lambda: self.tally["calls"] >= 10 and self.service.failures > self.failures0,
                self._enter,
            ),
            Phase(
                "scrape",
                "Prometheus' view: one scrape of /metrics over HTTP",
                "up",
                0.0,
                5.0 * s,
                lambda: bool(self.samples),
                self._scrape_setup,
            ),
        ]

    def _enter(self) -> None:
        self.failures0 = self.service.failures
        self.service.mode = "flaky"

    def _scrape_setup(self) -> None:
        self.service.mode = "up"
        self.failures = self.service.failures - self.failures0
        collector = self.run.collector
        if collector is not None:
            self.endpoint = MetricsEndpoint(collector.registry)
            self.say(f"serving {self.endpoint.url}")

    def step(self) -> None:
        if self.phase == "traffic":
            self.tally["calls"] += 1
            try:
                self.retry.call(fetch, self.service.quote_url())
            except Exception as exc:
                self.say(f"a call failed: {exc!r}")
            return
        if self.endpoint is None or self.samples:
            return
        self.text = self.endpoint.scrape()
        self.samples = parse(self.text)
        self.tally["scrapes"] += 1
        lines = [ln for ln in self.text.splitlines() if ln and not ln.startswith("#")]
        self.say(f"scraped {len(self.text)} bytes, {len(lines)} samples, e.g.:")
        for line in [ln for ln in lines if "demo-metrics" in ln][:3]:
            self.say(f"  {line}")

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.RetryAttempted) and event.operation == "demo-metrics":
            self.tally["retries"] += 1

    def state(self) -> tuple[str, str]:
        return ("scraped", "green") if self.samples else ("collecting", "yellow")

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()

    def _facts(self) -> list[tuple[str, int, int]]:
        """(what, what the act said, what the scrape says) for every act played before."""
        s = self.samples
        played: dict[str, Any] = self.run.played
        facts: list[tuple[str, int, int]] = [
            (
                "this act's retries = the service's failed requests",
                self.failures,
                total(s, "resilience_retries_total", operation="demo-metrics"),
            )
        ]
        if "retry" in played:
            facts.append(
                (
                    "retry act: retries",
                    played["retry"].retries,
                    total(s, "resilience_retries_total", operation="demo-retry"),
                )
            )
        if "breaker" in played:
            facts.append(
                (
                    "breaker act: transitions",
                    len(played["breaker"].transitions),
                    total(s, "resilience_circuit_transitions_total", operation="demo-quotes"),
                )
            )
        if "fallback" in played:
            facts.append(
                (
                    "fallback act: answers below FULL",
                    played["fallback"].notices,
                    total(s, "resilience_fallbacks_total", operation="demo-fallback"),
                )
            )
        if "failover" in played:
            facts.append(
                (
                    "failover act: switches",
                    len(played["failover"].switches),
                    total(s, "resilience_failover_switches_total", client="demo-failover"),
                )
            )
        if "queue" in played:
            facts.append(
                (
                    "queue act: writes queued",
                    len(played["queue"].queued),
                    total(s, "resilience_queue_enqueued_total", queue="demo-outbox"),
                )
            )
        return facts

    def report(self) -> Report:
        facts = self._facts() if self.samples else []
        agree = [f for f in facts if f[1] == f[2]]
        return Report(
            f"one scrape of /metrics ({len(self.samples)} series names) gave the same number "
            f"as the demo for {len(agree)} of {len(facts)} facts",
            "; ".join(f"{what}: said {said}, scraped {got}" for what, said, got in facts),
            [
                ("/metrics answered in the Prometheus text format", bool(self.samples)),
                (
                    f"this act's retries were all counted ({self.failures} failed requests, "
                    f"{facts[0][2] if facts else 0} retries scraped)",
                    bool(facts) and self.failures > 0 and facts[0][1] == facts[0][2],
                ),
                (
                    f"every figure an earlier act printed is the scraped number "
                    f"({len(agree)} of {len(facts)})",
                    bool(facts) and len(agree) == len(facts),
                ),
            ],
        )
