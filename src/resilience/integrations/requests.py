"""A `requests` adapter that retries and breaks circuits, as the httpx transport does.

Mount it on a `requests.Session` (`session.mount("https://", ResilientAdapter())`): every
request sent through the session goes through a policy (by default `Retry(max_attempts=3,
deadline=30.0)`) around a circuit breaker per key, on the caller's thread.

* 408, 425, 429 and 5xx responses count as failures inside the policy; 429 and 503 with a
  `Retry-After` header wait as the server asked.
* Only idempotent methods (`retry_methods`) with a body that can be sent again are retried;
  others (and generator or file bodies) are sent once, still through the breaker.
* The time budget (`rs.deadline(...)` and the policy's deadline) lowers each request's
  connect and read timeouts to what is left.
* When the policy gives up, the caller gets the last response, or the requests exception as
  requests raises it; an open breaker raises `CircuitOpenAdapterError`, a
  `requests.exceptions.ConnectionError` (and an `rs.LocalRejection`).
* One operation name for every event: `name=`, or "requests:<host>[:<port>]" per host.

Install the extra: `pip install "resilience-primitives[requests]"`.

Example:
    >>> import requests
    >>> from resilience.integrations.requests import ResilientAdapter
    >>> session = requests.Session()
    >>> adapter = ResilientAdapter()
    >>> session.mount("http://", adapter)
    >>> session.mount("https://", adapter)
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import (
    ChunkedEncodingError,
    ConnectionError,
    RequestException,
    SSLError,
    Timeout,
)

from .._clock import SYSTEM_CLOCK, Clock
from .._deadline import check_budget
from .._errors import CircuitOpenError, ConfigError, LocalRejection
from .._validate import Errors, raise_if
from ..classify import Classification, Classifier, Verdict
from ._http import FAILURE_STATUSES, BreakerGroup, lowered

__all__ = ["DEFAULT_RETRY_METHODS", "CircuitOpenAdapterError", "ResilientAdapter"]

DEFAULT_RETRY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods that are safe to send again (idempotent), so they are retried."""

_DEFAULT_BREAKER: Mapping[str, Any] = {"failure_rate_threshold": 0.5, "minimum_calls": 5}
_PERMANENT = Classification(Verdict.PERMANENT, None, "do not retry")
_TRANSIENT = Classification(Verdict.TRANSIENT, None, "connection or timeout")


class CircuitOpenAdapterError(LocalRejection, ConnectionError):
    """An open circuit breaker refused the request before it was sent.

    A `requests.exceptions.ConnectionError`, so code written for requests alone catches it,
    and an `rs.LocalRejection` with the breaker's `.name`, `.remaining` (seconds until a
    trial request), `.state`; `.rejection` is the breaker's `CircuitOpenError`.

    Example:
        >>> import requests
        >>> issubclass(CircuitOpenAdapterError, requests.exceptions.RequestException)
        True
    """

    def __init__(self, error: CircuitOpenError, request: Any = None) -> None:
        ConnectionError.__init__(self, str(error), request=request)
        self.operation = error.name
        self.rejection = error
        self.name = error.name
        self.remaining = error.remaining
        self.state = error.state

    def __str__(self) -> str:
        return str(self.rejection)


