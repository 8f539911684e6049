"""Writing the winners as controller artifacts (manifest + scorecard), loadable by eval and serve.

The candidate's class (name, β range, schedule table) is read in a sandboxed worker; the manifest
and the files are written by this process only (`autotts.sandbox.remote.save_artifact`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from autotts.controllers.errors import AutoTTSError

from .config import DiscoverConfig

__all__ = ["artifact_name", "write_artifact"]


def artifact_name(rank: int, record: dict[str, Any], cls_name: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", cls_name or "controller").strip("_") or "controller"
    return f"{rank:02d}_{record['id']}_{base}"[:80]


def write_artifact(path: Path, source: str, scorecard: dict[str, Any], provenance: dict[str, Any],
                   config: DiscoverConfig) -> tuple[Path | None, str | None]:
    """(artifact path, None) on success, (None, error) otherwise."""
    from autotts.sandbox.remote import save_artifact

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return save_artifact(path, source, scorecard=scorecard, provenance=provenance, limits=config.limits,
                             allow_unsandboxed=config.allow_unsandboxed or None), None
    except AutoTTSError as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
