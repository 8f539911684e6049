"""Keeping a copy of an observation in step with the episode machine's, one plain-JSON delta per step.

The sandbox runs the machine in the trusted process and the controller in a worker; the worker's
`Observation` is a mirror built only from what the controller is shown: the machine logs every
change it makes (``EpisodeMachine(log_changes=True)``: the branches each action touched or opened,
their depth, tokens, flags and newly revealed answers), `ObservationSync.delta` hands the log over
with the episode's counters, and the worker's `apply_delta` writes it with the same writers the
machine uses. Nothing is decided on the worker's side, so the mirror equals the original field by
field (`describe` shows both).

A delta is flat, so that JSON codes it fast::

    [tokens_spent, step, branches_available, completed_new, ints, answers, depths, confidences]

``ints`` holds five numbers per branch: id, depth, tokens, state (1 finished | 2 pruned) and n, the
number of its answers in ``answers`` (in order). Their depths are the n depths ending at the
branch's depth (one per segment, the usual case) when n > 0; when n < 0 the -n depths are listed
in ``depths``. ``confidences`` is null, or one per answer.
"""

from __future__ import annotations

from .observation import (
    BranchView,
    Observation,
    open_branch,
    set_available,
    set_depth,
    set_final,
    set_finished,
    set_latest,
    set_pruned,
    set_spent,
    set_step,
    set_tokens,
)

TYPE_CHECKING = False  # annotations only: a sandboxed worker need not import typing
if TYPE_CHECKING:
    from typing import Any

    from .episode import EpisodeMachine

__all__ = ["Changes", "ObservationSync", "apply_delta", "describe", "new_observation"]

_extend = list.extend
_append = list.append


def new_observation(init: list[Any]) -> Observation:
    """The mirror's empty observation from ``ObservationSync.init``."""
    question_id, question, beta, segment_tokens, token_budget, available = init
    return Observation(question_id, question, beta=beta, segment_tokens=segment_tokens, token_budget=token_budget,
                       branches_available=available)


def apply_delta(obs: Observation, delta: list[Any]) -> None:
    """Write one step's changes into the mirror `obs`."""
    spent, step, available, completed, ints, answers, depths, confidences = delta
    branches = obs.branches
    opened = len(branches)
    a = d = 0
    it = iter(ints)
    for branch, depth, tokens, state, n in zip(it, it, it, it, it, strict=True):
        if branch == opened:
            view = open_branch(obs)
            opened += 1
        else:
            view = branches[branch]
        set_depth(view, depth)
        set_tokens(view, tokens)
        if n == 1:  # the usual case: one answer, revealed at the branch's depth
            answer = answers[a]
            _append(view.answers, answer)
            _append(view.depths, depth)
            _append(view.confidences, confidences[a] if confidences is not None else None)
            a += 1
            set_latest(view, answer)
        elif n:
            if n > 0:
                at: Any = range(depth - n + 1, depth + 1)
            else:
                n = -n
                at, d = depths[d:d + n], d + n
            _extend(view.answers, answers[a:a + n])
            _extend(view.depths, at)
            _extend(view.confidences, confidences[a:a + n] if confidences else [None] * n)
            a += n
            set_latest(view, answers[a - 1])
        if state:
            if state & 1 and not view.finished:
                set_finished(view, True)
                set_final(view, view.latest)
            if state & 2 and not view.pruned:
                set_pruned(view, True)
    if completed:
        _extend(obs.completed, completed)
    set_spent(obs, spent)
    set_step(obs, step)
    set_available(obs, available)


class Changes:
    """What the machine changed in the observation, in the flat form of `obs_sync`'s deltas: five ints
    per touched branch (id, depth, tokens, state 1 finished | 2 pruned, n new answers; -n when their
    depths are listed because they are not the n depths ending at the branch's depth)."""

    __slots__ = ("answers", "confidences", "depths", "ints")

    def __init__(self) -> None:
        self.ints: list[int] = []
        self.answers: list[str] = []
        self.depths: list[int] = []
        self.confidences: list[float | None] = []

    def record(self, view: BranchView, shown: int) -> None:
        """The branch after an action that revealed its answers from index `shown` on."""
        depth = view.depth
        n = len(view.answers) - shown
        if n:
            self.answers += view.answers[shown:]
            at = view.depths[shown:]
            if at[0] != depth - n + 1 or at[-1] != depth or (n > 2 and at != list(range(depth - n + 1, depth + 1))):
                self.depths += at
                n = -n
            self.confidences += view.confidences[shown:]
        self.ints += (view.id, depth, view.tokens, view.finished | (view.pruned << 1), n)

    def take(self) -> tuple[list[int], list[str], list[int], list[float | None] | None]:
        """The changes so far (confidences None when there are none), and a fresh log."""
        out = self.ints, self.answers, self.depths, self.confidences
        self.ints, self.answers, self.depths, self.confidences = [], [], [], []
        confidences = out[3]
        return out[0], out[1], out[2], None if confidences.count(None) == len(confidences) else confidences


class ObservationSync:
    """The parent's side: the machine's change log as deltas, and what the mirror already has."""

    __slots__ = ("completed", "machine")

    def __init__(self, machine: EpisodeMachine) -> None:
        if machine.changes is None:
            raise ValueError("ObservationSync needs a machine made with log_changes=True")
        self.machine = machine
        self.completed = 0

    def init(self) -> list[Any]:
        obs = self.machine.obs
        return [obs.question_id, obs.question, obs.beta, obs.segment_tokens, obs.token_budget,
                obs.branches_available]

    def delta(self) -> list[Any]:
        """The changes since the last delta, for a mirror that saw every earlier one."""
        obs = self.machine.obs
        ints, answers, depths, confidences = self.machine.changes.take()  # type: ignore[union-attr]
        completed = obs.completed[self.completed:]
        self.completed = len(obs.completed)
        return [obs.tokens_spent, obs.step, obs.branches_available, completed, ints, answers, depths, confidences]


def describe(obs: Observation) -> dict[str, Any]:
    """Every field of `obs` as plain data (to compare a mirror with its original)."""
    return {"question_id": obs.question_id, "question": obs.question, "beta": obs.beta,
            "segment_tokens": obs.segment_tokens, "token_budget": obs.token_budget,
            "branches_available": obs.branches_available, "step": obs.step, "tokens_spent": obs.tokens_spent,
            "completed": list(obs.completed),
            "branches": [[b.id, b.depth, b.tokens, b.finished, b.pruned, b.latest, b.final, list(b.answers),
                          list(b.depths), list(b.confidences)] for b in obs.branches]}
