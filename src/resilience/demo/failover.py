"""Act 4: `Failover` across two servers, and back to the primary."""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from typing import TYPE_CHECKING

import resilience as rs

from .. import events
from .._errors import CircuitOpenError
from ._act import Act, Phase, Report
from ._servers import FlakyService, describe, fetch

if TYPE_CHECKING:
    pass


class FailoverAct(Act):
    name = "failover"
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
                    self.say(f"health check of {tier.name}: failed ({describe(exc)})")
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
            self.say(f"a call was lost: {describe(exc)}")
            return
        tally[served.source] += 1
        tried_primary = served.errors and not isinstance(served.errors[0], CircuitOpenError)
        if served.source != "primary" and tried_primary:
            tally["moved"] += 1
            if sum(t["moved"] for t in self.tallies.values()) == 1:
                self.say(
                    f"a call to the primary failed ({describe(served.errors[0])}) and was "
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
