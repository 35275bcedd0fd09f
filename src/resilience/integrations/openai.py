"""OpenAI's official SDK (`openai`), with our policies instead of its own retries.

`resilient_client(client, operation="llm.chat")` returns a copy of an `openai.OpenAI` or
`openai.AsyncOpenAI` client with the SDK's retries off (`max_retries=0`): every API call runs
once per attempt of the operation's policies from the active config (`@resilient`), so
retries never multiply (3 of ours x 3 of the SDK's would be 9 calls). The SDK's errors classify
exactly through `DEFAULT_CLASSIFIER` whenever the SDK is installed: `retry-after-ms` and
`retry-after` are honoured, 429 `insufficient_quota` and context-length errors are PERMANENT,
connection and timeout errors TRANSIENT, `x-should-retry` obeyed. A streaming call is retried
only before its first chunk arrives: the first chunk is read inside the policies, the rest as
you iterate.

Example:
    >>> import openai
    >>> from resilience.integrations.openai import resilient_client
    >>> client = resilient_client(openai.OpenAI(api_key="sk-test"), operation="llm.chat")
    >>> client.max_retries
    0
"""

from __future__ import annotations

from typing import Any, TypeVar

from ._llm import classify_sdk_error, resilient_sdk_client

__all__ = ["classify_sdk_error", "resilient_client"]

C = TypeVar("C")


def resilient_client(
    client: C, operation: str = "llm.chat", *, fallback: Any = None, clock: Any = None
) -> C:
    """The SDK's own client, its retries off, each API call run through `operation`'s policies.

    Args:
        client: an `openai.OpenAI` or `openai.AsyncOpenAI` (also Azure's).
        operation: the operation in the active config (`[operations."llm.chat"]`): its
            timeout, retry, breaker, bulkhead and rate limit apply to every API call.
        fallback: as for `@resilient` (a `rs.Default(...)`, a `rs.StaleCache()`, ...).
        clock: the policies' clock (a `VirtualClock` in tests).

    Returns:
        A client of the same kind; `with_options()` / `copy()` of it stay resilient.

    Example:
        >>> import openai
        >>> c = resilient_client(openai.AsyncOpenAI(api_key="sk-test"), operation="llm.summary")
        >>> type(c).__name__
        'ResilientAsyncOpenAI'
    """
    return resilient_sdk_client(client, operation, fallback=fallback, clock=clock)
