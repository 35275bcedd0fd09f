"""Act 7: the same code under `development` and `production` gets different presets.

One `@rs.resilient("demo.quotes")` function, one config file (it sets the retry deadline as a
duration string, and no timeout policy: urllib's own timeout bounds each request, and no worker
thread outlives the act), two environments detected from `APP_ENV`. Against the service while it is
down, the development preset's breaker opens after 5 failed requests and the production
preset's after 20; `explain` says where each value came from. Time is a `VirtualClock`, so the
presets' backoff waits take no real time; the requests are real.
"""

from __future__ import annotations

from typing import Any

import resilience as rs

from .. import events
from .._errors import CircuitOpenError
from ..testing import VirtualClock
from ._act import Act, Phase, Report
from ._servers import FlakyService, fetch

__all__ = ["ConfigAct"]

OPERATION = "demo.quotes"
FILE = {"operations": {OPERATION: {"retry": {"deadline": "5s"}, "timeout": False}}}
"""What a `resilience.toml` with `[operations."demo.quotes"]`, `retry = { deadline = "5s" }`
and `timeout = false` holds."""

SHOWN = ("retry.deadline", "retry.max_attempts", "breaker.minimum_calls", "breaker.open_duration")


class ConfigAct(Act):
    name = "config"
    label = "config"
    title = "Config: the same code picks its preset from the environment"
    columns = (("calls", "calls"), ("requests", "requests"), ("rejected", "rejected"))

    def __init__(self, service: FlakyService, fast: bool) -> None:
        super().__init__(service, fast)
        from .. import config

        self.config = config
        self.previous: Any = None
        self.environments = ("development", "production")
        self.results: dict[str, dict[str, Any]] = {}
        self.fn: Any = None
        self.last: Any = None  # the config this act made active last
        self.restored = False
        self.requests0 = 0
        self.setup = (
            f'@rs.resilient("{OPERATION}") around a GET; config file: [operations."{OPERATION}"] '
            'retry = { deadline = "5s" }, timeout = false; config.load(environ={"APP_ENV": ...})'
        )
        s = self.scale
        self.phases = [
            Phase(
                env,
                f"APP_ENV={env}: the service is down; call until the breaker rejects",
                "down",
                0.3 * s,
                8.0 * s,
                lambda env=env: env in self.results,  # type: ignore[misc]
                lambda env=env: self._enter(env),  # type: ignore[misc]
            )
            for env in self.environments
        ]

    def _enter(self, env: str) -> None:
        cfg = self.config.load(data=FILE, environ={"APP_ENV": env})
        previous = self.config.use(cfg)
        self.last = cfg
        if self.previous is None:
            self.previous = (previous,)
        self.service.mode = "down"
        self.requests0 = self.service.requests
        url = self.service.quote_url()

        # the same function each time; a new virtual clock gives each environment its own
        # pipeline (and so its own breaker), built from the config active now
        @rs.resilient(OPERATION, clock=VirtualClock())
        def quote() -> dict[str, Any]:
            return fetch(url)

        self.fn = quote
        rows = {k: (v, o) for k, v, o in cfg.explain(OPERATION)}
        self.say(
            f"config.load(): environment {cfg.environment} (from {cfg.environment_source}); "
            + "; ".join(f"{k} = {rows[k][0]} ({rows[k][1]})" for k in SHOWN if k in rows)
        )
        self.results.pop(env, None)
        self.current_env = env
        self.explained = rows

    def step(self) -> None:
        env = self.current_env
        if env in self.results:
            return
        tally = self.tally
        tally["calls"] += 1
        try:
            self.fn()
        except CircuitOpenError:
            tally["rejected"] += 1
            requests = self.service.requests - self.requests0
            policy = self.config.current().operation(OPERATION)
            assert policy.breaker is not None  # every environment's preset has one
            self.results[env] = {
                "requests": requests,
                "calls": tally["calls"],
                "minimum_calls": policy.breaker.minimum_calls,
                "preset": policy.preset,
                "explained": self.explained,
                "source": self.config.current().environment_source,
            }
            self.say(
                f"{env}: the breaker opened after {requests} failed requests "
                f"({tally['calls'] - 1} calls; preset {policy.preset}: minimum_calls = "
                f"{policy.breaker.minimum_calls})"
            )
        except Exception:
            pass
        tally["requests"] = self.service.requests - self.requests0

    def on_event(self, event: events.Event) -> None:
        pass

    def state(self) -> tuple[str, str]:
        env = getattr(self, "current_env", "")
        return (f"preset {env}", "green") if env else ("", "")

    def close(self) -> None:
        if self.previous is not None:
            # leave the process as it was (and see that nobody else swapped the config)
            self.restored = self.config.use(self.previous[0]) is self.last

    def report(self) -> Report:
        dev = self.results.get("development", {})
        prod = self.results.get("production", {})
        figures = "; ".join(
            f"{env}: preset {r['preset']}, breaker open after {r['requests']} requests "
            f"(minimum_calls {r['minimum_calls']})"
            for env, r in self.results.items()
        )
        deadline_from = {
            env: r["explained"].get("retry.deadline", (None, ""))[1]
            for env, r in self.results.items()
        }
        restored = self.restored
        return Report(
            f"the same function got the development preset (breaker open after "
            f"{dev.get('requests', '?')} failed requests) and then the production preset "
            f"(after {prod.get('requests', '?')}), decided by APP_ENV alone",
            figures,
            [
                (
                    "the environment was detected from APP_ENV each time",
                    bool(dev)
                    and bool(prod)
                    and dev["source"] == prod["source"] == "APP_ENV"
                    and (dev["preset"], prod["preset"]) == self.environments,
                ),
                (
                    "each breaker opened after its preset's minimum_calls failed requests "
                    f"({dev.get('requests')} = {dev.get('minimum_calls')}, "
                    f"{prod.get('requests')} = {prod.get('minimum_calls')})",
                    bool(dev)
                    and bool(prod)
                    and dev["requests"] == dev["minimum_calls"]
                    and prod["requests"] == prod["minimum_calls"]
                    and dev["requests"] < prod["requests"],
                ),
                (
                    'explain() traced the retry deadline ("5s") to the file in both',
                    len(deadline_from) == 2
                    and all(o.startswith("file data") for o in deadline_from.values()),
                ),
                ("the config active before the act is active again", restored),
            ],
        )
