"""Swapping the gateway's controllers without a restart or a dropped request.

A reload (``POST /admin/reload``, or a change seen by the poll watcher every ``reload_interval_s``) reads
the config file and the directory again, builds a complete new set in a worker thread
(server/controller_set.py) and swaps it in with one assignment, only if all of it loaded; otherwise the
old set keeps serving, and the error is kept for ``GET /v1/controllers`` and counted in
``autotts_controller_reloads_total{result="error"}``. A request holds its controller object from
`Gateway.prepare` on, so requests in flight finish with the controller they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autotts.controllers.errors import AutoTTSError

from .config import GatewayConfig
from .controller_set import build_set
from .errors import ReloadFailed
from .metrics import GatewayMetrics
from .selection import ControllerSelector

__all__ = ["RELOADABLE", "ControllerLifecycle", "ReloadFailed"]

log = logging.getLogger(__name__)

#: config keys a reload applies; a change to any other key is reported as needing a restart
RELOADABLE = ("controller", "aliases", "arms", "ab_salt", "allow_code", "check_artifacts", "allow_unsandboxed",
              "sandbox_spares", "sandbox_step_timeout_s")
BUILD_TIMEOUT_S = 120.0


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
            old, self.current, self.config = self.current, new, config  # the swap: new requests see the new set
            self._finish("ok", trigger, started, None)
            log.info("controllers reloaded (%s): %s", trigger, changes)
            await old.close()  # its idle workers; requests in flight keep theirs
            await new.warm()
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
        """Warm the sandboxed artifacts' workers; start the poll watcher when `reload_interval_s` > 0 and
        there is something to watch."""
        await self.current.warm()
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
        await self.current.close()

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
