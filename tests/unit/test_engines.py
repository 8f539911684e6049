"""The engine seam on scripted engines (`MockEngine`): what the gateway does with each reply, failure and
declared capability.

Each test scripts one engine with a handler (request → reply) and runs the real app in process over
httpx's ASGI transport. The same failures from a real HTTP server: tests/integration/test_gateway_errors.py;
the adapters against real vLLM: tests/integration/test_vllm_gateway.py.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

from autotts.engines import (
    Capabilities,
    EngineDown,
    EngineRejected,
    FakeEngine,
    GenerateResult,
    MockEngine,
    Sampling,
    TokenBranchBackend,
    TokenEngine,
)
from autotts.engines.pool import ReplicaPool
from autotts.server.app import build_app
from autotts.server.config import GatewayConfig
from autotts.server.gateway import Gateway

from tests.helpers import run_app

SUFFIX = "</think>\\boxed{"
CONFIG = {"engine": "vllm", "engine_url": "http://unused", "segment_tokens": 8, "probe_max_tokens": 4,
          "probe_suffix": SUFFIX}


def ask(engine, body: dict, **config):
    cfg = GatewayConfig.load(overrides={**CONFIG, **config})

    async def go(client):
        return await client.post("/v1/chat/completions", json=body)

    return run_app(build_app(gateway=Gateway(cfg, engine=engine)), go)


def chat(question: str = "3 + 4?", **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}], "max_tokens": 64, **extra}


BRANCH = "x" * 20 + "\\boxed{7}"  # what every branch generates: 20 thinking tokens, then its answer


def arithmetic(request):
    """Probes answer 7; a branch continues `BRANCH` from where its prompt leaves off."""
    if request.prompt.endswith(SUFFIX):
        return "7}"
    return BRANCH[len(request.prompt.partition("<|assistant|>")[2]):]


def test_the_shipped_fakes_are_token_engines() -> None:  # MockEngine's doctest: tests/unit/test_doctests.py
    assert isinstance(MockEngine(arithmetic), TokenEngine) and isinstance(FakeEngine(), TokenEngine)


def test_scripted_replies_become_the_answer_and_the_usage() -> None:
    engine = MockEngine(arithmetic)
    response = ask(engine, chat(seed=3, tts={"controller": "sc", "params": {"n": 3}}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tts"]["answer"] == "7" and body["tts"]["branches"] == 3
    assert len(engine.calls) == 3  # sc reads each branch whole in one call; the box needs no probe
    assert len({c.sampling.seed for c in engine.calls}) == 3  # every branch samples with its own seed
    assert body["usage"]["completion_tokens"] == 3 * len(BRANCH)


def test_segments_continue_the_branch_and_probes_read_a_copy() -> None:
    engine = MockEngine(arithmetic)
    body = ask(engine, chat(seed=1, tts={"controller": "parallel_probe", "params": {"n": 2}})).json()
    assert body["tts"]["answer"] == "7"
    segments = [c for c in engine.calls if not c.prompt.endswith(SUFFIX)]
    probes = [c for c in engine.calls if c.prompt.endswith(SUFFIX)]
    assert segments and probes and all(c.max_tokens == 8 for c in segments)
    for probe in probes:  # the branch so far plus the suffix, never appended to the branch
        assert BRANCH.startswith(probe.prompt.partition("<|assistant|>")[2].removesuffix(SUFFIX))


@pytest.mark.parametrize("failure, status, code", [
    (EngineDown("engine at http://e unreachable"), 502, "engine_unavailable"),
    (EngineRejected("prompt longer than the context"), 400, "engine_rejected"),
])
def test_a_scripted_failure_is_the_mapped_openai_error(failure, status, code) -> None:
    def handler(request):
        raise failure

    response = ask(MockEngine(handler), chat(tts={"controller": "sc", "params": {"n": 2}}))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code and str(failure) in response.json()["error"]["message"]


def test_a_hanging_engine_is_a_504_and_every_call_is_cancelled() -> None:
    async def hang(request):
        await asyncio.sleep(60)

    engine = MockEngine(hang)
    response = ask(engine, chat(tts={"controller": "sc", "params": {"n": 2}}), request_timeout_s=0.2)
    assert response.status_code == 504 and response.json()["error"]["type"] == "timeout_error"
    assert engine.in_flight == 0 and len(engine.calls) == 2


def test_a_full_generate_result_is_taken_as_it_is() -> None:
    def handler(request):
        return GenerateResult(token_ids=list(b"\\boxed{5}"), text="\\boxed{5}", finish_reason="stop",
                              prompt_tokens=9, completion_tokens=2, cached_tokens=6)  # the engine's own counts

    async def go():
        backend = TokenBranchBackend(MockEngine(handler), [1, 2, 3], segment_tokens=8, probe_suffix_ids=[9],
                                     probe_max_tokens=2, max_branch_tokens=64, sampling=Sampling(), seed=0,
                                     request_id="r")
        backend.open(0)
        return await backend.decode(0, 1, True), backend.ledger

    units, ledger = asyncio.run(go())
    assert [(u.cost, u.answer, u.final) for u in units] == [(2, "5", True)]  # EOS: ends on its box
    assert (ledger.prompt_tokens, ledger.cached_tokens, ledger.decode_calls) == (9, 6, 1)


class Forwarding(MockEngine):
    """A scripted engine that also declares and implements OpenAI pass-through."""

    capabilities = Capabilities(passthrough=True)

    def __init__(self, url: str) -> None:
        super().__init__(arithmetic, url=url)
        self.forwarded: list[str] = []

    async def passthrough(self, path, body):
        self.forwarded.append(path)
        return {"object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}

    async def passthrough_stream(self, path, body):
        raise AssertionError("not streamed here")


@pytest.mark.parametrize("forwarding", [2, 1])
def test_controller_none_forwards_only_when_every_engine_declares_it(forwarding) -> None:
    engines = [Forwarding(f"http://e{i}") for i in range(forwarding)]
    engines += [MockEngine(arithmetic, url=f"http://m{i}") for i in range(2 - forwarding)]
    pool = ReplicaPool(engines)
    assert pool.capabilities.passthrough == (forwarding == 2)
    response = ask(pool, chat(model="tts-none"), engine_urls=[e.url for e in engines])
    assert response.status_code == 200, response.text
    forwarded = sum(len(e.forwarded) for e in engines if isinstance(e, Forwarding))
    if forwarding == 2:  # the engine's own answer, unchanged
        assert forwarded == 1 and "tts" not in response.json()
    else:  # no pass-through: controller none is one plain sample through the executor
        assert forwarded == 0 and response.json()["tts"]["branches"] == 1


def test_block_misfit_names_the_fitting_delta() -> None:
    from autotts.engines.base import block_misfit

    assert block_misfit(64, 32) is None and block_misfit(64, None) is None
    assert "; Δ = 32 or Δ = 64 fits" in block_misfit(40, 32)
    assert "; Δ = 32 fits" in block_misfit(8, 32) and "; Δ = 528 fits" in block_misfit(256, 528)


def test_a_probe_after_the_branch_closed_its_thinking_does_not_close_it_again():
    from autotts.engines.backends import probe_suffix_for

    suffix, close = [10, 11, 12, 13], [11]  # "\n", "</think>", "\n\n", "\\boxed{"
    assert probe_suffix_for([1, 2, 3], suffix, close) == suffix  # still thinking: the whole suffix
    assert probe_suffix_for([1, 11, 3], suffix, close) == [12, 13]  # closed: only what follows the close
    assert probe_suffix_for([1, 11, 3], suffix, []) == suffix  # no marker known: unchanged
    assert probe_suffix_for([1, 11, 3], [10, 13], close) == [10, 13]  # a suffix without a close: unchanged
    seen: list[str] = []

    def handler(request):
        if request.prompt.endswith("\\boxed{"):
            seen.append(request.prompt)
            return "5}"
        return "a</think>\nbcdefg" if "</think>" not in request.prompt[-40:] else "0123456789abcdef"

    async def go():
        engine = MockEngine(handler)
        backend = TokenBranchBackend(
            engine, [65], segment_tokens=16, probe_suffix_ids=await engine.tokenize_text("\n</think>\n\n\\boxed{"),
            probe_max_tokens=2, max_branch_tokens=64, sampling=Sampling(), seed=0, request_id="r",
            think_close_ids=await engine.tokenize_text("</think>"))
        backend.open(0)
        return await backend.decode(0, 1, True)

    units = asyncio.run(go())
    assert [u.answer for u in units] == ["5"]
    assert seen == ["Aa</think>\nbcdefg\n\n\\boxed{"]  # one </think>: the branch's own
