"""Driving one controller through one replay episode, and replaying a recorded trace.

A controller that raises, stalls or returns an illegal action fails *its* episode: the result
carries the traceback and the tokens spent so far, and the caller goes on with the next one.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

from autotts.controllers.actions import action_from_dict
from autotts.controllers.base import Controller
from autotts.controllers.episode import EpisodeMachine
from autotts.controllers.normalize import is_correct

from .env import ReplayEnv

__all__ = ["EpisodeResult", "TraceController", "episode_result", "replay_trace", "run_episode", "settle"]


@dataclass
class EpisodeResult:
    question: int
    seed: int
    answer: str | None
    correct: bool | None  # None when the question has no gold answer
    tokens: int
    branches: int
    probes: int
    steps: int
    error: str | None = None
    budget_exhausted: bool = False
    trace: list[dict[str, Any]] = field(default_factory=list)


def run_episode(controller: Controller, env: ReplayEnv, question: int, seed: int, *,
                answer_mode: str = "exact") -> EpisodeResult:
    """Run `controller` on (question, seed) until it answers; never raises for controller faults."""
    env.reset(question, seed, beta=controller.beta)
    machine = env.machine
    obs, step = machine.obs, controller.step
    error = None
    try:
        while not machine.done:
            machine.step(step(obs))
    except Exception:  # the controller's fault ends this episode only; the traceback is the report
        error = traceback.format_exc(limit=-8)
    return episode_result(machine, env.store.golds[question], question, seed, error=error, answer_mode=answer_mode)


def settle(machine: EpisodeMachine) -> str | None:
    """The machine's final vote with what its aggregator needs, computed here (the trusted process):
    embeddings from the local sentence-embedding model; a judge needs an engine, which replay has not.
    Returns the reason when it cannot be done (the episode then fails with it)."""
    needs = machine.aggregator.needs
    if needs == "embeddings":
        from .embeddings import local_embeddings

        machine.settle(vectors=local_embeddings(machine.pool()))
        return None
    if needs == "judge":
        return "the judge aggregator needs an engine to ask: serve it (autotts serve) instead of replaying it"
    machine.settle()
    return None


def episode_result(machine: EpisodeMachine, gold: str | None, question: int, seed: int, *, error: str | None,
                   answer_mode: str = "exact") -> EpisodeResult:
    """The result of an episode that `machine` ran, judged against `gold` (by this process, never the
    controller's)."""
    obs = machine.obs
    if error is None and machine.done and machine.aggregator.needs is not None:
        error = settle(machine)
    answer = machine.answer if error is None else None
    return EpisodeResult(
        question=question, seed=seed, answer=answer,
        correct=None if gold is None else is_correct(answer, gold, answer_mode),
        tokens=obs.tokens_spent, branches=len(obs.branches), probes=machine.probes, steps=obs.step,
        error=error, budget_exhausted=machine.budget_exhausted, trace=machine.trace or [])


class TraceController(Controller):
    """Re-issues the action batches of a recorded trace, step by step."""

    name = "trace"

    def __init__(self, trace: list[dict[str, Any]]) -> None:
        super().__init__()
        self.batches: list[list[Any]] = []
        for record in trace:
            while len(self.batches) <= record["step"]:
                self.batches.append([])
            self.batches[record["step"]].append(action_from_dict(record["action"]))

    def step(self, obs):
        return self.batches[obs.step]


def replay_trace(env: ReplayEnv, trace: list[dict[str, Any]], question: int, seed: int) -> EpisodeResult:
    """Re-run a recorded trace; its answer and cost must come out the same."""
    return run_episode(TraceController(trace), env, question, seed)
