"""`@resilient("operation")`: the policies the active config gives an operation, kept current.

Each decorated function holds a small slot whose `stages` attribute is the whole hot path:
`first, rest = slot.stages; first(*rest, fn, *args, **kwargs)`, exactly what a hand-built
`@pipeline` calls (its first stage, given the others), or a fallback chain around it. When the
active config changes (`config.use`, `config.register`), new pipelines are built first, for
every live slot, and then swapped in, one attribute assignment per slot: a call that already
started finishes on the pipeline it read; the next call sees the new one. Policy objects whose
settings did not change are reused, so a breaker keeps its state (and a bulkhead its running
calls) when only other sections change. Pipelines are shared per operation (one breaker each).

Nothing here imports pydantic: `resilience.config` is imported on the first call (which loads
the configuration if nothing was `use`d). The config never imports this module: on the first
call this module registers `_on_swap` with `config.listen`-style hooks (`config._active.listen`),
and the active config announces every swap to it.

Locks: the config's lock first, then ours (`_lock`), in every path that takes both.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from ._errors import ConfigError
from ._policy import check_decoratable, is_async, rewrap_descriptor, wraps

if TYPE_CHECKING:
    from .config import Config, OperationPolicy

__all__ = ["resilient"]

P = ParamSpec("P")
R = TypeVar("R")
Stages = tuple[Callable[..., Any], tuple[Any, ...]]

_lock = threading.RLock()
"""Guards the slots and the shared pipelines (taken inside the config's lock, never around it)."""
_listening = False
_slots: weakref.WeakSet[_Slot] = weakref.WeakSet()
# (operation, id(clock)) -> the shared pipeline of an operation
_shared: dict[tuple[str, int], _Shared] = {}


class _Shared:
    """One operation's built policies (per clock), and the settings they were built from."""

    __slots__ = ("clock", "objects", "pipeline", "policy")

    def __init__(self, policy: OperationPolicy, objects: dict[str, Any], pipeline: Any, clock: Any):
        self.policy = policy
        self.objects = objects
        self.pipeline = pipeline
        self.clock = clock


class _Slot:
    """A decorated function's view of its operation.

    `stages` is `(first, rest)`: the call is `first(*rest, fn, *args, **kwargs)`. One tuple,
    replaced in one assignment, so a call never mixes two configurations.
    """

    __slots__ = ("__weakref__", "clock", "fallback", "fallback_steps", "fn", "is_async",
                 "operation", "shared", "stages")  # fmt: skip

    def __init__(
        self, operation: str, fn: Callable[..., Any], fallback: Sequence[Any], clock: Any
    ) -> None:
        self.operation = operation
        self.fn = fn
        self.fallback = tuple(fallback)
        self.clock = clock
        self.is_async = is_async(fn)
        self.shared: _Shared | None = None
        self.fallback_steps: tuple[Any, Any] | None = None  # (settings, built steps)
        self.stages: Stages = self._lazy()

    def _lazy(self) -> Stages:
        return (self._first_async if self.is_async else self._first_sync), ()

    def _ensure(self) -> Stages:
        from .config import _active

        _listen(_active)
        with _active._lock:
            cfg = _active.current()  # may load, which builds this slot too
            with _lock:
                if self.shared is None:
                    _prepare(cfg, only=(self,))()
                return self.stages

    def _first_sync(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        first, rest = self._ensure()
        return first(*rest, fn, *args, **kwargs)

    async def _first_async(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        first, rest = self._ensure()
        return await first(*rest, fn, *args, **kwargs)


def _build_shared(
    operation: str, policy: OperationPolicy, old: _Shared | None, clock: Any
) -> _Shared:
    from .config._models import SECTIONS
    from .pipeline import Pipeline

    if old is not None and old.policy == policy:
        return old
    objects: dict[str, Any] = {}
    for section in SECTIONS:
        settings = getattr(policy, section)
        if settings is None or section == "fallback":
            continue
        if old is not None and section in old.objects and getattr(old.policy, section) == settings:
            objects[section] = old.objects[section]  # unchanged: keep its state
        else:
            objects[section] = settings.build(operation, clock)
    return _Shared(policy, objects, Pipeline(*objects.values(), name=operation), clock)


def _pipeline_stages(pipeline: Any, is_async: bool) -> Stages:
    """What `@pipeline` itself calls: its first stage, given the rest (no pipeline frame)."""
    first = getattr(pipeline, "_afirst" if is_async else "_first", None)
    rest = getattr(pipeline, "_arest" if is_async else "_rest", None)
    sync_only = getattr(pipeline, "_sync_only", None) is not None
    if first is None or rest is None or (is_async and sync_only):
        return (pipeline.acall if is_async else pipeline.call), ()
    return first, tuple(rest)


def _run_for(slot: _Slot, shared: _Shared) -> tuple[Stages, tuple[Any, Any] | None]:
    from .fallback import FallbackChain, Step

    settings = shared.policy.fallback
    call = shared.pipeline.acall if slot.is_async else shared.pipeline.call
    if settings is None and not slot.fallback:
        return _pipeline_stages(shared.pipeline, slot.is_async), None
    primary = functools.partial(call, slot.fn)
    if slot.fallback_steps is not None and slot.fallback_steps[0] == settings:
        config_steps = slot.fallback_steps  # keep the stale cache's contents
    else:
        config_steps = (settings, tuple(settings.steps(shared.clock)) if settings else ())
    chain = FallbackChain(
        Step(primary, name=slot.operation),
        *config_steps[1],
        *slot.fallback,
        name=slot.operation,
        clock=shared.clock,
    )
    served = chain.acall if slot.is_async else chain

    def run(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return served(*args, **kwargs)  # the chain's first step calls fn through the pipeline

    return (run, ()), config_steps


def _prepare(cfg: Config, only: Sequence[_Slot] | None = None) -> Callable[[], None]:
    """Build what `cfg` gives every live slot; return the function that swaps it all in.

    Raises before anything changes when a policy cannot be built.
    """
    with _lock:
        slots = list(_slots) if only is None else list(only)
        shared: dict[tuple[str, int], _Shared] = {}
        plans = []
        try:
            for slot in slots:
                key = (slot.operation, id(slot.clock))
                entry = shared.get(key)
                if entry is None:
                    policy = cfg.operation(slot.operation)
                    entry = shared[key] = _build_shared(
                        slot.operation, policy, _shared.get(key), slot.clock
                    )
                if entry is slot.shared and only is None:
                    continue
                stages, steps = _run_for(slot, entry)
                plans.append((slot, entry, stages, steps))
        except ConfigError:
            raise
        except (
            Exception
        ) as exc:  # a policy refused what the models accepted: say so, change nothing
            raise ConfigError([("", f"cannot build the policies: {exc!r}")]) from exc

    def commit() -> None:
        with _lock:
            if only is None:  # a full swap: drop what no live function uses any more
                _shared.clear()
            _shared.update(shared)
            for slot, entry, stages, steps in plans:
                slot.shared = entry
                slot.fallback_steps = steps
                slot.stages = stages

    return commit


def _listen(active: Any) -> None:
    """Register with the active config (once): every swap rebuilds the live slots."""
    global _listening
    if not _listening:
        active.listen(_on_swap)
        _listening = True


def _on_swap(cfg: Config | None) -> Callable[[], None]:
    """The active config is about to become `cfg` (None: forgotten): build, return the switch."""
    return _reset if cfg is None else _prepare(cfg)


def _reset() -> None:
    """Every slot back to "build on the next call"; no shared policies kept."""
    with _lock:
        _shared.clear()
        for slot in list(_slots):
            slot.shared = None
            slot.fallback_steps = None
            slot.stages = slot._lazy()


def _as_steps(fallback: Any) -> tuple[Any, ...]:
    if fallback is None:
        return ()
    if isinstance(fallback, list | tuple):
        return tuple(fallback)
    return (fallback,)


class _Decorate(Protocol):
    """What `resilient(...)` returns: a decorator that keeps the signature (ParamSpec)."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...


def resilient(operation: str, *, fallback: Any = None, clock: Any = None) -> _Decorate:
    """Run the decorated function through the policies the active config gives `operation`.

    The pipeline (timeout > retry > rate limit > breaker > bulkhead, each if configured) is
    built on the first call from the active config (`config.use`; if none, `config.load()`),
    shared by every function of the operation, and rebuilt when the config changes.

    Args:
        operation: the operation's name in the config (`[operations."<name>"]`); undeclared
            names get the environment's preset under `[defaults]`.
        fallback: a fallback step (`rs.Default("busy")`, `rs.StaleCache()`, a callable) or a
            list of them, tried after the config's own fallback steps when the call fails
            with a retryable error.
        clock: the clock for the built policies (a `VirtualClock` in tests).

    Returns:
        A decorator that keeps the function's signature (sync or async: what is async is
        decided as for every policy, see `resilience.Policy`; an async one returns a
        coroutine, so `asyncio.create_task(f())` type-checks).

    Raises:
        ConfigError: `operation` is not a non-empty string (at decoration); the config is
            invalid (on the first call).
        TypeError: the decorated function is a generator function (at decoration).

    Example:
        >>> import resilience as rs
        >>> @rs.resilient("greeting", fallback=rs.Default("hello, stranger"))
        ... def greet(name: str) -> str:
        ...     raise ConnectionError("directory down")
        >>> greet("ada")
        'hello, stranger'
    """
    if not isinstance(operation, str) or not operation:
        raise ConfigError([("operation", f"must be a non-empty string, got {operation!r}")])
    steps = _as_steps(fallback)

    def decorator(fn: Callable[P, Any]) -> Callable[P, Any]:
        descriptor = rewrap_descriptor(decorator, fn)
        if descriptor is not None:
            return descriptor  # type: ignore[no-any-return]
        check_decoratable(fn, "@resilient")
        slot = _Slot(operation, fn, steps, clock)
        with _lock:
            _slots.add(slot)
        if slot.is_async:

            @wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                first, rest = slot.stages
                return await first(*rest, fn, *args, **kwargs)

            async_wrapper.__resilient_slot__ = slot  # type: ignore[attr-defined]
            return async_wrapper

        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            first, rest = slot.stages
            return first(*rest, fn, *args, **kwargs)

        wrapper.__resilient_slot__ = slot  # type: ignore[attr-defined]
        return wrapper

    return decorator
