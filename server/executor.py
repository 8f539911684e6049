"""The live executor: any controller, any branch backend, the offline environment's semantics.

Each step the controller returns a batch of actions (a controller that is not a built-in steps in a
worker thread, so a slow one never blocks the event loop; built-ins take microseconds). The executor

1. *plans* the batch in order: new branch ids for `Branch`, one chain of operations per branch;
2. *runs* the chains concurrently (one task per branch; operations on the same branch in order),
   so all branches of a width step reach the engine together;
3. *applies* the results to the `Observation` in action-list order, checking legality and the token
   budget before every segment and probe exactly as `autotts.offline.env.ReplayEnv` does.

Because of (3) the final state equals sequential execution: through the replay backend an episode
returns the answer and token count of `autotts eval`. Cancelling `run()` (client disconnect, wall
timeout) cancels every in-flight engine call. Between steps no call is in flight, so `Prune` and
`Answer` mean "schedule nothing more for that branch / the episode". Caps: `max_branches` (fewer
branches offered to the controller), `token_budget` (the episode ends with the vote so far, as the
replay environment's budget rule says, and reports ``budget_exhausted``), `timeout_s` (504 error).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autotts.controllers.actions import Answer, Branch, Continue, Probe, Prune, illegal_reason
from autotts.controllers.aggregate import majority, vote_counts
from autotts.controllers.base import Controller
from autotts.controllers.errors import AutoTTSError, EpisodeError, IllegalActionError
from autotts.controllers.observation import BranchView, Observation

from .backends import BranchBackend, Ledger, Unit
from .errors import ControllerFailed, EpisodeTimeout, GatewayError

__all__ = ["Caps", "EpisodeOutcome", "run_episode"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caps:
    """Per-request limits the executor enforces."""

    max_branches: int | None = None
    token_budget: int | None = None
    #: show `token_budget` to the controller (obs.token_budget); False keeps it a silent safety cap, as
    #: when the request asked for no budget (the replay environment then shows None too)
    budget_visible: bool = True
    timeout_s: float | None = None
    max_steps: int = 10_000
    controller_in_thread: bool = True
    progress_interval_s: float = 0.25


@dataclass
class EpisodeOutcome:
    answer: str | None
    obs: Observation
    ledger: Ledger
    probes: int
    prunes: int
    budget_exhausted: bool
    winner: int | None
    votes: dict[str, int]
    reasoning: str | None = None
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return self.obs.step


class _Budget(Exception):
    """The token budget was reached before a segment or probe: end with the vote so far."""


@dataclass(slots=True)
class _Op:
    index: int  # position of the action in the batch
    action: Any
    branch: int
    new: bool = False  # first operation of a branch this batch opened


def leader(obs: Observation) -> tuple[str | None, int]:
    """The current vote leader: majority of completed answers, else of active branches' latest."""
    pool = obs.completed_answers() or [b.latest for b in obs.branches if not b.pruned and b.latest is not None]
    counts = vote_counts(pool)
    winner = majority(pool)
    return winner, counts.get(winner, 0) if winner is not None else 0


def snapshot(obs: Observation, ledger: Ledger, *, in_flight: bool = False) -> dict[str, Any]:
    """Progress of a running episode (what streaming clients see between answer chunks)."""
    winner, votes = leader(obs)
    return {"round": obs.step, "branches": len(obs.branches), "running": len(obs.running()),
            "pruned": sum(b.pruned for b in obs.branches), "completed": len(obs.completed),
            "tokens": ledger.completion_tokens if in_flight else obs.tokens_spent,
            "engine_calls": ledger.calls, "leader": winner, "leader_votes": votes, "in_flight": in_flight}


async def run_episode(controller: Controller, backend: BranchBackend, *, question_id: str | int, question: str,
                      caps: Caps | None = None,
                      progress: Callable[[dict[str, Any]], None] | None = None) -> EpisodeOutcome:
    """Run `controller` to its answer on `backend`; raises GatewayError subclasses only."""
    caps = caps or Caps()
    available = backend.branches_available
    if caps.max_branches is not None:
        available = caps.max_branches if available is None else min(available, caps.max_branches)
    obs = Observation(question_id, question, beta=controller.beta, segment_tokens=backend.segment_tokens,
                      token_budget=caps.token_budget if caps.budget_visible else None,
                      branches_available=available)
    runner = _Runner(controller, backend, obs, caps, progress)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(caps.timeout_s):
            outcome = await runner.run()
    except TimeoutError:
        raise EpisodeTimeout(f"the episode ran past its {caps.timeout_s:g} s time limit "
                             f"(round {obs.step}, {obs.tokens_spent} tokens)") from None
    outcome.wall_s = time.perf_counter() - start
    return outcome


