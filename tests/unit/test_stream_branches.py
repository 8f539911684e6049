"""``branch_mode: stream`` (engines/streams.py) on the deterministic FakeEngine: the same episode as one call
per segment, prunes and the episode's end abort the streams, overshoot is in the ledger.

The replay-vs-live parity of the stream mode (a store collected segment by segment, replayed offline, equals
the controller run live on streams) is in tests/unit/test_collect.py; the real-vLLM test is
tests/integration/test_vllm_stream.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from autotts.controllers import Answer, Branch, GeneratorController, Prune, load
from autotts.engines.backends import TokenBranchBackend
from autotts.engines.base import Capabilities, Sampling
from autotts.engines.errors import EngineError
from autotts.engines.fake import FakeEngine
from autotts.engines.streams import StreamBranchBackend
from autotts.server.executor import Caps, run_episode

GREEDY = Sampling(temperature=0.0)


def backend(mode: str, engine, **kw):
    defaults = {"segment_tokens": 32, "probe_suffix_ids": [7, 8], "probe_max_tokens": 4, "max_branch_tokens": 400,
                "sampling": GREEDY, "seed": 1, "request_id": "r"}
    cls = StreamBranchBackend if mode == "stream" else TokenBranchBackend
    return cls(engine, [1, 2, 3], **{**defaults, **kw})


def episode(mode: str, spec: str, engine=None, caps=None, **kw):
    engine = engine or FakeEngine(eos_at=150, prompt_base=3, delay_s=0.001)
    b = backend(mode, engine, **kw)
    outcome = asyncio.run(run_episode(load(spec), b, question_id=0, question="q",
                                      caps=caps or Caps(max_branches=None)))
    assert engine.in_flight == 0  # no stream outlives the episode
    return outcome, b, engine


@pytest.mark.parametrize("spec", ["cmc:beta=0.5", "cmc:beta=1.0", "parallel_probe:n=4", "asc", "esc", "sc:n=3"])
def test_streamed_branches_decode_the_same_episode_as_one_call_per_segment(spec) -> None:
    """Greedy decoding: the same answer, machine costs, rounds and branch tokens; probes keep their seeds;
    one engine stream per branch; whatever was decoded past the last consumed segment is overshoot."""
    plain, b0, _ = episode("segments", spec, overlap="off")
    got, b1, engine = episode("stream", spec)
    assert (got.answer, got.obs.tokens_spent, got.rounds, got.probes) == \
        (plain.answer, plain.obs.tokens_spent, plain.rounds, plain.probes)
    assert b1.tokens == b0.tokens
    assert b1.ledger.probe_tokens == b0.ledger.probe_tokens and b1.ledger.probe_calls == b0.ledger.probe_calls
    assert b1.ledger.decode_tokens == b0.ledger.decode_tokens + b1.ledger.overshoot_tokens
    streams = [c for c in engine.calls if c.get("stream")]
    assert len(streams) == len(got.obs.branches) == b1.ledger.decode_calls
    assert sorted(c["id"] for c in engine.calls if "probe" in c["id"]) == \
        sorted(c["id"] for c in b0.engine.calls if "probe" in c["id"])  # the same call indices, so seeds


@pytest.mark.parametrize("budget", [300, 700])
def test_the_token_budget_ends_streamed_episodes_where_it_ends_segment_calls(budget) -> None:
    """The budget gate counts consumed tokens: overshoot (in usage) does not end an episode early."""
    caps = Caps(max_branches=None, token_budget=budget)
    plain, b0, _ = episode("segments", "cmc:beta=0.5", caps=caps, overlap="off")
    got, b1, _ = episode("stream", "cmc:beta=0.5", caps=caps)
    assert plain.budget_exhausted
    assert (got.answer, got.obs.tokens_spent, got.budget_exhausted, len(got.obs.branches)) == \
        (plain.answer, plain.obs.tokens_spent, plain.budget_exhausted, len(plain.obs.branches))
    # the engine work beyond the budget (units decoded, not charged) is what one call per segment spends too
    assert b1.ledger.completion_tokens == b0.ledger.completion_tokens + b1.ledger.overshoot_tokens


class PruneThenAnswer(GeneratorController):
    def run(self, obs):
        yield [Branch(2)]
        yield [Prune(1)]
        yield [Answer("x")]


def test_prune_and_answer_abort_the_streams_and_count_their_overshoot() -> None:
    """A slow stream (0.05 s per 3 tokens, 400 tokens: 7 s to its end) is closed at once by the prune and
    by the answer; what it had decoded past the first segment is overshoot, in `decode_tokens`."""
    engine = FakeEngine(prompt_base=3, delay_s=0.05)

    async def go():
        b = backend("stream", engine, sampling=Sampling())
        out = await asyncio.wait_for(run_episode(PruneThenAnswer(), b, question_id=0, question="q",
                                                 caps=Caps(controller_in_thread=False)), timeout=5)
        return out, b

    start = time.perf_counter()
    outcome, b = asyncio.run(go())
    assert time.perf_counter() - start < 3.0 and outcome.answer == "x"
    assert engine.in_flight == 0
    ledger = b.ledger
    assert ledger.decode_calls == 2 and ledger.overshoot_tokens > 0
    assert ledger.decode_tokens == 2 * 32 + ledger.overshoot_tokens
    assert outcome.obs.tokens_spent == 2 * 32 + ledger.probe_tokens


class FailingStream(FakeEngine):
    """Streams that break after their first chunks, as a connection lost mid-stream does."""

    async def stream(self, prompt_ids, max_tokens, sampling, request_id, chunk_tokens=1):
        sent = 0
        async for chunk in super().stream(prompt_ids, max_tokens, sampling, request_id, chunk_tokens):
            if sent >= 40:
                raise EngineError("connection to the engine lost mid-stream (test)")
            sent += len(chunk.token_ids)
            yield chunk


def test_a_broken_stream_fails_the_episode_instead_of_ending_the_branch() -> None:
    with pytest.raises(EngineError, match="lost mid-stream"):
        episode("stream", "cmc:beta=0.5", engine=FailingStream(prompt_base=3))


def test_stream_mode_needs_an_engine_that_streams() -> None:
    class NoStream(FakeEngine):
        capabilities = Capabilities()

    with pytest.raises(ValueError, match="needs an engine that streams token IDs"):
        backend("stream", NoStream())


@pytest.mark.parametrize("spec", ["cmc:beta=0.5", "parallel_probe:n=4", "asc"])
def test_spare_streams_change_nothing_but_the_overshoot(spec) -> None:
    """Streams started for the next branch ids before they are opened: the same episode as without spares
    (a spare has the seed the branch would get); never-opened spares' tokens are overshoot in the ledger."""
    plain, b0, _ = episode("stream", spec)
    got, b1, engine = episode("stream", spec, spare_streams=2)
    assert (got.answer, got.obs.tokens_spent, got.rounds, got.probes) == \
        (plain.answer, plain.obs.tokens_spent, plain.rounds, plain.probes)
    assert b1.tokens == b0.tokens and b1.ledger.probe_tokens == b0.ledger.probe_tokens
    opened = len(got.obs.branches)
    streams = sorted(c["id"] for c in engine.calls if c.get("stream"))
    assert streams == sorted(f"r-b{b}-stream0" for b in range(opened + 2))  # two spares never opened
    assert b1.ledger.decode_calls == opened + 2
    assert b1.ledger.decode_tokens - b1.ledger.overshoot_tokens == b0.ledger.decode_tokens - b0.ledger.overshoot_tokens
    assert b1.ledger.overshoot_tokens > b0.ledger.overshoot_tokens


