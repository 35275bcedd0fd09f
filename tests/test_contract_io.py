"""Acceptance tests, DESIGN.md's contract: the httpx transports (against a real server on
127.0.0.1), the offline priority queue and the CRDTs, called exactly as the contract writes
them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import resilience as rs
from _servers import Drop, HTTPTestServer, Reply
from resilience.testing import VirtualClock

httpx = pytest.importorskip("httpx")

# --- httpx integration ------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as srv:
        yield srv


@pytest.fixture
def server2() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as srv:
        yield srv


def test_transport_constructor_as_written_and_retries_5xx(server: HTTPTestServer) -> None:
    from resilience.integrations.httpx import ResilientTransport

    t = ResilientTransport(
        policy=None,
        transport=None,
        tiers=None,
        retry_methods=frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}),
    )
    server.script(Reply(503), Reply(200, b"hello"))
    with httpx.Client(transport=t) as client:
        r = client.get(server.url + "/x")
    assert r.status_code == 200
    assert r.text == "hello"
    assert len(server.requests) == 2


def test_transport_gives_the_last_response_when_the_policy_gives_up(
    server: HTTPTestServer,
) -> None:
    from resilience.integrations.httpx import ResilientTransport

    clock = VirtualClock()
    policy = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.5), clock=clock)
    t = ResilientTransport(policy=policy, clock=clock)
    server.script(Reply(500, b"a"), Reply(502, b"b"), Reply(503, b"last"))
    with httpx.Client(transport=t) as client:
        r = client.get(server.url + "/x")
    assert r.status_code == 503
    assert r.text == "last"
    assert len(server.requests) == 3
    assert clock.sleeps == [0.5, 0.5]


def test_transport_honours_retry_after_on_429(server: HTTPTestServer) -> None:
    from resilience.integrations.httpx import ResilientTransport

    clock = VirtualClock()
    policy = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.1), clock=clock)
    t = ResilientTransport(policy=policy, clock=clock)
    server.script(Reply(429, headers={"Retry-After": "3"}), Reply(200, b"ok"))
    with httpx.Client(transport=t) as client:
        assert client.get(server.url + "/").status_code == 200
    assert clock.sleeps == [3.0]


def test_transport_honours_retry_after_on_503_with_any_policy(server: HTTPTestServer) -> None:
    # "(429 and 503 with Retry-After)": also when the policy is the caller's own Retry, whose
    # classifier (the default) calls a 503 TRANSIENT, not RATE_LIMITED
    from resilience.integrations.httpx import ResilientTransport

    clock = VirtualClock()
    policy = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.1), clock=clock)
    t = ResilientTransport(policy=policy, clock=clock)
    server.script(Reply(503, headers={"Retry-After": "2"}), Reply(200, b"ok"))
    with httpx.Client(transport=t) as client:
        assert client.get(server.url + "/").text == "ok"
    assert clock.sleeps == [2.0]
    clock = VirtualClock()
    t = ResilientTransport(clock=clock)  # policy=None: the same
    server.script(Reply(503, headers={"Retry-After": "2"}), Reply(200, b"ok"))
    with httpx.Client(transport=t) as client:
        assert client.get(server.url + "/").text == "ok"
    assert clock.sleeps == [2.0]


def test_transport_408_and_425_are_failures_too(server: HTTPTestServer) -> None:
    from resilience.integrations.httpx import ResilientTransport

    clock = VirtualClock()
    policy = rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.1), clock=clock)
    t = ResilientTransport(policy=policy, clock=clock)
    server.script(Reply(408), Reply(425), Reply(200, b"third"))
    with httpx.Client(transport=t) as client:
        assert client.get(server.url + "/").text == "third"
    assert len(server.requests) == 3


def test_transport_non_retry_methods_are_sent_once(server: HTTPTestServer) -> None:
    from resilience.integrations.httpx import ResilientTransport

    clock = VirtualClock()
    t = ResilientTransport(clock=clock)
    server.script(Reply(503, b"no"), Reply(200))
    with httpx.Client(transport=t) as client:
        r = client.post(server.url + "/orders", content=b"{}")
    assert r.status_code == 503
    assert len(server.requests) == 1


def test_transport_error_is_raised_as_httpx_raises_it() -> None:
    from resilience.integrations.httpx import ResilientTransport

    srv = HTTPTestServer().start()
    url = srv.url
    srv.stop()  # nothing listens there now
    clock = VirtualClock()
    t = ResilientTransport(clock=clock)
    with httpx.Client(transport=t) as client, pytest.raises(httpx.ConnectError):
        client.get(url + "/")


def test_transport_circuit_open_error_raised_as_is(server: HTTPTestServer) -> None:
    from resilience.integrations.httpx import ResilientTransport

    clock = VirtualClock()
    t = ResilientTransport(policy=rs.Retry(max_attempts=1, clock=clock), clock=clock)
    server.default = Reply(503, b"down")
    with httpx.Client(transport=t) as client:
        for _ in range(5):  # the default per-host breaker: minimum_calls=5, rate 0.5
            assert client.get(server.url + "/").status_code == 503
        with pytest.raises(rs.CircuitOpenError):
            client.get(server.url + "/")
    assert len(server.requests) == 5


def test_transport_tiers_fail_over_and_return_to_the_first(
    server: HTTPTestServer, server2: HTTPTestServer
) -> None:
    from resilience.integrations.httpx import ResilientTransport

    clock = VirtualClock()
    server2.default = Reply(200, b"second")
    t = ResilientTransport(tiers=[server.url, server2.url], clock=clock)
    with httpx.Client(transport=t, base_url="http://service.invalid") as client:
        server.default = Reply(200, b"first")
        assert client.get("/q").text == "first"
        server.default = Drop()
        assert client.get("/q").text == "second"  # the same request moved on
        assert server2.requests[-1].path == "/q"
        server.default = Reply(200, b"first")
        for _ in range(10):  # the first tier's breaker opens; calls go to the second
            client.get("/q")
        clock.advance(60)
        texts = [client.get("/q").text for _ in range(5)]
    assert texts[-1] == "first"


@pytest.mark.anyio
async def test_async_transport(server: HTTPTestServer) -> None:
    from resilience.integrations.httpx import AsyncResilientTransport

    clock = VirtualClock()
    t = AsyncResilientTransport(
        policy=rs.Retry(max_attempts=3, backoff=rs.Backoff.constant(0.2), clock=clock),
        clock=clock,
    )
    server.script(Reply(502), Reply(200, b"async ok"))
    async with httpx.AsyncClient(transport=t) as client:
        r = await client.get(server.url + "/a")
    assert r.text == "async ok"
    assert clock.sleeps == [0.2]


# --- offline priority queue -----------------------------------------------------------------


def test_queue_put_returns_seq_and_key_dedups(tmp_path: Path) -> None:
    q = rs.OfflineQueue(str(tmp_path / "outbox.db"), max_items=None, max_attempts=10)
    try:
        a = q.put({"n": 1}, priority=rs.Priority.NORMAL, key=None)
        b = q.put({"n": 2}, priority=rs.Priority.NORMAL, key="order-2")
        c = q.put({"n": 2, "again": True}, priority=rs.Priority.NORMAL, key="order-2")
        assert isinstance(a, int)
        assert isinstance(b, int)
        assert b > a
        assert c == b  # deduplicated by the idempotency key
        assert len(q) == 2
    finally:
        q.close()


def test_queue_priority_order_and_fifo_within_a_priority() -> None:
    assert rs.Priority.CRITICAL > rs.Priority.HIGH > rs.Priority.NORMAL > rs.Priority.LOW
    q = rs.OfflineQueue(":memory:")
    try:
        q.put("low-1", priority=rs.Priority.LOW)
        q.put("n-1")
        q.put("crit-1", priority=rs.Priority.CRITICAL)
        q.put("n-2")
        q.put("high-1", priority=rs.Priority.HIGH)
        q.put("crit-2", priority=rs.Priority.CRITICAL)
        seqs = q.put_many([("n-3", rs.Priority.NORMAL), ("low-2", rs.Priority.LOW)])
        assert isinstance(seqs, list)
        assert len(seqs) == 2
        assert seqs[0] < seqs[1]
        with q.lease(n=10, visibility=30.0) as batch:
            order = [item.payload for item in batch]
        assert order == ["crit-1", "crit-2", "high-1", "n-1", "n-2", "n-3", "low-1", "low-2"]
        assert len(q) == 0  # acked on clean exit
    finally:
        q.close()


def test_lease_items_fields_and_release_on_exception() -> None:
    clock = VirtualClock()
    q = rs.OfflineQueue(":memory:", clock=clock)
    try:
        seq = q.put({"to": "x"}, priority=rs.Priority.HIGH, key="k1")
        with pytest.raises(RuntimeError), q.lease(n=10, visibility=30.0) as batch:
            (item,) = list(batch)
            assert item.seq == seq
            assert item.payload == {"to": "x"}
            assert item.priority is rs.Priority.HIGH
            assert item.attempts == 0
            assert item.key == "k1"
            raise RuntimeError("crash while handling")
        assert len(q) == 1  # released, not acked
        with q.lease() as batch:  # available again at once (released, not left to expire)
            assert [i.seq for i in batch] == [seq]
        assert len(q) == 0
    finally:
        q.close()


def test_ack_and_nack() -> None:
    q = rs.OfflineQueue(":memory:", max_attempts=2)
    try:
        a = q.put("a")
        b = q.put("b")
        with q.lease(n=10) as batch:
            assert [i.seq for i in batch] == [a, b]
            q.ack([a])
            q.nack([b])  # left as set: b is queued again with one failed attempt
        assert len(q) == 1
        assert [(i.seq, i.attempts) for i in q.items()] == [(b, 1)]
        with q.lease(n=10):
            q.nack([b])  # the second failed attempt: dead letter (max_attempts=2)
        assert [d.seq for d in q.dead_letters()] == [b]
        assert len(q) == 0
        assert q.stats().dead_letters == 1
    finally:
        q.close()


def test_queue_full() -> None:
    q = rs.OfflineQueue(":memory:", max_items=2)
    try:
        q.put(1)
        q.put(2)
        with pytest.raises(rs.QueueFull):
            q.put(3)
        assert issubclass(rs.QueueFull, rs.ResilienceError)
    finally:
        q.close()


def test_drain_transient_stops_one_pass_permanent_dead_letters() -> None:
    q = rs.OfflineQueue(":memory:", max_attempts=10)
    try:
        for i in range(5):
            q.put(i)
        sent: list[int] = []

        def send(item: Any) -> None:
            if item.payload == 1:
                raise ValueError("rejected")  # PERMANENT: dead letter, draining goes on
            if item.payload == 3:
                raise ConnectionError("sink down")  # TRANSIENT: stays queued, drain stops
            sent.append(item.payload)

        report = q.drain(send, batch=50, rate=None, bytes_per_second=None, backoff=None)
        assert isinstance(report, rs.DrainReport)
        assert sent == [0, 2]
        assert [d.payload for d in q.dead_letters()] == [1]
        assert len(q) == 2  # 3 (attempts + 1) and 4
        items = {i.payload: i for i in q.items()}
        assert items[3].attempts == 1
        assert report.delivered == 2
        assert report.dead_lettered == 1
    finally:
        q.close()


def test_drain_with_backoff_waits_and_resumes_until_empty() -> None:
    clock = VirtualClock()
    q = rs.OfflineQueue(":memory:", clock=clock)
    try:
        for i in range(3):
            q.put(i)
        failures = iter([ConnectionError("a"), ConnectionError("b")])
        sent: list[int] = []

        def send(item: Any) -> None:
            err = next(failures, None)
            if err is not None:
                raise err
            sent.append(item.payload)

        report = q.drain(send, backoff=rs.Backoff.constant(1.0))
        assert sorted(sent) == [0, 1, 2]
        assert len(q) == 0
        assert report.delivered == 3
        assert sum(clock.sleeps) >= 2.0
    finally:
        q.close()


def test_drain_rate_and_bytes_per_second_pace_on_the_clock() -> None:
    clock = VirtualClock()
    q = rs.OfflineQueue(":memory:", clock=clock)
    try:
        for i in range(5):
            q.put(i)
        report = q.drain(lambda item: None, rate=10)
        assert report.delivered == 5
        assert sum(clock.sleeps) == pytest.approx(0.4)  # 5 items at 10/s: 4 gaps of 0.1 s
        clock = VirtualClock()
        q2 = rs.OfflineQueue(":memory:", clock=clock)
        for _ in range(3):
            q2.put("x" * 98)  # 100 bytes of JSON each
        q2.drain(lambda item: None, bytes_per_second=100)
        assert sum(clock.sleeps) == pytest.approx(2.0, abs=0.1)
        q2.close()
    finally:
        q.close()


def test_attempts_reaching_max_attempts_dead_letter() -> None:
    q = rs.OfflineQueue(":memory:", max_attempts=2)
    try:
        q.put("x")

        def send(item: Any) -> None:
            raise ConnectionError("down")

        q.drain(send)
        assert len(q) == 1
        q.drain(send)
        assert len(q) == 0
        assert [d.payload for d in q.dead_letters()] == ["x"]
    finally:
        q.close()


@pytest.mark.anyio
async def test_adrain() -> None:
    q = rs.OfflineQueue(":memory:")
    try:
        q.put({"a": 1})
        got: list[Any] = []

        async def asend(item: Any) -> None:
            got.append(item.payload)

        report = await q.adrain(asend)
        assert got == [{"a": 1}]
        assert report.delivered == 1
    finally:
        q.close()


def test_a_put_that_returned_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    q = rs.OfflineQueue(path)
    q.put({"durable": True}, key="d1")
    q.close()
    q = rs.OfflineQueue(path)
    try:
        assert len(q) == 1
        with q.lease() as batch:
            assert [i.payload for i in batch] == [{"durable": True}]
    finally:
        q.close()


def test_payloads_must_be_json() -> None:
    q = rs.OfflineQueue(":memory:")
    try:
        with pytest.raises((TypeError, rs.ResilienceError)):
            q.put({1, 2})
        assert len(q) == 0
    finally:
        q.close()


# --- CRDTs -------------------------------------------------------------------------------------


def test_counters() -> None:
    from resilience import crdt

    a, b = crdt.GCounter("a"), crdt.GCounter("b")
    a.increment(2)
    b.increment(3)
    merged = a.merge(b)
    assert isinstance(merged, crdt.GCounter)
    assert merged.value == 5
    assert a.value == 2
    assert b.value == 3
    p, n = crdt.PNCounter("a"), crdt.PNCounter("b")
    p.increment(5)
    n.decrement(2)
    assert p.merge(n).value == 3


def test_registers() -> None:
    from resilience import crdt

    clock = VirtualClock()
    a, b = crdt.LWWRegister("a", clock=clock), crdt.LWWRegister("b", clock=clock)
    a.set("old")
    clock.advance(1)
    b.set("new")
    assert a.merge(b).value == "new"
    assert b.merge(a).value == "new"
    x, y = crdt.MVRegister("x"), crdt.MVRegister("y")
    x.set(1)
    y.set(2)
    assert sorted(x.merge(y).values) == [1, 2]


def test_orset_add_wins() -> None:
    from resilience import crdt

    a, b = crdt.ORSet("a"), crdt.ORSet("b")
    b.merge(a.add("milk"))  # b now knows a's add ... (merge is pure: keep the result)
    b = b.merge(a)
    assert "milk" in b
    b.remove("milk")  # ... and removes it, while a adds it again concurrently
    a.add("milk")
    assert "milk" in a.merge(b)
    assert "milk" in b.merge(a)
    assert a.merge(b).value == frozenset({"milk"}) or set(a.merge(b).value) == {"milk"}


def test_maps() -> None:
    from resilience import crdt

    clock = VirtualClock()
    m1, m2 = crdt.LWWMap("a", clock=clock), crdt.LWWMap("b", clock=clock)
    m1.set("theme", "dark")
    clock.advance(1)
    m2.set("theme", "light")
    assert m1.merge(m2).value == {"theme": "light"}
    o1, o2 = crdt.ORMap("a"), crdt.ORMap("b")
    c1, c2 = crdt.GCounter("a"), crdt.GCounter("b")
    c1.increment(1)
    c2.increment(2)
    o1.set("hits", c1)  # ORMap values are CRDTs themselves
    o2.set("hits", c2)
    merged = o1.merge(o2)
    assert isinstance(merged.get("hits"), crdt.GCounter)
    assert merged.get("hits").value == 3


def _examples() -> list[tuple[Any, Any, Any]]:
    from resilience import crdt

    clock = VirtualClock()
    g = [crdt.GCounter(r) for r in "abc"]
    g[0].increment(1)
    g[1].increment(2)
    g[2].increment(4)
    s = [crdt.ORSet(r) for r in "abc"]
    s[0].add(1)
    s[1].add(2)
    s[1].remove(2)
    s[2].add(1)
    s[2].remove(1)
    lw = [crdt.LWWRegister(r, clock=clock) for r in "abc"]
    for i, reg in enumerate(lw):
        reg.set(i)
    mv = [crdt.MVRegister(r) for r in "abc"]
    for i, reg in enumerate(mv):
        reg.set(i)
    pn = [crdt.PNCounter(r) for r in "abc"]
    pn[0].increment(3)
    pn[1].decrement(1)
    pn[2].increment(1)
    lm = [crdt.LWWMap(r, clock=clock) for r in "abc"]
    for i, m in enumerate(lm):
        m.set("k", i)
        m.set(f"k{i}", i)
    om = [crdt.ORMap(r) for r in "abc"]
    for i, m in enumerate(om):
        m.update("k", lambda reg, i=i: reg.set(i))
    om[2].remove("k")
    return [tuple(x) for x in (g, s, lw, mv, pn, lm, om)]  # type: ignore[misc]


@pytest.mark.parametrize("trio", _examples(), ids=lambda t: type(t[0]).__name__)
def test_join_laws_and_purity_and_equality(trio: tuple[Any, Any, Any]) -> None:
    from resilience import crdt

    x, y, z = trio
    before = [t.to_dict() for t in trio]
    assert x.merge(y) == y.merge(x)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(x) == x
    assert type(x.merge(y)) is type(x)
    assert [t.to_dict() for t in trio] == before  # inputs unchanged
    # == compares state, not the replica id
    joined_at_x = x.merge(y).merge(z)
    joined_at_z = z.merge(y).merge(x)
    assert joined_at_x.replica != joined_at_z.replica or joined_at_x == joined_at_z
    assert joined_at_x == joined_at_z
    # to_dict is JSON-safe, versioned, type-tagged; from_dict gives an equal state back
    d = x.to_dict()
    assert isinstance(d, dict)
    assert json.loads(json.dumps(d)) == d
    back = crdt.from_dict(json.loads(json.dumps(d)))
    assert type(back) is type(x)
    assert back == x


def test_every_mutator_returns_a_delta_a_peer_can_merge() -> None:
    from resilience import crdt

    clock = VirtualClock()
    cases: list[tuple[Any, Any, Any]] = [
        (crdt.GCounter("a"), crdt.GCounter("b"), lambda c: c.increment(2)),
        (crdt.PNCounter("a"), crdt.PNCounter("b"), lambda c: c.decrement(2)),
        (
            crdt.LWWRegister("a", clock=clock),
            crdt.LWWRegister("b", clock=clock),
            lambda c: c.set("v"),
        ),
        (crdt.MVRegister("a"), crdt.MVRegister("b"), lambda c: c.set("v")),
        (crdt.ORSet("a"), crdt.ORSet("b"), lambda c: c.add("v")),
        (crdt.LWWMap("a", clock=clock), crdt.LWWMap("b", clock=clock), lambda c: c.set("k", 1)),
        (crdt.ORMap("a"), crdt.ORMap("b"), lambda c: c.update("k", lambda r: r.set(1))),
    ]
    for mine, peer, mutate in cases:
        delta = mutate(mine)
        assert type(delta) is type(mine)
        assert peer.merge(delta) == mine, type(mine).__name__
    # removals too
    s, peer = crdt.ORSet("a"), crdt.ORSet("b")
    peer = peer.merge(s.add("x"))
    peer = peer.merge(s.remove("x"))
    assert "x" not in peer
    assert peer == s


def test_hybrid_logical_clock_is_public() -> None:
    from resilience import crdt

    hlc = crdt.HybridLogicalClock(clock=VirtualClock())
    assert hlc.now() < hlc.now()
