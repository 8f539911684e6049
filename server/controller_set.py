"""The set of controllers a gateway serves: read from its config and `controllers_dir`, checked, described.

The loaded set (the default, every alias and every A/B arm) comes from the gateway config plus, when
``controllers_dir`` is set, that directory:

* every artifact in it becomes an alias named after it: a directory ``NAME/`` (``manifest.json`` +
  ``controller.py``) or a single file ``NAME.json`` (manifest with the source inside); other files are
  ignored, and so are names starting with ``.`` or ``_``;
* one settings file, ``controllers.yaml`` (or ``controllers.yml`` / ``controllers.toml``), may set
  ``controller`` (the default), ``aliases`` and ``arms``; they win over the config file. A spec there may
  name an artifact of the directory with parameters, ``NAME:beta=0.3``.

Before any artifact code runs its content hash is verified (`read_artifact`). Artifact code may come from
a model, so it runs in sandboxed workers (`server/sandboxed.py`: its class is read in one, each episode
steps in a fresh one), never in the gateway; ``allow_code`` instead trusts it and loads it in process (for
code the operator wrote). Each artifact controller must pass its contract check on synthetic episodes
before it may serve (``check_artifacts: false`` skips that, e.g. to exercise the fallback on purpose).
Artifacts are loaded once per set and handed to the `ControllerSelector`, so files changed on disk never
reach a running set; a set that is replaced ends its idle workers (server/lifecycle.py swaps sets).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotts.controllers.artifact import load_artifact_class, read_artifact
from autotts.controllers.base import Controller
from autotts.controllers.builtins import BUILTINS
from autotts.controllers.errors import AutoTTSError
from autotts.controllers.registry import parse_spec
from autotts.sandbox import SandboxUnavailable
from autotts.sandbox.remote import CandidateError

from .arms import Arm, parse_arms
from .config import ConfigError, GatewayConfig
from .errors import GatewayError
from .sandboxed import SandboxSettings, ServedArtifact, ServedController
from .selection import NONE, ControllerSelector, Selection

__all__ = ["SETTINGS_FILES", "ControllerSet", "build_set", "read_settings", "scan_dir"]

SETTINGS_FILES = ("controllers.yaml", "controllers.yml", "controllers.toml")
SETTINGS_KEYS = ("controller", "aliases", "arms")
_BUILTIN_TYPES = frozenset(BUILTINS.values())


@dataclass(frozen=True)
class ControllerSet:
    """One complete, checked set of controllers: what `GET /v1/controllers` lists."""

    selector: ControllerSelector
    entries: list[dict[str, Any]]
    loaded_at: float = field(default_factory=time.time)
    artifacts: tuple[ServedArtifact, ...] = ()  # sandboxed artifacts: their spare workers end with the set

    async def warm(self) -> None:
        """Start the sandboxed artifacts' spare workers, so the first requests need not wait for one."""
        for artifact in self.artifacts:
            await artifact.warm()

    async def close(self) -> None:
        for artifact in self.artifacts:
            await artifact.close()

    def versions(self) -> dict[str, dict[str, Any]]:
        """``kind:name`` → what identifies the controller behind it (for the reload's change list)."""
        return {f"{e['kind']}:{e['name']}": {k: e.get(k) for k in ("spec", "resolved_spec", "version", "sha256",
                                                                   "weight")} for e in self.entries}


# --- building a set ------------------------------------------------------------------------------
def scan_dir(directory: Path) -> dict[str, Path]:
    """The artifacts of `directory` by alias name: ``NAME/`` (an artifact directory) or ``NAME.json``."""
    found: dict[str, Path] = {}
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith((".", "_")) or entry.name in SETTINGS_FILES:
            continue
        if entry.is_dir():
            name = entry.name
        elif entry.is_file() and entry.suffix == ".json":
            name = entry.stem
        else:
            continue
        if name in found:
            raise ConfigError(f"{entry}: artifact name {name!r} is also used by {found[name]}")
        if name in BUILTINS or name == NONE:
            raise ConfigError(f"{entry}: artifact name {name!r} is a built-in controller's name; rename it")
        if any(c in name for c in ":@,= ") or not name:
            raise ConfigError(f"{entry}: artifact name {name!r} may not contain ':', '@', ',', '=' or spaces")
        found[name] = entry
    return found


