"""Gateway overhead: the HTTP gateway + replay engine against the replay environment called directly,
and (with a vLLM server) one cmc episode against a plain n-sample request of the same tokens.

    python benchmarks/gateway.py                               # replay part only (~1 minute)
    python benchmarks/gateway.py --vllm-url http://127.0.0.1:8000 --vllm-model tiny   # + the vLLM part

Replay part, per controller over one bundled store (30 questions × --seeds seeds), every path checked to
return the same answers and tokens as the direct one:

* ``direct``: `run_episode` over `ReplayEnv` (what `autotts eval` does for non-built-in controllers);
* ``executor``: the live executor on the replay backend, no HTTP;
* ``http-asgi``: the full FastAPI app in-process (httpx ASGI transport), one request per episode;
* ``http-socket``: the app on uvicorn (a thread of this process) over a real socket, sequential requests,
  and ``http-socket-x8``: 8 concurrent clients.

Reported: episodes/s, per-request overhead against ``direct`` in ms, and the ratio.

vLLM part (tiny model on CPU, `autotts tiny-model` + vLLM's OpenAI server with prefix caching): one cmc
episode through the gateway (Δ = --segment-tokens, probes on), then one plain `/v1/completions` request
with ``n`` = the episode's branch count and ``max_tokens`` = its decode tokens / n (``ignore_eos``) on the
same prompt: the ratio of wall times is the price of segment-wise decoding + probing + the gateway.

Writes benchmarks/results/gateway.json and prints a table. The machine is shared: wall times vary.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from autotts.controllers import load
from autotts.offline.env import ReplayEnv
from autotts.offline.episode import run_episode
from autotts.offline.evaluate import bundled_data_dir
from autotts.offline.store import load_store
from autotts.server.app import build_app
from autotts.server.background import BackgroundServer
from autotts.server.config import GatewayConfig
from autotts.server.executor import Caps
from autotts.server.executor import run_episode as live_episode
from autotts.server.replay import ReplayBranchBackend

REPO = Path(__file__).resolve().parents[1]


def replay_part(store_path: Path, specs: list[str], seeds: int) -> list[dict]:
    store = load_store(store_path)
    jobs = [(q, s) for s in range(seeds) for q in range(store.n_questions)]
    app = build_app(GatewayConfig.load(overrides={"stores": [str(store_path)], "max_concurrent": 64}))
    rows = []
    with BackgroundServer(app) as url:
        for spec in specs:
            timings = _time_paths(app, url, store, jobs, spec)
            for path, seconds in timings.items():
                rows.append({"controller": spec, "path": path, "episodes": len(jobs),
                             "episodes_per_s": round(len(jobs) / seconds, 1),
                             "overhead_ms": round(1000 * (seconds - timings["direct"]) / len(jobs), 3),
                             "ratio_vs_direct": round(seconds / timings["direct"], 2)})
    return rows


def _time_paths(app, url: str, store, jobs: list[tuple[int, int]], spec: str) -> dict[str, float]:
    """Seconds per path for `jobs`; every path must give the direct path's answers and tokens."""
    controller = load(spec)
    timings, answers = {}, {}

    start = time.perf_counter()
    direct = [run_episode(controller, ReplayEnv(store), q, s) for q, s in jobs]
    timings["direct"] = time.perf_counter() - start
    answers["direct"] = [(e.answer, e.tokens) for e in direct]

    async def executor():
        out = []
        for q, s in jobs:
            backend = ReplayBranchBackend(store, q, s, prompt_tokens=1)
            o = await live_episode(controller, backend, question_id=q, question="",
                                   caps=Caps(controller_in_thread=False))
            out.append((o.answer, o.obs.tokens_spent))
        return out

    start = time.perf_counter()
    answers["executor"] = asyncio.run(executor())
    timings["executor"] = time.perf_counter() - start

    def body(q, s):
        return {"seed": s, "messages": [{"role": "user", "content": store.questions[q]}],
                "model": store.model, "tts": {"controller": spec}}

    def unpack(r):
        data = r.json()
        return data["tts"]["answer"], data["usage"]["completion_tokens"]  # content: the answer's sentence

    async def asgi():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=120) as client:
            return [unpack(await client.post("/v1/chat/completions", json=body(q, s))) for q, s in jobs]

    start = time.perf_counter()
    answers["http-asgi"] = asyncio.run(asgi())
    timings["http-asgi"] = time.perf_counter() - start

    with httpx.Client(base_url=url, timeout=120) as client:
        start = time.perf_counter()
        answers["http-socket"] = [unpack(client.post("/v1/chat/completions", json=body(q, s))) for q, s in jobs]
        timings["http-socket"] = time.perf_counter() - start

    with httpx.Client(base_url=url, timeout=120, limits=httpx.Limits(max_connections=8)) as client, \
            ThreadPoolExecutor(8) as pool:
        start = time.perf_counter()
        answers["http-socket-x8"] = list(pool.map(
            lambda job: unpack(client.post("/v1/chat/completions", json=body(*job))), jobs))
        timings["http-socket-x8"] = time.perf_counter() - start

    for path in timings:
        if answers[path] != answers["direct"]:
            raise SystemExit(f"{spec} via {path}: answers/tokens differ from the direct replay")
    return timings


