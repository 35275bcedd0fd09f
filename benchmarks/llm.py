"""What `resilient_client` costs per API call: the bare SDK client vs the wrapped one.

Both clients call the same local server on 127.0.0.1 that speaks enough of each API (the
tests' `_llm_server`), interleaved in one process; the wrapped client runs each call through
an operation with a retry and a circuit breaker (no waits on the happy path). Target: <= 1.05x
of the bare client's time per request.

Run: .venv/bin/python -m benchmarks.llm
"""

from __future__ import annotations

import sys
from pathlib import Path

import anthropic
import openai

from resilience import config
from resilience.integrations.anthropic import resilient_client as anthropic_client
from resilience.integrations.openai import resilient_client as openai_client

from ._harness import compare, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _llm_server import LLMServer

TARGET = 1.05
MESSAGES = [{"role": "user", "content": "hi"}]


def main() -> None:
    config.use(
        config.load(
            environ={"RESILIENCE_ENV": "production"},
            data={"operations": {"llm.bench": {"timeout": 30.0, "bulkhead": False}}},
        )
    )
    with LLMServer() as server:
        bare_oa = openai.OpenAI(api_key="sk", base_url=server.url + "/v1", max_retries=0)
        ours_oa = openai_client(
            openai.OpenAI(api_key="sk", base_url=server.url + "/v1"), operation="llm.bench"
        )
        bare_an = anthropic.Anthropic(api_key="k", base_url=server.url, max_retries=0)
        ours_an = anthropic_client(
            anthropic.Anthropic(api_key="k", base_url=server.url), operation="llm.bench"
        )

        def chat(client: openai.OpenAI) -> None:
            client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]

        def message(client: anthropic.Anthropic) -> None:
            client.messages.create(model="m", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]

        def case(fn, client):  # type: ignore[no-untyped-def]
            import time

            def run(n: int) -> float:
                start = time.perf_counter()
                for _ in range(n):
                    fn(client)
                return time.perf_counter() - start

            return run

        results = compare(
            {
                "openai bare": case(chat, bare_oa),
                "openai resilient_client": case(chat, ours_oa),
                "anthropic bare": case(message, bare_an),
                "anthropic resilient_client": case(message, ours_an),
            },
            number=100,
            repeat=9,
        )
    print(
        table(
            "OpenAI SDK, one request",
            {k: v for k, v in results.items() if "openai" in k},
            baseline="openai bare",
        )
    )
    print(
        table(
            "Anthropic SDK, one request",
            {k: v for k, v in results.items() if "anthropic" in k},
            baseline="anthropic bare",
        )
    )
    for sdk in ("openai", "anthropic"):
        ratio = results[f"{sdk} resilient_client"] / results[f"{sdk} bare"]
        verdict = "met" if ratio <= TARGET else "MISSED"
        print(
            f"{sdk}: resilient_client {ratio:.3f}x of the bare client"
            f" (target <= {TARGET}x, {verdict})"
        )


if __name__ == "__main__":
    main()
