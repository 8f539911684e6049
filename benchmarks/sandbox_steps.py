"""What serving an artifact in a sandboxed worker adds to each controller step in the gateway.

    python benchmarks/sandbox_steps.py       # ~1 min; writes benchmarks/results/sandbox_steps.json

The built-in cmc (β=0.5) exported as a plain artifact is served the way the gateway serves artifacts
(`server/sandboxed.py`: a fresh pre-started worker per episode, one message per step) and run by the
live executor over the replay engine (Qwen3-8B, AIME25: --episodes episodes). Timed per step, wall
clock, from the executor's side: the sandboxed step (delta out, batch back, decoded and validated),
the same code run in process in a worker thread (how a trusted artifact steps), and the built-in
stepping inline. Also timed per episode: taking a worker from the pool (`open`), with spares warm.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 3)

    return {"n": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99),
            "mean_ms": round(statistics.mean(ordered) * 1e3, 3)}


async def measure(episodes: int) -> dict:
    from autotts.controllers import load
    from autotts.controllers.artifact import save_artifact
    from autotts.controllers.builtins import plain_source
    from autotts.offline.evaluate import bundled_data_dir
    from autotts.offline.store import load_store
    from autotts.server import executor, sandboxed
    from autotts.server.replay import ReplayBranchBackend

    store = load_store(bundled_data_dir() / "Qwen3-8B" / "aime25.parquet")
    cases = [(i % store.n_questions, i // store.n_questions) for i in range(episodes)]
    timings: dict[str, list[float]] = {"sandboxed step": [], "in-process step (thread)": [], "built-in step": [],
                                       "worker open": []}

    def timed(name, fn):
        async def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                timings[name].append(time.perf_counter() - start)
        return wrapper

    sandboxed.RemoteEpisode.step = timed("sandboxed step", sandboxed.RemoteEpisode.step)
    sandboxed.ServedController.open = timed("worker open", sandboxed.ServedController.open)
    original_step = executor._Runner._step

    async def local_step(self):
        start = time.perf_counter()
        try:
            return await original_step(self)
        finally:
            if self.remote is None:
                name = "in-process step (thread)" if self.caps.controller_in_thread else "built-in step"
                timings[name].append(time.perf_counter() - start)

    executor._Runner._step = local_step
    with tempfile.TemporaryDirectory() as tmp:
        path = str(save_artifact(Path(tmp) / "cmc", plain_source("cmc")))
        artifact = await asyncio.to_thread(sandboxed.ServedArtifact.load, path, sandboxed.SandboxSettings())
        served = artifact.instance(beta=0.5)
        await artifact.warm(wait=True)  # spares ready before the first episode, as after the gateway's start
        for name in list(timings):
            timings[name].clear()
        answers = []
        for controller, caps in ((served, executor.Caps()), (load(f"{path}:beta=0.5", allow_code=True),
                                                             executor.Caps(controller_in_thread=True)),
                                 (load("cmc:beta=0.5"), executor.Caps(controller_in_thread=False))):
            got = []
            for q, seed in cases:
                backend = ReplayBranchBackend(store, q, seed, prompt_tokens=100)
                outcome = await executor.run_episode(controller, backend, question_id=q, question=store.questions[q],
                                                     caps=caps)
                got.append((outcome.answer, outcome.obs.tokens_spent))
            answers.append(got)
        await artifact.close()
    assert answers[0] == answers[1] == answers[2], "the three ways must give the same episodes"
    out = {name: stats(samples) for name, samples in timings.items()}
    out["added_by_the_sandbox_per_step_ms"] = {
        "p50": round(out["sandboxed step"]["p50_ms"] - out["in-process step (thread)"]["p50_ms"], 3),
        "p99": round(out["sandboxed step"]["p99_ms"] - out["in-process step (thread)"]["p99_ms"], 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sandbox_steps.json")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    result = asyncio.run(measure(args.episodes))
    report = {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "python": platform.python_version(), "episodes": args.episodes, "load_average_at_start": load_start,
              "load_average_at_end": os.getloadavg(), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, value in result.items():
        print(f"{name:28s} {value}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
