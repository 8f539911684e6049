"""Two real vLLM servers (CPU build, tiny model) behind one gateway: affinity, spread, one killed under load.

The module starts its own two servers (conftest.vllm_process), because the last tests SIGKILL them.
Which server did the work is read from each server's own Prometheus counters
(`vllm:request_success_total`, `vllm:prompt_tokens_total`), scraped before and after, and compared
with the replica the gateway reports in ``tts.replica``. Pool logic on fake replicas:
tests/unit/test_replica_pool.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.server.app import build_app
from autotts.server.background import BackgroundServer
from autotts.server.config import GatewayConfig

from tests.conftest import vllm_metrics, vllm_process
from tests.integration.test_vllm_gateway import question

pytestmark = pytest.mark.timeout(600)

COUNTERS = ("vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
            "vllm:prefix_cache_hits_total")


@pytest.fixture(scope="module")
def servers(tiny_model_dir, tmp_path_factory):
    """Two vLLM servers started side by side: [(url, process), (url, process)]; stopped at the end."""
    contexts = [vllm_process(tiny_model_dir, tmp_path_factory.mktemp(f"replica{i}")) for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(ctx.__enter__) for ctx in contexts]
    try:
        yield [f.result() for f in futures]  # a failed start raises here
    finally:
        for ctx, future in zip(contexts, futures, strict=True):
            if future.exception() is None:
                ctx.__exit__(None, None, None)


def gateway(urls: list[str], **extra):
    config = {"engine": "vllm", "engine_urls": urls, "segment_tokens": 32, "probe_max_tokens": 4,
              "ignore_eos": True, "health_interval_s": 1.0, **extra}
    return BackgroundServer(build_app(GatewayConfig.load(overrides=config)))


def body(tag: str, *, max_tokens: int = 96, **extra) -> dict:
    return {"model": "tiny", "seed": 11, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": question(tag, 60)}],
            "tts": {"controller": "sc", "params": {"n": 2}}, **extra}


def counters(url: str) -> dict[str, float]:
    got = vllm_metrics(url)
    return {k: got.get(k, 0.0) for k in COUNTERS}


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in COUNTERS}


def test_every_call_of_a_request_runs_on_the_replica_it_was_leased(servers) -> None:
    urls = [url for url, _ in servers]
    with gateway(urls) as gw, httpx.Client(base_url=gw, timeout=300) as client:
        served = []
        for i in range(4):
            before = {u: counters(u) for u in urls}
            r = client.post("/v1/chat/completions", json=body(f"affinity{i}", max_tokens=64))
            assert r.status_code == 200, r.text
            data = r.json()
            after = {u: counters(u) for u in urls}
            mine = data["tts"]["replica"]
            served.append(mine)
            work = moved(before[mine], after[mine])
            assert work["vllm:request_success_total"] == data["tts"]["engine_calls"] > 2
            assert work["vllm:prompt_tokens_total"] == data["usage"]["prompt_tokens"]
            assert work["vllm:generation_tokens_total"] == data["usage"]["completion_tokens"]
            # the request's later calls reuse its earlier prefixes in this server's cache
            assert work["vllm:prefix_cache_hits_total"] == data["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
            for other in urls:
                if other != mine:
                    assert moved(before[other], after[other]) == dict.fromkeys(COUNTERS, 0.0)
            print(f"\naffinity: request {i} on replica {urls.index(mine)}: {work['vllm:request_success_total']:g} "
                  f"calls there, 0 on the other; {work['vllm:prefix_cache_hits_total']:g} cached prompt tokens")
        metrics = client.get("/metrics").text
    assert sorted(served) == sorted(urls * 2)  # equally loaded replicas take requests in turn
    for url in urls:
        assert f'autotts_engine_replica_requests_total{{replica="{url}"}} 2.0' in metrics


def test_concurrent_requests_spread_over_both_replicas(servers) -> None:
    urls = [url for url, _ in servers]

    async def burst(gw: str) -> list[dict]:
        async with httpx.AsyncClient(base_url=gw, timeout=300) as client:
            rs = await asyncio.gather(*(client.post("/v1/chat/completions", json=body(f"spread{i}"))
                                        for i in range(6)))
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
        return [r.json() for r in rs]

    with gateway(urls) as gw:
        before = {u: counters(u) for u in urls}
        responses = asyncio.run(burst(gw))
        after = {u: counters(u) for u in urls}
    served = [r["tts"]["replica"] for r in responses]
    print(f"\nspread: {[urls.index(u) for u in served]}")
    for url in urls:
        mine = [r for r in responses if r["tts"]["replica"] == url]
        # 3 each when all six are leased before one ends (the pool's rule: tests/unit/test_replica_pool.py);
        # on a loaded machine the last ones may arrive after the first ones end, and go where fewer run
        assert len(mine) >= 2, served
        assert moved(before[url], after[url])["vllm:request_success_total"] == sum(r["tts"]["engine_calls"]
                                                                                  for r in mine)


def _post(gw: str, payload: dict) -> tuple[int, dict]:
    """One request; streaming ones are folded into (status, final tts or error)."""
    with httpx.Client(base_url=gw, timeout=httpx.Timeout(300, connect=10)) as client:
        if not payload.get("stream"):
            r = client.post("/v1/chat/completions", json=payload)
            return r.status_code, r.json()
        events = []
        with client.stream("POST", "/v1/chat/completions", json=payload) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        errors = [e for e in events if "error" in e]
        if errors:  # an error after the headers went out: its status by code
            code = errors[0]["error"]["code"]
            return {"engine_unavailable": 502, "timeout": 504}.get(code, 500), errors[0]
        final = next(e["tts"] for e in events if e.get("choices") and e["choices"][0].get("finish_reason"))
        content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
        assert content  # the winner's own text, or the answer sentence
        return r.status_code, {"tts": final}


def _running(url: str) -> float:
    try:
        return vllm_metrics(url)["vllm:num_requests_running"]
    except httpx.HTTPError:
        return -1.0


def test_killing_one_replica_under_load_moves_its_requests_to_the_other(servers) -> None:
    (url_a, proc_a), (url_b, proc_b) = servers
    with gateway([url_a, url_b]) as gw, ThreadPoolExecutor(8) as pool:
        # long enough to be seen running on both servers even on a quiet machine (the tiny model is fast)
        payloads = [body(f"kill{i}", max_tokens=768, stream=bool(i % 2)) for i in range(4)]
        futures = [pool.submit(_post, gw, p) for p in payloads]
        deadline = time.monotonic() + 120
        while True:  # every request pinned, and both servers busy
            leased = {r["url"]: r["in_flight"] for r in httpx.get(gw + "/health").json()["replicas"]}
            if sum(leased.values()) == len(payloads) and _running(url_a) > 0 and _running(url_b) > 0:
                break
            assert time.monotonic() < deadline and not any(f.done() for f in futures), ("no load on both", leased)
            time.sleep(0.05)
        os.killpg(proc_b.pid, signal.SIGKILL)
        killed = time.monotonic()
        results = [f.result(timeout=300) for f in futures]
        settled = time.monotonic() - killed
        health = httpx.get(gw + "/health", timeout=10)
        after = [_post(gw, body(f"after{i}", max_tokens=48)) for i in range(2)]
        metrics = httpx.get(gw + "/metrics").text

        statuses = [s for s, _ in results]
        assert set(statuses) <= {200, 502}, results  # no 500, and every request ended (no hang)
        for status, data in results:
            if status == 502:
                assert data["error"]["code"] == "engine_unavailable" and url_b in data["error"]["message"]
        moved_off = [d for s, d in results if s == 200 and d["tts"].get("retried_from") == url_b]
        done_on_b = [d for s, d in results if s == 200 and d["tts"]["replica"] == url_b]  # finished before the kill
        stayed_on_a = [d for s, d in results if s == 200 and d["tts"]["replica"] == url_a and "retried_from" not in
                       d["tts"]]
        failed = statuses.count(502)
        # every request pinned to b either finished before the kill, moved whole to a, or failed cleanly
        assert leased[url_b] >= 1 and len(done_on_b) + len(moved_off) + failed == leased[url_b], (leased, results)
        assert len(stayed_on_a) == leased[url_a], (leased, results)  # those on a never noticed
        assert [s for s, _ in after] == [200] * 2 and all(d["tts"]["replica"] == url_a for _, d in after)
        assert health.status_code == 200
        assert {r["url"]: r["healthy"] for r in health.json()["replicas"]} == {url_a: True, url_b: False}
        assert f'autotts_engine_replica_healthy{{replica="{url_b}"}} 0.0' in metrics
        retries = re.search(rf'autotts_engine_retries_total{{replica="{url_b}"}} (\S+)', metrics)
        assert retries and float(retries.group(1)) == len(moved_off)
        print(f"\nkill: pinned at the kill {leased}; statuses {statuses}; moved to {url_a}: {len(moved_off)}; "
              f"done on b first: {len(done_on_b)}; 502: {failed}; all settled {settled:.1f} s after the kill")

        # the survivor goes too, with a request on it: nowhere left to go, a clean 502
        future = pool.submit(_post, gw, body("last", max_tokens=4096))
        deadline = time.monotonic() + 60
        while _running(url_a) <= 0:
            assert time.monotonic() < deadline and not future.done(), "no load on the survivor"
            time.sleep(0.05)
        os.killpg(proc_a.pid, signal.SIGKILL)
        status, data = future.result(timeout=60)
        assert status == 502 and data["error"]["code"] == "engine_unavailable" and url_a in data["error"]["message"]
        health = httpx.get(gw + "/health", timeout=10)
        assert health.status_code == 503
