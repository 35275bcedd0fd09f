"""httpx transports that retry, break circuits per host (or route) and fail over across base URLs.

`ResilientTransport` (for `httpx.Client`) and `AsyncResilientTransport` (for
`httpx.AsyncClient`) wrap another transport (any: `httpx.HTTPTransport`, `httpx.MockTransport`,
a proxy's). Every request goes through a policy (by default `Retry(max_attempts=3,
deadline=30.0)`) around a circuit breaker per key; with `tiers=[...]` the request's scheme, host
and port are replaced tier by tier, with `Failover` semantics.

* 408, 425, 429 and 5xx responses count as failures inside the policy; 429 and 503 with a
  `Retry-After` header wait as the server asked (on the injected clock).
* Only idempotent methods (`retry_methods`) with a body that can be sent again are retried;
  others are sent once (still through the breaker, and failed over to another tier only when
  the connection could not be made, so the request was never sent).
* The time budget (`rs.deadline(...)` around the call, and the policy's own `deadline`)
  lowers each request's connect/read/write/pool timeouts to what is left.
* When the policy gives up, the caller gets the last response as httpx would have returned
  it, or the transport error as httpx raises it; an open breaker raises
  `CircuitOpenTransportError` (an `httpx.TransportError` and a `CircuitOpenError`).
* One operation name for every event of the transport (retries and breaker alike):
  `name=`, or "httpx:<host>[:<port>]" per host; never a URL with a path.

This is the only module that imports httpx (the "httpx" extra).

Example:
    >>> import httpx
    >>> from resilience.integrations.httpx import ResilientTransport
    >>> mock = httpx.MockTransport(lambda request: httpx.Response(200, text="hi"))
    >>> with httpx.Client(transport=ResilientTransport(transport=mock)) as client:
    ...     client.get("http://api.internal/x").text
    'hi'
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from .._clock import SYSTEM_CLOCK, Clock
from .._deadline import check_budget
from .._errors import AllTiersFailed, CircuitOpenError, ConfigError
from .._validate import Errors, raise_if
from ..classify import Classification, Classifier, Verdict
from ._http import FAILURE_STATUSES, BreakerGroup, lowered

__all__ = [
    "DEFAULT_RETRY_METHODS",
    "AsyncResilientTransport",
    "CircuitOpenTransportError",
    "ResilientTransport",
]

DEFAULT_RETRY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods that are safe to send again (idempotent), so they are retried."""

DEFAULT_DEADLINE = 30.0
"""Seconds the default policy gives one request, all attempts and waits together."""

_DEFAULT_BREAKER: Mapping[str, Any] = {"failure_rate_threshold": 0.5, "minimum_calls": 5}
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
_PERMANENT = Classification(Verdict.PERMANENT, None, "do not retry")
_KEYS = ("host", "route")


class CircuitOpenTransportError(CircuitOpenError, httpx.TransportError):
    """An open circuit breaker refused the request before it was sent.

    Both a `resilience.CircuitOpenError` (`.name`, `.remaining`, `.state`) and an
    `httpx.TransportError` (`.request`), so `except httpx.HTTPError` code written for httpx
    alone catches it too.

    Example:
        >>> import httpx
        >>> issubclass(CircuitOpenTransportError, httpx.HTTPError)
        True
    """

    def __init__(self, error: CircuitOpenError, request: httpx.Request | None = None) -> None:
        CircuitOpenError.__init__(self, error.name, error.remaining, error.state, error.reason)
        self._request = request

    __str__ = CircuitOpenError.__str__


class _ResponseFailure(Exception):
    """A response with a failure status, raised inside the policy so it counts as a failure.

    It carries `.response` (fully read, connection released), so the classifier reads its
    status and Retry-After like any HTTP error's.
    """

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers

    def __str__(self) -> str:
        r = self.response
        return f"HTTP {r.status_code} from {r.request.method} {r.request.url.host}"


