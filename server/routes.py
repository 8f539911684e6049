"""HTTP routes: thin handlers over `Gateway` (validation in protocol, logic in gateway/executor)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

from autotts.controllers.errors import AutoTTSError
from autotts.engines.base import Passthrough
from autotts.engines.errors import EngineError
from autotts.engines.pool import ReplicaPool
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from .arms import ARM_HEADER, USER_HEADER
from .errors import error_body, http_error
from .gateway import Gateway
from .metrics import CONTENT_TYPE_LATEST
from .protocol import ChatCompletionRequest, CompletionRequest, FeedbackRequest, chat_response, completion_response
from .selection import HEADER
from .streaming import episode_stream
from .summary import summary

__all__ = ["router"]

router = APIRouter()


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    return await _serve("chat", body, request)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    return await _serve("completion", body, request)


@router.post("/v1/feedback")
async def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
    """Label a recent completion correct or not (joined to its arm and controller); 404 unknown, 409 twice."""
    gateway = _gateway(request)
    record = gateway.feedback.label(body.id, correct=body.correct, gold=body.gold)
    gateway.metrics.feedback.labels(**record.labels, correct=str(record.correct).lower()).inc()
    if gateway.capture is not None:  # a captured completion: its label becomes the question's gold
        gateway.capture.label(body.id, correct=record.correct, gold=body.gold, answer=record.answer)
    return {"id": body.id, "object": "feedback", "correct": record.correct, "arm": record.labels["arm"],
            "controller": record.spec}


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    created = int(time.time())
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "autotts"}
                                       for name in _gateway(request).model_ids()]}


@router.get("/health")
async def health(request: Request) -> Response:
    gateway = _gateway(request)
    ok = gateway.engine is None or await gateway.engine.health()
    pool = gateway.engine if isinstance(gateway.engine, ReplicaPool) else None  # several replicas: each one's state
    return JSONResponse({"status": "ok" if ok else "engine unavailable", "engine": gateway.config.engine,
                         "in_flight": gateway.in_flight, **({"replicas": pool.status()} if pool else {})},
                        status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(_gateway(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _serve(kind: str, body: ChatCompletionRequest | CompletionRequest, request: Request) -> Response:
    gateway = _gateway(request)
    headers = request.headers
    selection, job = await gateway.prepare(kind, body, headers.get(HEADER), arm_header=headers.get(ARM_HEADER),
                                           user_header=headers.get(USER_HEADER))
    if job is None:
        return await _passthrough(gateway, kind, body, selection.model)
    if body.stream:
        return StreamingResponse(episode_stream(gateway, job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                 background=BackgroundTask(gateway.release, job))  # if the body never started
    task = asyncio.ensure_future(gateway.run(job))
    task.add_done_callback(lambda _: gateway.release(job))  # also when cancelled before it ever ran
    try:
        outcomes = await _until_disconnect(request, task)
    except AutoTTSError as exc:  # counted with the job's labels by Gateway.run
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


async def _passthrough(gateway: Gateway, kind: str, body: Any, model: str | None) -> Response:
    """Controller `none` on an HTTP engine: the request goes to the engine unchanged (minus `tts`)."""
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
        gateway.metrics.request(labels, 200, time.perf_counter() - start)
        return StreamingResponse(_ended_on_error(stream), media_type="text/event-stream")
    data = await forward.passthrough(path, payload)
    usage = data.get("usage") or {} if isinstance(data, dict) else {}
    for token_kind, key in (("prompt", "prompt_tokens"), ("decode", "completion_tokens")):
        gateway.metrics.tokens.labels(**labels, kind=token_kind).inc(int(usage.get(key) or 0))
    gateway.metrics.request(labels, 200, time.perf_counter() - start)
    return JSONResponse(data)


async def _ended_on_error(stream: Any) -> Any:
    """The engine's stream; an engine failing after the first byte ends it with an OpenAI error event."""
    try:
        async for chunk in stream:
            yield chunk
    except EngineError as exc:
        yield f"\n\ndata: {json.dumps(error_body(exc))}\n\ndata: [DONE]\n\n".encode()
