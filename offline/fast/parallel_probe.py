"""Fast path of `parallel_probe`: lockstep probing of n branches, pruning, stable-majority stop."""

from __future__ import annotations

from typing import Any

from autotts.controllers.builtins.parallel_probe import ParallelProbe

from ..env import MAX_STEPS as MAX_ENV_STEPS
from . import kernels
from ._arrays import StoreArrays, ints, zeros

CONTROLLER = ParallelProbe


def unsupported(controller: ParallelProbe, arrays: StoreArrays) -> str | None:
    """Why the kernel cannot replay this configuration (None: it can)."""
    if arrays.min_probes < 1:
        return "a branch without probes can leave the first batch empty (the environment raises)"
    if controller.params["max_steps"] + 2 > MAX_ENV_STEPS:
        return "max_steps exceeds the environment's step limit"
    return None


def run(controller: ParallelProbe, arrays: StoreArrays, qs: Any, orders: Any, budget: int, kappa: int,
        out: Any) -> None:
    p = controller.params
    ip = ints([arrays.segment_tokens, kappa, budget, p["n"], p["T"], p["patience"], p["warm_up"], p["max_steps"]])
    width, vocab = max(arrays.branch_counts), arrays.vocab_size
    kernels.pp_kernel(arrays.qlo, arrays.qb, qs, orders, arrays.poff, arrays.pcode, arrays.tok, arrays.fin, ip,
                      zeros(8, width), zeros(width), zeros(width), zeros(vocab), zeros(vocab),
                      zeros(vocab), zeros(vocab), out)
