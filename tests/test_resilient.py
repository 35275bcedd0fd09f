"""@resilient("op"): pipelines from the active config, shared, rebuilt atomically on change."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import resilience as rs
from resilience import config
from resilience.config import ConfigError, load
from resilience.config import _active as active_module  # to observe, never to set


@pytest.fixture(autouse=True)
def no_active_config() -> Iterator[None]:
    """Each test starts with nothing `use`d, and leaves the process as it found it."""
    saved = config.use(None)
    yield
    config.use(saved)


def _name() -> str:
    return f"op-{uuid.uuid4().hex[:8]}"


def _use(data: dict[str, object] | None = None, env: str = "testing") -> config.Config:
    cfg = load(data=data or {}, environ={"RESILIENCE_ENV": env})
    config.use(cfg)
    return cfg


class Flaky:
    """Fails with ConnectionError `failures` times, then returns "ok"."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise ConnectionError(f"failure {self.calls}")
        return "ok"


def test_the_operation_gets_its_configured_retries() -> None:
    op = _name()
    _use({"operations": {op: {"retry": {"max_attempts": 4}}}})
    flaky = Flaky(3)
    fn = rs.resilient(op)(flaky)
    assert fn() == "ok"
    assert flaky.calls == 4

    other = Flaky(3)  # an undeclared operation gets the testing preset: 2 attempts
    with pytest.raises(ConnectionError):
        rs.resilient(_name())(other)()
    assert other.calls == 2


def test_signature_and_name_are_kept() -> None:
    @rs.resilient(_name())
    def charge(amount: int, *, currency: str = "EUR") -> str:
        """Charge it."""
        return f"{amount} {currency}"

    assert charge.__name__ == "charge"
    assert charge.__doc__ == "Charge it."
    assert list(inspect.signature(charge).parameters) == ["amount", "currency"]
    assert inspect.signature(charge) == inspect.signature(charge.__wrapped__)  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_async_functions_go_through_acall() -> None:
    op = _name()
    _use({"operations": {op: {"retry": {"max_attempts": 3}}}})
    calls = 0

    @rs.resilient(op)
    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("down")
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(21) == 42
    assert calls == 3


def test_bad_operation_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        rs.resilient("")
    with pytest.raises(ConfigError):
        rs.resilient(42)  # type: ignore[arg-type]


def test_first_call_loads_the_config_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = _name()
    (tmp_path / "resilience.toml").write_text(
        f'environment = "testing"\n[operations."{op}"]\nretry = {{ max_attempts = 5 }}\n'
    )
    monkeypatch.chdir(tmp_path)
    for var in [v for v in __import__("os").environ if v.startswith("RESILIENCE")]:
        monkeypatch.delenv(var)
    flaky = Flaky(4)
    fn = rs.resilient(op)(flaky)
    assert active_module._active is None  # decorating loads nothing
    assert fn() == "ok"
    assert flaky.calls == 5
    assert config.current().source == "resilience.toml"


def test_one_pipeline_per_operation() -> None:
    op = _name()
    _use({"operations": {op: {"breaker": {"minimum_calls": 2}}}})
    a = rs.resilient(op)(lambda: 1)
    b = rs.resilient(op)(lambda: 2)
    assert a() == 1
    assert b() == 2
    slot_a, slot_b = a.__resilient_slot__, b.__resilient_slot__  # type: ignore[attr-defined]
    assert slot_a.shared.pipeline is slot_b.shared.pipeline
    assert slot_a.shared.objects["breaker"] is slot_b.shared.objects["breaker"]


def test_register_rebuilds_and_keeps_the_breaker_when_only_other_fields_change() -> None:
    op = _name()
    table = {
        "breaker": {"minimum_calls": 2, "window": {"kind": "count", "size": 2}},
        "retry": False,
    }
    _use({"operations": {op: table}})
    always = Flaky(10**9)
    fn = rs.resilient(op)(always)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            fn()
    with pytest.raises(rs.CircuitOpenError):
        fn()
    breaker = fn.__resilient_slot__.shared.objects["breaker"]  # type: ignore[attr-defined]

    # retry changes, the breaker's settings do not: same breaker, still open
    config.register(op, {**table, "timeout": 5.0})
    assert fn.__resilient_slot__.shared.objects["breaker"] is breaker  # type: ignore[attr-defined]
    calls = always.calls
    with pytest.raises(rs.CircuitOpenError):
        fn()
    assert always.calls == calls

    # the breaker's own settings change: a new, closed breaker
    config.register(op, {"breaker": {"minimum_calls": 3}, "retry": False})
    assert fn.__resilient_slot__.shared.objects["breaker"] is not breaker  # type: ignore[attr-defined]
    with pytest.raises(ConnectionError):
        fn()


