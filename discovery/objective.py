"""Scoring: β curves from evaluated cells, the accuracy–cost objective, Pareto dominance, β checks.

A *curve* is one point per β: accuracy (% correct, averaged over the stores) and tokens (mean
tokens per question, averaged over the stores), with the per-store values kept. The objective of
a point is ``acc − γ·tokens``; a controller's objective is the mean over its β sweep, so the
whole family counts, not one lucky β. `gamma` is in accuracy points per token (the CLI takes it
per million tokens).

>>> pts = [{"beta": 0.0, "acc": 50.0, "tokens": 1e5}, {"beta": 1.0, "acc": 60.0, "tokens": 3e5}]
>>> round(objective(pts, gamma=2e-6), 3)
54.6
>>> dominates(pts, {"acc": 55.0, "tokens": 4e5})
True

The *savings* objective measures a curve against reference points (the cmc sweep on the same stores):
for each reference, the tokens the curve needs to reach its accuracy (between the curve's points
linear in log tokens, as `autotts report` matches them), as a percentage saved; a reference the
curve never reaches counts -100. The objective is half the mean saving and half the worst one, so
the whole family must beat every reference point.

>>> refs = [{"acc": 55.0, "tokens": 2e5}, {"acc": 60.0, "tokens": 4e5}]
>>> [round(s, 2) for s in savings(pts, refs)]
[13.4, 25.0]
>>> round(savings_objective(pts, refs), 2)
16.3
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

from autotts.offline.report_stats import matched_tokens

__all__ = ["OBJECTIVES", "beta_check", "curve_from_cells", "dominated_by", "dominates", "objective",
           "objective_with_se", "pareto_front", "point_objective", "savings", "savings_objective"]

OBJECTIVES = ("gamma", "cmc-savings")

Point = dict[str, Any]


def curve_from_cells(cells: list[dict[str, Any]]) -> list[Point]:
    """Aggregate sandbox cells (per β × store sums) into one point per β, in β order."""
    by_beta: dict[Any, list[dict[str, Any]]] = {}
    for cell in cells:
        by_beta.setdefault(cell["beta"], []).append(cell)
    curve = []
    for beta, group in sorted(by_beta.items(), key=lambda kv: -1.0 if kv[0] is None else kv[0]):
        per_store = {}
        for c in group:
            n = max(1, c["episodes"])
            mean = c["tokens"] / n
            var = max(0.0, c.get("tokens_sq", mean * mean * n) / n - mean * mean)
            p = c["correct"] / n
            per_store[f"{c['model']}/{c['dataset']}"] = {
                "acc": 100.0 * p, "acc_se": 100.0 * math.sqrt(p * (1 - p) / n), "tokens": mean,
                "tokens_se": math.sqrt(var / n), "episodes": c["episodes"], "failed": c["failed"]}
        k = len(per_store)
        curve.append({"beta": beta,
                      "acc": sum(s["acc"] for s in per_store.values()) / k,
                      "acc_se": math.sqrt(sum(s["acc_se"] ** 2 for s in per_store.values())) / k,
                      "tokens": sum(s["tokens"] for s in per_store.values()) / k,
                      "tokens_se": math.sqrt(sum(s["tokens_se"] ** 2 for s in per_store.values())) / k,
                      "failed": sum(s["failed"] for s in per_store.values()),
                      "per_store": per_store})
    return curve


def point_objective(point: Point, gamma: float) -> float:
    return point["acc"] - gamma * point["tokens"]


def objective(curve: list[Point], gamma: float) -> float:
    """Mean over the β sweep of ``acc − γ·tokens``."""
    return sum(point_objective(p, gamma) for p in curve) / len(curve) if curve else float("-inf")


def savings(curve: list[Point], refs: list[Point]) -> list[float]:
    """Per reference point, the % of its tokens `curve` saves at its accuracy (-100: never reached, or
    at more than twice its tokens)."""
    out = []
    for ref in refs:
        tokens = matched_tokens([(p["tokens"], p["acc"]) for p in curve], ref["acc"])
        out.append(-100.0 if tokens is None else max(-100.0, 100.0 * (1.0 - tokens / ref["tokens"])))
    return out


def savings_objective(curve: list[Point], refs: list[Point]) -> float:
    """Half the mean and half the worst of `savings` (see the module docstring)."""
    saved = savings(curve, refs)
    return (sum(saved) / len(saved) + min(saved)) / 2 if saved and curve else float("-inf")


def objective_with_se(curve: list[Point], kind: str, gamma: float, refs: list[Point]) -> tuple[float, float]:
    """(objective, its standard error): the error from the points' accuracy and token errors, by moving
    every point one standard error for the better and for the worse."""
    def value(sign: float) -> float:
        moved = [{**p, "acc": p["acc"] + sign * p.get("acc_se", 0.0),
                  "tokens": p["tokens"] - sign * p.get("tokens_se", 0.0)} for p in curve]
        return objective(moved, gamma) if kind == "gamma" else savings_objective(moved, refs)

    centre = value(0.0)
    if not math.isfinite(centre):
        return centre, 0.0
    return centre, abs(value(1.0) - value(-1.0)) / 2


def dominates(curve: list[Point], other: Point) -> bool:
    """Some point of `curve` is at least as accurate and at most as costly as `other`, and better in one."""
    return any(p["acc"] >= other["acc"] and p["tokens"] <= other["tokens"]
               and (p["acc"] > other["acc"] or p["tokens"] < other["tokens"]) for p in curve)


def dominated_by(curve: list[Point], baselines: list[Point]) -> list[str]:
    """Labels of the baseline points that `curve` dominates."""
    return [b["label"] for b in baselines if dominates(curve, b)]


def pareto_front(points: list[Point]) -> list[Point]:
    """The points no other point dominates, by increasing tokens."""
    front: list[Point] = []
    for p in sorted(points, key=lambda q: (q["tokens"], -q["acc"])):
        if not front or p["acc"] > front[-1]["acc"]:
            front.append(p)
    return front


def beta_check(curve: list[Point], rel_tol: float = 0.03, z: float = 3.0) -> list[str]:
    """Where measured tokens fall as β grows by more than noise (`rel_tol` or `z` standard errors)."""
    problems = []
    for a, b in pairwise(p for p in curve if p["beta"] is not None):
        drop = a["tokens"] - b["tokens"]
        noise = max(rel_tol * a["tokens"], z * math.hypot(a.get("tokens_se", 0.0), b.get("tokens_se", 0.0)))
        if drop > noise:
            problems.append(f"tokens fall from {a['tokens']:,.0f} at beta={a['beta']:g} to {b['tokens']:,.0f} "
                            f"at beta={b['beta']:g} (more than the noise allowance {noise:,.0f})")
    return problems
