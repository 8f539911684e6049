"""Serving one completion request over HTTP: one JSON body or an SSE stream, and a client that hangs up.

`serve` prepares the job (server/jobs.py via `Gateway.prepare`), runs it (server/running.py) and answers
with one JSON body (server/summary.py) or the SSE stream of server/streaming.py. A client that disconnects
cancels the episode and every engine call in flight. Controller `none` on an engine that declares
pass-through goes to the engine unchanged (`_passthrough`), its stream ended with an OpenAI error event if
the engine fails after the first byte.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

from autotts.controllers.errors import AutoTTSError
from autotts.engines.base import Passthrough
from autotts.engines.errors import EngineError
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from .accounting import record_passthrough
from .arms import ARM_HEADER, USER_HEADER
from .errors import error_body, http_error
from .protocol import ChatCompletionRequest, CompletionRequest, chat_response, completion_response
from .selection import HEADER
from .streaming import episode_stream
from .summary import summary

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["serve"]


async def serve(gateway: Gateway, kind: str, body: ChatCompletionRequest | CompletionRequest,
                request: Request) -> Response:
    """The response to one ``/v1/chat/completions`` (kind "chat") or ``/v1/completions`` request."""
    headers = request.headers
    selection, job = await gateway.prepare(kind, body, headers.get(HEADER), arm_header=headers.get(ARM_HEADER),
                                           user_header=headers.get(USER_HEADER))
    if job is None:
        return await _passthrough(gateway, kind, body, selection.model, selection.passthrough)
    if body.stream:
        return StreamingResponse(episode_stream(gateway, job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                 background=BackgroundTask(gateway.release, job))  # if the body never started
    task = asyncio.ensure_future(gateway.run(job))
    task.add_done_callback(lambda _: gateway.release(job))  # also when cancelled before it ever ran
    try:
        outcomes = await _until_disconnect(request, task)
    except AutoTTSError as exc:  # counted with the job's labels by the run
        return JSONResponse(error_body(exc), status_code=http_error(exc).status)
    if outcomes is None:
        return Response(status_code=499)  # nobody is listening any more
    choices, usage, tts = summary(job, outcomes, gateway.config.engine)
    build = chat_response if kind == "chat" else completion_response
    return JSONResponse(build(job.rid, job.model, choices, usage, tts))


async def _until_disconnect(request: Request, work: Any) -> Any:
    """Await `work`; if the client disconnects first, cancel it (and every engine call) and return None."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task in done:
        return task.result()
    return None


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _passthrough(gateway: Gateway, kind: str, body: Any, model: str | None, reason: str | None) -> Response:
    """Controller `none` on an HTTP engine, or a request TTS cannot improve (`reason`: tool calls, structured
    output, a multi-turn chat that asked for no controller): the request goes to the engine unchanged (minus
    `tts`); a reason comes back in ``tts`` (a stream keeps the engine's bytes: ``X-TTS-Passthrough``)."""
    engine = gateway.engine
    assert engine is not None and engine.capabilities.passthrough
    forward = cast(Passthrough, engine)  # what the capability declares
    payload = body.model_dump(exclude={"tts"}, exclude_none=True)
    payload["model"] = engine.model
    path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    labels = {"controller": "none", "controller_version": "-", "arm": "none", "model": model or engine.model}
    start = time.perf_counter()
    if body.stream:
        stream = await forward.passthrough_stream(path, payload)
        record_passthrough(gateway.metrics, labels, start)
        return StreamingResponse(_ended_on_error(stream), media_type="text/event-stream",
                                 headers={"X-TTS-Passthrough": reason} if reason else None)
    data = await forward.passthrough(path, payload)
    record_passthrough(gateway.metrics, labels, start, usage=data.get("usage") or {} if isinstance(data, dict) else {})
    if isinstance(data, dict) and reason:  # controller none asked for the engine's answer unchanged
        data = {**data, "tts": {"controller": "none", "passthrough": reason}}
    return JSONResponse(data)


async def _ended_on_error(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The engine's stream; an engine failing after the first byte ends it with an OpenAI error event."""
    try:
        async for chunk in stream:
            yield chunk
    except EngineError as exc:
        yield f"\n\ndata: {json.dumps(error_body(exc))}\n\ndata: [DONE]\n\n".encode()