def test_a_bad_update_raises_and_changes_nothing() -> None:
    op = _name()
    cfg = _use({"operations": {op: {"retry": {"max_attempts": 3}}}})
    fn = rs.resilient(op)(Flaky(0))
    fn()
    stages = fn.__resilient_slot__.stages  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        config.register(op, {"retry": {"max_attempts": 0}, "timeout": -1})
    assert len(info.value.errors) == 2
    assert config.current() is cfg
    assert fn.__resilient_slot__.stages is stages  # type: ignore[attr-defined]
    assert config.current().operation(op).retry.max_attempts == 3  # type: ignore[union-attr]


def test_a_file_that_fails_validation_never_half_applies(tmp_path: Path) -> None:
    good, bad = _name(), _name()
    cfg = _use({"operations": {good: {"retry": {"max_attempts": 2}}}})
    path = tmp_path / "resilience.toml"
    path.write_text(
        f'[operations."{good}"]\nretry = {{ max_attempts = 4 }}\n'
        f'[operations."{bad}"]\nretry = {{ max_attempts = -1 }}\n'
    )
    with pytest.raises(ConfigError) as info:
        config.use(load(path, environ={"RESILIENCE_ENV": "testing"}))
    assert [loc for loc, _ in info.value.errors] == [f"operations.{bad}.retry.max_attempts"]
    assert config.current() is cfg
    assert config.current().operation(good).retry.max_attempts == 2  # type: ignore[union-attr]


def test_in_flight_calls_finish_on_the_old_policies() -> None:
    op = _name()
    _use({"operations": {op: {"retry": {"max_attempts": 3}}}})
    started, release = threading.Event(), threading.Event()
    attempts = 0

    @rs.resilient(op)
    def slow() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            started.set()
            release.wait(5)
        if attempts < 3:
            raise ConnectionError("not yet")
        return "ok"

    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(slow()))
    t.start()
    assert started.wait(5)
    config.register(op, {"retry": {"max_attempts": 1}})  # swap while the call is inside
    release.set()
    t.join(5)
    assert result == ["ok"]  # it kept its 3 attempts
    assert attempts == 3
    attempts = 10
    assert slow() == "ok"
    attempts = 0
    with pytest.raises(ConnectionError):
        slow()  # the next call has 1 attempt
    assert attempts == 1


