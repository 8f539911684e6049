"""Errors of replay stores, evaluation, collection and reports, on the one tree (autotts.controllers.errors).

    AutoTTSError
    ├── StoreError            a replay store (or a file to import) is missing, corrupt or inconsistent
    ├── QuestionsError        a question file is missing, unreadable or has a row without a usable question
    ├── CollectError          collection cannot start or resume, or an engine call failed (finished work is kept)
    ├── RayUnavailableError   --ray was asked for, but Ray is not installed or the cluster cannot be reached
    ├── ReportError           an input of a report (results table, episodes, traces, metrics) is missing or malformed
    └── EmbeddingsUnavailable the semantic aggregator's local embedding model is not installed
"""

from __future__ import annotations

from autotts.controllers.errors import AutoTTSError

__all__ = ["CollectError", "EmbeddingsUnavailable", "QuestionsError", "RayUnavailableError", "ReportError",
           "StoreError"]


class StoreError(AutoTTSError):
    """A replay store (or a file to import) is missing, corrupt or inconsistent."""


class QuestionsError(AutoTTSError):
    """A question file is missing, unreadable or has a row without a usable question."""


class CollectError(AutoTTSError):
    """Collection cannot start, cannot resume, or an engine call failed (finished questions are kept)."""


class RayUnavailableError(AutoTTSError):
    """`--ray` was asked for but Ray is not installed or the cluster cannot be reached."""


class ReportError(AutoTTSError):
    """An input of a report (`autotts report`, `autotts ab report`) is missing or malformed."""


class EmbeddingsUnavailable(AutoTTSError):
    """The semantic aggregator's local sentence-embedding model cannot be loaded (package missing)."""
