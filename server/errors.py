"""The gateway's errors, and the one place where any error becomes an HTTP status and an OpenAI error body.

The gateway's own branch of the tree (autotts.controllers.errors); a `GatewayError` carries its status
and OpenAI error `type`/`code`:

    AutoTTSError
    ├── ConfigError                    a gateway setting is missing or bad (start-up and reloads, never a reply)
    └── GatewayError                   500 server_error
        ├── BadRequest                 400 invalid_request_error
        │   └── UnknownQuestion        400 (replay engine: question not in any loaded store)
        ├── ModelNotFound              404 model_not_found
        ├── UnknownCompletion          404 completion_not_found (feedback for an unknown or evicted id)
        ├── AlreadyLabelled            409 already_labelled (feedback sent twice)
        ├── ReloadFailed               422 reload_failed (the previous controllers keep serving)
        ├── TooManyRequests            429 rate_limit_exceeded (concurrency cap)
        └── ControllerFailed           500 controller_error (the controller crashed / acted illegally)

Errors of the other packages get their HTTP meaning here, in `http_error` (the nearest class wins):

    EpisodeTimeout (controllers)       504 timeout_error / timeout (the episode ran past its wall-time cap)
    EngineError (engines)              502 engine_error
    ├── EngineDown                     502 engine_unavailable
    ├── EngineGarbage                  502 engine_bad_response
    ├── EngineRejected                 400 invalid_request_error / engine_rejected
    └── EngineTimeout                  504 timeout
    any other AutoTTSError             400 invalid_request_error (input the SDK refused)

`error_body` is the only place the JSON shape is written: ``{"error": {"message", "type", "param",
"code"}}``, the shape the official `openai` client parses into its exceptions.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from autotts.controllers.errors import AutoTTSError, EpisodeTimeout
from autotts.engines.errors import EngineDown, EngineError, EngineGarbage, EngineRejected, EngineTimeout

__all__ = [
    "AlreadyLabelled",
    "BadRequest",
    "ConfigError",
    "ControllerFailed",
    "GatewayError",
    "HTTPError",
    "ModelNotFound",
    "ReloadFailed",
    "TooManyRequests",
    "UnknownCompletion",
    "UnknownQuestion",
    "error_body",
    "http_error",
]


class ConfigError(AutoTTSError):
    """A gateway setting is missing or has a bad value."""


class GatewayError(AutoTTSError):
    """Base of every error the gateway itself reports to a client."""

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


class UnknownCompletion(GatewayError):
    status, type, code = 404, "invalid_request_error", "completion_not_found"


class AlreadyLabelled(GatewayError):
    status, type, code = 409, "invalid_request_error", "already_labelled"


class ReloadFailed(GatewayError):
    """A reload could not build the new set; the old one is still serving."""

    status, type, code = 422, "reload_error", "reload_failed"


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


class HTTPError(NamedTuple):
    """What an error is over HTTP."""

    status: int
    type: str
    code: str | None
    param: str | None
    message: str


_FOREIGN: dict[type[AutoTTSError], tuple[int, str, str | None]] = {
    EpisodeTimeout: (504, "timeout_error", "timeout"),
    EngineError: (502, "engine_error", "engine_error"),
    EngineDown: (502, "engine_error", "engine_unavailable"),
    EngineGarbage: (502, "engine_error", "engine_bad_response"),
    EngineRejected: (400, "invalid_request_error", "engine_rejected"),
    EngineTimeout: (504, "engine_error", "timeout"),
}
_REFUSED_INPUT = (400, "invalid_request_error", None)


def http_error(exc: AutoTTSError) -> HTTPError:
    """Status, OpenAI type/code, param and message of `exc` (any error of the tree)."""
    if isinstance(exc, GatewayError):
        return HTTPError(exc.status, exc.type, exc.code, exc.param, exc.message)
    fields = next((_FOREIGN[c] for c in type(exc).__mro__ if c in _FOREIGN), _REFUSED_INPUT)
    return HTTPError(*fields, None, str(exc))


def error_body(error: AutoTTSError | str, *, type_: str | None = None, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object for `error` (an error of the tree, or a bare message plus its fields)."""
    if isinstance(error, AutoTTSError):
        mapped = http_error(error)
        return {"error": {"message": mapped.message, "type": mapped.type, "param": mapped.param,
                          "code": mapped.code}}
    return {"error": {"message": str(error), "type": type_ or "invalid_request_error", "param": param,
                      "code": code}}