class _ResponseFailure(Exception):
    """A response with a failure status (its body read), raised inside the policy."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers


class _Classifier(Classifier):
    """requests' errors: connection problems and timeouts are TRANSIENT (except TLS
    verification, which another attempt does not fix); bad URLs and the rest PERMANENT."""

    __slots__ = ()

    def classify(self, outcome: object, *, now: float | None = None) -> Classification:
        if isinstance(outcome, LocalRejection):
            return _PERMANENT
        if isinstance(outcome, RequestException) and not isinstance(outcome, _ResponseFailure):
            if isinstance(outcome, SSLError | ValueError):
                return _PERMANENT
            if isinstance(outcome, ConnectionError | Timeout | ChunkedEncodingError):
                return _TRANSIENT
            return _PERMANENT
        c = super().classify(outcome, now=now)
        if (
            isinstance(outcome, _ResponseFailure)
            and c.verdict is Verdict.TRANSIENT
            and c.retry_after is not None
        ):
            return Classification(Verdict.RATE_LIMITED, c.retry_after, c.reason)
        return c


def _replayable(request: requests.PreparedRequest) -> bool:
    body = request.body
    return body is None or isinstance(body, bytes | str)


class _Op:
    """One breaker key: the operation name, its breaker, and the attempt the policy runs."""

    __slots__ = ("adapter", "breaker", "name")

    def __init__(self, adapter: ResilientAdapter, name: str, breaker: Any) -> None:
        self.adapter = adapter
        self.name = name
        self.breaker = breaker

    def attempt(
        self, request: requests.PreparedRequest, t0: float, kwargs: dict[str, Any]
    ) -> requests.Response:
        adapter = self.adapter
        kwargs = adapter._budget(kwargs, t0, self.name)
        return self.breaker.call(adapter._send_once, request, kwargs)  # type: ignore[no-any-return]


class ResilientAdapter(HTTPAdapter):
    """A `requests` `HTTPAdapter` that retries and breaks circuits (same semantics as the
    httpx `ResilientTransport`).

    Args:
        policy: any policy (`Retry`, `Pipeline`, ...) with `call(fn, *args)`, applied to
            idempotent requests around the breaker; None: `Retry(max_attempts=3,
            deadline=30.0)`, honouring Retry-After.
        key: what one breaker covers: "host" (scheme, host and port), "route" (method, host
            and path), or `callable(request) -> str`.
        name: the operation's name in events and metrics; None: "requests:<host>[:<port>]".
        retry_methods: methods that are retried; the others are sent once.
        breaker: keyword arguments for each breaker (default `failure_rate_threshold=0.5,
            minimum_calls=5`).
        clock: time for retry waits and breakers (tests pass a VirtualClock).
        **kwargs: `HTTPAdapter`'s own (`pool_connections`, `pool_maxsize`, ...).

    Raises:
        ConfigError: bad arguments (all listed).

    Example:
        >>> import requests
        >>> session = requests.Session()
        >>> session.mount("https://", ResilientAdapter(key="route", name="payments"))
    """

    def __init__(
        self,
        policy: Any = None,
        key: str | Callable[[requests.PreparedRequest], str] = "host",
        name: str | None = None,
        *,
        retry_methods: Iterable[str] = DEFAULT_RETRY_METHODS,
        breaker: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        errors = Errors()
        if policy is not None and not callable(getattr(policy, "call", None)):
            errors.append(("policy", f"must have call() (a policy), got {policy!r:.80}"))
        if key not in ("host", "route") and not callable(key):
            errors.append(("key", f"must be 'host', 'route' or callable(request), got {key!r}"))
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            errors.append(("name", f"must be a non-empty name without '/', got {name!r}"))
        if isinstance(retry_methods, str) or not all(isinstance(m, str) for m in retry_methods):
            errors.append(("retry_methods", f"must be a set of method names: {retry_methods!r}"))
        if breaker is not None and not isinstance(breaker, Mapping):
            errors.append(("breaker", f"must be a dict of CircuitBreaker arguments: {breaker!r}"))
        raise_if(errors, name)
        from ..breaker import CircuitBreaker
        from ..retry import Retry

        self.clock: Clock = clock or SYSTEM_CLOCK
        self.name = name
        self.retry_methods = frozenset(m.upper() for m in retry_methods)
        self._breaker_kwargs = dict(_DEFAULT_BREAKER if breaker is None else breaker)
        self._breaker_kwargs.setdefault("clock", self.clock)
        self._breaker_kwargs.setdefault("classifier", _Classifier())
        known = inspect.signature(CircuitBreaker).parameters
        bad = sorted(k for k in self._breaker_kwargs if k not in known or k == "name")
        if bad:
            raise ConfigError(
                [("breaker", f"unknown CircuitBreaker argument(s): {', '.join(bad)}")],
                operation=name,
            )
        problems = CircuitBreaker.validate(name=name or "requests", **self._breaker_kwargs)
        raise_if([(f"breaker.{loc}", msg) for loc, msg in problems], name)
        if policy is None:
            policy = Retry(
                max_attempts=3, deadline=30.0, classifier=_Classifier(), clock=self.clock, name=name
            )
        self.policy = policy
        deadline = getattr(policy, "deadline", None)
        self._deadline: float | None = deadline if isinstance(deadline, int | float) else None
        self._key = key
        self._ops: dict[Any, _Op] = {}
        self._groups: dict[str, BreakerGroup] = {}
        self._lock = threading.Lock()
        super().__init__(**kwargs)

    # --- keys and names ---------------------------------------------------------------------

    def _op_for(self, request: requests.PreparedRequest) -> _Op:
        url = urlsplit(request.url or "")
        if self._key == "host":
            key: Any = (url.scheme, url.hostname, url.port)
        elif self._key == "route":
            key = (request.method, url.scheme, url.hostname, url.port, url.path)
        else:
            key = self._key(request)  # type: ignore[operator]
            if not isinstance(key, str):
                raise TypeError(f"key(request) must return a str, got {key!r:.80}")
        op = self._ops.get(key)
        if op is not None:
            return op
        from ..breaker import CircuitBreaker

        with self._lock:
            op = self._ops.get(key)
            if op is None:
                port = f":{url.port}" if url.port else ""
                name = self.name or f"requests:{url.hostname}{port}"
                br = CircuitBreaker(name, **self._breaker_kwargs)
                group = self._groups.get(name)
                if group is None:
                    group = self._groups[name] = BreakerGroup(name)
                group.add(br)
                op = self._ops[key] = _Op(self, name, br)
        return op

    def breaker_for(self, request: requests.PreparedRequest | str) -> Any:
        """The circuit breaker a request (or, for key="host", a URL) goes through."""
        if isinstance(request, str):
            request = requests.Request("GET", request).prepare()
        return self._op_for(request).breaker

    # --- sending ----------------------------------------------------------------------------

    def _budget(self, kwargs: dict[str, Any], t0: float, operation: str) -> dict[str, Any]:
        left = check_budget(operation)
        if self._deadline is not None:
            own = self._deadline - (self.clock.monotonic() - t0)
            left = own if left is None or own < left else left
        if left is None:
            return kwargs
        left = max(left, 0.001)
        timeout = kwargs.get("timeout")
        if isinstance(timeout, tuple):
            new: Any = tuple(lowered(v, left) for v in timeout)
        elif timeout is None or isinstance(timeout, int | float):
            new = lowered(timeout, left)
        else:  # a urllib3 Timeout object: left as it is
            return kwargs
        if new == timeout:
            return kwargs
        return {**kwargs, "timeout": new}

    def _send_once(
        self, request: requests.PreparedRequest, kwargs: dict[str, Any]
    ) -> requests.Response:
        response = super().send(request, **kwargs)
        if response.status_code in FAILURE_STATUSES:
            response.content  # noqa: B018  # read: the connection goes back to the pool
            raise _ResponseFailure(response)
        return response

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        """Send `request` through the policy and the breaker (called by `Session.send`)."""
        op = self._op_for(request)
        t0 = self.clock.monotonic()
        try:
            if request.method in self.retry_methods and _replayable(request):
                return self.policy.call(op.attempt, request, t0, kwargs)  # type: ignore[no-any-return]
            return op.attempt(request, t0, kwargs)
        except _ResponseFailure as exc:
            return exc.response
        except CircuitOpenError as exc:
            raise CircuitOpenAdapterError(exc, request) from None
        except RequestException as exc:
            if isinstance(exc.__context__, _ResponseFailure):
                exc.__context__ = None  # an earlier attempt's response is not its cause
            raise
