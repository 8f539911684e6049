"""Load: hundreds of concurrent streaming requests against the gateway on loopback, then a leak check.

    python benchmarks/load.py                                    # ~1-2 minutes on 2 shared cores
    python benchmarks/load.py --requests 600 --concurrency 300 --waves 4 --disconnect-fraction 0.3

The gateway (replay engine over the bundled stores, ``max_concurrent`` raised above the load) runs on
uvicorn in a thread of this process; the clients are httpx async streams in the main thread. Every
request is a streaming chat completion with ``stream_options.include_usage``: a controller from
sc / esc / cmc (β varied), a question from a bundled store of a random model, a seed from `--seed-pool`.

Waves: one warm-up wave (not reported in the growth figure), ``--waves`` measured waves, then one wave
where ``--disconnect-fraction`` of the clients hang up after the first chunk. Each wave reports errors
by HTTP status (plus transport errors and error events inside streams), latency p50/p90/p99 to the
last byte, time to first byte, requests/s and completion tokens/s as the gateway reports them in
`usage`, and the process's resident memory. After every wave the benchmark waits for the gateway to
settle and checks for leaks: ``in_flight`` on /health back to 0, asyncio tasks in the gateway's event
loop back to the pre-load baseline, uvicorn's open connections back to 0, no `Job` or replay backend
objects still alive. A sample of the finished streams (``--verify`` per wave) is checked against the
same episode replayed directly (answer and tokens), so cross-talk between concurrent requests would
show up as a failure, not as a number.

Writes benchmarks/results/load.json (atomically) and prints a table. The machine is shared: the JSON
records core count, load average at start and end, and the Python version. The client runs in the
same process (same GIL) as the gateway, so latencies include client-side work; growth of resident
memory is the figure that matters, not its absolute size. tests/integration/test_load_smoke.py runs
the same code at small scale and asserts correctness only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from autotts.controllers import load
from autotts.controllers.atomic import write_text_atomic
from autotts.offline.env import ReplayEnv, branch_order
from autotts.offline.episode import run_episode
from autotts.offline.store import ReplayStore
from autotts.server.app import build_app
from autotts.server.background import BackgroundServer
from autotts.server.config import GatewayConfig
from autotts.server.gateway import Job
from autotts.server.replay import ReplayBranchBackend, bundled_stores

REPO = Path(__file__).resolve().parents[1]
CONTROLLERS = ("sc", "esc", "cmc")
SEED_POOL_HELP = ("seeds are drawn from range(N) (default 1000): the replay engine keeps the branch order of the "
                  "last 4,096 (question size, seed) pairs in an LRU cache (about 1 KB each), so with unbounded "
                  "seeds resident memory climbs by up to ~4-5 MB until that cache is full; a pool this size "
                  "fills it during the warm-up, and growth after it is then a leak")


@dataclass(frozen=True)
class Request:
    store: int  # index into the harness's stores
    question: int
    seed: int
    spec: str  # controller spec sent as tts.controller
    disconnect: bool = False  # hang up after the first chunk


@dataclass
class Outcome:
    request: Request
    status: int | None = None  # None: transport error before a status
    error: str | None = None  # transport error type, or an error event inside a 200 stream
    ttfb_s: float | None = None
    latency_s: float | None = None
    answer: str | None = None
    completion_tokens: int | None = None
    done: bool = False  # saw data: [DONE]
    usage_chunk: bool = False  # saw the final chunk with `usage` and no choices
    finish_chunk: bool = False  # saw a chunk with a finish_reason


@dataclass
class Settled:
    in_flight: int
    tasks: int
    connections: int
    live_jobs: int
    objects: int  # objects the garbage collector tracks (containers): flat across waves if nothing piles up
    waited_s: float


@dataclass
class Harness:
    """A running gateway (uvicorn thread) plus the probes the leak check needs."""

    url: str
    app: Any
    server: BackgroundServer
    stores: list[ReplayStore]
    loop_probe: _LoopProbe
    baseline_tasks: int = 0  # tasks in the gateway's loop before any load (uvicorn's own)

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def in_loop(self, fn: Any) -> Any:
        """Run `fn()` inside the gateway's event loop (thread-safe) and return its result."""
        async def call() -> Any:
            return fn()

        loop = self.loop_probe.loop
        assert loop is not None, "the gateway loop has not served a request yet"
        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    def snapshot(self) -> Settled:
        def look() -> tuple[int, int, int, int, int]:
            gc.collect()
            objects = gc.get_objects()
            live = sum(1 for o in objects if isinstance(o, Job | ReplayBranchBackend))
            return (self.gateway.in_flight, len(asyncio.all_tasks()) - 1,  # minus this look itself
                    len(self.server.server.server_state.connections), live, len(objects))

        return Settled(*self.in_loop(look), waited_s=0.0)

    def server_statuses(self) -> dict[str, int]:
        """The gateway's own request count by final status (`cancelled`: the client left mid-episode)."""
        def read() -> dict[str, int]:
            counts: Counter[str] = Counter()
            for metric in self.gateway.metrics.requests.collect():
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        counts[sample.labels["status"]] += int(sample.value)
            return dict(counts)

        return self.in_loop(read)

    def settle(self, timeout_s: float = 15.0, *, tasks: bool = True) -> Settled:
        """Poll until nothing is left over from the last wave (or the timeout passes); the last look."""
        start = time.perf_counter()
        while True:
            s = self.snapshot()
            s.waited_s = round(time.perf_counter() - start, 3)
            clean = (s.in_flight == 0 and s.connections == 0 and s.live_jobs == 0
                     and (not tasks or s.tasks <= self.baseline_tasks))
            if clean or s.waited_s > timeout_s:
                return s
            time.sleep(0.05)


