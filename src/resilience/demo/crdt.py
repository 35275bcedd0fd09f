"""Act 6: two agents edit one document offline, then exchange deltas as JSON and merge.

The document is three CRDTs: a checklist (`ORSet`), a title (`MVRegister`: concurrent titles
are kept, not silently dropped) and an edit counter (`PNCounter`). While offline, each edit's
delta goes to the agent's outbox as JSON; back online, each agent reads the other's outbox in a
shuffled order with every message delivered twice, and both end with the same document.
"""

from __future__ import annotations

import json
import random
from typing import Any

from .. import crdt, events
from ._act import Act, Phase, Report
from ._servers import FlakyService

__all__ = ["CrdtAct"]

# (agent, edit) in the order they happen, while both are offline
EDITS: tuple[tuple[str, str, str], ...] = (
    ("alice", "add", "stove"),
    ("bob", "add", "map"),
    ("alice", "remove", "tent"),
    ("bob", "title", "Trip to the coast"),
    ("alice", "title", "Camping trip"),
    ("bob", "add", "tent"),  # bob packs the tent again, not knowing alice took it out
    ("alice", "add", "matches"),
    ("bob", "remove", "rope"),
    ("alice", "add", "water"),
    ("bob", "add", "sunscreen"),
)


class Agent:
    """One replica of the document and the outbox of the deltas it made offline."""

    def __init__(self, name: str, synced: dict[str, Any] | None = None) -> None:
        self.name = name
        self.items = crdt.ORSet(name)
        self.title = crdt.MVRegister(name)
        self.edits = crdt.PNCounter(name)
        if synced is not None:  # the state both had before going offline
            self.receive(synced)
        self.outbox: list[str] = []

    def edit(self, kind: str, value: str) -> None:
        if kind == "add":
            delta: Any = self.items.add(value)
        elif kind == "remove":
            delta = self.items.remove(value)
        else:
            delta = self.title.set(value)
        self.outbox.append(json.dumps({"part": _part(kind), "delta": delta.to_dict()}))
        self.outbox.append(json.dumps({"part": "edits", "delta": self.edits.increment().to_dict()}))

    def receive(self, message: dict[str, Any]) -> None:
        part = message["part"]
        received = crdt.from_dict(message["delta"])  # checked: type, version, checksum
        setattr(self, part, getattr(self, part).merge(received))

    def document(self) -> dict[str, Any]:
        return {
            "title": sorted(self.title.values),
            "items": sorted(self.items.value),
            "edits": self.edits.value,
        }


def _part(kind: str) -> str:
    return "title" if kind == "title" else "items"


class CrdtAct(Act):
    name = "crdt"
    label = "crdt"
    title = "CRDTs: two agents edit one document offline, then merge"
    columns = (("edits", "edits"), ("messages", "messages"), ("merged", "merged"))

    def __init__(self, service: FlakyService, fast: bool) -> None:
        super().__init__(service, fast)
        s = self.scale
        start = Agent("start")
        start.items.add("tent")
        start.items.add("rope")
        start.title.set("Trip")
        synced = [{"part": p, "delta": getattr(start, p).to_dict()} for p in ("items", "title")]
        self.alice, self.bob = Agent("alice"), Agent("bob")
        for message in synced:
            self.alice.receive(message)
            self.bob.receive(message)
        self.agents = {"alice": self.alice, "bob": self.bob}
        self.before = self.alice.document()
        self.edited = 0
        self.inbox: list[tuple[str, str]] = []  # (to, message)
        self.delivered = 0
        self.rng = random.Random(5)
        self.setup = (
            "crdt.ORSet (checklist), crdt.MVRegister (title), crdt.PNCounter (edits) per agent; "
            "deltas travel as JSON (to_dict / crdt.from_dict)"
        )
        self.phases = [
            Phase(
                "offline",
                "both agents offline: each edit changes the local copy and queues its delta",
                "offline",
                0.6 * s,
                5.0 * s,
                lambda: self.edited == len(EDITS),
            ),
            Phase(
                "online",
                "back online: each reads the other's deltas, shuffled and each delivered twice",
                "online",
                0.4 * s,
                5.0 * s,
                lambda: bool(self.inbox) is False and self.delivered > 0,
                self._connect,
            ),
        ]

    def _connect(self) -> None:
        for sender, to in (("alice", "bob"), ("bob", "alice")):
            messages = self.agents[sender].outbox * 2  # at-least-once: duplicates happen
            self.rng.shuffle(messages)  # and so does reordering
            self.inbox += [(to, m) for m in messages]
        self.rng.shuffle(self.inbox)

    def step(self) -> None:
        if self.phase == "offline":
            if self.edited < len(EDITS):
                who, kind, value = EDITS[self.edited]
                self.agents[who].edit(kind, value)
                self.edited += 1
                self.tally["edits"] += 1
                self.say(f"{who} (offline): {kind} {value!r}")
            return
        for _ in range(4):
            if not self.inbox:
                break
            to, message = self.inbox.pop()
            self.agents[to].receive(json.loads(message))
            self.delivered += 1
            self.tally["messages"] += 1
        if not self.inbox and not self.tally["merged"]:
            self.tally["merged"] = 1
            self.say(f"alice: {self.alice.document()}")
            self.say(f"bob:   {self.bob.document()}")

    def on_event(self, event: events.Event) -> None:
        pass

    def state(self) -> tuple[str, str]:
        same = self.alice.document() == self.bob.document()
        return ("documents equal", "green") if same else ("documents differ", "yellow")

    def detail(self) -> str:
        return f"alice {len(self.alice.items)} items, bob {len(self.bob.items)} items"

    def report(self) -> Report:
        a, b = self.alice.document(), self.bob.document()
        items = set(a["items"])
        added = {v for _, kind, v in EDITS if kind == "add"}
        removed_only = {v for _, kind, v in EDITS if kind == "remove"} - added
        titles = {v for _, kind, v in EDITS if kind == "title"}
        merged_once = self.alice.items.merge(self.bob.items)
        return Report(
            f"{self.edited} offline edits and {self.delivered} messages (every delta twice, "
            f"shuffled) later, both agents hold the same document: {len(items)} items, "
            f"the 2 concurrent titles kept side by side",
            f"before: {self.before['items']}; after: {a['items']}, titles {a['title']}, "
            f"{a['edits']} edits counted",
            [
                ("both agents hold the same document", a == b and self.tally["merged"] == 1),
                (
                    f"no edit was lost: every added item is there ({len(added & items)} of "
                    f"{len(added)}), and the removed rope is gone",
                    added <= items and not (removed_only & items),
                ),
                (
                    "bob's concurrent re-add of the tent won over alice's remove (add wins)",
                    "tent" in items,
                ),
                ("the two concurrent titles were both kept", set(a["title"]) == titles),
                (
                    "duplicates changed nothing: the edit count is the number of edits "
                    f"({a['edits']})",
                    a["edits"] == len(EDITS) and merged_once == self.alice.items,
                ),
            ],
        )
