"""Which of vLLM's routes the adapter decodes through, read from the server's OpenAPI schema.

A `httpx.MockTransport` plays the server (the HTTP boundary); the routes themselves are checked against a
real vLLM in tests/integration/test_vllm_generate_api.py.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from autotts.engines.base import Sampling
from autotts.engines.errors import EngineError
from autotts.engines.vllm_http import GENERATE, VLLMHTTPEngine

URL = "http://vllm.test"


def _engine(paths: list[str] | None, api: str = "auto") -> tuple[VLLMHTTPEngine, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/openapi.json":
            return httpx.Response(404) if paths is None else httpx.Response(200, json={"paths": {p: {} for p in paths}})
        if request.url.path == "/metrics":
            return httpx.Response(404)
        return httpx.Response(200, json={"choices": [{"token_ids": [5, 6], "finish_reason": "length"}],
                                         "usage": {"prompt_tokens": 3, "completion_tokens": 2}})

    client = httpx.AsyncClient(base_url=URL, transport=httpx.MockTransport(handle))
    return VLLMHTTPEngine(URL, "tiny", api=api, client=client), seen


def _generate(engine: VLLMHTTPEngine) -> None:
    async def go():
        await engine.start()
        await engine.generate([1, 2, 3], 2, Sampling(temperature=1.0, seed=3, ignore_eos=True), "r")
    asyncio.run(go())


@pytest.mark.parametrize(("paths", "route"), [(["/v1/completions", GENERATE], GENERATE),
                                              (["/v1/completions"], "/v1/completions"), (None, "/v1/completions")])
def test_auto_takes_the_token_endpoint_only_where_the_server_lists_it(paths, route):
    engine, seen = _engine(paths)
    _generate(engine)
    call = seen[-1]
    assert call.url.path == route
    body = json.loads(call.content)
    if route == GENERATE:
        assert body["token_ids"] == [1, 2, 3] and body["output_mode"] == "tokens"
        assert body["sampling_params"] == {"max_tokens": 2, "skip_special_tokens": False, "temperature": 1.0,
                                           "seed": 3, "ignore_eos": True, "detokenize": False}
    else:
        assert body["prompt"] == [1, 2, 3] and body["return_token_ids"] is True and "sampling_params" not in body


def test_asking_for_the_token_endpoint_where_there_is_none_names_the_flag():
    engine, _ = _engine(["/v1/completions"], api="generate")
    with pytest.raises(EngineError, match="--enable-scale-out"):
        _generate(engine)


def test_completions_never_asks_for_the_schema():
    engine, seen = _engine([GENERATE], api="completions")
    _generate(engine)
    assert "/openapi.json" not in [r.url.path for r in seen] and seen[-1].url.path == "/v1/completions"


def test_an_unknown_api_is_refused():
    with pytest.raises(ValueError, match="api must be one of"):
        VLLMHTTPEngine(URL, api="grpc")


def test_the_gateway_passes_its_engine_api_to_the_vllm_adapter_and_refuses_others():
    from autotts.engines.factory import make_engine
    from autotts.server.config import ConfigError, GatewayConfig

    engine = make_engine(GatewayConfig(engine="vllm", engine_url=URL, engine_api="generate"))
    assert isinstance(engine, VLLMHTTPEngine) and engine.api == "generate"
    asyncio.run(engine.close())
    with pytest.raises(ConfigError, match="engine_api"):
        GatewayConfig.load(None, overrides={"engine": "vllm", "engine_url": URL, "engine_api": "tokens"})
