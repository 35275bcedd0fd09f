"""A Replicator transport over HTTP: a plain ASGI endpoint receives, an httpx client sends
(extra `httpx`).

Each replica serves `transport.app` (any ASGI server, or mounted beside the rest of an ASGI
application) and posts its messages to every peer's URL. The endpoint only queues the bytes
(bounded in size and count); the Replicator checks them (HMAC with `secret=`, bounds, replays)
when it polls.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._base import DEFAULT_LIMITS

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpTransport"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class HttpTransport:
    """Replicas that reach each other over HTTP.

    Args:
        peers: the URLs of the other replicas' endpoints (e.g.
            `"http://10.0.0.2:8000/crdt"`); more with `add_peer`.
        timeout: seconds per POST to one peer.
        max_bytes: the largest body the endpoint accepts (413 beyond it).
        max_inbox: messages queued before the endpoint answers 503 (the peer's message is
            lost; anti-entropy repairs).
        client: an `httpx.Client` to post with (default: one made here, closed by
            `close()`).

    `app` is the ASGI application (HTTP `POST` of the raw message bytes, answered 204; other
    methods 405; lifespan events acknowledged). `send` posts to every peer, best effort: a
    peer that is down or answers an error is counted in `stats["errors"]`, never raised.
    The calls block on the network (`blocking = True`), so `Replicator.arun` runs them in a
    worker thread.

    Example (not run here: it needs servers):

        transport = crdt.HttpTransport(["http://peer:8000/crdt"])
        app = transport.app             # serve it, e.g. `uvicorn module:app`
        rep = crdt.Replicator("here", transport, secret=key)

    Example:
        >>> transport = HttpTransport(["http://10.0.0.2:8000/crdt"])  # no I/O until sent
        >>> transport.peers, callable(transport.app)
        (['http://10.0.0.2:8000/crdt'], True)
        >>> transport.close()
    """

    blocking = True

    def __init__(
        self,
        peers: Iterable[str] = (),
        *,
        timeout: float = 2.0,
        max_bytes: int = DEFAULT_LIMITS.max_bytes,
        max_inbox: int = 10_000,
        client: httpx.Client | None = None,
    ) -> None:
        import httpx

        self._peers = list(peers)
        self.max_bytes = max_bytes
        self.max_inbox = max_inbox
        self._owned = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._errors = (httpx.HTTPError,)
        self._lock = threading.Lock()
        self._inbox: deque[bytes] = deque()
        self.stats = {"sent": 0, "received": 0, "refused": 0, "errors": 0}

    @property
    def peers(self) -> list[str]:
        with self._lock:
            return list(self._peers)

    def add_peer(self, url: str) -> None:
        """Post to `url` too from now on."""
        with self._lock:
            if url not in self._peers:
                self._peers.append(url)

    def send(self, data: bytes) -> None:
        """POST `data` to every peer (best effort)."""
        body = bytes(data)
        for url in self.peers:
            try:
                response = self._client.post(
                    url, content=body, headers={"content-type": "application/octet-stream"}
                )
            except self._errors:
                ok = False
            else:
                ok = response.status_code < 300
            with self._lock:
                self.stats["sent" if ok else "errors"] += 1

    def receive(self) -> bytes | None:
        """The next message posted by a peer, or None."""
        with self._lock:
            return self._inbox.popleft() if self._inbox else None

    def accept(self, body: bytes) -> int:
        """Queue one posted body; returns the HTTP status to answer (204, 413 or 503)."""
        with self._lock:
            if len(body) > self.max_bytes:
                self.stats["refused"] += 1
                return 413
            if len(self._inbox) >= self.max_inbox:
                self.stats["refused"] += 1
                return 503
            self._inbox.append(body)
            self.stats["received"] += 1
            return 204

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI endpoint: `POST` the message bytes."""
        kind = scope.get("type")
        if kind == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            return
        if scope.get("method") != "POST":
            await _respond(send, 405, b"POST the message bytes")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:  # stop reading: never buffer more than the bound
                with self._lock:
                    self.stats["refused"] += 1
                await _respond(send, 413, b"message too large")
                return
            chunks.append(chunk)
            more = event.get("more_body", False)
        status = self.accept(b"".join(chunks))
        await _respond(send, status, b"")

    def close(self) -> None:
        """Close the HTTP client (only if this transport made it)."""
        if self._owned:
            self._client.close()

    def __repr__(self) -> str:
        return f"HttpTransport(peers={self.peers!r})"


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
