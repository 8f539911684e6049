"""`build_app(config)`: the FastAPI app, apart from the state it serves (`Gateway`).

The lifespan starts the gateway (connects or starts the engine, loads replay stores) and closes it, and
starts and stops the controller watcher (server/lifecycle.py). Admin routes and the optional ``/v1`` API
key: server/admin_routes.py, server/auth.py.
Every error leaves as one OpenAI-style error object (`errors.error_body`) with its status: bad
input 400, unknown model 404, a body over max_body_bytes 413, concurrency cap 429, engine down/garbage
502, timeouts 504; an
unexpected bug is a 500 whose body names no internals (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from autotts.controllers.errors import AutoTTSError
from autotts.engines.errors import EngineError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .admin_routes import router as admin_router
from .auth import ApiKeyMiddleware
from .body_limit import BodyLimitMiddleware
from .config import GatewayConfig
from .errors import error_body, http_error
from .gateway import Gateway
from .routes import router

__all__ = ["build_app"]

log = logging.getLogger(__name__)


def build_app(config: GatewayConfig | None = None, *, gateway: Gateway | None = None) -> FastAPI:
    """The gateway app for `config` (or around an already built `gateway`, e.g. with a test engine)."""
    gateway = gateway or Gateway(config or GatewayConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        await gateway.controllers.start()  # the controllers_dir / config file watcher, if reload_interval_s > 0
        try:
            yield
        finally:
            await gateway.controllers.stop()
            await gateway.close()

    app = FastAPI(title="autotts gateway", version="1", lifespan=lifespan,
                  description="OpenAI-compatible API; each request is one test-time-scaling episode.")
    app.state.gateway = gateway
    app.include_router(router)
    app.include_router(admin_router)  # POST /admin/reload, GET /v1/controllers
    if gateway.config.api_key:  # /v1/* need `Authorization: Bearer <api_key>`; /health, /metrics stay open
        app.add_middleware(ApiKeyMiddleware, api_key=gateway.config.api_key)
    app.add_middleware(BodyLimitMiddleware, max_bytes=gateway.config.max_body_bytes)  # 413 before parsing
    _install_error_handlers(app, gateway)
    return app


def _install_error_handlers(app: FastAPI, gateway: Gateway) -> None:
    def reply(status: int, body: dict) -> JSONResponse:
        gateway.record_error(status)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(AutoTTSError)
    async def autotts_error(request: Request, exc: AutoTTSError) -> JSONResponse:
        if isinstance(exc, EngineError):  # e.g. the engine was down when the prompt was tokenized
            gateway.metrics.engine_errors.labels(engine=gateway.config.engine, kind=exc.kind).inc()
        return reply(http_error(exc).status, error_body(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        if first.get("type") == "json_invalid":
            message, param = f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}", None
        elif first.get("type") == "invalid_unicode":  # protocol.check_unicode: the field path is in ctx
            message, param = first["msg"], first.get("ctx", {}).get("where")
        elif not loc and "json" not in request.headers.get("content-type", "json"):  # body was not read as JSON
            message, param = ("request body must be a JSON object sent with Content-Type: application/json, got "
                              f"Content-Type {request.headers['content-type'][:60]!r}"), None
        else:
            param = ".".join(loc) or None
            message = f"{param or 'body'}: {first.get('msg', 'invalid value')}"
            if "input" in first and param:
                message += f" (got {str(first['input'])[:60]!r})"
        return reply(400, error_body(message, param=param, code="invalid_request"))

    @app.exception_handler(HTTPException)
    async def http_exception(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's "error parsing the body": say why
            cause = " ".join(str(exc.__cause__).split())[:200]
            return reply(400, error_body(f"request body could not be parsed as JSON: {cause}",
                                         code="invalid_request"))
        code = {404: "not_found", 413: "request_too_large"}.get(exc.status_code)
        return reply(exc.status_code, error_body(str(exc.detail), type_="invalid_request_error", code=code))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return reply(500, error_body("internal server error (see the gateway log)", type_="server_error",
                                     code="internal_error"))
