"""A child process for the queue's crash tests: it works on a queue file until it is killed.

Usage: python tests/_queue_child.py MODE PATH [ARG]

- put PATH RUN: put {"run": RUN, "i": i} for i = 0, 1, ... forever; prints each seq, flushed,
  only AFTER `put` returned.
- put1000 PATH: put 1000 operations (keys "op-<i>", every 10th CRITICAL, then HIGH/NORMAL/LOW
  in turn), print "done" and wait to be killed.
- lease PATH N: lease N items for 30 s (wall time), print their seqs, wait to be killed.
- consume PATH: lease(1) + ack forever; prints each seq after its ack returned.
"""

from __future__ import annotations

import sys
import threading

from resilience.queue import OfflineQueue, Priority


def _wait_for_the_kill() -> None:
    """Block until the parent SIGKILLs us (bounded, in case it never does)."""
    threading.Event().wait(60)


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    out = sys.stdout
    q = OfflineQueue(path)
    if mode == "put":
        run = int(sys.argv[3])
        i = 0
        while True:
            seq = q.put({"run": run, "i": i})
            out.write(f"{seq}\n")
            out.flush()
            i += 1
    elif mode == "put1000":
        kinds = (Priority.HIGH, Priority.NORMAL, Priority.LOW)
        for i in range(1000):
            priority = Priority.CRITICAL if i % 10 == 0 else kinds[i % 3]
            q.put({"op": i, "body": f"operation {i}"}, priority=priority, key=f"op-{i}")
        out.write("done\n")
        out.flush()
        _wait_for_the_kill()
    elif mode == "lease":
        lease = q.lease(n=int(sys.argv[3]), visibility=30.0)
        items = lease.__enter__()
        out.write(" ".join(str(item.seq) for item in items) + "\n")
        out.flush()
        _wait_for_the_kill()
    elif mode == "consume":
        while True:
            with q.lease(n=1) as batch:
                if not batch:
                    break
            out.write(f"{batch[0].seq}\n")
            out.flush()
        _wait_for_the_kill()
    else:  # pragma: no cover
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
