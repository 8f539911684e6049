"""The replay driver: a controller's episodes over recorded trajectories.

Every rule (costs, legality, budget, trace) is the episode machine's
(`autotts.controllers.episode`); this driver only picks which recorded branch each opened branch
is and hands it to the machine. Branch order: for seed s the question's B branches are taken in
the order of ``random.Random(s).shuffle(list(range(B)))`` (../shared/replay/README.md).

Contract (Gymnasium-sized): ``reset(question, seed) → obs``; ``step(actions) → (obs, cost, done,
info)``; ``info["answer"]`` once done.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from autotts.controllers.aggregators import Aggregator, recorded_aggregator
from autotts.controllers.episode import MAX_STEPS, EpisodeMachine, Recorded
from autotts.controllers.errors import VoteSpecError
from autotts.controllers.observation import Observation

from .store import ReplayStore

__all__ = ["MAX_STEPS", "ReplayEnv", "branch_order", "recorded_branch"]


@lru_cache(maxsize=4096)
def branch_order(n_branches: int, seed: int) -> tuple[int, ...]:
    """The order in which seed `seed` opens a question's branches (CPython's shuffle)."""
    order = list(range(n_branches))
    random.Random(seed).shuffle(order)
    return tuple(order)


def recorded_branch(store: ReplayStore, question: int, seed: int, branch: int) -> Recorded:
    """The recorded trajectory that seed `seed` opens as branch `branch` of `question`."""
    q = store.question(question)
    row = branch_order(len(q.tokens), seed)[branch]
    return q.probes[row], q.tokens[row], q.finals[row]


def store_aggregator(store: ReplayStore) -> Aggregator:
    """The aggregator `store` records for its answers (`recorded_aggregator`); a bad one names the store."""
    try:
        return recorded_aggregator(store.meta)
    except VoteSpecError as exc:
        raise VoteSpecError(f"{store.path or store.name}: {exc}") from None


class ReplayEnv:
    """Replays one store. One instance runs one episode at a time; `reset` starts the next."""

    def __init__(self, store: ReplayStore, *, kappa_probe: int = 0, token_budget: int | None = None,
                 record_trace: bool = False, max_steps: int = MAX_STEPS, aggregator: Aggregator | None = None) -> None:
        if kappa_probe < 0:
            raise ValueError(f"kappa_probe must be >= 0, got {kappa_probe}")
        if token_budget is not None and token_budget <= 0:
            raise ValueError(f"token_budget must be > 0, got {token_budget}")
        self.store = store
        self.kappa_probe = kappa_probe
        self.token_budget = token_budget
        self.record_trace = record_trace
        self.max_steps = max_steps
        #: how episodes vote (None: the store's recorded aggregator; exact strings when it records none)
        self.aggregator = aggregator if aggregator is not None else store_aggregator(store)
        self.machine: EpisodeMachine | None = None

    def machine_for(self, question: int, seed: int, *, beta: float | None = None, record_trace: bool | None = None,
                    log_changes: bool = False) -> EpisodeMachine:
        """A fresh episode machine for (question, seed) on this store (drivers that step it themselves)."""
        q = self.store.question(question)
        order = branch_order(len(q.tokens), seed)
        probes, tokens, finals = q.probes, q.tokens, q.finals

        def recorded(branch: int) -> Recorded:
            row = order[branch]
            return probes[row], tokens[row], finals[row]

        return EpisodeMachine(question, q.question, segment_tokens=self.store.segment_tokens,
                              branches_available=len(tokens), beta=beta, token_budget=self.token_budget,
                              kappa_probe=self.kappa_probe, max_steps=self.max_steps,
                              record_trace=self.record_trace if record_trace is None else record_trace,
                              recorded=recorded, log_changes=log_changes, aggregator=self.aggregator)

    # --- Gymnasium-style contract ----------------------------------------------------------
    def reset(self, question: int, seed: int, *, beta: float | None = None) -> Observation:
        self.machine = self.machine_for(question, seed, beta=beta)
        return self.machine.obs

    def step(self, actions: Any) -> tuple[Observation, int, bool, dict[str, Any]]:
        machine = self.machine
        if machine is None:
            raise RuntimeError("call reset() first")
        cost = machine.step(actions)
        info = {"answer": machine.answer, "budget_exhausted": machine.budget_exhausted} if machine.done else {}
        return machine.obs, cost, machine.done, info

    # --- the current episode, as the machine keeps it --------------------------------------
    @property
    def obs(self) -> Observation | None:
        return None if self.machine is None else self.machine.obs

    @property
    def done(self) -> bool:
        return self.machine is None or self.machine.done

    @property
    def answer(self) -> str | None:
        return None if self.machine is None else self.machine.answer

    @property
    def probes(self) -> int:
        return 0 if self.machine is None else self.machine.probes

    @property
    def budget_exhausted(self) -> bool:
        return self.machine is not None and self.machine.budget_exhausted

    @property
    def trace(self) -> list[dict[str, Any]]:
        return [] if self.machine is None or self.machine.trace is None else self.machine.trace
