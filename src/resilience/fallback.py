"""Fallback chains: serve the best answer still available, and say how degraded it is.

A `FallbackChain` tries its steps in order: real work (`Step`), the last good answer for the
same arguments (`StaleCache`), a safe default (`Default`). Every answer comes back as a
`Served(value, level, source, errors)`, so the caller can tell its users "showing cached data".

Which errors fall through to the next step is the classifier's call: TRANSIENT and
RATE_LIMITED errors (a connection refused, a timeout, an open circuit) fall through; PERMANENT
errors (a bad request) are raised as they are, never masked by a stale answer. A step can
override that with its own `classifier=` or `fall_through=`.

Example:
    >>> import resilience as rs
    >>> def live(symbol):
    ...     raise ConnectionError("quotes service down")
    >>> chain = rs.FallbackChain(rs.Step(live), rs.Default(0.0), name="quotes")
    >>> served = chain.execute("ACME")
    >>> served.value, served.level.name, served.source
    (0.0, 'LIMITED', 'default')
"""

from __future__ import annotations

import copy
import enum
import inspect
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, NamedTuple, TypeVar, overload

from . import events
from ._clock import SYSTEM_CLOCK, Clock
from ._deadline import cannot_hold
from ._errors import AllFallbacksFailed, ResilienceError
from ._policy import _is_generator, callable_name, is_async, refuse_awaitable
from ._validate import Errors, raise_if
from .classify import DEFAULT_CLASSIFIER, Classifier

__all__ = [
    "Default",
    "DegradationLevel",
    "FallbackChain",
    "Served",
    "StaleCache",
    "Step",
]

T = TypeVar("T")

FallThrough = Callable[[BaseException], bool] | tuple[type[BaseException], ...]


class DegradationLevel(enum.IntEnum):
    """How degraded an answer is. Ordered: `FULL < DEGRADED < LIMITED < CACHE_ONLY`.

    Example:
        >>> DegradationLevel.FULL < DegradationLevel.DEGRADED
        True
    """

    FULL = 0
    DEGRADED = 1
    LIMITED = 2
    CACHE_ONLY = 3


class Served(NamedTuple, Generic[T]):
    """An answer and where it came from (an immutable named tuple: cheap to build, and
    `value, level, source, errors = chain.execute(...)` works).

    Attributes:
        value: what the serving step returned.
        level: its `DegradationLevel`.
        source: the serving step's name (a function's name, "stale_cache", "default", or a
            failover tier's name).
        errors: the errors of the steps tried before it, in order (empty when the first step
            served).

    Example:
        >>> s = Served(42, DegradationLevel.FULL, "live", ())
        >>> s.degraded
        False
    """

    value: T
    level: DegradationLevel
    source: str
    errors: tuple[BaseException, ...] = ()

    @property
    def degraded(self) -> bool:
        """True when the answer is not a FULL one."""
        return self.level is not DegradationLevel.FULL


def _check_level(errors: Errors, level: object) -> None:
    if not isinstance(level, DegradationLevel):
        errors.append(("level", f"must be a DegradationLevel, got {level!r}"))


def _check_fall_through(errors: Errors, fall_through: object) -> None:
    if fall_through is None or callable(fall_through):
        return
    if isinstance(fall_through, tuple) and all(
        isinstance(t, type) and issubclass(t, BaseException) for t in fall_through
    ):
        return
    errors.append(("fall_through", f"must be exception types or a predicate, got {fall_through!r}"))


def _fall_through_predicate(
    fall_through: FallThrough | None,
) -> Callable[[BaseException], bool] | None:
    if fall_through is None:
        return None
    if isinstance(fall_through, tuple):
        types = fall_through
        return lambda exc: isinstance(exc, types)
    return fall_through


class _Base(Generic[T]):
    """What every kind of step shares: a level, a name, and how its errors are judged."""

    __slots__ = ("_fall_through", "classifier", "is_async", "level", "name")

    kind = "step"
    level: DegradationLevel
    name: str
    classifier: Classifier | None
    is_async: bool
    _fall_through: Callable[[BaseException], bool] | None

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def falls_through(self, exc: BaseException, default: Classifier) -> bool:
        if self._fall_through is not None:
            return bool(self._fall_through(exc))
        return (self.classifier or default).classify(exc).retryable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, level={self.level.name})"


