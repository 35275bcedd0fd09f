"""`resilience.integrations.asgi`, and the FastAPI recipe of docs/fastapi.md run for real:
the service under uvicorn in a child process, a flaky upstream on 127.0.0.1, 50 clients."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

import resilience as rs
from _servers import HTTPTestServer, Reply, Seen
from resilience.integrations.asgi import health_app, metrics_app

ROOT = Path(__file__).resolve().parent.parent


async def _get(app: Any, path: str, method: str = "GET", **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        return await c.request(method, path, **kw)


@pytest.mark.anyio
async def test_health_app_answers_health_as_json() -> None:
    br = rs.CircuitBreaker("asgi-test.payments")
    r = await _get(health_app(prefix="asgi-test."), "/health")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json()["status"] == "ok"
    assert r.json()["breakers"]["asgi-test.payments"]["state"] == "closed"
    br.force_open()
    r = await _get(health_app(prefix="asgi-test."), "/")
    assert (r.status_code, r.json()["status"]) == (200, "degraded")  # still serving
    app = health_app(critical=["asgi-test.payments"], prefix="asgi-test.")
    r = await _get(app, "/health")
    assert (r.status_code, r.json()["status"]) == (503, "down")
    assert r.json()["breakers"]["asgi-test.payments"]["remaining"] is None  # strict JSON
    head = await _get(app, "/health", "HEAD")
    assert (head.status_code, head.content) == (503, b"")
    assert (await _get(app, "/health", "POST")).status_code == 405
    br.reset()
    assert (await _get(app, "/health")).json()["status"] == "ok"
    with pytest.raises(rs.ConfigError):
        health_app(down_status=1000)


@pytest.mark.anyio
async def test_metrics_app_serves_a_collector_or_a_registry() -> None:
    with rs.MetricsCollector() as collector:
        rs.CircuitBreaker("asgi-test.metrics").call(len, "x")
        r = await _get(metrics_app(collector), "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert 'resilience_calls_total{operation="asgi-test.metrics",outcome="success"} 1.0' in r.text
    families = {f.name for f in text_string_to_metric_families(r.text)}
    assert "resilience_calls" in families
    om = await _get(
        metrics_app(collector), "/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    registry = CollectorRegistry()
    Counter("mine", "doc", registry=registry).inc()
    assert "mine_total 1.0" in (await _get(metrics_app(registry), "/")).text
    with pytest.raises(TypeError):
        metrics_app(42)  # type: ignore[arg-type]


def test_apps_mount_in_starlette_and_fastapi() -> None:
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route
    from starlette.testclient import TestClient

    collector = rs.MetricsCollector()
    star = Starlette(
        routes=[Route("/health", health_app()), Mount("/metrics", metrics_app(collector))]
    )
    fast = FastAPI()
    fast.add_route("/health", health_app())
    fast.add_route("/metrics", metrics_app(collector))
    for app in (star, fast):
        with TestClient(app) as client:  # runs the lifespan too
            assert client.get("/health").json()["status"] in ("ok", "degraded")
            assert client.get("/metrics/").status_code in (200, 404)
    with TestClient(fast) as client:
        assert "resilience_calls_total" in client.get("/metrics").text


def test_apps_run_standalone_under_uvicorn(tmp_path: Path) -> None:
    (tmp_path / "standalone.py").write_text(
        "from resilience.integrations.asgi import health_app\napp = health_app()\n"
    )
    port = _free_port()
    with _uvicorn(tmp_path, "standalone:app", port, {}) as base:
        r = httpx.get(base + "/anything", timeout=5)
        assert r.json()["status"] in ("ok", "degraded")


# --- the recipe, end to end ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _uvicorn:
    """`python -m uvicorn module:app` in a child process; waits until it answers."""

    def __init__(self, cwd: Path, target: str, port: int, env: dict[str, str]) -> None:
        self.cwd, self.target, self.port, self.env = cwd, target, port, env
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "RESILIENCE"))}
        env.update(self.env)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                self.target,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise AssertionError(f"uvicorn exited {self.proc.returncode}:\n{out}")
            try:
                httpx.get(base + "/health", timeout=1)
                return base
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("uvicorn did not answer within 30 s")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _service(tmp_path: Path) -> Path:
    """The first python block of docs/fastapi.md, as written, as service.py."""
    page = (ROOT / "docs" / "fastapi.md").read_text()
    block = re.findall(r"^```python\n(.*?)^```", page, re.S | re.M)[0]
    (tmp_path / "service.py").write_text(block)
    return tmp_path


@pytest.fixture
def flaky() -> Iterator[HTTPTestServer]:
    rng = random.Random(13)
    lock = threading.Lock()

    def answer(seen: Seen) -> Reply:
        with lock:
            fail = rng.random() < 0.2
        if fail:
            return Reply(503, b"busy")
        return Reply(200, b'{"unit": 2.5}', {"Content-Type": "application/json"})

    srv = HTTPTestServer()
    srv.default = answer
    srv.start()
    yield srv
    srv.stop()


def _env(upstream: HTTPTestServer, resilience: str) -> dict[str, str]:
    return {
        "PRICING_URL": upstream.url,
        "PRICING_TIMEOUT": "2",
        "PRICING_OPEN_DURATION": "1",
        "PRICING_RESILIENCE": resilience,
        "RESILIENCE_ENV": "production",
        "RESILIENCE__OPERATIONS__PRICING_QUOTE__RETRY": "false",
        "RESILIENCE__OPERATIONS__PRICING_QUOTE__BREAKER": "false",
        "RESILIENCE__OPERATIONS__PRICING_QUOTE__TIMEOUT": "5",
    }


async def _load(base: str, seconds: float, clients: int = 50) -> tuple[int, int]:
    """`clients` concurrent clients asking for quotes for `seconds`: (requests, errors)."""
    counts = [0, 0]
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as c:

        async def one_client(i: int) -> None:
            while time.monotonic() < stop_at:
                r = await c.get(f"/quote/sku{i}", params={"quantity": 2})
                counts[0] += 1
                if r.status_code != 200:
                    counts[1] += 1

        with anyio.fail_after(seconds + 30):
            async with anyio.create_task_group() as tg:
                for i in range(clients):
                    tg.start_soon(one_client, i)
    return counts[0], counts[1]


def _wait_health(base: str, want: str, seconds: float) -> dict[str, Any]:
    """Keep a trickle of requests going and poll /health until its status is `want`."""
    deadline = time.monotonic() + seconds
    report: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=5) as c:
        while time.monotonic() < deadline:
            for _ in range(5):
                c.get("/quote/probe")
            report = c.get("/health").json()
            if report["status"] == want:
                return report
            time.sleep(0.1)
    raise AssertionError(f"/health never said {want!r} in {seconds} s: {report}")


def test_fastapi_recipe_end_to_end(tmp_path: Path, flaky: HTTPTestServer) -> None:
    cwd = _service(tmp_path)
    with _uvicorn(cwd, "service:app", _free_port(), _env(flaky, "on")) as base:
        sent, errors = anyio.run(_load, base, 1.5)
        with_rate = errors / sent
        assert _wait_health(base, "ok", 5)["status"] == "ok"

        flaky.stop()  # the pricing API goes away: connections refused
        report = _wait_health(base, "degraded", 20)
        assert report["breakers"]["pricing"]["state"] in ("open", "half_open")
        r = httpx.get(base + "/quote/x", timeout=5)
        assert r.status_code == 503  # fails fast, the open breaker says so
        flaky.start()  # back on the same port
        report = _wait_health(base, "ok", 20)
        assert report["breakers"]["pricing"]["state"] == "closed"

        text = httpx.get(base + "/metrics", timeout=5).text
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families}
    assert {"resilience_calls", "resilience_retries", "resilience_circuit_transitions"} <= names
    for family in families:
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample
            for value in sample.labels.values():
                assert "://" not in value, sample
                assert "127.0.0.1" not in value, sample
                assert not value.startswith("/"), sample
    ops = {s.labels.get("operation") for f in families for s in f.samples} - {None}
    assert "pricing" in ops
    transitions = [
        (s.labels["from_state"], s.labels["to_state"])
        for f in families
        if f.name == "resilience_circuit_transitions"
        for s in f.samples
        if s.name.endswith("_total") and s.labels["operation"] == "pricing" and s.value
    ]
    assert ("closed", "open") in transitions
    assert ("half_open", "closed") in transitions

    # the same service and load without the library (a plain httpx transport)
    with _uvicorn(cwd, "service:app", _free_port(), _env(flaky, "off")) as base:
        plain_sent, plain_errors = anyio.run(_load, base, 1.5)
    plain_rate = plain_errors / plain_sent
    print(
        f"\nclient error rate, upstream failing 20 %, 50 clients x 1.5 s: with the library "
        f"{with_rate:.2%} of {sent}, without {plain_rate:.2%} of {plain_sent}"
    )
    assert plain_rate > 0.1
    assert with_rate < plain_rate / 3
