"""The OpenAI and Anthropic integrations, with the real SDKs against a local server.

Every case asserts how many HTTP requests the server saw: our attempts only, never multiplied
by the SDK's own retries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import anyio
import openai
import pytest

import resilience as rs
from _llm_server import LLMServer, anthropic_error, openai_error
from resilience import config
from resilience.integrations.anthropic import resilient_client as anthropic_client
from resilience.integrations.openai import resilient_client as openai_client
from resilience.testing import VirtualClock

OP = "llm.test"
TABLE = {
    "timeout": False,
    "breaker": False,
    "retry": {
        "max_attempts": 3,
        "backoff": {"kind": "constant", "delay": 0.25},
        "deadline": 60.0,
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    with LLMServer() as s:
        yield s


@pytest.fixture(autouse=True)
def _config() -> Iterator[None]:
    cfg = config.load(
        environ={"RESILIENCE_ENV": "testing"},
        data={
            "operations": {
                OP: TABLE,
                "llm.fast": {**TABLE, "retry": {"max_attempts": 2}},
                # the primary tier does not retry a refused connection: the failover moves on
                "llm.primary": {**TABLE, "retry": False},
            }
        },
    )
    previous = config.use(cfg)
    yield
    config.use(previous)


def oa(server: LLMServer, clock: VirtualClock | None = None) -> openai.OpenAI:
    return openai_client(
        openai.OpenAI(api_key="sk-test", base_url=server.url + "/v1"), operation=OP, clock=clock
    )


def an(server: LLMServer, clock: VirtualClock | None = None) -> anthropic.Anthropic:
    return anthropic_client(
        anthropic.Anthropic(api_key="k", base_url=server.url), operation=OP, clock=clock
    )


def chat(client: openai.OpenAI) -> str | None:
    r = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    return r.choices[0].message.content


def message(client: anthropic.Anthropic) -> Any:
    r = client.messages.create(
        model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    return r.content[0].text  # type: ignore[union-attr]


def status(code: int, payload: Any = None, **headers: str) -> tuple[Any, ...]:
    return ("status", code, {k.replace("_", "-"): v for k, v in headers.items()}, payload or {})


# --- the client --------------------------------------------------------------------------


def test_sdk_retries_are_off_and_stay_off_through_with_options(server: LLMServer) -> None:
    client = oa(server)
    assert client.max_retries == 0
    again = client.with_options(timeout=5.0)
    assert again.max_retries == 0
    assert type(again) is type(client)
    server.script([status(500), status(500), status(500)])
    with pytest.raises(openai.InternalServerError):
        chat(again)
    assert server.count == 3  # ours: 3 attempts; the SDK's 2 retries would have made 9


def test_rate_limit_waits_retry_after_ms_on_the_policy_clock(server: LLMServer) -> None:
    clock = VirtualClock()
    server.script([status(429, openai_error("rate_limit_exceeded"), retry_after_ms="1500")])
    assert chat(oa(server, clock)) == "hello"
    assert server.count == 2
    assert clock.monotonic() == pytest.approx(1.5)  # max(backoff 0.25, retry-after-ms 1.5)


def test_retry_after_seconds_when_no_ms_header(server: LLMServer) -> None:
    clock = VirtualClock()
    server.script([status(429, openai_error("rate_limit_exceeded"), retry_after="2")])
    assert chat(oa(server, clock)) == "hello"
    assert server.count == 2
    assert clock.monotonic() == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("code", "payload", "error"),
    [
        (429, openai_error("insufficient_quota"), openai.RateLimitError),
        (
            400,
            openai_error("context_length_exceeded", "invalid_request_error"),
            openai.BadRequestError,
        ),
        (401, openai_error("invalid_api_key"), openai.AuthenticationError),
        (404, openai_error("model_not_found"), openai.NotFoundError),
    ],
)
def test_permanent_errors_are_sent_once(
    server: LLMServer, code: int, payload: Any, error: type[Exception]
) -> None:
    server.script([status(code, payload, retry_after_ms="10")])
    with pytest.raises(error) as info:
        chat(oa(server, VirtualClock()))
    assert server.count == 1
    assert rs.DEFAULT_CLASSIFIER.classify(info.value).verdict is rs.Verdict.PERMANENT


def test_server_errors_and_dropped_connections_are_retried(server: LLMServer) -> None:
    server.script([status(500), ("drop",), status(503)])
    with pytest.raises(openai.InternalServerError):
        chat(oa(server, VirtualClock()))
    assert server.count == 3
    server.script([("drop",)])
    assert chat(oa(server, VirtualClock())) == "hello"
    assert server.count == 2


def test_one_idempotency_key_for_all_our_attempts(server: LLMServer) -> None:
    client = oa(server, VirtualClock())
    client._idempotency_header = "Idempotency-Key"  # as clients that send one configure it
    server.script([status(500), status(502)])
    assert chat(client) == "hello"
    keys = server.idempotency_keys
    assert len(keys) == 3
    assert keys[0] is not None
    assert len(set(keys)) == 1


def test_x_should_retry_header_is_obeyed(server: LLMServer) -> None:
    server.script([status(500, x_should_retry="false")])
    with pytest.raises(openai.InternalServerError):
        chat(oa(server, VirtualClock()))
    assert server.count == 1
    server.script([status(400, openai_error("busy"), x_should_retry="true")])
    assert chat(oa(server, VirtualClock())) == "hello"
    assert server.count == 2


def test_anthropic_overloaded_529_is_transient(server: LLMServer) -> None:
    server.script([status(529, anthropic_error("overloaded_error"))])
    assert message(an(server, VirtualClock())) == "hello"
    assert server.count == 2
    server.script([status(529, anthropic_error("overloaded_error"))] * 3)
    with pytest.raises(anthropic.APIStatusError) as info:
        message(an(server, VirtualClock()))
    assert server.count == 3
    assert info.value.status_code == 529


def test_anthropic_rate_limit_and_request_too_large(server: LLMServer) -> None:
    clock = VirtualClock()
    server.script([status(429, anthropic_error("rate_limit_error"), retry_after="3")])
    assert message(an(server, clock)) == "hello"
    assert server.count == 2
    assert clock.monotonic() == pytest.approx(3.0)
    server.script([status(413, anthropic_error("request_too_large"))])
    with pytest.raises(anthropic.APIStatusError):
        message(an(server, VirtualClock()))
    assert server.count == 1


def test_the_time_budget_lowers_the_request_timeout(server: LLMServer) -> None:
    client = openai_client(
        openai.OpenAI(api_key="sk-test", base_url=server.url + "/v1", timeout=600.0),
        operation="llm.primary",
    )
    server.script([("hang", 5.0)])
    t0 = time.monotonic()
    with rs.deadline(0.5), pytest.raises(openai.APITimeoutError):
        chat(client)
    assert time.monotonic() - t0 < 3.0  # not the client's 600 s
    assert server.count == 1


def test_sdk_errors_classify_in_a_fresh_process_without_importing_the_integration() -> None:
    import subprocess
    import sys

    code = """