class Step(_Base[T]):
    """One way of answering: call `fn` with the call's arguments.

    Args:
        fn: a sync or async callable (async as for every policy, see `resilience.Policy`;
            `aexecute` also awaits an awaitable that a sync-looking callable returns).
        level: the `DegradationLevel` of its answers.
        name: the `source` name in `Served` and events (default: the function's qualified
            name; made unique within a chain, see `FallbackChain`).
        classifier: judges its errors (default: the chain's); retryable verdicts fall through.
        fall_through: exception types, or `predicate(exc) -> bool`, that decides alone which
            errors fall through to the next step (the rest are raised).

    Raises:
        ConfigError: `fn` is not callable or is a generator function, or `level` is not a
            DegradationLevel.

    Example:
        >>> Step(len, level=DegradationLevel.DEGRADED)
        Step('len', level=DEGRADED)
    """

    __slots__ = ("fn",)

    @overload
    def __init__(
        self,
        fn: Callable[..., Awaitable[T]],
        level: DegradationLevel = ...,
        *,
        name: str | None = ...,
        classifier: Classifier | None = ...,
        fall_through: FallThrough | None = ...,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[..., T],
        level: DegradationLevel = ...,
        *,
        name: str | None = ...,
        classifier: Classifier | None = ...,
        fall_through: FallThrough | None = ...,
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[..., Any],
        level: DegradationLevel = DegradationLevel.FULL,
        *,
        name: str | None = None,
        classifier: Classifier | None = None,
        fall_through: FallThrough | None = None,
    ) -> None:
        raise_if(
            self.validate(
                fn=fn, level=level, name=name, classifier=classifier, fall_through=fall_through
            ),
            "Step",
        )
        self.fn = fn
        self.level = level
        self.name = name or callable_name(fn)
        self.classifier = classifier
        self.is_async = is_async(fn)
        self._fall_through = _fall_through_predicate(fall_through)

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.fn(*args, **kwargs)

    @staticmethod
    def validate(**kwargs: Any) -> list[tuple[str, str]]:
        """The problems with these constructor arguments (empty when they are fine)."""
        errors = Errors()
        fn = kwargs.get("fn")
        if not callable(fn):
            errors.append(("fn", f"must be callable, got {type(fn).__name__} {fn!r:.80}"))
        elif (what := _is_generator(fn)) is not None:
            errors.append(("fn", f"is {what}: its items are not an answer to serve"))
        _check_level(errors, kwargs.get("level", DegradationLevel.FULL))
        name = kwargs.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            errors.append(("name", f"must be a non-empty string, got {name!r}"))
        classifier = kwargs.get("classifier")
        if classifier is not None and not isinstance(classifier, Classifier):
            errors.append(("classifier", f"must be a Classifier, got {classifier!r}"))
        _check_fall_through(errors, kwargs.get("fall_through"))
        return errors


class Default(_Base[T]):
    """The last resort: a fixed value, or `value_or_callable(*args, **kwargs)`.

    Args:
        value_or_callable: the value to serve; a callable is called with the call's
            arguments (sync or async) and its result is served.
        level: the `DegradationLevel` of the answer (LIMITED by default).
        name: the `source` name (default "default").

    Example:
        >>> Default("deny").name
        'default'
    """

    __slots__ = ("factory", "value")

    kind = "default"

    @overload
    def __init__(
        self,
        value_or_callable: Callable[..., Awaitable[T]],
        level: DegradationLevel = ...,
        *,
        name: str = ...,
    ) -> None: ...
    @overload
    def __init__(
        self,
        value_or_callable: Callable[..., T],
        level: DegradationLevel = ...,
        *,
        name: str = ...,
    ) -> None: ...
    @overload
    def __init__(
        self,
        value_or_callable: T,
        level: DegradationLevel = ...,
        *,
        name: str = ...,
    ) -> None: ...
    def __init__(
        self,
        value_or_callable: Any,
        level: DegradationLevel = DegradationLevel.LIMITED,
        *,
        name: str = "default",
    ) -> None:
        raise_if(self.validate(level=level, name=name), "Default")
        self.factory: Callable[..., Any] | None = (
            value_or_callable if callable(value_or_callable) else None
        )
        self.value = value_or_callable
        self.level = level
        self.name = name
        self.classifier = None
        self.is_async = self.factory is not None and is_async(self.factory)
        self._fall_through = None

    @staticmethod
    def validate(**kwargs: Any) -> list[tuple[str, str]]:
        """The problems with these constructor arguments (empty when they are fine)."""
        errors = Errors()
        _check_level(errors, kwargs.get("level", DegradationLevel.LIMITED))
        name = kwargs.get("name", "default")
        if not isinstance(name, str) or not name:
            errors.append(("name", f"must be a non-empty string, got {name!r}"))
        return errors

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.factory is not None:
            return self.factory(*args, **kwargs)
        return self.value


