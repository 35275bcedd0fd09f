"""The breaker against a small reference model (a plain list as the window), step by step.

hypothesis drives calls that succeed, fail, fail permanently or run slow, clock advances, and
force_open / disable / reset; after every step the breaker's state, counters and timing must
equal the model's.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resilience as rs
from resilience.breaker import CircuitBreaker, CountWindow, TimeWindow
from resilience.testing import VirtualClock

SLOW_AFTER = 2.0


class Model:
    """The circuit breaker as the design describes it, written the obvious way."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.size: int | None = cfg["size"]
        self.seconds: float | None = cfg["seconds"]
        self.minimum = min(cfg["minimum_calls"], self.size or math.inf)
        self.window: list[tuple[float, bool, bool]] = []  # (ended at, failed, slow)
        self.state = "closed"
        self.duration = cfg["open_duration"]
        self.open_until = 0.0
        self.trials = 0
        self.trial_ok = 0
        self.trial_slow = 0

    def live(self, now: float) -> list[tuple[float, bool, bool]]:
        if self.size is not None:
            return self.window[-self.size :]
        assert self.seconds is not None
        width = self.seconds / max(math.ceil(self.seconds), 1)
        newest = int(now // width)
        return [
            c for c in self.window if int(c[0] // width) > newest - max(math.ceil(self.seconds), 1)
        ]

    def tick(self, now: float) -> None:
        if self.state == "open" and now >= self.open_until:
            self.state = "half_open"
            self.trials = self.trial_ok = self.trial_slow = 0

    def open(self, now: float) -> None:
        self.state = "open"
        self.open_until = now + self.duration

    def close(self) -> None:
        self.state = "closed"
        self.window = []
        self.duration = self.cfg["open_duration"]

    def admit(self, now: float) -> str | None:
        """None if admitted, else the rejection's state name."""
        self.tick(now)
        if self.state == "open":
            return "open"
        if self.state == "forced_open":
            return "forced_open"
        if self.state == "half_open":
            if self.trials >= self.cfg["half_open_calls"]:
                return "half_open"
            self.trials += 1
        return None

    def done(self, kind: str, now: float, slow: bool) -> None:
        if self.state == "disabled" or kind == "permanent":
            if self.state == "half_open":
                self.trials -= 1
            return
        failed = kind == "failure"
        if self.state == "closed":
            self.window.append((now, failed, slow))
            live = self.live(now)
            calls = len(live)
            if calls >= self.minimum:
                failure_rate = sum(f for _, f, _ in live) / calls
                slow_rate = sum(s for _, _, s in live) / calls
                if (
                    failure_rate >= self.cfg["failure_rate_threshold"]
                    or slow_rate >= self.cfg["slow_call_rate_threshold"]
                ):
                    self.open(now)
        elif self.state == "half_open":
            if failed:
                self.reopen(now)
                return
            self.trial_ok += 1
            self.trial_slow += slow
            n = self.cfg["half_open_calls"]
            if self.trial_ok >= n:
                if self.trial_slow and self.trial_slow / n >= self.cfg["slow_call_rate_threshold"]:
                    self.reopen(now)
                else:
                    self.close()

    def reopen(self, now: float) -> None:
        if self.cfg["open_duration_max"] is not None:
            self.duration = min(self.duration * 2, self.cfg["open_duration_max"])
        self.open(now)


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()

    @initialize(
        failure_rate_threshold=st.sampled_from([0.2, 0.3, 0.5, 1.0]),
        slow_call_rate_threshold=st.sampled_from([0.5, 1.0]),
        minimum_calls=st.integers(1, 6),
        window=st.one_of(
            st.integers(1, 8).map(lambda n: ("count", n)),
            st.sampled_from([2.0, 5.0]).map(lambda s: ("time", s)),
        ),
        open_duration=st.sampled_from([1.0, 5.0]),
        open_duration_max=st.sampled_from([None, 12.0]),
        half_open_calls=st.integers(1, 3),
    )
    def setup(self, window: tuple[str, float], **cfg: Any) -> None:
        kind, value = window
        cfg["size"] = int(value) if kind == "count" else None
        cfg["seconds"] = value if kind == "time" else None
        self.model = Model(cfg)
        self.breaker = CircuitBreaker(
            "model",
            failure_rate_threshold=cfg["failure_rate_threshold"],
            slow_call_threshold=SLOW_AFTER,
            slow_call_rate_threshold=cfg["slow_call_rate_threshold"],
            minimum_calls=cfg["minimum_calls"],
            window=CountWindow(int(value)) if kind == "count" else TimeWindow(seconds=value),
            open_duration=cfg["open_duration"],
            open_duration_max=cfg["open_duration_max"],
            half_open_calls=cfg["half_open_calls"],
            clock=self.clock,
        )

    def _one_call(self, kind: str, took: float) -> None:
        expected = self.model.admit(self.clock.monotonic())
        ran = []

        def fn() -> str:
            ran.append(1)
            self.clock.advance(took)
            if kind == "failure":
                raise ConnectionError("down")
            if kind == "permanent":
                raise ValueError("bad request")
            return "ok"

        try:
            self.breaker.call(fn)
            got = None
        except rs.CircuitOpenError as e:
            got = e.state
        except (ConnectionError, ValueError):
            got = None
        assert got == expected
        assert bool(ran) == (expected is None)
        if expected is None:
            self.model.done(kind, self.clock.monotonic(), took >= SLOW_AFTER)

    @rule(
        kind=st.sampled_from(["success", "failure", "permanent"]),
        took=st.sampled_from([0.0, 0.5, SLOW_AFTER]),
    )
    def call(self, kind: str, took: float) -> None:
        self._one_call(kind, took)

    @rule(
        kind=st.sampled_from(["success", "failure"]),
        took=st.sampled_from([0.0, SLOW_AFTER]),
        times=st.integers(2, 6),
    )
    def burst(self, kind: str, took: float, times: int) -> None:
        for _ in range(times):
            self._one_call(kind, took)

    # durations are exact in binary, so the breaker and the model agree on "slow"
    @rule(seconds=st.sampled_from([0.125, 0.5, 1.0, 3.0, 7.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(op=st.sampled_from(["force_open", "disable", "reset"]))
    def manual(self, op: str) -> None:
        if op == "force_open":
            self.breaker.force_open()
            self.model.state = "forced_open"
        elif op == "disable":
            self.breaker.disable()
            if self.model.state != "disabled":
                self.model.close()
                self.model.state = "disabled"
        else:
            self.breaker.reset()
            self.model.close()

    @invariant()
    def agrees(self) -> None:
        now = self.clock.monotonic()
        self.model.tick(now)
        snap = self.breaker.snapshot()
        assert snap["state"] == self.model.state
        live = self.model.live(now) if self.model.state != "disabled" else []
        assert snap["calls"] == len(live)
        assert snap["failures"] == sum(f for _, f, _ in live)
        assert snap["slow_calls"] == sum(s for _, _, s in live)
        assert snap["open_duration"] == self.model.duration
        if self.model.state == "open":
            assert snap["remaining"] == pytest.approx(self.model.open_until - now)
        if self.model.state == "half_open":
            assert snap["trial_calls"] == self.model.trials


TestBreakerModel = BreakerMachine.TestCase
TestBreakerModel.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
