"""The trusted side of a model-written controller: its class lives in a jailed worker, its episodes here.

`SandboxedClass.load(source)` starts a worker (`autotts.sandbox.channel`) running
`controller_worker`, which executes the source and reports the class (name, β range, schedule);
`new(beta, **params)` checks parameters there. `run_lockstep(pairs)` then drives many episode
machines at once: every message carries one step of every unfinished episode of a group (what
each controller is shown, as an `obs_sync` delta) and brings back their batches, which the
machines (here, in the trusted process) validate and apply. Costs, answers and scores are the
machines' own; nothing the worker says is taken as a fact beyond "this is the batch".

A worker never sees one question twice: episodes are grouped so that every group holds each
question at most once, and every group runs in a fresh worker. Code that keeps state between
episodes (a global, a class attribute) therefore cannot pool what other episodes of the same
question were shown (other seeds, other β, other models' stores) into an answer it did not pay for.

A worker that crashes, times out or breaks the protocol ends the episodes of its group with that
reason, and every later one too (`SandboxedClass.failure`, a `WorkerError`).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import autotts.controllers
from autotts.controllers.aggregators import parse_aggregator
from autotts.controllers.artifact import write_artifact
from autotts.controllers.base import check_schedule_table
from autotts.controllers.episode import EpisodeMachine
from autotts.controllers.errors import AutoTTSError, ControllerSpecError
from autotts.controllers.obs_sync import ObservationSync

from .batches import decode_batch
from .channel import Worker
from .errors import CandidateError, WorkerCrashed, WorkerError, WorkerOutputTooLarge, WorkerTimeout
from .limits import Limits

__all__ = ["CandidateError", "ControllerInfo", "SandboxedClass", "SandboxedController", "decode_batch",
           "distinct_question_groups", "failure_kind", "from_json", "reply_decoder", "run_lockstep", "save_artifact",
           "to_json"]

ENTRY = "autotts.sandbox.controller_worker:main"
_HERE = Path(__file__).resolve().parent
SOURCES = {"autotts.controllers": Path(autotts.controllers.__file__).resolve().parent,
           "autotts.sandbox.controller_worker": _HERE / "controller_worker.py"}
with suppress(ImportError):  # the worker's JSON codec too, when installed: a compiled library, nothing more
    import orjson

    SOURCES["orjson"] = Path(orjson.__file__).resolve().parent


@dataclass(frozen=True)
class ControllerInfo:
    """What the worker reported about the class (untrusted text; used for manifests and messages only)."""

    name: str
    version: str
    entry: str
    description: str
    parameters: dict[str, Any]
    beta_range: tuple[float, float] | None
    default_beta: float | None
    budget_knobs: tuple[str, ...]
    schedule: list[dict[str, Any]] | None  # the β schedule on a grid, None when it failed
    schedule_error: str | None
    aggregator: str | None = None  # what the class names (checked here): drivers vote with it, as in process


@dataclass(frozen=True)
class SandboxedController:
    """One instance in the worker: what drivers need to name it (it has no `step` here)."""

    owner: SandboxedClass
    id: int
    name: str
    spec: str
    beta: float | None
    params: dict[str, Any]


def _aggregator(named: Any) -> str | None:
    """The class's ``aggregator`` as a checked spec (`CandidateError` when it names none)."""
    try:
        return None if named is None else parse_aggregator(named, "the controller's aggregator").spec
    except ValueError as exc:
        raise CandidateError(str(exc), stage="load") from None


def _check_reply(reply: Any, expect: type) -> Any:
    if not isinstance(reply, expect):
        raise WorkerCrashed(f"sandboxed worker broke the protocol: expected a JSON {expect.__name__}, "
                            f"got {type(reply).__name__}", kind="protocol", returncode=None)
    return reply


def failure_kind(error: WorkerError) -> str:
    """timeout | cpu | memory | output | crash: how a worker failed, in the words discovery reports."""
    if isinstance(error, WorkerTimeout):
        return "timeout"
    if isinstance(error, WorkerOutputTooLarge):
        return "output"
    kind = getattr(error, "kind", "")
    return kind if kind in ("cpu", "memory") else "crash"


