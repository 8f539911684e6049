"""The replay environment: a controller's actions executed over recorded trajectories.

Semantics (those behind the paper's table; see ../shared/replay/README.md):

* Branch order: for seed s the question's B branches are taken in the order of
  ``random.Random(s).shuffle(list(range(B)))``; opening a branch takes the next one.
* A segment of a branch with n recorded probes: the k-th segment (k < n) costs Δ tokens and can
  reveal ``probe_answers[k]``; the (n+1)-th reveals the final answer, finishes the branch and
  costs ``max(0, branch_tokens − Δ·n)``.
* Decoding to the end without probing (``segments=None, probe=False``) from depth d costs
  ``max(0, branch_tokens − Δ·d)``: a full read from scratch costs ``branch_tokens``.
* Each revealed probe costs κ_probe extra tokens; pruned branches keep what they cost.
* With a token budget, a segment that would start at or past the budget ends the episode with
  the majority of completed answers (else of the latest answers of unpruned branches).

Contract (Gymnasium-sized): ``reset(question, seed) → obs``; ``step(actions) → (obs, cost, done,
info)``; ``info["answer"]`` once done.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from autotts.controllers.actions import Answer, Branch, Continue, Probe, Prune, illegal_reason
from autotts.controllers.aggregate import majority
from autotts.controllers.errors import EpisodeError, IllegalActionError
from autotts.controllers.observation import BranchView, Observation

from .store import QuestionTrajectories, ReplayStore

__all__ = ["ReplayEnv", "branch_order"]

MAX_STEPS = 10_000  # default step limit of an episode


@lru_cache(maxsize=4096)
def branch_order(n_branches: int, seed: int) -> tuple[int, ...]:
    """The order in which seed `seed` opens a question's branches (CPython's shuffle)."""
    order = list(range(n_branches))
    random.Random(seed).shuffle(order)
    return tuple(order)


class _BudgetExhausted(Exception):
    pass


class ReplayEnv:
    """Replays one store. One instance runs one episode at a time; `reset` starts the next."""

    def __init__(self, store: ReplayStore, *, kappa_probe: int = 0, token_budget: int | None = None,
                 record_trace: bool = False, max_steps: int = MAX_STEPS) -> None:
        if kappa_probe < 0:
            raise ValueError(f"kappa_probe must be >= 0, got {kappa_probe}")
        if token_budget is not None and token_budget <= 0:
            raise ValueError(f"token_budget must be > 0, got {token_budget}")
        self.store = store
        self.kappa_probe = kappa_probe
        self.token_budget = token_budget
        self.record_trace = record_trace
        self.max_steps = max_steps
        self.obs: Observation | None = None
        self.trace: list[dict[str, Any]] = []
        self.done = True
        self.answer: str | None = None
        self.probes = 0
        self.budget_exhausted = False

    # --- Gymnasium-style contract ----------------------------------------------------------
    def reset(self, question: int, seed: int, *, beta: float | None = None) -> Observation:
        q = self.store.question(question)
        self._q: QuestionTrajectories = q
        self._order = branch_order(len(q.tokens), seed)
        self._rows: list[int] = []  # branch id → row of the question
        self.obs = Observation(question, q.question, beta=beta, segment_tokens=self.store.segment_tokens,
                               token_budget=self.token_budget, branches_available=len(q.tokens))
        self.trace, self.done, self.answer = [], False, None
        self.probes, self.budget_exhausted = 0, False
        return self.obs

    def step(self, actions: Any) -> tuple[Observation, int, bool, dict[str, Any]]:
        if self.done or self.obs is None:
            raise RuntimeError("episode is over: call reset() first")
        obs = self.obs
        batch = _as_batch(actions, obs.step)
        before = obs.tokens_spent
        try:
            for i, action in enumerate(batch):
                self._apply(action, last=i == len(batch) - 1)
        except _BudgetExhausted:
            self.budget_exhausted = True
            self._end(_fallback_answer(obs))
        obs.step += 1
        if not self.done and obs.step >= self.max_steps:
            raise EpisodeError(f"no answer after {self.max_steps} steps")
        info = {"answer": self.answer, "budget_exhausted": self.budget_exhausted} if self.done else {}
        return obs, obs.tokens_spent - before, self.done, info

    def open_branch(self) -> BranchView:
        """Open the next branch of this seed's order without decoding it.

        For drivers that open a branch and decode it as separate calls (the live executor's
        replay backend); `Branch(n)` is `open_branch` followed by decoding, with the same costs.
        """
        if self.done or self.obs is None:
            raise RuntimeError("episode is over: call reset() first")
        if self.obs.branches_available < 1:
            raise IllegalActionError(f"step {self.obs.step}: no branch left to open")
        view = self.obs._open()
        self._rows.append(self._order[view.id])
        return view

    # --- actions -------------------------------------------------------------------------
    def _apply(self, action: Any, last: bool) -> None:
        obs, kind = self.obs, type(action)
        spent = obs.tokens_spent
        revealed: list[tuple[int, str]] | None = [] if self.record_trace else None
        if kind is Continue:
            self._decode(self._view(action), action.segments, action.probe, revealed)
        elif kind is Branch:
            if action.n > obs.branches_available:
                raise IllegalActionError(f"step {obs.step}: Branch({action.n}) but only "
                                         f"{obs.branches_available} branch(es) left to open")
            for _ in range(action.n):
                view = obs._open()
                self._rows.append(self._order[view.id])
                self._decode(view, action.segments, action.probe, revealed)
        elif kind is Probe:
            view = self._view(action)  # opened branches always have a decoded segment
            self._check_budget()
            obs._charge(view, self.kappa_probe)
            obs._reveal(view, self._q.probes[self._rows[view.id]][view.depth - 1])
            self.probes += 1
            if revealed is not None:
                revealed.append((view.id, view.latest))
        elif kind is Prune:
            self._view(action).pruned = True
        elif kind is Answer:
            if not last:
                raise IllegalActionError(f"step {obs.step}: Answer must be the last action of its batch")
            self._end(action.text)
        else:
            raise IllegalActionError(f"step {obs.step}: {action!r} is not an action "
                                     "(Branch, Continue, Probe, Prune or Answer)")
        if revealed is not None:
            self.trace.append({"step": obs.step, "action": _action_dict(action), "revealed": revealed,
                               "cost": obs.tokens_spent - spent, "tokens": obs.tokens_spent})

    def _view(self, action: Continue | Probe | Prune) -> BranchView:
        branches = self.obs.branches
        if action.branch >= len(branches):
            raise IllegalActionError(f"step {self.obs.step}: {type(action).__name__}({action.branch}) "
                                     f"names a branch that was never opened ({len(branches)} open)")
        view = branches[action.branch]
        # every branch action is legal on a running branch (tests/unit/test_env_costs.py pins this
        # against the legality table), so the table is consulted only for finished or pruned ones
        if view.finished or view.pruned:
            reason = illegal_reason(action, view.finished, view.pruned)
            if reason:
                raise IllegalActionError(f"step {self.obs.step}: {reason}")
        return view

    def _decode(self, view: BranchView, segments: int | None, probe: bool,
                revealed: list[tuple[int, str]] | None) -> None:
        """Decode `segments` segments of `view` (None: to the end), revealing answers if `probe`."""
        obs, q, budget = self.obs, self._q, self.token_budget
        row = self._rows[view.id]
        seg = obs.segment_tokens
        if segments is None and not probe:  # one read to the end
            if budget is not None and obs.tokens_spent >= budget:
                raise _BudgetExhausted
            obs._charge(view, max(0, q.tokens[row] - seg * view.depth))
            view.depth = len(q.probes[row]) + 1
            obs._finish(view, q.finals[row])
            if revealed is not None:
                revealed.append((view.id, view.final))
            return
        probes = q.probes[row]
        n = len(probes)
        left = segments if segments is not None else n + 1
        charge = seg + self.kappa_probe if probe else seg
        while left and not view.finished:
            if budget is not None and obs.tokens_spent >= budget:
                raise _BudgetExhausted
            depth = view.depth
            if depth < n:
                obs._charge(view, charge)
                view.depth = depth + 1
                if probe:
                    obs._reveal(view, probes[depth])
                    self.probes += 1
                    if revealed is not None:
                        revealed.append((view.id, view.latest))
            else:
                obs._charge(view, max(0, q.tokens[row] - seg * n))
                view.depth = depth + 1
                obs._finish(view, q.finals[row])
                if revealed is not None:
                    revealed.append((view.id, view.final))
            left -= 1

    def _check_budget(self) -> None:
        if self.token_budget is not None and self.obs.tokens_spent >= self.token_budget:
            raise _BudgetExhausted

    def _end(self, answer: str | None) -> None:
        self.done, self.answer = True, answer


def _as_batch(actions: Any, step: int) -> list[Any]:
    if isinstance(actions, Branch | Continue | Probe | Prune | Answer):
        return [actions]
    if not isinstance(actions, list | tuple):
        raise IllegalActionError(f"step {step}: controller returned {type(actions).__name__}, "
                                 "expected a list of actions")
    if not actions:
        raise IllegalActionError(f"step {step}: controller returned an empty batch (no progress possible)")
    return list(actions)


def _fallback_answer(obs: Observation) -> str | None:
    done = obs.completed_answers()
    if done:
        return majority(done)
    return majority([b.latest for b in obs.branches if not b.pruned and b.latest is not None])


def _action_dict(action: Any) -> dict[str, Any]:
    return {"type": type(action).__name__,
            **{k: getattr(action, k) for k in type(action).__dataclass_fields__}}
