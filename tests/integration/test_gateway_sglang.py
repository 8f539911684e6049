"""The real gateway with `engine: sglang` in front of the schema-following fake SGLang server.

SGLang does not install on CPU-only machines, so the engine is tests/unit/sglang_fake.py on a real socket;
everything else is the real stack: `build_app(GatewayConfig(engine="sglang", ...))`, the SGLang adapter,
the executor and the official `openai` client. Checked: cmc and sc episodes (streaming and not) whose
usage equals the fake's own `/generate` counters, continuation calls hitting the radix cache, controller
`none` passed through to SGLang's OpenAI route, and a client that goes away aborting the engine's work
through `/abort_request`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")
openai = pytest.importorskip("openai", reason="needs the openai client (dev extra)")

import httpx  # noqa: E402
from autotts.engines.factory import make_engine  # noqa: E402
from autotts.engines.sglang_http import SGLangHTTPEngine  # noqa: E402
from autotts.server.app import build_app  # noqa: E402
from autotts.server.background import BackgroundServer  # noqa: E402
from autotts.server.config import GatewayConfig  # noqa: E402

from tests.unit.sglang_fake import FakeSGLang, chat_prompt, encode  # noqa: E402

pytestmark = pytest.mark.timeout(300)

QUESTION = [{"role": "user", "content": "Add the first twenty primes and give the sum."}]


@pytest.fixture
def sglang() -> Iterator[tuple[FakeSGLang, str]]:
    fake = FakeSGLang(disconnect_check_s=30.0)
    with BackgroundServer(fake.app) as url:
        yield fake, url


@pytest.fixture
def gateway(sglang) -> Iterator[tuple[FakeSGLang, str, str, openai.OpenAI]]:
    """(fake engine, its URL, the gateway's URL, an `openai` client of the gateway)."""
    fake, url = sglang
    config = GatewayConfig.load(env={}, overrides={"engine": "sglang", "engine_url": url, "segment_tokens": 32,
                                                   "probe_max_tokens": 4})
    with BackgroundServer(build_app(config)) as gw:
        yield fake, url, gw, openai.OpenAI(base_url=gw + "/v1", api_key="unused", max_retries=0)


def test_the_factory_builds_the_sglang_adapter(sglang) -> None:
    _, url = sglang
    engine = make_engine(GatewayConfig.load(env={}, overrides={"engine": "sglang", "engine_url": url}))
    assert isinstance(engine, SGLangHTTPEngine) and engine.url == url


def test_cmc_episode_usage_equals_the_engines_counters(gateway) -> None:
    fake, url, _, client = gateway
    response = client.chat.completions.create(model="org/fake-sglang", messages=QUESTION, max_tokens=256, seed=3,
                                              extra_body={"tts": {"controller": "cmc", "beta": 0.2}})
    tts, usage, engine = response.model_extra["tts"], response.usage, fake.counters["/generate"]
    assert tts["controller"] == "cmc" and tts["branches"] >= 2 and tts["rounds"] >= 2
    assert usage.prompt_tokens == engine["prompt"]
    assert usage.completion_tokens == engine["generation"] == tts["decode_tokens"] + tts["probe_tokens"]
    assert usage.prompt_tokens_details.cached_tokens == engine["cached"]
    assert tts["engine_calls"] == engine["requests"] == len(fake.calls) == len(fake.finished) - 1  # - template
    # every call was a native /generate on the templated prompt; continuations and probes hit the cache
    prompt = encode(chat_prompt(QUESTION))
    assert all(call["input_ids"][:len(prompt)] == prompt and call["stream"] is False for call in fake.calls)
    assert engine["cached"] >= 0.8 * engine["prompt"]
    assert len({call["rid"] for call in fake.calls}) == len(fake.calls)
    # the engine's own Prometheus counters: the episode plus the one chat-template call
    text = httpx.get(url + "/metrics", timeout=10).text
    generated = float(re.search(r"^sglang:generation_tokens_total\{[^}]*\} (\S+)$", text, re.M).group(1))
    assert generated == engine["generation"] + fake.counters["/v1/chat/completions"]["generation"]
    assert isinstance(response.choices[0].message.content, str)


def test_sc_streams_progress_and_usage(gateway) -> None:
    fake, _, _, client = gateway
    fake.eos_at = len(encode(chat_prompt(QUESTION))) + 40  # the 41st new token of every branch is EOS
    stream = client.chat.completions.create(model="org/fake-sglang", messages=QUESTION, max_tokens=200, seed=7,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"tts": {"controller": "sc", "params": {"n": 4}}})
    chunks = list(stream)
    progress = [c.model_extra["tts"]["progress"] for c in chunks if "progress" in (c.model_extra.get("tts") or {})]
    assert progress and progress[-1]["engine_calls"] > 0
    engine = fake.counters["/generate"]
    assert chunks[-1].usage.completion_tokens == engine["generation"]
    assert chunks[-1].usage.prompt_tokens == engine["prompt"]
    # sc decodes each of its four branches in one call, which SGLang ends on EOS: 41 tokens, EOS included
    decode_calls = [c for c in fake.calls if c["sampling_params"]["max_new_tokens"] == 200]
    assert len(decode_calls) == 4 and len({c["sampling_params"]["sampling_seed"] for c in decode_calls}) == 4
    report = chunks[-1].model_extra["tts"]
    assert report["decode_tokens"] == 4 * 41 and report["engine_calls"] == len(fake.calls)


def test_controller_none_is_passed_through_to_sglang(gateway) -> None:
    fake, _, _, client = gateway
    kwargs = {"model": "org/fake-sglang", "messages": QUESTION, "max_tokens": 6, "seed": 1,
              "extra_body": {"tts": {"controller": "none"}, "ignore_eos": True}}
    response = client.chat.completions.create(**kwargs)
    assert response.usage.completion_tokens == 6 and "tts" not in (response.model_extra or {})
    assert fake.counters["/v1/chat/completions"]["generation"] == 6 and "/generate" not in fake.counters
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**kwargs, stream=True)
                       if c.choices)
    assert streamed == response.choices[0].message.content  # same seed, same tokens, through SSE


def test_client_disconnect_aborts_the_engine_work(gateway) -> None:
    fake, _, gw, _ = gateway
    fake.token_delay_s = 0.04  # a 32-token segment takes 1.3 s: only an abort ends it within 0.5 s
    body = {"model": "org/fake-sglang", "seed": 5, "max_tokens": 4000, "stream": True, "messages": QUESTION,
            "tts": {"controller": "parallel_probe", "params": {"n": 3}}}
    with httpx.Client(base_url=gw, timeout=60) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            seen = 0
            while seen < 2:
                seen += '"progress"' in next(lines)
            deadline = time.monotonic() + 10
            while not fake.in_flight:
                assert time.monotonic() < deadline, "no engine call in flight"
                time.sleep(0.005)
            running = set(fake.in_flight)
            closed = time.monotonic()
        deadline = closed + 0.5
        while fake.in_flight:
            assert time.monotonic() < deadline, f"still decoding {sorted(fake.in_flight)}"
            time.sleep(0.01)
        stopped = time.monotonic() - closed
        time.sleep(0.3)
        text = client.get("/metrics").text
    aborted_rids = {rid for rid, _ in fake.abort_requests}
    assert running <= aborted_rids and running <= set(fake.aborted)
    assert stopped < 0.5 and fake.disconnect_check_s > 1
    assert re.search(r'autotts_requests_total\{[^}]*status="cancelled"[^}]*\} 1\.0', text), text[-2000:]