class _LoopProbe:
    """ASGI wrapper that remembers the event loop the gateway runs in (nothing new exposed over HTTP)."""

    def __init__(self, app: Any) -> None:
        self.app, self.loop = app, None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)


@contextmanager
def gateway(concurrency: int, store_paths: list[Path] | None = None, **overrides: Any) -> Iterator[Harness]:
    """The replay gateway on loopback, sized for `concurrency` streams; yields a ready Harness."""
    paths = store_paths or bundled_stores()
    config = GatewayConfig.load(overrides={"stores": [str(p) for p in paths], "max_concurrent": 2 * concurrency,
                                           **overrides})
    app = build_app(config)
    probe = _LoopProbe(app)
    server = BackgroundServer(probe)
    with server as url:
        httpx.get(url + "/health", timeout=30).raise_for_status()  # the loop probe sees the loop
        stores = list(app.state.gateway.catalog.stores)
        harness = Harness(url, app, server, stores, probe)
        harness.baseline_tasks = harness.settle(timeout_s=5, tasks=False).tasks
        yield harness


def make_requests(harness: Harness, count: int, rng: random.Random, disconnect_fraction: float = 0.0,
                  seed_pool: int = 1000) -> list[Request]:
    """`count` random requests; seeds from ``range(seed_pool)`` (see `SEED_POOL_HELP`)."""
    out = []
    for _ in range(count):
        si = rng.randrange(len(harness.stores))
        name = rng.choice(CONTROLLERS)
        spec = f"cmc:beta={rng.choice((0.0, 0.25, 0.5, 0.75, 1.0))}" if name == "cmc" else name
        out.append(Request(si, rng.randrange(harness.stores[si].n_questions), rng.randrange(seed_pool), spec,
                           disconnect=rng.random() < disconnect_fraction))
    return out