def test_spare_streams_stay_within_the_branches_available() -> None:
    got, _, engine = episode("stream", "sc:n=3", spare_streams=4, max_branches=3)
    assert len(got.obs.branches) == 3
    assert sorted(c["id"] for c in engine.calls if c.get("stream")) == [f"r-b{i}-stream0" for i in range(3)]


def test_branch_mode_settings_are_checked() -> None:
    from autotts.server.config import ConfigError, GatewayConfig

    with pytest.raises(ConfigError, match="branch_mode"):
        GatewayConfig.load(overrides={"branch_mode": "streams"})
    with pytest.raises(ConfigError, match="stream_spares"):
        GatewayConfig.load(overrides={"stream_spares": -1})
    assert GatewayConfig.load(overrides={"branch_mode": "stream"}).branch_mode == "stream"


class NoFinish(FakeEngine):
    """Streams that stop sending without a finish reason (what a token-only vLLM stream does on abort)."""

    async def stream(self, prompt_ids, max_tokens, sampling, request_id, chunk_tokens=1):
        async for chunk in super().stream(prompt_ids, max_tokens, sampling, request_id, chunk_tokens):
            if chunk.finish_reason is None and len(chunk.token_ids) < 16:
                yield chunk


def test_a_stream_without_a_finish_reason_is_an_engine_error_not_a_finished_branch() -> None:
    with pytest.raises(EngineError, match="without a finish reason"):
        episode("stream", "sc:n=2", engine=NoFinish(prompt_base=3), max_branch_tokens=40)


def test_serve_takes_the_branch_mode(monkeypatch) -> None:
    """`autotts serve --branch-mode stream` reaches the gateway's config (uvicorn is not started)."""
    pytest.importorskip("uvicorn")
    import uvicorn
    from autotts.cli.main import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("config", app.state.gateway.config))
    assert main(["serve", "--branch-mode", "stream"]) == 0
    assert seen["config"].branch_mode == "stream"


def test_the_gateway_refuses_stream_mode_on_an_engine_that_cannot_stream() -> None:
    pytest.importorskip("fastapi")
    from autotts.server.app import build_app
    from autotts.server.config import ConfigError, GatewayConfig

    from tests.helpers import run_app

    app = build_app(GatewayConfig.load(overrides={"engine": "sglang", "engine_url": "http://127.0.0.1:9",
                                                  "branch_mode": "stream"}))
    with pytest.raises(ConfigError, match="branch_mode: 'stream' needs an engine that streams token IDs"):
        run_app(app, lambda client: asyncio.sleep(0))
