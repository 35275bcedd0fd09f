"""httpx transports that retry, break circuits per host and fail over across base URLs.

`ResilientTransport` (for `httpx.Client`) and `AsyncResilientTransport` (for
`httpx.AsyncClient`) wrap another transport. Every request goes through a policy (by default
`Retry(max_attempts=3)`) around a circuit breaker per host; with `tiers=[...]` the request's
scheme, host and port are replaced tier by tier, with `Failover` semantics (a call moves on to
the next base URL when one fails, and traffic returns to the first when it heals).

* 408, 425, 429 and 5xx responses count as failures inside the policy; 429 and 503 with a
  `Retry-After` header wait as the server asked (on the injected clock).
* Only idempotent methods (`retry_methods`) are retried; others are sent once (still through
  the host's breaker, and failed over to another tier only when the connection could not be
  made, so the request was never sent).
* When the policy gives up, the caller gets the last response as httpx would have returned
  it, or the transport error as httpx raises it; an open breaker raises `CircuitOpenError`.

This is the only module that imports httpx (the "httpx" extra).

Example:
    >>> import httpx
    >>> from resilience.integrations.httpx import ResilientTransport
    >>> client = httpx.Client(transport=ResilientTransport())
    >>> client.close()
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from .._clock import SYSTEM_CLOCK, Clock
from .._deadline import _current as _budget_now
from .._errors import AllTiersFailed, CircuitOpenError, ConfigError
from .._validate import Errors, raise_if
from ..classify import Classification, Classifier, Verdict

__all__ = ["DEFAULT_RETRY_METHODS", "AsyncResilientTransport", "ResilientTransport"]

DEFAULT_RETRY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods that are safe to send again (idempotent), so they are retried."""

_FAILURE_STATUSES = frozenset({408, 425, 429, *range(500, 600)})
_DEFAULT_BREAKER: Mapping[str, Any] = {"failure_rate_threshold": 0.5, "minimum_calls": 5}
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
_PERMANENT = Classification(Verdict.PERMANENT, None, "do not retry")


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
        return f"HTTP {r.status_code} from {r.request.method} {r.request.url}"


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


def _outcome(exc: BaseException) -> httpx.Response:
    """What the caller of the transport sees once the policy has given up: the last failed
    response, or the error as httpx (or the breaker) raised it."""
    if isinstance(exc, _ResponseFailure):
        return exc.response
    if isinstance(exc, _Sent):
        return _outcome(exc.error)
    if isinstance(exc, AllTiersFailed):
        errors = list(exc.errors.values())
        for err in reversed(errors):
            if isinstance(err, _ResponseFailure | _Sent):
                return _outcome(err)
        real = [e for e in errors if not isinstance(e, CircuitOpenError)]
        raise (real[-1] if real else errors[0]) from None
    raise exc


def _budget_left(request: httpx.Request) -> None:
    """With a time budget (rs.deadline, a Timeout) used up, send nothing: fail as httpx fails
    a connection that never opened (before any breaker or retry sees it)."""
    budget = _budget_now.get()
    if budget is not None and budget.left() <= 0.0:
        raise httpx.ConnectTimeout("the time budget is used up", request=request)


def _within_budget(request: httpx.Request) -> None:
    """Lower the request's timeouts to what the time budget has left (httpx then raises its
    own timeout errors when the budget runs out mid-request)."""
    budget = _budget_now.get()
    if budget is None:
        return
    left = max(budget.left(), 0.001)
    timeout = request.extensions.get("timeout") or {}
    keys = ("connect", "read", "write", "pool")
    lowered = {k: left if timeout.get(k) is None or timeout[k] > left else timeout[k] for k in keys}
    request.extensions = {**request.extensions, "timeout": lowered}


def _rewrite(request: httpx.Request, base: httpx.URL) -> httpx.Request:
    url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
    headers = request.headers.copy()
    headers["Host"] = url.netloc.decode("ascii")
    return httpx.Request(
        request.method, url, headers=headers, stream=request.stream, extensions=request.extensions
    )


