"""The live executor against the replay environment: same controller, same answers, same costs.

The replay backend is wrapped so that branch operations really run as concurrent tasks that finish in
a shuffled order; applying results in action order must still reproduce `ReplayEnv` exactly. The HTTP
version of this parity (all 450 episodes of one store) is tests/integration/test_gateway_parity.py;
the real-engine version is tests/integration/test_vllm_gateway.py.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from autotts.controllers import Answer, Branch, Continue, GeneratorController, Probe, Prune, load, majority
from autotts.controllers.errors import EpisodeTimeout
from autotts.engines.backends import TokenBranchBackend
from autotts.engines.base import Sampling
from autotts.engines.fake import FakeEngine
from autotts.offline.env import ReplayEnv
from autotts.offline.episode import run_episode as offline_episode
from autotts.offline.evaluate import bundled_data_dir
from autotts.offline.store import load_store
from autotts.server.errors import ControllerFailed
from autotts.server.executor import Caps, run_episode
from autotts.server.replay import ReplayBranchBackend

from tests.helpers import short, store_in_opening_order


@pytest.fixture(scope="module")
def store():
    return load_store(bundled_data_dir() / "Qwen3-8B" / "aime25.parquet")


class ShuffledReplay(ReplayBranchBackend):
    """The replay backend with concurrency on and every call yielding to the loop a random number of times."""

    concurrent = True

    def __init__(self, *args, rng: random.Random, **kw) -> None:
        super().__init__(*args, **kw)
        self.rng = rng

    async def _yield(self) -> None:
        for _ in range(self.rng.randrange(4)):
            await asyncio.sleep(0)

    async def decode(self, branch, segments, probe):
        await self._yield()
        return await super().decode(branch, segments, probe)

    async def probe(self, branch):
        await self._yield()
        return await super().probe(branch)


def state(obs) -> tuple:
    return (obs.tokens_spent, obs.step, tuple(obs.completed),
            tuple((b.depth, b.finished, b.pruned, tuple(b.answers), tuple(b.depths), b.tokens) for b in obs.branches))


def live(controller, store, q, seed, caps=None, rng_seed=0):
    backend = ShuffledReplay(store, q, seed, prompt_tokens=10, rng=random.Random(rng_seed))
    return asyncio.run(run_episode(controller, backend, question_id=q, question=store.questions[q],
                                   caps=caps or Caps(controller_in_thread=False)))


@pytest.mark.parametrize("spec", ["cmc:beta=0.5", "parallel_probe:n=16", "asc", "esc"])
def test_shuffled_concurrent_execution_equals_the_replay_environment(store, spec) -> None:
    controller = load(spec)
    for q, seed in [(0, 0), (7, 1), (19, 2), (28, 5)]:
        env = ReplayEnv(store)
        want = offline_episode(controller, env, q, seed)
        got = live(controller, store, q, seed, rng_seed=q + seed)
        assert (got.answer, got.obs.tokens_spent, len(got.obs.branches), got.probes, got.obs.step) == \
            (want.answer, want.tokens, want.branches, want.probes, want.steps), (spec, q, seed)
        assert state(got.obs) == state(env.obs)


class Mixed(GeneratorController):
    """Batches that mix new branches, several operations on one branch, probes and prunes."""

    name = "mixed"

    def run(self, obs):
        yield [Branch(3, segments=2), Continue(0), Probe(1), Continue(0, segments=2, probe=False),
               Branch(1, segments=None, probe=False)]
        yield [Prune(2), Continue(1, segments=None), Probe(0), Continue(0)]
        yield [Branch(2, segments=1), Continue(4, segments=3), Probe(4), Prune(5)]
        return majority([b.latest for b in obs.branches if b.latest is not None])


def test_mixed_batches_apply_in_action_order(store) -> None:
    for q, seed in [(2, 0), (11, 3)]:
        env = ReplayEnv(store)
        want = offline_episode(Mixed(), env, q, seed)
        assert want.error is None
        for rng_seed in range(3):
            got = live(Mixed(), store, q, seed, rng_seed=rng_seed)
            assert state(got.obs) == state(env.obs) and got.answer == want.answer
            assert got.prunes == 2


@pytest.mark.parametrize("spec", ["sc", "cmc:beta=0.5", "parallel_probe"])
def test_token_budget_ends_like_the_replay_environment(store, spec) -> None:
    controller = load(spec)
    exhausted = 0
    for q, seed, budget in [(0, 0, 20_000), (5, 1, 77_777), (21, 2, 3_000)]:
        env = ReplayEnv(store, token_budget=budget)
        want = offline_episode(controller, env, q, seed)
        exhausted += want.budget_exhausted
        got = live(controller, store, q, seed, caps=Caps(token_budget=budget, controller_in_thread=False))
        assert (got.answer, got.obs.tokens_spent, got.budget_exhausted, len(got.obs.branches)) == \
            (want.answer, want.tokens, want.budget_exhausted, want.branches)
        assert got.obs.token_budget == budget
    assert exhausted >= 2  # the budget rule really was exercised


class Broken(GeneratorController):
    name = "broken"

    def __init__(self, batches, **kw) -> None:
        super().__init__(**kw)
        self.batches = batches

    def run(self, obs):
        for batch in self.batches:
            if isinstance(batch, Exception):
                raise batch
            yield batch
        return "x"


@pytest.mark.parametrize("batches, message", [
    ([[]], "empty batch"),
    ([None], "controller returned NoneType, expected a list of actions"),
    ([[Answer("a"), Branch(1)]], "must be the last"),
    ([[Branch(1, segments=None, probe=False), Continue(0)]], "Continue on finished branch 0"),
    ([[Branch(1), Prune(0), Probe(0)]], "Probe on pruned branch 0"),
    ([[Continue(3)]], "never opened"),
    ([[Branch(3)]], "only 2 branch"),
    ([ValueError("boom")], "ValueError: boom"),
])
def test_controller_faults_are_controller_errors(batches, message) -> None:
    tiny = store_in_opening_order([short("a"), (["b", "a"], 900, "a")])
    backend = ReplayBranchBackend(tiny, 0, 0, prompt_tokens=1)
    with pytest.raises(ControllerFailed, match=message):
        asyncio.run(run_episode(Broken(batches), backend, question_id=0, question="q?"))


def _fake_backend(engine, **kw):
    defaults = {"segment_tokens": 32, "probe_suffix_ids": [7, 8], "probe_max_tokens": 4, "max_branch_tokens": 1000,
                "sampling": Sampling(), "seed": 1, "request_id": "r"}
    return TokenBranchBackend(engine, [1, 2, 3], **{**defaults, **kw})


def test_token_backend_segments_probes_and_finish() -> None:
    engine = FakeEngine(eos_at=50, prompt_base=3)

    async def go():
        backend = _fake_backend(engine)
        backend.open(0)
        units = await backend.decode(0, None, True)
        return backend, units

    backend, units = asyncio.run(go())
    # cost = decoded tokens + the probe's 4 tokens; the final answer is forced by a probe too
    assert [(u.cost, u.depth, u.answer is not None, u.final) for u in units] == \
        [(32 + 4, 1, True, False), (18 + 4, 2, True, True)]
    assert len(backend.tokens[0]) == 50  # probe tokens were not appended
    probes = [c for c in engine.calls if "probe" in c["id"]]
    assert probes[0]["prompt"] == [1, 2, 3, *backend.tokens[0][:32], 7, 8]
    assert probes[1]["prompt"] == [1, 2, 3, *backend.tokens[0], 7, 8]  # the final answer is forced too
    assert backend.ledger.decode_tokens == 50 and backend.ledger.probe_tokens == 8


def test_live_budget_stops_launching_calls() -> None:
    engine = FakeEngine(delay_s=0.001)
    backend = _fake_backend(engine, max_branch_tokens=10_000)
    outcome = asyncio.run(run_episode(load("parallel_probe:n=4"), backend, question_id=0, question="q",
                                      caps=Caps(token_budget=500, max_branches=8)))
    assert outcome.budget_exhausted
    # at most one segment + probe per branch beyond the cap was already in flight
    assert 500 <= backend.ledger.completion_tokens <= 500 + 4 * (32 + 4)
    assert outcome.answer is not None


def test_timeout_cancels_every_engine_call() -> None:
    engine = FakeEngine(delay_s=5.0)

    async def go():
        backend = _fake_backend(engine)
        with pytest.raises(EpisodeTimeout, match=r"0\.2 s"):
            await run_episode(load("sc:n=4"), backend, question_id=0, question="q", caps=Caps(timeout_s=0.2))
        await asyncio.sleep(0)
        return engine.in_flight

    assert asyncio.run(go()) == 0
    assert len(engine.calls) == 4


def test_cancelling_the_episode_cancels_in_flight_calls() -> None:
    engine = FakeEngine(delay_s=5.0)

    async def go():
        task = asyncio.create_task(run_episode(load("cmc:beta=0.5"), _fake_backend(engine), question_id=0,
                                               question="q"))
        while engine.in_flight < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return engine.in_flight

    assert asyncio.run(go()) == 0


@pytest.mark.parametrize("spec", ["cmc:beta=0.5", "cmc:beta=1.0", "parallel_probe:n=4", "asc", "esc", "sc:n=3"])
def test_overlapped_calls_decode_the_same_episode(spec) -> None:
    """Probe + next segment sent together, and the next segment decoded ahead of the controller: the same
    answer, the same machine costs and the same branch tokens as one call after the other (call i of a
    branch keeps its seed); what was decoded ahead and not used is overshoot in the ledger, nothing more."""

    def run(overlap: str):
        engine = FakeEngine(eos_at=150, prompt_base=3, delay_s=0.001)
        backend = _fake_backend(engine, overlap=overlap, max_branch_tokens=400)
        outcome = asyncio.run(run_episode(load(spec), backend, question_id=0, question="q",
                                          caps=Caps(max_branches=None)))
        assert engine.in_flight == 0  # nothing started ahead outlives the episode
        return outcome, backend

    (plain, b0) = run("off")
    for overlap in ("probe", "ahead"):
        other, b1 = run(overlap)
        assert (other.answer, other.obs.tokens_spent, other.rounds) == (plain.answer, plain.obs.tokens_spent,
                                                                         plain.rounds)
        assert b1.tokens == b0.tokens and b0.ledger.overshoot_tokens == 0
        assert b1.ledger.probe_tokens == b0.ledger.probe_tokens
        assert b1.ledger.decode_tokens == b0.ledger.decode_tokens + b1.ledger.overshoot_tokens


class SlowSecondSegment(FakeEngine):
    """Every branch's second segment (call 2: started ahead with the first probe) takes `slow_s`."""

    slow_s = 5.0

    async def generate(self, prompt_ids, max_tokens, sampling, request_id):
        if request_id.endswith("decode2"):
            self.delay_s = self.slow_s
        try:
            return await super().generate(prompt_ids, max_tokens, sampling, request_id)
        finally:
            self.delay_s = 0.0


