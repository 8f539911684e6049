"""Fast path of `cmc` (Confidence Momentum Controller) at any β: knobs come from its schedule."""

from __future__ import annotations

from typing import Any

from autotts.controllers.builtins.cmc import ConfidenceMomentum

from ..env import MAX_STEPS as MAX_ENV_STEPS
from . import kernels
from ._arrays import StoreArrays, conf_table, floats, ints, zeros

CONTROLLER = ConfidenceMomentum


def unsupported(controller: ConfidenceMomentum, arrays: StoreArrays) -> str | None:
    """Why the kernel cannot replay this configuration (None: it can)."""
    if 2 * controller.params["max_steps"] + 2 > MAX_ENV_STEPS:
        return "max_steps exceeds the environment's step limit"
    return None


def run(controller: ConfidenceMomentum, arrays: StoreArrays, qs: Any, orders: Any, budget: int, kappa: int,
        out: Any) -> None:
    k = controller.knobs
    ip = ints([arrays.segment_tokens, kappa, budget, k["n_init"], k["max_branches"], k["warm_up"],
               k["abandon_patience"], k["T_ema"], k["burst_aligned"], k["widen_burst"], k["min_complete"],
               controller.params["max_steps"]])
    alpha = k["ema_alpha"]
    fp = floats([1 - alpha, alpha, k["conf_thresh"], k["delta_slack"], k["trend_thresh"]])
    width, vocab = max(arrays.branch_counts), arrays.vocab_size
    kernels.cmc_kernel(arrays.qlo, arrays.qb, qs, orders, arrays.poff, arrays.pcode, arrays.tok, arrays.fin, ip, fp,
                       conf_table(width + 1), width + 1, zeros(8, width), zeros(width), zeros(width),
                       zeros(width), zeros(width), floats([0.0] * max(1, k["T_ema"])), zeros(vocab), zeros(vocab),
                       zeros(vocab), zeros(vocab), out)
