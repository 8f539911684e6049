"""Live-vs-offline parity: the gateway's replay engine, through the real HTTP stack, returns exactly the
answer and token count of `autotts eval --episodes-out` for every (question, seed) of one bundled store.

30 questions × seeds 0..2 × {sc, asc, esc, parallel_probe, cmc:beta=0.5} = 450 requests. The offline
side is the `autotts eval` command itself (its fast kernels included); the live side is the FastAPI app
driven over HTTP (httpx + ASGI transport), so request parsing, controller selection, the executor's
plan/run/apply cycle and response building are all in the loop. The unit tests
(tests/unit/test_server_executor.py) check the same parity with concurrency forced on.
"""

from __future__ import annotations

import asyncio

import pyarrow.parquet as pq
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.cli.main import main
from autotts.offline.evaluate import bundled_data_dir
from autotts.offline.store import load_store
from autotts.server.app import build_app
from autotts.server.config import GatewayConfig

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"
SPECS = ["sc", "asc", "esc", "parallel_probe", "cmc:beta=0.5"]
SEEDS = 3


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int, int], dict]:
    out = tmp_path_factory.mktemp("eval")
    args = ["eval", "--data", str(STORE), "--seeds", str(SEEDS), "--workers", "1", "--out", str(out / "r.csv"),
            "--episodes-out", str(out / "ep.parquet"), "--no-progress"]
    for spec in SPECS:
        args += ["--controller", spec]
    assert main(args) == 0
    rows = pq.read_table(out / "ep.parquet").to_pylist()
    assert len(rows) == len(SPECS) * 30 * SEEDS
    return {(r["spec"], r["question"], r["seed"]): r for r in rows}


async def _serve_all(questions: list[str]) -> dict[tuple[str, int, int], dict]:
    app = build_app(GatewayConfig.load(overrides={"stores": [str(STORE)]}))
    results = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            for spec in SPECS:
                for qi, question in enumerate(questions):
                    for seed in range(SEEDS):
                        response = await client.post("/v1/chat/completions", json={
                            "model": "Qwen3-8B", "seed": seed, "tts": {"controller": spec},
                            "messages": [{"role": "system", "content": "Reason step by step."},
                                         {"role": "user", "content": f"  {question}\n"}]})
                        assert response.status_code == 200, response.text
                        results[spec, qi, seed] = response.json()
    return results


def test_every_episode_matches_autotts_eval(offline: dict) -> None:
    questions = load_store(STORE).questions
    live = asyncio.run(_serve_all(questions))
    mismatches = []
    for key, row in offline.items():
        body = live[key]
        tts, usage = body["tts"], body["usage"]
        got = (tts["answer"], usage["completion_tokens"], tts["decode_tokens"],
               tts["tokens_spent"], tts["branches"], tts["probes"], tts["rounds"])
        want = (row["answer"], row["tokens"], row["tokens"], row["tokens"], row["branches"], row["probes"],
                row["steps"])
        if got != want:
            mismatches.append((key, got, want))
        assert tts["question"] == key[1] and tts["seed"] == key[2] and tts["store"] == "Qwen3-8B/aime25"
        sentence = None if tts["answer"] is None else f"The answer is $\\boxed{{{tts['answer']}}}$."
        assert body["choices"][0]["message"]["content"] == sentence  # replay stores keep no text
    assert not mismatches, f"{len(mismatches)} of {len(offline)} episodes differ, first: {mismatches[:3]}"
    # the comparison is not vacuous: controllers differ in cost, and sc spends the most
    sc = sum(offline["sc", q, s]["tokens"] for q in range(30) for s in range(SEEDS))
    cmc = sum(offline["cmc:beta=0.5", q, s]["tokens"] for q in range(30) for s in range(SEEDS))
    assert cmc < sc


