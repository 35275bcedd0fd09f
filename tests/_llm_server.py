"""A local HTTP server that speaks enough of the OpenAI and Anthropic APIs for the SDKs.

Each request takes the next action of a script (then "ok" forever): a status with headers and
a JSON error body, a dropped connection, or a server-sent-event stream (optionally cut after a
few chunks). Every request is counted, so tests can assert exactly how many the SDK sent.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_OK = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-test",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
ANTHROPIC_OK = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-test",
    "content": [{"type": "text", "text": "hello"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}


def openai_error(code: str, type_: str | None = None, message: str = "error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_ or code, "param": None, "code": code}}


def anthropic_error(type_: str, message: str = "error") -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _chunk(i: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": {"content": f"t{i}"}, "finish_reason": None}],
    }


class LLMServer:
    """`with LLMServer() as s:` then `base_url=s.url`; `s.script([...])`; `s.count`."""

    def __init__(self) -> None:
        self.actions: deque[tuple[Any, ...]] = deque()
        self.count = 0
        self.paths: list[str] = []
        self.idempotency_keys: list[str | None] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.count += 1
                    server.paths.append(self.path)
                    server.idempotency_keys.append(self.headers.get("Idempotency-Key"))
                    action = server.actions.popleft() if server.actions else ("ok",)
                anthropic = self.path.endswith("/messages")
                kind = action[0]
                if kind == "hang":
                    time.sleep(action[1])
                    self.close_connection = True
                    return
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if kind == "status":
                    _, status, headers, payload = action
                    self._json(status, payload, headers)
                    return
                if body.get("stream") or kind == "stream":
                    cut = action[1] if kind == "stream" else None
                    self._stream(cut, anthropic)
                    return
                self._json(200, ANTHROPIC_OK if anthropic else OPENAI_OK, {})

            def _json(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, cut: int | None, anthropic: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                n = 5
                for i in range(n):
                    if cut is not None and i == cut:
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self._send(f"data: {json.dumps(_chunk(i))}\n\n")
                self._send("data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _send(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # hundreds of clients connect at once

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def script(self, actions: list[tuple[Any, ...]]) -> None:
        with self._lock:
            self.actions = deque(actions)
            self.count = 0
            self.paths.clear()
            self.idempotency_keys.clear()

    def __enter__(self) -> LLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
