"""The load benchmark's code path at small scale: correctness only, no timing asserts.

About a hundred concurrent streaming chat requests (sc / esc / cmc, two models, some clients hanging up
after the first chunk) against the real gateway on loopback, through the same driver as
benchmarks/load.py (imported by path). Every full stream must end with a finish chunk, a usage chunk
and ``[DONE]`` and carry the answer and tokens of the same episode replayed directly; afterwards the
gateway must have nothing left: ``in_flight`` 0, asyncio tasks back to the pre-load baseline, no open
connections, no `Job` or replay backend alive. Latency and memory figures are the benchmark's job.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.offline.evaluate import bundled_data_dir

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"
STORES = [bundled_data_dir() / "Qwen3-8B" / "aime25.parquet", bundled_data_dir() / "Qwen3-0.6B" / "aime24.parquet"]
CONCURRENCY = 100


def _benchmark_module():
    name = "autotts_benchmark_load"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARK)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


load = _benchmark_module()


@pytest.fixture(scope="module")
def harness():
    with load.gateway(CONCURRENCY, STORES) as h:
        yield h


def test_leak_probe_sees_a_stray_task(harness) -> None:
    """The task count is a real probe: one task left in the gateway's loop shows up."""
    before = harness.snapshot().tasks
    stray = harness.in_loop(lambda: asyncio.ensure_future(asyncio.sleep(60)))
    try:
        assert harness.snapshot().tasks == before + 1
    finally:
        harness.in_loop(stray.cancel)
    assert harness.settle(timeout_s=5).tasks == harness.baseline_tasks


def test_concurrent_streams_with_disconnects_finish_cleanly_and_leave_nothing(harness) -> None:
    rng = random.Random(11)
    requests = load.make_requests(harness, 120, rng, disconnect_fraction=0.25)
    assert {r.spec.split(":")[0] for r in requests} == {"sc", "esc", "cmc"}
    assert len({harness.stores[r.store].model for r in requests}) == 2
    hang_ups = [r for r in requests if r.disconnect]
    assert 10 <= len(hang_ups) <= 50

    outcomes, _ = asyncio.run(load.run_wave(harness, requests, CONCURRENCY))
    settled = harness.settle()
    mismatches = load.verify(harness, outcomes, len(outcomes), rng)

    for o in outcomes:
        assert o.status == 200 and o.error is None, (o.request, o.error)
        if not o.request.disconnect:
            assert o.finish_chunk and o.usage_chunk and o.done, o.request
            assert o.answer is not None and o.completion_tokens > 0
    assert mismatches == []
    assert (settled.in_flight, settled.connections, settled.live_jobs) == (0, 0, 0), settled
    assert settled.tasks == harness.baseline_tasks, settled
    health = httpx.get(harness.url + "/health", timeout=10).json()
    assert health["in_flight"] == 0


def test_gateway_serves_full_streams_after_the_hang_ups(harness) -> None:
    requests = load.make_requests(harness, 40, random.Random(12))
    outcomes, _ = asyncio.run(load.run_wave(harness, requests, CONCURRENCY))
    assert [o.error for o in outcomes] == [None] * len(outcomes)
    assert all(o.done and o.usage_chunk for o in outcomes)
    row = load.summarize("check", outcomes, 1.0, harness.settle(), load.rss_bytes(), [], harness)
    assert load.leaks(row) == [] and row["completed"] == len(requests) and row["errors"] == {}
