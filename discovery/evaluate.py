"""Scoring one candidate: static check → sandboxed contract check and β sweep → curve, objective, checks.

The candidate's code runs only in a worker isolated by the kernel (`autotts.sandbox`): it is
loaded there, its instances live there and every step it takes is computed there. Everything
that decides its score stays in this process: the stores and gold answers, the episode machines
(which apply its actions and charge their costs), the correctness of its answers and the cells
below. `evaluate_source(source, config)` never raises for anything the candidate does: every
outcome, from a syntax error to a memory bomb, is a record with a `status` and `errors` the
explorer can read. Only ``status == "ok"`` candidates are eligible to become artifacts.

A record keeps its raw cells (per β × store sums) and its trace evidence (`evidence.py`), so that the
evaluations of one candidate on different seeds or stores (the stages of a race, `racing.py`, or
chunks run in parallel) combine into the record of one evaluation: `merge_records`.

Statuses: ok · static_error · load_error · no_beta · schedule_error · check_failed ·
failed_episodes · beta_violation · timeout · cpu · memory · output · crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from autotts.controllers.aggregators import parse_aggregator
from autotts.controllers.base import check_schedule_table
from autotts.controllers.errors import AutoTTSError, ControllerSpecError
from autotts.controllers.normalize import is_correct
from autotts.offline.check import check_sandboxed
from autotts.offline.env import ReplayEnv
from autotts.offline.episode import settle
from autotts.offline.store import ReplayStore, load_store
from autotts.sandbox import Limits, WorkerError
from autotts.sandbox.remote import CandidateError, SandboxedClass, failure_kind, run_lockstep

from .evidence import Evidence, merge_evidence
from .grid import render_grid
from .objective import beta_check, curve_from_cells, dominated_by, objective_with_se
from .static import problems

__all__ = ["STORES", "EvalConfig", "evaluate_source", "merge_records", "paired_refs"]

#: stores by path, loaded once per process for every candidate (a Ray worker gets them from the object store)
STORES: dict[str, ReplayStore] = {}


@dataclass(frozen=True)
class EvalConfig:
    stores: tuple[str, ...]
    betas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    seeds: tuple[int, ...] = tuple(range(10))
    gamma: float = 2e-6  # accuracy points per token
    limits: Limits = field(default_factory=lambda: Limits(cpu_s=600, memory_bytes=3 << 30, wall_s=900.0))
    allow_unsandboxed: bool | None = None  # a plain subprocess where no kernel sandbox works (--no-sandbox)
    max_steps: int = 1000
    episode_timeout_s: float = 5.0  # CPU seconds one step may take
    beta_rel_tol: float = 0.03
    beta_policy: str = "reject"  # or "flag"
    grids: int = 2
    fail_fast_episodes: int = 60
    baselines: tuple[dict[str, Any], ...] = ()  # labelled built-in points, for dominance
    objective: str = "gamma"  # or "cmc-savings" (objective.py)
    #: the static check is a first, cheap layer only: the sandbox holds without it (tests switch it off)
    static_check: bool = True


class _Stop(Exception):
    """The evaluation ends early with this status and these errors."""

    def __init__(self, status: str, *errors: str, cells: list[dict[str, Any]] | None = None) -> None:
        super().__init__(status)
        self.status, self.errors, self.cells = status, [e for e in errors if e], cells or []


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def evaluate_source(source: str, config: EvalConfig, *, check: bool = True) -> dict[str, Any]:
    """A history record body for `source` (status, errors, curve, objective, β check, grids, cells,
    evidence...). `check=False` skips the contract check (a later stage of a candidate that passed it)."""
    start = time.perf_counter()
    record: dict[str, Any] = {"status": "ok", "errors": [], "curve": [], "objective": None, "objective_se": None,
                              "grids": [], "beta_check": [], "dominates": [], "class": None, "cells": [],
                              "evidence": None, "seeds": list(config.seeds)}
    found = problems(source) if config.static_check else []
    if found:
        record.update(status="static_error", errors=found[:10], wall_s=round(time.perf_counter() - start, 3))
        return record
    klass = None
    evidence = Evidence()
    try:
        klass = SandboxedClass.load(source, limits=config.limits, allow_unsandboxed=config.allow_unsandboxed,
                                    timeout_s=config.limits.wall_s, points=11)
        cells = _score(klass, config, record, evidence, check, deadline=time.monotonic() + config.limits.wall_s)
    except CandidateError as exc:
        record.update(status="load_error", errors=[str(exc)])
        cells = []
    except WorkerError as exc:
        record.update(status=failure_kind(exc), errors=[_first_line(exc)])
        if exc.stderr_tail.strip():
            record["stderr_tail"] = exc.stderr_tail[-1200:]
        cells = []
    except _Stop as stop:
        record.update(status=stop.status, errors=stop.errors[:6])
        cells = stop.cells
    finally:
        if klass is not None:
            klass.close()
    record["wall_s"] = round(time.perf_counter() - start, 3)
    record["cells"], record["evidence"] = cells, evidence.to_json() if cells else None
    return score_record(record, config)


def score_record(record: dict[str, Any], config: EvalConfig) -> dict[str, Any]:
    """Fill in the curve, objective (± its standard error), dominance and β check from the record's cells."""
    if not record["cells"]:
        return record
    curve = curve_from_cells(record["cells"])
    refs = paired_refs(config.baselines, record.get("seeds") or list(config.seeds))
    record["curve"] = curve
    record["objective"], record["objective_se"] = objective_with_se(curve, config.objective, config.gamma, refs)
    record["dominates"] = dominated_by(curve, list(config.baselines))
    record["beta_check"] = beta_check(curve, config.beta_rel_tol)
    if record["status"] == "beta_violation":  # judged again on the merged cells
        record["status"], record["errors"] = "ok", [e for e in record["errors"] if "must not decrease" not in e]
    if record["beta_check"] and record["status"] == "ok" and config.beta_policy == "reject":
        record["status"] = "beta_violation"
        record["errors"] = ["measured tokens must not decrease as beta grows: " + record["beta_check"][0]]
    return record


