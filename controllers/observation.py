"""What a controller sees: the question, its branches and their revealed answers, the spend.

Both drivers (the offline replay environment and the live executor) update one `Observation`
in place as actions complete, through the underscore methods below; controllers only read it.
It never holds the gold answer or any answer that was not revealed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BranchView", "Observation"]


class BranchView:
    """One branch as the controller sees it. Read-only for controllers.

    `depth` counts decoded segments; `answers[k]` was revealed at depth `depths[k]`;
    `latest` is the newest revealed answer (None before any); `final` is set once the branch
    reached its end (then `finished` is True and `latest == final`).
    """

    __slots__ = (
        "answers",
        "confidences",
        "depth",
        "depths",
        "final",
        "finished",
        "id",
        "latest",
        "pruned",
        "tokens",
    )

    def __init__(self, branch_id: int) -> None:
        self.id = branch_id
        self.depth = 0
        self.finished = False
        self.pruned = False
        self.answers: list[str] = []
        self.depths: list[int] = []
        self.confidences: list[float | None] = []
        self.latest: str | None = None
        self.final: str | None = None
        self.tokens = 0

    @property
    def running(self) -> bool:
        """Neither finished nor pruned: can still be continued or probed."""
        return not (self.finished or self.pruned)

    def __repr__(self) -> str:
        state = "pruned" if self.pruned else "finished" if self.finished else "running"
        return f"BranchView(id={self.id}, depth={self.depth}, {state}, latest={self.latest!r})"


class Observation:
    """The episode as the controller sees it at the start of a step.

    `memory` is a per-episode scratch dict: controllers keep their state there (never on
    `self`), which keeps one controller instance safe to share between episodes.
    """

    __slots__ = (
        "beta",
        "branches",
        "branches_available",
        "completed",
        "memory",
        "question",
        "question_id",
        "segment_tokens",
        "step",
        "token_budget",
        "tokens_spent",
    )

    def __init__(self, question_id: str | int, question: str, *, beta: float | None = None,
                 segment_tokens: int, token_budget: int | None = None,
                 branches_available: int | None = None) -> None:
        self.question_id = question_id
        self.question = question
        self.beta = beta
        self.segment_tokens = segment_tokens
        self.branches: list[BranchView] = []
        self.completed: list[int] = []  # branch ids in the order they finished
        self.tokens_spent = 0
        self.token_budget = token_budget
        self.branches_available = branches_available
        self.step = 0
        self.memory: dict[str, Any] = {}

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
        return [self.branches[i].final for i in self.completed]  # type: ignore[misc]

    # --- driver side: only the environment / executor call these ---------------------------
    def _open(self) -> BranchView:
        view = BranchView(len(self.branches))
        self.branches.append(view)
        if self.branches_available is not None:
            self.branches_available -= 1
        return view

    def _charge(self, view: BranchView, tokens: int) -> None:
        view.tokens += tokens
        self.tokens_spent += tokens

    @staticmethod
    def _reveal(view: BranchView, answer: str, confidence: float | None = None) -> None:
        view.answers.append(answer)
        view.depths.append(view.depth)
        view.confidences.append(confidence)
        view.latest = answer

    def _finish(self, view: BranchView, final: str) -> None:
        view.finished = True
        view.final = final
        self._reveal(view, final)
        self.completed.append(view.id)

    def __repr__(self) -> str:
        return (f"Observation(question_id={self.question_id!r}, step={self.step}, "
                f"branches={len(self.branches)}, tokens_spent={self.tokens_spent})")
