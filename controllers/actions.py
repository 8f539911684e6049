"""The five actions a controller can return, and the one table of when each is legal.

Actions are frozen, slotted dataclasses validated on construction. A controller returns a *batch*
(list) of actions per step; drivers apply them in list order, so the order is part of the decision
(for example which branch finishes first).

>>> Continue(3, segments=2)
Continue(branch=3, segments=2, probe=True)
>>> Branch(0)
Traceback (most recent call last):
...
autotts.controllers.errors.IllegalActionError: Branch.n must be a positive int, got 0
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import IllegalActionError

__all__ = ["Action", "Answer", "Branch", "Continue", "Probe", "Prune", "illegal_reason"]


def _check_segments(kind: str, segments: int | None) -> None:
    if segments is not None and (type(segments) is not int or segments < 1):
        raise IllegalActionError(f"{kind}.segments must be a positive int or None, got {segments!r}")


@dataclass(frozen=True, slots=True)
class Branch:
    """Open `n` new branches and decode `segments` segments of each (None: to the end).

    With `probe`, each decoded segment reveals the answer forced at its end; a branch that
    reaches its end always reveals its final answer.
    """

    n: int = 1
    segments: int | None = 1
    probe: bool = True

    def __post_init__(self) -> None:
        if type(self.n) is not int or self.n < 1:
            raise IllegalActionError(f"Branch.n must be a positive int, got {self.n!r}")
        segments = self.segments  # checked inline first: actions are built in every controller's hot loop
        if segments is not None and (type(segments) is not int or segments < 1):
            _check_segments("Branch", segments)


@dataclass(frozen=True, slots=True)
class Continue:
    """Decode `segments` more segments of branch `branch` (None: to the end); stops early at the end."""

    branch: int
    segments: int | None = 1
    probe: bool = True

    def __post_init__(self) -> None:
        if type(self.branch) is not int or self.branch < 0:
            raise IllegalActionError(f"Continue.branch must be a branch id (int >= 0), got {self.branch!r}")
        segments = self.segments
        if segments is not None and (type(segments) is not int or segments < 1):
            _check_segments("Continue", segments)


@dataclass(frozen=True, slots=True)
class Probe:
    """Reveal the answer forced at the branch's current depth, without decoding further."""

    branch: int

    def __post_init__(self) -> None:
        if type(self.branch) is not int or self.branch < 0:
            raise IllegalActionError(f"Probe.branch must be a branch id (int >= 0), got {self.branch!r}")


@dataclass(frozen=True, slots=True)
class Prune:
    """Stop a branch for good; the tokens it already cost stay spent."""

    branch: int

    def __post_init__(self) -> None:
        if type(self.branch) is not int or self.branch < 0:
            raise IllegalActionError(f"Prune.branch must be a branch id (int >= 0), got {self.branch!r}")


@dataclass(frozen=True, slots=True)
class Answer:
    """End the episode with this answer; must be the last action of its batch."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise IllegalActionError(f"Answer.text must be a str, got {type(self.text).__name__}")


Action = Branch | Continue | Probe | Prune | Answer

# Which branch-level action is legal in which branch state: the only place this is decided.
#                      running  finished  pruned
_LEGAL = {
    Continue: (True, False, False),
    Probe: (True, False, False),
    Prune: (True, True, False),
}


def illegal_reason(action: Continue | Probe | Prune, finished: bool, pruned: bool) -> str | None:
    """Why `action` is illegal on a branch in this state, or None when it is legal."""
    running_ok, finished_ok, pruned_ok = _LEGAL[type(action)]
    if pruned:
        return None if pruned_ok else f"{type(action).__name__} on pruned branch {action.branch}"
    if finished:
        return None if finished_ok else f"{type(action).__name__} on finished branch {action.branch}"
    return None if running_ok else f"{type(action).__name__} on running branch {action.branch}"
