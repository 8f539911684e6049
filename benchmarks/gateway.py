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

vLLM part (tiny model on CPU, `autotts tiny-model` + vLLM's OpenAI server with prefix caching): per Δ and
repeat, one cmc episode through a gateway in each mode (an `overlap` mode of ``branch_mode: segments``, or
``stream``: ``branch_mode: stream``; probes on, ``ignore_eos``), then one plain `/v1/completions` request
with ``n`` = the episode's branch count and the same consumed tokens per branch on the same prompt, one per
distinct episode shape (``--together K``: K of each at once). Each episode is profiled from vLLM's /metrics
deltas (queue, prefill, decode, uncached prefill tokens, prompt tokens per generated token, prefix-cache hit
rate) and a timer around the gateway's engine calls (HTTP + JSON + API server, time with no call in flight),
plus this process's CPU (the gateway's); the summary has medians (benchmarks/README.md).

Writes benchmarks/results/gateway.json and prints a table. The machine is shared: wall times vary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import re
import statistics
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


VLLM_SERIES = ("prompt_tokens_total", "generation_tokens_total", "prefix_cache_queries_total",
               "prefix_cache_hits_total", "request_success_total", "request_queue_time_seconds_sum",
               "request_prefill_time_seconds_sum", "request_decode_time_seconds_sum",
               "request_inference_time_seconds_sum", "request_prefill_kv_computed_tokens_sum")


def scrape(url: str) -> dict[str, float]:
    """The `VLLM_SERIES` of a vLLM server's /metrics, summed over labels."""
    text = httpx.get(url + "/metrics", timeout=30).text
    out = dict.fromkeys(VLLM_SERIES, 0.0)
    for name, value in re.findall(r"^vllm:([a-z_]+)(?:\{[^}]*\})? (\S+)$", text, re.M):
        if name in out:
            out[name] += float(value)
    return out


class CallClock:
    """Times every engine call the gateway makes (it runs in this process): call-seconds, and wall time
    with no call in flight (the gateway and the controller between rounds)."""

    def __init__(self) -> None:
        self.calls = self.in_flight = 0
        self.call_s = self.idle_s = 0.0
        self._idle_since: float | None = None

    def install(self) -> None:
        from autotts.engines.vllm_http import VLLMHTTPEngine

        original, streamed, clock = VLLMHTTPEngine.generate, VLLMHTTPEngine.stream, self

        async def timed(engine, *args, **kwargs):
            t = clock._enter()
            try:
                return await original(engine, *args, **kwargs)
            finally:
                clock._leave(t)

        async def timed_stream(engine, *args, **kwargs):  # a branch's stream: one call, open to close
            t = clock._enter()
            try:
                async for chunk in streamed(engine, *args, **kwargs):
                    yield chunk
            finally:
                clock._leave(t)

        VLLMHTTPEngine.generate, VLLMHTTPEngine.stream = timed, timed_stream

    def start(self) -> None:
        self.calls = self.in_flight = 0
        self.call_s = self.idle_s = 0.0
        self._idle_since = time.perf_counter()

    def stop(self) -> None:
        if self._idle_since is not None:
            self.idle_s += time.perf_counter() - self._idle_since
        self._idle_since = None

    def _enter(self) -> float:
        self.calls += 1
        if self.in_flight == 0 and self._idle_since is not None:
            self.idle_s += time.perf_counter() - self._idle_since
        self.in_flight += 1
        return time.perf_counter()

    def _leave(self, started: float) -> None:
        self.call_s += time.perf_counter() - started
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle_since = time.perf_counter()


def _measured(url: str, run, clock: CallClock | None = None) -> dict:
    """Run `run()`; its wall, this process's CPU and the engine's counters over it."""
    before, cpu = scrape(url), time.process_time()
    if clock:
        clock.start()
    start = time.perf_counter()
    out = run()
    wall = time.perf_counter() - start
    if clock:
        clock.stop()
    cpu = time.process_time() - cpu
    after = scrape(url)
    d = {k: after[k] - before[k] for k in VLLM_SERIES}
    row = {"wall_s": wall, "cpu_s_this_process": cpu, "engine_requests": d["request_success_total"],
           "prompt_tokens": d["prompt_tokens_total"], "generated_tokens": d["generation_tokens_total"],
           "prompt_per_generated": d["prompt_tokens_total"] / max(1.0, d["generation_tokens_total"]),
           "prefix_hit_rate": d["prefix_cache_hits_total"] / max(1.0, d["prefix_cache_queries_total"]),
           "uncached_prefill_tokens": d["request_prefill_kv_computed_tokens_sum"],
           "engine_queue_s": d["request_queue_time_seconds_sum"],
           "engine_prefill_s": d["request_prefill_time_seconds_sum"],
           "engine_decode_s": d["request_decode_time_seconds_sum"],
           "engine_inference_s": d["request_inference_time_seconds_sum"], "result": out}
    if clock:
        row.update(engine_calls=clock.calls, call_s=clock.call_s, no_call_in_flight_s=clock.idle_s,
                   http_json_api_s=clock.call_s - d["request_queue_time_seconds_sum"]
                   - d["request_inference_time_seconds_sum"])
    return row