def paired_refs(baselines: tuple[dict[str, Any], ...], seeds: list[int]) -> list[dict[str, Any]]:
    """cmc's points on the record's own seeds where measured (the first k: a racing stage), else on all."""
    key = str(len(seeds)) if list(seeds) == list(range(len(seeds))) else None
    return [(b.get("prefixes") or {}).get(key, b) for b in baselines if b.get("controller") == "cmc"]


def merge_records(parts: list[dict[str, Any]], config: EvalConfig) -> dict[str, Any]:
    """One record from the records of one candidate on disjoint seeds or stores (the first part's class
    and schedule; the first failure's status; cells and evidence added up)."""
    merged = {**parts[0], "errors": [], "grids": [], "beta_check": [], "dominates": []}
    cells: dict[tuple, dict[str, Any]] = {}
    for part in parts:
        if merged["status"] in ("ok", "beta_violation") and part["status"] not in ("ok", "beta_violation"):
            merged["status"] = part["status"]
        merged["errors"] += [e for e in part["errors"] if e not in merged["errors"]]
        merged["grids"] += part.get("grids") or []
        for cell in part.get("cells") or []:
            key = (cell["beta"], cell["store"])
            if key in cells:
                cells[key] = {**cells[key], **{f: cells[key][f] + cell[f]
                                               for f in ("episodes", "correct", "tokens", "tokens_sq", "failed")}}
            else:
                cells[key] = dict(cell)
    merged["errors"] = merged["errors"][:6]
    merged["grids"] = merged["grids"][:config.grids]
    merged["seeds"] = sorted({s for part in parts for s in part.get("seeds", [])})
    merged["wall_s"] = round(sum(part.get("wall_s", 0.0) for part in parts), 3)
    merged["cells"] = sorted(cells.values(), key=lambda c: (c["store"], c["beta"]))
    merged["evidence"] = merge_evidence([part.get("evidence") for part in parts])
    if any(c["failed"] for c in merged["cells"]) and merged["status"] == "ok":
        merged["status"] = "failed_episodes"
    return score_record(merged, config)


