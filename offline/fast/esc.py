"""Fast path of `esc` (early-stopping consistency): full reads in windows, stop on a unanimous one."""

from __future__ import annotations

from typing import Any

from autotts.controllers.builtins.esc import EarlyStoppingConsistency

from . import kernels
from ._arrays import StoreArrays, ints, too_wide, zeros

CONTROLLER = EarlyStoppingConsistency


def unsupported(controller: EarlyStoppingConsistency, arrays: StoreArrays) -> str | None:
    """Why the kernel cannot replay this configuration (None: it can)."""
    return too_wide(controller.params["n"], arrays)


def run(controller: EarlyStoppingConsistency, arrays: StoreArrays, qs: Any, orders: Any, budget: int, kappa: int,
        out: Any) -> None:
    n, window = controller.params["n"], controller.params["window"]
    ip = ints([arrays.segment_tokens, kappa, budget, n, window])
    kernels.esc_kernel(arrays.qlo, qs, orders, arrays.tok, arrays.fin, ip, zeros(n), zeros(arrays.vocab_size),
                       zeros(arrays.vocab_size), out)
