"""Crash tests: real child processes SIGKILLed at random moments while they use a queue file.

CI runs 50 kills of a putting child; `RESILIENCE_SOAK=1 pytest -m soak` runs 500.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resilience.queue import OfflineQueue
from resilience.testing import VirtualClock

CHILD = str(Path(__file__).with_name("_queue_child.py"))
SOAK = os.environ.get("RESILIENCE_SOAK") == "1"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def kill(child: subprocess.Popen[str]) -> list[str]:
    """SIGKILL the child; return the complete lines it wrote (a torn last line is dropped).

    Read through `child.stdout`, not `communicate()`: communicate reads the raw pipe and
    skips whatever an earlier `child.stdout.readline()` had already buffered, which lost
    acked items from the accounting when the parent was slow to read (a loaded machine).
    """
    child.send_signal(signal.SIGKILL)
    assert child.stdout is not None
    out = child.stdout.read()  # to EOF: the child is dead, nobody else holds the pipe
    child.stdout.close()
    child.communicate()  # reap it, drain stderr
    return [line[:-1] for line in out.splitlines(keepends=True) if line.endswith("\n")]


def put_and_kill(path: str, kills: int, seed: int) -> int:
    """Kill a putting child `kills` times; after each, check every reported put is in the file,
    in order, once. Returns how many puts were reported in all."""
    rng = random.Random(seed)
    reported_total = 0
    for run in range(kills):
        child = spawn("put", path, str(run))
        if rng.random() < 0.8:
            assert child.stdout is not None
            child.stdout.readline()  # it is putting: kill it mid-stream, not while starting
            reported_total += 1
            time.sleep(rng.uniform(0.0, 0.03))
        else:
            time.sleep(rng.uniform(0.0, 0.15))  # anywhere, opening the file included
        reported = [int(s) for s in kill(child)]
        reported_total += len(reported)
        q = OfflineQueue(path)
        try:
            items = q.items()
        finally:
            q.close()
        seqs = [item.seq for item in items]
        mine = [(item.seq, item.payload["i"]) for item in items if item.payload["run"] == run]
        assert set(reported) <= set(seqs), f"run {run}: a put that returned is missing"
        assert [i for _, i in mine] == list(range(len(mine))), f"run {run}: gap, dup or reorder"
        assert len(seqs) == len(set(seqs))
        assert seqs == sorted(seqs)
    return reported_total


def test_putting_child_killed_50_times_loses_no_returned_put(tmp_path: Path) -> None:
    total = put_and_kill(str(tmp_path / "outbox.db"), 50, seed=1234)
    assert total > 50


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="set RESILIENCE_SOAK=1 to run")
def test_putting_child_killed_500_times(tmp_path: Path) -> None:
    total = put_and_kill(str(tmp_path / "outbox.db"), 500, seed=int(time.time()))
    print(f"500 kills, {total} returned puts, all present in order")


def test_consumer_killed_holding_a_lease_gets_its_items_back(tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.db")
    q = OfflineQueue(path)
    q.put_many([({"i": i}, 1) for i in range(10)])
    q.close()
    child = spawn("lease", path, "4")
    assert child.stdout is not None
    held = [int(s) for s in child.stdout.readline().split()]
    kill(child)
    assert held == [1, 2, 3, 4]
    # The child leased on the real wall clock for 30 s; look from a virtual clock set to now.
    clock = VirtualClock(wall=time.time())
    q = OfflineQueue(path, clock=clock)
    with q.lease(n=100) as batch:
        assert [item.seq for item in batch] == [5, 6, 7, 8, 9, 10]
    clock.advance(31.0)
    with q.lease(n=100) as batch:
        assert [(item.seq, item.attempts) for item in batch] == [(s, 0) for s in held]
    assert len(q) == 0


def test_acked_items_are_never_delivered_again(tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.db")
    q = OfflineQueue(path)
    all_seqs = set(q.put_many([({"i": i}, 1) for i in range(3000)]))
    q.close()
    rng = random.Random(99)
    acked: list[int] = []
    clock = VirtualClock(wall=time.time() + 3600)  # past any lease a killed child held
    for _ in range(5):
        child = spawn("consume", path)
        assert child.stdout is not None
        acked.append(int(child.stdout.readline()))
        time.sleep(rng.uniform(0.0, 0.05))
        acked += [int(s) for s in kill(child)]
    assert len(acked) == len(set(acked)) > 5
    q = OfflineQueue(path, clock=clock)
    rest: list[int] = []
    q.drain(lambda item: rest.append(item.seq), batch=500)
    assert not set(acked) & set(rest), "an acked item was delivered again"
    # Nothing lost: every item was acked by a child, is delivered now, or was acked by a
    # child that died between its ack and its report (at most one per kill).
    missing = all_seqs - set(acked) - set(rest)
    assert len(missing) <= 5
