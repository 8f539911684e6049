"""vLLM's two decoding routes for segment-wise control: `/v1/completions` vs `/inference/v1/generate` (issue 18).

    python benchmarks/engine_routes.py                       # starts vLLM on the tiny model itself (~2 min)
    python benchmarks/engine_routes.py --vllm-url http://127.0.0.1:8000 --vllm-pid PID   # a server of yours

What a segment-wise episode asks of the engine, through each route in turn (the same seeds, so the same
tokens): `--branches` branches decoded together, `--rounds` rounds of a Δ-token segment then a probe of
`--probe-tokens` on the branch's whole prefix, every call a token-ID prompt. Per route: wall seconds per
round, the vLLM server's CPU seconds per call (its process tree, from /proc: the detokenizer and the
HTTP/JSON work are in there), and the client's CPU per call. The server must run with --enable-scale-out
(the token endpoint) and prefix caching. Writes benchmarks/results/engine_routes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from autotts.sandbox._worker import _tree_cpu_s as tree_cpu_s  # noqa: E402  (a process tree's CPU, from /proc)
from live_replay import Processes, free_port  # noqa: E402  (the closed-loop example's child handling)


async def episode(engine, prompt: list[int], ns: argparse.Namespace, tag: str) -> int:
    """`ns.branches` branches, `ns.rounds` rounds of segment + probe each; returns the engine calls made."""
    from autotts.engines.base import Sampling

    suffix = await engine.tokenize_text("\n</think>\n\n\\boxed{")
    branches = [list(prompt) for _ in range(ns.branches)]

    async def branch(b: int) -> None:
        for r in range(ns.rounds):
            sampling = Sampling(temperature=1.0, seed=1000 * b + r, ignore_eos=True)
            out = await engine.generate(branches[b], ns.delta, sampling, f"{tag}-b{b}-d{r}")
            branches[b] += out.token_ids
            await engine.generate(branches[b] + suffix, ns.probe_tokens, sampling, f"{tag}-b{b}-p{r}")

    await asyncio.gather(*(branch(b) for b in range(ns.branches)))
    return 2 * ns.branches * ns.rounds


async def measure(url: str, pid: int, ns: argparse.Namespace) -> dict:
    from autotts.engines.vllm_http import VLLMHTTPEngine

    engines = {api: VLLMHTTPEngine(url, api=api) for api in ("completions", "generate")}
    for engine in engines.values():
        await engine.start()
    prompt = await engines["completions"].tokenize_chat([{"role": "user", "content": "Think step by step. " * 40}])
    runs: dict[str, list[dict]] = {api: [] for api in engines}
    for repeat in range(ns.repeats):
        for api, engine in engines.items():  # alternate, so that load changes hit both alike
            server, client, wall = tree_cpu_s(pid), time.process_time(), time.perf_counter()
            calls = await episode(engine, prompt, ns, f"{api}{repeat}")
            wall, client = time.perf_counter() - wall, time.process_time() - client
            server = tree_cpu_s(pid) - server
            runs[api].append({"wall_s_per_round": wall / ns.rounds, "server_cpu_ms_per_call": 1000 * server / calls,
                              "client_cpu_ms_per_call": 1000 * client / calls, "load_average": list(os.getloadavg())})
            print(f"{api:12s} repeat {repeat}: {runs[api][-1]['wall_s_per_round']:.3f} s/round, server "
                  f"{runs[api][-1]['server_cpu_ms_per_call']:.1f} ms CPU/call", flush=True)
    for engine in engines.values():
        await engine.close()
    best = {api: {k: round(min(r[k] for r in rs), 4) for k in rs[0] if k != "load_average"} for api, rs in runs.items()}
    return {"best_of_repeats": best, "runs": runs}


def start_vllm(work: Path, children: Processes) -> tuple[str, int]:
    import subprocess

    model = work / "model"
    subprocess.run([sys.executable, "-m", "autotts.cli.main", "tiny-model", str(model)], check=True,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TORCHDYNAMO_DISABLE": "1",
           "VLLM_CACHE_ROOT": str(work / "vllm-cache")}
    proc = children.start("vllm", [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                                   "--served-model-name", "tiny", "--enforce-eager", "--kv-cache-memory-bytes",
                                   str(256 * 2**20), "--block-size", "32", "--enable-prefix-caching",
                                   "--enable-prompt-tokens-details", "--enable-scale-out", "--host", "127.0.0.1",
                                   "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    children.wait_healthy("vllm", proc, url, timeout_s=600)
    return url, proc.pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--vllm-url", help="a running vLLM server (--enable-scale-out); default: start one")
    parser.add_argument("--vllm-pid", type=int, help="its process id (for its CPU time); needed with --vllm-url")
    parser.add_argument("--branches", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--delta", type=int, default=64, help="segment tokens Δ (default 64)")
    parser.add_argument("--probe-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "engine_routes.json")
    ns = parser.parse_args()
    if ns.vllm_url and not ns.vllm_pid:
        parser.error("--vllm-url needs --vllm-pid (the server's CPU time is what this measures)")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        children = Processes(Path(tmp))
        try:
            url, pid = (ns.vllm_url, ns.vllm_pid) if ns.vllm_url else start_vllm(Path(tmp), children)
            result = asyncio.run(measure(url, pid, ns))
        finally:
            children.stop_all()
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
              "settings": {k: getattr(ns, k) for k in ("branches", "rounds", "delta", "probe_tokens", "repeats")},
              **result}
    ns.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["best_of_repeats"], indent=1))
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
