"""Several engine replicas behind one gateway (engines/pool.py), on in-process fake replicas.

Each fake replica is a `FakeEngine` with a URL that can be switched "down" (every call then raises
`EngineDown`, as a refused connection does) or dies after a set number of generate calls (a server
killed mid-episode). The real app runs over httpx's ASGI transport. The same behaviour against two
real vLLM servers, one of them SIGKILLed under load, is tests/integration/test_vllm_replicas.py.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.engines.base import Capabilities, Sampling
from autotts.engines.errors import EngineDown
from autotts.engines.fake import FakeEngine
from autotts.engines.pool import ReplicaMismatch, ReplicaPool
from autotts.server.app import build_app
from autotts.server.config import GatewayConfig
from autotts.server.gateway import Gateway
from autotts.server.protocol import ChatCompletionRequest


class FakeReplica(FakeEngine):
    """A fake engine server at `url`: `down` refuses every call; `fail_after` generate calls, it dies."""

    capabilities = Capabilities(passthrough=True)

    def __init__(self, url: str, *, fail_after: int | None = None, **kw) -> None:
        super().__init__(url=url, **kw)
        self.down = False
        self.fail_after = fail_after
        self.health_checks = 0
        self.chunks: list[bytes] = [b"data: 1\n\n", b"data: 2\n\n"]
        self.die_mid_stream = False

    def _refuse(self) -> None:
        if self.down:
            raise EngineDown(f"engine at {self.url} unreachable (ConnectError: connection refused)")

    async def tokenize_chat(self, messages, **kw):
        self._refuse()
        return await super().tokenize_chat(messages, **kw)

    async def tokenize_text(self, text):
        self._refuse()
        return await super().tokenize_text(text)

    async def detokenize(self, token_ids):
        self._refuse()
        return await super().detokenize(token_ids)

    async def generate(self, prompt_ids, max_tokens, sampling, request_id):
        self._refuse()
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            self.down = True
            raise EngineDown(f"engine at {self.url} unreachable (RemoteProtocolError: server disconnected)")
        return await super().generate(prompt_ids, max_tokens, sampling, request_id)

    async def health(self) -> bool:
        self.health_checks += 1
        return not self.down

    async def passthrough(self, path, body):
        self._refuse()
        return {"served_by": self.url}

    async def passthrough_stream(self, path, body):
        self._refuse()

        async def stream():
            for i, chunk in enumerate(self.chunks):
                if i and self.die_mid_stream:
                    self.down = True  # what HTTPEngine's stream raises when the connection breaks
                    raise EngineDown(f"connection to {self.url}{path} lost mid-stream (RemoteProtocolError)")
                yield chunk

        return stream()


def replicas(n: int = 2, **kw) -> list[FakeReplica]:
    return [FakeReplica(f"http://replica-{chr(97 + i)}", **kw) for i in range(n)]


def serve(requests, engines, *, interval: float = 30.0, **config):
    """Run `requests(client, pool)` against a gateway over a pool of `engines`; returns its result."""
    cfg = GatewayConfig.load(overrides={"engine": "vllm", "engine_urls": [e.url for e in engines],
                                        "health_interval_s": interval, "segment_tokens": 16, "probe_max_tokens": 2,
                                        **config})
    pool = ReplicaPool(engines, health_interval_s=interval)
    app = build_app(gateway=Gateway(cfg, engine=pool))

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                       base_url="http://gw") as client:
            return await requests(client, pool)

    return asyncio.run(go())


def body(tag: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": f"question {tag}"}], "max_tokens": 48, "seed": 5,
            "tts": {"controller": "sc", "params": {"n": 3}}, **extra}


def in_flight(pool: ReplicaPool) -> list[int]:
    return [r.in_flight for r in pool.replicas]


# --- the pool on its own ------------------------------------------------------------------------
def test_least_loaded_then_in_turn() -> None:
    async def go():
        pool = ReplicaPool(replicas(3))
        await pool.start()
        first = [await pool.lease() for _ in range(3)]
        assert sorted(x.url for x in first) == [e.url for e in pool.replicas]  # one each
        first[1].release()
        again = await pool.lease()
        assert again.url == first[1].url  # the only one with nothing in flight
        first[0].release()
        first[0].release()  # idempotent: counts never go below zero
        assert in_flight(pool) == [0, 1, 1]
        again.release()
        first[2].release()
        turns = []
        for _ in range(4):  # all equally loaded: taken in turn
            lease = await pool.lease()
            turns.append(lease.url)
            lease.release()
        assert len(set(turns[:3])) == 3 and turns[3] == turns[0]
        await pool.close()

    asyncio.run(go())


def test_start_resolves_one_model_and_refuses_a_mix() -> None:
    async def go():
        pool = ReplicaPool([FakeReplica("http://a", model="m"), FakeReplica("http://b", model="m")])
        await pool.start()
        assert pool.model == "m"
        await pool.close()
        mixed = ReplicaPool([FakeReplica("http://a", model="m"), FakeReplica("http://b", model="other")])
        with pytest.raises(ReplicaMismatch, match="http://b serves 'other'"):
            await mixed.start()
        await mixed.close()

    asyncio.run(go())


def test_down_replica_is_skipped_and_taken_back_after_the_interval() -> None:
    now = [100.0]
    a, b = replicas()

    async def go():
        pool = ReplicaPool([a, b], health_interval_s=10.0, clock=lambda: now[0])
        await pool.start()
        pool._watcher.cancel()  # checks driven by hand with the fake clock
        lease = await pool.lease()
        assert lease.url == a.url
        a.down = True
        with pytest.raises(EngineDown) as err:
            await lease.generate([1, 2], 4, Sampling(), "r")
        assert err.value.replica == a.url  # the gateway's retry keys on this
        lease.release()
        assert [r.healthy for r in pool.replicas] == [False, True]
        assert {(await pool.lease()).url for _ in range(4)} == {b.url}  # skipped while out
        a.down = False
        checks = a.health_checks  # the one at start
        now[0] += 9.0
        await pool._recheck(due_only=True)
        assert not pool.replicas[0].healthy and a.health_checks == checks  # not before health_interval_s
        now[0] += 1.5
        await pool._recheck(due_only=True)
        assert pool.replicas[0].healthy and a.health_checks == checks + 1
        assert (await pool.lease()).url == a.url  # least loaded again (b holds four)
        assert pool.status()[0] | {"failures": 1} == pool.status()[0]
        await pool.close()

    asyncio.run(go())


def test_background_watcher_takes_a_replica_back_and_close_stops_it() -> None:
    a, b = replicas()

    async def go():
        pool = ReplicaPool([a, b], health_interval_s=0.05)
        await pool.start()
        pool.mark_down(pool.replicas[0], EngineDown("gone"))
        for _ in range(200):
            if pool.replicas[0].healthy:
                break
            await asyncio.sleep(0.02)
        assert pool.replicas[0].healthy and a.health_checks >= 1
        watcher = pool._watcher
        await pool.close()
        assert watcher.done() and not pool._checking
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not others  # nothing left running

    asyncio.run(go())


def test_no_healthy_replica_is_one_error_naming_them() -> None:
    a, b = replicas()
    a.down = b.down = True

    async def go():
        pool = ReplicaPool([a, b])
        with pytest.raises(EngineDown, match="no healthy engine replica") as err:
            await pool.start()
        assert a.url in str(err.value) and b.url in str(err.value)
        checks = a.health_checks
        with pytest.raises(EngineDown, match=r"health failed \(unreachable or not 200\)"):
            await pool.lease()  # re-checks at once (both still down), then fails
        assert a.health_checks == checks + 1
        b.down = False
        assert (await pool.lease()).url == b.url  # re-checked at once when nothing is healthy
        await pool.close()

    asyncio.run(go())


def test_passthrough_stream_moves_before_the_first_byte_never_after() -> None:
    a, b = replicas()

    async def go():
        pool = ReplicaPool([a, b])
        await pool.start()
        a.down = True  # refused before any byte: the next replica serves it
        chunks = [c async for c in await pool.passthrough_stream("/v1/completions", {})]
        assert chunks == b.chunks and in_flight(pool) == [0, 0]
        b.die_mid_stream = True  # now b dies after its first chunk: the stream breaks, no second replica
        a.down = False
        stream = await pool.passthrough_stream("/v1/completions", {})  # b: a was taken out above
        got = []
        with pytest.raises(EngineDown, match="went away mid-stream") as err:
            async for chunk in stream:
                got.append(chunk)
        assert got == b.chunks[:1] and in_flight(pool) == [0, 0] and err.value.replica == b.url
        assert not pool.replicas[1].healthy and b.calls == a.calls == []
        await pool.close()

    asyncio.run(go())


# --- the gateway over a pool ------------------------------------------------------------------------
def test_every_call_of_a_request_goes_to_its_replica() -> None:
    engines = replicas()

    async def go(c, pool):
        out = []
        for i in range(4):
            r = await c.post("/v1/chat/completions", json=body(str(i)))
            assert r.status_code == 200, r.text
            out.append(r.json())
        return out, (await c.get("/metrics")).text, (await c.get("/health")).json(), in_flight(pool)

    responses, metrics, health, left = serve(go, engines)
    by_url = {e.url: e for e in engines}
    for r in responses:
        mine = [c for c in by_url[r["tts"]["replica"]].calls if c["id"].startswith(r["id"] + "-")]
        others = [c for e in engines for c in e.calls if e.url != r["tts"]["replica"] and c["id"].startswith(r["id"])]
        assert len(mine) == r["tts"]["engine_calls"] > 3 and others == []
    assert sorted(r["tts"]["replica"] for r in responses) == sorted([e.url for e in engines] * 2)
    assert left == [0, 0]
    for e in engines:
        assert re.search(rf'autotts_engine_replica_requests_total{{replica="{e.url}"}} 2\.0', metrics)
        assert re.search(rf'autotts_engine_replica_healthy{{replica="{e.url}"}} 1\.0', metrics)
    assert [x["healthy"] for x in health["replicas"]] == [True, True]


def test_concurrent_requests_spread_over_the_replicas() -> None:
    engines = replicas(delay_s=0.02)

    async def go(c, pool):
        rs = await asyncio.gather(*(c.post("/v1/chat/completions", json=body(str(i))) for i in range(6)))
        return [r.json()["tts"]["replica"] for r in rs], in_flight(pool)

    served, left = serve(go, engines)
    assert sorted(served) == sorted([e.url for e in engines] * 3) and left == [0, 0]


@pytest.mark.parametrize("stream", [False, True])
def test_a_replica_dying_mid_episode_reruns_the_request_whole_elsewhere(stream: bool) -> None:
    a, b = replicas()
    a.fail_after = 4  # a dies on its fifth generate call, in the middle of the first request

    async def go(c, pool):
        r = await c.post("/v1/chat/completions", json=body("x", stream=stream))
        after = await c.post("/v1/chat/completions", json=body("y"))
        return r, after.json(), (await c.get("/metrics")).text, (await c.get("/health")), in_flight(pool)

    r, after, metrics, health, left = serve(go, [a, b])
    assert r.status_code == 200
    if stream:
        chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        assert not any("error" in c for c in chunks)
        tts = next(c["tts"] for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason"))
        progress = [c["tts"]["progress"] for c in chunks if "progress" in c.get("tts", {})]
        assert progress[-1]["retries"] == 1 and "retries" not in progress[0]  # the restart is visible
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        assert content == f"The answer is $\\boxed{{{tts['answer']}}}$."
    else:
        tts = r.json()["tts"]
    assert (tts["replica"], tts["retried_from"]) == (b.url, a.url)
    rid = chunks[0]["id"] if stream else r.json()["id"]
    assert len([c for c in a.calls if c["id"].startswith(rid)]) == 4  # the first attempt, on a
    assert len([c for c in b.calls if c["id"].startswith(rid)]) == tts["engine_calls"]  # all of the rerun
    assert after["tts"]["replica"] == b.url and "retried_from" not in after["tts"]  # a is out now
    assert re.search(rf'autotts_engine_retries_total{{replica="{a.url}"}} 1\.0', metrics)
    assert re.search(rf'autotts_engine_replica_healthy{{replica="{a.url}"}} 0\.0', metrics)
    assert health.status_code == 200 and [x["healthy"] for x in health.json()["replicas"]] == [False, True]
    assert left == [0, 0]


def test_a_replica_dying_mid_passthrough_stream_ends_it_with_an_openai_error_event() -> None:
    a, b = replicas()
    a.die_mid_stream = b.die_mid_stream = True

    async def go(client, pool):
        body = {"model": "tts-none", "prompt": "hi", "max_tokens": 4, "stream": True}
        return (await client.post("/v1/completions", json=body)).text, in_flight(pool)

    text, leased = serve(go, [a, b])
    events = [line for line in text.split("\n\n") if line.strip()]
    assert events[0] == "data: 1" and events[-1] == "data: [DONE]" and leased == [0, 0]
    error = json.loads(events[1][6:])["error"]
    assert error["code"] == "engine_unavailable" and "went away mid-stream" in error["message"]


def test_no_second_retry_and_no_replica_left_are_clean_502s() -> None:
    a, b = replicas(fail_after=2)

    async def go(c, pool):
        first = await c.post("/v1/chat/completions", json=body("x"))  # a dies, rerun on b, b dies too
        second = await c.post("/v1/chat/completions", json=body("y"))  # none left
        return first, second, (await c.get("/health")), in_flight(pool)

    first, second, health, left = serve(go, [a, b])
    assert first.status_code == 502 and first.json()["error"]["code"] == "engine_unavailable"
    assert b.url in first.json()["error"]["message"]  # the replica that failed last
    assert second.status_code == 502
    message = second.json()["error"]["message"]
    assert "no healthy engine replica" in message and a.url in message and b.url in message
    assert health.status_code == 503 and left == [0, 0]


def test_a_replica_down_at_tokenize_time_moves_the_request_without_a_retry() -> None:
    a, b = replicas()

    async def go(c, pool):
        a.down = True
        r = (await c.post("/v1/chat/completions", json=body("x"))).json()
        return r, (await c.get("/metrics")).text, in_flight(pool)

    r, metrics, left = serve(go, [a, b])
    assert r["tts"]["replica"] == b.url and "retried_from" not in r["tts"]
    assert "autotts_engine_retries_total{" not in metrics and left == [0, 0]
    assert a.calls == [] and len(b.calls) == r["tts"]["engine_calls"] > 0


def test_leases_are_released_on_errors_caps_timeouts_and_cancel() -> None:
    async def go(c, pool):
        bad = await c.post("/v1/completions", json={"prompt": ["two", "prompts"], "tts": {"controller": "sc"}})
        capped = await asyncio.gather(*(c.post("/v1/chat/completions", json=body(str(i))) for i in range(3)))
        return bad, capped, in_flight(pool)

    bad, capped, left = serve(go, replicas(delay_s=0.1), max_concurrent=1)
    assert bad.status_code == 400
    assert sorted(r.status_code for r in capped) == [200, 429, 429]
    assert left == [0, 0]

    async def slow(c, pool):
        return await c.post("/v1/chat/completions", json=body("t")), in_flight(pool)

    timed_out, left = serve(slow, replicas(delay_s=0.5), request_timeout_s=0.3)
    assert timed_out.status_code == 504 and left == [0, 0]

    async def cancelled():
        engines = replicas(delay_s=5.0)
        cfg = GatewayConfig.load(overrides={"engine": "vllm", "engine_urls": [e.url for e in engines]})
        pool = ReplicaPool(engines)
        gateway = Gateway(cfg, engine=pool)
        await gateway.start()
        _, job = await gateway.prepare("chat", ChatCompletionRequest(**body("c")), None)
        task = asyncio.create_task(gateway.run(job))
        await asyncio.sleep(0.05)
        assert sum(in_flight(pool)) == 1 and sum(e.in_flight for e in engines) > 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gateway.release(job)  # the route's done-callback calls it again: still released once
        counts = in_flight(pool), sum(e.in_flight for e in engines)
        await gateway.close()
        return counts

    assert asyncio.run(cancelled()) == ([0, 0], 0)
