"""The gateway against real vLLM (CPU build, tiny random model, one server per session: conftest.vllm_server).

Checks the engine path end to end: which engine calls branching, continuing, probing and pruning make;
that the response's usage equals vLLM's own counters; that continue/probe calls hit vLLM's prefix cache
(`vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total` >= 0.8); that pruned branches and
disconnected clients leave nothing running (`vllm:num_requests_running` back to 0 within a second).
Replay-engine parity lives in test_gateway_parity.py; executor logic in tests/unit/test_server_executor.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.controllers import Branch, Continue, GeneratorController, Probe, Prune
from autotts.engines.backends import TokenBranchBackend
from autotts.engines.base import Sampling
from autotts.engines.vllm_http import VLLMHTTPEngine
from autotts.server.app import build_app
from autotts.server.background import BackgroundServer
from autotts.server.config import GatewayConfig
from autotts.server.executor import run_episode

from tests.conftest import vllm_metrics

pytestmark = pytest.mark.timeout(900)

SUFFIX = "\n</think>\n\n\\boxed{"
_WORDS = ["apple", "book", "train", "car", "river", "city", "price", "cost", "hour", "minute", "day", "week",
          "year", "red", "blue", "green", "small", "large"]


def question(tag: str, words: int = 120) -> str:
    """A prompt no earlier test sent (so cache hits come from this episode), about `words` words long."""
    return f"[{tag} {time.time_ns()}] " + " ".join(_WORDS[(i * 7) % len(_WORDS)] for i in range(words))


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after[name] - before.get(name, 0.0)


def wait_idle(url: str, within_s: float) -> float:
    """Seconds until vLLM reports no running request; fails after `within_s`."""
    start = time.monotonic()
    while vllm_metrics(url)["vllm:num_requests_running"] > 0:
        assert time.monotonic() - start < within_s, f"requests still running after {within_s} s"
        time.sleep(0.05)
    return time.monotonic() - start


class Recording:
    """A real engine, with every generate call recorded (prompt, max_tokens, id, timing, result)."""

    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    async def generate(self, prompt_ids, max_tokens, sampling, request_id):
        record = {"prompt": list(prompt_ids), "max_tokens": max_tokens, "id": request_id, "start": time.monotonic()}
        self.calls.append(record)
        record["result"] = await self.engine.generate(prompt_ids, max_tokens, sampling, request_id)
        record["end"] = time.monotonic()
        return record["result"]


class Scripted(GeneratorController):
    """Branch 2 → prune 0 and continue 1 by two segments → probe 1; snapshots vLLM metrics between steps."""

    name = "scripted"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url, self.snapshots = url, []

    def run(self, obs):
        self.snapshots.append(vllm_metrics(self.url))  # controller steps run in a worker thread
        yield [Branch(2, segments=1, probe=True)]
        self.snapshots.append(vllm_metrics(self.url))
        yield [Prune(0), Continue(1, segments=2, probe=True)]
        yield [Probe(1)]
        self.snapshots.append(vllm_metrics(self.url))
        return obs.branches[1].latest


def _scripted(vllm_server: str, overlap: str, delta_tokens: int, probe_tokens: int, text: str | None = None,
              api: str = "completions"):
    async def scenario():
        engine = Recording(VLLMHTTPEngine(vllm_server, "tiny", api=api))
        try:
            prompt = await engine.tokenize_chat([{"role": "user", "content": text or question("calls")}])
            suffix = await engine.tokenize_text(SUFFIX)
            backend = TokenBranchBackend(engine, prompt, segment_tokens=delta_tokens, probe_suffix_ids=suffix,
                                         probe_max_tokens=probe_tokens, max_branch_tokens=4096,
                                         sampling=Sampling(temperature=1.0, ignore_eos=True), seed=11,
                                         request_id="calls", overlap=overlap)
            controller = Scripted(vllm_server)
            before = vllm_metrics(vllm_server)
            outcome = await run_episode(controller, backend, question_id=0, question="q")
            return engine, prompt, suffix, backend, controller, before, outcome
        finally:
            await engine.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize(("overlap", "api"), [("off", "completions"), ("probe", "completions"), ("probe", "generate")])
def test_branch_continue_probe_prune_make_the_expected_engine_calls(vllm_server: str, overlap: str, api: str) -> None:
    """The same calls one after the other (``off``, main's way) and with a probe sent together with the next
    segment of its action (``probe``, the default), through either of vLLM's routes."""
    delta_tokens, probe_tokens = 32, 4
    engine, prompt, suffix, backend, controller, before, outcome = _scripted(vllm_server, overlap, delta_tokens,
                                                                              probe_tokens, api=api)
    idle_after = wait_idle(vllm_server, 1.0)
    b0, b1 = backend.tokens[0], backend.tokens[1]
    assert (len(b0), len(b1)) == (delta_tokens, 3 * delta_tokens)  # probe tokens are never appended
    calls = {c["id"]: c for c in engine.calls}
    expected = {  # id -> (prompt, max_tokens)
        "calls-b0-decode0": (prompt, delta_tokens),
        "calls-b0-probe1": (prompt + b0 + suffix, probe_tokens),
        "calls-b1-decode0": (prompt, delta_tokens),
        "calls-b1-probe1": (prompt + b1[:32] + suffix, probe_tokens),
        "calls-b1-decode2": (prompt + b1[:32], delta_tokens),
        "calls-b1-probe3": (prompt + b1[:64] + suffix, probe_tokens),
        "calls-b1-decode4": (prompt + b1[:64], delta_tokens),
        "calls-b1-probe5": (prompt + b1[:96] + suffix, probe_tokens),
        "calls-b1-probe6": (prompt + b1 + suffix, probe_tokens),  # the Probe(1) action
    }
    assert sorted(calls) == sorted(expected)
    for rid, (want_prompt, want_max) in expected.items():
        assert (calls[rid]["prompt"], calls[rid]["max_tokens"]) == (want_prompt, want_max), rid
    # the prune: branch 0 made no call after round 0 ended
    round0_end = max(calls[r]["end"] for r in ("calls-b0-probe1", "calls-b1-probe1"))
    assert all(c["start"] >= round0_end for rid, c in calls.items() if rid.startswith("calls-b1") and
               rid not in ("calls-b1-decode0", "calls-b1-probe1"))
    assert not any(c["start"] > round0_end for rid, c in calls.items() if rid.startswith("calls-b0"))
    obs = outcome.obs
    assert obs.branches[0].pruned and obs.branches[0].depth == 1 and len(obs.branches[0].answers) == 1
    assert obs.branches[1].depth == 3 and len(obs.branches[1].answers) == 4
    assert outcome.answer == obs.branches[1].answers[-1]
    # usage as the engine counted it, call by call and in its own counters
    after = controller.snapshots[-1]
    ledger = backend.ledger
    assert (ledger.decode_calls, ledger.probe_calls) == (4, 5)
    assert ledger.decode_tokens == 4 * delta_tokens and ledger.probe_tokens == 5 * probe_tokens
    assert ledger.prompt_tokens == sum(len(c["prompt"]) for c in engine.calls)
    assert delta(after, before, "vllm:prompt_tokens_total") == ledger.prompt_tokens
    assert delta(after, before, "vllm:generation_tokens_total") == ledger.completion_tokens
    assert delta(after, before, "vllm:prefix_cache_hits_total") == ledger.cached_tokens
    # continue/probe calls (rounds 1-2) hit the prefix cache
    start, end = controller.snapshots[1], controller.snapshots[2]
    queries = delta(end, start, "vllm:prefix_cache_queries_total")
    hits = delta(end, start, "vllm:prefix_cache_hits_total")
    assert queries > 0 and hits / queries >= 0.8, (hits, queries)
    assert idle_after < 1.0
    b1_calls = {r: c for r, c in calls.items() if r.startswith("calls-b1")}
    if overlap == "off":  # decode4 waits for probe3
        assert b1_calls["calls-b1-decode4"]["start"] >= b1_calls["calls-b1-probe3"]["end"]
    else:  # sent together: each started before the other returned (how close in time depends on the load)
        assert b1_calls["calls-b1-decode4"]["start"] < b1_calls["calls-b1-probe3"]["end"]
        assert b1_calls["calls-b1-probe3"]["start"] < b1_calls["calls-b1-decode4"]["end"]


def test_decoding_ahead_is_aborted_by_prune_and_answer_and_counted(vllm_server: str) -> None:
    """``overlap: ahead``: branch 0's second segment starts with its first probe and is stopped by the prune,
    branch 1's fourth by the episode's end; vLLM runs nothing a second later, branch 1 decodes the same
    tokens as without overlap, and whatever finished unused is overshoot in the ledger (usage)."""
    delta_tokens, probe_tokens = 32, 4
    text = question("ahead")
    _, _, _, reference, _, _, plain = _scripted(vllm_server, "off", delta_tokens, probe_tokens, text)
    engine, _, _, backend, _, before, outcome = _scripted(vllm_server, "ahead", delta_tokens, probe_tokens, text)
    idle_after = wait_idle(vllm_server, 1.0)
    assert idle_after < 1.0
    calls = {c["id"]: c for c in engine.calls}
    assert {"calls-b0-decode2", "calls-b1-decode6", "calls-b1-probe7"} <= set(calls)  # ahead ×2; Probe(1) is call 7
    assert backend.tokens[1] == reference.tokens[1] and len(backend.tokens[0]) == delta_tokens
    assert outcome.obs.branches[1].answers[:3] == plain.obs.branches[1].answers[:3]
    ledger = backend.ledger
    finished = [c for c in engine.calls if "result" in c]
    assert ledger.decode_tokens == 4 * delta_tokens + ledger.overshoot_tokens
    assert ledger.completion_tokens == sum(c["result"].completion_tokens for c in finished)
    assert delta(vllm_metrics(vllm_server), before, "vllm:generation_tokens_total") >= ledger.completion_tokens


async def _gateway_request(url: str, body: dict) -> tuple[dict, dict, dict]:
    app = build_app(GatewayConfig.load(overrides={"engine": "vllm", "engine_url": url, "segment_tokens": 32,
                                                  "probe_max_tokens": 4, "ignore_eos": True}))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw",
                                                                   timeout=600) as client:
        before = vllm_metrics(url)
        response = await client.post("/v1/chat/completions", json=body)
        after = vllm_metrics(url)
        gateway_metrics = (await client.get("/metrics")).text
    assert response.status_code == 200, response.text
    return response.json(), {k: delta(after, before, k) for k in after}, {"text": gateway_metrics}


