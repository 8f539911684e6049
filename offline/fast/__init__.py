"""Fast replay of the built-in controllers: a whole chunk of episodes per compiled kernel call.

`ReplayEnv` driven by `controller.step` stays the semantic reference and the only path for every
other controller, discovered ones included. For an instance of exactly one of the built-in classes
(a subclass may behave differently, so it takes the reference path), `run_fast` replays the same
episodes over the store's arrays and returns the same `EpisodeResult`s: answer, correctness,
tokens, branches, probes, steps and budget exhaustion (no traces: chunks with traced seeds take the
reference path). tests/unit/test_fast_path.py checks the two paths agree episode by episode.

Kernels are compiled with numba when the optional `fast` extra is installed, else they run as plain
Python. ``AUTOTTS_FAST=0`` turns the fast path off, ``AUTOTTS_FAST=pure`` forces plain Python.
"""

from __future__ import annotations

import gc
from importlib import import_module
from itertools import repeat
from typing import Any

import numpy as np
from autotts.controllers.base import Controller
from autotts.controllers.builtins import (
    AdaptiveConsistency,
    ConfidenceMomentum,
    EarlyStoppingConsistency,
    ParallelProbe,
    SelfConsistency,
)
from autotts.controllers.normalize import is_correct

from ..episode import EpisodeResult
from ..store import ReplayStore
from ._mode import ENABLED

__all__ = ["ENABLED", "JIT", "fast_controllers", "run_fast", "unsupported"]

# controller class → module of its fast path; imported (with numba) only when one is replayed
_MODULES: dict[type[Controller], str] = {SelfConsistency: "sc", AdaptiveConsistency: "asc",
                                         EarlyStoppingConsistency: "esc", ParallelProbe: "parallel_probe",
                                         ConfidenceMomentum: "cmc"}


def __getattr__(name: str) -> Any:
    if name == "JIT":  # whether the kernels are compiled; asking imports numba
        from ._jit import JIT

        return JIT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fast_controllers() -> list[str]:
    """Names of the controllers that have a fast path."""
    return sorted(cls.name for cls in _MODULES)


def unsupported(controller: Controller, store: ReplayStore, *, kappa_probe: int = 0,
                token_budget: int | None = None) -> str | None:
    """Why `run_fast` would decline this controller on this store (None: it will replay it)."""
    if not ENABLED:
        return "the fast path is switched off (AUTOTTS_FAST=0)"
    name = _MODULES.get(type(controller))
    if name is None:
        return f"no fast path for {type(controller).__name__} (only the built-in classes themselves)"
    if kappa_probe < 0 or (token_budget is not None and token_budget <= 0):
        return "invalid kappa_probe / token_budget (the environment raises)"
    from ._arrays import store_arrays

    module = import_module(f".{name}", __name__)
    arrays = store_arrays(store)
    if not arrays.branch_counts or min(arrays.branch_counts) < 1:
        return "a question without branches"
    return module.unsupported(controller, arrays)


def run_fast(controller: Controller, store: ReplayStore, seeds: list[int], *, kappa_probe: int = 0,
             token_budget: int | None = None, answer_mode: str = "exact") -> list[EpisodeResult] | None:
    """Episodes (seed-major, then question) as `run_episode` would give them, or None when unsupported."""
    if not seeds or unsupported(controller, store, kappa_probe=kappa_probe, token_budget=token_budget):
        return None
    from ._arrays import store_arrays
    from .kernels import N_OUT

    module = import_module(f".{_MODULES[type(controller)]}", __name__)
    arrays = store_arrays(store)
    budget = -1 if token_budget is None else token_budget
    groups: dict[int, list[int]] = {}  # branch count → questions (the branch order depends on it)
    for q, count in enumerate(arrays.branch_counts):
        groups.setdefault(count, []).append(q)
    n_questions = store.n_questions
    if len(groups) == 1:  # the usual case: one call, episodes already in seed-major order
        table = _run_group(module, controller, arrays, seeds, arrays.branch_counts[0], list(range(n_questions)),
                           budget, kappa_probe)
    else:
        table = np.empty((len(seeds) * n_questions, N_OUT), dtype=np.int64)
        for count, qs in groups.items():
            rows = (np.arange(len(seeds))[:, None] * n_questions + np.asarray(qs)[None, :]).ravel()
            table[rows] = _run_group(module, controller, arrays, seeds, count, qs, budget, kappa_probe)
    return _results(store, arrays, seeds, table, answer_mode)


def _run_group(module: Any, controller: Controller, arrays: Any, seeds: list[int], count: int, qs: list[int],
               budget: int, kappa: int) -> np.ndarray:
    """Kernel outputs of questions `qs` (all with `count` branches): one row of N_OUT per episode."""
    from ._arrays import ints, orders, zeros
    from .kernels import N_OUT

    out = zeros(len(seeds) * len(qs) * N_OUT)
    module.run(controller, arrays, ints(qs), orders(count, seeds), budget, kappa, out)
    return np.asarray(out, dtype=np.int64).reshape(-1, N_OUT)


def _results(store: ReplayStore, arrays: Any, seeds: list[int], table: np.ndarray,
             answer_mode: str) -> list[EpisodeResult]:
    """Kernel rows → `EpisodeResult`s, column-wise (no Python work per episode beyond the object itself)."""
    from ._arrays import NO_GOLD

    n_seeds, n_questions = len(seeds), store.n_questions
    codes = table[:, 0]
    answers = list(map(arrays.answer_of.__getitem__, codes.tolist()))  # code −1 → None
    golds = np.tile(np.asarray(arrays.gold_codes, dtype=np.int64), n_seeds)
    if answer_mode == "exact":  # canonical codes: equal codes ⇔ equal strings
        correct: list[Any] = (codes == golds).tolist()
    else:
        verdicts: dict[tuple[int, int], bool] = {}
        correct = []
        for e, answer in enumerate(answers):
            q, code = e % n_questions, int(codes[e])
            if (code, q) not in verdicts:
                verdicts[code, q] = is_correct(answer, store.golds[q], answer_mode)
            correct.append(verdicts[code, q])
    for e in np.flatnonzero(golds == NO_GOLD).tolist():
        correct[e] = None
    columns = table[:, 1:5].T.tolist()  # tokens, branches, probes, steps
    questions, episode_seeds = list(range(n_questions)) * n_seeds, np.repeat(seeds, n_questions).tolist()
    exhausted = (table[:, 5] == 1).tolist()
    # Thousands of new acyclic objects at once: the cyclic GC would run dozens of times while the
    # list grows; paused, it resumes afterwards with one pass over the whole batch.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return list(map(EpisodeResult, questions, episode_seeds, answers, correct, *columns, repeat(None), exhausted))
    finally:
        if enabled:
            gc.enable()
