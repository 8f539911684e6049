"""A cap on request bodies: 413 and an OpenAI error before a large body is read, let alone parsed.

A declared ``Content-Length`` over ``max_body_bytes`` is refused at once; a body sent without one
(chunked) is counted as it arrives and refused as soon as it passes the cap, so the gateway never
holds more than the cap of one request in memory.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from .errors import error_body

__all__ = ["BodyLimitMiddleware", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised while the body is read (FastAPI passes HTTP exceptions through); answered with 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than this gateway's limit of {limit} bytes "
                              "(max_body_bytes)")


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            too_large = BodyTooLarge(self.max_bytes)
            response = JSONResponse(error_body(too_large.detail, type_="invalid_request_error",
                                               code="request_too_large"), status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)
