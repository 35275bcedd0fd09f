"""What the OpenAI and Anthropic integrations share: error classification and the client wrapper.

Both official SDKs are generated from one template: every API call goes through
`client.request(cast_to, options, *, stream, stream_cls)`, errors carry `.status_code`,
`.response` (with headers) and `.body`, and `copy()` / `with_options()` build the new client with
`self.__class__(...)`. So one wrapper serves both: `resilient_client` returns a copy of the SDK
client with `max_retries=0` whose class overrides `request` to run each call through the
operation's policies (`@resilient(operation)`), so retries are ours alone and never multiply.

Nothing here imports either SDK: classification is by duck typing, and `resilience.classify`
calls `classify_sdk_error` only for exceptions whose class comes from the `openai` or
`anthropic` package (so the SDK is already imported).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .._deadline import remaining
from .._resilient import resilient
from ..classify import DEFAULT_HTTP_STATUS, Classification, Verdict, parse_retry_after

if TYPE_CHECKING:
    from ..classify import Classifier

__all__ = ["classify_sdk_error", "resilient_sdk_client"]

C = TypeVar("C")

# Error codes that say "retrying will not help" although the status (429, 400) could suggest
# otherwise: a quota or billing state, and requests too large for the model.
_PERMANENT_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "context_length_exceeded",
        "string_above_max_length",
        "request_too_large",
        "invalid_api_key",
    }
)
_CONNECTION_ERRORS = frozenset({"APIConnectionError", "APITimeoutError"})


def _error_codes(exc: BaseException) -> set[str]:
    """The `code` and `type` an SDK error carries, from its attributes and its JSON body."""
    codes: set[str] = set()
    for attr in ("code", "type"):
        value = getattr(exc, attr, None)
        if isinstance(value, str):
            codes.add(value)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            for key in ("code", "type"):
                value = err.get(key)
                if isinstance(value, str):
                    codes.add(value)
    return codes


def _retry_after(headers: Any, now: float | None) -> float | None:
    """`retry-after-ms` (milliseconds), else `retry-after` (seconds or an HTTP-date)."""
    if headers is None or not hasattr(headers, "get"):
        return None
    value = headers.get("retry-after-ms")
    if isinstance(value, str):
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    value = headers.get("retry-after")
    return parse_retry_after(value, now) if isinstance(value, str) else None


def classify_sdk_error(
    exc: BaseException, classifier: Classifier, now: float | None = None
) -> Classification | None:
    """Classify an OpenAI or Anthropic SDK error exactly; None when it is not one we know.

    Connection and timeout errors are TRANSIENT; status errors follow the SDKs' own rule
    (408, 409, 429 and every 5xx, Anthropic's 529 "overloaded" included, are retryable; the
    `x-should-retry` header overrides), except that a quota or billing 429 and context-length
    errors are PERMANENT. The wait comes from `retry-after-ms`, then `retry-after`. A status the
    classifier was given explicitly (`http_status=`) keeps the verdict it was given.

    Example:
        >>> class APIConnectionError(Exception): ...
        >>> import resilience as rs
        >>> classify_sdk_error(APIConnectionError(), rs.DEFAULT_CLASSIFIER).verdict.name
        'TRANSIENT'
    """
    names = {k.__name__ for k in type(exc).__mro__}
    if names & _CONNECTION_ERRORS:
        return Classification(Verdict.TRANSIENT, None, type(exc).__name__)
    status = getattr(exc, "status_code", None)
    if type(status) is not int:
        return None
    response = getattr(exc, "response", None)
    headers: Any = getattr(response, "headers", None)
    reason = f"HTTP {status}"
    codes = _error_codes(exc)
    permanent = codes & _PERMANENT_CODES
    if permanent:
        return Classification(Verdict.PERMANENT, None, f"{reason} {sorted(permanent)[0]}")
    should = headers.get("x-should-retry") if headers is not None else None
    own = classifier._status.get(status)  # an explicit http_status= entry wins
    if own is not None and own is not DEFAULT_HTTP_STATUS.get(status):
        verdict = own
    elif should == "false":
        return Classification(Verdict.PERMANENT, None, f"{reason}, x-should-retry: false")
    elif status == 429:
        verdict = Verdict.RATE_LIMITED
    elif should == "true" or status in (408, 409) or status >= 500:
        verdict = Verdict.TRANSIENT
    else:
        verdict = Verdict.PERMANENT
    wait = _retry_after(headers, now) if verdict.retryable else None
    return Classification(verdict, wait, reason)


# --- the client ------------------------------------------------------------------------------


class _PeekedStream:
    """A sync SDK stream whose first chunk was already read (inside the policy)."""

    __slots__ = ("_first", "_pending", "_stream")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        try:
            self._first = next(stream)
            self._pending = True
        except StopIteration:
            self._first = None
            self._pending = False

    def __next__(self) -> Any:
        if self._pending:
            self._pending = False
            return self._first
        return next(self._stream)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __enter__(self) -> _PeekedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _APeekedStream:
    """An async SDK stream whose first chunk was already read (inside the policy)."""

    __slots__ = ("_first", "_pending", "_stream")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._first: Any = None
        self._pending = False

    async def _peek(self) -> _APeekedStream:
        try:
            self._first = await self._stream.__anext__()
            self._pending = True
        except StopAsyncIteration:
            pass
        return self

    async def __anext__(self) -> Any:
        if self._pending:
            self._pending = False
            return self._first
        return await self._stream.__anext__()

    def __aiter__(self) -> _APeekedStream:
        return self

    async def __aenter__(self) -> _APeekedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _prepared(client: Any, options: Any) -> Any:
    """One idempotency key for all our attempts (the SDK would mint one per call)."""
    copy = options.model_copy()
    method = str(getattr(copy, "method", "get")).lower()
    if getattr(copy, "idempotency_key", None) is None and method != "get":
        make = getattr(client, "_idempotency_key", None)
        if callable(make):
            copy.idempotency_key = make()
    return copy


def _budgeted(client: Any, options: Any) -> Any:
    """Lower the request's timeout to what the time budget (`rs.deadline`) has left."""
    left = remaining()
    if left is None:
        return options
    current = getattr(options, "timeout", None)
    if not isinstance(current, int | float):
        current = getattr(client, "timeout", None)
    total = current if isinstance(current, int | float) else getattr(current, "read", None)
    if isinstance(total, int | float) and total <= left:
        return options
    copy = options.model_copy()
    copy.timeout = max(left, 0.001)
    return copy


