"""What a controller sees: the question, its branches and their revealed answers, the spend.

The observation is read-only for controllers: assigning an attribute or changing one of its lists
raises `ObservationReadOnlyError`. Only the episode machine (`autotts.controllers.episode`) changes
it, through the private writers at the bottom of this module; the sandbox's worker mirrors it with
the same writers. It never holds the gold answer or any answer that was not revealed.
(``obs.memory`` is the one thing a controller may change: its per-episode scratch dict.)
"""

from __future__ import annotations

from .errors import ObservationReadOnlyError

TYPE_CHECKING = False  # annotations only: a sandboxed worker need not import typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["BranchView", "Observation", "ReadOnlyList"]


def _refuse(*_args: Any, **_kwargs: Any) -> Any:
    raise ObservationReadOnlyError("this list belongs to the observation and is read-only for controllers; "
                                   "copy it first (list(...)) to change a copy")


class ReadOnlyList(list):
    """A list the controller can read (index, iterate, copy) but not change."""

    __slots__ = ()
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse


_append = list.append  # the writers' way past ReadOnlyList's refusals


class _BranchFields:
    __slots__ = ("answers", "confidences", "depth", "depths", "final", "finished", "id", "latest", "pruned",
                 "tokens")


class BranchView(_BranchFields):
    """One branch as the controller sees it.

    `depth` counts decoded segments; `answers[k]` was revealed at depth `depths[k]`;
    `latest` is the newest revealed answer (None before any); `final` is set once the branch
    reached its end (then `finished` is True and `latest == final`); `tokens` is what it cost.
    """

    __slots__ = ()

    def __new__(cls, branch_id: int) -> BranchView:
        view = _NewBranch(branch_id)
        view.__class__ = cls  # same slots, so the swap is allowed: from here on the view is read-only
        return view

    def __setattr__(self, name: str, value: Any = None) -> None:
        raise ObservationReadOnlyError(f"BranchView.{name} is read-only: only the episode machine changes the "
                                       "observation (keep your own state in obs.memory)")

    __delattr__ = __setattr__

    @property
    def running(self) -> bool:
        """Neither finished nor pruned: can still be continued or probed."""
        return not (self.finished or self.pruned)

    def __repr__(self) -> str:
        state = "pruned" if self.pruned else "finished" if self.finished else "running"
        return f"BranchView(id={self.id}, depth={self.depth}, {state}, latest={self.latest!r})"


class _NewBranch(_BranchFields):
    """A branch while it is built: plain assignments (fast), then it becomes a `BranchView`."""

    __slots__ = ()

    def __init__(self, branch_id: int) -> None:
        self.id, self.depth, self.tokens, self.finished, self.pruned = branch_id, 0, 0, False, False
        self.answers, self.depths, self.confidences = ReadOnlyList(), ReadOnlyList(), ReadOnlyList()
        self.latest = self.final = None


class Observation:
    """The episode as the controller sees it at the start of a step.

    `memory` is a per-episode scratch dict: controllers keep their state there (never on
    `self`), which keeps one controller instance safe to share between episodes.
    """

    __slots__ = ("beta", "branches", "branches_available", "completed", "memory", "question", "question_id",
                 "segment_tokens", "step", "token_budget", "tokens_spent")

    def __init__(self, question_id: str | int, question: str, *, beta: float | None = None,
                 segment_tokens: int, token_budget: int | None = None,
                 branches_available: int | None = None) -> None:
        init = object.__setattr__
        for name, value in (("question_id", question_id), ("question", question), ("beta", beta),
                            ("segment_tokens", segment_tokens), ("branches", ReadOnlyList()),
                            ("completed", ReadOnlyList()),  # branch ids in the order they finished
                            ("tokens_spent", 0), ("token_budget", token_budget),
                            ("branches_available", branches_available), ("step", 0), ("memory", {})):
            init(self, name, value)

    def __setattr__(self, name: str, value: Any = None) -> None:
        raise ObservationReadOnlyError(f"Observation.{name} is read-only: only the episode machine changes the "
                                       "observation (keep your own state in obs.memory)")

    __delattr__ = __setattr__

    @property
    def budget_left(self) -> int | None:
        """Tokens left under the episode's budget, or None when it has none."""
        return None if self.token_budget is None else max(0, self.token_budget - self.tokens_spent)

    def running(self) -> list[BranchView]:
        """Branches that are neither finished nor pruned, in opening order."""
        return [b for b in self.branches if not (b.finished or b.pruned)]

    def active(self) -> list[BranchView]:
        """Branches that are not pruned (finished ones included), in opening order."""
        return [b for b in self.branches if not b.pruned]

    def completed_answers(self) -> list[str]:
        """Final answers of finished branches, in the order they finished (pruned ones included)."""
        branches = self.branches
        return [branches[i].final for i in self.completed]  # type: ignore[misc]

    def __repr__(self) -> str:
        return (f"Observation(question_id={self.question_id!r}, step={self.step}, "
                f"branches={len(self.branches)}, tokens_spent={self.tokens_spent})")


# --- writers: the episode machine and the sandbox mirror only ---------------------------------
# Slot descriptors set a field without going through the refusing __setattr__.
set_depth = _BranchFields.depth.__set__  # type: ignore[attr-defined]
set_tokens = _BranchFields.tokens.__set__  # type: ignore[attr-defined]
set_latest = _BranchFields.latest.__set__  # type: ignore[attr-defined]
set_final = _BranchFields.final.__set__  # type: ignore[attr-defined]
set_finished = _BranchFields.finished.__set__  # type: ignore[attr-defined]
set_pruned = _BranchFields.pruned.__set__  # type: ignore[attr-defined]
set_spent = Observation.tokens_spent.__set__  # type: ignore[attr-defined]
set_step = Observation.step.__set__  # type: ignore[attr-defined]
set_available = Observation.branches_available.__set__  # type: ignore[attr-defined]


def open_branch(obs: Observation) -> BranchView:
    """Append the next branch (id = its opening index) and take it from those available."""
    view = _NewBranch(len(obs.branches))
    view.__class__ = BranchView
    _append(obs.branches, view)
    if obs.branches_available is not None:
        set_available(obs, obs.branches_available - 1)
    return view


def open_finished_branch(obs: Observation, depth: int, tokens: int, final: str) -> BranchView:
    """`open_branch`, then the branch read to its end at once (`depth` segments costing `tokens`, `final`
    revealed): what `open_branch` and `finish` do, built with plain assignments before the view turns
    read-only, because the slot writers cost several times more (sc, asc and esc open every branch so)."""
    view = _NewBranch(len(obs.branches))
    view.depth, view.tokens, view.finished, view.latest, view.final = depth, tokens, True, final, final
    _append(view.answers, final)
    _append(view.depths, depth)
    _append(view.confidences, None)
    view.__class__ = BranchView
    _append(obs.branches, view)
    _append(obs.completed, view.id)
    if obs.branches_available is not None:
        set_available(obs, obs.branches_available - 1)
    return view


def reveal(view: BranchView, answer: str, confidence: float | None = None) -> None:
    """Record `answer` as revealed at the branch's current depth."""
    _append(view.answers, answer)
    _append(view.depths, view.depth)
    _append(view.confidences, confidence)
    set_latest(view, answer)


def finish(obs: Observation, view: BranchView, final: str) -> None:
    """The branch reached its end with `final` (revealed, and added to the completed pool)."""
    set_finished(view, True)
    set_final(view, final)
    reveal(view, final)
    _append(obs.completed, view.id)