import sys
import resilience as rs
rs.DEFAULT_CLASSIFIER.classify(ValueError("x"))
assert "openai" not in sys.modules and "anthropic" not in sys.modules
import httpx, anthropic
req = httpx.Request("POST", "https://api.anthropic.com/v1/messages")
resp = httpx.Response(529, headers={"retry-after-ms": "250"}, request=req)
err = anthropic.APIStatusError("overloaded", response=resp, body=None)
c = rs.DEFAULT_CLASSIFIER.classify(err)
print(c.verdict.name, c.retry_after)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["TRANSIENT", "0.25"]
    assert out.stderr == ""


# --- streaming ------------------------------------------------------------------------------


def test_stream_cut_after_three_chunks_is_not_retried(server: LLMServer) -> None:
    server.script([("stream", 3)])
    client = oa(server, VirtualClock())
    stream = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    got = []
    with pytest.raises(Exception):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["t0", "t1", "t2"]
    assert server.count == 1


def test_stream_failing_before_its_first_chunk_is_retried(server: LLMServer) -> None:
    server.script([status(503), ("stream", 0)])
    client = oa(server, VirtualClock())
    with client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as stream:
        got = [c.choices[0].delta.content for c in stream]
    assert got == ["t0", "t1", "t2", "t3", "t4"]
    assert server.count == 3