def read_settings(directory: Path) -> dict[str, Any]:
    """`controller`, `aliases` and `arms` from the directory's settings file (empty without one)."""
    present = [directory / n for n in SETTINGS_FILES if (directory / n).is_file()]
    if not present:
        return {}
    if len(present) > 1:
        raise ConfigError(f"{directory}: use one settings file, found {', '.join(p.name for p in present)}")
    path = present[0]
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except Exception as exc:  # the parsers' errors carry line numbers: pass them on in one line
        raise ConfigError(f"{path}: cannot parse: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with {', '.join(SETTINGS_KEYS)}")
    for key in data:
        if key not in SETTINGS_KEYS:
            raise ConfigError(f"{path}: unknown setting {key!r}; known: {', '.join(SETTINGS_KEYS)}")
    if "controller" in data and (not isinstance(data["controller"], str) or not data["controller"].strip()):
        raise ConfigError(f"{path}: controller must be a controller spec, got {data['controller']!r}")
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                for k, v in aliases.items()):
        raise ConfigError(f"{path}: aliases must map names to controller specs, got {aliases!r}")
    if not isinstance(data.get("arms", []), list):
        raise ConfigError(f"{path}: arms must be a list of {{name, controller, beta, weight}}")
    try:
        parse_arms(data.get("arms", []))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data


def _expand(spec: str, artifacts: dict[str, Path]) -> str:
    """``NAME`` or ``NAME:k=v`` for an artifact NAME of the directory → ``<its path>`` / ``<its path>:k=v``."""
    head, sep, tail = spec.partition(":")
    return f"{artifacts[head]}{sep}{tail}" if head in artifacts else spec


def _load_artifact(path: str, config: GatewayConfig) -> type[Controller] | ServedArtifact:
    """The artifact at `path`: in process only if the operator trusts artifact code, else sandboxed."""
    read_artifact(path)  # content hash first: nothing of a changed artifact runs
    if config.allow_code:
        return load_artifact_class(path, allow_code=True)
    settings = SandboxSettings(spares=config.sandbox_spares, step_timeout_s=config.sandbox_step_timeout_s,
                               allow_unsandboxed=config.allow_unsandboxed or None)
    try:
        return ServedArtifact.load(path, settings)
    except SandboxUnavailable as exc:
        raise ConfigError(f"{path}: artifact code runs in a kernel sandbox, which does not work here: {exc}. "
                          "Set allow_unsandboxed: true (--no-sandbox) to run it in plain subprocesses, or "
                          "allow_code: true (--allow-artifact-code) to trust it in process") from None
    except CandidateError as exc:
        raise ConfigError(f"{path}: controller code cannot be used ({exc.stage}): {exc}") from None


def build_set(config: GatewayConfig) -> ControllerSet:
    """The complete controller set of `config` (+ its controllers_dir), checked; a ConfigError names the culprit."""
    try:
        return _build(config)
    except GatewayError as exc:  # the selector's own validation (unknown controller, bad β, ...)
        raise ConfigError(f"controllers: {exc.message}") from None
    except AutoTTSError:
        raise
    except Exception as exc:  # artifact code is arbitrary: whatever it raises is a load failure, not a crash
        raise ConfigError(f"controllers: loading failed: {type(exc).__name__}: {exc}") from exc