class SandboxedClass:
    """A controller class loaded from source into its own jailed worker."""

    def __init__(self, worker: Worker, info: ControllerInfo, source: str, limits: Limits,
                 allow_unsandboxed: bool | None) -> None:
        self.worker, self.info, self.source = worker, info, source
        self.limits, self.allow_unsandboxed = limits, allow_unsandboxed
        self.failure: WorkerError | None = None  # why the worker is unusable
        self._ids = itertools.count()
        self._episodes = itertools.count()

    @classmethod
    def load(cls, source: str, *, limits: Limits | None = None, entry: str | None = None,
             allow_unsandboxed: bool | None = None, timeout_s: float = 60.0, points: int = 41) -> SandboxedClass:
        """Start a worker and load `source`; raises `CandidateError` when the code is not usable and
        `SandboxUnavailable` when no sandbox works here (and running unsandboxed was not allowed).
        `points` is the β grid of the reported schedule table."""
        limits = limits or Limits()
        worker = Worker.start(SOURCES, ENTRY, limits, allow_unsandboxed=allow_unsandboxed)
        try:
            reply = _request(worker, {"op": "load", "source": source, "entry": entry, "points": points}, timeout_s)
            _check_reply(reply, dict)
            if not reply.get("ok"):
                raise CandidateError(str(reply.get("error"))[:2000], stage=str(reply.get("stage", "load")))
            info = reply["info"]
            beta = info.get("beta_range")
            return cls(worker, ControllerInfo(
                name=str(info["name"]), version=str(info["version"]), entry=str(info["entry"]),
                description=str(info["description"]), parameters=dict(info["parameters"]),
                beta_range=None if beta is None else (float(beta[0]), float(beta[1])),
                default_beta=info.get("default_beta"), budget_knobs=tuple(map(str, info["budget_knobs"])),
                schedule=reply.get("schedule"), schedule_error=reply.get("schedule_error"),
                aggregator=_aggregator(info.get("aggregator"))),
                source, limits, allow_unsandboxed)
        except BaseException:
            worker.close()
            raise

    def spawn(self, timeout_s: float = 60.0) -> SandboxedClass:
        """The same class in a fresh worker (which has seen nothing)."""
        fresh = SandboxedClass.load(self.source, limits=self.limits, entry=self.info.entry,
                                    allow_unsandboxed=self.allow_unsandboxed, timeout_s=timeout_s, points=2)
        if fresh.info.name != self.info.name:
            fresh.close()
            raise CandidateError("the code defines another class when loaded again", stage="load")
        return fresh

    def new(self, beta: float | str | None = None, *, timeout_s: float = 30.0, **params: Any) -> SandboxedController:
        """An instance with this β and these parameters (validated by the class itself, in the worker)."""
        cid = next(self._ids)
        reply = _check_reply(self.request({"op": "new", "id": cid, "beta": beta, "params": params}, timeout_s), dict)
        if not reply.get("ok"):
            raise ControllerSpecError(f"controller {self.info.name!r}: {str(reply.get('error'))[:500]}")
        return SandboxedController(self, cid, self.info.name, str(reply["spec"]), reply.get("beta"),
                                   dict(reply.get("params") or {}))

    def request(self, message: dict[str, Any], timeout_s: float) -> Any:
        if self.failure is not None:
            raise self.failure
        try:
            return _request(self.worker, message, timeout_s)
        except WorkerError as exc:
            self.fail(exc)
            raise

    def fail(self, error: WorkerError) -> None:
        """The worker can no longer be trusted to follow the protocol: remember why and end it."""
        self.failure = self.failure or error
        self.worker.close()

    def episode_id(self) -> int:
        return next(self._episodes)

    def close(self) -> None:
        self.worker.close()

    def __enter__(self) -> SandboxedClass:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


try:  # the trusted side's JSON: orjson where installed (several times faster), else the standard library
    from orjson import dumps as to_json
    from orjson import loads as from_json