class _Sent(Exception):
    """A non-idempotent request reached a tier and failed there: do not resend it elsewhere."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class _Classifier(Classifier):
    """The transport's classifier: our internal wrappers, and waits that suit an HTTP client.

    * an open breaker is not waited for (it is raised at once, as is);
    * 503 with a Retry-After waits like a 429;
    * `_Sent` is PERMANENT for the failover (the request stays where it was sent) and judged
      by its cause for the breakers (`final=False`).
    """

    __slots__ = ("final",)

    def __init__(self, *, final: bool) -> None:
        super().__init__()
        self.final = final

    def classify(self, outcome: object, *, now: float | None = None) -> Classification:
        if isinstance(outcome, _Sent):
            return _PERMANENT if self.final else self.classify(outcome.error, now=now)
        if isinstance(outcome, CircuitOpenError):
            return _PERMANENT
        if isinstance(outcome, AllTiersFailed):
            errors = [e for e in outcome.errors.values() if not isinstance(e, CircuitOpenError)]
            if not errors:
                return _PERMANENT
            c = self.classify(errors[-1], now=now)
            return c if c.retryable else Classification(Verdict.TRANSIENT, None, "all tiers")
        c = super().classify(outcome, now=now)
        if (
            isinstance(outcome, _ResponseFailure)
            and c.verdict is Verdict.TRANSIENT
            and c.retry_after is not None
        ):
            return Classification(Verdict.RATE_LIMITED, c.retry_after, c.reason)
        return c


def _outcome(exc: BaseException, request: httpx.Request) -> httpx.Response:
    """What the caller of the transport sees once the policy has given up: the last failed
    response, or the error as httpx raised it (an open breaker as CircuitOpenTransportError)."""
    if isinstance(exc, _ResponseFailure):
        return exc.response
    if isinstance(exc, _Sent):
        return _outcome(exc.error, request)
    if isinstance(exc, AllTiersFailed):
        errors = list(exc.errors.values())
        for err in reversed(errors):
            if isinstance(err, _ResponseFailure | _Sent):
                return _outcome(err, request)
        real = [e for e in errors if not isinstance(e, CircuitOpenError)]
        return _outcome(real[-1] if real else errors[0], request)
    if isinstance(exc, CircuitOpenError):
        raise CircuitOpenTransportError(exc, request) from None
    if isinstance(exc.__context__, _ResponseFailure):
        exc.__context__ = None  # an earlier attempt's response is not this error's cause
    raise exc


def _failure(response: httpx.Response, request: httpx.Request, raw: bytes | None) -> Exception:
    """The failure to raise inside the policy for a failed response (its body in hand)."""
    if raw is None:  # already read (MockTransport, a test double): keep it as it is
        response.request = request
        return _ResponseFailure(response)
    return _ResponseFailure(
        httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(raw),  # still encoded: the client decodes it as usual
            extensions=response.extensions,
            request=request,
        )
    )


def _rewrite(request: httpx.Request, base: httpx.URL) -> httpx.Request:
    url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
    headers = request.headers.copy()
    headers["Host"] = url.netloc.decode("ascii")
    return httpx.Request(
        request.method, url, headers=headers, stream=request.stream, extensions=request.extensions
    )


def _host_name(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port else ""
    return f"httpx:{url.host}{port}"


def _netloc(url: httpx.URL) -> str:
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


def _replayable(request: httpx.Request) -> bool:
    """A body in memory can be sent again; a generator or a file being streamed cannot."""
    return hasattr(request, "_content")


class _Op:
    """One breaker key: the operation name, its breaker, and the attempt the policy runs.

    The policy gets a bound method of this object, so a Retry without a name labels its
    events with the same operation name as the breaker."""

    __slots__ = ("breaker", "core", "name")

    def __init__(self, core: _Core, name: str, breaker: Any) -> None:
        self.core = core
        self.name = name
        self.breaker = breaker

    def attempt(self, request: httpx.Request, t0: float, once: bool) -> httpx.Response:
        core = self.core
        core.budget(request, t0, self.name)
        if self.breaker is None:
            response: httpx.Response = core.failover.call(request, once)
            return response
        return self.breaker.call(core.send, request)  # type: ignore[no-any-return]

    async def aattempt(self, request: httpx.Request, t0: float, once: bool) -> httpx.Response:
        core = self.core
        core.budget(request, t0, self.name)
        if self.breaker is None:
            if core.hedge_after is not None and not once:
                served = await core.failover._hedged((request, once), {}, core.hedge_after)
                return served.value  # type: ignore[no-any-return]
            response: httpx.Response = await core.failover.acall(request, once)
            return response
        return await self.breaker.acall(core.asend, request)  # type: ignore[no-any-return]


class _Core:
    """Configuration and the decisions both transports share (no I/O here)."""

    failover: Any
    send: Callable[[httpx.Request], httpx.Response]
    asend: Callable[[httpx.Request], Any]

    def __init__(self, *, is_async: bool, **kw: Any) -> None:
        name = kw["name"]
        raise_if(self.validate(is_async=is_async, **kw), name if isinstance(name, str) else None)
        from ..retry import Retry

        policy, tiers, key = kw["policy"], kw["tiers"], kw["key"]
        self.name: str | None = name
        self.clock: Clock = kw["clock"] or SYSTEM_CLOCK
        self.retry_methods = frozenset(m.upper() for m in kw["retry_methods"])
        self.hedge_after: float | None = kw["hedge_after"]
        breaker = kw["breaker"]
        self._breaker_kwargs = dict(_DEFAULT_BREAKER if breaker is None else breaker)
        self._breaker_kwargs.setdefault("clock", self.clock)
        self._breaker_kwargs.setdefault("classifier", _Classifier(final=False))
        if policy is None:  # labelled by the attempt's operation (see _Op)
            policy = Retry(
                max_attempts=3,
                deadline=DEFAULT_DEADLINE,
                classifier=_Classifier(final=False),
                clock=self.clock,
                name=name,
            )
        self.policy = policy
        deadline = getattr(policy, "deadline", None)
        self._deadline: float | None = deadline if isinstance(deadline, int | float) else None
        self._key: Callable[[httpx.Request], Any] = (
            self._host_key if key == "host" else self._route_key if key == "route" else key
        )
        self._custom_key = callable(key)
        from ..breaker import CircuitBreaker

        known = inspect.signature(CircuitBreaker).parameters
        bad = sorted(k for k in self._breaker_kwargs if k not in known or k == "name")
        if bad:
            raise ConfigError(
                [("breaker", f"unknown CircuitBreaker argument(s): {', '.join(bad)}")],
                operation=name,
            )
        problems = CircuitBreaker.validate(name=name or "httpx", **self._breaker_kwargs)
        raise_if([(f"breaker.{loc}", msg) for loc, msg in problems], name)
        self._ops: dict[Any, _Op] = {}
        self._groups: dict[str, BreakerGroup] = {}
        self._lock = threading.Lock()
        self.failover = None
        if tiers:
            from ..failover import Failover, Tier

            bases = [httpx.URL(t) for t in tiers]
            op_name = name or _host_name(bases[0])
            # tiers are named "host:port" (a label in events and metrics; never a URL)
            self._tier_names = {(b.scheme, b.host, b.port): _netloc(b) for b in bases}
            self.failover = Failover(
                [Tier(_netloc(b), self._tier_fn(b)) for b in bases],
                name=op_name,
                probe_interval=kw["probe_interval"],
                breaker=self._breaker_kwargs,
                classifier=_Classifier(final=True),
                clock=self.clock,
            )
            self._tier_op = _Op(self, op_name, None)

    @staticmethod
    def validate(**kwargs: Any) -> list[tuple[str, str]]:
        """The problems with these constructor arguments (empty when they are fine)."""
        errors = Errors()
        policy = kwargs.get("policy")
        if policy is not None and not (callable(getattr(policy, "call", None))):
            errors.append(("policy", f"must have call()/acall() (a policy), got {policy!r:.80}"))
        transport = kwargs.get("transport")
        want = httpx.AsyncBaseTransport if kwargs.get("is_async") else httpx.BaseTransport
        if transport is not None and not isinstance(transport, want):
            errors.append(("transport", f"must be an {want.__name__}, got {transport!r:.80}"))
        tiers = kwargs.get("tiers")
        if tiers is not None:
            if isinstance(tiers, str) or not isinstance(tiers, Sequence) or not tiers:
                errors.append(("tiers", f"must be a non-empty list of base URLs, got {tiers!r}"))
            else:
                seen: set[str] = set()
                for i, t in enumerate(tiers):
                    try:
                        url = httpx.URL(t)
                    except Exception:
                        url = None
                    if url is None or url.scheme not in ("http", "https") or not url.host:
                        errors.append((f"tiers[{i}]", f"must be an http(s) base URL, got {t!r}"))
                    elif url.path not in ("", "/") or url.query:
                        errors.append(
                            (
                                f"tiers[{i}]",
                                f"only scheme, host and port are replaced; drop the path/query "
                                f"of {t!r}",
                            )
                        )
                    elif _netloc(url) in seen:
                        errors.append((f"tiers[{i}]", f"duplicate tier {t!r}"))
                    else:
                        seen.add(_netloc(url))
        methods = kwargs.get("retry_methods", DEFAULT_RETRY_METHODS)
        if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
            errors.append(("retry_methods", f"must be a set of method names, got {methods!r}"))
        br = kwargs.get("breaker")
        if br is not None and not isinstance(br, Mapping):
            errors.append(("breaker", f"must be a dict of CircuitBreaker arguments, got {br!r}"))
        errors.positive("probe_interval", kwargs.get("probe_interval", 5.0))
        name = kwargs.get("name")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            errors.append(("name", f"must be a non-empty name without '/', got {name!r}"))
        key = kwargs.get("key", "host")
        if key not in _KEYS and not callable(key):
            errors.append(("key", f"must be 'host', 'route' or callable(request), got {key!r}"))
        hedge = kwargs.get("hedge_after")
        if hedge is not None:
            errors.positive("hedge_after", hedge)
            if not kwargs.get("is_async"):
                errors.append(
                    (
                        "hedge_after",
                        "hedging needs cancellation, so it is async only: "
                        "use AsyncResilientTransport",
                    )
                )
            elif not tiers:
                errors.append(("hedge_after", "needs tiers=[...]: a hedge goes to the next tier"))
        return errors

    # --- breaker keys -----------------------------------------------------------------------

    @staticmethod
    def _host_key(request: httpx.Request) -> Any:
        url = request.url
        return (url.raw_scheme, url.raw_host, url.port)

    @staticmethod
    def _route_key(request: httpx.Request) -> Any:
        url = request.url
        return (request.method, url.raw_scheme, url.raw_host, url.port, url.raw_path.split(b"?")[0])

    def op_for(self, request: httpx.Request) -> _Op:
        """The operation (name and breaker) this request goes through (made on first use)."""
        if self.failover is not None:
            return self._tier_op
        key = self._key(request)
        op = self._ops.get(key)
        if op is not None:
            return op
        if self._custom_key and not isinstance(key, str):
            raise TypeError(f"key(request) must return a str, got {key!r:.80}")
        from ..breaker import CircuitBreaker

        with self._lock:
            op = self._ops.get(key)
            if op is None:
                name = self.name or _host_name(request.url)
                br = CircuitBreaker(name, **self._breaker_kwargs)
                group = self._groups.get(name)
                if group is None:
                    group = self._groups[name] = BreakerGroup(name)
                group.add(br)  # health() sees the worst breaker of the name
                op = self._ops[key] = _Op(self, name, br)
        return op

    def breaker_for(self, target: httpx.URL | httpx.Request | str) -> Any:
        """The circuit breaker a request (or, for key="host", a URL) goes through."""
        request = target if isinstance(target, httpx.Request) else httpx.Request("GET", target)
        if self.failover is not None:
            url = request.url
            tier = self._tier_names.get((url.scheme, url.host, url.port))
            if tier is not None:
                return self.failover.breaker(tier)
        return self.op_for(request).breaker

    # --- the per-request decisions ----------------------------------------------------------

    def budget(self, request: httpx.Request, t0: float, operation: str) -> None:
        """Lower this attempt's timeouts to the time left (the context's budget, and the
        policy's deadline counted from t0). Time left only shrinks, so min() is enough."""
        left = check_budget(operation)
        if self._deadline is not None:
            own = self._deadline - (self.clock.monotonic() - t0)
            left = own if left is None or own < left else left
        if left is None:
            return
        timeout = request.extensions.get("timeout")
        if not timeout:
            return
        left = max(left, 0.001)
        if any(v is None or v > left for v in timeout.values()):
            request.extensions["timeout"] = {k: lowered(v, left) for k, v in timeout.items()}

    def retried(self, request: httpx.Request) -> bool:
        return request.method in self.retry_methods and _replayable(request)

    def _tier_fn(self, base: httpx.URL) -> Any:
        raise NotImplementedError


