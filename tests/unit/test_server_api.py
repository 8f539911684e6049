"""The HTTP API on the replay engine (and the in-process fake engine): shapes, precedence, caps, errors.

Runs the real FastAPI app in-process over httpx's ASGI transport. Real sockets, the official `openai`
client and SSE delivery are in tests/integration/test_gateway_openai.py; engine failures over HTTP in
tests/integration/test_gateway_errors.py.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

from autotts.engines.fake import FakeEngine
from autotts.offline.evaluate import bundled_data_dir
from autotts.offline.store import load_store
from autotts.server.app import build_app
from autotts.server.config import GatewayConfig
from autotts.server.gateway import Gateway

from tests.helpers import run_app

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"
QUESTIONS = load_store(STORE).questions


def call(requests, *, config: dict | None = None, engine=None):
    """Run `requests(client)` (an async function) against a fresh app; return its result."""
    cfg = GatewayConfig.load(overrides={"stores": [str(STORE)], **(config or {})})
    app = build_app(gateway=Gateway(cfg, engine=engine)) if engine else build_app(cfg)
    return run_app(app, requests)


def chat(question: str = QUESTIONS[0], **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}], **extra}


def test_chat_response_shape_usage_and_tts() -> None:
    async def go(c):
        return (await c.post("/v1/chat/completions", json=chat(seed=2, tts={"controller": "esc"}))).json()

    body = call(go)
    assert body["object"] == "chat.completion" and body["model"] == "Qwen3-8B"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == f"The answer is $\\boxed{{{body['tts']['answer']}}}$."  # replay: no text
    assert body["tts"]["response"] == {"mode": "answer", "reason": "replay stores keep no text"}
    assert "[replay] Qwen3-8B/aime25 question 0" in choice["message"]["reasoning_content"]
    usage, tts = body["usage"], body["tts"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == tts["decode_tokens"] == tts["tokens_spent"] > 0
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert tts["engine_calls"] == tts["branches"]  # esc: one full read per branch
    assert sum(tts["votes"].values()) == tts["branches"] and tts["seed"] == 2


@pytest.mark.parametrize("body_tts, header, model, want", [
    ({"controller": "asc"}, "esc", "tts-sc", ("asc", "body", "body")),
    (None, "esc", "tts-sc", ("esc", "header", "header")),
    (None, "tts-parallel-probe", "tts-sc", ("parallel_probe", "header", "tts-parallel-probe")),
    (None, None, "tts-sc", ("sc", "model", "tts-sc")),
    (None, None, "qwen3-8b@asc:n=8", ("asc", "model", "model")),
    ({"beta": 0.2}, None, None, ("cmc", "default", "default")),
    (None, None, None, ("cmc", "default", "default")),
])
def test_controller_precedence(body_tts, header, model, want) -> None:
    async def go(c):
        body = chat(**({"tts": body_tts} if body_tts else {}), **({"model": model} if model else {}))
        return (await c.post("/v1/chat/completions", json=body,
                             headers={"X-TTS-Controller": header} if header else {})).json()

    tts = call(go)["tts"]
    assert (tts["controller"], tts["source"], tts["arm"]) == want
    if model == "qwen3-8b@asc:n=8":
        assert tts["spec"] == "asc:n=8"
    if body_tts == {"beta": 0.2}:
        assert tts["beta"] == 0.2 and tts["spec"] == "cmc:beta=0.2"


def test_completions_n_and_models_and_health() -> None:
    async def go(c):
        completion = (await c.post("/v1/completions", json={"prompt": QUESTIONS[4], "n": 2, "seed": 7,
                                                            "model": "tts-sc"})).json()
        return completion, (await c.get("/v1/models")).json(), (await c.get("/health")).json()

    completion, models, health = call(go)
    assert completion["object"] == "text_completion" and len(completion["choices"]) == 2
    episodes = completion["tts"]["episodes"]
    assert [e["seed"] for e in episodes] == [7, 8]
    sentences = [f"The answer is $\\boxed{{{e['answer']}}}$." for e in episodes]  # replay stores keep no text
    assert [c["text"] for c in completion["choices"]] == sentences
    assert completion["usage"]["completion_tokens"] == sum(e["decode_tokens"] for e in episodes)
    assert completion["tts"]["branches"] == 128
    ids = [m["id"] for m in models["data"]]
    assert "Qwen3-8B" in ids and "tts-cmc" in ids
    assert health["status"] == "ok"


def test_streaming_chunks_progress_answer_usage() -> None:
    async def go(c):
        body = chat(QUESTIONS[9], stream=True, stream_options={"include_usage": True},
                    tts={"controller": "cmc", "beta": 0.5})
        streamed = (await c.post("/v1/chat/completions", json=body)).text
        plain = (await c.post("/v1/chat/completions", json={**body, "stream": False})).json()
        return streamed, plain

    streamed, plain = call(go)
    events = [line[len("data: "):] for line in streamed.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    progress = [c["tts"]["progress"] for c in chunks if "progress" in c.get("tts", {})]
    assert len(progress) == plain["tts"]["rounds"] > 1  # one per round, before the answer
    assert [p["round"] for p in progress] == list(range(1, len(progress) + 1))
    assert progress[-1]["tokens"] == plain["tts"]["tokens_spent"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    content = "".join(d.get("content") or "" for d in deltas)
    assert content == plain["choices"][0]["message"]["content"]
    assert any("reasoning_content" in d for d in deltas)
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and content == f"The answer is $\\boxed{{{finish[0]['tts']['answer']}}}$."
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


def test_token_budget_from_the_request() -> None:
    async def go(c):
        body = chat(QUESTIONS[1], tts={"controller": "sc", "max_total_tokens": 30_000})
        return (await c.post("/v1/chat/completions", json=body)).json()

    body = call(go)
    assert body["tts"]["budget_exhausted"] and body["choices"][0]["finish_reason"] == "length"
    assert body["tts"]["tokens_spent"] >= 30_000 and body["tts"]["branches"] < 64


@pytest.mark.parametrize("kwargs, status, code, param", [
    ({"content": b'{"messages": [', "headers": {"content-type": "application/json"}}, 400, "invalid_request", None),
    ({"json": {"messages": "hi"}}, 400, "invalid_request", "messages"),
    ({"json": chat(tts={"controller": "nope"})}, 400, "invalid_request", "tts.controller"),
    ({"json": chat(tts={"controller": "/etc/passwd"})}, 400, "invalid_request", "tts.controller"),
    ({"json": chat(tts={"controller": "cmc", "beta": 1.5})}, 400, "invalid_request", "tts.beta"),
    ({"json": chat(tts={"controller": "sc", "beta": 0.5})}, 400, "invalid_request", "tts.beta"),
    ({"json": chat(tts={"controller": "asc", "params": {"n": "many"}})}, 400, "invalid_request", "tts.controller"),
    ({"json": chat(tts={"controller": "sc", "colour": "red"})}, 400, "invalid_request", "tts.colour"),
    ({"json": chat(n=5)}, 400, "invalid_request", "n"),
    ({"json": chat(max_tokens=10**6)}, 400, "invalid_request", "max_tokens"),
    ({"json": chat(tts={"max_total_tokens": 10**9})}, 400, "invalid_request", "tts.max_total_tokens"),
    ({"json": chat(model="gpt-5")}, 404, "model_not_found", "model"),
    ({"json": chat("What is 2+2?")}, 400, "unknown_question", "messages"),
    ({"json": chat(), "headers": {"X-TTS-Controller": "cmc:beta=9"}}, 400, "invalid_request", "X-TTS-Controller"),
])
def test_bad_input_is_an_openai_error_and_the_gateway_stays_up(kwargs, status, code, param) -> None:
    async def go(c):
        bad = await c.post("/v1/chat/completions", **kwargs)
        good = await c.post("/v1/chat/completions", json=chat(tts={"controller": "esc"}))
        return bad, good, (await c.get("/metrics")).text

    bad, good, metrics = call(go)
    assert bad.status_code == status
    error = bad.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"]) == (code, param), error
    assert "Traceback" not in bad.text and error["message"]
    assert good.status_code == 200
    assert re.search(rf'autotts_requests_total\{{[^}}]*status="{status}"[^}}]*\}} 1\.0', metrics)


def test_concurrency_cap_is_a_429() -> None:
    engine = FakeEngine(delay_s=0.3)
    config = {"engine": "vllm", "engine_url": "http://unused", "max_concurrent": 1, "segment_tokens": 16,
              "probe_max_tokens": 2}

    async def go(c):
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 32, "tts": {"controller": "sc",
                                                                                          "params": {"n": 2}}}
        return await asyncio.gather(c.post("/v1/chat/completions", json=body),
                                    c.post("/v1/chat/completions", json=body))

    first, second = call(go, config=config, engine=engine)
    assert sorted([first.status_code, second.status_code]) == [200, 429]
    refused = first if first.status_code == 429 else second
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_controller_none_on_replay_is_one_sample() -> None:
    async def go(c):
        return (await c.post("/v1/chat/completions", json=chat(model="tts-none", seed=3))).json()

    tts = call(go)["tts"]
    assert (tts["controller"], tts["branches"], tts["rounds"]) == ("none", 1, 2)  # open + read, then answer


def test_completions_stream() -> None:
    async def go(c):
        body = {"prompt": QUESTIONS[2], "stream": True, "seed": 1, "tts": {"controller": "asc"}}
        return (await c.post("/v1/completions", json=body)).text, \
            (await c.post("/v1/completions", json={**body, "stream": False})).json()

    streamed, plain = call(go)
    chunks = [json.loads(line[6:]) for line in streamed.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == plain["choices"][0]["text"]
    assert sum("progress" in c.get("tts", {}) for c in chunks) == plain["tts"]["rounds"]