class PruneThenAnswer(GeneratorController):
    def run(self, obs):
        yield [Branch(2)]
        yield [Prune(1)]
        yield [Answer("x")]


@pytest.mark.parametrize("slow_s", [5.0, 0.0], ids=["in-flight", "finished"])
def test_prune_and_answer_stop_the_segments_decoded_ahead(slow_s) -> None:
    """Both branches' second segments start ahead with their first probes; `Prune(1)` and the answer
    cancel them (in flight: aborted at once; finished unused: counted as overshoot)."""
    engine = SlowSecondSegment(prompt_base=3)
    engine.slow_s = slow_s

    async def go():
        backend = _fake_backend(engine, overlap="ahead")
        outcome = await asyncio.wait_for(run_episode(PruneThenAnswer(), backend, question_id=0, question="q",
                                                     caps=Caps(controller_in_thread=False)), timeout=4)
        return outcome, backend

    start = time.perf_counter()
    outcome, backend = asyncio.run(go())
    assert outcome.answer == "x" and engine.in_flight == 0
    assert time.perf_counter() - start < 1.0  # cancelled, not waited for
    assert sorted(c["id"] for c in engine.calls if c["id"].endswith("decode2")) == ["r-b0-decode2", "r-b1-decode2"]
    ledger = backend.ledger
    assert (ledger.decode_calls, ledger.overshoot_tokens) == ((2, 0) if slow_s else (4, 64))
    assert ledger.decode_tokens == 64 + ledger.overshoot_tokens  # usage hides nothing


def test_overlap_must_be_known() -> None:
    with pytest.raises(ValueError, match="overlap must be one of off, probe, ahead"):
        _fake_backend(FakeEngine(), overlap="sometimes")
