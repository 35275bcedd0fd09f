"""Tiered failover: primary -> secondary -> tertiary within one call, and back to primary.

A `Failover` holds an ordered list of `Tier`s (data centres, providers, replicas), each behind
its own `CircuitBreaker`. A call goes to the best tier that is up; when that tier fails with a
TRANSIENT error (or its breaker is open), the *same call* moves on to the next tier, so no
request is lost. PERMANENT errors (a bad request) are raised at once: another tier would
refuse it too.

Tiers that are down come back in one of two ways:

* with `health_check=callable(tier) -> bool`, a down tier is probed every `probe_interval`
  seconds (lazily, at the start of a call, for sync users; in a background task inside
  `async with failover:`); a passing probe closes its breaker and it serves again at once;
  a failing probe keeps real traffic away from it until the next probe;
* without one, its breaker half-opens after `probe_interval` seconds (the breakers'
  `open_duration` defaults to it) and real calls are the trials; when they succeed the
  breaker closes and the tier serves again.

Example:
    >>> import resilience as rs
    >>> def dc1(q): raise ConnectionError("dc1 unreachable")
    >>> def dc2(q): return f"dc2 answers {q}"
    >>> fo = rs.Failover([rs.Tier("dc1", dc1), rs.Tier("dc2", dc2)], name="ldap")
    >>> served = fo.execute("uid=ann")
    >>> served.value, served.source
    ('dc2 answers uid=ann', 'dc2')
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from . import events
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import AllTiersFailed, CircuitOpenError, ConfigError
from ._policy import _is_generator, callable_name, is_async
from ._validate import Errors, raise_if
from .classify import DEFAULT_CLASSIFIER, Classifier, Verdict
from .fallback import DegradationLevel, Served, unique_names

__all__ = ["Failover", "Tier"]

DEFAULT_BREAKER: Mapping[str, Any] = {"failure_rate_threshold": 0.5, "minimum_calls": 5}
_UP_STATES = frozenset({"CLOSED", "DISABLED"})
_MANUAL_STATES = frozenset({"FORCED_OPEN"})


@dataclass(frozen=True, slots=True)
class Tier:
    """One place a call can be served from.

    Args:
        name: unique within its Failover (it is `Served.source` and the event/metric label).
        fn: the sync or async callable that serves a call there (async as for every
            policy, see `resilience.Policy`; `acall` also awaits an awaitable that a
            sync-looking callable returns).

    Raises:
        ConfigError: an empty name, or a `fn` that is not callable or is a generator function.

    Example:
        >>> Tier("dc1", print).name
        'dc1'
    """

    name: str
    fn: Callable[..., Any]

    def __post_init__(self) -> None:
        errors = Errors()
        if not isinstance(self.name, str) or not self.name:
            errors.append(("name", f"must be a non-empty string, got {self.name!r}"))
        if not callable(self.fn):
            errors.append(("fn", f"must be callable, got {type(self.fn).__name__}"))
        elif (what := _is_generator(self.fn)) is not None:
            errors.append(("fn", f"is {what}: its items are not an answer to serve"))
        raise_if(errors, f"Tier {self.name!r}")


def _validate_hedge(hedge_after: object) -> list[tuple[str, str]]:
    errors = Errors()
    if hedge_after is not None:
        errors.positive("hedge_after", hedge_after)
    return errors


class _TierState:
    """Everything the failover tracks about one tier."""

    __slots__ = (
        "breaker",
        "fn",
        "held_down",
        "index",
        "is_async",
        "last_args",
        "last_type",
        "level",
        "name",
        "next_probe",
        "probing",
        "tier",
        "up",
    )

    def __init__(self, index: int, tier: Tier, breaker: Any) -> None:
        self.index = index
        self.level = DegradationLevel.FULL if index == 0 else DegradationLevel.DEGRADED
        self.tier = tier
        self.name = tier.name
        self.fn = tier.fn
        self.is_async = is_async(tier.fn)
        self.breaker = breaker
        self.up = True  # our view, refreshed after calls and probes (drives the events)
        self.held_down = False  # its health check failed: no real traffic until one passes
        self.probing = False
        self.next_probe = 0.0
        # the last failure, formatted only when read (a failing call pays no str())
        self.last_type: type[BaseException] | None = None
        self.last_args: tuple[Any, ...] = ()

    @property
    def last_error(self) -> str | None:
        if self.last_type is None:
            return None
        detail = ", ".join(map(str, self.last_args))
        return f"{self.last_type.__name__}: {detail}"[:200]


class Failover:
    """Serve each call from the best tier that is up; move the same call on when one fails.

    Args:
        tiers: `Tier`s in order of preference (at least one; names unique), or bare
            callables, named after the function ("Client.search"; a name already taken gets
            "#2", "#3", so two instances of one class are told apart in `Served.source`).
        name: the operation's name (events, errors, breaker names "<name>/<tier>").
        health_check: `callable(tier) -> bool` (sync or async) that says whether a down tier
            is healthy again; called at most every `probe_interval` seconds per down tier.
        probe_interval: seconds between probes of a tier that is down (> 0); also the
            breakers' default `open_duration`.
        breaker: keyword arguments for each tier's `CircuitBreaker` (the failover's clock and
            classifier, and `open_duration=probe_interval`, are added unless given).
        classifier: which errors move a call on (TRANSIENT, RATE_LIMITED) and which are
            raised (PERMANENT).
        clock: time source for breakers and probes.
        hedge_after: seconds (async tiers only, `acall`/`aexecute`): when the tier serving a
            call has not answered in that time, the same call also starts on the next tier;
            the first success wins and the calls still running are cancelled (Polly's
            hedging, for tail latency). None: no hedging.

    Raises:
        ConfigError: no tiers, duplicate names, a bad argument or breaker setting.

    Example:
        >>> import resilience as rs
        >>> fo = rs.Failover([rs.Tier("a", lambda: "A"), rs.Tier("b", lambda: "B")])
        >>> fo.call(), fo.active_tier
        ('A', 'a')
    """

    def __init__(
        self,
        tiers: Sequence[Tier | Callable[..., Any]],
        *,
        name: str = "failover",
        health_check: Callable[[Tier], Any] | None = None,
        probe_interval: float = 5.0,
        breaker: Mapping[str, Any] | None = None,
        classifier: Classifier = DEFAULT_CLASSIFIER,
        clock: Clock | None = None,
        hedge_after: float | None = None,
    ) -> None:
        raise_if(
            self.validate(
                tiers=tiers,
                name=name,
                health_check=health_check,
                probe_interval=probe_interval,
                breaker=breaker,
                classifier=classifier,
            )
            + _validate_hedge(hedge_after),
            name if isinstance(name, str) else None,
        )
        from . import _registry
        from .breaker import CircuitBreaker, CircuitState

        tiers = _named(tiers)
        self.name = name
        self.clock = clock or SYSTEM_CLOCK
        self.classifier = classifier
        self.probe_interval = float(probe_interval)
        self.health_check = health_check
        kwargs = dict(DEFAULT_BREAKER if breaker is None else breaker)
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("classifier", classifier)
        kwargs.setdefault("open_duration", self.probe_interval)
        known = inspect.signature(CircuitBreaker).parameters
        unknown = sorted(k for k in kwargs if k not in known or k == "name")
        if unknown:
            raise ConfigError(
                [("breaker", f"unknown CircuitBreaker argument(s): {', '.join(unknown)}")],
                operation=name,
            )
        states = []
        for i, tier in enumerate(tiers):
            try:
                br = CircuitBreaker(f"{name}/{tier.name}", **kwargs)
            except ConfigError as exc:
                raise ConfigError(
                    [(f"breaker.{loc}" if loc else "breaker", msg) for loc, msg in exc.errors],
                    operation=name,
                ) from None
            states.append(_TierState(i, tier, br))
        self._up_states = frozenset(CircuitState[n] for n in _UP_STATES)
        self._states: tuple[_TierState, ...] = tuple(states)
        self._by_name = {st.name: st for st in states}
        self._has_async = any(st.is_async for st in states)
        self._active = 0
        self._down = 0  # how many tiers are down (our view); 0 keeps the happy path short
        self._lock = threading.Lock()
        self._background = False
        self._task_group: Any = None
        self.hedge_after = None if hedge_after is None else float(hedge_after)
        if self.hedge_after is not None and not all(st.is_async for st in states):
            sync = [st.name for st in states if not st.is_async]
            raise ConfigError(
                [
                    (
                        "hedge_after",
                        f"hedging cancels the calls that lose, so every tier must be "
                        f"async; sync tier(s): {', '.join(sync)}",
                    )
                ],
                operation=name,
            )
        _registry.register("failover", name, self)

    @staticmethod
    def validate(**kwargs: Any) -> list[tuple[str, str]]:
        """The problems with these constructor arguments (empty when they are fine)."""
        errors = Errors()
        tiers = kwargs.get("tiers")
        if not isinstance(tiers, Sequence) or isinstance(tiers, str) or not tiers:
            errors.append(("tiers", f"must be a non-empty list of Tier, got {tiers!r:.80}"))
        else:
            seen: set[str] = set()
            for i, tier in enumerate(tiers):
                if callable(tier) and not isinstance(tier, Tier):
                    if (what := _is_generator(tier)) is not None:
                        errors.append((f"tiers[{i}]", f"is {what}: not an answer to serve"))
                elif not isinstance(tier, Tier):
                    errors.append(
                        (f"tiers[{i}]", f"must be a Tier or a callable, got {tier!r:.80}")
                    )
                elif tier.name in seen:
                    errors.append((f"tiers[{i}]", f"duplicate tier name {tier.name!r}"))
                else:
                    seen.add(tier.name)
        name = kwargs.get("name", "failover")
        if not isinstance(name, str) or not name:
            errors.append(("name", f"must be a non-empty string, got {name!r}"))
        hc = kwargs.get("health_check")
        if hc is not None and not callable(hc):
            errors.append(("health_check", f"must be callable or None, got {hc!r:.80}"))
        errors.positive("probe_interval", kwargs.get("probe_interval", 5.0))
        br = kwargs.get("breaker")
        if br is not None and not isinstance(br, Mapping):
            errors.append(("breaker", f"must be a dict of CircuitBreaker arguments, got {br!r}"))
        clf = kwargs.get("classifier", DEFAULT_CLASSIFIER)
        if not isinstance(clf, Classifier):
            errors.append(("classifier", f"must be a Classifier, got {clf!r}"))
        return errors

    # --- read-outs -----------------------------------------------------------------------

    @property
    def active_tier(self) -> str:
        """The tier calls go to first: the best one that is up (its breaker closed)."""
        if self._down:
            self._refresh()
        return self._states[self._active].name

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return tuple(st.tier for st in self._states)

    def breaker(self, tier: str) -> Any:
        """The `CircuitBreaker` of the tier named `tier`."""
        return self._by_name[tier].breaker

    def tiers_status(self) -> dict[str, dict[str, Any]]:
        """Per tier: state, up, active, held_down (its health check failed), next probe.

        Example:
            >>> import resilience as rs
            >>> fo = rs.Failover([rs.Tier("a", print)])
            >>> fo.tiers_status()["a"]["up"]
            True
        """
        self._refresh()
        now = self.clock.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for st in self._states:
            out[st.name] = {
                "state": st.breaker.state.name.lower(),
                "up": st.up,
                "active": st.index == self._active,
                "held_down": st.held_down,
                "next_probe_in": (
                    max(st.next_probe - now, 0.0)
                    if not st.up and self.health_check is not None
                    else None
                ),
                "last_error": st.last_error,
                "breaker": st.breaker.snapshot(),
            }
        return out

    # --- the core, shared by the sync and async shells --------------------------------

    def _is_up(self, st: _TierState) -> bool:
        return not st.held_down and st.breaker.state in self._up_states

    def _refresh(self) -> None:
        """Recompute which tiers are up and which is active; emit the transitions."""
        for st in self._states:  # lock-free look first: most calls change nothing
            if self._is_up(st) != st.up:
                break
        else:
            return
        now = self.clock.monotonic()
        out: list[events.Event] = []
        with self._lock:
            down = 0
            for st in self._states:
                up = self._is_up(st)
                if up != st.up:
                    st.up = up
                    if up:
                        st.held_down = False
                        out.append(events.TierRecovered(self.name, st.name))
                    else:
                        st.next_probe = now + self.probe_interval
                down += not up
            self._down = down
            old = self._active
            new = next((st.index for st in self._states if st.up), old)
            if new != old:
                self._active = new
                a, b = self._states[old], self._states[new]
                reason = f"tier '{a.name}' is down" if new > old else f"tier '{b.name}' recovered"
                if a.last_error and new > old:
                    reason += f": {a.last_error}"
                out.append(events.FailoverSwitched(self.name, a.name, b.name, reason))
        if out and events.enabled:
            for ev in out:
                events.emit(ev)

    def _failed(self, st: _TierState, exc: Exception, errors: dict[str, BaseException]) -> None:
        """Record a tier's failure; re-raise errors that must not move on."""
        if not isinstance(exc, CircuitOpenError):
            st.last_type = type(exc)
            st.last_args = exc.args
            if self.classifier.classify(exc).verdict is Verdict.PERMANENT:
                if errors or self._down:
                    self._refresh()
                raise exc
        errors[st.name] = exc

    def _held(self, st: _TierState) -> CircuitOpenError:
        remaining = max(st.next_probe - self.clock.monotonic(), 0.0)
        return CircuitOpenError(st.breaker.name, remaining, "open", "its health check failed")

    def _served(self, st: _TierState, value: Any, errors: dict[str, BaseException]) -> Served[Any]:
        if errors or self._down:
            self._refresh()
            return Served(value, st.level, st.name, tuple(errors.values()))
        return Served(value, st.level, st.name, ())

    def _exhausted(self, errors: dict[str, BaseException]) -> AllTiersFailed:
        self._refresh()
        return AllTiersFailed(errors, operation=self.name)

    def _due_probes(self) -> list[_TierState]:
        """Claim the down tiers whose probe is due (each is probed by one caller only)."""
        if self.health_check is None:
            return []
        now = self.clock.monotonic()
        with self._lock:
            due = [
                st
                for st in self._states
                if not st.up
                and not st.probing
                and now >= st.next_probe
                and st.breaker.state.name not in _MANUAL_STATES  # an operator's call: keep it
            ]
            for st in due:
                st.probing = True
        return due

    def _probed(self, st: _TierState, ok: bool) -> None:
        with self._lock:
            st.probing = False
            if ok:
                st.held_down = False
            else:
                st.held_down = True
                st.next_probe = self.clock.monotonic() + self.probe_interval
        if ok and st.breaker.state.name not in _MANUAL_STATES:
            st.breaker.reset()
        self._refresh()

    # --- sync shell ----------------------------------------------------------------------

    def _probe_sync(self) -> None:
        assert self.health_check is not None
        if inspect.iscoroutinefunction(self.health_check):
            return  # async health checks run in acall() or under `async with`
        due = self._due_probes()
        try:
            for st in due:
                try:
                    ok = bool(self.health_check(st.tier))
                except Exception:
                    ok = False
                self._probed(st, ok)
        finally:  # interrupted mid-probe: the tiers must stay probe-able
            with self._lock:
                for st in due:
                    st.probing = False

    def execute(self, *args: Any, **kwargs: Any) -> Served[Any]:
        """Serve the call from the best tier that is up, moving on when one fails.

        Returns:
            `Served(value, level, source=tier name, errors of the tiers tried before)`;
            level is FULL from the first tier, DEGRADED from any other.

        Raises:
            AllTiersFailed: no tier could serve it (`.errors`: tier name -> error).
            Exception: a PERMANENT error of a tier, as it is.
            TypeError: some tier is async (use `aexecute`/`acall`).
        """
        if self.hedge_after is not None:
            raise TypeError(
                f"failover '{self.name}' hedges (hedge_after={self.hedge_after:g}), which needs "
                "cancellation: it is async only, use acall()/aexecute()"
            )
        if self._has_async:
            raise TypeError(f"failover '{self.name}' has async tiers: use acall()/aexecute()")
        if self._down and self.health_check is not None:
            self._probe_sync()
        errors: dict[str, BaseException] = {}
        for st in self._states:
            if st.held_down:
                errors[st.name] = self._held(st)
                continue
            try:
                value = st.breaker.call(st.fn, *args, **kwargs)
            except Exception as exc:
                self._failed(st, exc, errors)
                continue
            return self._served(st, value, errors)
        raise self._exhausted(errors)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """`execute(...).value`."""
        return self.execute(*args, **kwargs).value

    __call__ = call

    # --- async shell ---------------------------------------------------------------------

    async def _probe_async(self) -> None:
        import anyio.to_thread

        check = self.health_check
        assert check is not None
        due = self._due_probes()
        try:
            for st in due:
                try:
                    if inspect.iscoroutinefunction(check):
                        result = await check(st.tier)
                    else:  # a blocking check (a socket connect, an LDAP bind) in a thread
                        result = await anyio.to_thread.run_sync(
                            check, st.tier, abandon_on_cancel=True
                        )
                        if inspect.isawaitable(result):
                            result = await result
                    ok = bool(result)
                except Exception:
                    ok = False
                self._probed(st, ok)
        finally:  # cancelled mid-probe: the tiers must stay probe-able
            with self._lock:
                for st in due:
                    st.probing = False

    async def aexecute(self, *args: Any, **kwargs: Any) -> Served[Any]:
        """`execute` for async code: async tiers are awaited, sync ones called."""
        if self.hedge_after is not None:
            return await self._hedged(args, kwargs, self.hedge_after)
        if self._down and self.health_check is not None and not self._background:
            await self._probe_async()
        errors: dict[str, BaseException] = {}
        for st in self._states:
            if st.held_down:
                errors[st.name] = self._held(st)
                continue
            try:
                if st.is_async:
                    value = await st.breaker.acall(st.fn, *args, **kwargs)
                else:  # a sync-looking tier may still return an awaitable: await it inside
                    value = await st.breaker.acall(_called, st.fn, *args, **kwargs)
            except Exception as exc:
                self._failed(st, exc, errors)
                continue
            return self._served(st, value, errors)
        raise self._exhausted(errors)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """`(await aexecute(...)).value`."""
        return (await self.aexecute(*args, **kwargs)).value

    async def _hedged(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], hedge_after: float
    ) -> Served[Any]:
        """Hedging: the best tier up serves; when the latest call has not answered within
        `hedge_after` (or failed), the same call also starts on the next tier. The first
        success wins and the calls still running are cancelled (their breakers count nothing
        for them); a PERMANENT error is raised at once, as `aexecute` does."""
        import math

        import anyio

        if self._down and self.health_check is not None and not self._background:
            await self._probe_async()
        errors: dict[str, BaseException] = {}
        pending = iter(self._states)
        send, receive = anyio.create_memory_object_stream[tuple[Any, bool, Any]](math.inf)
        launched = running = 0
        won: tuple[_TierState, Any] | None = None
        permanent: Exception | None = None

        async def attempt(st: _TierState) -> None:
            try:
                value = await st.breaker.acall(st.fn, *args, **kwargs)
            except Exception as exc:
                send.send_nowait((st, False, exc))
            else:
                send.send_nowait((st, True, value))

        async def timer(n: int) -> None:
            await self.clock.asleep(hedge_after)
            send.send_nowait((None, False, n))

        def launch(tg: Any) -> None:
            nonlocal launched, running
            for st in pending:
                if st.held_down:
                    errors[st.name] = self._held(st)
                    continue
                launched += 1
                running += 1
                tg.start_soon(attempt, st)
                tg.start_soon(timer, launched)
                return

        with send, receive:
            async with anyio.create_task_group() as tg:
                launch(tg)
                while running:
                    st, ok, value = await receive.receive()
                    if st is None:  # a timer: hedge if the latest call is still out
                        if value == launched:
                            launch(tg)
                        continue
                    running -= 1
                    if ok:
                        won = (st, value)
                        break
                    try:
                        self._failed(st, value, errors)
                    except Exception as exc:  # PERMANENT: another tier would refuse it too
                        permanent = exc
                        break
                    launch(tg)  # a failure moves the call on at once
                tg.cancel_scope.cancel()
        if permanent is not None:
            raise permanent
        if won is not None:
            return self._served(won[0], won[1], errors)
        raise self._exhausted(errors)

    async def _probe_loop(self) -> None:
        tick = self.probe_interval / 4
        while True:
            if self._down:
                await self._probe_async()
            await self.clock.asleep(tick)

    async def __aenter__(self) -> Failover:
        """Probe down tiers in the background (an anyio task) until the block exits."""
        import anyio

        if self._background:
            raise RuntimeError(f"failover '{self.name}' is already running its probes")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._task_group = tg
        self._background = True
        tg.start_soon(self._probe_loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg, self._task_group = self._task_group, None
        self._background = False
        tg.cancel_scope.cancel()
        # the task group holds only our probe task: the block's own error (or cancellation)
        # is not its business, and must come out as it is, not wrapped in an ExceptionGroup
        await tg.__aexit__(None, None, None)
        return None

    def __repr__(self) -> str:
        tiers = ", ".join(st.name for st in self._states)
        return f"Failover([{tiers}], name={self.name!r}, active={self.active_tier!r})"


def _named(tiers: Sequence[Tier | Callable[..., Any]]) -> list[Tier]:
    """Tiers, bare callables named after their function (unique among the names given)."""
    given = [t.name if isinstance(t, Tier) else callable_name(t) for t in tiers]
    # explicit names keep theirs: only the defaults are made unique
    explicit = [t.name for t in tiers if isinstance(t, Tier)]
    names = unique_names(
        explicit + [n for t, n in zip(tiers, given, strict=True) if not isinstance(t, Tier)]
    )[len(explicit) :]
    it = iter(names)
    return [t if isinstance(t, Tier) else Tier(next(it), t) for t in tiers]


async def _called(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a sync-looking tier; await what it returns if that is awaitable."""
    value = fn(*args, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value
