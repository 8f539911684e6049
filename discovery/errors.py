"""Errors of the explorer loop, on the one tree (autotts.controllers.errors).

    AutoTTSError
    ├── DiscoverConfigError   a discovery setting is not acceptable
    ├── RunDirError           the run directory cannot be created, read or resumed
    └── ExplorerError         an explorer cannot continue (bad key, unreachable endpoint, malformed replies...)
"""

from __future__ import annotations

from autotts.controllers.errors import AutoTTSError

__all__ = ["DiscoverConfigError", "ExplorerError", "RunDirError"]


class DiscoverConfigError(AutoTTSError):
    """A discovery setting is not acceptable."""


class RunDirError(AutoTTSError):
    """The run directory cannot be created, read or resumed."""


class ExplorerError(AutoTTSError):
    """An explorer cannot continue (bad key, unreachable endpoint, malformed replies...)."""
