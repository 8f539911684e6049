"""The built-in controllers' curves on the same stores and seeds as the candidates.

Candidates are judged against these points (Pareto dominance) and the report puts them side by
side. Built-ins are trusted code, so they run through the ordinary offline evaluator (with all
its workers), not the sandbox.
"""

from __future__ import annotations

import logging
from typing import Any

from autotts.controllers.builtins import BUILTINS
from autotts.offline.evaluate import EvalOptions, evaluate, resolve_stores

from .objective import curve_from_cells

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BUILTINS", "builtin_points", "cached_points"]

DEFAULT_BUILTINS = ("parallel_probe", "cmc", "sc", "asc", "esc")


def _specs(names: tuple[str, ...], betas: tuple[float, ...],
           fewest_branches: int | None = None) -> list[tuple[str, str, float | None]]:
    """(spec, label, β) per built-in; a branch count `n` above what every question has is lowered to it
    (captured or collected stores may hold fewer than the default 64 branches per question)."""
    specs = []
    for name in names:
        if name == "cmc":
            specs += [(f"cmc:beta={b:g}", f"cmc β={b:g}", b) for b in betas]
            continue
        n = BUILTINS[name].parameters.get("n")
        if n is not None and fewest_branches is not None and n.default > fewest_branches:
            specs.append((f"{name}:n={fewest_branches}", f"{name}@{fewest_branches}", None))
        else:
            specs.append((name, name, None))
    return specs


def builtin_points(paths: list[str], betas: tuple[float, ...], seeds: int, *, workers: int | None = None,
                   names: tuple[str, ...] = DEFAULT_BUILTINS, progress: bool = False,
                   ray_address: str | None = None) -> list[dict[str, Any]]:
    """One labelled point per built-in (and per β for cmc): acc and tokens averaged over the stores."""
    stores = resolve_stores(list(paths))
    fewest = min((s.n_branches(q) for s in stores for q in range(s.n_questions)), default=None)
    specs = _specs(names, betas, fewest)
    cells = evaluate([s for s, _, _ in specs], stores, EvalOptions(seeds=seeds), workers=workers, progress=progress,
                     ray_address=ray_address)
    points = []
    per_spec: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        n = len(cell.episodes)
        per_spec.setdefault(cell.spec, []).append({
            "beta": None, "model": cell.model, "dataset": cell.dataset, "episodes": n,
            "correct": sum(bool(e.correct) for e in cell.episodes), "tokens": sum(e.tokens for e in cell.episodes),
            "tokens_sq": sum(e.tokens ** 2 for e in cell.episodes), "failed": sum(e.error is not None
                                                                                for e in cell.episodes)})
    for spec, label, beta in specs:
        (point,) = curve_from_cells(per_spec[spec])
        points.append({**point, "beta": beta, "label": label, "controller": spec.split(":")[0], "spec": spec})
    return points


def cached_points(history, key: str, paths: list[str], betas: list[float], seeds: int, *, workers: int | None,
                  progress: bool, ray_address: str | None = None) -> list[dict[str, Any]]:
    """`builtin_points`, measured once per run and kept in ``baselines.json`` under `key`."""
    cached = history.read_json("baselines.json") or {}
    entry = cached.get(key)
    if entry and entry.get("stores") == paths and entry.get("seeds") == seeds and entry.get("betas") == list(betas):
        return entry["points"]
    log.info("measuring the built-ins on the %s stores (%d seeds)", key, seeds)
    points = builtin_points(paths, tuple(betas), seeds, workers=workers, progress=progress, ray_address=ray_address)
    cached[key] = {"stores": paths, "seeds": seeds, "betas": list(betas), "points": points}
    history.write_json("baselines.json", cached)
    return points
