"""One exception tree for the whole SDK, so callers can catch at the right depth.

    AutoTTSError
    ├── ControllerSpecError      bad controller name, parameter, β or artifact
    ├── ArtifactError            artifact missing, corrupt, hash mismatch, code not allowed
    ├── IllegalActionError       a controller asked for something the episode state forbids
    ├── ObservationReadOnlyError a controller tried to change its observation
    └── EpisodeError             a controller crashed, stalled or never answered
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "AutoTTSError",
    "ControllerSpecError",
    "EpisodeError",
    "IllegalActionError",
    "ObservationReadOnlyError",
]


class AutoTTSError(Exception):
    """Base of every error autotts raises on purpose."""


class ControllerSpecError(AutoTTSError, ValueError):
    """A controller spec, parameter or β value is not acceptable."""


class ArtifactError(AutoTTSError):
    """A controller artifact cannot be loaded."""


class IllegalActionError(AutoTTSError):
    """An action is not legal in the current episode state."""


class ObservationReadOnlyError(AutoTTSError, AttributeError):
    """A controller assigned to its observation; only the episode machine changes it."""


class EpisodeError(AutoTTSError):
    """An episode could not be completed because of the controller."""
