"""OfflineQueue against persist-queue (SQLiteAckQueue), litequeue and raw sqlite3 floors.

Run: .venv/bin/python -m benchmarks.queue [N [ROUNDS]]
    N: items in the drain-rate run (default 10000); ROUNDS: how many times each comparison is
    repeated (default 3); the tables show the median over the rounds of each case's median.

Floors (BASELINES.md): raw sqlite3, WAL, synchronous=FULL, json payloads; one commit per item
(put: INSERT + COMMIT; get+ack: SELECT oldest + DELETE + COMMIT) and 100 items per commit.
Payloads are ~110 B of JSON. Every case runs in this one process, interleaved, reshuffled each
repetition (benchmarks/_harness.py); compare the ratios of one run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import count

from benchmarks._harness import Case, table
from benchmarks._harness import compare as compare_once
from resilience.queue import OfflineQueue, Priority

PAYLOAD = {"id": 0, "op": "update", "table": "readings", "body": "x" * 64}
_ids = count()


def payload() -> dict[str, object]:
    return {**PAYLOAD, "id": next(_ids)}


class Floor:
    """Raw sqlite3 at the same durability: the physical floor of a durable queue."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT)")

    def put(self, item: object) -> None:
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO q(data) VALUES (?)", (json.dumps(item),))
        self.db.execute("COMMIT")

    def get_ack(self) -> object:
        self.db.execute("BEGIN")
        row = self.db.execute("SELECT id, data FROM q ORDER BY id LIMIT 1").fetchone()
        self.db.execute("DELETE FROM q WHERE id = ?", (row[0],))
        self.db.execute("COMMIT")
        return json.loads(row[1])

    def put_batch(self, items: list[object]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO q(data) VALUES (?)", [(json.dumps(i),) for i in items])
        self.db.execute("COMMIT")

    def get_ack_batch(self, n: int) -> list[object]:
        self.db.execute("BEGIN")
        rows = self.db.execute("SELECT id, data FROM q ORDER BY id LIMIT ?", (n,)).fetchall()
        self.db.executemany("DELETE FROM q WHERE id = ?", [(r[0],) for r in rows])
        self.db.execute("COMMIT")
        return [json.loads(r[1]) for r in rows]


ROUNDS = 3  # main() takes it from the command line


def compare(cases: dict[str, Case], *, number: int, repeat: int) -> dict[str, float]:
    """`_harness.compare`, ROUNDS times; each case's median over the rounds (fsync latency on a
    shared disk drifts for seconds at a time: one round can be off by 20%)."""
    runs = [compare_once(cases, number=number, repeat=repeat) for _ in range(ROUNDS)]
    return {name: statistics.median(run[name] for run in runs) for name in cases}


def timed(body: Callable[[int], None], setup: Callable[[int], None] | None = None) -> Case:
    def case(n: int) -> float:
        if setup is not None:
            setup(n)
        start = time.perf_counter()
        body(n)
        return time.perf_counter() - start

    return case


def main() -> None:
    global ROUNDS
    n_drain = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS
    import litequeue
    import persistqueue

    tmp = tempfile.mkdtemp(prefix="queue-bench-")
    path = lambda name: os.path.join(tmp, name)  # noqa: E731

    ours = OfflineQueue(path("ours.db"))
    floor = Floor(path("floor.db"))
    pq = persistqueue.SQLiteAckQueue(path("pq"), auto_commit=True, multithreading=True)
    lq = litequeue.LiteQueue(path("lq.db"))
    item_bytes = len(json.dumps(payload(), separators=(",", ":")))
    print(f"payload: {item_bytes} B of JSON; files in {tmp}\n")

    def loop_n(fn: Callable[[], object]) -> Callable[[int], None]:
        def body(n: int) -> None:
            for _ in range(n):
                fn()

        return body

    # --- durable put: one item, one commit --------------------------------------------------
    put = compare(
        {
            "OfflineQueue.put": timed(loop_n(lambda: ours.put(payload()))),
            "raw sqlite3 FULL (floor)": timed(loop_n(lambda: floor.put(payload()))),
            "persist-queue SQLiteAckQueue": timed(loop_n(lambda: pq.put(payload()))),
            "litequeue (synchronous=NORMAL)": timed(loop_n(lambda: lq.put(json.dumps(payload())))),
        },
        number=50,  # short runs, many repetitions: fsync latency drifts on a shared disk
        repeat=25,
    )
    print(table("durable put (per item)", put, baseline="raw sqlite3 FULL (floor)"))

    # --- get + ack of one item ------------------------------------------------------------
    def ours_get_ack() -> None:
        with ours.lease(n=1):
            pass

    def pq_get_ack() -> None:
        pq.ack(pq.get(block=False))

    def lq_get_ack() -> None:
        msg = lq.pop()
        json.loads(msg.data)
        lq.done(msg.message_id)

    def fill(q_put: Callable[[list[object]], object]) -> Callable[[int], None]:
        def setup(n: int) -> None:
            q_put([payload() for _ in range(n)])

        return setup

    get_ack = compare(
        {
            "OfflineQueue lease(1)+ack": timed(
                loop_n(ours_get_ack),
                fill(lambda items: ours.put_many([(i, Priority.NORMAL) for i in items])),
            ),
            "raw sqlite3 FULL (floor)": timed(loop_n(floor.get_ack), fill(floor.put_batch)),
            "persist-queue SQLiteAckQueue": timed(
                loop_n(pq_get_ack), fill(lambda items: [pq.put(i) for i in items])
            ),
            "litequeue (synchronous=NORMAL)": timed(
                loop_n(lq_get_ack), fill(lambda items: [lq.put(json.dumps(i)) for i in items])
            ),
        },
        number=50,  # short runs, many repetitions: fsync latency drifts on a shared disk
        repeat=25,
    )
    print()
    print(table("get + ack (per item)", get_ack, baseline="raw sqlite3 FULL (floor)"))

    # --- batches of 100 -------------------------------------------------------------------
    def ours_put_many(n: int) -> None:
        for _ in range(n // 100):
            ours.put_many([(payload(), Priority.NORMAL) for _ in range(100)])

    def floor_put_many(n: int) -> None:
        for _ in range(n // 100):
            floor.put_batch([payload() for _ in range(100)])

    def ours_lease_100(n: int) -> None:
        for _ in range(n // 100):
            with ours.lease(n=100):
                pass

    def floor_get_100(n: int) -> None:
        for _ in range(n // 100):
            floor.get_ack_batch(100)

    batched = compare(
        {
            "OfflineQueue.put_many(100)": timed(ours_put_many),
            "raw sqlite3 FULL, 100/commit (floor) put": timed(floor_put_many),
        },
        number=5_000,
        repeat=7,
    )
    print()
    print(
        table(
            "put, 100 per transaction (per item)",
            batched,
            baseline="raw sqlite3 FULL, 100/commit (floor) put",
        )
    )
    leased = compare(
        {
            "OfflineQueue lease(100)+ack": timed(
                ours_lease_100,
                fill(lambda items: ours.put_many([(i, Priority.NORMAL) for i in items])),
            ),
            "raw sqlite3 FULL, 100/commit (floor) get+ack": timed(
                floor_get_100, fill(floor.put_batch)
            ),
        },
        number=5_000,
        repeat=7,
    )
    print()
    print(
        table(
            "get + ack, 100 per transaction (per item)",
            leased,
            baseline="raw sqlite3 FULL, 100/commit (floor) get+ack",
        )
    )

    # --- drain rate as the queue empties --------------------------------------------------
    # Each case runs 3 times; the medians are shown (one fsync costs 0.2-3 ms on a shared disk).
    n_peer = min(n_drain, 5_000)
    print("\n## drain rate as the queue empties (items/s; median of 3 runs)")
    print(f"{'case':<36}  {'first 10%':>10}  {'last 10%':>10}  {'last/first':>10}")

    def rates(stamps: list[float]) -> tuple[float, float]:
        tenth = len(stamps) // 10
        first = tenth / (stamps[tenth] - stamps[0])
        last = tenth / (stamps[-1] - stamps[-tenth - 1])
        return first, last

    def drain_case(name: str, run: Callable[[], list[float]]) -> float:
        results = [rates(run()) for _ in range(3)]
        first = statistics.median(r[0] for r in results)
        last = statistics.median(r[1] for r in results)
        ratio = statistics.median(r[1] / r[0] for r in results)
        print(f"{name:<36}  {first:>10,.0f}  {last:>10,.0f}  {ratio:>9.2f}x")
        return ratio

    drained = OfflineQueue(path("drain.db"))

    def ours_drain() -> list[float]:
        for _ in range(n_drain // 1000):
            drained.put_many([(payload(), Priority.NORMAL) for _ in range(1000)])
        stamps: list[float] = []
        drained.drain(lambda item: stamps.append(time.perf_counter()), batch=50)
        return stamps

    def ours_lease_1() -> list[float]:
        drained.put_many([(payload(), Priority.NORMAL) for _ in range(n_peer)])
        stamps: list[float] = []
        while True:
            with drained.lease(n=1) as batch:
                if not batch:
                    break
            stamps.append(time.perf_counter())
        return stamps

    runs = count()

    def pq_drain() -> list[float]:
        pq2 = persistqueue.SQLiteAckQueue(
            path(f"pq-drain-{next(runs)}"), auto_commit=True, multithreading=True
        )
        for _ in range(n_peer):
            pq2.put(payload())
        stamps: list[float] = []
        for _ in range(n_peer):
            pq2.ack(pq2.get(block=False))
            stamps.append(time.perf_counter())
        return stamps

    def lq_drain() -> list[float]:
        lq2 = litequeue.LiteQueue(path(f"lq-drain-{next(runs)}.db"))
        for _ in range(n_peer):
            lq2.put(json.dumps(payload()))
        stamps: list[float] = []
        for _ in range(n_peer):
            msg = lq2.pop()
            lq2.done(msg.message_id)
            stamps.append(time.perf_counter())
        return stamps

    drain_ratio = drain_case(f"OfflineQueue.drain(batch=50) ({n_drain})", ours_drain)
    drain_case(f"OfflineQueue lease(1)+ack ({n_peer})", ours_lease_1)
    drain_case(f"persist-queue get+ack ({n_peer})", pq_drain)
    drain_case(f"litequeue pop+done ({n_peer})", lq_drain)

    # --- the targets ----------------------------------------------------------------------
    def ratio(results: dict[str, float], ours_name: str, other: str) -> float:
        return results[other] / results[ours_name]  # throughput ratio: ours / other

    print("\n## targets (throughput ratios)")
    checks = [
        (
            "durable put >= 0.9x floor",
            ratio(put, "OfflineQueue.put", "raw sqlite3 FULL (floor)"),
            0.9,
        ),
        (
            "get+ack >= 0.8x floor",
            ratio(get_ack, "OfflineQueue lease(1)+ack", "raw sqlite3 FULL (floor)"),
            0.8,
        ),
        (
            "get+ack >= 4x persist-queue",
            ratio(get_ack, "OfflineQueue lease(1)+ack", "persist-queue SQLiteAckQueue"),
            4.0,
        ),
        (
            "put_many >= 0.7x batched floor",
            ratio(
                batched, "OfflineQueue.put_many(100)", "raw sqlite3 FULL, 100/commit (floor) put"
            ),
            0.7,
        ),
        (
            "lease(100)+ack >= 0.7x batched floor",
            ratio(
                leased,
                "OfflineQueue lease(100)+ack",
                "raw sqlite3 FULL, 100/commit (floor) get+ack",
            ),
            0.7,
        ),
    ]
    checks.append(("drain rate last 10% >= 0.8x first 10%", drain_ratio, 0.8))
    for name, value, target in checks:
        print(f"{name:<40} {value:>6.2f}x  {'ok' if value >= target else 'MISSED'}")


if __name__ == "__main__":
    main()