class _Runner:
    def __init__(self, controller: Controller, backend: BranchBackend, obs: Observation, caps: Caps,
                 progress: Callable[[dict[str, Any]], None] | None) -> None:
        self.controller, self.backend, self.obs, self.caps = controller, backend, obs, caps
        self.progress = progress
        self.probes = self.prunes = 0
        self.budget_exhausted = False
        self._last_progress = 0.0
        if backend.gate_budget and caps.token_budget is not None and hasattr(backend, "token_budget"):
            backend.token_budget = caps.token_budget  # type: ignore[attr-defined]
        if progress is not None and backend.concurrent:  # replay rounds are instant: report per round only
            backend.on_call = self._in_flight

    def _in_flight(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= self.caps.progress_interval_s:
            self._last_progress = now
            self.progress(snapshot(self.obs, self.backend.ledger, in_flight=True))  # type: ignore[misc]

    async def _step(self) -> Any:
        try:
            if self.caps.controller_in_thread:
                return await asyncio.to_thread(self.controller.step, self.obs)
            return self.controller.step(self.obs)
        except Exception as exc:
            log.warning("controller %s failed at step %d", self.controller.spec, self.obs.step, exc_info=True)
            raise ControllerFailed(f"controller {self.controller.spec!r} failed at step {self.obs.step}: "
                                   f"{type(exc).__name__}: {exc}") from None

    async def run(self) -> EpisodeOutcome:
        obs, answer = self.obs, None
        done = False
        while not done:
            batch = _as_batch(await self._step(), obs.step)
            try:
                done, answer = await self._batch(batch)
            except _Budget:
                self.budget_exhausted, done = True, True
                answer = leader(obs)[0]
            except (IllegalActionError, EpisodeError) as exc:
                raise ControllerFailed(f"controller {self.controller.spec!r}: {exc}") from None
            obs.step += 1
            if self.progress is not None:
                self.progress(snapshot(obs, self.backend.ledger))
            if not done and obs.step >= self.caps.max_steps:
                raise ControllerFailed(f"controller {self.controller.spec!r} gave no answer after "
                                       f"{self.caps.max_steps} steps")
        winner = _winner(obs, answer)
        pool = obs.completed_answers() or [b.latest for b in obs.branches if not b.pruned and b.latest is not None]
        reasoning = await self.backend.reasoning(winner) if winner is not None else None
        return EpisodeOutcome(answer=answer, obs=obs, ledger=self.backend.ledger, probes=self.probes,
                              prunes=self.prunes, budget_exhausted=self.budget_exhausted, winner=winner,
                              votes=vote_counts(pool), reasoning=reasoning)

    # --- one batch: plan, run concurrently, apply in order -----------------------------------
    async def _batch(self, batch: list[Any]) -> tuple[bool, str | None]:
        ops, chains = self._plan(batch)
        results: dict[tuple[int, int], list[Unit] | str] = {}
        if chains and not self.backend.concurrent:  # e.g. replay: nothing to overlap, skip the tasks
            for branch, chain in chains.items():
                await self._chain(branch, chain, results)
        elif chains:
            try:
                async with asyncio.TaskGroup() as group:
                    for branch, chain in chains.items():
                        group.create_task(self._chain(branch, chain, results))
            except BaseExceptionGroup as group_error:
                raise _first_gateway_error(group_error) from None
        return self._apply(batch, ops, results)

    def _plan(self, batch: list[Any]) -> tuple[list[list[_Op]], dict[int, list[_Op]]]:
        obs, step = self.obs, self.obs.step
        known, available = len(obs.branches), obs.branches_available
        ops: list[list[_Op]] = []
        chains: dict[int, list[_Op]] = {}
        for i, action in enumerate(batch):
            kind = type(action)
            if kind is Branch:
                if available is not None and action.n > available:
                    raise IllegalActionError(f"step {step}: Branch({action.n}) but only {available} "
                                             "branch(es) left to open")
                group = []
                for _ in range(action.n):
                    self.backend.open(known)
                    group.append(_Op(i, action, known, new=True))
                    chains[known] = [group[-1]]
                    known += 1
                available = None if available is None else available - action.n
                ops.append(group)
            elif kind in (Continue, Probe, Prune):
                if action.branch >= known:
                    raise IllegalActionError(f"step {step}: {kind.__name__}({action.branch}) names a branch "
                                             f"that was never opened ({known} open)")
                op = _Op(i, action, action.branch)
                chains.setdefault(action.branch, []).append(op)
                ops.append([op])
            elif kind is Answer:
                if i != len(batch) - 1:
                    raise IllegalActionError(f"step {step}: Answer must be the last action of its batch")
                ops.append([])
            else:
                raise IllegalActionError(f"step {step}: {action!r} is not an action "
                                         "(Branch, Continue, Probe, Prune or Answer)")
        return ops, chains

    async def _chain(self, branch: int, chain: list[_Op], results: dict[tuple[int, int], list[Unit] | str]) -> None:
        """Run one branch's operations in order; record an illegal one instead of running it."""
        view = self.obs.branches[branch] if branch < len(self.obs.branches) else None
        finished = view.finished if view else False
        pruned = view.pruned if view else False
        for op in chain:
            key = (op.index, branch)
            action, kind = op.action, type(op.action)
            if kind is not Branch:
                reason = illegal_reason(action, finished, pruned)
                if reason:
                    results[key] = reason
                    return
            if kind is Prune:
                pruned = True
                results[key] = []
                continue
            if kind is Probe:
                units = await self.backend.probe(branch)
            else:
                units = await self.backend.decode(branch, action.segments, action.probe)
            results[key] = units
            if units and units[-1].stopped:
                return
            finished = finished or any(u.final is not None for u in units)

    def _apply(self, batch: list[Any], ops: list[list[_Op]],
               results: dict[tuple[int, int], list[Unit] | str]) -> tuple[bool, str | None]:
        obs, step = self.obs, self.obs.step
        for action, group in zip(batch, ops, strict=True):
            kind = type(action)
            if kind is Answer:
                return True, action.text
            if kind is Branch:
                for op in group:
                    self._units(obs._open(), results.get((op.index, op.branch)))
                continue
            view = obs.branches[action.branch]
            reason = illegal_reason(action, view.finished, view.pruned)
            if reason:
                raise IllegalActionError(f"step {step}: {reason}")
            result = results.get((group[0].index, action.branch))
            if isinstance(result, str):  # the chain found it illegal: state must agree
                raise IllegalActionError(f"step {step}: {result}")
            if kind is Prune:
                view.pruned = True
                self.prunes += 1
            else:
                self._units(view, result)
        return False, None

    def _units(self, view: BranchView, units: list[Unit] | str | None) -> None:
        if units is None:  # the chain stopped before this operation (budget gate)
            raise _Budget
        if isinstance(units, str):
            raise IllegalActionError(f"step {self.obs.step}: {units}")
        obs, budget = self.obs, self.caps.token_budget
        for unit in units:
            if unit.stopped or (budget is not None and obs.tokens_spent >= budget):
                raise _Budget
            obs._charge(view, unit.decode + unit.probe)
            if unit.depth is not None:
                view.depth = unit.depth
            if unit.final is not None:
                obs._finish(view, unit.final)
            elif unit.reveal is not None:
                obs._reveal(view, unit.reveal)
                self.probes += 1


def _as_batch(actions: Any, step: int) -> list[Any]:
    if isinstance(actions, Branch | Continue | Probe | Prune | Answer):
        return [actions]
    if not isinstance(actions, list | tuple) or not actions:
        raise ControllerFailed(f"step {step}: the controller returned {actions!r}, expected a non-empty "
                               "list of actions")
    return list(actions)


def _winner(obs: Observation, answer: str | None) -> int | None:
    """The branch whose answer was chosen: first to finish with it, else first active showing it."""
    if answer is None:
        return None
    for i in obs.completed:
        if obs.branches[i].final == answer:
            return i
    for b in obs.branches:
        if not b.pruned and b.latest == answer:
            return b.id
    return None


def _first_gateway_error(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_gateway_error(exc)
        if isinstance(exc, GatewayError | AutoTTSError | asyncio.CancelledError):
            return exc
    return group.exceptions[0]