def _build(config: GatewayConfig) -> ControllerSet:
    default, aliases, arms = config.controller, dict(config.aliases), [dict(a) for a in config.arms]
    artifacts: dict[str, Path] = {}
    if config.controllers_dir:
        directory = Path(config.controllers_dir)
        artifacts = scan_dir(directory)
        aliases.update({name: str(path) for name, path in artifacts.items()})
        settings = read_settings(directory)
        default = settings.get("controller", default)
        aliases.update(settings.get("aliases", {}))
        arms = [dict(a) for a in settings.get("arms", arms)]
    default = _expand(default.strip(), artifacts)
    aliases = {name: _expand(spec.strip(), artifacts) for name, spec in aliases.items()}
    for arm in arms:
        if isinstance(arm.get("controller"), str):
            arm["controller"] = _expand(arm["controller"].strip(), artifacts)
    parsed = parse_arms(arms)
    classes: dict[str, type[Controller] | ServedArtifact] = {}
    for spec in (default, *aliases.values(), *(a.controller for a in parsed)):
        if spec == NONE or spec in aliases:
            continue
        name, _ = parse_spec(spec)
        if name not in BUILTINS and name not in classes and Path(name).exists():
            classes[name] = _load_artifact(name, config)
    selector = ControllerSelector(default, aliases, allow_code=config.allow_code, arms=parsed,
                                  salt=config.ab_salt, classes=classes)
    serving = [("default", "default", default, selector.resolve(default), None)]
    serving += [("alias", name, spec, selector.select(None, None, name), None)
                for name, spec in sorted(aliases.items())]
    serving += [("arm", arm.name, arm.controller, selector.resolve(arm.controller, arm=arm), arm) for arm in parsed]
    paths = {id(cls): path for path, cls in classes.items()}
    entries = [_describe(kind, name, spec, sel, paths, arm) for kind, name, spec, sel, arm in serving]
    if config.check_artifacts:
        _check_artifacts([(e, sel.controller) for e, (*_, sel, _) in zip(entries, serving, strict=True)])
    return ControllerSet(selector, entries, artifacts=tuple(c for c in classes.values()
                                                            if isinstance(c, ServedArtifact)))


def _check_artifacts(pairs: list[tuple[dict[str, Any], Any]]) -> None:
    """Every artifact controller, with the parameters it serves with, passes its contract check."""
    from autotts.offline.check import check_controller

    checked: set[int] = set()
    for entry, controller in pairs:
        if entry.get("source") != "artifact" or id(controller) in checked:
            continue
        checked.add(id(controller))
        try:
            if isinstance(controller, ServedController):
                controller.artifact.check(controller)
            else:
                check_controller(controller)
        except Exception as exc:
            raise ConfigError(f"{entry['path']}: controller {entry['resolved_spec']!r} failed its check "
                              f"({type(exc).__name__}: {exc})") from None


def _describe(kind: str, name: str, spec: str, selection: Selection, paths: dict[int, str],
              arm: Arm | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": kind, "name": name, "spec": spec}
    if arm is not None:
        entry.update(weight=arm.weight, arm_beta=arm.beta)
    controller = selection.controller
    if controller is None:
        return {**entry, "controller": NONE, "source": "passthrough"}
    if isinstance(controller, ServedController):
        artifact, info = controller.artifact, controller.artifact.info
        manifest = {k: v for k, v in artifact.manifest.items() if k != "source"}
        entry.update(controller=controller.name, resolved_spec=controller.spec, version=controller.version,
                     description=controller.description, beta=controller.beta,
                     beta_range=None if info.beta_range is None else list(info.beta_range),
                     default_beta=info.default_beta, params=dict(controller.params), parameters=info.parameters,
                     source="artifact", isolation="sandbox", path=artifact.path, sha256=manifest.get("sha256"),
                     manifest=manifest)
        return _jsonable(entry)
    cls = type(controller)
    entry.update(
        controller=controller.name, resolved_spec=controller.spec, version=str(controller.version),
        description=controller.description, beta=controller.beta,
        beta_range=None if cls.beta_range is None else list(cls.beta_range), default_beta=cls.default_beta,
        params=dict(controller.params),
        parameters={k: p.describe() for k, p in cls.parameters.items()})
    if id(cls) in paths:
        manifest = {k: v for k, v in getattr(cls, "manifest", {}).items() if k != "source"}
        entry.update(source="artifact", isolation="in-process", path=paths[id(cls)], sha256=manifest.get("sha256"),
                     manifest=manifest)
    else:
        entry["source"] = "builtin" if cls in _BUILTIN_TYPES else "class"
    return _jsonable(entry)


def _jsonable(value: Any) -> Any:
    """`value` with non-finite floats as strings (strict JSON has no inf/nan; a manifest may hold them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- the live set and its reloads ----------------------------------------------------------------
