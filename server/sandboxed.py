"""Serving model-written controllers: each episode's controller runs in a sandboxed worker of its own.

An artifact the gateway serves is read once per controller set (`ServedArtifact.load`: content hash,
then its class described and contract-checked in a sandboxed worker). Each episode then takes a
fresh worker from a small pool of pre-started ones (the class already loaded), creates its instance
there and steps it one message per round (`RemoteEpisode`): the worker is shown only that episode's
observation and returns its batch; the episode machine, the engine calls and the answer stay in the
gateway. A worker is never reused, so no request can see another's prompt, and it is killed when
the episode ends. Built-in controllers stay in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotts.controllers.artifact import read_artifact
from autotts.controllers.base import Param
from autotts.controllers.episode import EpisodeMachine
from autotts.controllers.errors import ControllerSpecError
from autotts.controllers.obs_sync import ObservationSync
from autotts.offline.check import check_sandboxed
from autotts.sandbox import AsyncWorker, Limits, WorkerError
from autotts.sandbox.remote import ENTRY, SOURCES, ControllerInfo, SandboxedClass, decode_batch, reply_decoder, to_json

__all__ = ["RemoteEpisode", "SandboxSettings", "ServedArtifact", "ServedController"]

log = logging.getLogger(__name__)

_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


@dataclass(frozen=True)
class SandboxSettings:
    """How artifact workers run (gateway config: sandbox_spares, sandbox_step_timeout_s, allow_unsandboxed)."""

    spares: int = 2
    step_timeout_s: float = 5.0
    limits: Limits = field(default_factory=lambda: Limits(cpu_s=300, memory_bytes=1 << 30, wall_s=60.0))
    allow_unsandboxed: bool | None = None


class ServedArtifact:
    """One artifact as a controller set serves it: its description and its pool of spare workers."""

    def __init__(self, path: str, manifest: dict[str, Any], source: str, info: ControllerInfo,
                 settings: SandboxSettings) -> None:
        self.path, self.manifest, self.source, self.info, self.settings = path, manifest, source, info, settings
        self.parameters = {name: Param(_TYPES.get(d.get("type"), str), d.get("default"), d.get("low"), d.get("high"),
                                       d.get("help", "")) for name, d in info.parameters.items()}  # to check values
        self._spares: list[AsyncWorker] = []
        self._filling: set[asyncio.Task] = set()
        self._closed = False

    @classmethod
    def load(cls, path: str, settings: SandboxSettings) -> ServedArtifact:
        """Check the content hash and read the class in a sandboxed worker (blocking; the worker is closed)."""
        manifest, source = read_artifact(path)
        with SandboxedClass.load(source, limits=settings.limits, allow_unsandboxed=settings.allow_unsandboxed) as k:
            return cls(path, manifest, source, k.info, settings)

    def instance(self, beta: Any = None, **params: Any) -> ServedController:
        """A controller with this β and these parameters, checked against what the class declares."""
        name = self.info.name
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise ControllerSpecError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for controller "
                                      f"{name!r}; known: {', '.join(sorted(self.parameters)) or 'none'}")
        values = {k: p.default for k, p in self.parameters.items()}
        values.update({k: self.parameters[k].coerce(k, name, v) for k, v in params.items()})
        if self.info.beta_range is None:
            if beta is not None:
                raise ControllerSpecError(f"controller {name!r} takes no beta")
        else:
            low, high = self.info.beta_range
            given = beta if beta is not None else self.info.default_beta if self.info.default_beta is not None else low
            beta = float(Param(float, None, low, high).coerce("beta", name, given))
        return ServedController(self, beta, values)

    def check(self, controller: ServedController) -> None:
        """`check_sandboxed` on synthetic episodes, in a worker of its own (blocking)."""
        settings = self.settings
        with SandboxedClass.load(self.source, limits=settings.limits, allow_unsandboxed=settings.allow_unsandboxed) \
                as klass:
            check_sandboxed(klass.new(controller.beta, **controller.params), step_timeout_s=settings.step_timeout_s)

    # --- the pool -------------------------------------------------------------------------------
    async def _start(self) -> AsyncWorker:
        worker = await AsyncWorker.start(SOURCES, ENTRY, self.settings.limits,
                                         allow_unsandboxed=self.settings.allow_unsandboxed)
        try:
            reply = await _ask(worker, {"op": "load", "source": self.source, "entry": self.info.entry,
                                        "points": 2}, 60.0)
            if not isinstance(reply, dict) or not reply.get("ok"):
                raise WorkerError(f"{self.path}: the artifact no longer loads in a fresh worker")
        except BaseException:
            await worker.close()
            raise
        return worker

    def _top_up(self) -> None:
        missing = self.settings.spares - len(self._spares) - len(self._filling)
        for _ in range(max(0, missing)):
            task = asyncio.ensure_future(self._fill())
            self._filling.add(task)
            task.add_done_callback(self._filling.discard)

    async def _fill(self) -> None:
        try:
            worker = await self._start()
        except Exception:
            log.warning("could not start a spare worker for %s", self.path, exc_info=True)
            return
        if self._closed:
            await worker.close()
        else:
            self._spares.append(worker)

    async def warm(self, *, wait: bool = False) -> None:
        """Start the spare workers now (from the event loop, whose thread outlives them); `wait` for them."""
        self._top_up()
        if wait and self._filling:
            await asyncio.gather(*self._filling, return_exceptions=True)

    async def worker(self) -> AsyncWorker:
        """A fresh worker with the class loaded (a spare if one is ready); the pool refills behind it."""
        worker = self._spares.pop() if self._spares else None
        self._top_up()
        return worker or await self._start()

    async def close(self) -> None:
        """End the idle spares (episodes in flight keep theirs until they end)."""
        self._closed = True
        for task in list(self._filling):
            task.cancel()
        spares, self._spares = self._spares, []
        for worker in spares:
            await worker.close()


@dataclass(frozen=True)
class ServedController:
    """A served artifact with its β and parameters; episodes run it through `open`."""

    artifact: ServedArtifact
    beta: float | None
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return self.artifact.info.name

    @property
    def version(self) -> str:
        return self.artifact.info.version

    @property
    def description(self) -> str:
        return self.artifact.info.description

    @property
    def aggregator(self) -> str | None:
        """The aggregator the artifact's class names (read in its worker, checked there: `ControllerInfo`)."""
        return self.artifact.info.aggregator

    @property
    def spec(self) -> str:
        defaults = {k: p.default for k, p in self.artifact.parameters.items()}
        parts = [] if self.beta is None else [f"beta={self.beta:g}"]
        parts += [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items()
                  if v != defaults.get(k)]
        return self.name + (":" + ",".join(parts) if parts else "")

    async def open(self, machine: EpisodeMachine) -> RemoteEpisode:
        """Start `machine`'s episode on a fresh worker (the machine must log its changes)."""
        worker = await self.artifact.worker()
        try:
            reply = await _ask(worker, {"op": "new", "id": 0, "beta": self.beta, "params": self.params}, 30.0)
            if not isinstance(reply, dict) or not reply.get("ok"):
                raise ControllerSpecError(f"controller {self.spec!r}: {str(reply.get('error'))[:500]}"
                                          if isinstance(reply, dict) else "worker broke the protocol")
        except BaseException:
            await worker.close()
            raise
        return RemoteEpisode(worker, machine, self.artifact.settings.step_timeout_s)

    def __repr__(self) -> str:
        return f"<sandboxed controller {self.spec} v{self.version} from {Path(self.artifact.path).name}>"


