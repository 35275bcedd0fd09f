"""A small, real HTTP/1.1 server on 127.0.0.1 for tests, run in a thread.

Each request is answered by an *action*: `Reply(status, body, headers)`, `Hang(seconds)` (say
nothing until the seconds pass or the server stops: a read timeout for the client) or `Drop()`
(close the connection without a response). Queue actions with `server.script(...)`; when the
script is empty, `server.default` answers (a 200 "ok" unless changed, or a function
`(Seen) -> action`). `stop()` closes the listening socket *and* every open connection, so
pooled keep-alive connections die too; `start()` listens again on the same port.

Example (in a fixture):
    with HTTPTestServer() as srv:
        srv.script(Reply(503, headers={"Retry-After": "1"}), Reply(200, b"hi"))
        httpx.get(srv.url + "/x")
"""

from __future__ import annotations

import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Drop", "HTTPTestServer", "Hang", "Reply", "Seen", "Stall"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    seconds: float = 5.0


@dataclass(frozen=True)
class Drop:
    pass


@dataclass(frozen=True)
class Stall:
    """Answer `reply` after `seconds`, unless the client goes away first (then the server
    counts it in `abandoned`: the client cancelled the request)."""

    seconds: float = 1.0
    reply: Reply = field(default_factory=Reply)


Action = Reply | Hang | Drop | Stall


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client pools connections, as in production
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, dict(self.headers.items()), body)
        owner = self.server.owner
        action = owner._next(seen)
        if isinstance(action, Drop):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if isinstance(action, Hang):
            owner._stopping.wait(action.seconds)
            self.close_connection = True
            return
        if isinstance(action, Stall):
            ready, _, _ = select.select([self.connection], [], [], action.seconds)
            try:
                gone = bool(ready) and not self.connection.recv(1, socket.MSG_PEEK)
            except OSError:  # reset by the client
                gone = True
            if gone:
                with owner._lock:
                    owner.abandoned += 1
                self.close_connection = True
                return
            action = action.reply
        self.send_response(action.status)
        for k, v in action.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(action.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(action.body)

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: HTTPTestServer

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner._lock:
            self.owner._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.owner._lock:
            self.owner._conns.discard(request)
        super().shutdown_request(request)


class HTTPTestServer:
    """A real HTTP server on 127.0.0.1 (port chosen by the OS unless given)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.default: Action | Callable[[Seen], Action] = Reply()
        self.requests: list[Seen] = []
        self.abandoned = 0  # Stall actions whose client went away before the answer
        self._script: deque[Action] = deque()
        self._lock = threading.Lock()
        self._conns: set[Any] = set()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def script(self, *actions: Action) -> None:
        """Answer the next requests with these actions, in order."""
        with self._lock:
            self._script.extend(actions)

    def _next(self, seen: Seen) -> Action:
        with self._lock:
            self.requests.append(seen)
            if self._script:
                return self._script.popleft()
            default = self.default
        return default(seen) if callable(default) else default

    def start(self) -> HTTPTestServer:
        self._stopping.clear()
        httpd = _Server(("127.0.0.1", self.port), _Handler)
        httpd.owner = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (the port stays ours to restart)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> HTTPTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
