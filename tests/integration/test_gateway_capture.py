"""Serve requests with traffic capture on, label some through POST /v1/feedback, then evaluate controllers
on the captured store with `autotts eval` and check its numbers against an independent computation.

Three engines: the replay engine (a bundled store), the in-process fake token engine, and real vLLM
(CPU build, tiny model: conftest.vllm_server; skipped with a reason when vLLM is absent, failed under
CI=true). The independent side reads the capture files with pyarrow only (no autotts loader), groups
rows by prompt hash in capture order, replays ``sc:n=K`` by hand (CPython shuffle of the question's
branches by seed, majority of the first K finals, ties to the first seen, tokens = their sum) and
scores it against the golds this test sent as feedback.
"""

from __future__ import annotations

import asyncio
import csv
import random
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
import pyarrow.parquet as pq
from autotts.cli.main import main
from autotts.controllers.aggregators import parse_aggregator
from autotts.controllers.registry import load
from autotts.engines.fake import FakeEngine
from autotts.offline.check import _episode_log
from autotts.offline.env import ReplayEnv
from autotts.offline.evaluate import bundled_data_dir
from autotts.offline.store import load_store
from autotts.server.app import build_app
from autotts.server.config import GatewayConfig
from autotts.server.gateway import Gateway

pytestmark = pytest.mark.timeout(900)

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"
SEEDS = 5


async def _serve(app, plan) -> list[tuple[dict, dict | None]]:
    """POST every (request body, feedback or None) of `plan`; returns [(response, feedback sent)]."""
    out = []
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw",
                                                                   timeout=600) as client:
        for body, label in plan:
            response = await client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            out.append((response.json(), label))
        for data, label in out:
            if label is not None:
                sent = await client.post("/v1/feedback", json={"id": data["id"], **label})
                assert sent.status_code == 200, sent.text
    return out  # the lifespan has closed: every captured episode is on disk


def _majority(answers: list[str], aggregator: str = "exact") -> str:
    """The vote's winner: the first of the most frequent answers, after joining classes for a key aggregator."""
    equivalence = parse_aggregator(aggregator).equivalence()
    answers = [equivalence(a) if equivalence else a for a in answers]
    counts = Counter(answers)
    top = max(counts.values())
    return next(a for a in answers if counts[a] == top)


def _independent(leaf: Path, served: list[tuple[dict, dict | None]]) -> tuple[list[dict], dict[str, list[dict]]]:
    """Questions in capture order (rows, gold from the feedback sent), and rows by completion id."""
    rows = [r for f in sorted(leaf.glob("capture-*.parquet")) for r in pq.read_table(f).to_pylist()]
    by_completion: dict[str, list[dict]] = {}
    questions: dict[str, dict] = {}
    for row in rows:
        by_completion.setdefault(row["completion_id"], []).append(row)
        questions.setdefault(row["prompt_sha256"], {"rows": [], "gold": None})["rows"].append(row)
    for data, label in served:
        if label is None:
            continue
        # "correct" makes the served answer gold: the extracted one (`content` is the answer's sentence)
        gold = label.get("gold") or (data["tts"]["answer"] if label.get("correct") else None)
        if gold is not None:
            key = by_completion[data["id"]][0]["prompt_sha256"]
            questions[key]["gold"] = gold
    return list(questions.values()), by_completion


