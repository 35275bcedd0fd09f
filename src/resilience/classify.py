"""Outcome classification: is this error worth retrying, counting, falling back on?

`Classifier.classify(exc_or_result)` returns a `Classification` whose `verdict` is one of
SUCCESS, TRANSIENT (retry it), RATE_LIMITED (retry it, after `retry_after` if known) or
PERMANENT (retrying will not help; a breaker does not count it either).

Example:
    >>> import resilience as rs
    >>> rs.DEFAULT_CLASSIFIER.classify(ConnectionError("reset")).verdict
    <Verdict.TRANSIENT: 'transient'>
    >>> rs.DEFAULT_CLASSIFIER.classify(ValueError("bad")).verdict
    <Verdict.PERMANENT: 'permanent'>
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import (
    AllFallbacksFailed,
    AllTiersFailed,
    BulkheadFull,
    CircuitOpenError,
    ConfigError,
    RateLimited,
    ResilienceError,
)

__all__ = [
    "DEFAULT_CLASSIFIER",
    "DEFAULT_HTTP_STATUS",
    "Classification",
    "Classifier",
    "Verdict",
    "parse_retry_after",
]


class Verdict(enum.Enum):
    """What an outcome means for resilience policies.

    Example:
        >>> from resilience import DEFAULT_CLASSIFIER
        >>> DEFAULT_CLASSIFIER.classify(ConnectionError()).verdict
        <Verdict.TRANSIENT: 'transient'>
        >>> Verdict.RATE_LIMITED.retryable, Verdict.PERMANENT.retryable
        (True, False)
    """

    SUCCESS = "success"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    RATE_LIMITED = "rate_limited"

    @property
    def retryable(self) -> bool:
        """TRANSIENT and RATE_LIMITED outcomes are worth another attempt."""
        return self is Verdict.TRANSIENT or self is Verdict.RATE_LIMITED


@dataclass(frozen=True, slots=True)
class Classification:
    """A verdict with the wait the remote side asked for (`retry_after`, seconds) and why.

    Example:
        >>> Classification(Verdict.RATE_LIMITED, 2.0, "HTTP 429").retry_after
        2.0
    """

    verdict: Verdict
    retry_after: float | None = None
    reason: str = ""

    @property
    def retryable(self) -> bool:
        return self.verdict.retryable


DEFAULT_HTTP_STATUS: Mapping[int, Verdict] = {
    408: Verdict.TRANSIENT,
    425: Verdict.TRANSIENT,
    429: Verdict.RATE_LIMITED,
    500: Verdict.TRANSIENT,
    502: Verdict.TRANSIENT,
    503: Verdict.TRANSIENT,
    504: Verdict.TRANSIENT,
}
"""Status codes with a verdict other than the rule (other 4xx and 5xx are PERMANENT)."""

_SUCCESS = Classification(Verdict.SUCCESS, None, "returned")
_FS_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
# Transport errors of client libraries we do not import; matched by (module root, class name)
# anywhere in the exception's MRO.
_FOREIGN_TRANSIENT = {
    ("httpx", "TransportError"),  # connect/read/write/pool timeouts, network and protocol errors
    ("httpcore", "TimeoutException"),
    ("httpcore", "NetworkError"),
    ("anyio", "BrokenResourceError"),
    ("anyio", "EndOfStream"),
    ("aiohttp", "ClientConnectionError"),
    ("aiohttp", "ServerTimeoutError"),
    ("redis", "ConnectionError"),
    ("redis", "TimeoutError"),
    ("trio", "BrokenResourceError"),
    ("trio", "TooSlowError"),  # trio.fail_after / fail_at: a timeout, like TimeoutError
    ("urllib3", "TimeoutError"),  # connect/read timeouts, NewConnectionError (not OSErrors)
    ("urllib3", "ProtocolError"),  # the connection broke mid-request
    ("http", "IncompleteRead"),  # http.client: the body was cut short
}
_FOREIGN_PERMANENT = {
    ("httpx", "UnsupportedProtocol"),
    ("httpx", "LocalProtocolError"),
}
# SDKs whose errors get an exact classifier of their own (status, retry-after-ms, quota and
# overload semantics): package -> module defining `classify_sdk_error`. The module is imported
# the first time one of that package's errors is classified, so the SDK is already loaded.
_SDK_CLASSIFIERS = {
    "openai": "resilience.integrations._llm",
    "anthropic": "resilience.integrations._llm",
}
_SdkHook = Callable[[BaseException, "Classifier"], "Classification | None"]
_sdk_hooks: dict[type[BaseException], _SdkHook | None] = {}


def _sdk_hook(exc_type: type[BaseException]) -> _SdkHook | None:
    try:
        return _sdk_hooks[exc_type]
    except KeyError:
        pass
    hook: _SdkHook | None = None
    for klass in exc_type.__mro__:
        module = _SDK_CLASSIFIERS.get(klass.__module__.partition(".")[0])
        if module is not None:
            import importlib

            hook = importlib.import_module(module).classify_sdk_error
            break
    if len(_sdk_hooks) < 1024:
        _sdk_hooks[exc_type] = hook
    return hook


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Parse an HTTP `Retry-After` value into seconds to wait from `now`.

    Accepts delay-seconds ("120", "1.5") and HTTP-dates ("Wed, 21 Oct 2026 07:28:00 GMT").
    Returns None for anything malformed, negative, NaN or infinite; a date in the past gives 0.0.

    Args:
        value: the header's value.
        now: wall-clock seconds since the epoch to measure a date from (default: time.time()).

    Example:
        >>> parse_retry_after("7")
        7.0
        >>> parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=1767225600.0)
        30.0
        >>> parse_retry_after("-1") is None, parse_retry_after("soon") is None
        (True, True)
    """
    if not isinstance(value, str | bytes):
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("latin-1")
        except Exception:  # pragma: no cover - latin-1 decodes every byte
            return None
    text = value.strip()
    if not text:
        return None
    if text[0] in "0123456789+-.":
        # delay-seconds: ASCII digits, with an optional fraction. No sign, exponent, "_" or
        # non-ASCII digits (float() would take "1_0", "1e3" and "\u0663").
        whole, _, fraction = text.partition(".")
        digits = whole + fraction
        if not (digits.isascii() and digits.isdigit()):
            return None
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None  # 400 digits -> inf
    from email.utils import parsedate_to_datetime  # ~10 ms to import: only for dates

    try:
        when = parsedate_to_datetime(text)
    except Exception:  # the email parser raises several types across Python versions
        return None
    if when is None or when.tzinfo is None:  # an HTTP-date is always GMT; refuse naive forms
        return None
    try:
        stamp = when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    delay = stamp - (time.time() if now is None else now)
    if not math.isfinite(delay):
        return None
    return max(delay, 0.0)


