"""One replica in its own OS process, for the multi-process CRDT scenarios.

    python tests/_crdt_child.py '<json config>'

Config: {"replica", "replicas" (all ids), "dir" (shared scratch directory for barriers and
digests), "transport": "redis" | "http", "url" + "topic" (redis) or "port" + "peers"
(http), "scenario": "document" | "fleet", "secret"}.

The replica syncs a starting state, goes offline (mutates without shipping), comes back and
runs digest anti-entropy until every replica publishes the same digest; it prints one JSON
line: {"replica", "elapsed" (seconds from back-online to convergence), "value", "stats"}.
No test hooks: only the public API.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from resilience import crdt

DEADLINE = 60.0


def barrier(directory: Path, name: str, replica: str, replicas: list[str]) -> None:
    (directory / f"barrier.{name}.{replica}").touch()
    deadline = time.monotonic() + DEADLINE
    while not all((directory / f"barrier.{name}.{r}").exists() for r in replicas):
        if time.monotonic() > deadline:
            raise SystemExit(f"{replica}: barrier {name} timed out")
        time.sleep(0.01)


def publish(directory: Path, replica: str, digest: str) -> None:
    tmp = directory / f".digest.{replica}.tmp"
    tmp.write_text(digest)
    os.replace(tmp, directory / f"digest.{replica}")


def all_equal(directory: Path, replicas: list[str], mine: str) -> bool:
    for r in replicas:
        try:
            if (directory / f"digest.{r}").read_text() != mine:
                return False
        except FileNotFoundError:
            return False
    return True


def sync_until_converged(
    rep: crdt.Replicator, directory: Path, phase: str, replicas: list[str]
) -> float:
    """Poll and run digest anti-entropy until every replica shows this replica's digest;
    returns the seconds it took. Keeps answering peers until all have converged."""
    start = time.perf_counter()
    deadline = time.monotonic() + DEADLINE
    converged_at: float | None = None
    next_round = 0.0
    while True:
        rep.poll()
        now = time.perf_counter()
        if now >= next_round:
            rep.anti_entropy(digest=True)
            next_round = now + 0.05
        mine = json.dumps(rep.digest(), sort_keys=True)
        publish(directory, f"{phase}.{rep.replica}", mine)
        if all_equal(directory, [f"{phase}.{r}" for r in replicas], mine):
            if converged_at is None:
                converged_at = time.perf_counter() - start
                (directory / f"done.{phase}.{rep.replica}").touch()
            if all((directory / f"done.{phase}.{r}").exists() for r in replicas):
                return converged_at
        if time.monotonic() > deadline:
            raise SystemExit(f"{rep.replica}: no convergence in {phase}")
        time.sleep(0.005)


def transport_of(config: dict[str, Any]) -> Any:
    if config["transport"] == "redis":
        return crdt.RedisStreamTransport(config["url"], config["topic"], config["replica"])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _asgi_http import ASGIServer

    transport = crdt.HttpTransport(config["peers"], timeout=2.0)
    ASGIServer(transport.app, port=config["port"]).start()
    return transport


def main() -> None:
    config = json.loads(sys.argv[1])
    me: str = config["replica"]
    replicas: list[str] = config["replicas"]
    directory = Path(config["dir"])
    rep = crdt.Replicator(me, transport_of(config), secret=config["secret"])
    scenario = config["scenario"]

    if scenario == "document":
        rep.add("report", crdt.ORMap(me, crdt.LWWRegister))
        if me == replicas[0]:
            for i, text in enumerate(["Intro.", "Findings.", "Conclusion."], start=1):
                key = f"p{i}"
                rep.update("report", lambda d, k=key, t=text: d.update(k, lambda r: r.set(t)))
    else:
        rep.add("stock", crdt.LWWMap(me, hlc=rep.hlc))
        rep.add("orders", crdt.PNCounter(me))
        rep.add("tickets", crdt.ORSet(me))
    barrier(directory, "start", me, replicas)
    sync_until_converged(rep, directory, "seed", replicas)

    barrier(directory, "offline", me, replicas)
    # offline: mutate the local replicas directly; nothing is shipped
    index = replicas.index(me)
    if scenario == "document":
        if index < 2:
            paragraph = f"p{index + 1}"
            rep["report"].update(paragraph, lambda r: r.set(f"{paragraph}, revised by {me}."))
    else:
        for step in range(300):
            rep["stock"].set(f"sku-{step % 40}", f"{me}:{step}")  # the same SKUs everywhere
            rep["orders"].increment(2)
            if step % 3 == 0:
                rep["tickets"].add(f"t{step % 30}")
            if step % 5 == 0:
                rep["tickets"].remove(f"t{(step + 15) % 30}")
    barrier(directory, "online", me, replicas)

    elapsed = sync_until_converged(rep, directory, "heal", replicas)
    value = {name: rep[name].value for name in rep.names}
    value = json.loads(json.dumps(value, default=sorted))
    print(json.dumps({"replica": me, "elapsed": elapsed, "value": value, "stats": rep.stats}))
    sys.stdout.flush()
    os._exit(0)  # the HTTP server threads are daemons; do not wait for pooled connections


if __name__ == "__main__":
    main()