def vllm_part(url: str, model: str, deltas: list[int], beta: float, branch_tokens: int, repeats: int,
              together: int, together_deltas: list[int], modes: list[str]) -> dict:
    """Episodes in each mode vs plain n-sample requests of the same tokens, interleaved and repeated; medians."""
    clock = CallClock()
    clock.install()
    prompt = "Solve step by step: " + " ".join(f"{i} plus {i + 1}" for i in range(60))
    messages = [{"role": "user", "content": prompt}]
    ids = httpx.post(url + "/tokenize", json={"model": model, "messages": messages, "add_generation_prompt": True},
                     timeout=60).json()["tokens"]
    out: dict = {"prompt_tokens": len(ids), "branch_tokens": branch_tokens, "beta": beta, "modes": modes,
                 "rows": []}
    for delta in sorted(set(deltas) | (set(together_deltas) if together else set())):
        parts = ([1] if delta in deltas else []) + ([together] if together and delta in together_deltas else [])
        with Live(url, model, delta, modes, messages, ids, branch_tokens, beta) as live:
            for at_once in parts:
                for r in range(repeats):  # interleaved: the machine's load hits every mode and plain alike
                    out["rows"].extend(live.compare(at_once, [100 * r + i + 1 for i in range(at_once)], r, clock))
    out["summary"] = _summary(out["rows"])
    return out


class Live:
    """One gateway per overlap mode at Δ = `delta` on the vLLM server at `url`, and the plain requests."""

    def __init__(self, url, model, delta, modes, messages, ids, branch_tokens, beta) -> None:
        self.url, self.model, self.delta, self.modes = url, model, delta, modes
        self.messages, self.ids, self.branch_tokens, self.beta = messages, ids, branch_tokens, beta
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> Live:
        self.gateways = {mode: self.stack.enter_context(BackgroundServer(build_app(GatewayConfig.load(overrides={
            "engine": "vllm", "engine_url": self.url, "model": self.model, "segment_tokens": self.delta,
            "ignore_eos": True, "probe_max_tokens": 8, "max_concurrent": 64, **({"branch_mode": "stream",
            "stream_spares": int(mode[7:] or 0)} if mode.startswith("stream") else {"overlap": mode})}))))
            for mode in self.modes}
        self.client = self.stack.enter_context(httpx.Client(timeout=3600))
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()

    def episode(self, mode: str, seed: int) -> dict:
        reply = self.client.post(self.gateways[mode] + "/v1/chat/completions", json={
            "model": self.model, "seed": seed, "max_tokens": self.branch_tokens, "messages": self.messages,
            "tts": {"controller": "cmc", "beta": self.beta}})
        if reply.status_code != 200:
            raise SystemExit(f"episode failed ({reply.status_code}): {reply.text[:300]}")
        return reply.json()["tts"]

    def plain(self, n: int, per_branch: int, seed: int) -> dict:
        reply = self.client.post(self.url + "/v1/completions", json={
            "model": self.model, "prompt": self.ids, "n": n, "max_tokens": per_branch, "ignore_eos": True,
            "seed": seed})
        reply.raise_for_status()
        return reply.json()

    @staticmethod
    def shape(tts: dict) -> tuple[int, int]:
        used = tts["decode_tokens"] - tts.get("overshoot_tokens", 0)
        return tts["branches"], math.ceil(used / tts["branches"])

    def compare(self, at_once: int, seeds: list[int], repeat: int, clock: CallClock) -> list[dict]:
        """`at_once` episodes at once in each mode, then as many plain requests of each distinct set of shapes."""
        episodes, plains = {}, {}
        with ThreadPoolExecutor(at_once) as pool:
            for mode in self.modes:
                episodes[mode] = _measured(self.url, lambda m=mode: list(pool.map(self.episode, [m] * at_once,
                                                                                  seeds)), clock)
            for mode in self.modes:
                shapes = tuple(self.shape(t) for t in episodes[mode]["result"])
                if shapes not in plains:
                    plains[shapes] = _measured(self.url, lambda s=shapes: list(
                        pool.map(self.plain, *zip(*s, strict=True), seeds)))
                    plains[shapes].pop("result")
        rows = []
        for mode, ep in episodes.items():
            results = ep.pop("result")
            shapes = tuple(self.shape(t) for t in results)
            tts = {k: sum(t.get(k, 0) for t in results) for k in
                   ("branches", "rounds", "engine_calls", "decode_tokens", "probe_tokens", "overshoot_tokens")}
            rows.append(_row(self.delta, at_once, mode, repeat, tts, shapes, ep, plains[shapes]))
            print(json.dumps(rows[-1]), flush=True)
        return rows


