"""Turning answers into one answer: majority, weighted and first-finish votes.

Ties always go to the answer seen first, so results are deterministic. An optional `key` maps an
answer to its equivalence class (see `normalize`); the winner is the first raw answer of its class.

>>> majority(["7", "3", "3", "7"])
'7'
>>> top_two(["a", "b", "b"])
('b', 2, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

__all__ = ["first_finish", "majority", "top_two", "vote_counts", "weighted"]

Key = Callable[[str], str]


def vote_counts(answers: Iterable[str], key: Key | None = None) -> dict[str, int]:
    """Counts per answer (per class when `key` is given), in first-seen order."""
    counts: dict[str, int] = {}
    if key is None:
        for a in answers:
            counts[a] = counts.get(a, 0) + 1
        return counts
    first: dict[str, str] = {}
    for a in answers:
        k = key(a)
        rep = first.setdefault(k, a)
        counts[rep] = counts.get(rep, 0) + 1
    return counts


def top_two(answers: Iterable[str], key: Key | None = None) -> tuple[str | None, int, int]:
    """(winner, its votes, runner-up votes); (None, 0, 0) for no answers."""
    winner, v1, v2 = None, 0, 0
    for answer, count in vote_counts(answers, key).items():
        if count > v1:
            winner, v1, v2 = answer, count, v1
        elif count > v2:
            v2 = count
    return winner, v1, v2


def majority(answers: Iterable[str], key: Key | None = None) -> str | None:
    """The most frequent answer, ties to the first seen; None when there are no answers."""
    return top_two(answers, key)[0]


def weighted(answers: Sequence[str], weights: Sequence[float], key: Key | None = None) -> str | None:
    """The answer with the largest total weight, ties to the first seen."""
    if len(answers) != len(weights):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights")
    totals: dict[str, float] = {}
    first: dict[str, str] = {}
    for a, w in zip(answers, weights, strict=True):
        rep = first.setdefault(key(a) if key else a, a)
        totals[rep] = totals.get(rep, 0.0) + w
    best, best_w = None, float("-inf")
    for a, w in totals.items():
        if w > best_w:
            best, best_w = a, w
    return best


def first_finish(answers: Sequence[str]) -> str | None:
    """The first answer to arrive (answers given in completion order)."""
    return answers[0] if answers else None
