"""The in-process engine (`vllm-inproc`: vLLM AsyncLLM inside the gateway): an episode, usage, cancellation.

Needs vllm importable by the interpreter running pytest (skip with a reason otherwise; CI=true fails).
The HTTP engine has the fuller checks (tests/integration/test_vllm_gateway.py); this one shows the same
gateway runs on the in-process adapter, with prefix-cache hits and aborts on cancellation.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import require_modules

require_modules("vllm", "fastapi", reason="pip install 'autotts[vllm,serve]' (see scripts/install-dev.sh)")

import httpx  # noqa: E402
from autotts.engines.base import Sampling  # noqa: E402
from autotts.server.app import build_app  # noqa: E402
from autotts.server.config import GatewayConfig  # noqa: E402

pytestmark = pytest.mark.timeout(900)


def test_gateway_on_the_in_process_engine(tiny_model_dir) -> None:
    config = GatewayConfig.load(overrides={"engine": "vllm-inproc", "model": str(tiny_model_dir),
                                           "served_model_name": "tiny", "segment_tokens": 32,
                                           "probe_max_tokens": 4, "ignore_eos": True})
    app = build_app(config)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw",
                                                                       timeout=600) as client:
            response = await client.post("/v1/chat/completions", json={
                "model": "tiny", "seed": 2, "max_tokens": 96, "messages": [{"role": "user", "content": "2+3? " * 40}],
                "tts": {"controller": "cmc", "beta": 0.0}})
            engine = app.state.gateway.engine
            # cancellation aborts the request inside the engine
            prompt = await engine.tokenize_chat([{"role": "user", "content": "count"}])
            task = asyncio.create_task(engine.generate(prompt, 4000, Sampling(ignore_eos=True, seed=1), "long-1"))
            while engine.unfinished() == 0:
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(20):
                if engine.unfinished() == 0:
                    break
                await asyncio.sleep(0.05)
            return response, engine.unfinished(), engine.capabilities.kv_block_size

    response, unfinished, block = asyncio.run(go())
    assert block == 32  # the engine's resolved cache config (the adapter's default block_size)
    assert response.status_code == 200, response.text
    body = response.json()
    usage, tts = body["usage"], body["tts"]
    assert tts["engine"] == "vllm-inproc" and tts["branches"] >= 2 and tts["rounds"] >= 2
    assert usage["completion_tokens"] == tts["decode_tokens"] + tts["probe_tokens"] > 0
    assert 0 < usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"]
    assert tts["decode_tokens"] % 32 == 0  # whole segments (ignore_eos: no early stop)
    assert unfinished == 0
