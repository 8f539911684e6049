"""The built-in controllers' curves on the same stores and seeds as the candidates.

Candidates are judged against these points (Pareto dominance) and the report puts them side by
side. Built-ins are trusted code, so they run through the ordinary offline evaluator (with all
its workers), not the sandbox.

A point may also carry ``prefixes``: the same built-in on only the first k seeds, for each racing stage's
k. A stage scored against cmc on its own seeds is a paired comparison: a replay seed fixes which recorded
branches every controller meets, so the luck of the draw cancels. On the bundled AIME24 stores this cuts
the spread of a 2-seed savings objective about 2.3× (docs/discovery.md).
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


def _cell_sums(cell, seeds: int | None = None) -> dict[str, Any]:
    """A cell's episode sums (only those of the first `seeds` seeds), as `curve_from_cells` reads them."""
    episodes = [e for e in cell.episodes if seeds is None or e.seed < seeds]
    return {"beta": None, "model": cell.model, "dataset": cell.dataset, "episodes": len(episodes),
            "correct": sum(bool(e.correct) for e in episodes), "tokens": sum(e.tokens for e in episodes),
            "tokens_sq": sum(e.tokens ** 2 for e in episodes), "failed": sum(e.error is not None for e in episodes)}


def builtin_points(paths: list[str], betas: tuple[float, ...], seeds: int, *, workers: int | None = None,
                   names: tuple[str, ...] = DEFAULT_BUILTINS, progress: bool = False,
                   ray_address: str | None = None, prefixes: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """One labelled point per built-in (and per β for cmc): acc and tokens averaged over the stores; cmc's
    points also on the first k seeds for each k of `prefixes` (``point["prefixes"][str(k)]``)."""
    stores = resolve_stores(list(paths))
    fewest = min((s.n_branches(q) for s in stores for q in range(s.n_questions)), default=None)
    specs = _specs(names, betas, fewest)
    cells = evaluate([s for s, _, _ in specs], stores, EvalOptions(seeds=seeds), workers=workers, progress=progress,
                     ray_address=ray_address)
    points = []
    per_spec: dict[str, list] = {}
    for cell in cells:
        per_spec.setdefault(cell.spec, []).append(cell)
    cuts = sorted(k for k in set(prefixes) if 0 < k < seeds)
    for spec, label, beta in specs:
        (point,) = curve_from_cells([_cell_sums(c) for c in per_spec[spec]])
        point = {**point, "beta": beta, "label": label, "controller": spec.split(":")[0], "spec": spec}
        if point["controller"] == "cmc" and cuts:
            point["prefixes"] = {str(k): {**curve_from_cells([_cell_sums(c, k) for c in per_spec[spec]])[0],
                                          "beta": beta} for k in cuts}
        points.append(point)
    return points


def cached_points(history, key: str, paths: list[str], betas: list[float], seeds: int, *, workers: int | None,
                  progress: bool, ray_address: str | None = None, prefixes: list[int] | None = None
                  ) -> list[dict[str, Any]]:
    """`builtin_points`, measured once per run and kept in ``baselines.json`` under `key`."""
    cached = history.read_json("baselines.json") or {}
    entry = cached.get(key)
    wanted = {"stores": paths, "seeds": seeds, "betas": list(betas), "prefixes": sorted(prefixes or [])}
    if entry and all(entry.get(k, []) == v for k, v in wanted.items()):
        return entry["points"]
    log.info("measuring the built-ins on the %s stores (%d seeds)", key, seeds)
    points = builtin_points(paths, tuple(betas), seeds, workers=workers, progress=progress, ray_address=ray_address,
                            prefixes=tuple(prefixes or ()))
    cached[key] = {**wanted, "points": points}
    history.write_json("baselines.json", cached)
    return points
