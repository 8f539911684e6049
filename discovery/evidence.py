"""Execution-trace evidence: what each wrong episode did that a different controller would not have.

Computed in the trusted process after a sweep, from each episode's final observation and the
recorded trajectories of the branches it opened (search stores only, like the failure grids). A
wrong episode gets one diagnosis, the first that applies:

* ``not_reached``: none of the branches it opened ends on the gold: it needed more width;
* ``early_stop``: it answered while branches were still running, and had those finished, the vote
  over its unpruned branches would have been the gold: it stopped too early;
* ``pruned_winner``: the branches it abandoned would have made the vote the gold;
* ``outvoted``: the gold was among its finished answers and lost the vote;
* ``other``: the gold was only in branches that would not have won.

Besides, it counts the abandoned branches that end on the gold, and for correct episodes how many more
branches it let finish after the vote had settled on its answer (``settled_waits``: spending it could
have saved). Counts are sums, so the evidence of several evaluation chunks merges by addition.
"""

from __future__ import annotations

from typing import Any

from autotts.controllers.aggregate import majority
from autotts.offline.env import recorded_branch

__all__ = ["KINDS", "Evidence", "diagnose", "merge_evidence", "render_evidence"]

KINDS = ("not_reached", "early_stop", "pruned_winner", "outvoted", "other")
_COUNTS = ("episodes", "correct", *KINDS, "pruned", "pruned_gold", "settled_waits")
_WHY = {"not_reached": "never opened a branch that ends on the gold (too narrow)",
        "early_stop": "stopped too early (its running branches would have voted the gold)",
        "pruned_winner": "pruned branches that would have won the vote",
        "outvoted": "had the gold among its finished answers but the vote lost it",
        "other": "the gold was only in branches that would not have won"}
MAX_EXAMPLES = 6


def _settled_waits(answers: list[str], final: str | None) -> int:
    """Finished branches gathered after the finished-answer vote last changed to `final`."""
    settled = len(answers)
    for j in range(len(answers), 0, -1):
        if majority(answers[:j]) != final:
            break
        settled = j
    return len(answers) - settled


class Evidence:
    """Counts per β and a few worded examples, gathered episode by episode."""

    def __init__(self) -> None:
        self.per_beta: dict[float, dict[str, int]] = {}
        self.examples: list[dict[str, Any]] = []

    def add(self, machine: Any, store: Any, question: int, seed: int, beta: float, gold: str | None,
            correct: bool) -> None:
        counts = self.per_beta.setdefault(beta, dict.fromkeys(_COUNTS, 0))
        obs = machine.obs
        tracks = [recorded_branch(store, question, seed, b.id) for b in obs.branches]
        finals = {b.id: t[2] for b, t in zip(obs.branches, tracks, strict=True)}
        pruned = [b for b in obs.branches if b.pruned]
        counts["episodes"] += 1
        counts["pruned"] += len(pruned)
        counts["pruned_gold"] += sum(finals[b.id] == gold for b in pruned)
        if correct:
            counts["correct"] += 1
            counts["settled_waits"] += _settled_waits(obs.completed_answers(), machine.answer)
            return
        done = list(obs.completed)
        by_length = sorted((b.id for b in obs.branches if not b.finished), key=lambda i: tracks[i][1])
        running = [i for i in by_length if not obs.branches[i].pruned]
        if gold not in finals.values():
            kind = "not_reached"
        elif running and majority([finals[i] for i in done + running]) == gold:
            kind = "early_stop"
        elif pruned and majority([finals[i] for i in done + by_length]) == gold:
            kind = "pruned_winner"
        elif gold in obs.completed_answers():
            kind = "outvoted"
        else:
            kind = "other"
        counts[kind] += 1
        if len(self.examples) < MAX_EXAMPLES and sum(e["kind"] == kind for e in self.examples) < 2:
            self.examples.append({"kind": kind, "store": store.name, "question": question, "seed": seed, "beta": beta,
                                  "text": _example(kind, obs, machine.answer, gold, finals, running, pruned)})

    def to_json(self) -> dict[str, Any]:
        return {"per_beta": [{"beta": b, **c} for b, c in sorted(self.per_beta.items())], "examples": self.examples}