def _status_of(obj: object) -> int | None:
    status = getattr(obj, "status_code", None)
    if type(status) is int:
        return status
    response = getattr(obj, "response", None)
    if response is not None:
        status = getattr(response, "status_code", None)
        if type(status) is int:
            return status
        status = getattr(response, "status", None)
        if type(status) is int:
            return status
    if isinstance(obj, BaseException):
        status = getattr(obj, "status", None)  # aiohttp.ClientResponseError
        if type(status) is int:
            return status
    return None


def _headers_of(obj: object) -> Any:
    headers = getattr(obj, "headers", None)
    if headers is None:
        response = getattr(obj, "response", None)
        if response is not None:
            headers = getattr(response, "headers", None)
    return headers


def _retry_after_of(obj: object, now: float | None = None) -> float | None:
    headers = _headers_of(obj)
    if headers is None or not hasattr(headers, "get"):
        return None
    value = headers.get("Retry-After")
    if value is None:
        value = headers.get("retry-after")
    if value is None:
        return None
    return parse_retry_after(value, now)


def _foreign_verdict(exc_type: type[BaseException]) -> Verdict | None:
    for klass in exc_type.__mro__:
        root = klass.__module__.partition(".")[0]
        key = (root, klass.__name__)
        if key in _FOREIGN_PERMANENT:
            return Verdict.PERMANENT
        if key in _FOREIGN_TRANSIENT:
            return Verdict.TRANSIENT
    return None


