"""RedisStreamTransport against a real redis-server, HttpTransport against a real HTTP server
on 127.0.0.1 (its ASGI app served by tests/_asgi_http.py), and the lazy imports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from resilience import crdt
from resilience.testing import VirtualClock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _asgi_http import ASGIServer
from redis_server import RedisServer, redis_server, redis_url  # noqa: F401

redis = pytest.importorskip("redis")

SECRET = b"transport-tests-shared-key-0123"


def test_import_crdt_imports_neither_redis_nor_httpx() -> None:
    code = (
        "import sys; from resilience import crdt; "
        "print('redis' in sys.modules, 'httpx' in sys.modules); "
        "crdt.RedisStreamTransport; crdt.HttpTransport; "
        "print('redis' in sys.modules, 'httpx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] * 4  # loaded only when a transport is made
    with pytest.raises(AttributeError):
        crdt.NoSuchTransport  # noqa: B018


# --- Redis Streams -------------------------------------------------------------------------


@pytest.fixture
def fleet(redis_url: str) -> Iterator[list[crdt.Replicator]]:  # noqa: F811
    reps = [
        crdt.Replicator(r, crdt.RedisStreamTransport(redis_url, "t", r, refresh=0.0), secret=SECRET)
        for r in ("a", "b", "c")
    ]
    yield reps
    for rep in reps:
        rep.transport.close()  # type: ignore[attr-defined]


@pytest.mark.redis
def test_deltas_flow_through_redis_streams_between_replicas(
    fleet: list[crdt.Replicator],
    redis_url: str,  # noqa: F811
) -> None:
    a, b, c = fleet
    for rep in fleet:
        rep.add("cart", crdt.ORSet(rep.replica))
        rep.add("hits", crdt.GCounter(rep.replica))
    a.update("cart", lambda s: s.add("apple"))
    b.update("hits", lambda n: n.increment(3))
    c.update("cart", lambda s: s.add("pear"))
    for rep in fleet:
        rep.poll()
    assert a.digest() == b.digest() == c.digest()
    assert c["cart"].value == {"apple", "pear"}
    assert a["hits"].value == 3
    raw = redis.Redis.from_url(redis_url)
    assert {m.decode() for m in raw.smembers("t:replicas")} == {"a", "b", "c"}
    assert raw.xlen("t:a") == 1
    assert set(raw.hgetall("t:positions:b")) == {b"t:a", b"t:c"}  # b's consumer positions
    transport: Any = a.transport
    assert transport.stats["sent"] == 1
    assert transport.stats["received"] == 2
    assert transport.stats["bytes_sent"] > 100
    raw.close()


@pytest.mark.redis
def test_a_restarted_replica_resumes_from_its_stored_positions(redis_url: str) -> None:  # noqa: F811
    a = crdt.Replicator("a", crdt.RedisStreamTransport(redis_url, "r", "a", refresh=0.0))
    b_transport = crdt.RedisStreamTransport(redis_url, "r", "b", refresh=0.0)
    a.add("n", crdt.GCounter("a"))
    for _ in range(5):
        a.update("n", lambda c: c.increment(1))
    assert b_transport.fetch() == 5
    b_transport.close()
    again = crdt.RedisStreamTransport(redis_url, "r", "b", refresh=0.0)
    assert again.receive() is None  # nothing new since the stored position
    a.update("n", lambda c: c.increment(1))
    assert again.receive() is not None


@pytest.mark.redis
def test_streams_are_trimmed_and_anti_entropy_by_digest_repairs_what_was_trimmed(
    redis_url: str,  # noqa: F811
) -> None:
    def make(r: str) -> crdt.Replicator:
        t = crdt.RedisStreamTransport(redis_url, "trim", r, maxlen=100, refresh=0.0)
        return crdt.Replicator(r, t)

    a, b = make("a"), make("b")
    a.add("s", crdt.ORSet("a"))
    for i in range(2_000):
        a.update("s", lambda s, i=i: s.add(i))
    raw = redis.Redis.from_url(redis_url)
    assert raw.xlen("trim:a") < 300  # MAXLEN ~ 100: about 100, never all 2000
    b.poll()
    assert "s" not in b or len(b["s"]) < 2_000  # the first deltas were trimmed away
    sent_before = a.stats["sent"]
    for _ in range(3):
        for rep in (b, a):
            rep.anti_entropy(digest=True)
            rep.poll()
    assert b["s"] == a["s"]
    assert a.digest() == b.digest()
    assert a.stats["sent"] - sent_before < 10  # digests and a state or two, not 2000 deltas
    raw.close()


@pytest.mark.redis
def test_a_redis_outage_is_counted_not_raised() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = crdt.RedisStreamTransport(f"redis://127.0.0.1:{port}/0", "x", "a")
    rep = crdt.Replicator("a", transport)
    rep.add("n", crdt.GCounter("a"))
    rep.update("n", lambda c: c.increment(1))  # lost, as the Transport protocol allows
    assert rep.poll() == 0
    assert transport.stats["errors"] >= 3
    assert rep["n"].value == 1


@pytest.mark.redis
def test_a_client_with_decoded_responses_works_too(redis_url: str) -> None:  # noqa: F811
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    a = crdt.Replicator("a", crdt.RedisStreamTransport(client, "d", "a", refresh=0.0))
    b = crdt.Replicator("b", crdt.RedisStreamTransport(client, "d", "b", refresh=0.0))
    a.add("n", crdt.PNCounter("a"))
    a.update("n", lambda c: c.decrement(4))
    assert b.poll() == 1
    assert b["n"].value == -4
    client.close()


@pytest.mark.redis
@pytest.mark.anyio
async def test_arun_over_redis_never_blocks_the_event_loop(
    redis_url: str,  # noqa: F811
    anyio_backend: str,
) -> None:
    clock = VirtualClock()
    a = crdt.Replicator("a", crdt.RedisStreamTransport(redis_url, "async", "a", refresh=0.0))
    b = crdt.Replicator("b", crdt.RedisStreamTransport(redis_url, "async", "b", refresh=0.0))
    a.add("s", crdt.ORSet("a"))
    a.update("s", lambda s: s.add("x"))
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while "s" not in b:
            ticks += 1
            await anyio.sleep(0)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            tg.start_soon(lambda: b.arun(poll_interval=0.01, until=lambda: "s" in b))
    assert b["s"].value == {"x"}
    assert ticks > 0
    del clock


# --- HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def http_pair() -> Iterator[tuple[crdt.Replicator, crdt.Replicator]]:
    ta, tb = crdt.HttpTransport(), crdt.HttpTransport()
    with ASGIServer(ta.app) as sa, ASGIServer(tb.app) as sb:
        ta.add_peer(sb.url + "/crdt")
        tb.add_peer(sa.url + "/crdt")
        a = crdt.Replicator("a", ta, secret=SECRET)
        b = crdt.Replicator("b", tb, secret=SECRET)
        yield a, b
        ta.close()
        tb.close()


def test_deltas_flow_over_http(http_pair: tuple[crdt.Replicator, crdt.Replicator]) -> None:
    a, b = http_pair
    a.add("doc", crdt.ORMap("a"))
    a.update("doc", lambda d: d.update("title", lambda r: r.set("Minutes")))
    assert b.poll() == 1
    b.update("doc", lambda d: d.update("body", lambda r: r.set("text")))
    assert a.poll() == 1
    assert a["doc"].value == b["doc"].value == {"title": "Minutes", "body": "text"}
    transport: Any = a.transport
    assert transport.stats["sent"] == 1
    assert transport.stats["received"] == 1


def test_the_http_endpoint_refuses_what_it_must() -> None:
    transport = crdt.HttpTransport(max_bytes=100, max_inbox=1)
    with ASGIServer(transport.app) as server, httpx.Client() as client:
        assert client.get(server.url + "/crdt").status_code == 405
        assert client.post(server.url + "/crdt", content=b"x" * 101).status_code == 413
        assert client.post(server.url + "/crdt", content=b"first").status_code == 204
        assert client.post(server.url + "/crdt", content=b"second").status_code == 503
    assert transport.receive() == b"first"
    assert transport.receive() is None
    assert transport.stats == {"sent": 0, "received": 1, "refused": 2, "errors": 0}


def test_a_peer_that_is_down_is_counted_not_raised() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = crdt.HttpTransport([f"http://127.0.0.1:{port}/crdt"], timeout=0.5)
    rep = crdt.Replicator("a", transport)
    rep.add("n", crdt.GCounter("a"))
    rep.update("n", lambda c: c.increment(1))
    assert transport.stats["errors"] == 1
    transport.close()


@pytest.mark.anyio
async def test_the_asgi_app_answers_lifespan_and_chunked_bodies(anyio_backend: str) -> None:
    transport = crdt.HttpTransport(max_bytes=10)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def lifespan_receive() -> dict[str, Any]:
        return next(events)

    with anyio.fail_after(5):
        await transport.app({"type": "lifespan"}, lifespan_receive, send)
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        chunks = iter(
            [
                {"type": "http.request", "body": b"12345", "more_body": True},
                {"type": "http.request", "body": b"67890", "more_body": True},
                {"type": "http.request", "body": b"!", "more_body": False},
            ]
        )

        async def receive() -> dict[str, Any]:
            return next(chunks)

        sent.clear()
        await transport.app({"type": "http", "method": "POST"}, receive, send)
    assert sent[0]["status"] == 413  # stopped reading at 11 bytes
    assert transport.receive() is None
