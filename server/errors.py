"""The gateway's one exception tree and the one OpenAI-style error body built from it.

Every failure a client can see is a `GatewayError` (or is mapped to one at the edge, with
``raise … from``), carrying its HTTP status and OpenAI error `type`/`code`:

    GatewayError                       500 server_error
    ├── BadRequest                     400 invalid_request_error
    │   └── UnknownQuestion            400 (replay engine: question not in any loaded store)
    ├── ModelNotFound                  404 model_not_found
    ├── TooManyRequests                429 rate_limit_exceeded (concurrency cap)
    ├── ControllerFailed               500 controller_error (the controller crashed / acted illegally)
    ├── EpisodeTimeout                 504 timeout (the episode ran past the request's wall-time cap)
    └── EngineError                    502 engine_error
        ├── EngineDown                 502 (connection refused / engine process gone)
        ├── EngineGarbage              502 (a response that does not parse as the engine's schema)
        ├── EngineRejected             400 (the engine refused the request itself, e.g. context too long)
        └── EngineTimeout              504 (an engine call or the episode ran past its time limit)

`error_body` is the only place the JSON shape is written: ``{"error": {"message", "type",
"param", "code"}}``, the shape the official `openai` client parses into its exceptions.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "ControllerFailed",
    "EngineDown",
    "EngineError",
    "EngineGarbage",
    "EngineRejected",
    "EngineTimeout",
    "EpisodeTimeout",
    "GatewayError",
    "ModelNotFound",
    "TooManyRequests",
    "UnknownQuestion",
    "error_body",
]


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadRequest(GatewayError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class UnknownQuestion(BadRequest):
    code = "unknown_question"


class ModelNotFound(GatewayError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class TooManyRequests(GatewayError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class ControllerFailed(GatewayError):
    """The controller crashed or broke a rule; `reason` is what the episode machine (or the crash) said,
    `tokens_spent` and `trace` what the episode had done by then."""

    status, type, code = 500, "server_error", "controller_error"

    def __init__(self, message: str, *, reason: str | None = None, tokens_spent: int | None = None,
                 trace: list | None = None) -> None:
        super().__init__(message)
        self.reason, self.tokens_spent, self.trace = reason or message, tokens_spent, trace


class EpisodeTimeout(GatewayError):
    status, type, code = 504, "timeout_error", "timeout"


class EngineError(GatewayError):
    status, type, code = 502, "engine_error", "engine_error"
    kind = "error"  # metrics label


class EngineDown(EngineError):
    code, kind = "engine_unavailable", "down"


class EngineGarbage(EngineError):
    code, kind = "engine_bad_response", "garbage"


class EngineRejected(EngineError):
    status, type, code, kind = 400, "invalid_request_error", "engine_rejected", "rejected"


class EngineTimeout(EngineError):
    status, code, kind = 504, "timeout", "timeout"


def error_body(error: GatewayError | str, *, status: int | None = None, type_: str | None = None,
               param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object for `error` (a GatewayError, or a bare message plus its fields)."""
    if isinstance(error, GatewayError):
        return {"error": {"message": error.message, "type": error.type,
                          "param": error.param, "code": error.code}}
    return {"error": {"message": str(error), "type": type_ or "invalid_request_error",
                      "param": param, "code": code}}
