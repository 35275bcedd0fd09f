from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on both asyncio and trio."""
    return str(request.param)


@pytest.fixture
def clock():  # type: ignore[no-untyped-def]
    from resilience.testing import VirtualClock

    return VirtualClock()


@pytest.fixture
def seen() -> Iterator[list[Any]]:
    """Every event emitted while the test runs, in order."""
    from resilience import events

    got: list[Any] = []
    stop = events.subscribe(got.append)
    yield got
    stop()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_spec(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """How a child process builds the shared store: `SQLiteStore(path)` or `RedisStore(url)`
    (a module using the redis case imports `redis_server, redis_url` from redis_server)."""
    if request.param == "sqlite":
        return f"SQLiteStore({str(tmp_path / 'state.db')!r})"
    return f"RedisStore({request.getfixturevalue('redis_url')!r})"
