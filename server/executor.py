"""The live executor: one controller's episode on a branch backend, under the episode machine's rules.

Each step the controller returns a batch of actions: built-ins in process (microseconds), trusted
in-process artifacts in a worker thread, served artifacts in a sandboxed worker process of their
own (`server/sandboxed.py`), which is shown only the episode's observation. The episode
machine (`autotts.controllers.episode`) turns the batch into a plan, one chain of jobs per branch;
this driver runs the chains concurrently (jobs of one branch in order), so all branches of a width
step reach the engine together, then hands what came back to the machine, which applies it in
action order exactly as the replay driver does. Through the replay backend an episode therefore
returns the answer and token count of `autotts eval`; no rule lives here.

Cancelling `run_episode` (client disconnect, wall timeout) cancels every in-flight engine call.
Between steps no call is in flight, so `Prune` and `Answer` mean "schedule nothing more for that
branch / the episode" — except a segment a backend started ahead (``overlap: ahead``), which
`backend.settle` cancels right after the step that pruned or finished its branch, and at the end.
Caps: `max_branches` (fewer branches offered to the controller),
`token_budget` (the machine's budget rule; live backends also stop launching calls once their
ledger reaches it), `timeout_s` (504 error), `max_steps`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from autotts.controllers.aggregate import vote_counts
from autotts.controllers.aggregators import Aggregator
from autotts.controllers.base import Controller
from autotts.controllers.episode import EpisodeMachine, Plan, Work, fallback_answer, vote_pool
from autotts.controllers.errors import AutoTTSError, EpisodeError, EpisodeTimeout, IllegalActionError
from autotts.controllers.observation import Observation
from autotts.engines.backends import BranchBackend, Ledger
from autotts.sandbox import WorkerError

from .errors import ControllerFailed
from .sandboxed import RemoteEpisode, ServedController

__all__ = ["Caps", "EpisodeOutcome", "Settle", "run_episode", "snapshot"]

log = logging.getLogger(__name__)
#: computes what a model-backed aggregator needs and settles the machine's vote (server/voting.py)
Settle = Callable[[EpisodeMachine, BranchBackend], Awaitable[None]]


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
    record_trace: bool = False  # keep the machine's execution trace (EpisodeOutcome.trace)


@dataclass
class EpisodeOutcome:
    answer: str | None
    obs: Observation
    ledger: Ledger
    probes: int
    prunes: int
    budget_exhausted: bool
    winner: int | None
    votes: dict[str, int]  # cluster → votes, biggest first (`vote` has the clusters' variants)
    vote: dict[str, Any] = field(default_factory=dict)
    content: str | None = None  # what the response carries (server/reply.py)
    token_ids: list[int] = field(default_factory=list)  # the winning branch's (``return_token_ids``)
    reasoning: str | None = None
    response: dict[str, Any] = field(default_factory=dict)  # how `content` was made, for ``tts``
    wall_s: float = 0.0
    trace: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return self.obs.step


def snapshot(obs: Observation, ledger: Ledger, *, in_flight: bool = False) -> dict[str, Any]:
    """Progress of a running episode (what streaming clients see between answer chunks)."""
    winner = fallback_answer(obs)
    return {"round": obs.step, "branches": len(obs.branches), "running": len(obs.running()),
            "pruned": sum(b.pruned for b in obs.branches), "completed": len(obs.completed),
            "tokens": ledger.completion_tokens if in_flight else obs.tokens_spent,
            "engine_calls": ledger.calls, "leader": winner,
            "leader_votes": vote_counts(vote_pool(obs)).get(winner, 0) if winner is not None else 0,
            "in_flight": in_flight}


async def run_episode(controller: Controller, backend: BranchBackend, *, question_id: str | int, question: str,
                      caps: Caps | None = None, progress: Callable[[dict[str, Any]], None] | None = None,
                      aggregator: Aggregator | None = None, settle: Settle | None = None) -> EpisodeOutcome:
    """Run `controller` to its answer on `backend`; raises `ControllerFailed`, `EpisodeTimeout` or engine errors.

    `aggregator` is how the episode votes; `settle` supplies what a model-backed one needs
    (`server/voting.py`), after the controller answered and before the winning branch is chosen.
    """
    caps = caps or Caps()
    available = backend.branches_available
    if caps.max_branches is not None:
        available = caps.max_branches if available is None else min(available, caps.max_branches)
    sandboxed = isinstance(controller, ServedController)
    machine = EpisodeMachine(question_id, question, segment_tokens=backend.segment_tokens,
                             branches_available=available, beta=controller.beta, token_budget=caps.token_budget,
                             budget_visible=caps.budget_visible, max_steps=caps.max_steps,
                             record_trace=caps.record_trace, log_changes=sandboxed, aggregator=aggregator)
    runner = _Runner(controller, backend, machine, caps, progress, settle)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(caps.timeout_s):
            if sandboxed:
                runner.remote = await runner.guard(controller.open(machine))
            outcome = await runner.run()
    except TimeoutError:
        raise EpisodeTimeout(f"the episode ran past its {caps.timeout_s:g} s time limit "
                             f"(round {machine.obs.step}, {machine.obs.tokens_spent} tokens)") from None
    finally:
        await backend.settle(set(), final=True)  # nothing started ahead outlives the episode
        if runner.remote is not None:
            await runner.remote.close()
    outcome.wall_s = time.perf_counter() - start
    return outcome


class _Runner:
    def __init__(self, controller: Controller, backend: BranchBackend, machine: EpisodeMachine, caps: Caps,
                 progress: Callable[[dict[str, Any]], None] | None, settle: Settle | None = None) -> None:
        self.controller, self.backend, self.machine, self.caps = controller, backend, machine, caps
        self.progress, self.settle = progress, settle
        self.remote: RemoteEpisode | None = None  # the controller's sandboxed worker (served artifacts)
        self._last_progress = 0.0
        if caps.token_budget is not None:
            backend.cap_tokens(caps.token_budget)
        if progress is not None and backend.concurrent:  # replay rounds are instant: report per round only
            backend.on_call = self._in_flight

    def _in_flight(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= self.caps.progress_interval_s:
            self._last_progress = now
            self.progress(snapshot(self.machine.obs, self.backend.ledger, in_flight=True))  # type: ignore[misc]

    async def guard(self, call: Awaitable[Any]) -> Any:
        """Await a call into the controller's sandboxed worker; its failures are the controller's."""
        try:
            return await call
        except WorkerError as exc:
            raise self._failed(f"sandboxed worker failed: {str(exc).strip().splitlines()[0]}") from None
        except AutoTTSError as exc:
            raise self._failed(str(exc)) from None

    async def _step(self) -> Any:
        obs = self.machine.obs
        if self.remote is not None:
            return await self.guard(self.remote.step())
        try:
            if self.caps.controller_in_thread:
                return await asyncio.to_thread(self.controller.step, obs)
            return self.controller.step(obs)
        except Exception as exc:
            log.warning("controller %s failed at step %d", self.controller.spec, obs.step, exc_info=True)
            raise self._failed(f"failed at step {obs.step}: {type(exc).__name__}: {exc}") from None

    def _failed(self, reason: str) -> ControllerFailed:
        obs = self.machine.obs
        return ControllerFailed(f"controller {self.controller.spec!r}: {reason}", reason=reason,
                                tokens_spent=obs.tokens_spent, trace=self.machine.trace)

    async def run(self) -> EpisodeOutcome:
        machine, obs = self.machine, self.machine.obs
        while not machine.done:
            batch = await self._step()
            try:
                plan = machine.plan(batch)
                await self._work(plan)
                machine.apply(plan)
                await self.backend.settle(set() if machine.done else {b.id for b in obs.running()}, machine.done)
            except (IllegalActionError, EpisodeError) as exc:
                raise self._failed(str(exc)) from None
            if self.progress is not None:
                self.progress(snapshot(obs, self.backend.ledger))
        if machine.aggregator.needs is None or self.settle is None:
            vote = machine.settle()
        else:
            await self.settle(machine, self.backend)
            vote = machine.vote
        answer = machine.answer
        return EpisodeOutcome(answer=answer, obs=obs, ledger=self.backend.ledger, probes=machine.probes,
                              prunes=machine.prunes, budget_exhausted=machine.budget_exhausted,
                              winner=_winner(obs, answer), votes={c.answer: c.size for c in vote.clusters},
                              vote=vote.as_dict(), trace=machine.trace)

    async def _work(self, plan: Plan) -> None:
        """Run the plan's chains: one task per branch, jobs of a branch in order."""
        if not plan.chains:
            return
        if not self.backend.concurrent:  # e.g. replay: nothing to overlap, skip the tasks
            for chain in plan.chains.values():
                await self._chain(plan, chain)
            return
        try:
            async with asyncio.TaskGroup() as group:
                for chain in plan.chains.values():
                    group.create_task(self._chain(plan, chain))
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None

    async def _chain(self, plan: Plan, chain: list[Work]) -> None:
        backend = self.backend
        for work in chain:
            if work.opens:
                backend.open(work.branch)
            if work.probe_only:
                units = await backend.probe(work.branch)
            else:
                units = await backend.decode(work.branch, work.segments, work.probe)
            plan.results[work.key] = units
            if plan.ends_chain(units):
                return


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


def _first_error(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if isinstance(exc, AutoTTSError | asyncio.CancelledError):
            return exc
    return group.exceptions[0]
