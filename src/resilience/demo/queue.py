"""Act 5: an `OfflineQueue` keeps writes during an outage, delivers them by priority."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
from collections import Counter
from typing import TYPE_CHECKING, Any

import resilience as rs

from .. import events
from ._act import Act, Phase, Report
from ._servers import FlakyService, describe, post

if TYPE_CHECKING:
    from ..queue import Item


WRITES = (
    ("payment", "CRITICAL", 2),
    ("message", "HIGH", 3),
    ("profile update", "NORMAL", 4),
    ("page view", "LOW", 5),
)


class QueueAct(Act):
    name = "queue"
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
                    f"write {n} ({kind}) failed ({describe(exc)}): queued as seq {seq}, {priority}"
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
