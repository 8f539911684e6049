"""Bearer tokens: the admin token guards ``/admin/*``, the optional API key guards ``/v1/*``.

The API key works like vLLM's ``--api-key``: when ``api_key`` is set, every ``/v1`` request must send
``Authorization: Bearer <api_key>`` (what the OpenAI SDK sends for its ``api_key``), else 401;
``/health`` and ``/metrics`` stay open for probes and scrapers. Admin endpoints have their own token
(``admin_token``, default ``$AUTOTTS_ADMIN_TOKEN``): 401 without one, 403 with a wrong one, 403
``admin_disabled`` when the gateway has no admin token at all. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.responses import JSONResponse

from .errors import error_body

__all__ = ["ApiKeyMiddleware", "admin_denied", "bearer_token"]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _deny(status: int, message: str, code: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(message, type_="authentication_error", code=code), status_code=status,
                        headers=headers)


def admin_denied(admin_token: str | None, authorization: str | None) -> JSONResponse | None:
    """The error response for an admin request, or None when it may proceed."""
    if not admin_token:
        return _deny(403, "admin endpoints are disabled: this gateway has no admin token (set admin_token, "
                          "AUTOTTS_SERVE_ADMIN_TOKEN or AUTOTTS_ADMIN_TOKEN)", "admin_disabled")
    token = bearer_token(authorization)
    if token is None:
        return _deny(401, "admin endpoints need the header 'Authorization: Bearer <admin token>'", "missing_token")
    if not _matches(token, admin_token):
        return _deny(403, "the admin token is not valid", "invalid_token")
    return None


class ApiKeyMiddleware:
    """Pure ASGI (streams pass through untouched): ``/v1`` requests need ``Authorization: Bearer <key>``."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/v1" or path.startswith("/v1/")):
            header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"authorization"), None)
            token = bearer_token(header)
            if token is None or not _matches(token, self.api_key):
                message = ("missing API key: send the header 'Authorization: Bearer <api key>'" if token is None
                           else "the API key is not valid")
                await _deny(401, message, "invalid_api_key")(scope, receive, send)
                return
        await self.app(scope, receive, send)