def _score(klass: SandboxedClass, config: EvalConfig, record: dict[str, Any], evidence: Evidence, check: bool, *,
           deadline: float) -> list[dict]:
    """Contract check (unless `check` is off) and β sweep of the loaded class; fills `record`, returns the cells."""
    info = klass.info
    record["class"] = {"name": info.name, "entry": info.entry, "beta_range": info.beta_range,
                       "default_beta": info.default_beta, "budget_knobs": list(info.budget_knobs),
                       "aggregator": info.aggregator}
    if info.beta_range is None or not info.budget_knobs:
        raise _Stop("no_beta", "a candidate must be beta-parameterised: set beta_range, default_beta, a "
                               "schedule(beta) returning its knobs, and list the knobs that bound spending in "
                               "budget_knobs")
    if info.schedule_error:
        raise _Stop("schedule_error", f"schedule() raised {info.schedule_error}")
    try:  # the worker's own check is not taken on trust: its table is checked again here
        check_schedule_table(info.name, info.schedule or [], info.budget_knobs)
    except ControllerSpecError as exc:
        raise _Stop("schedule_error", str(exc)) from None
    record["schedule"] = info.schedule or []
    if not info.schedule or len(info.schedule[0]) <= 1:
        raise _Stop("no_beta", "schedule(beta) returned no knobs")
    controllers = {}
    for beta in config.betas:
        try:
            controllers[beta] = klass.new(beta)
            if check:
                check_sandboxed(controllers[beta], episodes=4, max_steps=config.max_steps,
                                step_timeout_s=config.episode_timeout_s)
        except AutoTTSError as exc:
            if klass.failure is not None:  # the worker itself failed (limits, crash): that is the status
                raise klass.failure from None
            raise _Stop("check_failed", f"contract check at beta={beta}: {exc}") from None
    cells: list[dict[str, Any]] = []
    failed_total = episodes_total = 0
    grid_beta = config.betas[len(config.betas) // 2]
    for path in config.stores:
        if time.monotonic() > deadline:
            raise _Stop("timeout", f"the evaluation ran past its wall-clock limit of {config.limits.wall_s:g} s")
        store = STORES.get(path) or STORES.setdefault(path, load_store(path))
        new_cells = _sweep(klass, controllers, store, config, record, evidence, grid_beta, deadline)
        cells += new_cells
        failed_total += sum(c["failed"] for c in new_cells)
        episodes_total += sum(c["episodes"] for c in new_cells)
        if episodes_total >= config.fail_fast_episodes and failed_total > episodes_total / 2:
            record["errors"].insert(0, f"stopped early: {failed_total} of the first {episodes_total} episodes failed")
            raise _Stop("failed_episodes", *record["errors"], cells=cells)
    if failed_total:
        record["status"] = "failed_episodes"
    return cells


def _sweep(klass: SandboxedClass, controllers: dict, store: ReplayStore, config: EvalConfig,
           record: dict[str, Any], evidence: Evidence, grid_beta: float, deadline: float) -> list[dict[str, Any]]:
    """Every (β, seed, question) episode of one store, all in lockstep; one cell per β. Episodes vote with
    the aggregator the candidate's class names, as `autotts eval` and the gateway would."""
    named = klass.info.aggregator
    env = ReplayEnv(store, max_steps=config.max_steps, aggregator=None if named is None else parse_aggregator(named))
    cases = [(beta, seed, q) for beta in config.betas for seed in config.seeds for q in range(store.n_questions)]
    machines = [env.machine_for(q, seed, beta=controllers[beta].beta, log_changes=True) for beta, seed, q in cases]
    errors = run_lockstep([(m, controllers[beta]) for (beta, _, _), m in zip(cases, machines, strict=True)],
                          step_timeout_s=config.episode_timeout_s, deadline=deadline)
    if klass.failure is not None:
        raise klass.failure
    if time.monotonic() > deadline:
        raise _Stop("timeout", f"the evaluation ran past its wall-clock limit of {config.limits.wall_s:g} s")
    cells = {beta: {"beta": beta, "store": store.path, "model": store.model, "dataset": store.dataset,
                    "episodes": 0, "correct": 0, "tokens": 0, "tokens_sq": 0, "failed": 0} for beta in config.betas}
    for (beta, seed, q), machine, error in zip(cases, machines, errors, strict=True):
        if error is None and machine.done and machine.aggregator.needs is not None:
            error = settle(machine)  # semantic: local embeddings; judge: refused (no engine in replay)
        cell, tokens = cells[beta], machine.obs.tokens_spent
        correct = error is None and is_correct(machine.answer, store.golds[q])
        cell["episodes"] += 1
        cell["tokens"] += tokens
        cell["tokens_sq"] += tokens * tokens
        cell["correct"] += bool(correct)
        if error is None:
            evidence.add(machine, store, q, seed, beta, store.golds[q], bool(correct))
        if error is not None:
            cell["failed"] += 1
            message = f"{store.name} q{q} seed {seed} beta={beta}: {error}"
            if len(record["errors"]) < 5 and not any(error in e for e in record["errors"]):
                record["errors"].append(message)
        elif (not correct and len(record["grids"]) < config.grids and beta == grid_beta and seed == min(config.seeds)
              and all(g["store"] != store.name for g in record["grids"])):
            record["grids"].append({"store": store.name, "question": q, "seed": seed, "beta": beta,
                                    "text": render_grid(machine.obs, answer=machine.answer, gold=store.golds[q],
                                                        title=store.name)})
    return list(cells.values())
