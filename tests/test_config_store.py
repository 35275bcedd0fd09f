"""`store = "<url>"` in the `breaker` and `rate_limit` sections: checked without connecting,
built lazily (one store per URL per process), shared for real (a SQLite file, a Redis server),
and a password in the URL never shown."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import resilience as rs
from redis_server import redis_server, redis_url, start_server  # noqa: F401 (pytest fixtures)
from resilience import config, events
from resilience.config import _models
from resilience.stores import RedisStore, SQLiteStore
from resilience.testing import VirtualClock

SECRET = "s3cr3t-pw"
SRC = str(Path(rs.__file__).resolve().parent.parent)


def down() -> None:
    raise ConnectionError("db down")


def ok() -> str:
    return "ok"


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on return: nothing listens there


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(config.ConfigError) as info:
        config.load(data=data, environ={})
    return dict(info.value.errors)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "memory",
        "sqlite:///state.db",
        "sqlite:////var/lib/app/state.db",
        "redis://cache:6379/0",
        "redis://user:pw@cache:6379/2",
        "rediss://:pw@cache.example.com:6380",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_store_urls_are_accepted_without_connecting(url: str) -> None:
    # nothing listens on these hosts: validating never connects, and nothing is built
    cfg = config.load(
        data={"operations": {"x": {"breaker": {"store": url}, "rate_limit": {"store": url}}}},
        environ={},
    )
    assert cfg.operation("x").breaker.store == url  # type: ignore[union-attr]
    assert cfg.operation("x").rate_limit.store == url  # type: ignore[union-attr]
    assert url not in _models._STORES


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("reddis://cache:6379/0", "did you mean 'redis'?"),
        ("memroy", "did you mean 'memory'?"),
        ("sqlite://state.db", "sqlite:///relative.db"),
        ("sqlite:///", "names no file"),
        ("redis://cache:99999/0", "Port out of range"),
        ("redis://cache:6379/zero", "must be a number"),
        ("redis://", "names no host"),
        ("unix://", "names no socket path"),
        ("postgres://db/x", 'accepted: "memory"'),
    ],
)
def test_a_bad_store_url_is_a_config_error_at_its_location(url: str, expected: str) -> None:
    got = problems(
        {"operations": {"llm.generate": {"breaker": {"store": url}, "rate_limit": {"store": url}}}}
    )
    assert set(got) == {
        'operations."llm.generate".breaker.store',
        'operations."llm.generate".rate_limit.store',
    }
    assert all(expected in message for message in got.values()), got


def test_a_store_that_is_not_a_string_is_refused() -> None:
    got = problems({"defaults": {"rate_limit": {"store": 6379}}})
    assert "must be a store URL string, got int" in got["defaults.rate_limit.store"]


def test_on_store_error_is_validated_with_a_hint() -> None:
    got = problems({"operations": {"x": {"rate_limit": {"on_store_error": "fail_opn"}}}})
    message = got["operations.x.rate_limit.on_store_error"]
    assert "fail_closed" in message
    assert "did you mean 'fail_open'?" in message
    cfg = config.load(
        data={"operations": {"x": {"rate_limit": {"on_store_error": "fail_open"}}}}, environ={}
    )
    limiter = cfg.operation("x").rate_limit.build("x")  # type: ignore[union-attr]
    assert limiter.on_store_error == "fail_open"


def test_a_misspelt_store_key_gets_a_hint() -> None:
    got = problems({"operations": {"x": {"breaker": {"stroe": "memory"}}}})
    assert "did you mean 'store'?" in got["operations.x.breaker.stroe"]
    got = problems({"defaults": {"stroe": "memory"}})
    assert "did you mean 'store'?" in got["defaults.stroe"]


def test_an_environment_variable_sets_the_store() -> None:
    cfg = config.load(
        data={},
        environ={"RESILIENCE__OPERATIONS__PAY__BREAKER__STORE": "sqlite:///pay.db"},
    )
    assert cfg.operation("pay").breaker.store == "sqlite:///pay.db"  # type: ignore[union-attr]


# --- the operation's store, inherited from [defaults] -------------------------------------------


def test_a_defaults_store_is_inherited_and_a_sections_own_store_wins() -> None:
    cfg = config.load(
        data={
            "defaults": {"store": "redis://cache:6379/0", "rate_limit": {"rate": 10}},
            "operations": {
                "a": {},
                "b": {"breaker": {"store": "sqlite:///b.db"}},
                "c": {"store": "memory"},
            },
        },
        environ={},
    )
    a, b, c = (cfg.operation(n) for n in "abc")
    assert a.breaker.store == a.rate_limit.store == "redis://cache:6379/0"  # type: ignore[union-attr]
    assert b.breaker.store == "sqlite:///b.db"  # type: ignore[union-attr]
    assert b.rate_limit.store == "redis://cache:6379/0"  # type: ignore[union-attr]
    assert c.breaker.store == c.rate_limit.store == "memory"  # type: ignore[union-attr]
    assert cfg.operation("undeclared").breaker.store == "redis://cache:6379/0"  # type: ignore[union-attr]
    origins = {k: o for k, _, o in cfg.explain("a")}
    assert origins["store"] == "file data [defaults]"


def test_a_bad_operation_store_is_reported_once_at_its_own_key() -> None:
    got = problems({"defaults": {"store": "reddis://cache"}})
    assert list(got) == ["defaults.store"]
    assert "did you mean 'redis'?" in got["defaults.store"]


# --- building: lazily, one store per URL --------------------------------------------------------


def test_memory_gives_each_policy_its_private_store() -> None:
    cfg = config.load(data={"defaults": {"store": "memory"}}, environ={})
    one = cfg.operation("x").breaker.build("x")  # type: ignore[union-attr]
    two = cfg.operation("x").breaker.build("x")  # type: ignore[union-attr]
    one.force_open()
    assert two.state is rs.CircuitState.CLOSED


def test_two_breakers_built_from_config_share_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    url = f"sqlite:///{path}"  # an absolute path: sqlite:////tmp/...
    assert url.startswith("sqlite:////")
    cfg = config.load(
        data={
            "operations": {
                "db": {
                    "breaker": {
                        "store": url,
                        "minimum_calls": 4,
                        "failure_rate_threshold": 0.5,
                        "open_duration": 10.0,
                    }
                }
            }
        },
        environ={},
    )
    clock = VirtualClock()
    settings = cfg.operation("db").breaker
    assert settings is not None
    a, b = settings.build("db", clock), settings.build("db", clock)
    assert _models.build_store(url) is _models.build_store(url)  # one store per URL
    for _ in range(4):
        with pytest.raises((ConnectionError, rs.CircuitOpenError)):
            a.call(down)
    assert a.state is rs.CircuitState.OPEN
    with pytest.raises(rs.CircuitOpenError):
        b.call(ok)  # b never failed: it sees a's record in the file
    record = SQLiteStore(path).get("breaker:db")  # as another process would read it
    assert record is not None
    assert record["state"] == "open"


def test_a_relative_sqlite_path_and_resilient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///shared-state.db"
    cfg = config.load(
        data={"operations": {"pay": {"breaker": {"store": url, "minimum_calls": 2}}}},
        environ={},
    )
    clock = VirtualClock()
    previous = config.use(cfg)
    try:

        @rs.resilient("pay", clock=clock)
        def pay() -> None:
            down()

        for _ in range(4):
            with pytest.raises((ConnectionError, rs.CircuitOpenError)):
                pay()
    finally:
        config.use(previous)
    assert (tmp_path / "shared-state.db").is_file()
    record = SQLiteStore(tmp_path / "shared-state.db").get("breaker:pay")
    assert record is not None
    assert record["state"] == "open"


def test_a_rate_limit_from_config_is_shared_through_redis(redis_url: str) -> None:  # noqa: F811
    cfg = config.load(
        data={
            "operations": {
                "search": {"rate_limit": {"rate": 1, "per": "1m", "burst": 2, "store": redis_url}}
            }
        },
        environ={},
    )
    settings = cfg.operation("search").rate_limit
    assert settings is not None
    a, b = settings.build("search"), settings.build("search")
    assert isinstance(a.store, RedisStore)
    assert a.store is b.store
    assert a.call(ok) == "ok"
    assert b.call(ok) == "ok"
    with pytest.raises(rs.RateLimited):
        a.call(ok)  # the two limiters spent one bucket of 2
    with pytest.raises(rs.RateLimited):
        b.call(ok)


def test_a_redis_store_for_the_breaker_from_defaults(redis_url: str) -> None:  # noqa: F811
    cfg = config.load(
        data={"defaults": {"store": redis_url, "breaker": {"minimum_calls": 2}}}, environ={}
    )
    clock = VirtualClock()
    a = cfg.operation("inventory").breaker.build("inventory", clock)  # type: ignore[union-attr]
    b = cfg.operation("inventory").breaker.build("inventory", clock)  # type: ignore[union-attr]
    for _ in range(2):
        with pytest.raises(ConnectionError):
            a.call(down)
    with pytest.raises(rs.CircuitOpenError):
        b.call(ok)


# --- on_store_error: the store is down ------------------------------------------------------


def _down_url() -> str:
    return f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0"


def test_fail_open_lets_calls_through_while_the_store_is_down(seen: list[events.Event]) -> None:
    url = _down_url()
    cfg = config.load(
        data={
            "operations": {
                "o": {
                    "rate_limit": {
                        "rate": 1,
                        "per": 60,
                        "store": url,
                        "on_store_error": "fail_open",
                    }
                },
                "c": {"rate_limit": {"rate": 1, "per": 60, "store": url}},
            }
        },
        environ={},
    )
    opened = cfg.operation("o").rate_limit.build("o")  # type: ignore[union-attr]
    assert [opened.call(ok) for _ in range(5)] == ["ok"] * 5  # unlimited while down
    closed = cfg.operation("c").rate_limit.build("c")  # type: ignore[union-attr]
    with pytest.raises(rs.RateLimited):
        closed.call(ok)  # the default: fail_closed
    assert any(isinstance(e, events.StoreUnavailable) for e in seen)


# --- a password is never shown ----------------------------------------------------------------


def test_a_password_is_not_in_repr_explain_or_errors() -> None:
    url = f"redis://:{SECRET}@cache:6379/0"
    cfg = config.load(
        data={
            "defaults": {"store": url},
            "operations": {"x": {"rate_limit": {"store": url, "on_store_error": "fail_open"}}},
        },
        environ={},
    )
    policy = cfg.operation("x")
    shown = [repr(policy), str(policy), repr(policy.breaker), repr(policy.rate_limit),
             repr(cfg.explain("x")), repr(cfg.defaults)]  # fmt: skip
    assert all(SECRET not in s for s in shown)
    assert "redis://:***@cache:6379/0" in repr(policy.rate_limit)
    assert ("store", "redis://:***@cache:6379/0", "file data [defaults]") in cfg.explain("x")
    # errors: a bad scheme, a bad port, a URL where a table should be, an env variable
    for data in (
        {"defaults": {"store": f"reddis://:{SECRET}@cache"}},
        {"defaults": {"breaker": {"store": f"redis://:{SECRET}@cache:99999"}}},
        {"operations": {"x": {"breaker": f"redis://:{SECRET}@cache:6379/0"}}},
        {"operations": {"x": {"rate_limit": {"store": url, "rate": -1}}}},
    ):
        with pytest.raises(config.ConfigError) as info:
            config.load(data=data, environ={})
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value.errors)
        assert "***" in str(info.value) or "rate_limit.rate" in str(info.value)
    with pytest.raises(config.ConfigError) as info:
        config.load(
            data={},
            environ={"RESILIENCE__OPERATIONS__X__RATE_LIMIT": f"redis://u:{SECRET}@cache"},
        )
    assert SECRET not in str(info.value)


def test_a_password_is_not_in_events_or_logs_when_the_store_is_down(
    seen: list[events.Event], caplog: pytest.LogCaptureFixture
) -> None:
    url = _down_url()
    cfg = config.load(
        data={"defaults": {"store": url, "breaker": {"minimum_calls": 2}}}, environ={}
    )
    caplog.set_level(logging.DEBUG)
    breaker = cfg.operation("x").breaker.build("x", VirtualClock())  # type: ignore[union-attr]
    for _ in range(3):
        with pytest.raises((ConnectionError, rs.CircuitOpenError)):
            breaker.call(down)
    unavailable = [e for e in seen if isinstance(e, events.StoreUnavailable)]
    assert unavailable, seen
    assert all(SECRET not in repr(e) for e in seen)
    assert "***" in unavailable[0].store
    assert "cannot use its store" in caplog.text  # the warning was logged ...
    assert SECRET not in caplog.text  # ... without the password
    assert "***" in caplog.text


def test_a_real_password_protected_redis_and_its_errors() -> None:
    server = start_server(password=SECRET)
    try:
        cfg = config.load(
            data={"operations": {"q": {"rate_limit": {"rate": 1, "per": 60, "store": server.url}}}},
            environ={},
        )
        limiter = cfg.operation("q").rate_limit.build("q")  # type: ignore[union-attr]
        assert SECRET in server.url
        assert limiter.call(ok) == "ok"  # authenticated for real
        with pytest.raises(rs.RateLimited):
            limiter.call(ok)
        assert SECRET not in repr(limiter.store)
        assert SECRET not in repr(limiter)
    finally:
        server.stop()


def test_config_show_and_explain_hide_the_password(tmp_path: Path) -> None:
    (tmp_path / "resilience.toml").write_text(
        f'[defaults]\nstore = "redis://:{SECRET}@cache:6379/0"\n'
        "[operations.pay]\n"
        f'rate_limit = {{ rate = 5, store = "rediss://app:{SECRET}@cache:6380/1" }}\n',
        encoding="utf-8",
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "resilience", *args],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SRC},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for args in (["config", "show"], ["config", "explain", "pay"], ["config", "validate"]):
        out = cli(*args)
        assert out.returncode == 0, out.stderr
        assert SECRET not in out.stdout + out.stderr, args
        if args[1] != "validate":
            assert "redis://:***@cache:6379/0" in out.stdout
            assert "rediss://app:***@cache:6380/1" in out.stdout
    (tmp_path / "resilience.toml").write_text(
        f'[defaults]\nstore = "reddis://:{SECRET}@cache:6379/0"\n', encoding="utf-8"
    )
    out = cli("config", "validate")
    assert out.returncode == 1
    assert "defaults.store" in out.stderr
    assert "did you mean 'redis'?" in out.stderr
    assert SECRET not in out.stdout + out.stderr