class StaleCache(_Base[Any]):
    """Serves the last good result of the chain's real steps for the same arguments.

    The chain stores every answer a `Step` gives (keyed by the call's arguments) and this
    step serves it while it is younger than `max_age` seconds. Calls whose arguments are not
    hashable are neither stored nor served. A miss falls through to the next step.

    Args:
        max_age: seconds a stored answer may be served for (> 0; `inf` for no limit).
        max_size: how many argument keys are kept (least recently used are dropped first).
        level: the level of its answers (CACHE_ONLY).
        key: optional `callable(*args, **kwargs) -> hashable` to build the key yourself.
        clock: where time is read (default: the chain's clock).
        name: the `source` name (default "stale_cache").

    Example:
        >>> cache = StaleCache(max_age=60.0, max_size=100)
        >>> cache.put(("alice",), {}, {"groups": ["staff"]})
        >>> cache.get(("alice",), {})
        {'groups': ['staff']}
    """

    __slots__ = ("_data", "_key", "_lock", "clock", "max_age", "max_size")

    kind = "cache"

    def __init__(
        self,
        max_age: float = 300.0,
        *,
        max_size: int = 1024,
        level: DegradationLevel = DegradationLevel.CACHE_ONLY,
        key: Callable[..., Hashable] | None = None,
        clock: Clock | None = None,
        name: str = "stale_cache",
    ) -> None:
        raise_if(
            self.validate(max_age=max_age, max_size=max_size, level=level, key=key, name=name),
            "StaleCache",
        )
        self.max_age = float(max_age)
        self.max_size = max_size
        self.level = level
        self.name = name
        self.clock: Clock | None = clock
        self.classifier = None
        self.is_async = False
        self._fall_through = None
        self._key = key
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    @staticmethod
    def validate(**kwargs: Any) -> list[tuple[str, str]]:
        """The problems with these constructor arguments (empty when they are fine)."""
        errors = Errors()
        errors.positive("max_age", kwargs.get("max_age", 300.0), finite=False)
        errors.integer("max_size", kwargs.get("max_size", 1024), minimum=1)
        _check_level(errors, kwargs.get("level", DegradationLevel.CACHE_ONLY))
        key = kwargs.get("key")
        if key is not None and not callable(key):
            errors.append(("key", f"must be callable, got {key!r}"))
        name = kwargs.get("name", "stale_cache")
        if not isinstance(name, str) or not name:
            errors.append(("name", f"must be a non-empty string, got {name!r}"))
        return errors

    def _now(self) -> float:
        return (self.clock or SYSTEM_CLOCK).monotonic()

    def key_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable | None:
        """The cache key of a call, or None when its arguments are not hashable."""
        try:
            if self._key is not None:
                k = self._key(*args, **kwargs)
            else:
                k = (args, tuple(sorted(kwargs.items()))) if kwargs else args
            hash(k)
        except Exception:  # unhashable, or a key function that fails: no caching, no failure
            return None
        return k

    def put(self, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any) -> None:
        """Remember `value` as the last good answer for these arguments."""
        k = self.key_for(args, kwargs)
        if k is None:
            return
        now = self._now()
        with self._lock:
            self._data[k] = (now, value)
            self._data.move_to_end(k)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def get(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The stored answer for these arguments.

        Raises:
            ResilienceError: nothing stored, or older than `max_age`.
        """
        k = self.key_for(args, kwargs)
        if k is None:
            raise ResilienceError("arguments are not hashable; nothing cached")
        with self._lock:
            hit = self._data.get(k)
            if hit is not None:
                self._data.move_to_end(k)
        if hit is None:
            raise ResilienceError("no cached result for these arguments")
        age = self._now() - hit[0]
        if age > self.max_age:
            raise ResilienceError(
                f"cached result is {age:.1f} s old, older than max_age={self.max_age:g} s"
            )
        return hit[1]

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.get(args, kwargs)

    def clear(self) -> None:
        """Forget every stored answer."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


AnyStep = Step[Any] | StaleCache | Default[Any]


class FallbackChain(Generic[T]):
    """Try each step in order; serve the first answer, and say at which level.

    Generic in the value type: `FallbackChain(Step(live), Default(0.0))` is a
    `FallbackChain[float]`, its `execute` gives `Served[float]`.

    Names are unique within a chain: a step whose name an earlier step already has (two
    bound methods of two instances of one class, two `Default`s) is served as "name#2",
    "name#3", so `Served.source` always tells which step answered.

    Args:
        *steps: `Step`, `StaleCache` and `Default` objects (a bare callable is taken as
            `Step(fn)` at level FULL).
        name: the operation's name (in events and errors).
        classifier: decides which errors fall through (retryable ones) and which are raised
            (PERMANENT ones); a step's own `classifier=`/`fall_through=` wins.
        clock: time for the `StaleCache` steps that have no clock of their own.

    Raises:
        ConfigError: no steps, a step that is neither a step nor callable, a bad argument.

    Example:
        >>> import resilience as rs
        >>> calls = iter([ConnectionError("down")])
        >>> def live(user):
        ...     err = next(calls, None)
        ...     if err: raise err
        ...     return f"{user}: fresh"
        >>> chain = rs.FallbackChain(rs.Step(live), rs.StaleCache(), rs.Default("?"))
        >>> chain.execute("bob").source          # live fails, nothing cached yet
        'default'
        >>> chain("bob")                         # live works and is remembered
        'bob: fresh'
    """

    __slots__ = ("_caches", "_has_async", "classifier", "clock", "name", "steps")

    def __init__(
        self,
        *steps: Step[T] | Default[T] | StaleCache | Callable[..., Awaitable[T]] | Callable[..., T],
        name: str = "fallback",
        classifier: Classifier = DEFAULT_CLASSIFIER,
        clock: Clock | None = None,
    ) -> None:
        raise_if(self.validate(*steps, name=name, classifier=classifier), name)
        self.name = name
        self.classifier = classifier
        self.clock = clock or SYSTEM_CLOCK
        built: list[AnyStep] = _unique([s if isinstance(s, _Base) else Step(s) for s in steps])
        for s in built:
            if isinstance(s, StaleCache) and s.clock is None:
                s.clock = self.clock
        self.steps: tuple[AnyStep, ...] = tuple(built)
        self._caches = tuple(s for s in built if isinstance(s, StaleCache))
        self._has_async = any(s.is_async for s in built)

    @staticmethod
    def validate(*steps: object, **kwargs: Any) -> list[tuple[str, str]]:
        """The problems with these constructor arguments (empty when they are fine)."""
        errors = Errors()
        if not steps:
            errors.append(("steps", "a fallback chain needs at least one step"))
        for i, s in enumerate(steps):
            if not isinstance(s, _Base) and not callable(s):
                errors.append(
                    (
                        f"steps[{i}]",
                        f"must be a Step, StaleCache, Default or callable, got {s!r:.80}",
                    )
                )
        name = kwargs.get("name", "fallback")
        if not isinstance(name, str) or not name:
            errors.append(("name", f"must be a non-empty string, got {name!r}"))
        classifier = kwargs.get("classifier", DEFAULT_CLASSIFIER)
        if not isinstance(classifier, Classifier):
            errors.append(("classifier", f"must be a Classifier, got {classifier!r}"))
        return errors

    # --- the core, shared by the sync and async shells --------------------------------

    def _no_time(self, step: AnyStep, errors: list[BaseException]) -> bool:
        """A time budget (rs.deadline, a Timeout) that is used up starts no further `Step`
        (the cache and the default, which answer at once, still serve); True = skip it."""
        if step.kind != "step":
            return False
        out = cannot_hold(0.0, self.name)
        if out is None:
            return False
        errors.append(out)
        return True

    def _failed(self, step: AnyStep, exc: Exception, errors: list[BaseException]) -> None:
        """Record a step's failure; re-raise it when it must not fall through."""
        if step.kind == "step" and not step.falls_through(exc, self.classifier):
            raise exc
        errors.append(exc)

    def _served(
        self,
        step: AnyStep,
        value: Any,
        errors: list[BaseException],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Served[T]:
        if step.kind == "step":
            for cache in self._caches:
                cache.put(args, kwargs, value)
        if events.enabled and (errors or step.level is not DegradationLevel.FULL):
            events.emit(events.FallbackServed(self.name, step.level.name, step.name, len(errors)))
        return Served(value, step.level, step.name, tuple(errors))

    def _exhausted(self, errors: list[BaseException]) -> AllFallbacksFailed:
        return AllFallbacksFailed(errors, operation=self.name)

    # --- sync shell --------------------------------------------------------------------

    def execute(self, *args: Any, **kwargs: Any) -> Served[T]:
        """Serve the call from the first step that answers.

        Returns:
            `Served(value, level, source, errors)`.

        Raises:
            AllFallbacksFailed: every step failed (`.errors`, one per step).
            Exception: a step's error that must not fall through (PERMANENT), as it is.
            TypeError: the chain has async steps, or a step returned an awaitable (use
                `aexecute`).
        """
        if self._has_async:
            raise TypeError(f"fallback chain '{self.name}' has async steps: use aexecute()")
        errors: list[BaseException] = []
        for step in self.steps:
            if self._no_time(step, errors):
                continue
            try:
                value = step.run(args, kwargs)
            except Exception as exc:
                self._failed(step, exc, errors)
                continue
            if inspect.isawaitable(value):
                refuse_awaitable(value, step.name, f"execute() of fallback chain {self.name!r}")
            return self._served(step, value, errors, args, kwargs)
        raise self._exhausted(errors)

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        """`execute(...).value`: the answer alone (its level is in the events)."""
        return self.execute(*args, **kwargs).value

    # --- async shell -------------------------------------------------------------------

    async def aexecute(self, *args: Any, **kwargs: Any) -> Served[T]:
        """`execute` for async code: async steps are awaited, sync ones called.

        Example:
            >>> import anyio, resilience as rs
            >>> async def live(q):
            ...     raise TimeoutError
            >>> chain = rs.FallbackChain(rs.Step(live), rs.Default("n/a"))
            >>> anyio.run(chain.aexecute, "q").value
            'n/a'
        """
        errors: list[BaseException] = []
        for step in self.steps:
            if self._no_time(step, errors):
                continue
            try:
                value = step.run(args, kwargs)
                if step.is_async or inspect.isawaitable(value):
                    value = await value
            except Exception as exc:
                self._failed(step, exc, errors)
                continue
            return self._served(step, value, errors, args, kwargs)
        raise self._exhausted(errors)

    async def acall(self, *args: Any, **kwargs: Any) -> T:
        """`(await aexecute(...)).value`."""
        return (await self.aexecute(*args, **kwargs)).value

    def __repr__(self) -> str:
        return f"FallbackChain({', '.join(map(repr, self.steps))}, name={self.name!r})"


def unique_names(names: list[str]) -> list[str]:
    """Later duplicates get "#2", "#3"... (skipping names already taken).

    Example:
        >>> unique_names(["Client.get", "Client.get", "default", "Client.get"])
        ['Client.get', 'Client.get#2', 'default', 'Client.get#3']
    """
    taken = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            n = 2
            while f"{name}#{n}" in taken:
                n += 1
            name = f"{name}#{n}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


def _unique(steps: list[AnyStep]) -> list[AnyStep]:
    """The steps, a renamed copy for each whose name an earlier step has (users' objects are
    never renamed: a step may be shared by several chains)."""
    out: list[AnyStep] = []
    for step, name in zip(steps, unique_names([s.name for s in steps]), strict=True):
        if name != step.name:
            step = copy.copy(step)
            step.name = name
        out.append(step)
    return out
