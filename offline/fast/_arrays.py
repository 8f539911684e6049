"""What the kernels are fed: a store's arrays, branch orders, the confidence table, scratch buffers.

Built once per store (cached on it) and per (branch count, seeds). Under numba everything is an int64
/ float64 numpy array; in plain-Python mode the same data as lists, which plain Python indexes faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from ..env import branch_order
from ..store import ReplayStore
from ._jit import JIT

NO_GOLD, ABSENT = -3, -2

__all__ = ["ABSENT", "NO_GOLD", "StoreArrays", "conf_table", "floats", "ints", "orders", "store_arrays", "zeros"]


def ints(values: Any) -> Any:
    """An int64 array (compiled kernels) or a list of ints (plain Python)."""
    arr = np.asarray(values, dtype=np.int64)
    return arr if JIT else arr.tolist()


def floats(values: Any) -> Any:
    arr = np.asarray(values, dtype=np.float64)
    return arr if JIT else arr.tolist()


def zeros(*shape: int) -> Any:
    """Zeroed scratch of `shape` (1-D or 2-D)."""
    arr = np.zeros(shape, dtype=np.int64)
    return arr if JIT else arr.tolist()


@dataclass(frozen=True)
class StoreArrays:
    """A store as kernel inputs. Answer codes are canonical: equal strings have equal codes."""

    qlo: Any  # (Q,) first row of each question
    qb: Any  # (Q,) branches of each question
    poff: Any  # (R+1,) probe offsets per row
    pcode: Any  # (P,) probe answer codes
    tok: Any  # (R,) branch tokens
    fin: Any  # (R,) final answer codes
    vocab_size: int
    branch_counts: tuple[int, ...]  # per question, as Python ints
    min_probes: int  # fewest probes on any row (0 if some row has none)
    segment_tokens: int
    gold_codes: tuple[int, ...]  # per question: code of the gold answer, NO_GOLD, or ABSENT from the vocab
    answer_of: tuple[str | None, ...]  # code → answer string; code −1 (no answer) → None


def too_wide(n: int, arrays: StoreArrays) -> str | None:
    """Why full reads of `n` branches cannot be replayed (None: they can); shared by sc, asc and esc."""
    if n > min(arrays.branch_counts):
        return "n exceeds the branches of some question (the environment raises)"
    return None


def store_arrays(store: ReplayStore) -> StoreArrays:
    """`store` as kernel inputs, built on first use and cached on the store."""
    key = "fast:jit" if JIT else "fast:pure"
    cached = store._derived.get(key)
    if cached is not None:
        return cached
    first: dict[str, int] = {}
    canon = np.fromiter((first.setdefault(a, i) for i, a in enumerate(store.vocab)), dtype=np.int64,
                        count=len(store.vocab))
    golds = tuple(NO_GOLD if g is None else first.get(g, ABSENT) for g in store.golds)
    counts = np.diff(store.question_offsets)
    n_probes = np.diff(store.probe_offsets)
    arrays = StoreArrays(
        qlo=ints(store.question_offsets[:-1]), qb=ints(counts), poff=ints(store.probe_offsets),
        pcode=ints(canon[store.probe_codes]), tok=ints(store.branch_tokens), fin=ints(canon[store.final_codes]),
        vocab_size=max(1, len(store.vocab)), branch_counts=tuple(int(c) for c in counts),
        min_probes=int(n_probes.min()) if len(n_probes) else 0, segment_tokens=int(store.segment_tokens),
        gold_codes=golds, answer_of=(*store.vocab, None))
    store._derived[key] = arrays
    return arrays


def orders(n_branches: int, seeds: list[int]) -> Any:
    """Row s: the order in which seed `seeds[s]` opens a question's `n_branches` branches."""
    rows = [branch_order(n_branches, s) for s in seeds]
    arr = np.asarray(rows, dtype=np.int64).reshape(len(seeds), n_branches)
    return arr if JIT else [list(r) for r in rows]


_CONF: dict[int, Any] = {}


def conf_table(width: int) -> Any:
    """Flat table ``conf[v1 * width + v2]`` = `beta_confidence(v1, v2)` for v1 + v2 < width.

    Same integers, same single division as `beta_confidence` (so the same floats), built with one
    row of Pascal's triangle per number of trials instead of a sum of binomials per entry.
    """
    table = _CONF.get(width)
    if table is None:
        flat = [0.0] * (width * width)
        row = [1]  # binomial coefficients of `trials`
        for trials in range(1, width + 1):
            row = [1, *(a + b for a, b in pairwise(row)), 1]
            denominator, cumulative = 1 << trials, 0
            for v1 in range(trials):  # v1 + v2 + 1 == trials
                cumulative += row[v1]
                flat[v1 * width + (trials - 1 - v1)] = cumulative / denominator
        table = _CONF[width] = floats(flat)
    return table
