"""Plain ASGI apps for `/health` and `/metrics`: mount them in FastAPI, Starlette, any server.

* `health_app()` answers `rs.health()` as JSON: status 200 while the process is "ok" or
  "degraded" (it still serves, with fallbacks), 503 when it is "down" (a critical dependency
  is open, or every one is), so a load balancer or a Kubernetes readiness probe can act on it.
* `metrics_app(collector_or_registry)` answers the Prometheus text exposition (or OpenMetrics,
  when the scraper asks for it in `Accept`).

No web framework is needed: each app is an ASGI callable (a class instance, so Starlette's
`Route` and FastAPI's `add_route` pass requests to it as they are). Both answer GET and HEAD
on any path they are mounted at, and 405 to other methods.

Example:
    >>> import httpx, anyio
    >>> from resilience.integrations.asgi import health_app
    >>> async def check():
    ...     transport = httpx.ASGITransport(app=health_app())
    ...     async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
    ...         r = await c.get("/health")
    ...     return r.status_code, r.json()["status"] in ("ok", "degraded")
    >>> anyio.run(check)
    (200, True)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..metrics import MetricsCollector

__all__ = ["health_app", "metrics_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _lifespan(receive: Receive, send: Send) -> None:
    """Run standalone (`uvicorn module:app`), the server sends lifespan events: accept them."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, *, head: bool = False
) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


class _App:
    """The ASGI plumbing both apps share; `render(scope)` makes the answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            raise RuntimeError(f"{type(self).__name__} serves HTTP only, not {kind!r}")
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain; charset=utf-8")
            return
        status, body, content_type = self.render(scope)
        await _respond(send, status, body, content_type, head=method == "HEAD")

    def render(self, scope: Scope) -> tuple[int, bytes, str]:
        raise NotImplementedError


class _HealthApp(_App):
    def __init__(self, critical: Iterable[str], prefix: str, down_status: int) -> None:
        self.critical = tuple(critical)
        self.prefix = prefix
        self.down_status = down_status

    def render(self, scope: Scope) -> tuple[int, bytes, str]:
        from ..metrics import health

        report = health(self.critical, prefix=self.prefix)
        status = self.down_status if report["status"] == "down" else 200
        body = json.dumps(report, default=str, separators=(",", ":")).encode()
        return status, body, "application/json"

    def __repr__(self) -> str:
        return f"health_app(critical={list(self.critical)!r}, prefix={self.prefix!r})"


class _MetricsApp(_App):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def render(self, scope: Scope) -> tuple[int, bytes, str]:
        from prometheus_client.exposition import choose_encoder

        accept = ""
        for name, value in scope.get("headers") or ():
            if name == b"accept":
                accept = value.decode("latin-1")
                break
        encoder, content_type = choose_encoder(accept)
        return 200, encoder(self.registry), content_type

    def __repr__(self) -> str:
        return f"metrics_app({self.registry!r})"


def health_app(
    critical: Iterable[str] = (), *, prefix: str = "", down_status: int = 503
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app that answers `rs.health(critical, prefix=prefix)` as JSON.

    Args:
        critical: breaker names whose opening alone makes the process "down".
        prefix: only breakers and failover clients whose names start with this.
        down_status: the HTTP status while "down" (200 while "ok" or "degraded").

    Returns:
        The app (mount it: `app.add_route("/health", health_app())` in FastAPI/Starlette).

    Example:
        >>> from starlette.applications import Starlette
        >>> from starlette.routing import Route
        >>> app = Starlette(routes=[Route("/health", health_app(critical=["payments"]))])
    """
    if not isinstance(down_status, int) or not 100 <= down_status <= 599:
        from .._errors import ConfigError

        raise ConfigError([("down_status", f"must be an HTTP status, got {down_status!r}")])
    return _HealthApp(critical, prefix, down_status)


def metrics_app(
    source: MetricsCollector | CollectorRegistry | None = None,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app that answers the Prometheus exposition of a collector's registry.

    Args:
        source: a `MetricsCollector` (its `.registry` is served), a prometheus_client
            `CollectorRegistry`, or None for prometheus_client's default `REGISTRY`.

    Returns:
        The app (mount it: `app.add_route("/metrics", metrics_app(collector))`).

    Example:
        >>> import resilience as rs
        >>> app = metrics_app(rs.MetricsCollector())
    """
    from prometheus_client import REGISTRY, CollectorRegistry

    if source is None:
        registry = REGISTRY
    elif isinstance(source, CollectorRegistry):
        registry = source
    elif isinstance(getattr(source, "registry", None), CollectorRegistry):
        registry = source.registry
    else:
        raise TypeError(
            f"metrics_app() takes a MetricsCollector or a CollectorRegistry, got {source!r:.80}"
        )
    return _MetricsApp(registry)
