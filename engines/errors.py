"""Errors of the engine adapters, on the one tree (autotts.controllers.errors).

    AutoTTSError
    └── EngineError          an engine call failed; `replica` names the server when known, `kind` labels metrics
        ├── EngineDown       unreachable: connection refused or reset, connect timeout, engine process gone
        ├── EngineGarbage    a response that does not parse as the engine's schema
        ├── EngineRejected   the engine refused the request itself (e.g. a prompt longer than its context)
        ├── EngineTimeout    no answer within the call's (or the episode's) time limit
        └── ReplicaMismatch  a replica serves another model than the rest of its pool (a deployment mistake)

Adapters map transport failures (httpx, vLLM's own exceptions) onto these where they enter, with
``raise … from``; nothing above an adapter sees a transport exception. What each means over HTTP
(status, OpenAI type and code) is the gateway's business: `autotts.server.errors`.
"""

from __future__ import annotations

from autotts.controllers.errors import AutoTTSError

__all__ = ["EngineDown", "EngineError", "EngineGarbage", "EngineRejected", "EngineTimeout", "ReplicaMismatch"]


class EngineError(AutoTTSError):
    """An engine call failed; `replica` is the URL of the replica it failed on (None: unknown or in process)."""

    kind = "error"  # the `kind` label of autotts_engine_errors_total

    def __init__(self, message: str, *, replica: str | None = None) -> None:
        super().__init__(message)
        self.replica = replica


class EngineDown(EngineError):
    kind = "down"


class EngineGarbage(EngineError):
    kind = "garbage"


class EngineRejected(EngineError):
    kind = "rejected"


class EngineTimeout(EngineError):
    kind = "timeout"


class ReplicaMismatch(EngineError):
    """A replica serves another model than the rest of the pool (a deployment mistake)."""
