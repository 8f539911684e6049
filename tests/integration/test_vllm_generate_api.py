"""vLLM's token-in/token-out endpoint (`/inference/v1/generate`) against its `/v1/completions`, on a real server.

The session's server runs with ``--enable-scale-out`` (conftest.VLLM_FLAGS), so `api="auto"` finds the
endpoint; both routes must decode the same tokens for the same seed, report the same usage, stream the
same tokens, and stop the engine's work when the gateway lets go of a call.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from autotts.engines.base import Sampling
from autotts.engines.vllm_http import VLLMHTTPEngine

from tests.conftest import vllm_metrics

pytestmark = pytest.mark.timeout(600)

SAMPLING = Sampling(temperature=1.0, seed=7, ignore_eos=True)


async def _both(url: str):
    auto, plain = VLLMHTTPEngine(url, "tiny"), VLLMHTTPEngine(url, "tiny", api="completions")
    await auto.start()
    await plain.start()
    return auto, plain


def test_auto_decodes_through_the_token_endpoint_with_the_same_tokens_and_usage(vllm_server: str) -> None:
    async def scenario():
        auto, plain = await _both(vllm_server)
        try:
            prompt = await auto.tokenize_chat([{"role": "user", "content": "count the primes below 40 " * 20}])
            first = await plain.generate(prompt, 24, SAMPLING, "plain-1")
            second = await auto.generate(prompt, 24, SAMPLING, "tokens-1")
            streamed = [c async for c in auto.stream(prompt + second.token_ids, 40, SAMPLING, "tokens-2",
                                                     chunk_tokens=8)]
            streamed_plain = [c async for c in plain.stream(prompt + second.token_ids, 40, SAMPLING, "plain-2",
                                                            chunk_tokens=8)]
            return auto.api, plain.api, prompt, first, second, streamed, streamed_plain
        finally:
            await auto.close()
            await plain.close()

    api, plain_api, prompt, first, second, streamed, streamed_plain = asyncio.run(scenario())
    assert (api, plain_api) == ("generate", "completions")
    assert second.token_ids == first.token_ids and len(first.token_ids) == 24
    assert (second.prompt_tokens, second.completion_tokens, second.finish_reason) == (len(prompt), 24, "length")
    assert second.cached_tokens >= 32  # the prompt's full blocks, cached by the first call
    ids = [t for c in streamed for t in c.token_ids]
    assert ids == [t for c in streamed_plain for t in c.token_ids] and len(ids) == 40
    assert max(len(c.token_ids) for c in streamed) == 8  # stream_interval reached the engine
    last = streamed[-1]
    assert last.finish_reason == "length" and last.prompt_tokens == len(prompt) + 24


def test_a_call_let_go_of_stops_the_engine_on_the_token_endpoint(vllm_server: str) -> None:
    """A long call cancelled, and a long stream closed after its first chunk: vLLM runs nothing within a second."""
    async def scenario():
        engine = VLLMHTTPEngine(vllm_server, "tiny")
        await engine.start()
        try:
            prompt = await engine.tokenize_text("abort me " * 30)
            call = asyncio.create_task(engine.generate(prompt, 4000, SAMPLING, "cancelled"))
            stream = engine.stream(prompt, 4000, SAMPLING, "closed")
            await anext(stream)
            await asyncio.sleep(0.5)
            running = vllm_metrics(vllm_server).get("vllm:num_requests_running", 0)
            call.cancel()
            await stream.aclose()
            return running
        finally:
            await engine.close()

    running = asyncio.run(scenario())
    assert running == 2
    deadline = time.monotonic() + 1.0
    while vllm_metrics(vllm_server).get("vllm:num_requests_running", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert vllm_metrics(vllm_server).get("vllm:num_requests_running", 0) == 0
