"""Writing the winners as controller artifacts (manifest + scorecard), loadable by eval and serve.

`save_artifact` loads the source to read its class (name, β range, schedule table), which runs the
candidate's module code; so the write happens in the sandbox too, with writes allowed only under
the artifact's own directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .sandbox import Limits, run_task

__all__ = ["artifact_name", "prepare_save", "write_artifact"]


def artifact_name(rank: int, record: dict[str, Any], cls_name: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", cls_name or "controller").strip("_") or "controller"
    return f"{rank:02d}_{record['id']}_{base}"[:80]


def prepare_save(payload: dict[str, Any]):  # sandbox side
    from autotts.controllers.artifact import save_artifact

    target = Path(payload["path"])

    def run() -> str:
        return str(save_artifact(target, payload["source"], scorecard=payload.get("scorecard"),
                                 provenance=payload.get("provenance")))

    return run, [], [str(target)]


def write_artifact(path: Path, source: str, scorecard: dict[str, Any], provenance: dict[str, Any],
                   limits: Limits | None = None) -> tuple[Path | None, str | None]:
    """(artifact path, None) on success, (None, error) otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    box = run_task("save_artifact", {"path": str(path), "source": source, "scorecard": scorecard,
                                     "provenance": provenance}, limits or Limits(cpu_seconds=60, wall_seconds=120))
    if not box.ok:
        return None, f"{box.kind}: {box.error}"
    return Path(box.result), None
