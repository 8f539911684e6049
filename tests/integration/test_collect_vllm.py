"""`autotts collect` against real vLLM (CPU build, tiny random model: conftest.vllm_server).

3 questions × 8 traces × Δ=32 (128-token traces, EOS ignored). Checks: the usage written in the store
equals vLLM's own counters moved by the collection; `autotts eval` of sc:n=8 on the store returns, for
every (question, seed), the majority of the collected final answers (computed here from the rows, in the
seed's opening order, ties to the first seen) and charges exactly the decode tokens vLLM reported; probe
calls hit the prefix cache (cached / prompt tokens ≥ 0.8). Resume: a collection killed inside question 1
by an engine failure, resumed, decodes question 0 no more and ends with the store of a straight run.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
from autotts.cli.main import main
from autotts.controllers.aggregators import parse_aggregator
from autotts.engines.errors import EngineDown
from autotts.engines.vllm_http import VLLMHTTPEngine
from autotts.offline.collect import CollectError, CollectSettings, collect
from autotts.offline.questions import read_questions
from autotts.offline.store import load_store

from tests.conftest import vllm_metrics

pytestmark = pytest.mark.timeout(900)

N, DELTA, MAX_TOKENS, PROBE_TOKENS, SEED = 8, 32, 128, 4, 3
_WORDS = ["apple", "book", "train", "car", "river", "city", "price", "cost", "hour", "minute", "day", "week"]


def write_questions(path, tag: str) -> None:
    """Three questions no other test sent (cache hits come from this collection), ~100 words each."""
    stamp = time.time_ns()
    rows = [{"question": f"[{tag} {stamp} q{i}] " + " ".join(_WORDS[(i + k * 5) % len(_WORDS)] for k in range(100)),
             "gold_answer": str(i)} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def majority_in_opening_order(finals: list[str], seed: int, aggregator: str) -> str:
    """The first of the most frequent answers in opening order, equivalent ones joined as `aggregator` does."""
    order = list(range(len(finals)))
    random.Random(seed).shuffle(order)
    join = parse_aggregator(aggregator).equivalence()
    seen = [join(finals[i]) if join else finals[i] for i in order]
    counts = Counter(seen)
    top = max(counts.values())
    return next(a for a in seen if counts[a] == top)


def test_collect_then_sc_equals_majority_and_engine_tokens(vllm_server, tmp_path, capsys):
    questions, out = tmp_path / "q.jsonl", tmp_path / "tiny" / "q.parquet"
    write_questions(questions, "collect")
    before = vllm_metrics(vllm_server)
    start = time.perf_counter()
    code = main(["collect", "--engine", "vllm", "--engine-url", vllm_server, "--model", "tiny", "--questions",
                 str(questions), "--n", str(N), "--segment-tokens", str(DELTA), "--max-tokens", str(MAX_TOKENS),
                 "--probe-max-tokens", str(PROBE_TOKENS), "--temperature", "1.0", "--seed", str(SEED),
                 "--ignore-eos", "--out", str(out), "--no-progress"])
    wall = time.perf_counter() - start
    after = vllm_metrics(vllm_server)
    assert code == 0
    summary = capsys.readouterr().out
    moved = {k: after[k] - before.get(k, 0.0) for k in after}
    store = load_store(out)
    usage, per_q = store.meta["usage"], store.meta["question_usage"]

    # the store's usage is vLLM's own count of this collection
    assert usage["decode_tokens"] + usage["probe_tokens"] == moved["vllm:generation_tokens_total"]
    assert usage["prompt_tokens"] == moved["vllm:prompt_tokens_total"]
    assert usage["cached_tokens"] == moved["vllm:prefix_cache_hits_total"]
    assert usage["decode_calls"] + usage["probe_calls"] == moved["vllm:request_success_total"]
    assert store.meta["tokenizer"] == "tiny" and store.meta["engine"] == "vllm"
    assert store.meta["sampling"] == {"temperature": 1.0, "top_p": 0.95, "seed": SEED, "ignore_eos": True}

    # rows: 8 traces of 128 tokens, a probe after each of the first three 32-token segments
    assert (store.segment_tokens, store.n_questions) == (DELTA, 3)
    for qi in range(3):
        q = store.question(qi)
        assert q.tokens == [MAX_TOKENS] * N and [len(p) for p in q.probes] == [MAX_TOKENS // DELTA - 1] * N
        assert sum(q.tokens) == per_q[qi]["decode_tokens"]

    # autotts eval of sc over all 8 traces: the majority of the collected finals (voting as the live gateway
    # would, which the store records), the engine's decode tokens
    assert store.meta["aggregator"] == "math"
    episodes = tmp_path / "ep.parquet"
    assert main(["eval", "--data", str(out), "--controller", f"sc:n={N}", "--seeds", "4", "--workers", "1",
                 "--out", str(tmp_path / "r.csv"), "--episodes-out", str(episodes), "--no-progress"]) == 0
    rows = pq.read_table(episodes).to_pylist()
    assert len(rows) == 12
    for row in rows:
        finals = store.question(row["question"]).finals
        assert row["answer"] == majority_in_opening_order(finals, row["seed"], "math"), row
        assert row["tokens"] == per_q[row["question"]]["decode_tokens"]
    assert sum(r["tokens"] for r in rows if r["seed"] == 0) == usage["decode_tokens"]

    # prefix caching: probe calls (branch + suffix) reuse the branch's blocks
    probe_rate = usage["probe_cached_tokens"] / usage["probe_prompt_tokens"]
    overall = moved["vllm:prefix_cache_hits_total"] / moved["vllm:prefix_cache_queries_total"]
    generated = moved["vllm:generation_tokens_total"]
    print(f"\ncollect: {wall:.1f}s, {generated:.0f} tokens generated ({generated / wall:.0f} tok/s), "
          f"probe-call hit rate {probe_rate:.3f}, all calls (vLLM /metrics) {overall:.3f}\n{summary}")
    assert probe_rate >= 0.8, usage
    assert f"probe prefix-cache hit rate {probe_rate:.3f}" in summary


class Recording:
    """The real engine; records chat prompts and generate prompts, and can fail like a dying server."""

    def __init__(self, engine, fail_question: str | None = None, fail_at: int = 0) -> None:
        self.engine, self.fail_question, self.fail_at = engine, fail_question, fail_at
        self.chats: list[str] = []
        self.prompts: list[list[int]] = []
        self.seen = 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    async def tokenize_chat(self, messages, **kwargs):
        self.chats.append(messages[-1]["content"])
        return await self.engine.tokenize_chat(messages, **kwargs)

    async def generate(self, prompt_ids, max_tokens, sampling, request_id):
        self.prompts.append(list(prompt_ids))
        if self.fail_question is not None and self.chats[-1] == self.fail_question:
            self.seen += 1
            if self.seen == self.fail_at:
                raise EngineDown("engine unreachable (simulated crash)")
        return await self.engine.generate(prompt_ids, max_tokens, sampling, request_id)


def test_resume_after_a_crash_recollects_nothing_finished(vllm_server, tmp_path):
    questions_path = tmp_path / "q.jsonl"
    write_questions(questions_path, "resume")
    questions = read_questions(questions_path)
    cfg = CollectSettings(model="tiny", dataset="q", n=N, segment_tokens=DELTA, max_tokens=MAX_TOKENS,
                          probe_max_tokens=PROBE_TOKENS, temperature=1.0, seed=SEED, ignore_eos=True)

    async def run(out, **kw):
        engine = Recording(VLLMHTTPEngine(vllm_server, "tiny"), **kw)
        try:
            result = await collect(engine, questions, cfg, out=out, resume=out.with_name(out.name + ".parts").exists(),
                                   concurrency=N, progress=False)
            return engine, result
        finally:
            await engine.close()

    _, straight = asyncio.run(run(tmp_path / "straight.parquet"))
    out = tmp_path / "s.parquet"
    with pytest.raises(CollectError, match=r"question 1 .*EngineDown.*1 finished question"):
        asyncio.run(run(out, fail_question=questions[1].question, fail_at=10))
    engine, resumed = asyncio.run(run(out))
    assert (resumed.collected, resumed.resumed) == (2, 1)
    assert engine.chats == [questions[1].question, questions[2].question]  # question 0 was not decoded again
    final = load_store(out)
    for qi in range(3):
        assert final.question(qi) == straight.store.question(qi), qi
    assert final.meta["usage"]["decode_tokens"] == straight.usage["decode_tokens"]
