"""Inside the jail: one model-written controller class, its episodes' observations, their steps.

This module runs in the sandboxed worker (`autotts.sandbox.jail`) and imports only the standard
library, `autotts.controllers` and the frame helpers. It never sees a store, a gold answer or a
score: the trusted parent runs the episode machine and sends, per step, only what the controller
is shown (the `obs_sync` delta); the worker mirrors it into a read-only `Observation`, calls the
controller and sends back its batch in the actions' compact form. JSON both ways.

Requests (``{"op": ...}``) and replies:

* ``load {source}`` → the class's description (its aggregator too) and β schedule (or why it cannot be used);
* ``new {id, beta, params}`` → an instance (its spec, β and parameters after validation);
* ``step {episodes: [[eid, instance, init | null, delta], ...], timeout_s}`` → per episode the batch,
  ``{"type": name}`` when the step returned no list, or ``{"error": text}`` when it raised;
* ``end {episodes: [eid, ...]}`` drops mirrors; ``digest {eid}`` describes a mirror (for tests).
"""

from __future__ import annotations

# Imports are kept to what every worker needs: a fresh worker starts for every group of episodes, and its
# interpreter's start-up (module imports above all) is most of what it costs.
import json
import signal
import sys
import types
import zlib

from autotts.controllers.actions import ACTION_TYPES, ANSWER, Answer
from autotts.controllers.base import Controller, check_schedule
from autotts.controllers.obs_sync import apply_delta, describe, new_observation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:  # bound into the jail when the parent has it (several times faster than the standard library)
    from orjson import dumps as _dumps
    from orjson import loads as _loads
except ImportError:
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads

ORIGIN = "<candidate>"
_ACTIONS = frozenset(ACTION_TYPES)
_PLAIN = _ACTIONS - {Answer}  # sent as their own four fields
_MAX_TEXT = 2000


class StepTimeout(BaseException):  # BaseException: `except Exception` in controller code does not swallow it
    pass