def check_capture(tmp: Path, leaf: Path, served: list[tuple[dict, dict | None]]) -> dict:
    questions, by_completion = _independent(leaf, served)
    # 1. every request was captured, and its rows are the episode it served
    assert set(by_completion) == {data["id"] for data, _ in served}
    for data, _ in served:
        rows, tts = by_completion[data["id"]], data["tts"]
        assert len(rows) == tts["branches"]
        assert sum(r["branch_tokens"] for r in rows) == tts["decode_tokens"]
        assert {r["spec"] for r in rows} == {tts["spec"]} and {r["answer"] for r in rows} == {tts["answer"]}
        assert all(r["complete"] or r["pruned"] or r["final_answer"] for r in rows)
        if tts["controller"] == "sc":  # full reads: the served answer is the majority of the captured finals
            assert all(r["complete"] for r in rows)
            ordered = sorted(rows, key=lambda r: r["opened"])
            assert tts["answer"] == _majority([r["final_answer"] for r in ordered], tts["aggregator"])
    # 2. `autotts eval` on the capture directory
    k = min(len(q["rows"]) for q in questions)
    out = tmp / "eval"
    out.mkdir()
    assert main(["eval", "--data", str(tmp / "capture"), "--controller", f"sc:n={k}", "--controller", "cmc:beta=0.5",
                 "--seeds", str(SEEDS), "--workers", "1", "--out", str(out / "r.csv"),
                 "--episodes-out", str(out / "ep.parquet"), "--no-progress"]) == 0
    with open(out / "r.csv", newline="") as fh:
        table = {r["spec"]: r for r in csv.DictReader(fh)}
    episodes = pq.read_table(out / "ep.parquet").to_pylist()
    # 3. sc:n=k by hand from the raw rows, voting as the gateway did (the store records how)
    voted = {data["tts"]["aggregator"] for data, _ in served}
    assert len(voted) == 1 and load_store(leaf).meta["aggregator"] == next(iter(voted))
    expected, correct, tokens = {}, [], []
    for qi, q in enumerate(questions):
        for seed in range(SEEDS):
            order = list(range(len(q["rows"])))
            random.Random(seed).shuffle(order)
            first = [q["rows"][i] for i in order[:k]]
            answer = _majority([r["final_answer"] for r in first], next(iter(voted)))
            expected[qi, seed] = answer
            tokens.append(sum(r["branch_tokens"] for r in first))
            if q["gold"] is not None:
                correct.append(answer == q["gold"])
    got = {(e["question"], e["seed"]): e["answer"] for e in episodes if e["spec"] == f"sc:n={k}"}
    assert got == expected
    sc = table[f"sc:n={k}"]
    assert float(sc["avg_tokens"]) == pytest.approx(sum(tokens) / len(tokens), abs=1e-4)
    assert correct and float(sc["accuracy_pct"]) == pytest.approx(100 * sum(correct) / len(correct), abs=1e-4)
    assert int(sc["episodes"]) == len(questions) * SEEDS and sc["failed"] == "0"
    # 4. a probing controller replays the captured (partly truncated) branches without a failure
    cmc = table["cmc:beta=0.5"]
    assert cmc["failed"] == "0" and float(cmc["avg_tokens"]) > 0
    store = load_store(leaf)
    assert store.meta["questions_with_gold"] == sum(q["gold"] is not None for q in questions)
    return {"questions": len(questions), "k": k, "sc": sc, "cmc": cmc, "store": store}


def test_replay_engine_capture_then_eval(tmp_path: Path) -> None:
    source = load_store(STORE)
    plan = []
    for qi in range(10):
        for spec in ("sc:n=8", "cmc:beta=0.5"):
            label = None
            if spec.startswith("sc") and qi < 6:
                label = {"gold": source.golds[qi]}  # the recorded gold, sent as feedback
            elif spec.startswith("cmc") and qi in (6, 7):
                label = {"correct": qi == 6}  # correct → the served answer is gold; wrong → no gold
            plan.append(({"model": "Qwen3-8B", "seed": 10 + qi, "tts": {"controller": spec},
                          "messages": [{"role": "user", "content": source.questions[qi]}]}, label))
    app = build_app(GatewayConfig.load(overrides={"stores": [str(STORE)], "capture_dir": str(tmp_path / "capture"),
                                                  "capture_rate": 1, "capture_rows_per_file": 7}))
    served = asyncio.run(_serve(app, plan))
    leaf = tmp_path / "capture" / "Qwen3-8B" / "seg500"
    assert len(list(leaf.glob("capture-*.parquet"))) == 3  # 20 episodes, 7 per file
    result = check_capture(tmp_path, leaf, served)
    assert result["questions"] == 10 and result["store"].meta["questions_with_gold"] == 7
    assert result["store"].meta["truncated_branches"] > 0  # cmc abandoned some branches
    # offline/check semantics on the captured store: every built-in ends each episode legally, deterministically
    store, k = result["store"], result["k"]
    for spec in (f"asc:n={k}", f"esc:n={k}", "parallel_probe", "cmc:beta=0", "cmc:beta=1"):
        controller, env = load(spec), ReplayEnv(store, max_steps=2000)
        logs = [_episode_log(controller, env, q, seed) for q in range(store.n_questions) for seed in range(2)]
        assert logs == [_episode_log(controller, env, q, seed)
                        for q in range(store.n_questions) for seed in range(2)], spec


