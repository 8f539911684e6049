"""One exception tree for all of autotts, so callers can catch at the right depth.

Every error autotts raises on purpose is an `AutoTTSError`; each package defines its own branch in its
``errors.py`` (context as constructor fields), and foreign errors (httpx, pyarrow, json, OS) are mapped
onto the tree where they enter, with ``raise … from``. The whole tree:

    AutoTTSError                         autotts.controllers.errors (this module)
    ├── ControllerSpecError              bad controller name, parameter, β or artifact spec (also a ValueError)
    ├── ArtifactError                    artifact missing, corrupt, hash mismatch, code not allowed
    ├── VoteSpecError                    bad answer extractor or aggregator spec (also a ValueError)
    ├── IllegalActionError               a controller asked for something the episode state forbids
    ├── ObservationReadOnlyError         a controller tried to change its observation (also an AttributeError)
    ├── EpisodeError                     a controller crashed, stalled or never answered
    │   └── EpisodeTimeout               an episode ran past its time limit (wall clock live, CPU time in discovery)
    ├── StoreError                       autotts.offline.errors: a replay store is missing, corrupt or inconsistent
    ├── QuestionsError                   · a question file for `autotts collect` is unusable
    ├── CollectError                     · collection cannot start or resume, or an engine call failed
    ├── RayUnavailableError              · --ray asked for, Ray missing or unreachable
    ├── ReportError                      · a report's inputs (results, episodes, traces, metrics) are unusable
    ├── EmbeddingsUnavailable            · the local sentence-embedding model is not installed
    ├── DiscoverConfigError              autotts.discovery.errors: a discover setting is bad
    ├── RunDirError                      · a run directory cannot be created, read or resumed
    ├── ExplorerError                    · an explorer (model API, tool use) failed
    ├── SandboxError                     autotts.sandbox.errors: the kernel jail and its workers
    │   ├── CandidateError               · controller code that does not load or defines no single class
    │   ├── SandboxUnavailable
    │   └── WorkerError → WorkerCrashed (→ WorkerCPULimit, WorkerMemoryLimit), WorkerTimeout,
    │                     WorkerOutputTooLarge, WorkerClosed
    ├── EngineError                      autotts.engines.errors: an engine call failed (`replica` names the server)
    │   ├── EngineDown                   · unreachable (connection refused or reset, connect timeout)
    │   ├── EngineGarbage                · a response that does not parse as the engine's schema
    │   ├── EngineRejected               · the engine refused the request itself (e.g. context too long)
    │   ├── EngineTimeout                · no answer within the call's time limit
    │   └── ReplicaMismatch              · a replica serves another model than its pool
    ├── ConfigError                      autotts.server.errors: a gateway setting is missing or bad
    └── GatewayError                     · a request failed; carries its HTTP status and OpenAI type/code
        ├── BadRequest → UnknownQuestion
        ├── ModelNotFound, UnknownCompletion, AlreadyLabelled, ReloadFailed, TooManyRequests
        └── ControllerFailed

What an error means over HTTP (status, OpenAI type and code, the ``{"error": {...}}`` body) is decided in
one place, `autotts.server.errors`.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "AutoTTSError",
    "ControllerSpecError",
    "EpisodeError",
    "EpisodeTimeout",
    "IllegalActionError",
    "ObservationReadOnlyError",
    "VoteSpecError",
]


class AutoTTSError(Exception):
    """Base of every error autotts raises on purpose."""


class ControllerSpecError(AutoTTSError, ValueError):
    """A controller spec, parameter or β value is not acceptable."""


class ArtifactError(AutoTTSError):
    """A controller artifact cannot be loaded."""


class VoteSpecError(AutoTTSError, ValueError):
    """An answer extractor or aggregator spec is not acceptable; the message names the field."""


class IllegalActionError(AutoTTSError):
    """An action is not legal in the current episode state."""


class ObservationReadOnlyError(AutoTTSError, AttributeError):
    """A controller assigned to its observation; only the episode machine changes it."""


class EpisodeError(AutoTTSError):
    """An episode could not be completed because of the controller."""


class EpisodeTimeout(EpisodeError):
    """An episode ran past its time limit: a request's wall-clock cap, or discovery's per-episode CPU time."""