class _StepClock:
    """The per-step CPU and wall-clock limits, from two periodic timers armed once per limit value.

    A step only resets two counters (no system call per step: thousands of steps go through one message).
    Each timer ticks every tenth of its limit; the eleventh tick within one step raises `StepTimeout` in it,
    so a step is stopped after between 1 and 1.1 times its limit, never earlier, and a step that swallows
    the exception gets it again at every later tick. Ticks between steps do nothing."""

    TICKS = 10

    def __init__(self) -> None:
        self.cpu = self.wall = 0
        self.in_step = False
        self.limit_s: float | None = None

    def arm(self, limit_s: float) -> None:
        if limit_s != self.limit_s:
            period = max(float(limit_s), 0.001) / self.TICKS
            signal.setitimer(signal.ITIMER_PROF, period, period)  # CPU time of a step
            signal.setitimer(signal.ITIMER_REAL, 4 * period, 4 * period)  # and its wall time (a step that sleeps)
            self.limit_s = limit_s

    def on_timer(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGPROF:
            self.cpu += 1
        else:
            self.wall += 1
        if self.in_step and (self.cpu > self.TICKS or self.wall > self.TICKS):
            what = "CPU time" if self.cpu > self.TICKS else "wall-clock time"
            raise StepTimeout(f"the step used more {what} than the per-step limit")


_CLOCK = _StepClock()


class Worker:
    def __init__(self) -> None:
        self.cls: type[Controller] | None = None
        self.instances: dict[int, Controller] = {}
        self.episodes: dict[Any, tuple[Any, Controller]] = {}

    # --- ops -----------------------------------------------------------------------------------
    def load(self, source: str, entry: str | None = None, points: int = 41) -> dict[str, Any]:
        import linecache  # for tracebacks of candidate lines (`_short`)

        linecache.cache[ORIGIN] = (len(source), None, source.splitlines(True), ORIGIN)
        module = types.ModuleType(f"autotts_candidate_{zlib.crc32(source.encode()):08x}")
        module.__file__ = ORIGIN
        try:
            exec(compile(source, ORIGIN, "exec"), module.__dict__)
        except BaseException as exc:  # any failure of candidate code is its report
            return {"ok": False, "stage": "load", "error": _short(exc)}
        sys.modules[module.__name__] = module
        if entry is not None:
            cls = getattr(module, entry, None)
            found = [cls] if isinstance(cls, type) and issubclass(cls, Controller) else []
        else:
            found = [v for v in vars(module).values()
                     if isinstance(v, type) and issubclass(v, Controller) and v.__module__ == module.__name__]
        if len(found) != 1:
            what = f"entry {entry!r} is not a Controller subclass" if entry else \
                f"the code must define exactly one Controller subclass, found {len(found)}"
            return {"ok": False, "stage": "load", "error": what}
        self.cls = cls = found[0]
        info = {"name": str(cls.name), "version": str(cls.version), "entry": cls.__name__,
                "description": str(cls.description),
                "parameters": {str(k): p.describe() for k, p in cls.parameters.items()},
                "beta_range": None if cls.beta_range is None else [float(x) for x in cls.beta_range],
                "default_beta": cls.default_beta, "budget_knobs": [str(k) for k in cls.budget_knobs],
                "aggregator": None if cls.aggregator is None else str(cls.aggregator)}
        try:
            schedule = check_schedule(cls, points=points)
        except BaseException as exc:
            return {"ok": True, "info": info, "schedule": None, "schedule_error": _short(exc)}
        return {"ok": True, "info": info, "schedule": schedule, "schedule_error": None}

    def new(self, id: int, beta: Any = None, params: dict | None = None) -> dict[str, Any]:
        if self.cls is None:
            return {"ok": False, "error": "no controller class loaded"}
        try:
            controller = self.cls(beta=beta, **(params or {}))
            spec = controller.spec
        except BaseException as exc:
            return {"ok": False, "error": _short(exc)}
        self.instances[id] = controller
        return {"ok": True, "spec": spec, "beta": controller.beta, "params": controller.params}

    def step(self, episodes: list, timeout_s: float = 5.0, end: list | None = None) -> list:
        self.end(end or [])
        clock = _CLOCK
        clock.arm(timeout_s)
        out = []
        for eid, instance, init, delta in episodes:
            if init is not None:
                self.episodes[eid] = (new_observation(init), self.instances[instance])
            obs, controller = self.episodes[eid]
            apply_delta(obs, delta)
            clock.cpu = clock.wall = 0
            clock.in_step = True
            try:
                batch = controller.step(obs)
            except MemoryError:
                raise
            except BaseException as exc:  # the step's failure is this episode's report
                clock.in_step = False
                out.append({"error": _short(exc)})
                continue
            finally:
                clock.in_step = False
            out.append(_encode(batch))
        return out

    def end(self, episodes: list) -> dict[str, Any]:
        for eid in episodes:
            self.episodes.pop(eid, None)
        return {"ok": True}

    def digest(self, eid: Any) -> dict[str, Any]:
        return describe(self.episodes[eid][0])


def _encode(batch: Any) -> Any:
    """The batch as ``[ints, texts]``: four fields per action, its own tuple ``(kind, x, segments, probe)``
    (segments null for None, probe a bool), except that an answer's text, or the repr of anything that is
    not an action, goes to `texts` (x is its index). The parent checks every field (`batches.decode_batch`)."""
    kind = type(batch)
    if kind in _ACTIONS:
        batch = (batch,)
    elif kind is not list and kind is not tuple:
        return {"type": kind.__name__}
    ints: list[Any] = []
    texts: list[str] = []
    for action in batch:
        kind = type(action)
        if kind in _PLAIN:
            ints += action
        elif kind is Answer:
            ints += (ANSWER, len(texts), 0, 0)
            texts.append(action[1])
        else:
            try:
                text = repr(action)[:80]
            except BaseException:
                text = f"<{type(action).__name__}>"
            ints += (-1, len(texts), 0, 0)
            texts.append(text)
    return [ints, texts]


def _short(exc: BaseException) -> str:
    """`Type: message (at <candidate> line N)`, at most a few lines, for the explorer and the logs."""
    import traceback  # here, not at start-up: most workers never format an error

    lines = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-6)
    where = [ln.strip() for ln in "".join(lines).splitlines() if ORIGIN in ln]
    head = f"{type(exc).__name__}: {exc}"[:_MAX_TEXT]
    return f"{head} (at {where[-1]})" if where else head


def main() -> None:
    from autotts.sandbox._frames import serve

    signal.signal(signal.SIGPROF, _CLOCK.on_timer)
    signal.signal(signal.SIGALRM, _CLOCK.on_timer)
    worker = Worker()

    def handle(payload: bytes) -> bytes:
        request = _loads(payload)
        op = request.pop("op")
        try:
            reply = getattr(worker, op)(**request) if op in ("load", "new", "step", "end", "digest") else \
                {"ok": False, "error": f"unknown op {op!r}"}
        except StepTimeout as exc:  # fired outside the controller's own step
            reply = {"ok": False, "error": str(exc)}
        # steps carry ints and strings only; class descriptions may hold infinite bounds, which orjson drops
        return _dumps(reply) if op == "step" else json.dumps(reply).encode()

    serve(handle)