def test_fake_engine_capture_then_eval(tmp_path: Path) -> None:
    prompts = [f"live question {i}: what is {i} + {i}?" for i in range(5)]
    plan = []
    for i, prompt in enumerate(prompts):
        for spec in ("sc:n=3", "cmc:beta=0.2"):
            label = {"correct": True} if spec.startswith("sc") and i < 3 else (
                {"gold": "zz"} if i == 4 and spec.startswith("cmc") else None)
            plan.append(({"model": "fake", "seed": 100 + i, "max_tokens": 64, "tts": {"controller": spec},
                          "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": prompt}]}, label))
    config = GatewayConfig.load(overrides={"engine": "vllm", "engine_url": "http://unused", "segment_tokens": 16,
                                           "probe_max_tokens": 3, "capture_dir": str(tmp_path / "capture"),
                                           "capture_rate": 1})
    prompt_length = len("<system>be brief<user>" + prompts[0] + "<assistant>")  # FakeEngine's chat template
    assert len({len(p) for p in prompts}) == 1
    # every branch emits EOS after 40 tokens: segments of 16, 16 and 8, then the final answer by a forced probe
    app = build_app(gateway=Gateway(config, engine=FakeEngine(eos_at=40, prompt_base=prompt_length)))
    served = asyncio.run(_serve(app, plan))
    leaf = tmp_path / "capture" / "fake" / "seg16"
    result = check_capture(tmp_path, leaf, served)
    assert result["questions"] == 5 and result["store"].meta["questions_with_gold"] == 4
    rows = [r for f in leaf.glob("capture-*.parquet") for r in pq.read_table(f).to_pylist()]
    assert {r["question"] for r in rows} == set(prompts)  # the last user message, not the system prompt
    assert {(r["temperature"], r["top_p"]) for r in rows} == {(0.6, 0.95)}
    assert {r["branch_tokens"] for r in rows} == {40} and {len(r["probe_answers"]) for r in rows} == {2}


def test_vllm_capture_then_eval(tmp_path: Path, vllm_server: str) -> None:
    plan = []
    for i in range(3):
        for spec in ("sc:n=2", "cmc:beta=0.0"):
            label = {"correct": True} if spec.startswith("sc") else None
            plan.append(({"model": "tiny", "seed": 7 + i, "max_tokens": 96, "tts": {"controller": spec},
                          "messages": [{"role": "user", "content": f"capture question {i}: add {i} and 2"}]}, label))
    app = build_app(GatewayConfig.load(overrides={
        "engine": "vllm", "engine_url": vllm_server, "segment_tokens": 32, "probe_max_tokens": 4, "ignore_eos": True,
        "capture_dir": str(tmp_path / "capture"), "capture_rate": 1}))
    served = asyncio.run(_serve(app, plan))
    result = check_capture(tmp_path, tmp_path / "capture" / "tiny" / "seg32", served)
    assert result["questions"] == 3 and result["store"].meta["questions_with_gold"] == 3