def _example(kind: str, obs: Any, answer: str | None, gold: str | None, finals: dict[int, str],
             running: list[int], pruned: list[Any]) -> str:
    head = (f"answered {answer!r} (gold {gold!r}) after {len(obs.completed)} finished of {len(obs.branches)} "
            f"opened branches, {obs.tokens_spent:,} tokens: {_WHY[kind]}")
    if kind == "early_stop":
        ends = ", ".join(f"b{i}@{obs.branches[i].depth}->{finals[i]!r}" for i in running[:6])
        return f"{head}; still running (branch@depth -> recorded end): {ends}"
    if kind == "pruned_winner":
        ends = ", ".join(f"b{b.id}@{b.depth}->{finals[b.id]!r}" for b in pruned[:6])
        return f"{head}; abandoned (branch@depth -> recorded end): {ends}"
    return f"{head}; finished answers {obs.completed_answers()[:8]}"


def merge_evidence(parts: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The evidence of several chunks of one candidate's evaluation, as if gathered at once."""
    per_beta: dict[float, dict[str, int]] = {}
    examples: list[dict[str, Any]] = []
    for part in parts:
        if not part:
            continue
        for row in part["per_beta"]:
            counts = per_beta.setdefault(row["beta"], dict.fromkeys(_COUNTS, 0))
            for key in _COUNTS:
                counts[key] += row.get(key, 0)
        examples += [e for e in part["examples"] if sum(x["kind"] == e["kind"] for x in examples) < 2]
    return {"per_beta": [{"beta": b, **c} for b, c in sorted(per_beta.items())], "examples": examples[:MAX_EXAMPLES]}


def diagnose(evidence: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """Per half of the β sweep ("low", "high"): the share of episodes with each diagnosis, of abandoned
    branches that end on the gold, and the mean settled waits: what the local explorer steers by."""
    out: dict[str, dict[str, float]] = {}
    rows = (evidence or {}).get("per_beta", [])
    for half, part in (("low", rows[: (len(rows) + 1) // 2]), ("high", rows[len(rows) // 2:])):
        n = sum(r["episodes"] for r in part)
        if not n:
            continue
        shares = {kind: sum(r[kind] for r in part) / n for kind in KINDS}
        pruned = sum(r["pruned"] for r in part)
        shares["pruned_gold"] = sum(r["pruned_gold"] for r in part) / pruned if pruned else 0.0
        shares["settled_waits"] = sum(r["settled_waits"] for r in part) / max(1, sum(r["correct"] for r in part))
        out[half] = shares
    return out


def render_evidence(evidence: dict[str, Any] | None, *, examples: int = 3) -> str:
    """The evidence as a few lines an explorer (model or person) reads."""
    rows = (evidence or {}).get("per_beta", [])
    if not rows:
        return ""
    lines = ["trace evidence (search stores), per beta: wrong episodes by diagnosis; abandoned branches that end "
             "on the gold; branches let finish after the vote had settled (correct episodes)"]
    for r in rows:
        wrong = r["episodes"] - r["correct"]
        kinds = ", ".join(f"{r[k]} {k}" for k in KINDS if r[k])
        lines.append(f"  beta={r['beta']:g}: {wrong} of {r['episodes']} wrong ({kinds or 'none'}); "
                     f"{r['pruned_gold']} of {r['pruned']} abandoned branches end on the gold; "
                     f"{r['settled_waits'] / max(1, r['correct']):.2f} extra finished branches per correct episode")
    for e in (evidence or {}).get("examples", [])[:examples]:
        lines.append(f"  e.g. {e['store']} q{e['question']} seed {e['seed']} beta={e['beta']:g}: {e['text']}")
    return "\n".join(lines)
