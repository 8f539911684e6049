"""Controller artifacts: controller source + a JSON manifest, as a directory or a single file.

Directory form ``NAME/`` holds ``manifest.json`` and ``controller.py``; single-file form
``NAME.json`` is the manifest with the source under ``"source"``. The manifest records what is
needed to trust and compare a controller: a content hash of the source, the β range and default,
the schedule table, a replay scorecard and provenance (store, explorer, cost). Loading executes
the source, so it needs `allow_code=True`: the operator decides where artifact code may run. Code a model
wrote is loaded and described in a sandboxed worker instead (`autotts.sandbox.remote`), and its manifest
written here by `write_artifact` from that description.
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .base import Controller, check_schedule
from .errors import ArtifactError, ControllerSpecError

__all__ = ["ARTIFACT_FORMAT", "describe_class", "load_artifact_class", "read_artifact", "save_artifact",
           "source_hash", "write_artifact"]

ARTIFACT_FORMAT = "autotts-controller/1"


def source_hash(source: str) -> str:
    return "sha256:" + hashlib.sha256(source.encode("utf-8")).hexdigest()


def _exec_source(source: str, origin: str) -> types.ModuleType:
    module = types.ModuleType(f"autotts_artifact_{hashlib.sha1(origin.encode()).hexdigest()[:12]}")
    module.__file__ = origin
    try:
        exec(compile(source, origin, "exec"), module.__dict__)
    except Exception as exc:
        raise ArtifactError(f"{origin}: controller code failed to load: {type(exc).__name__}: {exc}") from exc
    return module


def _controller_class(module: types.ModuleType, entry: str | None, origin: str) -> type[Controller]:
    if entry is not None:
        cls = getattr(module, entry, None)
        if not (isinstance(cls, type) and issubclass(cls, Controller)):
            raise ArtifactError(f"{origin}: entry {entry!r} is not a Controller subclass")
        return cls
    found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Controller)
             and v.__module__ == module.__name__]
    if len(found) != 1:
        raise ArtifactError(f"{origin}: expected exactly one Controller subclass, found {len(found)}")
    return found[0]


def describe_class(cls: type[Controller]) -> dict[str, Any]:
    """What a manifest records of a controller class (its schedule table not included)."""
    return {"name": cls.name, "version": cls.version, "entry": cls.__name__, "description": cls.description,
            "parameters": {k: p.describe() for k, p in cls.parameters.items()},
            "beta_range": None if cls.beta_range is None else list(cls.beta_range), "default_beta": cls.default_beta,
            "aggregator": cls.aggregator}


def save_artifact(path: str | Path, source: str, *, entry: str | None = None, scorecard: dict | None = None,
                  provenance: dict | None = None, single_file: bool = False) -> Path:
    """Write an artifact for the controller defined in `source`, which is run *in this process* to read
    its class: only for code you trust. For model-written code use `autotts.sandbox.save_artifact`."""
    path = Path(path)
    cls = _controller_class(_exec_source(source, str(path)), entry, str(path))
    try:
        table = check_schedule(cls)
    except ControllerSpecError as exc:
        raise ArtifactError(f"{path}: {exc}") from None
    return write_artifact(path, source, describe_class(cls), table, scorecard=scorecard, provenance=provenance,
                          single_file=single_file)


def write_artifact(path: str | Path, source: str, info: dict[str, Any], schedule: list[dict[str, Any]], *,
                   scorecard: dict | None = None, provenance: dict | None = None, single_file: bool = False) -> Path:
    """Write `source` with a manifest built from the class description `info` and its β `schedule` table."""
    path = Path(path)
    beta = info.get("beta_range")
    manifest: dict[str, Any] = {
        "format": ARTIFACT_FORMAT, "name": info["name"], "version": info["version"], "entry": info["entry"],
        "description": info.get("description", ""), "sha256": source_hash(source),
        "parameters": info.get("parameters", {}),
        **({"aggregator": info["aggregator"]} if info.get("aggregator") else {}),  # what the class votes with
        "beta": None if beta is None else {"range": list(beta), "default": info.get("default_beta")},
        "schedule": schedule[:: max(1, len(schedule) // 10)] if schedule else [],
        "scorecard": scorecard or {}, "provenance": provenance or {},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if single_file:
        target = path if path.suffix == ".json" else path.with_suffix(".json")
        write_text_atomic(target, json.dumps({**manifest, "source": source}, indent=2))
        return target
    path.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path / "controller.py", source)
    write_text_atomic(path / "manifest.json", json.dumps(manifest, indent=2))
    return path


def read_artifact(path: str | Path) -> tuple[dict[str, Any], str]:
    """(manifest, source) of an artifact, with its content hash verified."""
    path = Path(path)
    try:
        if path.is_dir():
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            source = (path / "controller.py").read_text(encoding="utf-8")
        else:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            source = manifest.get("source") if isinstance(manifest, dict) else None
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: not a controller artifact (missing {Path(exc.filename).name})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: field 'format' must be {ARTIFACT_FORMAT!r}")
    if not isinstance(source, str):
        raise ArtifactError(f"{path}: artifact has no controller source")
    if manifest.get("sha256") != source_hash(source):
        raise ArtifactError(f"{path}: content hash mismatch: the source was changed after the manifest "
                            f"was written (manifest {manifest.get('sha256')}, source {source_hash(source)})")
    return manifest, source


def load_artifact_class(path: str | Path, *, allow_code: bool = False) -> type[Controller]:
    """The controller class of an artifact; runs its code only with `allow_code=True`."""
    manifest, source = read_artifact(path)
    if not allow_code:
        raise ArtifactError(f"{path}: loading runs the artifact's Python code; the operator must allow it "
                            "(allow_code=True, or --allow-artifact-code on the command line)")
    module = _exec_source(source, str(path))
    sys.modules.setdefault(module.__name__, module)
    cls = _controller_class(module, manifest.get("entry"), str(path))
    cls.manifest = manifest  # type: ignore[attr-defined]
    return cls
