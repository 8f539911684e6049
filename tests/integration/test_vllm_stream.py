"""``branch_mode: stream`` against real vLLM (CPU build, tiny model, the session's server: conftest.vllm_server).

One streamed `/v1/completions` call per branch, read at token-ID boundaries: the segments a branch
consumes are exactly the tokens vLLM samples for that seed in one plain call; probes are side calls on
the branch's prefix with the call ids (so seeds) of the segments mode; prune and answer close the streams
and vLLM runs nothing a second later; what a stream decoded past its last consumed segment is overshoot,
in the ledger (usage). The fake-engine version (parity with the segments mode and with replay) is
tests/unit/test_stream_branches.py; the segments mode's real-vLLM test is test_vllm_gateway.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.controllers import Branch, Continue, GeneratorController, Probe, Prune
from autotts.engines.base import Sampling, branch_seed
from autotts.engines.streams import StreamBranchBackend
from autotts.engines.vllm_http import VLLMHTTPEngine
from autotts.server.app import build_app
from autotts.server.background import BackgroundServer
from autotts.server.config import GatewayConfig
from autotts.server.executor import run_episode

from tests.conftest import vllm_metrics
from tests.integration.test_vllm_gateway import SUFFIX, delta, question, wait_idle
from tests.integration.test_vllm_gateway import Recording as RecordingCalls  # generate calls

pytestmark = pytest.mark.timeout(300)

SAMPLING = Sampling(temperature=1.0, ignore_eos=True)


class Recording(RecordingCalls):
    """`RecordingCalls` with every stream recorded too (prompt, max_tokens, id, chunk_tokens)."""

    def stream(self, prompt_ids, max_tokens, sampling, request_id, chunk_tokens=1):
        self.calls.append({"prompt": list(prompt_ids), "max_tokens": max_tokens, "id": request_id,
                           "chunk_tokens": chunk_tokens})
        return self.engine.stream(prompt_ids, max_tokens, sampling, request_id, chunk_tokens)


class Scripted(GeneratorController):
    """Branch 2 → prune 0 and continue 1 by two segments → probe 1 → answer; after the prune, what vLLM ran
    once it ran fewer than both streams (1: branch 1's alone) and how long it took to see that.

    Without an abort both streams would end together (2 → 0). The seconds are printed, not bounded: one
    scrape of vLLM's /metrics takes up to a second on this CPU build, so they bound the scrape, not the
    abort; what the abort saves is bounded in tokens (the test's last asserts)."""

    name = "scripted"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url, self.running = url, []

    def run(self, obs):
        yield [Branch(2, segments=1, probe=True)]
        yield [Prune(0), Continue(1, segments=2, probe=True)]
        start = time.monotonic()  # the prune closed branch 0's stream
        while (running := vllm_metrics(self.url)["vllm:num_requests_running"]) > 1 and time.monotonic() - start < 10:
            time.sleep(0.02)
        self.running = [running, time.monotonic() - start]
        yield [Probe(1)]
        return obs.branches[1].latest


def test_one_stream_per_branch_reads_vllms_own_tokens_and_prune_and_answer_abort_it(vllm_server: str) -> None:
    seg, probe_tokens, cap = 32, 4, 1024

    async def scenario():
        engine = Recording(VLLMHTTPEngine(vllm_server, "tiny"))
        try:
            prompt = await engine.tokenize_chat([{"role": "user", "content": question("streamed")}])
            suffix = await engine.tokenize_text(SUFFIX)
            backend = StreamBranchBackend(engine, prompt, segment_tokens=seg, probe_suffix_ids=suffix,
                                          probe_max_tokens=probe_tokens, max_branch_tokens=cap, sampling=SAMPLING,
                                          seed=11, request_id="s")
            controller = Scripted(vllm_server)
            before = vllm_metrics(vllm_server)
            outcome = await run_episode(controller, backend, question_id=0, question="q")
            idle = wait_idle(vllm_server, 1.0)  # both streams aborted by now
            after = vllm_metrics(vllm_server)
            # what vLLM samples for branch 1's seed in one plain call of the same length
            plain = await engine.engine.generate(prompt, 3 * seg, SAMPLING.with_seed(branch_seed(11, 1, 0)), "ref")
            return engine, prompt, suffix, backend, controller, before, after, outcome, idle, plain
        finally:
            await engine.close()

    engine, prompt, suffix, backend, controller, before, after, outcome, idle, plain = asyncio.run(scenario())
    assert idle < 1.0
    b0, b1 = backend.tokens[0], backend.tokens[1]
    assert (len(b0), len(b1)) == (seg, 3 * seg)
    assert b1 == plain.token_ids  # segments cut from the stream at token-ID boundaries, nothing lost or doubled
    calls = {c["id"]: (c["prompt"], c["max_tokens"]) for c in engine.calls}
    assert calls == {  # one stream per branch; probes on the prefix, with the segments mode's call ids
        "s-b0-stream0": (prompt, cap), "s-b1-stream0": (prompt, cap),
        "s-b0-probe1": (prompt + b0 + suffix, probe_tokens),
        "s-b1-probe1": (prompt + b1[:32] + suffix, probe_tokens),
        "s-b1-probe3": (prompt + b1[:64] + suffix, probe_tokens),
        "s-b1-probe5": (prompt + b1 + suffix, probe_tokens),
        "s-b1-probe6": (prompt + b1 + suffix, probe_tokens),  # the Probe(1) action
    }
    print(f"\nafter the prune vLLM ran {controller.running[0]:g} request(s), seen {controller.running[1]:.2f} s later")
    assert controller.running[0] == 1  # the prune aborted branch 0's stream; branch 1's ran on
    obs = outcome.obs
    assert obs.branches[0].pruned and obs.branches[1].depth == 3 and len(obs.branches[1].answers) == 4
    assert outcome.answer == obs.branches[1].answers[-1]
    ledger = backend.ledger
    assert (ledger.decode_calls, ledger.probe_calls) == (2, 5)
    assert ledger.overshoot_tokens > 0  # the streams decoded on while the controller decided
    assert ledger.decode_tokens == 4 * seg + ledger.overshoot_tokens and ledger.probe_tokens == 5 * probe_tokens
    assert obs.tokens_spent == 4 * seg + 5 * probe_tokens  # the machine charges consumed tokens only
    # vLLM decoded what we counted, plus at most what was in flight when the streams closed
    generated = delta(after, before, "vllm:generation_tokens_total")
    assert ledger.completion_tokens <= generated <= ledger.completion_tokens + 64, (generated, ledger)
    # probes hit the running streams' cached blocks
    assert ledger.cached_tokens >= 0.8 * sum(len(c[0]) for rid, c in calls.items() if "probe" in rid)


def _gateway(url: str):
    return BackgroundServer(build_app(GatewayConfig.load(overrides={
        "engine": "vllm", "engine_url": url, "segment_tokens": 32, "probe_max_tokens": 4, "ignore_eos": True,
        "branch_mode": "stream"})))


def test_gateway_in_stream_mode_answers_and_a_disconnect_stops_all_engine_work(vllm_server: str) -> None:
    body = {"model": "tiny", "seed": 3, "max_tokens": 128, "messages": [{"role": "user", "content": question("gws")}],
            "tts": {"controller": "cmc", "beta": 0.5}}
    with _gateway(vllm_server) as gw, httpx.Client(base_url=gw, timeout=300) as client:
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        data = reply.json()
        usage, tts = data["usage"], data["tts"]
        assert usage["completion_tokens"] == tts["decode_tokens"] + tts["probe_tokens"] + tts["final_tokens"]
        overshoot = tts.get("overshoot_tokens", 0)
        assert tts["decode_tokens"] + tts["probe_tokens"] == tts["tokens_spent"] + overshoot
        assert tts["branches"] >= 3 and isinstance(data["choices"][0]["message"]["content"], str)
        assert wait_idle(vllm_server, 1.0) < 1.0
        # a streamed request, closed mid-episode: its branches' streams are aborted
        long = {**body, "max_tokens": 4000, "stream": True, "messages": [{"role": "user", "content": question("dc")}],
                "tts": {"controller": "parallel_probe", "params": {"n": 3}}}
        with client.stream("POST", "/v1/chat/completions", json=long) as response:
            assert response.status_code == 200
            lines = response.iter_lines()  # kept open: leaving a for-loop over it would close the stream
            while '"progress"' not in next(lines):
                pass
            deadline = time.monotonic() + 10
            while vllm_metrics(vllm_server)["vllm:num_requests_running"] < 3:  # the three streams
                assert time.monotonic() < deadline, "the branches' streams never ran together"
                time.sleep(0.02)
            closed = time.monotonic()
        waited = wait_idle(vllm_server, 1.0)
        assert time.monotonic() - closed < 1.5 and waited < 1.0
