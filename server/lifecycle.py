"""What controllers the gateway serves, and swapping them without a restart or a dropped request.

The loaded set (the default, every alias and every A/B arm) comes from the gateway config plus, when
``controllers_dir`` is set, that directory:

* every artifact in it becomes an alias named after it: a directory ``NAME/`` (``manifest.json`` +
  ``controller.py``) or a single file ``NAME.json`` (manifest with the source inside); other files are
  ignored, and so are names starting with ``.`` or ``_``;
* one settings file, ``controllers.yaml`` (or ``controllers.yml`` / ``controllers.toml``), may set
  ``controller`` (the default), ``aliases`` and ``arms``; they win over the config file. A spec there may
  name an artifact of the directory with parameters, ``NAME:beta=0.3``.

Before any artifact code runs its content hash is verified (`read_artifact`); it runs only when the
operator set ``allow_code``; each artifact controller must pass `check_controller` on synthetic episodes
before it may serve (``check_artifacts: false`` skips that, e.g. to exercise the fallback on purpose).
Classes are loaded once per set and handed to the `ControllerSelector`, so files changed on disk never
reach a running set.

A reload (``POST /admin/reload``, or a change seen by the poll watcher every ``reload_interval_s``) reads
the config file and the directory again, builds a complete new set in a worker thread and swaps it in
with one assignment, only if all of it loaded; otherwise the old set keeps serving, and the error is kept
for ``GET /v1/controllers`` and counted in ``autotts_controller_reloads_total{result="error"}``. A request
holds its controller object from `Gateway.prepare` on, so requests in flight finish with the controller
they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autotts.controllers.artifact import load_artifact_class, read_artifact
from autotts.controllers.base import Controller
from autotts.controllers.builtins import BUILTINS
from autotts.controllers.errors import AutoTTSError
from autotts.controllers.registry import parse_spec

from .arms import Arm, parse_arms
from .config import ConfigError, GatewayConfig
from .errors import GatewayError, ReloadFailed
from .metrics import GatewayMetrics
from .selection import NONE, ControllerSelector, Selection

__all__ = ["RELOADABLE", "SETTINGS_FILES", "ControllerLifecycle", "ControllerSet", "ReloadFailed", "build_set",
           "scan_dir"]

log = logging.getLogger(__name__)

SETTINGS_FILES = ("controllers.yaml", "controllers.yml", "controllers.toml")
SETTINGS_KEYS = ("controller", "aliases", "arms")
#: config keys a reload applies; a change to any other key is reported as needing a restart
RELOADABLE = ("controller", "aliases", "arms", "ab_salt", "allow_code", "check_artifacts")
BUILD_TIMEOUT_S = 120.0
_BUILTIN_TYPES = frozenset(BUILTINS.values())


@dataclass(frozen=True)
class ControllerSet:
    """One complete, checked set of controllers: what `GET /v1/controllers` lists."""

    selector: ControllerSelector
    entries: list[dict[str, Any]]
    loaded_at: float = field(default_factory=time.time)

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


def _load_class(path: str, allow_code: bool) -> type[Controller]:
    read_artifact(path)  # content hash first: nothing of a changed artifact runs
    if not allow_code:
        raise ConfigError(f"{path}: serving this artifact runs its Python code, which the operator has not "
                          "allowed: set allow_code: true (--allow-artifact-code, AUTOTTS_SERVE_ALLOW_CODE=1)")
    return load_artifact_class(path, allow_code=True)


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
    classes: dict[str, type[Controller]] = {}
    for spec in (default, *aliases.values(), *(a.controller for a in parsed)):
        if spec == NONE or spec in aliases:
            continue
        name, _ = parse_spec(spec)
        if name not in BUILTINS and name not in classes and Path(name).exists():
            classes[name] = _load_class(name, config.allow_code)
    selector = ControllerSelector(default, aliases, allow_code=config.allow_code, arms=parsed,
                                  salt=config.ab_salt, classes=classes)
    serving = [("default", "default", default, selector.resolve(default), None)]
    serving += [("alias", name, spec, selector.select(None, None, name), None)
                for name, spec in sorted(aliases.items())]
    serving += [("arm", arm.name, arm.controller, selector.resolve(arm.controller, arm=arm), arm) for arm in parsed]
    paths = {cls: path for path, cls in classes.items()}
    entries = [_describe(kind, name, spec, sel, paths, arm) for kind, name, spec, sel, arm in serving]
    if config.check_artifacts:
        _check_artifacts([(e, sel.controller) for e, (*_, sel, _) in zip(entries, serving, strict=True)])
    return ControllerSet(selector, entries)


def _check_artifacts(pairs: list[tuple[dict[str, Any], Controller | None]]) -> None:
    """Every artifact controller, with the parameters it serves with, passes `check_controller`."""
    from autotts.offline.check import check_controller

    checked: set[int] = set()
    for entry, controller in pairs:
        if entry.get("source") != "artifact" or id(controller) in checked:
            continue
        checked.add(id(controller))
        try:
            check_controller(controller)
        except Exception as exc:
            raise ConfigError(f"{entry['path']}: controller {entry['resolved_spec']!r} failed its check "
                              f"({type(exc).__name__}: {exc})") from None


def _describe(kind: str, name: str, spec: str, selection: Selection, paths: dict[type, str],
              arm: Arm | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": kind, "name": name, "spec": spec}
    if arm is not None:
        entry.update(weight=arm.weight, arm_beta=arm.beta)
    controller = selection.controller
    if controller is None:
        return {**entry, "controller": NONE, "source": "passthrough"}
    cls = type(controller)
    entry.update(
        controller=controller.name, resolved_spec=controller.spec, version=str(controller.version),
        description=controller.description, beta=controller.beta,
        beta_range=None if cls.beta_range is None else list(cls.beta_range), default_beta=cls.default_beta,
        params=dict(controller.params),
        parameters={k: p.describe() for k, p in cls.parameters.items()})
    if cls in paths:
        manifest = {k: v for k, v in getattr(cls, "manifest", {}).items() if k != "source"}
        entry.update(source="artifact", path=paths[cls], sha256=manifest.get("sha256"), manifest=manifest)
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
class ControllerLifecycle:
    """Owns the gateway's current `ControllerSet`; reloads it on demand or when watched files change."""

    def __init__(self, config: GatewayConfig, metrics: GatewayMetrics) -> None:
        self.base = config  # the start-up settings (also: where to read them again)
        self.config = config  # the settings of the current set
        self.metrics = metrics
        self.current = build_set(config)  # a broken artifact at start-up is fatal: one clear error
        self.last: dict[str, Any] = {"result": None, "trigger": None, "at": None, "error": None,
                                     "duration_s": None}
        self.counts = {"ok": 0, "error": 0}
        for result in self.counts:
            metrics.controller_reloads.labels(result=result)  # both series exist from the start
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task | None = None
        self._applied = self.fingerprint()

    @property
    def selector(self) -> ControllerSelector:
        return self.current.selector

    # --- reload --------------------------------------------------------------------------------
    async def reload(self, trigger: str = "admin") -> dict[str, Any]:
        """Build the set again from the config file and directory; swap it in if it all loads.

        Returns what changed; raises `ReloadFailed` (the old set still serving) naming what broke.
        """
        async with self._lock:
            started = time.perf_counter()
            try:
                self._applied = await asyncio.to_thread(self.fingerprint)  # a failure is retried on the next change
                fresh = await asyncio.to_thread(self.base.reread)
                config = replace(self.base, **{k: getattr(fresh, k) for k in RELOADABLE})
                new = await asyncio.wait_for(asyncio.to_thread(build_set, config), BUILD_TIMEOUT_S)
            except Exception as exc:
                if isinstance(exc, TimeoutError):
                    message = f"controllers: building the new set took longer than {BUILD_TIMEOUT_S:g} s"
                elif isinstance(exc, AutoTTSError):
                    message = str(exc)
                else:
                    log.exception("controller reload failed unexpectedly")
                    message = f"controllers: reload failed: {type(exc).__name__}: {exc}"
                self._finish("error", trigger, started, message)
                log.warning("controller reload (%s) failed, the previous controllers keep serving: %s",
                            trigger, message)
                raise ReloadFailed(message) from None
            before, after = self.current.versions(), new.versions()
            changes = {"added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
                       "changed": [{"entry": k, "from": before[k], "to": after[k]}
                                   for k in sorted(set(before) & set(after)) if before[k] != after[k]]}
            restart = sorted(f.name for f in fields(GatewayConfig)
                             if f.name not in RELOADABLE and getattr(fresh, f.name) != getattr(self.base, f.name))
            self.current, self.config = new, config  # the swap: new requests see the new set from here on
            self._finish("ok", trigger, started, None)
            log.info("controllers reloaded (%s): %s", trigger, changes)
            return {"object": "reload", "result": "ok", "trigger": trigger, "changes": changes,
                    "unchanged": not any(changes.values()), "restart_required": restart,
                    "loaded": len(new.entries), "loaded_at": _iso(new.loaded_at)}

    def _finish(self, result: str, trigger: str, started: float, error: str | None) -> None:
        self.counts[result] += 1
        self.metrics.controller_reloads.labels(result=result).inc()
        self.last = {"result": result, "trigger": trigger, "at": _iso(time.time()), "error": error,
                     "duration_s": round(time.perf_counter() - started, 4)}

    def status(self) -> dict[str, Any]:
        return {"loaded_at": _iso(self.current.loaded_at), "last_reload": dict(self.last),
                "reloads": dict(self.counts), "watching": self._watcher is not None and not self._watcher.done(),
                "reload_interval_s": self.base.reload_interval_s,
                "controllers_dir": self.base.controllers_dir,
                "config_file": None if self.base.config_file is None else str(self.base.config_file)}

    def listing(self) -> dict[str, Any]:
        """The body of ``GET /v1/controllers``."""
        return {"object": "list", "default": self.current.selector.default, "data": self.current.entries,
                "status": self.status()}

    # --- file watch ----------------------------------------------------------------------------
    def watched_files(self) -> list[Path]:
        files = [] if self.base.config_file is None else [self.base.config_file]
        if self.base.controllers_dir:
            for path in sorted(Path(self.base.controllers_dir).rglob("*")):
                rel = path.relative_to(self.base.controllers_dir).parts
                if not any(part.startswith((".", "_")) for part in rel) and path.is_file():
                    files.append(path)
        return files

    def fingerprint(self) -> str:
        """A hash of every watched file's name and bytes (the directory holds a few small files)."""
        digest = hashlib.sha256()
        for path in self.watched_files():
            digest.update(str(path).encode() + b"\0")
            try:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError:
                digest.update(b"unreadable")
        return digest.hexdigest()

    async def start(self) -> None:
        """Start the poll watcher when `reload_interval_s` > 0 and there is something to watch."""
        interval = self.base.reload_interval_s
        if interval > 0 and self._watcher is None:
            if self.base.config_file is None and not self.base.controllers_dir:
                log.warning("reload_interval_s is set but there is no config file or controllers_dir to watch")
                return
            self._watcher = asyncio.create_task(self._watch(interval), name="autotts-controller-watch")

    async def stop(self) -> None:
        task, self._watcher = self._watcher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self, interval: float) -> None:
        """Reload when the watched files changed and then stayed the same for one more interval.

        Waiting for two equal polls skips half-written states (an artifact's source written before its
        manifest); a failed reload is not repeated until the files change again.
        """
        previous = self._applied
        while True:
            await asyncio.sleep(interval)
            try:
                now = await asyncio.to_thread(self.fingerprint)
                if now != self._applied and now == previous:
                    with contextlib.suppress(ReloadFailed):  # recorded and logged by reload()
                        await self.reload("watch")
                previous = now
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive any one bad poll
                log.exception("controller watch: poll failed")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
