"""HTTP routes of the OpenAI surface: each hands its request to the gateway and returns what it built.

Validation is in server/protocol.py, serving a completion in server/serving.py, feedback accounting in
server/accounting.py; admin routes are in server/admin_routes.py.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .accounting import label
from .gateway import Gateway
from .metrics import CONTENT_TYPE_LATEST
from .protocol import ChatCompletionRequest, CompletionRequest, FeedbackRequest, model_list
from .serving import serve

__all__ = ["router"]

router = APIRouter()


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    return await serve(_gateway(request), "chat", body, request)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    return await serve(_gateway(request), "completion", body, request)


@router.post("/v1/feedback")
async def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
    """Label a recent completion correct or not (joined to its arm and controller); 404 unknown, 409 twice."""
    return label(_gateway(request), body)


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    return model_list(_gateway(request).model_ids(), int(time.time()))


@router.get("/health")
async def health(request: Request) -> Response:
    ok, body = await _gateway(request).health()
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(_gateway(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
