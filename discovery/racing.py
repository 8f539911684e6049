"""Racing: every candidate meets a few seeds first, only the promising ones the full sweep.

Successive halving over the candidates evaluated together (a local round's population, or the one
candidate an LLM asked for): stage 0 runs each on the first seeds; the best ``1/eta`` of those still
``ok`` go on to the next stage's seeds, provided their objective plus `z` standard errors reaches what
the best complete candidate so far (the incumbent) scored on the same seeds; the rest are *raced out*
with the scores they have. Stages add seeds (never repeat them), so a candidate's stages merge into one
evaluation (`evaluate.merge_records`), and a finished race is exactly the full evaluation for the
candidates that ran it to the end. Each record keeps its objective and standard error after every
stage (``stages``), whether it is ``complete``, and why it was raced out.

Work is cut into jobs of (candidate, seeds, stores); when fewer candidates than `slots` are left, a
candidate's stores are split over several jobs so every slot (core, or Ray worker) stays busy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from .evaluate import EvalConfig, merge_records

__all__ = ["Job", "RacePlan", "incumbent_at", "race"]


@dataclass(frozen=True)
class RacePlan:
    """The seeds each stage adds, and how hard stages select."""

    stages: tuple[tuple[int, ...], ...]
    eta: int = 3
    z: float = 1.0

    @classmethod
    def make(cls, seeds: int, cuts: list[int] | tuple[int, ...] = (), eta: int = 3, z: float = 1.0) -> RacePlan:
        """Stages ending after each of `cuts` seeds, then at `seeds` (no cuts: one full stage, no race)."""
        ends = [*sorted({c for c in cuts if 0 < c < seeds}), seeds]
        return cls(tuple(tuple(range(a, b)) for a, b in pairwise([0, *ends])), eta, z)

    @property
    def seeds(self) -> int:
        return sum(len(s) for s in self.stages)


@dataclass(frozen=True)
class Job:
    candidate: int
    source: str
    seeds: tuple[int, ...]
    stores: tuple[str, ...]
    check: bool  # run the contract check (once per candidate)


def incumbent_at(incumbent: dict[str, Any] | None, seeds: int) -> float | None:
    """The incumbent's objective on the first `seeds` seeds (its final objective if it has no such stage)."""
    if not incumbent or incumbent.get("objective") is None:
        return None
    for stage in incumbent.get("stages") or []:
        if stage["seeds"] == seeds:
            return stage["objective"]
    return incumbent["objective"]


def _split(stores: tuple[str, ...], parts: int) -> list[tuple[str, ...]]:
    parts = max(1, min(parts, len(stores)))
    size = math.ceil(len(stores) / parts)
    return [stores[i:i + size] for i in range(0, len(stores), size)]


def race(sources: list[str], plan: RacePlan, config: EvalConfig,
         run: Callable[[list[Job]], Iterator[tuple[int, dict[str, Any]]]], *, incumbent: dict[str, Any] | None = None,
         slots: int = 1, on_final: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Race `sources`; one record body each (see the module docstring). `run(jobs)` evaluates jobs,
    concurrently where it can, yielding (job index, body) as each finishes; `on_final(i, record)` is
    called the moment candidate i's record is final (raced out, failed, or through the last stage)."""
    records: list[dict[str, Any] | None] = [None] * len(sources)
    alive = list(range(len(sources)))
    for number, seeds in enumerate(plan.stages):
        last = number == len(plan.stages) - 1
        chunks = _split(config.stores, math.ceil(slots / max(1, len(alive))))
        jobs = [Job(i, sources[i], seeds, chunk, number == 0 and c == 0)
                for i in alive for c, chunk in enumerate(chunks)]
        parts: dict[int, list[tuple[int, dict[str, Any]]]] = {i: [] for i in alive}
        for index, body in run(jobs):
            i = jobs[index].candidate
            parts[i].append((index, body))
            if len(parts[i]) == len(chunks):
                records[i] = _merge_stage(records[i], [b for _, b in sorted(parts[i], key=lambda p: p[0])], config)
                if last:
                    _finish(i, records[i], plan, on_final)
        if last:
            break
        promoted = _promote(alive, records, plan, incumbent)
        for i in alive:
            if i not in promoted:
                _finish(i, records[i], plan, on_final)
        alive = promoted
        if not alive:
            break
    return [r for r in records if r is not None]


def _merge_stage(before: dict[str, Any] | None, parts: list[dict[str, Any]], config: EvalConfig) -> dict[str, Any]:
    merged = merge_records(([before] if before else []) + parts, config)
    stage = {"seeds": len(merged["seeds"]), "objective": merged["objective"], "objective_se": merged["objective_se"]}
    merged["stages"] = [*(before or {}).get("stages", []), stage]
    return merged


def _finish(i: int, record: dict[str, Any], plan: RacePlan, on_final: Callable | None) -> None:
    record["complete"] = record["status"] == "ok" and len(record["seeds"]) == plan.seeds
    record.setdefault("raced_out", None)
    if on_final is not None:
        on_final(i, record)


def _promote(alive: list[int], records: list[dict[str, Any] | None], plan: RacePlan,
             incumbent: dict[str, Any] | None) -> list[int]:
    """Who goes on: the best 1/eta of the ok candidates that can still reach the incumbent."""
    ok = sorted((i for i in alive if records[i]["status"] == "ok"), key=lambda i: -records[i]["objective"])
    keep = math.ceil(len(ok) / plan.eta)
    promoted = []
    for rank, i in enumerate(ok):
        record = records[i]
        bar = incumbent_at(incumbent, len(record["seeds"]))
        reach = record["objective"] + plan.z * (record["objective_se"] or 0.0)
        if rank >= keep:
            record["raced_out"] = (f"stage {len(record['stages']) - 1}: ranked {rank + 1} of {len(ok)}, only the best "
                                   f"{keep} went on")
        elif bar is not None and reach < bar:
            record["raced_out"] = (f"stage {len(record['stages']) - 1}: objective {record['objective']:.3f} ± "
                                   f"{record['objective_se'] or 0:.3f} cannot reach the incumbent's {bar:.3f} on "
                                   f"the same {len(record['seeds'])} seeds")
        else:
            promoted.append(i)
    return promoted
