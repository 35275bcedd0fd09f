"""Act 8: a legacy resilience4j file is migrated, loaded, and builds the same breaker.

A Spring `application.properties` with a resilience4j circuit breaker and retry goes
through `migrate.migrate()`; its TOML is written next to it and read back with
`config.load()`; the breaker built from that config is then run against the service while it is
down, and opens after exactly resilience4j's `minimumNumberOfCalls` failed calls.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from .. import events
from .._errors import CircuitOpenError
from ._act import Act, Phase, Report
from ._servers import FlakyService, fetch

__all__ = ["MigrateAct"]

LEGACY = """\
# a Spring Boot service's resilience4j settings
resilience4j.circuitbreaker.instances.payments.failureRateThreshold=50
resilience4j.circuitbreaker.instances.payments.slidingWindowType=COUNT_BASED
resilience4j.circuitbreaker.instances.payments.slidingWindowSize=20
resilience4j.circuitbreaker.instances.payments.minimumNumberOfCalls=10
resilience4j.circuitbreaker.instances.payments.waitDurationInOpenState=10s
resilience4j.circuitbreaker.instances.payments.permittedNumberOfCallsInHalfOpenState=3
resilience4j.retry.instances.payments.maxAttempts=3
resilience4j.retry.instances.payments.waitDuration=500ms
"""

EXPECTED = {
    "failure_rate_threshold": 0.5,
    "minimum_calls": 10,
    "open_duration": 10.0,
    "half_open_calls": 3,
}


class MigrateAct(Act):
    name = "migrate"
    label = "migrate"
    title = "Migrate: a legacy resilience4j file becomes a config that builds the same breaker"
    columns = (("calls", "calls"), ("failed", "failed"), ("rejected", "rejected"))

    def __init__(self, service: FlakyService, fast: bool) -> None:
        super().__init__(service, fast)
        self.dir = tempfile.mkdtemp(prefix="resilience-demo-")
        self.legacy = os.path.join(self.dir, "application.properties")
        self.toml = os.path.join(self.dir, "resilience.toml")
        with open(self.legacy, "w", encoding="utf-8") as f:
            f.write(LEGACY)
        self.report_: Any = None
        self.settings: dict[str, Any] = {}
        self.breaker: Any = None
        self.opened_after = 0
        self.removed = False
        self.setup = (
            f"migrate.migrate({os.path.basename(self.legacy)!r}) -> report.to_toml() -> "
            f"config.load({os.path.basename(self.toml)!r}) in a temporary folder"
        )
        s = self.scale
        self.phases = [
            Phase(
                "migrate",
                "read the legacy file, map each setting, write resilience.toml, load it",
                "-",
                0.3 * s,
                5.0 * s,
                lambda: self.breaker is not None,
                self._migrate,
            ),
            Phase(
                "outage",
                "service down: the migrated breaker opens after resilience4j's "
                "minimumNumberOfCalls",
                "down",
                0.3 * s,
                6.0 * s,
                lambda: self.opened_after > 0,
                self.mode("down"),
            ),
        ]

    def _migrate(self) -> None:
        from .. import config, migrate

        report = migrate.migrate(self.legacy)
        self.report_ = report
        with open(self.toml, "w", encoding="utf-8") as f:
            f.write(report.to_toml())
        for line in report.warnings[:2]:
            self.say(f"migrate note: {line}")
        cfg = config.load(self.toml, environ={"RESILIENCE_ENV": "production"})
        policy = cfg.operation("payments")
        assert policy.breaker is not None
        self.settings = policy.breaker.table()
        self.say(
            f"{len(report.operations)} operation(s), confidence {report.confidence:.2f}, "
            f"{len(report.unmapped)} unmapped; breaker: "
            + ", ".join(f"{k} = {self.settings.get(k)}" for k in EXPECTED)
        )
        self.breaker = policy.breaker.build("demo-migrated")

    def step(self) -> None:
        if self.phase != "outage" or self.opened_after:
            return
        tally = self.tally
        tally["calls"] += 1
        try:
            self.breaker.call(fetch, self.service.quote_url())
        except CircuitOpenError:
            tally["rejected"] += 1
            self.opened_after = tally["failed"]
            self.say(f"the migrated breaker opened after {tally['failed']} failed calls")
        except Exception:
            tally["failed"] += 1

    def on_event(self, event: events.Event) -> None:
        pass

    def state(self) -> tuple[str, str]:
        if self.breaker is None:
            return "", ""
        state = str(self.breaker.state.value)
        return f"breaker {state}", "green" if state == "closed" else "red"

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.removed = not os.path.exists(self.dir)

    def report(self) -> Report:
        report = self.report_
        mapped = {k: self.settings.get(k) for k in EXPECTED}
        confidence = report.confidence if report is not None else 0.0
        return Report(
            f"the resilience4j file became a config (confidence {confidence:.2f}) whose breaker "
            f"opened after {self.opened_after} failed calls, as minimumNumberOfCalls: 10 says",
            f"failureRateThreshold 50 -> {mapped['failure_rate_threshold']}, "
            f"minimumNumberOfCalls 10 -> {mapped['minimum_calls']}, waitDurationInOpenState "
            f"10s -> {mapped['open_duration']}, permittedNumberOfCallsInHalfOpenState 3 -> "
            f"{mapped['half_open_calls']}; temporary folder "
            + ("deleted" if self.removed else f"NOT deleted: {self.dir}"),
            [
                (
                    "every legacy setting was mapped (nothing unmapped)",
                    report is not None and not report.unmapped and "payments" in report.operations,
                ),
                ("the loaded config holds the legacy numbers", mapped == EXPECTED),
                (
                    f"the built breaker opened after minimumNumberOfCalls = 10 failed calls "
                    f"({self.opened_after})",
                    self.opened_after == 10,
                ),
            ],
        )