class Classifier:
    """Decides the `Verdict` of an exception or a returned result.

    Rules, first match wins:

    1. `permanent` then `transient` exception types you pass (subclasses match);
    2. the library's own errors: `CircuitOpenError` and `RateLimited` are RATE_LIMITED (with
       the time left as `retry_after`), `TimeoutExceeded`, `BulkheadFull`, `AllTiersFailed` and
       `AllFallbacksFailed` TRANSIENT, other `ResilienceError`s PERMANENT;
    3. errors of the OpenAI and Anthropic SDKs by those SDKs' own rules (see
       `resilience.integrations.openai`), recognised without importing the SDKs;
    4. anything with `.status_code` or `.response.status_code`: by HTTP status (408, 425, 500,
       502, 503, 504 TRANSIENT; 429 RATE_LIMITED; other 4xx/5xx PERMANENT), merged with
       `http_status`; `Retry-After` is read from `.headers` / `.response.headers`;
    5. `ConnectionError`, `TimeoutError` and other `OSError`s TRANSIENT, except the file-system
       errors (FileNotFoundError, PermissionError, ...) which are PERMANENT; the transport errors
       of httpx, aiohttp, anyio, urllib3 and redis-py, and http.client's IncompleteRead,
       TRANSIENT (recognised without importing them);
    6. any other exception PERMANENT.

    An exception group (what an anyio task group raises) is judged by its leaves, after rule 1:
    TRANSIENT or RATE_LIMITED when every leaf is retryable, PERMANENT otherwise.

    A returned result is SUCCESS unless `result(value)` returns a verdict, or, with
    `results_by_status=True`, it carries an error status (an HTTP response object). Policies
    inspect results only when `inspects_results` is true, so plain calls pay nothing for it.

    Args:
        transient: exception types to retry.
        permanent: exception types never to retry (checked before `transient`).
        http_status: status code -> Verdict, merged over `DEFAULT_HTTP_STATUS`.
        result: optional `callable(result) -> Verdict | None` for returned values.
        results_by_status: classify returned objects that carry `.status_code` by status.

    Example:
        >>> import resilience as rs
        >>> clf = rs.Classifier(transient=(KeyError,), http_status={404: rs.Verdict.TRANSIENT})
        >>> clf.classify(KeyError("x")).verdict.name
        'TRANSIENT'
    """

    __slots__ = (
        "_cache",
        "_permanent",
        "_status",
        "_transient",
        "inspects_results",
        "result",
        "results_by_status",
    )

    def __init__(
        self,
        transient: tuple[type[BaseException], ...] | type[BaseException] = (),
        permanent: tuple[type[BaseException], ...] | type[BaseException] = (),
        http_status: Mapping[int, Verdict] | None = None,
        result: Callable[[Any], Verdict | None] | None = None,
        *,
        results_by_status: bool = False,
    ) -> None:
        errors: list[tuple[str, str]] = []
        self._transient = _as_types(transient, "transient", errors)
        self._permanent = _as_types(permanent, "permanent", errors)
        status = dict(DEFAULT_HTTP_STATUS)
        for code, verdict in (http_status or {}).items():
            if type(code) is not int or not 100 <= code <= 599:
                errors.append((f"http_status[{code!r}]", "must be an HTTP status code 100..599"))
            elif not isinstance(verdict, Verdict):
                errors.append((f"http_status[{code}]", f"must be a Verdict, got {verdict!r}"))
            else:
                status[code] = verdict
        if result is not None and not callable(result):
            errors.append(("result", f"must be callable, got {type(result).__name__}"))
        if errors:
            raise ConfigError(errors)
        self._status = status
        self.result = result
        self.results_by_status = results_by_status
        self.inspects_results = result is not None or results_by_status
        # exception type -> Classification for types whose verdict does not depend on the
        # instance (no status code, no retry-after): most failures classify with one dict hit.
        self._cache: dict[type[BaseException], Classification] = {}

    def classify(self, outcome: object, *, now: float | None = None) -> Classification:
        """Classify an exception (or a returned result). Total: never raises for any input
        (a `result=` callable that raises is the one exception: its error propagates).

        `now`: wall-clock seconds an HTTP-date Retry-After is measured from (a policy passes
        its clock's `time()`; default `time.time()`).
        """
        cls = type(outcome)
        try:
            hit = self._cache.get(cls)  # type: ignore[arg-type]  # only exception types stored
            # The cache is per type; an instance given a status attribute of its own
            # (`exc.status_code = 503`) must be looked at, not answered from the cache.
            if hit is not None:
                attrs = outcome.__dict__
                if not attrs or (
                    "status_code" not in attrs and "response" not in attrs and "status" not in attrs
                ):
                    return hit
            if issubclass(cls, BaseException):  # not isinstance(): __class__ may lie or raise
                return self._classify_exception(outcome, now)  # type: ignore[arg-type]
        except Exception:  # attribute access raised, in ways _status_of could not catch
            return Classification(Verdict.PERMANENT, None, "unclassifiable error")
        return self.classify_result(outcome, by_status=True, now=now)

    def classify_result(
        self, value: object, *, by_status: bool | None = None, now: float | None = None
    ) -> Classification:
        """Classify a value a call returned (SUCCESS unless a rule says otherwise).

        `by_status`: read an HTTP status from the value (default: `results_by_status`). The
        policies call this on their hot path only when `inspects_results`, with the default;
        `classify()` passes True, so asking it directly about a response reads its status.
        """
        if self.result is not None:
            verdict = self.result(value)
            if verdict is not None:
                return Classification(verdict, _safe_retry_after(value, now), "result")
        if self.results_by_status if by_status is None else by_status:
            try:
                status = _status_of(value)
            except Exception:
                status = None
            if status is not None and status >= 400:
                return self._by_status(value, status, now)
        return _SUCCESS

    def verdict_for_status(self, status: int) -> Verdict:
        """The verdict for an HTTP status code under this classifier's table."""
        if status < 400:
            return Verdict.SUCCESS
        return self._status.get(status, Verdict.PERMANENT)

    def _by_status(self, obj: object, status: int, now: float | None = None) -> Classification:
        verdict = self.verdict_for_status(status)
        if verdict is Verdict.SUCCESS:
            verdict = Verdict.PERMANENT if isinstance(obj, BaseException) else verdict
        retry_after = _safe_retry_after(obj, now) if verdict.retryable else None
        return Classification(verdict, retry_after, f"HTTP {status}")

    def _classify_exception(self, exc: BaseException, now: float | None = None) -> Classification:
        exc_type = type(exc)
        try:
            # A type whose instances may carry a status (requests' HTTPError has .response,
            # sometimes None) must be looked at per instance, never cached.
            cacheable = not any(hasattr(exc, a) for a in ("status_code", "response", "status"))
        except Exception:
            cacheable = False
        remember = self._remember if cacheable else _fresh
        if self._permanent and isinstance(exc, self._permanent):
            return remember(exc_type, Verdict.PERMANENT, "permanent type")
        if self._transient and isinstance(exc, self._transient):
            return remember(exc_type, Verdict.TRANSIENT, "transient type")
        if isinstance(exc, BaseExceptionGroup):  # e.g. from an anyio task group
            return self._classify_group(exc, now)
        if isinstance(exc, ResilienceError):
            if isinstance(exc, CircuitOpenError):
                wait = _finite_wait(exc.remaining)  # inf when forced open: no wait to honour
                return Classification(Verdict.RATE_LIMITED, wait, "circuit open")
            if isinstance(exc, RateLimited):
                wait = _finite_wait(exc.retry_after)
                return Classification(Verdict.RATE_LIMITED, wait, "rate limited")
            if isinstance(exc, TimeoutError | BulkheadFull | AllTiersFailed | AllFallbacksFailed):
                return remember(exc_type, Verdict.TRANSIENT, exc_type.__name__)
            return remember(exc_type, Verdict.PERMANENT, exc_type.__name__)
        sdk = _sdk_hook(exc_type)
        if sdk is not None:
            try:
                hit = sdk(exc, self)
            except Exception:
                hit = None
            if hit is not None:
                return hit
        try:
            status = _status_of(exc)
        except Exception:
            status = None
        if status is not None:
            return self._by_status(exc, status, now)
        if isinstance(exc, _FS_ERRORS):
            return remember(exc_type, Verdict.PERMANENT, "file-system error")
        if isinstance(exc, OSError | TimeoutError):  # ConnectionError is an OSError
            return remember(exc_type, Verdict.TRANSIENT, exc_type.__name__)
        foreign = _foreign_verdict(exc_type)
        if foreign is not None:
            return remember(exc_type, foreign, exc_type.__name__)
        return remember(exc_type, Verdict.PERMANENT, "unknown error")

    def _classify_group(
        self, group: BaseExceptionGroup[BaseException], now: float | None = None
    ) -> Classification:
        """By its leaves: retryable only if every one is; the longest Retry-After wins."""
        leaves = [self.classify(e, now=now) for e in group.exceptions]  # nested groups recurse
        if any(not c.verdict.retryable for c in leaves):
            return Classification(Verdict.PERMANENT, None, "exception group")
        waits = [c.retry_after for c in leaves if c.retry_after is not None]
        if any(c.verdict is Verdict.RATE_LIMITED for c in leaves):
            return Classification(Verdict.RATE_LIMITED, max(waits, default=None), "exception group")
        return Classification(Verdict.TRANSIENT, None, "exception group")

    def _remember(
        self, exc_type: type[BaseException], verdict: Verdict, why: str
    ) -> Classification:
        hit = Classification(verdict, None, why)
        if len(self._cache) < 1024:
            self._cache[exc_type] = hit
        return hit

    def __repr__(self) -> str:
        return (
            f"Classifier(transient={self._transient!r}, permanent={self._permanent!r}, "
            f"result={self.result!r})"
        )


def _finite_wait(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        wait = float(value)
        if math.isfinite(wait) and wait >= 0:
            return wait
    return None


def _fresh(exc_type: type[BaseException], verdict: Verdict, why: str) -> Classification:
    return Classification(verdict, None, why)


def _safe_retry_after(obj: object, now: float | None = None) -> float | None:
    try:
        return _retry_after_of(obj, now)
    except Exception:
        return None


def _as_types(
    value: object, name: str, errors: list[tuple[str, str]]
) -> tuple[type[BaseException], ...]:
    items = value if isinstance(value, tuple | list | frozenset | set) else (value,)
    out: list[type[BaseException]] = []
    for item in items:
        if isinstance(item, type) and issubclass(item, BaseException):
            out.append(item)
        else:
            errors.append((name, f"must be exception types, got {item!r}"))
    return tuple(out)


DEFAULT_CLASSIFIER = Classifier()
"""The classifier every policy uses unless given another (rules: see `Classifier`)."""
