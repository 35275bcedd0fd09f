"""One process of the fleet harness (tests/scenarios/test_fleet_scenarios.py).

    python _fleet_child.py SPEC SCHEDULE_JSON DURATION

SPEC builds the store (`SQLiteStore(path)` / `RedisStore(url, timeout=...)`). The child prints
"ready" once its breaker is built, then reads the start time T0 (wall clock) from stdin: from
then on, THREADS threads call one breaker for DURATION seconds. The backend is down while
`time.time() - T0` falls in one of the SCHEDULE's [start, end) intervals. Prints one JSON line:
outcome counts, anything unexpected that a call raised, the trial calls this process ran per
half-open round, and the breaker's final state.

Plain `python`, no test hooks, except one: a subclass notes which epoch `_admit` gave each call,
so the harness can tell a fleet trial call (epoch <= -3, round = -2 - epoch) from a normal one.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from collections import Counter

import resilience as rs
from resilience.stores import RedisStore, SQLiteStore

THREADS = 3
_local = threading.local()


class Breaker(rs.CircuitBreaker):
    def _admit(self) -> int:
        epoch = super()._admit()
        _local.epoch = epoch
        return epoch


def main() -> None:
    spec, schedule_text, duration_text = sys.argv[1:4]
    schedule = [tuple(x) for x in json.loads(schedule_text)]
    duration = float(duration_text)
    store = eval(spec, {"SQLiteStore": SQLiteStore, "RedisStore": RedisStore})
    br = Breaker(
        "backend",
        minimum_calls=5,
        window=rs.CountWindow(10),
        open_duration=0.5,
        half_open_calls=3,
        store=store,
    )
    print("ready", flush=True)
    t0 = float(sys.stdin.readline())
    lock = threading.Lock()
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    trials: dict[int, list[bool]] = {}

    def backend() -> str:
        t = time.time() - t0
        up = not any(start <= t < end for start, end in schedule)
        epoch = getattr(_local, "epoch", 0)
        if epoch <= -3:
            with lock:
                trials.setdefault(-2 - epoch, []).append(up)
        if not up:
            raise ConnectionError("backend down")
        return "ok"

    def worker() -> None:
        while time.time() < t0 + duration:
            try:
                br.call(backend)
                kind = "ok"
            except ConnectionError:
                kind = "own_error"
            except rs.CircuitOpenError:
                kind = "open"
            except BaseException:  # the point: nothing else may come out
                kind = "unexpected"
                with lock:
                    unexpected.append(traceback.format_exc()[-1500:])
            with lock:
                outcomes[kind] += 1
            time.sleep(0.01)

    while time.time() < t0:
        time.sleep(0.005)
    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = br.state
    print(
        json.dumps(
            {
                "outcomes": dict(outcomes),
                "unexpected": unexpected,
                "trials": {str(k): v for k, v in trials.items()},
                "state": state.value,
            }
        )
    )


if __name__ == "__main__":
    main()
