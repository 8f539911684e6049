"""What answer extractors and aggregators cost: extra engine calls and latency, on the real parts.

For each aggregator, the same `sc:n=8` chat request (8 branches of 32 tokens, seed fixed) runs through a
gateway in front of a real vLLM CPU server with the tiny model; the JSON records the episode's engine calls
(branches, forced probes, the judge) and the wall time of the final vote, measured around
`Voter.settle` (model-backed aggregators) or `EpisodeMachine.settle` (key aggregators; their per-answer
classing at each reveal is not in it), next to the request's own wall time. Semantic votes are measured twice: the local
all-MiniLM model (first call includes loading it) and a vLLM pooling server serving the same model. Each
extractor's probe suffix is tokenized on the tiny model (a probe's extra prompt tokens).

    python benchmarks/votes.py --vllm-url http://127.0.0.1:8000 [--embeddings-url http://127.0.0.1:8001]

writes benchmarks/results/votes.json. Start the servers with the flags of tests/conftest.py
(`--served-model-name tiny`; the embedding server: `--runner pooling --served-model-name minilm`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

import httpx
from autotts.controllers.episode import EpisodeMachine
from autotts.controllers.extractors import parse_extractor
from autotts.server.app import build_app
from autotts.server.config import GatewayConfig
from autotts.server.voting import Voter

OUT = Path(__file__).parent / "results" / "votes.json"
EXTRACTORS = ["boxed", "number", "choice", {"kind": "json", "field": "answer"},
              {"kind": "regex", "pattern": "ANSWER: (\\w+)", "suffix": "\n</think>\n\nANSWER: "}]


def timed_voter(timings: list[float]) -> type[Voter]:
    """Times `Voter.settle` (model-backed aggregators: the embeddings or judge call included)."""
    class Timed(Voter):
        async def settle(self, machine, backend):
            start = time.perf_counter()
            await super().settle(machine, backend)
            timings.append(time.perf_counter() - start)
    return Timed


def timed_machine(timings: list[float]) -> None:
    """Times `EpisodeMachine.settle` when the executor calls it directly (key aggregators)."""
    plain = EpisodeMachine.settle

    def settle(self, **inputs):
        start = time.perf_counter()
        try:
            return plain(self, **inputs)
        finally:
            if not inputs and self.aggregator.needs is None:
                timings.append(time.perf_counter() - start)
    EpisodeMachine.settle = settle


async def run(args) -> dict:
    results: dict = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "python": platform.python_version(),
                     "load_avg": os.getloadavg(), "aggregators": {}, "extractors": {}}
    cases = [("exact", None), ("normalized", None), ("math", None), ("semantic", None), ("judge", None)]
    if args.embeddings_url:
        cases.insert(4, ("semantic", args.embeddings_url))
    for aggregator, emb in cases:
        cfg = GatewayConfig.load(overrides={"engine": "vllm", "engine_url": args.vllm_url, "segment_tokens": 16,
                                            "embeddings_url": emb, "embeddings_model": "minilm" if emb else None})
        app = build_app(cfg)
        timings: list[float] = []
        gateway = app.state.gateway
        gateway.voter.__class__ = timed_voter(timings)
        timed_machine(timings)
        walls, calls = [], []
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=600) as client:
            for rep in range(args.repeats):
                body = {"model": "tiny", "seed": rep, "max_tokens": 32, "tts": {"controller": "sc:n=8",
                                                                                "aggregator": aggregator},
                        "messages": [{"role": "user", "content": "2+2?"}]}
                start = time.perf_counter()
                data = (await client.post("/v1/chat/completions", json=body)).json()
                walls.append(time.perf_counter() - start)
                tts = data["tts"]
                calls.append({"engine_calls": tts["engine_calls"], "final_calls": tts["final_calls"],
                              "clusters": len(tts["vote"]["clusters"])})
        name = aggregator + (" (vLLM /v1/embeddings)" if emb else " (local model)" if aggregator == "semantic" else "")
        results["aggregators"][name] = {
            "request_wall_s_median": round(statistics.median(walls), 4),
            "vote_s": [round(t, 4) for t in timings], "vote_s_median": round(statistics.median(timings), 4),
            "calls": calls}
        print(name, results["aggregators"][name]["vote_s_median"], calls[-1])
    async with httpx.AsyncClient(base_url=args.vllm_url, timeout=60) as client:
        for spec in EXTRACTORS:
            suffix = parse_extractor(spec).probe_suffix
            ids = (await client.post("/tokenize", json={"model": "tiny", "prompt": suffix,
                                                         "add_special_tokens": False})).json()["tokens"]
            key = spec if isinstance(spec, str) else spec["kind"]
            results["extractors"][key] = {"suffix": suffix, "suffix_tokens_tiny": len(ids)}
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vllm-url", required=True)
    p.add_argument("--embeddings-url", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    results = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print("->", args.out)


if __name__ == "__main__":
    main()
