"""Engine failures over real HTTP: down, slow, garbage, refusing, crashing → OpenAI errors, never a hang.

The engine side is a small HTTP server speaking the vLLM endpoints the gateway uses (a fake at the HTTP
boundary: each mode breaks one thing); the gateway is the real app on uvicorn, called with httpx. After
every failure the gateway must still answer (/v1/models, /health) and record the error in /metrics.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.server.app import build_app
from autotts.server.background import BackgroundServer, free_port
from autotts.server.config import GatewayConfig
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

MODE = {"value": "ok"}


def fake_vllm() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fake"}]}

    @app.get("/health")
    async def health():
        return PlainTextResponse("")

    @app.post("/tokenize")
    async def tokenize(request: Request):
        return {"tokens": [1, 2, 3], "count": 3}

    @app.post("/detokenize")
    async def detokenize(request: Request):
        return {"prompt": "text"}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        mode = MODE["value"]
        if mode == "slow":
            await asyncio.sleep(30)
        if mode == "garbage":
            return PlainTextResponse("<html>502 bad gateway</html>")
        if mode == "missing_ids":
            return {"choices": [{"text": "x", "finish_reason": "length"}], "usage": {"prompt_tokens": 3,
                                                                                     "completion_tokens": 1}}
        if mode == "reject":
            return JSONResponse({"error": {"message": "This model's maximum context length is 8 tokens"}}, 400)
        if mode == "crash":
            return JSONResponse({"error": {"message": "CUDA error: device-side assert"}}, 500)
        n = body["max_tokens"]
        return {"choices": [{"text": "7}" if n < 8 else "a" * n, "token_ids": [5] * n, "finish_reason": "length"}],
                "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": n,
                          "prompt_tokens_details": {"cached_tokens": 0}}}

    return app


@pytest.fixture(scope="module")
def engine_url():
    with BackgroundServer(fake_vllm()) as url:
        yield url


BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 32, "seed": 1,
        "tts": {"controller": "cmc", "beta": 0.0, "segment_tokens": 16}}


@pytest.mark.parametrize("mode, status, code", [
    ("ok", 200, None),
    ("slow", 504, "timeout"),
    ("garbage", 502, "engine_bad_response"),
    ("missing_ids", 502, "engine_bad_response"),
    ("reject", 400, "engine_rejected"),
    ("crash", 502, "engine_error"),
])
def test_engine_failures_map_to_openai_errors(engine_url: str, mode: str, status: int, code: str | None) -> None:
    MODE["value"] = mode
    app = build_app(GatewayConfig.load(overrides={"engine": "vllm", "engine_url": engine_url,
                                                  "engine_timeout_s": 1.5}))
    with BackgroundServer(app) as gw:
        start = time.monotonic()
        response = httpx.post(gw + "/v1/chat/completions", json=BODY, timeout=30)
        took = time.monotonic() - start
        MODE["value"] = "ok"
        assert response.status_code == status, response.text
        if code:
            error = response.json()["error"]
            assert error["code"] == code and "Traceback" not in response.text
        assert took < 10
        assert httpx.post(gw + "/v1/chat/completions", json=BODY, timeout=30).status_code == 200  # still up
        metrics = httpx.get(gw + "/metrics").text
    if code:
        kind = {"timeout": "timeout", "engine_bad_response": "garbage", "engine_rejected": "rejected",
                "engine_error": "error"}[code]
        assert re.search(rf'autotts_engine_errors_total\{{engine="vllm",kind="{kind}"\}} 1\.0', metrics)


def test_engine_down_is_a_502_and_the_gateway_stays_up() -> None:
    app = build_app(GatewayConfig.load(overrides={"engine": "vllm", "engine_url": f"http://127.0.0.1:{free_port()}"}))
    with BackgroundServer(app) as gw:  # starts although the engine is not there
        response = httpx.post(gw + "/v1/chat/completions", json=BODY, timeout=30)
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "engine_unavailable"
        streamed = httpx.post(gw + "/v1/chat/completions", json={**BODY, "stream": True}, timeout=30)
        assert streamed.status_code == 502  # before any byte is sent: a real status, not an SSE error
        assert httpx.get(gw + "/health", timeout=10).status_code == 503
        assert httpx.get(gw + "/v1/models", timeout=10).status_code == 200