def test_cmc_episode_usage_equals_vllm_counters(vllm_server: str) -> None:
    body = {"model": "tiny", "seed": 3, "max_tokens": 128, "messages": [{"role": "user", "content": question("cmc")}],
            "tts": {"controller": "cmc", "beta": 0.2}}
    data, moved, gateway = asyncio.run(_gateway_request(vllm_server, body))
    usage, tts = data["usage"], data["tts"]
    assert usage["prompt_tokens"] == moved["vllm:prompt_tokens_total"]
    assert usage["completion_tokens"] == moved["vllm:generation_tokens_total"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == moved["vllm:prefix_cache_hits_total"]
    assert usage["completion_tokens"] == tts["decode_tokens"] + tts["probe_tokens"] + tts["final_tokens"]
    assert tts["decode_tokens"] + tts["probe_tokens"] == tts["tokens_spent"]  # final: finishing the winner
    assert tts["controller"] == "cmc" and tts["beta"] == 0.2 and tts["branches"] >= 3 and tts["rounds"] >= 2
    assert tts["engine_calls"] == moved["vllm:request_success_total"]
    assert isinstance(data["choices"][0]["message"]["content"], str)
    assert data["choices"][0]["message"]["reasoning_content"]
    decoded = re.search(r'autotts_tokens_total\{[^}]*controller="cmc"[^}]*kind="decode"[^}]*\} (\S+)', gateway["text"])
    assert decoded and float(decoded.group(1)) == tts["decode_tokens"]


def _serve_gateway(url: str):
    app = build_app(GatewayConfig.load(overrides={"engine": "vllm", "engine_url": url, "segment_tokens": 32,
                                                  "ignore_eos": True}))
    return BackgroundServer(app)


def test_stream_sends_progress_then_disconnect_stops_all_engine_work(vllm_server: str) -> None:
    body = {"model": "tiny", "seed": 5, "max_tokens": 4000, "stream": True,
            "messages": [{"role": "user", "content": question("stream")}],
            "tts": {"controller": "parallel_probe", "params": {"n": 3}}}
    with _serve_gateway(vllm_server) as gw, httpx.Client(base_url=gw, timeout=120) as client:
        progress = []
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()  # kept open: leaving a for-loop over it would close the stream
            while len(progress) < 3:
                line = next(lines)
                if '"progress"' in line:
                    progress.append(line)
            deadline = time.monotonic() + 10
            while vllm_metrics(vllm_server)["vllm:num_requests_running"] < 1:  # between rounds it can be 0
                health = httpx.get(gw + "/health").json()
                assert time.monotonic() < deadline, ("no engine call in flight", progress, health)
            closed = time.monotonic()
        # leaving the block closed the connection mid-episode
        waited = wait_idle(vllm_server, 1.0)
        assert time.monotonic() - closed < 1.5 and waited < 1.0
        time.sleep(0.3)
        text = client.get("/metrics").text
    assert re.search(r'autotts_requests_total\{[^}]*status="cancelled"[^}]*\} 1\.0', text), text[-2000:]
    reports = [json.loads(p[len("data: "):])["tts"]["progress"] for p in progress]
    assert [r["engine_calls"] for r in reports] == sorted(r["engine_calls"] for r in reports)
    assert reports[-1]["tokens"] > 0 and reports[-1]["engine_calls"] > 0


def test_non_streaming_client_timeout_stops_all_engine_work(vllm_server: str) -> None:
    body = {"model": "tiny", "seed": 6, "max_tokens": 4000, "tts": {"controller": "sc", "params": {"n": 2}},
            "messages": [{"role": "user", "content": question("nostream")}]}
    with _serve_gateway(vllm_server) as gw:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gw + "/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=4.0))
        gone = time.monotonic()
        assert wait_idle(vllm_server, 1.5) < 1.5
        assert time.monotonic() - gone < 2.0


def test_controller_none_passes_the_request_through(vllm_server: str) -> None:
    body = {"model": "tiny", "max_tokens": 5, "seed": 1, "ignore_eos": True,
            "messages": [{"role": "user", "content": "hi"}], "tts": {"controller": "none"}}
    with _serve_gateway(vllm_server) as gw:
        data = httpx.post(gw + "/v1/chat/completions", json=body, timeout=120).json()
        assert data["usage"]["completion_tokens"] == 5 and "tts" not in data
        with httpx.stream("POST", gw + "/v1/chat/completions", json={**body, "stream": True}, timeout=120) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and len(lines) >= 3


def test_kv_block_size_is_read_from_the_server_and_a_misfit_delta_warned(vllm_server: str, caplog) -> None:
    """The server runs with ``--block-size 32`` (conftest.VLLM_FLAGS): the adapter reads 32 from its
    /metrics; a gateway with Δ = 48 warns at start-up, a request asking for Δ = 64 does not add a warning."""

    async def block() -> int | None:
        engine = VLLMHTTPEngine(vllm_server)
        try:
            await engine.start()
            return engine.capabilities.kv_block_size
        finally:
            await engine.close()

    assert asyncio.run(block()) == 32
    app = build_app(GatewayConfig.load(overrides={"engine": "vllm", "engine_url": vllm_server,
                                                  "segment_tokens": 48, "ignore_eos": True}))
    with caplog.at_level("WARNING", logger="autotts.server.gateway"), BackgroundServer(app) as gw:
        reply = httpx.post(gw + "/v1/chat/completions", timeout=300, json={
            "model": "tiny", "seed": 3, "max_tokens": 64, "messages": [{"role": "user", "content": question("blk")}],
            "tts": {"controller": "sc:n=1", "segment_tokens": 64}})
    assert reply.status_code == 200, reply.text
    misfits = [r.getMessage() for r in caplog.records if "KV block size" in r.getMessage()]
    assert len(misfits) == 1 and "= 48 is not a multiple" in misfits[0] and "Δ = 32 or Δ = 64 fits" in misfits[0]