class _Core:
    """Configuration and the decisions both transports share (no I/O here)."""

    def __init__(
        self,
        policy: Any,
        transport: Any,
        tiers: Sequence[str] | None,
        retry_methods: Iterable[str],
        breaker: Mapping[str, Any] | None,
        probe_interval: float,
        name: str,
        clock: Clock | None,
        *,
        is_async: bool,
    ) -> None:
        raise_if(
            self.validate(
                policy=policy,
                transport=transport,
                tiers=tiers,
                retry_methods=retry_methods,
                breaker=breaker,
                probe_interval=probe_interval,
                name=name,
                is_async=is_async,
            ),
            name if isinstance(name, str) else None,
        )
        from ..retry import Retry

        self.name = name
        self.clock = clock or SYSTEM_CLOCK
        self.retry_methods = frozenset(m.upper() for m in retry_methods)
        self._breaker_kwargs = dict(_DEFAULT_BREAKER if breaker is None else breaker)
        self._breaker_kwargs.setdefault("clock", self.clock)
        self._breaker_kwargs.setdefault("classifier", _Classifier(final=False))
        self.policy = (
            policy
            if policy is not None
            else Retry(
                max_attempts=3, classifier=_Classifier(final=False), clock=self.clock, name=name
            )
        )
        from ..breaker import CircuitBreaker

        known = inspect.signature(CircuitBreaker).parameters
        bad = sorted(k for k in self._breaker_kwargs if k not in known or k == "name")
        if bad:
            raise ConfigError(
                [("breaker", f"unknown CircuitBreaker argument(s): {', '.join(bad)}")],
                operation=name,
            )
        problems = CircuitBreaker.validate(name=name, **self._breaker_kwargs)
        raise_if([(f"breaker.{loc}", msg) for loc, msg in problems], name)
        self._breakers: dict[tuple[bytes, bytes, int | None], Any] = {}
        self._lock = threading.Lock()
        self.failover: Any = None
        if tiers:
            from ..failover import Failover, Tier

            bases = [httpx.URL(t) for t in tiers]
            self.failover = Failover(
                [Tier(str(b), self._tier_fn(b)) for b in bases],
                name=name,
                probe_interval=probe_interval,
                breaker=self._breaker_kwargs,
                classifier=_Classifier(final=True),
                clock=self.clock,
            )

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
                    elif str(url) in seen:
                        errors.append((f"tiers[{i}]", f"duplicate tier {t!r}"))
                    else:
                        seen.add(str(url))
        methods = kwargs.get("retry_methods", DEFAULT_RETRY_METHODS)
        if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
            errors.append(("retry_methods", f"must be a set of method names, got {methods!r}"))
        br = kwargs.get("breaker")
        if br is not None and not isinstance(br, Mapping):
            errors.append(("breaker", f"must be a dict of CircuitBreaker arguments, got {br!r}"))
        errors.positive("probe_interval", kwargs.get("probe_interval", 5.0))
        name = kwargs.get("name", "http")
        if not isinstance(name, str) or not name:
            errors.append(("name", f"must be a non-empty string, got {name!r}"))
        return errors

    def _tier_fn(self, base: httpx.URL) -> Any:
        raise NotImplementedError

    def breaker_for(self, url: httpx.URL) -> Any:
        """The circuit breaker of the host `url` points at (made on first use)."""
        if self.failover is not None:
            for tier in self.failover.tiers:
                b = httpx.URL(tier.name)
                if (b.scheme, b.host, b.port) == (url.scheme, url.host, url.port):
                    return self.failover.breaker(tier.name)
        key = (url.raw_scheme, url.raw_host, url.port)
        br = self._breakers.get(key)
        if br is None:
            from ..breaker import CircuitBreaker

            with self._lock:
                br = self._breakers.get(key)
                if br is None:
                    port = f":{url.port}" if url.port else ""
                    br = CircuitBreaker(
                        f"{self.name}:{url.scheme}://{url.host}{port}", **self._breaker_kwargs
                    )
                    self._breakers[key] = br
        return br

    @staticmethod
    def failed(response: httpx.Response) -> bool:
        return response.status_code in _FAILURE_STATUSES