def body(harness: Harness, r: Request) -> dict[str, Any]:
    store = harness.stores[r.store]
    return {"model": store.model, "seed": r.seed, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": store.questions[r.question]}], "tts": {"controller": r.spec}}


async def _one(client: httpx.AsyncClient, harness: Harness, r: Request) -> Outcome:
    out = Outcome(r)
    start = time.perf_counter()
    content: list[str] = []
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body(harness, r)) as response:
            out.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                out.error = f"http {response.status_code}: {response.text[:200]}"
                return out
            async for line in response.aiter_lines():
                if out.ttfb_s is None:
                    out.ttfb_s = time.perf_counter() - start
                if r.disconnect:  # hang up mid-stream: leaving the block closes the connection
                    return out
                if not line.startswith("data: "):
                    continue
                data = line[len("data: "):]
                if data == "[DONE]":
                    out.done = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    out.error = f"stream error: {chunk['error'].get('message')}"
                    continue
                if chunk.get("usage") is not None and not chunk["choices"]:
                    out.usage_chunk, out.completion_tokens = True, chunk["usage"]["completion_tokens"]
                for choice in chunk["choices"]:
                    content.append(choice["delta"].get("content") or "")
                    if choice.get("finish_reason") is not None:  # the episode's report rides on the finish chunk
                        out.finish_chunk, out.answer = True, (chunk.get("tts") or {}).get("answer")
    except httpx.HTTPError as exc:
        out.error = (f"transport: {type(exc).__name__}: {exc} (after {time.perf_counter() - start:.2f} s, "
                     f"{'after' if out.status else 'before'} the status line)")
        return out
    out.latency_s = time.perf_counter() - start
    sentence = None if out.answer is None else f"The answer is $\\boxed{{{out.answer}}}$."
    if "".join(content) != (sentence or "") and out.error is None:  # replay stores: content is the answer's sentence
        out.error = f"streamed content {''.join(content)!r:.80} is not the sentence of the answer {out.answer!r}"
    if not (out.done and out.usage_chunk and out.finish_chunk) and out.error is None:
        out.error = "stream ended without finish chunk, usage chunk and [DONE]"
    return out


