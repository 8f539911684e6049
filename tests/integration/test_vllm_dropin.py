"""The drop-in promise against real vLLM (CPU, the tiny model): `content` is the winning branch's own text,
token for token, chat and completions, streaming and not; the answer sentence on request; the judge is a
real engine call; a prompt and segments full of CJK text and emoji never break a character or leak the
prompt (vLLM's own text does, for a token-ID prompt that ends inside a character). Scripted engines:
tests/unit/test_dropin.py."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import vllm_metrics

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")
openai = pytest.importorskip("openai", reason="needs the openai SDK (dev extra)")

from autotts.server.app import build_app  # noqa: E402
from autotts.server.background import BackgroundServer  # noqa: E402
from autotts.server.config import GatewayConfig  # noqa: E402

CJK = "请计算：三加四等于多少？🎉🧮 答案是几？日本語のテキスト、한국어 텍스트 😀👍🏽"


@pytest.fixture(scope="module")
def gateway(vllm_server):
    cfg = GatewayConfig.load(overrides={"engine": "vllm", "engine_url": vllm_server, "segment_tokens": 8,
                                        "probe_max_tokens": 4, "temperature": 1.0})
    with BackgroundServer(build_app(cfg)) as url:
        yield url


def detokenize(vllm: str, ids: list[int]) -> str:
    return httpx.post(f"{vllm}/detokenize", json={"model": "tiny", "tokens": ids}, timeout=30).json()["prompt"]


def sse(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


CMC = {"controller": "cmc", "beta": 0.0, "params": {"max_steps": 6}}


@pytest.mark.parametrize("thinking", [True, False])
def test_chat_content_is_the_detokenised_final_text_of_the_winner(gateway, vllm_server, thinking) -> None:
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="none")
    kwargs = {"model": "tiny", "seed": 11, "max_tokens": 48, "messages": [{"role": "user", "content": "3 + 4?"}],
              "extra_body": {"tts": CMC, "return_token_ids": True,
                             "chat_template_kwargs": {"enable_thinking": thinking}}}
    response = client.chat.completions.create(**kwargs)
    tts, choice = response.model_extra["tts"], response.choices[0]
    ids = choice.model_extra["token_ids"]
    assert tts["winner_branch"] is not None and len(ids) > 0
    think_end = httpx.post(f"{vllm_server}/tokenize", json={"model": "tiny", "prompt": "</think>",
                                                            "add_special_tokens": False}).json()["tokens"]
    if thinking and think_end[0] not in ids:  # still thinking at max_tokens: reasoning holds it all
        assert choice.message.model_extra["reasoning_content"] == detokenize(vllm_server, ids)
        assert choice.message.content == f"The answer is $\\boxed{{{tts['answer']}}}$."
        assert tts["response"]["mode"] == "answer"
    else:
        cut = ids.index(think_end[0]) + 1 if thinking and think_end[0] in ids else 0
        assert choice.message.content == detokenize(vllm_server, ids[cut:])  # token for token
    stream = client.chat.completions.create(**kwargs, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == choice.message.content  # same seed, same episode, same text as deltas


def test_completions_content_and_the_answer_sentence(gateway, vllm_server) -> None:
    body = {"model": "tiny", "prompt": "Question: 3 + 4? Answer:", "max_tokens": 40, "seed": 3,
            "return_token_ids": True, "tts": CMC}
    data = httpx.post(f"{gateway}/v1/completions", json=body, timeout=300).json()
    choice = data["choices"][0]
    assert choice["text"] == detokenize(vllm_server, choice["token_ids"])  # the whole text, as vLLM's own
    raw = httpx.post(f"{gateway}/v1/completions", json={**body, "stream": True}, timeout=300)
    assert "".join(c["choices"][0]["text"] for c in sse(raw) if c.get("choices")) == choice["text"]
    short = httpx.post(f"{gateway}/v1/completions", json={**body, "tts": {**CMC, "response": "answer"}},
                       timeout=300).json()
    assert short["choices"][0]["text"] == f"The answer is $\\boxed{{{short['tts']['answer']}}}$."
    assert short["tts"]["response"] == {"mode": "answer"}


def test_the_judge_is_a_real_engine_call(gateway, vllm_server) -> None:
    before = vllm_metrics(vllm_server).get("vllm:request_success_total", 0)
    body = {"model": "tiny", "seed": 5, "max_tokens": 16, "messages": [{"role": "user", "content": "2 + 2?"}],
            "tts": {"controller": "sc:n=4", "aggregator": "judge"}}
    data = httpx.post(f"{gateway}/v1/chat/completions", json=body, timeout=300).json()
    tts = data["tts"]
    assert tts["aggregator"] == "judge" and "judge_reply" in tts["vote"]
    distinct = len(tts["vote"]["clusters"])
    calls = vllm_metrics(vllm_server).get("vllm:request_success_total", 0) - before
    assert tts["engine_calls"] == calls  # the branches, their forced probes and (if needed) the judge
    assert tts["final_calls"] == (1 if distinct > 1 else 0)  # the judge, when there is a choice to make


def _token_prompt(vllm: str, text: str) -> list[int]:
    """Token IDs of `text` cut one token short of its end, inside a multi-byte character if there is one."""
    ids = httpx.post(f"{vllm}/tokenize", json={"model": "tiny", "prompt": text, "add_special_tokens": False}).json()
    tokens = ids["tokens"]
    for cut in range(len(tokens) - 1, 0, -1):
        if "\ufffd" in detokenize(vllm, tokens[:cut]):
            return tokens[:cut]
    return tokens


def test_cjk_and_emoji_never_break_or_leak(gateway, vllm_server) -> None:
    prompt_ids = _token_prompt(vllm_server, CJK * 3)
    prompt_text = detokenize(vllm_server, prompt_ids)
    probe = httpx.post(f"{vllm_server}/v1/completions", timeout=120, json={
        "model": "tiny", "prompt": prompt_ids, "max_tokens": 4, "stream": True, "seed": 1})
    leaked = any(CJK[:6] in c["choices"][0]["text"] for c in sse(probe) if c.get("choices"))  # vLLM's open bug
    body = {"model": "tiny", "prompt": prompt_ids, "max_tokens": 30, "seed": 9, "return_token_ids": True,
            "tts": {"controller": "parallel_probe", "params": {"n": 3, "T": 2, "max_steps": 6}, "segment_tokens": 3}}
    data = httpx.post(f"{gateway}/v1/completions", json=body, timeout=300).json()
    text, ids = data["choices"][0]["text"], data["choices"][0]["token_ids"]
    events = sse(httpx.post(f"{gateway}/v1/completions", json={**body, "stream": True}, timeout=300))
    deltas = [c["choices"][0]["text"] for c in events if c.get("choices")]
    leaders = [str(c["tts"]["progress"]["leader"]) for c in events if "progress" in c.get("tts", {})]
    for piece in [*deltas, *leaders, text, data["tts"]["answer"]]:
        assert CJK[:6] not in piece and prompt_text[-8:] not in piece, (leaked, piece)  # no prompt text anywhere
    assert text == detokenize(vllm_server, ids)  # decoded from the IDs: broken only where the model's bytes are
    assert "".join(deltas) == text