# --- async, on asyncio and trio -----------------------------------------------------------------


@pytest.mark.anyio
async def test_async_clients_retry_with_our_policies(server: LLMServer) -> None:
    clock = VirtualClock()
    client = openai_client(
        openai.AsyncOpenAI(api_key="sk-test", base_url=server.url + "/v1"),
        operation=OP,
        clock=clock,
    )
    assert client.max_retries == 0
    server.script([status(429, openai_error("rate_limit_exceeded"), retry_after_ms="700")])
    with anyio.fail_after(10):
        r = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}]
        )
    assert r.choices[0].message.content == "hello"
    assert server.count == 2
    assert clock.monotonic() == pytest.approx(0.7)

    aclient = anthropic_client(
        anthropic.AsyncAnthropic(api_key="k", base_url=server.url), operation=OP, clock=clock
    )
    server.script([status(529, anthropic_error("overloaded_error")), ("drop",)])
    with anyio.fail_after(10):
        m = await aclient.messages.create(
            model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert m.content[0].text == "hello"  # type: ignore[union-attr]
    assert server.count == 3
    await client.close()  # connections belong to this test's event loop
    await aclient.close()


@pytest.mark.anyio
async def test_async_stream_retried_only_before_its_first_chunk(server: LLMServer) -> None:
    client = openai_client(
        openai.AsyncOpenAI(api_key="sk-test", base_url=server.url + "/v1"),
        operation=OP,
        clock=VirtualClock(),
    )
    server.script([("drop",), ("stream", 2)])
    got = []
    with anyio.fail_after(10):
        stream = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(Exception):
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content)
    assert got == ["t0", "t1"]
    assert server.count == 2
    await client.close()


# --- seed scenario 12: provider failover ---------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.anyio
async def test_provider_failover_serves_every_request_within_the_same_call(
    server: LLMServer,
) -> None:
    primary = openai_client(
        openai.AsyncOpenAI(api_key="sk", base_url=f"http://127.0.0.1:{_closed_port()}/v1"),
        operation="llm.primary",
    )
    # 200 requests at once on a loaded 2-core machine: the SDK's default 5 s connect timeout
    # timed some of them out before this process's event loop got to them (APITimeoutError
    # on both attempts). Timeouts are not what this test is about: a generous one.
    secondary = anthropic_client(
        anthropic.AsyncAnthropic(api_key="k", base_url=server.url, timeout=30.0),
        operation="llm.fast",
    )

    async def via_openai(prompt: str) -> str:
        r = await primary.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": prompt}]
        )
        return r.choices[0].message.content or ""

    async def via_anthropic(prompt: str) -> str:
        r = await secondary.messages.create(
            model="claude-test", max_tokens=10, messages=[{"role": "user", "content": prompt}]
        )
        return r.content[0].text  # type: ignore[union-attr]

    fo = rs.Failover(
        [rs.Tier("openai", via_openai), rs.Tier("anthropic", via_anthropic)],
        name="llm",
        breaker={"failure_rate_threshold": 0.5, "minimum_calls": 5},
    )
    server.script([])
    # One call: the primary refuses, the same call is served by the secondary, well under 5 s.
    t0 = time.monotonic()
    with anyio.fail_after(10):
        served = await fo.aexecute("first")
    first_call = time.monotonic() - t0
    assert (served.value, served.source) == ("hello", "anthropic")
    assert first_call < 5.0, first_call

    # 200 concurrent requests: none lost, every one served by the secondary in its own call.
    results: list[str] = []

    async def one(i: int) -> None:
        served = await fo.aexecute(f"q{i}")
        assert served.source == "anthropic"
        results.append(served.value)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    await primary.close()
    await secondary.close()
    assert results == ["hello"] * 200  # no request lost
    assert server.count == 201
    assert fo.tiers_status()["openai"]["state"] != "closed"  # the breaker stopped the cascade
