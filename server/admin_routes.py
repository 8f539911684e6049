"""HTTP surface of the controller lifecycle: ``POST /admin/reload`` and ``GET /v1/controllers``.

``POST /admin/reload`` (admin token) rebuilds the controller set from the config file and the
controllers directory (server/lifecycle.py): 200 with what changed, or 422 ``reload_failed`` naming the
broken artifact or setting while the previous set keeps serving. ``GET /v1/controllers`` lists what is
loaded (default, aliases, arms, each with version, β range, parameters, source, content hash and
manifest) and the reload status; it is open like ``/v1/models`` (subject to ``api_key``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .auth import admin_denied
from .errors import error_body
from .lifecycle import ReloadFailed

__all__ = ["router"]

router = APIRouter()


@router.post("/admin/reload")
async def reload(request: Request) -> Response:
    gateway = request.app.state.gateway
    denied = admin_denied(gateway.config.admin_token, request.headers.get("authorization"))
    if denied is not None:
        return denied
    try:
        result = await gateway.controllers.reload("admin")
    except ReloadFailed as exc:
        return JSONResponse({**error_body(exc), "status": gateway.controllers.status()}, status_code=exc.status)
    return JSONResponse(result)


@router.get("/v1/controllers")
async def controllers(request: Request) -> dict[str, Any]:
    return request.app.state.gateway.controllers.listing()
