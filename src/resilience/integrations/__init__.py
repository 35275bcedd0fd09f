"""Integrations with third-party clients; each submodule imports its library, nothing here does.

* `resilience.integrations.httpx`: `ResilientTransport` / `AsyncResilientTransport` for
  `httpx.Client` / `httpx.AsyncClient` (install the "httpx" extra).
* `resilience.integrations.requests`: `ResilientAdapter` for `requests.Session.mount` (the
  "requests" extra).
* `resilience.integrations.asgi`: `health_app()` / `metrics_app()`, plain ASGI apps.
* `resilience.integrations.opentelemetry`: `OTelMetrics`, the library's metrics through an
  OpenTelemetry meter and span events for retries, fallbacks and breaker rejections (install
  the "otel" extra).
"""
