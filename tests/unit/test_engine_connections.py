"""How the HTTP adapters read connection failures: retry a stale reused connection, "down" only when down.

A raw asyncio socket server plays the engine, so each failure happens exactly where the test says (the
timing race itself, against real uvicorn: tests/integration/test_engine_keepalive.py).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from autotts.engines.base import Sampling
from autotts.engines.errors import EngineDown, EngineError
from autotts.engines.vllm_http import VLLMHTTPEngine
from autotts.server.background import free_port

ANSWER = json.dumps({"choices": [{"text": "ab", "token_ids": [5, 6], "finish_reason": "length"}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()


class RawEngine:
    """`mode` says what a completions call meets: ``stale`` (the 2nd request on a connection is dropped
    unanswered), ``drop`` (every request dropped, /health too), ``cut`` (the body stops half-way, /health 200),
    ``cut-sick`` (the body stops half-way, /health dropped)."""

    def __init__(self, mode: str) -> None:
        self.mode, self.connections, self.requests = mode, 0, 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.requests += 1
                if self.mode == "drop" or (self.mode == "stale" and served >= 1) or (
                        self.mode == "cut-sick" and path == "/health"):
                    return
                body = b"{}" if path == "/health" else ANSWER
                if self.mode.startswith("cut") and path != "/health":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n" % len(body) + body[:10])
                    await writer.drain()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run(mode: str, calls: int):
    """`calls` sequential generate calls on an engine with a long keep-alive; (results or error, server)."""
    raw = RawEngine(mode)

    async def go():
        port = free_port()
        server = await asyncio.start_server(raw.handle, "127.0.0.1", port)
        engine = VLLMHTTPEngine(f"http://127.0.0.1:{port}", "tiny", keepalive_s=60)
        try:
            return [await engine.generate([1, 2, 3], 2, Sampling(), f"r{i}") for i in range(calls)], engine
        except EngineError as exc:
            return exc, engine
        finally:
            await engine.close()
            server.close()

    out, engine = asyncio.run(go())
    return out, engine, raw


def test_a_reused_connection_closed_before_the_answer_is_retried_on_a_new_one() -> None:
    results, engine, raw = run("stale", 3)
    assert [r.token_ids for r in results] == [[5, 6]] * 3
    assert engine.stale_retries == 2 and raw.connections == 3


def test_a_fresh_connection_dropped_unanswered_is_down_when_health_fails_too() -> None:
    error, engine, raw = run("drop", 1)
    assert type(error) is EngineDown and "unreachable" in str(error)
    assert engine.stale_retries == 0  # a new connection is not retried
    assert raw.requests == 2  # the call and the /health check


def test_a_connection_lost_mid_answer_of_a_healthy_engine_is_not_down() -> None:
    error, _, _ = run("cut", 1)
    assert type(error) is EngineError and error.kind == "error"
    assert "answers its health check" in str(error)


@pytest.mark.parametrize(("mode", "expected"), [("cut", EngineError), ("cut-sick", EngineDown)])
def test_a_pass_through_stream_cut_mid_way_is_down_only_when_health_fails_too(mode, expected) -> None:
    """Controller `none` streams the engine's bytes as they come; a connection lost after the first of them
    is read like any other lost connection."""
    raw = RawEngine(mode)

    async def go():
        port = free_port()
        server = await asyncio.start_server(raw.handle, "127.0.0.1", port)
        engine = VLLMHTTPEngine(f"http://127.0.0.1:{port}", "tiny")
        chunks = []
        try:
            async for chunk in await engine.passthrough_stream("/v1/completions", {"prompt": "x"}):
                chunks.append(chunk)
        except EngineError as exc:
            return chunks, exc
        finally:
            await engine.close()
            server.close()
        return chunks, None

    chunks, error = asyncio.run(go())
    assert b"".join(chunks) == ANSWER[:10] and type(error) is expected and "mid-stream" in str(error)


def test_a_refused_connection_is_down() -> None:
    async def go():
        engine = VLLMHTTPEngine(f"http://127.0.0.1:{free_port()}", "tiny")
        try:
            with pytest.raises(EngineDown, match="unreachable"):
                await engine.generate([1], 1, Sampling(), "r")
            assert await engine.health() is False
        finally:
            await engine.close()

    asyncio.run(go())


def test_keepalive_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="keepalive_s"):
        VLLMHTTPEngine("http://127.0.0.1:1", keepalive_s=-1)
