"""The discovery loop: rounds of explorer proposals, sandboxed evaluation, persisted history.

`run_discovery(config, out, resume=...)`:

1. create (or reopen) the run directory; measure the built-ins on the search stores once;
2. for each round not yet finished: hand the explorer a `LoopSession`; every evaluation it asks
   for is written to the history the moment it finishes; the round's spend and best objective
   are recorded when it ends; stop early at --time-limit or --budget-usd;
3. `finalize`: held-out evaluation of the finalists (never shown to the explorer), artifacts,
   report.

A killed run resumes at the first unfinished round; evaluations already in the history are
returned from it (matched by code hash) instead of being run again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autotts.offline.importer import find_data_files

from .baselines import cached_points
from .config import DiscoverConfig, build_explorer
from .evaluate import EvalConfig
from .explorers.base import Explorer, Session
from .history import History, source_key
from .objective import dominated_by, pareto_front, savings
from .racing import RacePlan, race
from .runner import LocalRunner

__all__ = ["LoopSession", "run_discovery"]

log = logging.getLogger(__name__)


class LoopSession(Session):
    """The loop's side of one round: every evaluation is raced (`racing.py`) and recorded."""

    def __init__(self, history: History, round_no: int, explorer: Explorer, eval_config: EvalConfig,
                 baselines: list[dict[str, Any]], config: DiscoverConfig, on_record=None, runner=None) -> None:
        self.history, self.round, self.explorer = history, round_no, explorer
        self.eval_config, self._baselines, self.config = eval_config, baselines, config
        self.gamma = config.gamma
        self.objective = config.objective
        self.plan = RacePlan.make(config.search_seeds, config.race_stages, config.race_eta, config.race_z)
        self.runner = runner or LocalRunner(config.workers)
        self.submitted: tuple[str, str] | None = None
        self.evaluated: list[str] = []
        self._lock = threading.Lock()
        self._on_record = on_record

    def records(self) -> list[dict[str, Any]]:
        return list(self.history.records)

    def baselines(self) -> list[dict[str, Any]]:
        return self._baselines

    def source_of(self, candidate_id: str) -> str | None:
        record = self.history.get(candidate_id)
        return self.history.source(record) if record else None

    def _prepare(self, source: str) -> tuple[str, dict[str, Any] | None]:
        with self._lock:
            done = self.history.find(source)
            if done is not None:
                return done["id"], done
            candidate_id = self.history.id_for(source)
            self.history.write_source(candidate_id, source)
            return candidate_id, None

    def _record(self, candidate_id: str, source: str, note: str, meta: dict[str, Any], body: dict[str, Any]):
        record = {"id": candidate_id, "key": source_key(source), "round": self.round, "explorer": self.explorer.name,
                  "note": note, "meta": meta or {}, "source_file": f"candidates/{candidate_id}.py",
                  "time": datetime.now(UTC).isoformat(timespec="seconds"), **body}
        with self._lock:
            done = self.history.find(source)  # a concurrent identical proposal may have finished first
            if done is None:
                self.history.add(record)
                if self._on_record:
                    self._on_record(record)
            return done or record

    def evaluate(self, source: str, note: str = "", meta: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.evaluate_many([(source, note, meta or {})])[0]

    def evaluate_many(self, items: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        prepared = [(self._prepare(src), src, note, meta) for src, note, meta in items]
        results: list[dict[str, Any] | None] = [done for (_, done), _, _, _ in prepared]
        todo = [(i, cid, src, note, meta) for i, ((cid, done), src, note, meta) in enumerate(prepared) if done is None]
        if todo:
            best = self.history.best(1)

            def final(j: int, body: dict[str, Any]) -> None:
                i, cid, src, note, meta = todo[j]
                results[i] = self._record(cid, src, note, meta, body)

            race([src for _, _, src, _, _ in todo], self.plan, self.eval_config,
                 lambda jobs: self.runner.run(jobs, self.eval_config), incumbent=best[0] if best else None,
                 slots=self.runner.slots, on_final=final)
        self.evaluated += [r["id"] for r in results if r]
        return [r for r in results if r is not None]

    def add_usage(self, *, model: str, input_tokens: int, output_tokens: int, usd: float, **extra: Any) -> None:
        self.history.add_usage({"round": self.round, "model": model, "input_tokens": int(input_tokens),
                                "output_tokens": int(output_tokens), "usd": float(usd),
                                "time": datetime.now(UTC).isoformat(timespec="seconds"), **extra})

    def budget_left_usd(self) -> float | None:
        if self.config.budget_usd is None:
            return None
        return self.config.budget_usd - self.history.spend()["usd"]

    def submit(self, candidate_id: str, reason: str = "") -> None:
        self.submitted = (candidate_id, reason)


def store_files(paths: list[str]) -> list[str]:
    """Every store file named by `paths` (files or directories), as absolute paths."""
    return [str(p.resolve()) for p in find_data_files(paths)]


def _round_summary(history: History, round_no: int, session: LoopSession, wall: float) -> dict[str, Any]:
    """The round in numbers, and the frontier so far (complete candidates) against the built-ins."""
    valid = history.valid()
    best = history.best(1)
    points = [{**p, "id": r["id"]} for r in valid for p in r["curve"]]
    front = pareto_front(points)
    mine = [r for r in history.records if r["id"] in set(session.evaluated) and r.get("round") == round_no]
    cmc = [b for b in session.baselines() if b.get("controller") == "cmc"]
    return {"round": round_no, "evaluations": sorted(set(session.evaluated)), "wall_s": round(wall, 3),
            "raced_out": sum(bool(r.get("raced_out")) for r in mine),
            "complete": sum(bool(r.get("complete", r["status"] == "ok")) for r in mine),
            "submitted": session.submitted[0] if session.submitted else None,
            "best_id": best[0]["id"] if best else None, "best_objective": best[0]["objective"] if best else None,
            "front": [{"id": p["id"], "beta": p["beta"], "acc": p["acc"], "tokens": p["tokens"]} for p in front],
            "front_dominates": dominated_by(front, session.baselines()),
            "front_cmc_savings": [{"label": c["label"], "saved_pct": round(v, 2)}
                                  for c, v in zip(cmc, savings(front, cmc), strict=True)] if front else [],
            "llm": history.spend(round_no), "time": datetime.now(UTC).isoformat(timespec="seconds")}


def make_runner(config: DiscoverConfig):
    """Ray (`--ray`) or threads of this process."""
    if config.ray_address is not None:
        from .ray_eval import RayRunner

        return RayRunner(config.ray_address, config.workers)
    return LocalRunner(config.workers)


def run_discovery(config: DiscoverConfig | None, out: str | Path, *, resume: bool = False, progress: bool = True,
                  overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a discovery run in `out`, or continue it (`resume`: settings from run.json + `overrides`)."""
    start = time.perf_counter()
    if resume:
        history = History.create(out, {}, resume=True)
        config = DiscoverConfig.from_json({**history.config(), **(overrides or {})})
        history.update_config(**(overrides or {}))
    else:
        if config is None:
            raise ValueError("a new run needs a DiscoverConfig")
        config = DiscoverConfig(**{**config.to_json(), "data": store_files(config.data),
                                   "heldout": store_files(config.heldout) if config.heldout else []})
        history = History.create(out, config.to_json(), resume=False)
    explorer = build_explorer(config)
    explorer.check()
    runner = make_runner(config)
    try:
        return _rounds(history, config, explorer, runner, start, progress)
    finally:
        runner.close()


def _rounds(history: History, config: DiscoverConfig, explorer: Explorer, runner, start: float,
            progress: bool) -> dict[str, Any]:
    search_points = cached_points(history, "search", config.data, config.betas, config.search_seeds,
                                  workers=config.workers, progress=progress, ray_address=config.ray_address,
                                  prefixes=config.race_stages)
    eval_config = EvalConfig(stores=tuple(config.data), betas=tuple(config.betas),
                             seeds=tuple(range(config.search_seeds)), gamma=config.gamma, limits=config.limits,
                             allow_unsandboxed=config.allow_unsandboxed or None, beta_policy=config.beta_policy,
                             baselines=tuple(search_points), objective=config.objective)
    bar = _bar(config.rounds, len(history.rounds), progress)
    stop_reason = "rounds done"

    def on_record(record: dict[str, Any]) -> None:
        obj = "-" if record.get("objective") is None else f"{record['objective']:.3f}"
        log.info("%s round %d: %s, objective %s (%.1fs)%s", record["id"], record["round"], record["status"], obj,
                 record.get("wall_s", 0.0), "" if not record["errors"] else f": {record['errors'][0][:160]}")

    for round_no in range(len(history.rounds), config.rounds):
        if config.time_limit_min is not None and time.perf_counter() - start > 60 * config.time_limit_min:
            stop_reason = "time limit"
            break
        left = None if config.budget_usd is None else config.budget_usd - history.spend()["usd"]
        if left is not None and left <= 0:
            stop_reason = "budget spent"
            break
        round_start = time.perf_counter()
        session = LoopSession(history, round_no, explorer, eval_config, search_points, config, on_record, runner)
        explorer.run_round(session)
        history.finish_round(_round_summary(history, round_no, session, time.perf_counter() - round_start))
        best = history.best(1)
        shown = f"best {best[0]['objective']:.3f}" if best else "no valid candidate"
        bar.set_postfix_str(f"{shown}, ${history.spend()['usd']:.2f}, {len(history.records)} evals")
        bar.update()
    bar.close()
    from .finalize import finalize

    return finalize(history, config, explorer, search_points, stop_reason=stop_reason,
                    search_wall_s=time.perf_counter() - start, progress=progress, runner=runner)


def _bar(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="discover", unit="round", disable=None if enabled else True,
                leave=False)