def _is_async_client(client: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(type(client).request)


def resilient_sdk_client(
    client: C, operation: str, *, fallback: Any = None, clock: Any = None
) -> C:
    """A copy of an OpenAI/Anthropic SDK client whose API calls run through `operation`.

    See `resilience.integrations.openai.resilient_client`.
    """
    if not callable(getattr(client, "with_options", None)) or not callable(
        getattr(client, "request", None)
    ):
        raise TypeError(
            f"resilient_client() takes an OpenAI, AsyncOpenAI, Anthropic or AsyncAnthropic "
            f"client, got {type(client).__name__}"
        )
    base: Any = type(client)
    if getattr(base, "__resilience_operation__", None) is not None:
        base = base.__mro__[1]  # re-wrapping: start from the SDK's own class
    is_async = _is_async_client(client)
    namespace: dict[str, Any] = {"__resilience_operation__": operation}

    if is_async:

        @resilient(operation, fallback=fallback, clock=clock)
        async def _arun(attempt: Callable[[], Awaitable[Any]]) -> Any:
            return await attempt()

        async def arequest(
            self: Any, cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None
        ) -> Any:
            options = _prepared(self, options)
            sdk_request = super(cls, self).request

            async def attempt() -> Any:
                result = await sdk_request(
                    cast_to, _budgeted(self, options), stream=stream, stream_cls=stream_cls
                )
                if stream:
                    return await _APeekedStream(result)._peek()
                return result

            return await _arun(attempt)

        namespace["request"] = functools.wraps(base.request)(arequest)
    else:

        @resilient(operation, fallback=fallback, clock=clock)
        def _run(attempt: Callable[[], object]) -> object:
            return attempt()

        def request(
            self: Any, cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None
        ) -> Any:
            options = _prepared(self, options)
            sdk_request = super(cls, self).request

            def attempt() -> Any:
                result = sdk_request(
                    cast_to, _budgeted(self, options), stream=stream, stream_cls=stream_cls
                )
                return _PeekedStream(result) if stream else result

            return _run(attempt)

        namespace["request"] = functools.wraps(base.request)(request)
    cls: Any = type(f"Resilient{base.__name__}", (base,), namespace)
    cls.__module__ = __name__
    copied = client.with_options(max_retries=0)  # type: ignore[attr-defined]
    copied.__class__ = cls
    return copied  # type: ignore[no-any-return]