async def run_wave(harness: Harness, requests: list[Request], concurrency: int,
                   keep_alive: bool = False) -> tuple[list[Outcome], float]:
    """Fire `requests` with at most `concurrency` open at once; (outcomes in request order, wall seconds).

    Each request gets its own connection (hundreds of separate clients) unless `keep_alive`: a reused idle
    connection can race uvicorn's 5 s keep-alive timeout when both sides are this busy, and the request
    then fails with a ReadError before the status line (HTTP/1.1 behaviour, not a gateway error)."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency if keep_alive else 0)
    async with httpx.AsyncClient(base_url=harness.url, timeout=httpx.Timeout(120, connect=30),
                                 limits=limits) as client:
        async def gated(r: Request) -> Outcome:
            async with gate:
                return await _one(client, harness, r)

        start = time.perf_counter()
        outcomes = await asyncio.gather(*(gated(r) for r in requests))
        return outcomes, time.perf_counter() - start


def verify(harness: Harness, outcomes: list[Outcome], sample: int, rng: random.Random) -> list[str]:
    """Mismatches between streamed (answer, tokens) and the same episode replayed directly."""
    finished = [o for o in outcomes if o.done and o.error is None]
    problems = []
    for o in rng.sample(finished, min(sample, len(finished))):
        r = o.request
        episode = run_episode(load(r.spec), ReplayEnv(harness.stores[r.store]), r.question, r.seed)
        if (o.answer, o.completion_tokens) != (episode.answer, episode.tokens):
            problems.append(f"{r}: streamed {(o.answer, o.completion_tokens)}, direct "
                            f"{(episode.answer, episode.tokens)}")
    return problems


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summarize(name: str, outcomes: list[Outcome], wall_s: float, settled: Settled, rss: int,
              mismatches: list[str], harness: Harness) -> dict[str, Any]:
    full = [o for o in outcomes if not o.request.disconnect]
    ok = [o for o in full if o.error is None]
    latencies = [o.latency_s for o in ok if o.latency_s is not None]
    ttfb = [o.ttfb_s for o in outcomes if o.ttfb_s is not None]
    ms = lambda v: None if v is None else round(1000 * v, 1)  # noqa: E731
    errors = Counter(o.error.split(":")[0] if o.error and o.status == 200 else
                     (str(o.status) if o.status is not None else "transport") for o in outcomes if o.error)
    return {"wave": name, "requests": len(outcomes), "disconnected": len(outcomes) - len(full),
            "completed": len(ok), "errors": dict(errors), "status": dict(Counter(str(o.status) for o in outcomes)),
            "error_examples": sorted({o.error for o in outcomes if o.error})[:3],
            "wall_s": round(wall_s, 3), "requests_per_s": round(len(outcomes) / wall_s, 1),
            "completion_tokens_per_s": round(sum(o.completion_tokens or 0 for o in ok) / wall_s),
            "latency_ms": {"p50": ms(_pct(latencies, 50)), "p90": ms(_pct(latencies, 90)),
                           "p99": ms(_pct(latencies, 99)), "max": ms(max(latencies, default=None))},
            "ttfb_ms": {"p50": ms(_pct(ttfb, 50)), "p99": ms(_pct(ttfb, 99))},
            "verified": len(mismatches) == 0, "mismatches": mismatches[:3],
            "after": {"in_flight": settled.in_flight, "tasks": settled.tasks, "baseline_tasks": harness.baseline_tasks,
                      "connections": settled.connections, "live_jobs": settled.live_jobs,
                      "gc_objects": settled.objects,
                      "settle_s": settled.waited_s},
            "rss_mb": round(rss / 2**20, 1)}


def wave(harness: Harness, name: str, requests: list[Request], concurrency: int, verify_sample: int,
         rng: random.Random, keep_alive: bool = False) -> dict[str, Any]:
    before = harness.server_statuses()
    outcomes, wall = asyncio.run(run_wave(harness, requests, concurrency, keep_alive))
    settled = harness.settle()
    mismatches = verify(harness, outcomes, verify_sample, rng)
    gc.collect()
    row = summarize(name, outcomes, wall, settled, rss_bytes(), mismatches, harness)
    after = harness.server_statuses()
    row["replay_order_cache"] = branch_order.cache_info().currsize
    row["server_status"] = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    return row


def leaks(row: dict[str, Any]) -> list[str]:
    """What a settled wave left behind (empty: nothing)."""
    a = row["after"]
    found = [f"{k}={a[k]}" for k in ("in_flight", "connections", "live_jobs") if a[k]]
    if a["tasks"] > a["baseline_tasks"]:
        found.append(f"tasks={a['tasks']} (baseline {a['baseline_tasks']})")
    return found


def run(requests: int, concurrency: int, waves: int, disconnect_fraction: float, verify_sample: int,
        seed: int, store_paths: list[Path] | None = None, keep_alive: bool = False,
        seed_pool: int = 1000) -> dict[str, Any]:
    rng = random.Random(seed)
    result: dict[str, Any] = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                              "python": platform.python_version(), "cpus": os.cpu_count(),
                              "load_avg_start": round(os.getloadavg()[0], 2),
                              "settings": {"requests_per_wave": requests, "concurrency": concurrency, "waves": waves,
                                           "disconnect_fraction": disconnect_fraction, "seed": seed,
                                           "keep_alive": keep_alive, "seed_pool": seed_pool}}
    rows = []
    # the feedback store remembers completions up to its capacity by design: one wave's worth, so it is
    # full after the warm-up and any later growth of resident memory is a leak, not the LRU filling up
    with gateway(concurrency, store_paths, feedback_capacity=requests) as harness:
        result["stores"] = [f"{s.model}/{s.dataset}" for s in harness.stores]
        result["max_concurrent"] = harness.gateway.config.max_concurrent
        plan = [("warm-up", 0.0)] + [(f"wave {i + 1}", 0.0) for i in range(waves)]
        plan.append(("disconnects", disconnect_fraction))
        for name, fraction in plan:
            rows.append(wave(harness, name, make_requests(harness, requests, rng, fraction, seed_pool), concurrency,
                             verify_sample, rng, keep_alive))
            print(f"  {name}: {rows[-1]['completed']} completed, {rows[-1]['wall_s']} s", file=sys.stderr)
    measured = [r for r in rows if r["wave"].startswith("wave")]
    result["waves"] = rows
    result["rss_growth_mb_after_warmup"] = round(rows[-1]["rss_mb"] - rows[0]["rss_mb"], 1)
    result["rss_growth_mb_measured_waves"] = round(measured[-1]["rss_mb"] - measured[0]["rss_mb"], 1) \
        if measured else None
    result["gc_objects_growth_after_warmup"] = rows[-1]["after"]["gc_objects"] - rows[0]["after"]["gc_objects"]
    result["leaks"] = {r["wave"]: leaks(r) for r in rows if leaks(r)}
    result["errors"] = {r["wave"]: r["errors"] for r in rows if r["errors"]}
    result["mismatches"] = {r["wave"]: r["mismatches"] for r in rows if r["mismatches"]}
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    return result


def table(result: dict[str, Any]) -> str:
    head = (f"{'wave':<12} {'reqs':>5} {'ok':>5} {'err':>4} {'req/s':>7} {'tok/s':>9} {'p50 ms':>8} {'p90 ms':>8} "
            f"{'p99 ms':>8} {'ttfb50':>7} {'rss MB':>7} {'objects':>8} {'leaks':>6}")
    lines = [head]
    for r in result["waves"]:
        lat = r["latency_ms"]
        lines.append(f"{r['wave']:<12} {r['requests']:>5} {r['completed']:>5} {sum(r['errors'].values()):>4} "
                     f"{r['requests_per_s']:>7} {r['completion_tokens_per_s']:>9} {lat['p50']!s:>8} "
                     f"{lat['p90']!s:>8} {lat['p99']!s:>8} {r['ttfb_ms']['p50']!s:>7} {r['rss_mb']:>7} "
                     f"{r['after']['gc_objects']:>8} "
                     f"{len(leaks(r)):>6}")
    lines.append(f"rss growth after warm-up: {result['rss_growth_mb_after_warmup']} MB, gc-tracked objects: "
                 f"{result['gc_objects_growth_after_warmup']:+d}; leaks: "
                 f"{result['leaks'] or 'none'}; mismatches: {result['mismatches'] or 'none'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[2:4]))
    parser.add_argument("--requests", type=int, default=600, help="streaming requests per wave (default 600)")
    parser.add_argument("--concurrency", type=int, default=300, help="requests open at once (default 300)")
    parser.add_argument("--waves", type=int, default=3, help="measured waves after the warm-up (default 3)")
    parser.add_argument("--disconnect-fraction", type=float, default=0.3,
                        help="share of clients that hang up after the first chunk in the last wave (default 0.3)")
    parser.add_argument("--verify", type=int, default=100,
                        help="finished streams per wave checked against a direct replay (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix (default 0)")
    parser.add_argument("--store", action="append", help="replay store(s) (default: every bundled store)")
    parser.add_argument("--seed-pool", type=int, default=1000, help=SEED_POOL_HELP)
    parser.add_argument("--keep-alive", action="store_true",
                        help="reuse connections across requests (default: one connection per request)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "load.json"))
    args = parser.parse_args()
    if min(args.requests, args.concurrency, args.waves, args.seed_pool) < 1 or not 0 <= args.disconnect_fraction <= 1:
        parser.error("--requests, --concurrency, --waves and --seed-pool must be >= 1, --disconnect-fraction in [0, 1]")
    stores = [Path(p) for p in args.store] if args.store else None
    result = run(args.requests, args.concurrency, args.waves, args.disconnect_fraction, args.verify, args.seed,
                 stores, args.keep_alive, args.seed_pool)
    print(table(result))
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")
    if result["leaks"] or result["errors"] or result["mismatches"]:
        raise SystemExit("load: errors, leaks or mismatches (see above)")


if __name__ == "__main__":
    main()