class ResilientTransport(_Core, httpx.BaseTransport):
    """An `httpx.BaseTransport` that retries, breaks circuits per host and fails over.

    Args:
        policy: any policy (`Retry`, `Pipeline`, ...) with `call(fn, *args)`, applied to
            idempotent requests around the host's breaker; None: `Retry(max_attempts=3)`
            on the transport's clock, honouring Retry-After.
        transport: the wrapped transport (default `httpx.HTTPTransport()`).
        tiers: base URLs (`["http://a:8000", "http://b:8000"]`); each request's scheme, host
            and port are replaced tier by tier, best first, returning to the first when it
            heals (its breaker half-opens after `probe_interval` and real requests are the
            trials).
        retry_methods: methods that are retried; the others are sent once.
        breaker: keyword arguments for each host's `CircuitBreaker`
            (default `failure_rate_threshold=0.5, minimum_calls=5`).
        probe_interval: seconds before a down tier gets a trial request.
        name: the operation's name (events, breaker names "<name>:<scheme>://<host>:<port>").
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
        breaker: Mapping[str, Any] | None = None,
        probe_interval: float = 5.0,
        name: str = "http",
        clock: Clock | None = None,
    ) -> None:
        _Core.__init__(
            self,
            policy,
            transport,
            tiers,
            retry_methods,
            breaker,
            probe_interval,
            name,
            clock,
            is_async=False,
        )
        self.transport: httpx.BaseTransport = transport or httpx.HTTPTransport()

    def _send(self, request: httpx.Request) -> httpx.Response:
        _within_budget(request)
        response = self.transport.handle_request(request)
        if response.status_code not in _FAILURE_STATUSES:
            return response
        try:
            raw = b"".join(response.iter_raw())
        finally:
            response.close()
        raise _ResponseFailure(
            httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=httpx.ByteStream(raw),
                extensions=response.extensions,
                request=request,
            )
        )

    def _tier_fn(self, base: httpx.URL) -> Any:
        send = self._send

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

    def _attempt(self, request: httpx.Request, once: bool) -> httpx.Response:
        if self.failover is not None:
            response: httpx.Response = self.failover.call(request, once)
            return response
        return self.breaker_for(request.url).call(self._send, request)  # type: ignore[no-any-return]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _budget_left(request)
        idempotent = request.method in self.retry_methods
        if idempotent or self.failover is not None:
            request.read()  # a body that can be sent again
        try:
            if idempotent:
                return self.policy.call(self._attempt, request, False)
            return self._attempt(request, True)
        except (_ResponseFailure, _Sent, AllTiersFailed) as exc:
            return _outcome(exc)

    def close(self) -> None:
        self.transport.close()


class AsyncResilientTransport(_Core, httpx.AsyncBaseTransport):
    """`ResilientTransport` for `httpx.AsyncClient` (asyncio and trio); same arguments, the
    policy's `acall` is used and the wrapped transport defaults to
    `httpx.AsyncHTTPTransport()`.

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
        breaker: Mapping[str, Any] | None = None,
        probe_interval: float = 5.0,
        name: str = "http",
        clock: Clock | None = None,
    ) -> None:
        _Core.__init__(
            self,
            policy,
            transport,
            tiers,
            retry_methods,
            breaker,
            probe_interval,
            name,
            clock,
            is_async=True,
        )
        self.transport: httpx.AsyncBaseTransport = transport or httpx.AsyncHTTPTransport()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        _within_budget(request)
        response = await self.transport.handle_async_request(request)
        if response.status_code not in _FAILURE_STATUSES:
            return response
        try:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        raise _ResponseFailure(
            httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=httpx.ByteStream(raw),
                extensions=response.extensions,
                request=request,
            )
        )

    def _tier_fn(self, base: httpx.URL) -> Any:
        send = self._send

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

    async def _attempt(self, request: httpx.Request, once: bool) -> httpx.Response:
        if self.failover is not None:
            response: httpx.Response = await self.failover.acall(request, once)
            return response
        return await self.breaker_for(request.url).acall(self._send, request)  # type: ignore[no-any-return]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _budget_left(request)
        idempotent = request.method in self.retry_methods
        if idempotent or self.failover is not None:
            await request.aread()
        try:
            if idempotent:
                return await self.policy.acall(self._attempt, request, False)
            return await self._attempt(request, True)
        except (_ResponseFailure, _Sent, AllTiersFailed) as exc:
            return _outcome(exc)

    async def aclose(self) -> None:
        await self.transport.aclose()