def vllm_part(url: str, model: str, segment_tokens: int, beta: float) -> dict:
    prompt = "Solve step by step: " + " ".join(f"{i} plus {i + 1}" for i in range(60))
    app = build_app(GatewayConfig.load(overrides={"engine": "vllm", "engine_url": url, "model": model,
                                                  "segment_tokens": segment_tokens, "ignore_eos": True,
                                                  "probe_max_tokens": 8}))
    with BackgroundServer(app) as gw, httpx.Client(timeout=3600) as client:
        start = time.perf_counter()
        episode = client.post(gw + "/v1/chat/completions", json={
            "model": model, "seed": 1, "max_tokens": 8 * segment_tokens,
            "messages": [{"role": "user", "content": prompt}], "tts": {"controller": "cmc", "beta": beta}}).json()
        cmc_wall = time.perf_counter() - start
        tts = episode["tts"]
        n = tts["branches"]
        per_branch = math.ceil(tts["decode_tokens"] / n)
        ids = client.post(url + "/tokenize", json={"model": model, "messages": [{"role": "user", "content": prompt}],
                                                    "add_generation_prompt": True}).json()["tokens"]
        start = time.perf_counter()
        plain = client.post(url + "/v1/completions", json={"model": model, "prompt": ids, "n": n,
                                                            "max_tokens": per_branch, "ignore_eos": True,
                                                            "seed": 1}).json()
        plain_wall = time.perf_counter() - start
    return {"segment_tokens": segment_tokens, "beta": beta, "cmc_wall_s": round(cmc_wall, 2),
            "cmc_branches": n, "cmc_rounds": tts["rounds"], "cmc_engine_calls": tts["engine_calls"],
            "cmc_decode_tokens": tts["decode_tokens"], "cmc_probe_tokens": tts["probe_tokens"],
            "cmc_cached_ratio": round(episode["usage"]["prompt_tokens_details"]["cached_tokens"]
                                      / max(1, episode["usage"]["prompt_tokens"]), 3),
            "plain_n": n, "plain_max_tokens": per_branch,
            "plain_completion_tokens": plain["usage"]["completion_tokens"], "plain_wall_s": round(plain_wall, 2),
            "wall_ratio_cmc_vs_plain": round(cmc_wall / plain_wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=str(bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"))
    parser.add_argument("--controller", action="append", help="controllers (default: sc, cmc:beta=0.5)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--vllm-url", help="a vLLM OpenAI server (tiny model) for the live part")
    parser.add_argument("--vllm-model", default="tiny", help="its served model name")
    parser.add_argument("--segment-tokens", type=int, default=64)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gateway.json"))
    args = parser.parse_args()
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
              "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0], "store": Path(args.store).name}
    result["replay"] = replay_part(Path(args.store), args.controller or ["sc", "cmc:beta=0.5"], args.seeds)
    print(f"{'controller':<14} {'path':<16} {'episodes/s':>10} {'overhead ms':>12} {'x direct':>9}")
    for row in result["replay"]:
        print(f"{row['controller']:<14} {row['path']:<16} {row['episodes_per_s']:>10} {row['overhead_ms']:>12} "
              f"{row['ratio_vs_direct']:>9}")
    if args.vllm_url:
        result["vllm"] = vllm_part(args.vllm_url.rstrip("/"), args.vllm_model, args.segment_tokens, 0.5)
        print(json.dumps(result["vllm"], indent=1))
    result["load_avg_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
