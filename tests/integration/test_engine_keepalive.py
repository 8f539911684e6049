"""Idle pooled connections to a real uvicorn server with a short keep-alive: no spurious engine failures.

An engine's server closes an idle keep-alive connection after its own timeout (uvicorn and vLLM: 5 s).
Rounds of concurrent calls separated by idle gaps right at that timeout make the server close
connections just as the gateway reuses them (with plain httpx pooling this fails a few calls in every
30 rounds with ``ReadError`` / ``RemoteProtocolError``, checked below as a control). The engines must
see none of it: no `EngineError`, no replica taken out. The server is a real uvicorn speaking the part
of vLLM's API the adapter uses (a mock only at the HTTP boundary); the classification of failures that
are real is in tests/unit/test_engine_connections.py.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.engines.base import Sampling
from autotts.engines.pool import ReplicaPool
from autotts.engines.vllm_http import VLLMHTTPEngine
from autotts.server.background import BackgroundServer
from fastapi import FastAPI

pytestmark = pytest.mark.timeout(180)

SERVER_KEEPALIVE_S = 0.3
ROUNDS, WIDTH = 30, 8


def vllm_like() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"data": [{"id": "tiny"}]}

    @app.post("/v1/completions")
    async def completions(body: dict) -> dict:
        ids = [7] * int(body["max_tokens"])
        return {"choices": [{"text": "x" * len(ids), "token_ids": ids, "finish_reason": "length"}],
                "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": len(ids),
                          "prompt_tokens_details": {"cached_tokens": 0}}}

    return app


def gap(i: int) -> float:
    """Idle gaps sweeping across the server's keep-alive timeout (±4 %)."""
    return SERVER_KEEPALIVE_S * (0.96 + 0.08 * (i % 10) / 10)


async def _rounds(call) -> dict[str, int]:
    errors: dict[str, int] = {}
    for i in range(ROUNDS):
        results = await asyncio.gather(*(call(i, j) for j in range(WIDTH)), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                errors[type(r).__name__] = errors.get(type(r).__name__, 0) + 1
        await asyncio.sleep(gap(i))
    return errors


@pytest.fixture(scope="module")
def servers():
    with BackgroundServer(vllm_like(), timeout_keep_alive=SERVER_KEEPALIVE_S) as a, \
            BackgroundServer(vllm_like(), timeout_keep_alive=SERVER_KEEPALIVE_S) as b:
        yield [a, b]


@pytest.mark.parametrize("keepalive_s", [SERVER_KEEPALIVE_S / 2, 10 * SERVER_KEEPALIVE_S],
                         ids=["shorter-than-server", "longer-than-server"])
def test_idle_gaps_at_the_servers_keepalive_cause_no_engine_error(servers, keepalive_s) -> None:
    """Shorter keep-alive avoids the race; longer (an engine configured with a short timeout) meets it
    and the retry of a reused connection hides it. Either way: no error, no replica out."""

    async def go():
        pool = ReplicaPool([VLLMHTTPEngine(u, keepalive_s=keepalive_s) for u in servers], health_interval_s=0.2)
        await pool.start()
        leases = [await pool.lease(), await pool.lease()]
        assert {lease.url for lease in leases} == set(servers)
        try:
            errors = await _rounds(lambda i, j: leases[j % 2].generate([1, 2, 3], 4, Sampling(), f"r{i}-{j}"))
            return errors, pool.status(), [r.engine.stale_retries for r in pool.replicas]
        finally:
            for lease in leases:
                lease.release()
            await pool.close()

    errors, status, retried = asyncio.run(go())
    print(f"\nkeepalive {keepalive_s} s vs server {SERVER_KEEPALIVE_S} s: stale connections retried {retried}")
    assert errors == {}
    assert [r["healthy"] for r in status] == [True, True] and [r["failures"] for r in status] == [0, 0]


def test_control_plain_httpx_pooling_meets_the_race(servers) -> None:
    """Without the adapter's handling the same traffic does fail (so the test above can fail)."""

    async def go():
        async with httpx.AsyncClient(limits=httpx.Limits(keepalive_expiry=10 * SERVER_KEEPALIVE_S)) as client:
            body = {"prompt": [1, 2, 3], "max_tokens": 4}
            return await _rounds(lambda i, j: client.post(servers[j % 2] + "/v1/completions", json=body))

    errors = asyncio.run(go())
    print(f"\nplain httpx: {errors}")
    assert set(errors) <= {"ReadError", "RemoteProtocolError"}
    assert sum(errors.values()) > 0, "the race did not show in 30 rounds: the timing of this test no longer meets it"
