"""Scoring one candidate: static check → sandboxed β sweep → curve, objective, β check, dominance.

`evaluate_source(source, config)` never raises for anything the candidate does: every outcome,
from a syntax error to a memory bomb, is a record with a `status` and `errors` the explorer can
read. Only ``status == "ok"`` candidates are eligible to become artifacts.

Statuses: ok · static_error · load_error · no_beta · schedule_error · check_failed ·
failed_episodes · beta_violation · violation · timeout · cpu · memory · output · crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .objective import beta_check, curve_from_cells, dominated_by, objective
from .sandbox import Limits, run_task
from .static import problems

__all__ = ["EvalConfig", "evaluate_source"]


@dataclass(frozen=True)
class EvalConfig:
    stores: tuple[str, ...]
    betas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    seeds: tuple[int, ...] = tuple(range(10))
    gamma: float = 2e-6  # accuracy points per token
    limits: Limits = field(default_factory=Limits)
    max_steps: int = 1000
    episode_timeout_s: float = 5.0
    beta_rel_tol: float = 0.03
    beta_policy: str = "reject"  # or "flag"
    grids: int = 2
    baselines: tuple[dict[str, Any], ...] = ()  # labelled built-in points, for dominance

    def payload(self, source: str) -> dict[str, Any]:
        mid = self.betas[len(self.betas) // 2] if self.betas else None
        return {"source": source, "stores": list(self.stores), "betas": list(self.betas), "seeds": list(self.seeds),
                "max_steps": self.max_steps, "episode_timeout_s": self.episode_timeout_s, "grid_beta": mid,
                "max_grids": self.grids}


def evaluate_source(source: str, config: EvalConfig) -> dict[str, Any]:
    """A history record body for `source` (status, errors, curve, objective, β check, grids...)."""
    start = time.perf_counter()
    record: dict[str, Any] = {"status": "ok", "errors": [], "curve": [], "objective": None, "grids": [],
                              "beta_check": [], "dominates": [], "class": None}
    found = problems(source)
    if found:
        record.update(status="static_error", errors=found[:10])
        record["wall_s"] = round(time.perf_counter() - start, 3)
        return record
    box = run_task("evaluate", config.payload(source), config.limits)
    record["wall_s"] = round(time.perf_counter() - start, 3)
    if box.kind != "ok" and not (box.kind == "violation" and box.result):
        record.update(status=box.kind, errors=[box.error or "unknown failure", *box.violations[:5]])
        if box.stderr_tail.strip():
            record["stderr_tail"] = box.stderr_tail[-1200:]
        return record
    result = box.result or {}
    record.update(status=result.get("status", "crash"), errors=list(result.get("errors", [])),
                  grids=result.get("grids", []), schedule=result.get("schedule"), **{"class": result.get("class")})
    if box.kind == "violation":
        record.update(status="violation", errors=[box.error or "forbidden operation", *record["errors"]])
    cls = result.get("class") or {}
    if record["status"] == "ok" and (cls.get("beta_range") is None or not cls.get("budget_knobs")
                                     or not result.get("schedule") or len(result["schedule"][0]) <= 1):
        record.update(status="no_beta", errors=[
            "a candidate must be beta-parameterised: set beta_range, default_beta, a non-empty schedule(beta) "
            "and list its spending knobs in budget_knobs"])
    cells = result.get("cells") or []
    if cells:
        curve = curve_from_cells(cells)
        record["curve"] = curve
        record["objective"] = objective(curve, config.gamma)
        record["dominates"] = dominated_by(curve, list(config.baselines))
        record["beta_check"] = beta_check(curve, config.beta_rel_tol)
        if record["beta_check"] and record["status"] == "ok" and config.beta_policy == "reject":
            record["status"] = "beta_violation"
            record["errors"] = ["measured tokens must not decrease as beta grows: " + record["beta_check"][0]]
    return record
