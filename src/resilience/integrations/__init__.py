"""Integrations with third-party clients; each submodule imports its library, nothing here does.

* `resilience.integrations.httpx`: `ResilientTransport` / `AsyncResilientTransport` for
  `httpx.Client` / `httpx.AsyncClient` (install the "httpx" extra).
* `resilience.integrations.requests`: `ResilientAdapter` for `requests.Session.mount` (the
  "requests" extra).
* `resilience.integrations.asgi`: `health_app()` / `metrics_app()`, plain ASGI apps.
"""