class RemoteEpisode:
    """One live episode's controller in its worker: one message per step."""

    def __init__(self, worker: AsyncWorker, machine: EpisodeMachine, step_timeout_s: float) -> None:
        self.worker, self.step_timeout_s = worker, step_timeout_s
        self.sync = ObservationSync(machine)
        self._init: list[Any] | None = self.sync.init()

    async def step(self) -> Any:
        """The controller's next batch (decoded and validated); raises `EpisodeError` if the step raised,
        `WorkerError` if the worker failed."""
        message = {"op": "step", "episodes": [[0, 0, self._init, self.sync.delta()]], "timeout_s": self.step_timeout_s}
        self._init = None
        reply = await _ask(self.worker, message, self.step_timeout_s + 10.0)
        if not isinstance(reply, list) or len(reply) != 1:
            await self.worker.close()
            raise WorkerError("sandboxed worker broke the protocol: expected one reply")
        return decode_batch(reply[0])

    async def close(self) -> None:
        await self.worker.close()


async def _ask(worker: AsyncWorker, message: dict[str, Any], timeout_s: float) -> Any:
    raw = await worker.request(to_json(message), timeout_s)
    try:
        return reply_decoder(message)(raw)
    except (ValueError, RecursionError):
        with contextlib.suppress(Exception):
            await worker.close()
        raise WorkerError("sandboxed worker broke the protocol: its reply is not JSON") from None