def test_hot_reload_under_load_loses_no_call() -> None:
    op = _name()
    _use({"operations": {op: {"retry": {"max_attempts": 2}}}})
    count = 0
    lock = threading.Lock()

    @rs.resilient(op)
    def work(i: int) -> int:
        nonlocal count
        with lock:
            count += 1
        return i

    errors: list[BaseException] = []
    results: list[int] = []
    stop = threading.Event()

    def caller(k: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                results.append(work(k * 1_000_000 + i))
            except BaseException as exc:
                errors.append(exc)
            i += 1

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    swaps = 0
    try:
        for n in range(60):
            config.register(
                op,
                {
                    "retry": {"max_attempts": 1 + n % 3},
                    "breaker": {"minimum_calls": 5 + n % 2} if n % 4 else False,
                    "bulkhead": {"max_concurrent": 64} if n % 2 else False,
                },
            )
            swaps += 1
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors[:3]
    assert swaps == 60
    assert len(results) == count > 0
    assert len(set(results)) == len(results)  # every call returned its own value


def test_fallbacks_from_code_and_from_config() -> None:
    op = _name()
    _use({"operations": {op: {"fallback": {"default": "from config", "level": "degraded"}}}})
    down = rs.resilient(op)(Flaky(10**9))
    assert down() == "from config"

    code = _name()
    _use({"operations": {op: {"fallback": False}}})
    busy = rs.resilient(code, fallback=rs.Default("busy"))(Flaky(10**9))
    assert busy() == "busy"
    with pytest.raises(ConnectionError):
        down()  # the config's fallback was turned off


def test_stale_cache_survives_unrelated_changes() -> None:
    op = _name()
    table = {"fallback": {"stale_cache": {"max_age": 60.0}}}
    _use({"operations": {op: table}})
    flaky = Flaky(0)

    @rs.resilient(op)
    def lookup(user: str) -> str:
        if flaky.failures:
            raise ConnectionError("directory down")
        return f"{user}: staff"

    assert lookup("ada") == "ada: staff"
    config.register(op, {**table, "timeout": False, "retry": {"max_attempts": 1}})
    flaky.failures = 1
    assert lookup("ada") == "ada: staff"  # served from the cache kept across the swap


def test_virtual_clock_drives_the_built_policies() -> None:
    from resilience.testing import VirtualClock

    op = _name()
    _use(
        {
            "operations": {
                op: {"retry": {"max_attempts": 3, "backoff": {"kind": "constant", "delay": 2.0}}}
            }
        },
        env="development",
    )
    clock = VirtualClock()
    fn = rs.resilient(op, clock=clock)(Flaky(2))  # development: 3 attempts
    assert fn() == "ok"
    assert clock.sleeps == [2.0, 2.0]


def test_import_and_decoration_do_not_load_pydantic() -> None:
    code = (
        "import sys, resilience as rs\n"
        "@rs.resilient('x')\n"
        "def f(): return 1\n"
        "assert 'pydantic' not in sys.modules, 'pydantic loaded'\n"
        "assert 'resilience.config' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_use_none_forgets_the_config_and_the_next_call_builds_afresh() -> None:
    op = _name()
    _use({"operations": {op: {"retry": {"max_attempts": 3}}}})
    flaky = Flaky(2)
    fn = rs.resilient(op)(flaky)
    assert fn() == "ok"
    config.use(None)
    assert active_module._active is None
    _use({"operations": {op: {"retry": False}}})
    flaky.calls, flaky.failures = 0, 1
    with pytest.raises(ConnectionError):
        fn()
    assert flaky.calls == 1


def test_use_refuses_what_is_not_a_config() -> None:
    with pytest.raises(ConfigError):
        config.use({"operations": {}})  # type: ignore[arg-type]


class AsyncGateway:
    """An object whose `__call__` is `async def`: fails `failures` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, amount: int) -> str:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.calls <= self.failures:
            raise ConnectionError("gateway down")
        return f"charged {amount}"


@pytest.mark.anyio
async def test_an_async_callable_object_gets_retries_and_the_fallback() -> None:
    op = _name()
    _use(
        {
            "operations": {
                op: {"retry": {"max_attempts": 3, "backoff": {"kind": "constant", "delay": 0}}}
            }
        }
    )
    gateway = AsyncGateway(2)
    charge = rs.resilient(op)(gateway)
    assert inspect.iscoroutinefunction(charge)
    with anyio.fail_after(10):
        assert await charge(5) == "charged 5"
    assert gateway.calls == 3  # retried, not one attempt through a sync wrapper
    down = AsyncGateway(99)
    degraded = rs.resilient(op, fallback=rs.Default("queued"))(down)
    with anyio.fail_after(10):
        assert await degraded(5) == "queued"  # the fallback saw the awaited failure
    assert down.calls == 3


def test_generators_are_refused_by_resilient() -> None:
    def rows() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        rs.resilient(_name())(rows)


def test_config_does_not_import_what_is_built_from_it() -> None:
    # config announces swaps to listeners; @resilient listens. The circle is gone.
    import ast

    source = Path(active_module.__file__).read_text()
    imported = [
        node.module or ""
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
    ]
    assert not [m for m in imported if "resilient" in m]
    code = (
        "import sys\n"
        "from resilience import config\n"
        "config.use(config.load(environ={'RESILIENCE_ENV': 'testing'}))\n"
        "assert 'resilience._resilient' not in sys.modules, 'config imported _resilient'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_a_swap_reaches_functions_decorated_before_config_was_imported() -> None:
    # A child process: @resilient first (config not imported), then a call, then use().
    code = (
        "import resilience as rs\n"
        "calls = []\n"
        "@rs.resilient('op')\n"
        "def f():\n"
        "    calls.append(1)\n"
        "    raise ConnectionError('down')\n"
        "from resilience import config\n"
        "config.use(config.load(data={'operations': {'op': {'retry': {'max_attempts': 1},"
        " 'fallback': {'default': 'a'}}}}, environ={'RESILIENCE_ENV': 'testing'}))\n"
        "assert f() == 'a', 'first config'\n"
        "config.register('op', {'retry': {'max_attempts': 2, 'backoff': {'kind': 'constant',"
        " 'delay': 0}}, 'fallback': {'default': 'b'}})\n"
        "calls.clear()\n"
        "assert f() == 'b', 'the swap was announced'\n"
        "assert len(calls) == 2, calls\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
