"""Anthropic's official SDK (`anthropic`), with our policies instead of its own retries.

`resilient_client(client, operation="llm.chat")` returns a copy of an `anthropic.Anthropic` or
`anthropic.AsyncAnthropic` client with the SDK's retries off (`max_retries=0`): every API call
runs once per attempt of the operation's policies from the active config. The SDK's errors
classify exactly through `DEFAULT_CLASSIFIER` whenever the SDK is installed: 529 "overloaded"
is TRANSIENT, `retry-after-ms` / `retry-after` are honoured, request-too-large errors are
PERMANENT, connection and timeout errors TRANSIENT, `x-should-retry` obeyed. A streaming call
is retried only before its first chunk arrives.

Example:
    >>> import anthropic
    >>> from resilience.integrations.anthropic import resilient_client
    >>> client = resilient_client(anthropic.Anthropic(api_key="k"), operation="llm.chat")
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
        client: an `anthropic.Anthropic` or `anthropic.AsyncAnthropic` (also Bedrock/Vertex).
        operation: the operation in the active config whose policies apply to every API call.
        fallback: as for `@resilient`.
        clock: the policies' clock (a `VirtualClock` in tests).

    Returns:
        A client of the same kind; `with_options()` / `copy()` of it stay resilient.

    Example:
        >>> import anthropic
        >>> c = resilient_client(anthropic.AsyncAnthropic(api_key="k"))
        >>> type(c).__name__
        'ResilientAsyncAnthropic'
    """
    return resilient_sdk_client(client, operation, fallback=fallback, clock=clock)
