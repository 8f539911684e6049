"""The SGLang adapter (engines/sglang_http.py) against a fake SGLang server on a real socket.

The adapter is the real code; only the engine is the schema-following fake of tests/unit/sglang_fake.py
(SGLang does not install on CPU-only machines). Checked: the `/generate` request it sends, the token IDs,
finish reasons and usage it reads back, radix-cache hits, seeds, cancellation sending `/abort_request`
(the fake notices a dropped connection only after `disconnect_check_s`, as SGLang does), and the mapping
of 4xx / 5xx / garbage / refused connections / timeouts to the gateway's engine errors.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.engines.base import Sampling, TokenEngine
from autotts.engines.errors import EngineDown, EngineError, EngineGarbage, EngineRejected, EngineTimeout
from autotts.engines.sglang_http import SGLangHTTPEngine
from autotts.server.background import BackgroundServer, free_port
from autotts.server.errors import http_error

from .sglang_fake import EOS, FakeSGLang, chat_prompt, encode, token_at

pytestmark = pytest.mark.timeout(120)

HI = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture
def fake() -> Iterator[tuple[FakeSGLang, str]]:
    server = FakeSGLang(disconnect_check_s=30.0)
    with BackgroundServer(server.app) as url:
        yield server, url


def run(url: str, scenario, **engine_kwargs):
    """`scenario(engine)` against a started adapter for `url`; the adapter is closed afterwards."""
    async def go():
        engine = SGLangHTTPEngine(url, **engine_kwargs)
        try:
            await engine.start()
            return await scenario(engine)
        finally:
            await engine.close()

    return asyncio.run(go())


def test_start_names_the_model_and_templating_goes_through_the_engine(fake) -> None:
    server, url = fake

    async def scenario(engine):
        assert isinstance(engine, TokenEngine)
        chat = await engine.tokenize_chat(HI)
        no_think = await engine.tokenize_chat(HI, enable_thinking=False)
        return engine.model, chat, no_think, await engine.tokenize_text("ab}"), await engine.detokenize(chat)

    model, chat, no_think, text_ids, decoded = run(url, scenario)
    assert model == server.served_name
    assert chat == encode(chat_prompt(HI)) and no_think == encode(chat_prompt(HI, enable_thinking=False))
    assert text_ids == encode("ab}")  # no special token added in front
    assert decoded == chat_prompt(HI)  # special tokens kept
    # without /v1/models the native /get_model_info names it
    server.models_route = False
    assert run(url, lambda engine: asyncio.sleep(0, engine.model)) == server.model_path
    assert run(url, lambda engine: asyncio.sleep(0, engine.model), model="configured") == "configured"


def test_generate_sends_sglang_native_request_and_reads_ids_and_usage(fake) -> None:
    server, url = fake

    async def scenario(engine):
        prompt = await engine.tokenize_chat(HI)
        first = await engine.generate(prompt, 6, Sampling(temperature=0.7, top_p=0.9, seed=42), "req-b0-decode0")
        second = await engine.generate(prompt + first.token_ids, 4, Sampling(seed=42), "req-b0-decode1")
        whole = await engine.generate(prompt, 10, Sampling(seed=42), "req-b1-decode0")
        other = await engine.generate(prompt, 10, Sampling(seed=43), "req-b2-decode0")
        return prompt, first, second, whole, other

    prompt, first, second, whole, other = run(url, scenario)
    body = server.calls[0]
    assert body == {"input_ids": prompt, "rid": "req-b0-decode0", "stream": False,
                    "sampling_params": {"max_new_tokens": 6, "temperature": 0.7, "top_p": 0.9, "sampling_seed": 42,
                                        "skip_special_tokens": False}}
    assert server.calls[1]["sampling_params"] == {"max_new_tokens": 4, "sampling_seed": 42,
                                                  "skip_special_tokens": False}  # unset values left out
    assert first.token_ids == [token_at(42, len(prompt) + k) for k in range(6)]
    assert (first.finish_reason, first.prompt_tokens, first.completion_tokens) == ("length", len(prompt), 6)
    assert first.text == "".join(chr(t - 3) for t in first.token_ids)
    # the same seed decodes the same branch whatever the cut; another seed decodes another one
    assert first.token_ids + second.token_ids == whole.token_ids and other.token_ids != whole.token_ids
    # radix cache: the chat-template call cached the prompt but its last token; the continuation hits
    # everything the first segment left behind (prompt + its 6 tokens) but the last token
    assert first.cached_tokens == len(prompt) - 1
    assert second.cached_tokens == len(prompt) + 6 - 1 and second.prompt_tokens == len(prompt) + 6
    assert server.counters["/generate"] == {"prompt": 4 * len(prompt) + 6, "generation": 30, "requests": 4,
                                            "cached": first.cached_tokens + second.cached_tokens
                                            + whole.cached_tokens + other.cached_tokens}


def test_finish_reasons_stop_on_eos_unless_ignored(fake) -> None:
    server, url = fake

    async def scenario(engine):
        prompt = await engine.tokenize_text("0123456789")
        server.eos_at = len(prompt) + 3  # the 4th new token is EOS
        stopped = await engine.generate(prompt, 10, Sampling(seed=1), "s")
        ignored = await engine.generate(prompt, 10, Sampling(seed=1, ignore_eos=True), "i")
        short = await engine.generate(prompt, 3, Sampling(seed=1), "l")
        return stopped, ignored, short

    stopped, ignored, short = run(url, scenario)
    assert stopped.finish_reason == "stop" and stopped.token_ids[-1] == EOS and stopped.completion_tokens == 4
    assert stopped.text == "".join(chr(t - 3) for t in stopped.token_ids[:-1])  # SGLang trims the stop token
    assert server.calls[1]["sampling_params"]["ignore_eos"] is True
    assert ignored.finish_reason == "length" and len(ignored.token_ids) == 10 and EOS not in ignored.token_ids
    assert short.finish_reason == "length" and short.token_ids == stopped.token_ids[:3]


def test_cancelling_a_call_sends_abort_request_and_the_engine_stops(fake) -> None:
    server, url = fake
    server.token_delay_s = 0.01  # 4000 tokens: 40 s of work

    async def scenario(engine):
        prompt = await engine.tokenize_text("long job")
        task = asyncio.create_task(engine.generate(prompt, 4000, Sampling(seed=5), "ep-b3-decode7"))
        while "ep-b3-decode7" not in server.in_flight:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while server.in_flight:
            assert time.monotonic() - cancelled_at < 1.0, "the engine is still decoding"
            await asyncio.sleep(0.01)
        return cancelled_at, time.monotonic()

    cancelled_at, idle_at = run(url, scenario)
    assert [rid for rid, _ in server.abort_requests] == ["ep-b3-decode7"]
    assert server.aborted == ["ep-b3-decode7"] and "ep-b3-decode7" not in server.finished
    assert idle_at - cancelled_at < 1.0 < server.disconnect_check_s  # the abort, not the disconnect check
    assert 0 < server.counters["/generate"]["generation"] < 4000


def test_engine_errors_are_mapped(fake) -> None:
    server, url = fake

    async def expect(engine, cls, call, match):
        with pytest.raises(cls, match=match) as info:
            await call
        return info.value

    async def scenario(engine):
        prompt = [5, 6, 7]
        too_long = await expect(engine, EngineRejected, engine.generate(prompt, 5000, Sampling(), "a"),
                                "maximum context length")
        server.inject.append((500, b'{"object": "error", "message": "scheduler died", "code": 500}'))
        crashed = await expect(engine, EngineError, engine.generate(prompt, 4, Sampling(), "b"), "scheduler died")
        server.inject.append((200, b"<html>proxy</html>"))
        await expect(engine, EngineGarbage, engine.generate(prompt, 4, Sampling(), "c"), "not JSON")
        server.inject.append((200, json.dumps({"text": "x", "meta_info": {"prompt_tokens": 3}}).encode()))
        await expect(engine, EngineGarbage, engine.generate(prompt, 4, Sampling(), "d"), "output_ids")
        server.inject.append((200, json.dumps({"text": "", "output_ids": [], "meta_info": {
            "id": "e", "finish_reason": {"type": "abort", "message": "out of memory"}, "prompt_tokens": 3,
            "completion_tokens": 0, "cached_tokens": 0}}).encode()))
        aborted = await expect(engine, EngineError, engine.generate(prompt, 4, Sampling(), "e"), "out of memory")
        server.prompt_token_ids = False
        await expect(engine, EngineGarbage, engine.tokenize_chat(HI), "return_prompt_token_ids")
        return too_long, crashed, aborted

    too_long, crashed, aborted = run(url, scenario)
    assert http_error(too_long).status == 400 and type(crashed) is EngineError and http_error(crashed).status == 502
    assert type(aborted) is EngineError


def test_refused_connection_and_timeouts(fake) -> None:
    server, url = fake
    dead = f"http://127.0.0.1:{free_port()}"

    async def down():
        engine = SGLangHTTPEngine(dead, "m")
        try:
            assert await engine.health() is False
            with pytest.raises(EngineDown, match="unreachable"):
                await engine.generate([1, 2], 4, Sampling(), "x")
            with pytest.raises(EngineDown):
                await engine.tokenize_text("a")
        finally:
            await engine.close()

    asyncio.run(down())
    server.token_delay_s = 0.02

    async def slow(engine):
        assert await engine.health() is True
        start = time.monotonic()
        with pytest.raises(EngineTimeout, match="timed out waiting"):
            await engine.generate([5, 6, 7], 1000, Sampling(), "slow-1")
        while server.in_flight:  # the timed-out call was aborted too
            assert time.monotonic() - start < 2.0
            await asyncio.sleep(0.01)
        return time.monotonic() - start

    assert run(url, slow, timeout_s=0.4) < 2.0
    assert [rid for rid, _ in server.abort_requests] == ["slow-1"] and server.aborted == ["slow-1"]


def test_concurrent_calls_share_one_client(fake) -> None:
    server, url = fake
    server.token_delay_s = 0.002

    async def scenario(engine):
        prompt = await engine.tokenize_text("shared prefix")
        calls = [engine.generate(prompt, 20, Sampling(seed=s), f"c{s}") for s in range(8)]
        return prompt, await asyncio.gather(*calls)

    prompt, results = run(url, scenario)
    for seed, result in enumerate(results):
        assert result.token_ids == [token_at(seed, len(prompt) + k) for k in range(20)]
    assert sorted(server.finished) == sorted(f"c{s}" for s in range(8)) and not server.in_flight


def test_passthrough_uses_the_openai_routes(fake) -> None:
    _, url = fake

    async def scenario(engine):
        body = {"model": engine.model, "messages": HI, "max_tokens": 5, "seed": 2, "ignore_eos": True}
        data = await engine.passthrough("/v1/chat/completions", body)
        chunks = [c async for c in await engine.passthrough_stream("/v1/chat/completions", {**body, "stream": True})]
        text = await engine.passthrough("/v1/completions", {"model": engine.model, "prompt": "ab", "max_tokens": 3})
        with pytest.raises(EngineRejected, match="streaming"):
            await engine.passthrough_stream("/v1/chat/completions",
                                            {**body, "stream": True, "return_prompt_token_ids": True})
        return data, b"".join(chunks).decode(), text

    data, stream, text = run(url, scenario)
    assert data["usage"]["completion_tokens"] == 5 and data["choices"][0]["message"]["content"]
    events = [line[len("data: "):] for line in stream.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and len(events) >= 3
    streamed = "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1])
    assert streamed == data["choices"][0]["message"]["content"]  # same seed, same tokens
    assert text["usage"]["completion_tokens"] == 3 and isinstance(text["choices"][0]["text"], str)


def test_fake_streams_generate_like_sglang_and_drops_a_disconnected_stream(fake) -> None:
    """The fake's own streaming /generate (SSE, cumulative ids, [DONE]); the adapter itself does not stream."""
    server, url = fake
    body = {"input_ids": [5, 6, 7], "rid": "st", "stream": True,
            "sampling_params": {"max_new_tokens": 4, "sampling_seed": 9}}
    with httpx.stream("POST", url + "/generate", json=body, timeout=10) as response:
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    outs = [json.loads(e) for e in events[:-1]]
    assert [o["output_ids"] for o in outs] == [[token_at(9, 3 + k) for k in range(n)] for n in range(1, 5)]
    assert outs[-1]["meta_info"]["finish_reason"] == {"type": "length", "length": 4}
    server.token_delay_s = 0.01
    with httpx.stream("POST", url + "/generate", json={**body, "rid": "gone", "sampling_params": {
            "max_new_tokens": 2000}}, timeout=10) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 2
    while "gone" in server.in_flight:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert server.aborted == ["gone"]
