"""The evaluator: controllers × stores × seeds, on a local process pool, into tables.

A *cell* is one (controller spec, store); it is split into seed chunks so both cores stay busy.
Stores are loaded once in the parent (so bad files fail before any work starts) and reach forked
workers for free; controllers are re-created in each worker from their spec. Built-ins run in
process (compiled kernels where they have them); artifacts, whose code may come from a model, run
in a sandboxed worker (`sandboxed`), unless `EvalOptions.in_process` says the code is the user's own.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotts.controllers.aggregators import parse_aggregator
from autotts.controllers.errors import VoteSpecError
from autotts.controllers.extractors import parse_extractor
from autotts.controllers.registry import load

from .env import ReplayEnv, store_aggregator
from .episode import EpisodeResult, run_episode
from .importer import find_data_files
from .loaded_stores import STORES as _STORES  # filled before forking; workers inherit it
from .sandboxed import SandboxOptions, artifact_spec, close_workers, run_sandboxed, sandboxed_controller
from .store import ReplayStore, load_store

__all__ = ["CellResult", "EvalOptions", "bundled_data_dir", "evaluate", "resolve_stores"]

log = logging.getLogger(__name__)


def bundled_data_dir() -> Path:
    """The replay stores shipped inside the package (Qwen3 on AIME24/25)."""
    return Path(__file__).parent / "data"


@dataclass(frozen=True)
class EvalOptions:
    seeds: int = 100
    kappa_probe: int = 0
    token_budget: int | None = None
    answer_mode: str = "exact"
    #: how episodes vote (`autotts.controllers.aggregators`; None: the controller's own, else the one each
    #: store records, else exact strings);
    #: anything but exact replays without the fast kernels
    aggregator: str | None = None
    #: the answers a store must have been recorded with (None: whatever each store's metadata says); a
    #: store whose answers came from another extractor stops the run before any work
    extractor: str | None = None
    trace_seeds: tuple[int, ...] = ()
    #: run artifact code in this process, unsandboxed: only for code you wrote yourself
    in_process: bool = False
    sandbox: SandboxOptions = field(default_factory=SandboxOptions)
    chunk_seeds: int = 10


@dataclass
class CellResult:
    spec: str
    controller: str
    beta: float | None
    params: dict[str, Any]
    store: str
    model: str
    dataset: str
    episodes: list[EpisodeResult] = field(default_factory=list)
    wall_s: float = 0.0

    def row(self) -> dict[str, Any]:
        n = len(self.episodes)
        labelled = [e for e in self.episodes if e.correct is not None]
        correct = sum(bool(e.correct) for e in labelled)
        return {
            "controller": self.controller,
            "beta": "" if self.beta is None else f"{self.beta:g}",
            "params": " ".join(f"{k}={v}" for k, v in self.params.items()),
            "model": self.model, "dataset": self.dataset,
            "accuracy_pct": round(100.0 * correct / len(labelled), 6) if labelled else "",
            "avg_tokens": round(sum(e.tokens for e in self.episodes) / n, 6) if n else "",
            "episodes": n,
            "failed": sum(e.error is not None for e in self.episodes),
            "avg_branches": round(sum(e.branches for e in self.episodes) / n, 4) if n else "",
            "avg_probes": round(sum(e.probes for e in self.episodes) / n, 4) if n else "",
            "wall_s": round(self.wall_s, 3),
            "spec": self.spec, "store": self.store,
        }


def resolve_stores(paths: list[str | Path]) -> list[ReplayStore]:
    """Load every store named by `paths` (files or directories; JSON or Parquet)."""
    stores = []
    for path in find_data_files(paths):
        store = load_store(path)
        stores.append(store)
    return stores


def _run_chunk(spec: str, store_key: str, seeds: list[int], opts: EvalOptions) -> tuple[list[EpisodeResult], float]:
    start = time.perf_counter()
    store = _STORES.get(store_key) or _STORES.setdefault(store_key, load_store(store_key))
    if not opts.in_process and artifact_spec(spec) is not None:
        episodes = run_sandboxed(spec, store, seeds, kappa_probe=opts.kappa_probe, token_budget=opts.token_budget,
                                 answer_mode=opts.answer_mode,
                                 aggregator=None if opts.aggregator is None else parse_aggregator(opts.aggregator),
                                 trace_seeds=opts.trace_seeds, options=opts.sandbox)
        return episodes, time.perf_counter() - start
    controller = load(spec, allow_code=True)
    from .fast import run_fast  # built-ins: compiled kernels, same episodes (tests/unit/test_fast_path.py)

    named = opts.aggregator or getattr(controller, "aggregator", None)
    aggregator = parse_aggregator(named, "aggregator") if named else store_aggregator(store)
    fast = None if aggregator.name != "exact" else run_fast(
        controller, store, [s for s in seeds if s not in opts.trace_seeds], kappa_probe=opts.kappa_probe,
        token_budget=opts.token_budget, answer_mode=opts.answer_mode)
    if fast is not None and len(fast) == len(seeds) * store.n_questions:  # no traced seed in this chunk
        return fast, time.perf_counter() - start
    pending = iter(fast or ())
    env = ReplayEnv(store, kappa_probe=opts.kappa_probe, token_budget=opts.token_budget, aggregator=aggregator)
    traced = ReplayEnv(store, kappa_probe=opts.kappa_probe, token_budget=opts.token_budget, record_trace=True,
                       aggregator=aggregator)
    results = []
    for seed in seeds:
        runner = traced if seed in opts.trace_seeds else env
        for q in range(store.n_questions):
            episode = None if runner is traced else next(pending, None)
            results.append(episode or run_episode(controller, runner, q, seed, answer_mode=opts.answer_mode))
    return results, time.perf_counter() - start


def evaluate(specs: list[str], stores: list[ReplayStore], opts: EvalOptions | None = None,
             workers: int | None = None, progress: bool = True,
             ray_address: str | None = None) -> list[CellResult]:
    """Evaluate every spec on every store; one `CellResult` per pair, in input order.

    `ray_address` (None: local process pool) runs the chunks as Ray tasks instead: ``""`` starts a
    local Ray instance with `workers` CPUs, anything else is passed to ``ray.init(address=...)``.
    """
    opts = opts or EvalOptions()
    if parse_aggregator(opts.aggregator, "--aggregator").needs == "judge":
        raise VoteSpecError("--aggregator judge needs an engine to ask; replay has none (serve it with autotts serve)")
    if opts.extractor is not None:
        _check_extractors(stores, opts.extractor)
    controllers = [_describe(spec, opts) for spec in specs]  # fail fast on bad specs
    cells = []
    for spec, controller in zip(specs, controllers, strict=True):
        for store in stores:
            key = store.path or f"memory:{id(store)}"
            _STORES[key] = store
            cells.append((CellResult(spec, controller.name, controller.beta, dict(controller.params),
                                     key, store.model, store.dataset), key))
    step = max(1, opts.chunk_seeds)
    units = [(ci, list(range(lo, min(lo + step, opts.seeds))))
             for ci in range(len(cells)) for lo in range(0, opts.seeds, step)]
    parts: dict[int, list[tuple[int, list[EpisodeResult]]]] = {}
    n_workers = workers or os.cpu_count() or 1
    bar = _progress(len(units), progress)
    if ray_address is not None:
        from .ray_backend import run_chunks_on_ray

        chunks = [(cells[ci][0].spec, cells[ci][1], seeds) for ci, seeds in units]
        used = {key: _STORES[key] for _, key in cells}
        for i, result in run_chunks_on_ray(chunks, used, opts, _run_chunk, ray_address, num_cpus=workers):
            _collect(cells, parts, units[i][0], units[i][1], result)
            bar.update()
    elif n_workers == 1:
        for ci, seeds in units:
            _collect(cells, parts, ci, seeds, _run_chunk(cells[ci][0].spec, cells[ci][1], seeds, opts))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            futures = {pool.submit(_run_chunk, cells[ci][0].spec, cells[ci][1], seeds, opts): (ci, seeds)
                       for ci, seeds in units}
            for future in as_completed(futures):
                ci, seeds = futures[future]
                _collect(cells, parts, ci, seeds, future.result())
                bar.update()
    bar.close()
    out = []
    for ci, (cell, _) in enumerate(cells):
        for _, episodes in sorted(parts.get(ci, []), key=lambda p: p[0]):
            cell.episodes.extend(episodes)
        failed = [e for e in cell.episodes if e.error]
        if failed:
            log.warning("%s on %s/%s: %d of %d episodes failed; first (question %d, seed %d):\n%s",
                        cell.spec, cell.model, cell.dataset, len(failed), len(cell.episodes),
                        failed[0].question, failed[0].seed, failed[0].error)
        out.append(cell)
    return out


def _check_extractors(stores: list[ReplayStore], wanted: str) -> None:
    """Every store's answers were read by the extractor `wanted` names (boxed when a store does not say)."""
    want = parse_extractor(wanted, "--extractor")
    for store in stores:
        have = parse_extractor(store.meta.get("extractor"), f"{store.path}: extractor")
        if have.kind != want.kind or (want.suffix is not None and have.probe_suffix != want.probe_suffix):
            raise VoteSpecError(f"{store.path or store.name}: its answers were recorded with the {have.kind} extractor "
                             f"({have.spec()}), not {want.spec()}; recorded answers cannot be read again")


def _describe(spec: str, opts: EvalOptions) -> Any:
    """The controller a spec names (name, β, parameters), its spec checked before any work starts.

    An artifact is checked in a sandboxed worker that is closed again, so that the evaluation's
    processes start their own.
    """
    if opts.in_process or artifact_spec(spec) is None:
        return load(spec, allow_code=True)
    try:
        return sandboxed_controller(spec, opts.sandbox)
    finally:
        close_workers()


def _collect(cells, parts, ci, seeds, result) -> None:
    episodes, wall = result
    cells[ci][0].wall_s += wall
    parts.setdefault(ci, []).append((seeds[0], episodes))


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="eval", unit="chunk", disable=None if enabled else True, leave=False)
