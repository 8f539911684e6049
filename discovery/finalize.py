"""The end of a run: pick finalists, score them on held-out stores, write artifacts and the report.

Finalists are the `top_k` eligible candidates by objective plus the one dominating the most
built-in points on the search stores. Held-out stores are touched only here, after the search,
and their numbers go to ``heldout.json``, the artifacts' scorecards and the report, never back
into the history an explorer reads. Everything is cached by code hash, so a resumed run redoes
nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .artifacts import artifact_name, write_artifact
from .baselines import cached_points
from .config import DiscoverConfig
from .evaluate import EvalConfig
from .explorers.base import Explorer
from .history import History
from .racing import RacePlan, race
from .report import build_report, write_report
from .runner import LocalRunner

__all__ = ["compare_with_builtins", "finalize", "select_finalists"]

log = logging.getLogger(__name__)


def select_finalists(history: History, top_k: int) -> list[tuple[dict[str, Any], list[str]]]:
    """[(record, why)] in rank order."""
    chosen: dict[str, list[str]] = {}
    for r in history.best(top_k):
        chosen.setdefault(r["id"], []).append("objective")
    valid = history.valid()
    if valid:
        pareto = max(valid, key=lambda r: (len(r.get("dominates") or []), r["objective"]))
        if pareto.get("dominates"):
            chosen.setdefault(pareto["id"], []).append("dominates the most built-ins")
    return [(history.get(cid), why) for cid, why in chosen.items()]


def compare_with_builtins(curve: list[dict[str, Any]], points: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a curve stands against parallel_probe and the cmc sweep (same stores and seeds)."""
    pp = next((p for p in points if p["label"] == "parallel_probe"), None)
    cmc = [p for p in points if p["controller"] == "cmc"]
    out: dict[str, Any] = {}
    if pp:
        out["beats_parallel_probe_at"] = [p["beta"] for p in curve
                                          if p["acc"] >= pp["acc"] and p["tokens"] < pp["tokens"]]
    if cmc:
        out["dominates_cmc"] = [c["label"] for c in cmc if any(
            p["acc"] >= c["acc"] and p["tokens"] <= c["tokens"] and (p["acc"] > c["acc"] or p["tokens"] < c["tokens"])
            for p in curve)]
        out["dominated_by_cmc_at"] = [p["beta"] for p in curve if any(
            c["acc"] >= p["acc"] and c["tokens"] <= p["tokens"] and (c["acc"] > p["acc"] or c["tokens"] < p["tokens"])
            for c in cmc)]
    return out


def _heldout(history: History, config: DiscoverConfig, finalists, progress: bool, runner):
    points = cached_points(history, "heldout", config.heldout, config.betas, config.heldout_seeds,
                           workers=config.workers, progress=progress, ray_address=config.ray_address)
    cache: dict[str, Any] = history.read_json("heldout.json") or {}
    ecfg = EvalConfig(stores=tuple(config.heldout), betas=tuple(config.betas), seeds=tuple(range(config.heldout_seeds)),
                      gamma=config.gamma, limits=config.limits, allow_unsandboxed=config.allow_unsandboxed or None,
                      beta_policy="flag", grids=0, baselines=tuple(points), objective=config.objective)
    todo = [r for r, _ in finalists if r["key"] not in cache]

    def done(i: int, body: dict[str, Any]) -> None:
        record = todo[i]
        cache[record["key"]] = {"id": record["id"], "status": body["status"], "errors": body["errors"],
                                "curve": body["curve"], "objective": body["objective"],
                                "objective_se": body["objective_se"], "dominates": body["dominates"],
                                "beta_check": body["beta_check"],
                                "compare": compare_with_builtins(body["curve"], points)}
        history.write_json("heldout.json", cache)

    if todo:
        log.info("held-out evaluation of %s (%d stores x %d seeds)", ", ".join(r["id"] for r in todo),
                 len(config.heldout), config.heldout_seeds)
        race([history.source(r) for r in todo], RacePlan.make(config.heldout_seeds), ecfg,
             lambda jobs: runner.run(jobs, ecfg), slots=runner.slots, on_final=done)
    return points, cache


def finalize(history: History, config: DiscoverConfig, explorer: Explorer, search_points: list[dict[str, Any]], *,
             stop_reason: str, search_wall_s: float, progress: bool, runner=None) -> dict[str, Any]:
    finalists = select_finalists(history, config.top_k)
    runner = runner or LocalRunner(config.workers)
    heldout_points, heldout = (_heldout(history, config, finalists, progress, runner) if config.heldout and finalists
                               else ([], {}))
    spend = history.spend()
    artifacts = []
    for rank, (record, why) in enumerate(finalists, 1):
        name = artifact_name(rank, record, (record.get("class") or {}).get("name"))
        held = heldout.get(record["key"])
        scorecard = {
            "objective": {"gamma_per_mtok": config.gamma_per_mtok, "search": record["objective"],
                          "heldout": held["objective"] if held else None},
            "search": {"stores": config.data, "seeds": config.search_seeds, "curve": _slim(record["curve"]),
                       "dominates": record.get("dominates", []),
                       "compare": compare_with_builtins(record["curve"], search_points)},
            "heldout": None if not held else {"stores": config.heldout, "seeds": config.heldout_seeds,
                                              "curve": _slim(held["curve"]), "compare": held["compare"],
                                              "status": held["status"]},
            "selected_for": why,
        }
        provenance = {**explorer.describe(), "candidate": record["id"], "round": record["round"],
                      "run_dir": Path(history.root).name, "llm_usd": spend["usd"],
                      "llm_input_tokens": spend["input_tokens"], "llm_output_tokens": spend["output_tokens"],
                      "evaluations": len(history.records)}
        path, error = write_artifact(Path(history.root) / "artifacts" / name, history.source(record), scorecard,
                                     provenance, config)
        if error:
            log.warning("artifact for %s not written: %s", record["id"], error)
        artifacts.append({"id": record["id"], "path": str(path) if path else None, "error": error, "why": why,
                          "name": name})
    report = build_report(history, config, search_points, heldout_points, heldout, artifacts,
                          stop_reason=stop_reason, search_wall_s=search_wall_s)
    write_report(history, report)
    return report


def _slim(curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"beta": p["beta"], "acc": round(p["acc"], 4), "tokens": round(p["tokens"], 1),
             "per_store": {k: {"acc": round(v["acc"], 4), "tokens": round(v["tokens"], 1)}
                           for k, v in p.get("per_store", {}).items()}} for p in curve]
