"""Offline-first scenarios (SCENARIOS.md 1, 2, 5) on real SQLite files and real processes,
with virtual time for the bandwidth budget."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import resilience as rs
from resilience.queue import Item
from resilience.testing import VirtualClock

CHILD = str(Path(__file__).parent.parent / "_queue_child.py")
P = rs.Priority


def test_1_offline_queue_survives_a_crash_then_syncs_critical_first(tmp_path: Path) -> None:
    """1000 operations queued while offline; the process is SIGKILLed; after a restart all
    1000 come back in order, then sync over a bandwidth-limited link, CRITICAL ones first,
    each exactly once (a sink keyed by idempotency key sees no conflict)."""
    path = str(tmp_path / "outbox.db")
    child = subprocess.Popen([sys.executable, CHILD, "put1000", path], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"done\n"
    child.send_signal(signal.SIGKILL)  # killed, not closed: no clean shutdown
    child.wait()

    clock = VirtualClock()
    q = rs.OfflineQueue(path, clock=clock)  # the restart
    recovered = q.items()
    assert [item.payload["op"] for item in recovered] == list(range(1000))
    assert [item.key for item in recovered] == [f"op-{i}" for i in range(1000)]
    assert len(q) == 1000

    # Back online, on a 16 KB/s cellular-grade link.
    sink: dict[str, object] = {}
    order: list[Item] = []

    def send(item: Item) -> None:
        assert item.key not in sink, "delivered twice"
        sink[item.key or ""] = item.payload
        order.append(item)

    report = q.drain(send, bytes_per_second=16_000.0)
    assert report.delivered == 1000
    assert report.remaining == 0
    assert report.error is None
    assert len(sink) == 1000
    critical = [i.payload["op"] for i in order[:100]]
    assert critical == list(range(0, 1000, 10))  # all CRITICAL first, in the order queued
    ranks = [(-int(i.priority), i.seq) for i in order]
    assert ranks == sorted(ranks)
    total_bytes = sum(i.size for i in order)
    # The budget held: the sync took as long as the bytes need on that link (the last item
    # is sent at the start of its slot).
    assert report.duration == pytest.approx((total_bytes - order[-1].size) / 16_000.0)


def test_2_priority_sync_on_a_thin_link(tmp_path: Path) -> None:
    """Queued CRITICAL, NORMAL, LOW, NORMAL, HIGH; on reconnect over a thin link they go out
    CRITICAL, HIGH, NORMAL, NORMAL, LOW, paced by the byte budget."""
    clock = VirtualClock()
    q = rs.OfflineQueue(str(tmp_path / "outbox.db"), clock=clock)
    queued = [P.CRITICAL, P.NORMAL, P.LOW, P.NORMAL, P.HIGH]
    for n, priority in enumerate(queued):
        q.put({"n": n, "reading": "x" * 200}, priority=priority)
    sent: list[tuple[str, int, float]] = []

    def send(item: Item) -> None:
        sent.append((item.priority.name, item.payload["n"], clock.monotonic()))

    report = q.drain(send, bytes_per_second=1_000.0)  # ~8 kbit/s
    assert [(name, n) for name, n, _ in sent] == [
        ("CRITICAL", 0),
        ("HIGH", 4),
        ("NORMAL", 1),
        ("NORMAL", 3),
        ("LOW", 2),
    ]
    size = len(json.dumps({"n": 0, "reading": "x" * 200}, separators=(",", ":")))
    assert [t for _, _, t in sent] == pytest.approx([k * size / 1_000.0 for k in range(5)])
    assert report.delivered == 5


def test_5_event_replay_after_reconnect(tmp_path: Path) -> None:
    """A client that missed events 100-200 gets them by sequence number, with no gap; the
    producer's replay of the same events (same keys) adds no duplicate."""
    clock = VirtualClock()
    q = rs.OfflineQueue(str(tmp_path / "events.db"), clock=clock)
    seqs = q.put_many([({"event": i}, P.NORMAL, f"evt-{i}") for i in range(1, 301)])
    assert seqs == list(range(1, 301))  # seq = event number: the client can ask by it

    received: list[int] = []
    # The client takes events 1-99 and acks them.
    with q.lease(n=99) as batch:
        received += [item.payload["event"] for item in batch]
    # It then takes 100-200, and disconnects (crashes) before acking: they are not lost.
    lost = q.lease(n=101, visibility=30.0)
    assert [i.seq for i in lost.__enter__()] == list(range(100, 201))

    # The producer, unsure what got through, replays 100-200: the keys dedupe them.
    again = q.put_many([({"event": i}, P.NORMAL, f"evt-{i}") for i in range(100, 201)])
    assert again == list(range(100, 201))
    assert len(q) == 300 - 99

    # On reconnect the client asks for what it missed by sequence number: no gap.
    missed = q.items(100, 201)
    assert [item.payload["event"] for item in missed] == list(range(100, 201))

    # And once the dead connection's lease expires, normal delivery resumes in order.
    clock.advance(30.0)
    q.drain(lambda item: received.append(item.payload["event"]))
    assert received == list(range(1, 301))
    assert len(q) == 0