except ImportError:  # pragma: no cover - depends on the environment
    def to_json(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    from_json = json.loads


def save_artifact(path: str | Path, source: str, *, scorecard: dict | None = None, provenance: dict | None = None,
                  limits: Limits | None = None, allow_unsandboxed: bool | None = None) -> Path:
    """Write an artifact for model-written `source`: its class is read in a sandboxed worker, the
    reported schedule checked and the files written here (the worker never touches them)."""
    with SandboxedClass.load(source, limits=limits, allow_unsandboxed=allow_unsandboxed) as klass:
        info = klass.info
    if info.schedule_error:
        raise ControllerSpecError(f"{info.name}: schedule() failed: {info.schedule_error}")
    check_schedule_table(info.name, info.schedule or [], info.budget_knobs)
    description = {"name": info.name, "version": info.version, "entry": info.entry, "description": info.description,
                   "parameters": info.parameters, "beta_range": info.beta_range, "default_beta": info.default_beta,
                   "aggregator": info.aggregator}
    return write_artifact(path, source, description, info.schedule or [], scorecard=scorecard, provenance=provenance)


def reply_decoder(message: dict[str, Any]) -> Any:
    """How to read the reply to `message`: steps (ints and strings only) with the fast decoder, the
    rest, whose class descriptions may hold infinite bounds, with the standard library's."""
    return from_json if message.get("op") == "step" else json.loads


def _request(worker: Worker, message: dict[str, Any], timeout_s: float) -> Any:
    reply = worker.request(to_json(message), timeout_s)
    try:
        return reply_decoder(message)(reply)
    except (ValueError, RecursionError) as exc:
        worker.close()
        raise WorkerCrashed(f"sandboxed worker broke the protocol: its reply is not JSON ({exc})"[:300],
                            kind="protocol", returncode=None) from None


@dataclass
class _Episode:
    index: int
    eid: int
    machine: EpisodeMachine
    instance: int  # the controller's id in the group's worker
    sync: ObservationSync
    init: list[Any] | None


def _step_message(episodes: Sequence[_Episode], timeout_s: float) -> dict[str, Any]:
    items = []
    for e in episodes:
        items.append([e.eid, e.instance, e.init, e.sync.delta()])
        e.init = None
    return {"op": "step", "episodes": items, "timeout_s": timeout_s}


def _take(episode: _Episode, reply: Any) -> str | None:
    """Apply one episode's reply to its machine; the episode's error, if it ended with one."""
    try:
        episode.machine.step(decode_batch(reply))
    except AutoTTSError as exc:
        return str(exc)
    return None


def distinct_question_groups(machines: Sequence[EpisodeMachine]) -> list[list[int]]:
    """Indices of `machines` in groups that hold each question (by its text) at most once."""
    seen: dict[str, int] = {}
    groups: list[list[int]] = []
    for i, machine in enumerate(machines):
        k = seen.get(machine.obs.question, 0)
        seen[machine.obs.question] = k + 1
        if k == len(groups):
            groups.append([])
        groups[k].append(i)
    return groups


def run_lockstep(pairs: Sequence[tuple[EpisodeMachine, SandboxedController]], *, step_timeout_s: float = 5.0,
                 deadline: float | None = None) -> list[str | None]:
    """Run every (machine, controller) episode to its end, in lockstep per group; the error of each (None: ok).

    The machines must log their changes (``log_changes=True``) and all controllers must belong to one
    `SandboxedClass`. Each group (`distinct_question_groups`) runs in a fresh worker, the next one
    starting while the current one runs. A worker failure ends its group's episodes and every later
    one with its reason; so does `deadline` (a `time.monotonic()` value), for the groups not started.
    """
    if not pairs:
        return []
    owner = pairs[0][1].owner
    if any(c.owner is not owner for _, c in pairs):
        raise ValueError("run_lockstep: every controller must live in the same worker")
    errors: list[str | None] = [None] * len(pairs)
    groups = distinct_question_groups([m for m, _ in pairs])
    with ThreadPoolExecutor(max_workers=1) as starter:  # the next group's worker starts while one runs
        upcoming = starter.submit(owner.spawn) if owner.failure is None else None
        for g, group in enumerate(groups):
            reason = _why_not(owner, deadline)
            if reason is None:
                try:
                    worker = upcoming.result()
                except WorkerError as exc:
                    owner.failure = owner.failure or exc
                    reason = f"sandboxed worker failed: {_first_line(exc)}"
            if reason is not None:
                for i in (i for rest in groups[g:] for i in rest):
                    errors[i] = reason
                break
            upcoming = starter.submit(owner.spawn) if g + 1 < len(groups) else None
            try:
                _run_group(worker, [(i, *pairs[i]) for i in group], errors, step_timeout_s, deadline)
            finally:
                worker.close()
                if worker.failure is not None:
                    owner.failure = owner.failure or worker.failure
        if upcoming is not None:
            with suppress(Exception):
                upcoming.result().close()
    return errors


def _why_not(owner: SandboxedClass, deadline: float | None) -> str | None:
    if owner.failure is not None:
        return f"sandboxed worker failed: {_first_line(owner.failure)}"
    if deadline is not None and time.monotonic() >= deadline:
        return "the evaluation reached its wall-clock limit"
    return None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _run_group(worker: SandboxedClass, group: list[tuple[int, EpisodeMachine, SandboxedController]],
               errors: list[str | None], step_timeout_s: float, deadline: float | None) -> None:
    """One group in lockstep on its own worker: its instances created there, then one message per step."""
    instances: dict[int, int] = {}  # the owner's instance id → this worker's
    for _, _, controller in group:
        if controller.id not in instances:
            instances[controller.id] = worker.new(controller.beta, **controller.params).id
    pending = [_Episode(i, worker.episode_id(), m, instances[c.id], sync := ObservationSync(m), sync.init())
               for i, m, c in group]
    while pending:
        message = _step_message(pending, step_timeout_s)
        timeout = max(30.0, step_timeout_s * len(pending) + 10)
        if deadline is not None:
            timeout = max(1.0, min(timeout, deadline - time.monotonic()))
        try:
            replies = _check_reply(worker.request(message, timeout), list)
            if len(replies) != len(pending):
                raise WorkerCrashed(f"sandboxed worker broke the protocol: {len(replies)} replies for "
                                    f"{len(pending)} episodes", kind="protocol", returncode=None)
        except WorkerError as exc:
            worker.fail(exc)
            for e in pending:
                errors[e.index] = f"sandboxed worker failed: {_first_line(exc)}"
            return
        still = []
        for e, reply in zip(pending, replies, strict=True):
            errors[e.index] = _take(e, reply)
            if errors[e.index] is None and not e.machine.done:
                still.append(e)
        pending = still