class ResilientTransport(_Core, httpx.BaseTransport):
    """An `httpx.BaseTransport` that retries, breaks circuits and fails over.

    Args:
        policy: any policy (`Retry`, `Pipeline`, ...) with `call(fn, *args)`, applied to
            idempotent requests around the breaker; None: `Retry(max_attempts=3,
            deadline=30.0)` on the transport's clock, honouring Retry-After.
        transport: the wrapped transport (default `httpx.HTTPTransport()`).
        tiers: base URLs (`["http://a:8000", "http://b:8000"]`); each request's scheme, host
            and port are replaced tier by tier, best first, returning to the first when it
            heals (its breaker half-opens after `probe_interval` and real requests are the
            trials).
        retry_methods: methods that are retried; the others are sent once.
        key: what one breaker covers: "host" (scheme, host and port), "route" (method, host
            and path: one failing endpoint does not close the others), or
            `callable(request) -> str`.
        name: the operation's name in events and metrics; None: "httpx:<host>[:<port>]" for
            each host. Every breaker and retry of the transport uses it.
        breaker: keyword arguments for each breaker (default `failure_rate_threshold=0.5,
            minimum_calls=5`).
        probe_interval: seconds before a down tier gets a trial request.
        clock: time for retry waits, breakers and tiers (tests pass a VirtualClock).

    Raises:
        ConfigError: bad arguments (all listed).

    Example:
        >>> import httpx
        >>> t = ResilientTransport(tiers=["http://127.0.0.1:9", "http://127.0.0.1:10"])
        >>> with httpx.Client(transport=t) as client:
        ...     pass
    """

    def __init__(
        self,
        policy: Any = None,
        transport: httpx.BaseTransport | None = None,
        tiers: Sequence[str] | None = None,
        retry_methods: Iterable[str] = DEFAULT_RETRY_METHODS,
        *,
        key: str | Callable[[httpx.Request], str] = "host",
        name: str | None = None,
        breaker: Mapping[str, Any] | None = None,
        probe_interval: float = 5.0,
        hedge_after: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        _Core.__init__(
            self,
            is_async=False,
            policy=policy,
            transport=transport,
            tiers=tiers,
            retry_methods=retry_methods,
            key=key,
            name=name,
            breaker=breaker,
            probe_interval=probe_interval,
            hedge_after=hedge_after,
            clock=clock,
        )
        self.transport: httpx.BaseTransport = transport or httpx.HTTPTransport()

    def send(self, request: httpx.Request) -> httpx.Response:
        response = self.transport.handle_request(request)
        if response.status_code not in FAILURE_STATUSES:
            return response
        if hasattr(response, "_content"):
            raise _failure(response, request, None)
        try:
            raw = b"".join(response.iter_raw())
        finally:
            response.close()
        raise _failure(response, request, raw)

    def _tier_fn(self, base: httpx.URL) -> Any:
        send = self.send

        def tier(request: httpx.Request, once: bool) -> httpx.Response:
            if not once:
                return send(_rewrite(request, base))
            try:
                return send(_rewrite(request, base))
            except _NOT_SENT:
                raise
            except Exception as exc:
                raise _Sent(exc) from exc

        return tier

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        op = self.op_for(request)
        t0 = self.clock.monotonic()
        try:
            if self.retried(request):
                return self.policy.call(op.attempt, request, t0, False)  # type: ignore[no-any-return]
            return op.attempt(request, t0, True)
        except (_ResponseFailure, _Sent, AllTiersFailed, CircuitOpenError) as exc:
            return _outcome(exc, request)
        except httpx.HTTPError as exc:
            return _outcome(exc, request)

    def close(self) -> None:
        self.transport.close()


class AsyncResilientTransport(_Core, httpx.AsyncBaseTransport):
    """`ResilientTransport` for `httpx.AsyncClient` (asyncio and trio); same arguments, the
    policy's `acall` is used and the wrapped transport defaults to
    `httpx.AsyncHTTPTransport()`.

    Args:
        hedge_after: with `tiers`, seconds after which an idempotent request that the tier
            serving it has not answered is also sent to the next tier; the first success
            wins and the other requests are cancelled (Polly's hedging). None: no hedging.

    Example:
        >>> import httpx
        >>> client = httpx.AsyncClient(transport=AsyncResilientTransport())
    """

    def __init__(
        self,
        policy: Any = None,
        transport: httpx.AsyncBaseTransport | None = None,
        tiers: Sequence[str] | None = None,
        retry_methods: Iterable[str] = DEFAULT_RETRY_METHODS,
        *,
        key: str | Callable[[httpx.Request], str] = "host",
        name: str | None = None,
        breaker: Mapping[str, Any] | None = None,
        probe_interval: float = 5.0,
        hedge_after: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        _Core.__init__(
            self,
            is_async=True,
            policy=policy,
            transport=transport,
            tiers=tiers,
            retry_methods=retry_methods,
            key=key,
            name=name,
            breaker=breaker,
            probe_interval=probe_interval,
            hedge_after=hedge_after,
            clock=clock,
        )
        self.transport: httpx.AsyncBaseTransport = transport or httpx.AsyncHTTPTransport()

    async def asend(self, request: httpx.Request) -> httpx.Response:
        response = await self.transport.handle_async_request(request)
        if response.status_code not in FAILURE_STATUSES:
            return response
        if hasattr(response, "_content"):
            raise _failure(response, request, None)
        try:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        raise _failure(response, request, raw)

    def _tier_fn(self, base: httpx.URL) -> Any:
        send = self.asend

        async def tier(request: httpx.Request, once: bool) -> httpx.Response:
            if not once:
                return await send(_rewrite(request, base))
            try:
                return await send(_rewrite(request, base))
            except _NOT_SENT:
                raise
            except Exception as exc:
                raise _Sent(exc) from exc

        return tier

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        op = self.op_for(request)
        t0 = self.clock.monotonic()
        try:
            if self.retried(request):
                return await self.policy.acall(op.aattempt, request, t0, False)  # type: ignore[no-any-return]
            return await op.aattempt(request, t0, True)
        except (_ResponseFailure, _Sent, AllTiersFailed, CircuitOpenError) as exc:
            return _outcome(exc, request)
        except httpx.HTTPError as exc:
            return _outcome(exc, request)

    async def aclose(self) -> None:
        await self.transport.aclose()
