"""`resilience demo`: the primitives working together, each act checking what it showed.

Nine acts, each a module here. The first five run a client protected by the library through
phases against a local service whose behaviour is switched at run time (up, flaky, down, or
stopped for real):

1. `retry`: `Retry` with backoff absorbs transient failures (~30% of requests fail).
2. `breaker`: a `CircuitBreaker` opens during an outage, rejects calls fast, closes after it.
3. `fallback`: a `FallbackChain` serves stale cached data (`DegradationLevel.CACHE_ONLY`)
   while the service is down, and live data again once it is back.
4. `failover`: `Failover` across two servers: the primary is stopped, calls move to the
   secondary within the same call, and traffic returns to the primary once it is back.
5. `queue`: an `OfflineQueue` (a temporary SQLite file) keeps writes during an outage and
   delivers them, most urgent first, once the service is back.

The other four show the rest of the library:

6. `crdt`: two agents edit one document offline, then exchange deltas as JSON and merge.
7. `config`: the same code, detected as `development` then `production`, gets different
   presets; `explain` says where each value came from.
8. `migrate`: a legacy resilience4j file is migrated, loaded, and builds the same breaker.
9. `metrics`: a Prometheus scrape of this run's metrics, checked against the acts' figures.

A phase sets what the service does and runs calls until its end condition holds (between a
minimum and a maximum time). After each act, checks say whether it showed what it should; the
exit status is 0 only when every check passed. `resilience demo ACT` runs one act. Modules:
`_servers` (the flaky services), `_act` (what an act is), `_view` (plain lines or a rich live
table), `_run` (running acts and the summary).

Example:
    >>> from resilience.demo import ACT_NAMES
    >>> ACT_NAMES[:3]
    ('retry', 'breaker', 'fallback')
"""

from __future__ import annotations

from ._act import Act, Phase, Report, Run
from ._run import ACT_NAMES, ACTS, run_demo
from ._servers import FlakyService, fetch, post

__all__ = [
    "ACTS",
    "ACT_NAMES",
    "Act",
    "FlakyService",
    "Phase",
    "Report",
    "Run",
    "fetch",
    "post",
    "run_demo",
]
