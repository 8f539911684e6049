"""A compact text picture of one episode: one row per branch, one column per decoded segment.

This is how an explorer (human or LLM) sees *why* a controller failed: which branches it opened,
how deep each went, what each probe said, which were pruned and which finished. Answers become
letters by frequency; the gold and returned answers are named in the legend.

>>> from autotts.controllers import Branch, Continue, Prune
>>> from autotts.controllers.episode import EpisodeMachine
>>> recorded = [(["9"], 700, "7"), (["ERR", "ERR"], 1500, "3")]
>>> machine = EpisodeMachine(0, "q", segment_tokens=500, recorded=recorded.__getitem__)
>>> machine.step([Branch(2)]), machine.step([Continue(0), Prune(1)])
(1000, 200)
>>> print(render_grid(machine.obs, answer="7", gold="9", title="demo"))
demo q0: answered '7' (gold '9', wrong), 1,200 tokens, 2 branches, 2 steps
legend: A='9' (gold), B='7' (answered), .='ERR', $=finished, x=pruned, -=decoded without a probe
b0  AB$
b1  .x
"""

from __future__ import annotations

from collections import Counter

from autotts.controllers.observation import Observation

__all__ = ["render_grid"]

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def render_grid(obs: Observation, *, answer: str | None, gold: str | None, title: str = "",
                max_rows: int = 40, max_cols: int = 80) -> str:
    """The branch × depth grid of the finished episode `obs` (see the module docstring)."""
    counts = Counter(a for b in obs.branches for a in b.answers if a != "ERR")
    letters = {a: _LETTERS[i] if i < len(_LETTERS) else "?" for i, (a, _) in enumerate(counts.most_common())}
    verdict = "no gold" if gold is None else "correct" if answer == gold else "wrong"
    head = (f"{title} q{obs.question_id}: answered {answer!r} (gold {gold!r}, {verdict}), "
            f"{obs.tokens_spent:,} tokens, {len(obs.branches)} branches, {obs.step} steps")
    named = []
    for a, letter in letters.items():
        tags = [t for t, v in (("answered", answer), ("gold", gold)) if a == v]
        if tags or len(named) < 6:
            named.append(f"{letter}={a!r}" + (f" ({', '.join(tags)})" if tags else ""))
    if gold is not None and gold not in letters:
        named.append(f"gold {gold!r} never seen")
    legend = "legend: " + ", ".join([*named, ".='ERR'", "$=finished", "x=pruned", "-=decoded without a probe"])
    rows = []
    for b in obs.branches[:max_rows]:
        cells = ["-"] * b.depth
        for depth, a in zip(b.depths, b.answers, strict=True):
            if 1 <= depth <= len(cells):
                cells[depth - 1] = "." if a == "ERR" else letters.get(a, "?")
        if b.finished and cells:
            cells[-1] = letters.get(b.final, ".") if b.final != "ERR" else "."
        line = "".join(cells)
        if len(line) > max_cols:
            line = line[: max_cols - 1] + "…"
        rows.append(f"b{b.id:<3}{line}{'$' if b.finished else 'x' if b.pruned else ''}")
    if len(obs.branches) > max_rows:
        rows.append(f"... {len(obs.branches) - max_rows} more branches")
    return "\n".join([head, legend, *rows])
