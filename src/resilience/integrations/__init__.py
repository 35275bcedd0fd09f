"""Integrations with third-party clients; each submodule imports its library, nothing here does.

* `resilience.integrations.httpx`: `ResilientTransport` / `AsyncResilientTransport` for
  `httpx.Client` / `httpx.AsyncClient` (install the "httpx" extra).
"""