def _row(delta: int, episodes: int, mode: str, repeat: int, tts: dict, shapes: list, ep: dict, pl: dict) -> dict:
    return {"segment_tokens": delta, "episodes_at_once": episodes, "overlap": mode, "repeat": repeat,
            "branches": tts["branches"], "rounds": tts["rounds"], "tts_engine_calls": tts["engine_calls"],
            "decode_tokens": tts["decode_tokens"], "probe_tokens": tts["probe_tokens"],
            "overshoot_tokens": tts["overshoot_tokens"], "plain_shapes": shapes, "ratio": ep["wall_s"] / pl["wall_s"],
            "episode": {k: round(v, 3) for k, v in ep.items()}, "plain": {k: round(v, 3) for k, v in pl.items()},
            "load_avg": os.getloadavg()[0]}


def _summary(rows: list[dict]) -> list[dict]:
    """Medians per (Δ, episodes at once, overlap mode) over the repeats."""
    out = []
    for key in sorted({(r["segment_tokens"], r["episodes_at_once"], r["overlap"]) for r in rows}):
        group = [r for r in rows if (r["segment_tokens"], r["episodes_at_once"], r["overlap"]) == key]

        def med(get, group=group):
            return round(statistics.median(get(r) for r in group), 3)

        at_once = key[1]

        out.append({"segment_tokens": key[0], "episodes_at_once": key[1], "overlap": key[2], "repeats": len(group),
                    "branches": med(lambda r: r["branches"]), "rounds": med(lambda r: r["rounds"]),
                    "engine_calls": med(lambda r: r["episode"]["engine_calls"]),
                    "episode_wall_s": med(lambda r: r["episode"]["wall_s"]),
                    "plain_wall_s": med(lambda r: r["plain"]["wall_s"]), "ratio": med(lambda r: r["ratio"]),
                    "prompt_per_generated": med(lambda r: r["episode"]["prompt_per_generated"]),
                    "prefix_hit_rate": med(lambda r: r["episode"]["prefix_hit_rate"]),
                    "gateway_cpu_s_per_episode": med(lambda r, k=at_once: r["episode"]["cpu_s_this_process"] / k),
                    "call_s": med(lambda r: r["episode"]["call_s"]),
                    "http_json_api_s": med(lambda r: r["episode"]["http_json_api_s"]),
                    "engine_queue_s": med(lambda r: r["episode"]["engine_queue_s"]),
                    "engine_prefill_s": med(lambda r: r["episode"]["engine_prefill_s"]),
                    "engine_decode_s": med(lambda r: r["episode"]["engine_decode_s"]),
                    "no_call_in_flight_s": med(lambda r: r["episode"]["no_call_in_flight_s"]),
                    "plain_engine_decode_s": med(lambda r: r["plain"]["engine_decode_s"]),
                    "overshoot_tokens": med(lambda r: r["overshoot_tokens"]),
                    "load_avg": med(lambda r: r["load_avg"])})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=str(bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"))
    parser.add_argument("--controller", action="append", help="controllers (default: sc, cmc:beta=0.5)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--vllm-url", help="a vLLM OpenAI server (tiny model) for the live part")
    parser.add_argument("--vllm-model", default="tiny", help="its served model name")
    parser.add_argument("--segment-tokens", type=int, action="append", help="Δ of the live part (default 64, 128)")
    parser.add_argument("--branch-tokens", type=int, default=1024, help="max_tokens per branch (ignore_eos)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved episode/plain pairs per Δ")
    parser.add_argument("--together", type=int, default=4, help="episodes at once (0: skip that part)")
    parser.add_argument("--together-delta", type=int, action="append", help="Δ of the episodes-at-once part "
                        "(default 128; repeat for several)")
    parser.add_argument("--overlap", action="append", choices=["off", "probe", "ahead", "stream", "stream+2"],
                        help="modes of the live part: overlap modes of branch_mode segments, or stream[+N] "
                             "(branch_mode stream, N spare streams) (default: off, ahead; off is main's behaviour)")
    parser.add_argument("--skip-replay", action="store_true", help="only the vLLM part")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gateway.json"))
    args = parser.parse_args()
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
              "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0], "store": Path(args.store).name}
    if not args.skip_replay:
        result["replay"] = replay_part(Path(args.store), args.controller or ["sc", "cmc:beta=0.5"], args.seeds)
        print(f"{'controller':<14} {'path':<16} {'episodes/s':>10} {'overhead ms':>12} {'x direct':>9}")
        for row in result["replay"]:
            print(f"{row['controller']:<14} {row['path']:<16} {row['episodes_per_s']:>10} "
                  f"{row['overhead_ms']:>12} {row['ratio_vs_direct']:>9}")
    if args.vllm_url:
        result["vllm"] = vllm_part(args.vllm_url.rstrip("/"), args.vllm_model, args.segment_tokens or [64, 128],
                                   0.5, args.branch_tokens, args.repeats, args.together, args.together_delta or [128],
                                   args.overlap or ["off", "ahead"])
        print(json.dumps(result["vllm"]["summary"], indent=1))
    result["load_avg_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
