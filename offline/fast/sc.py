"""Fast path of `sc` (self-consistency@n): read the first n branches in full, majority vote."""

from __future__ import annotations

from typing import Any

from autotts.controllers.builtins.sc import SelfConsistency

from . import kernels
from ._arrays import StoreArrays, ints, too_wide, zeros

CONTROLLER = SelfConsistency


def unsupported(controller: SelfConsistency, arrays: StoreArrays) -> str | None:
    """Why the kernel cannot replay this configuration (None: it can)."""
    return too_wide(controller.params["n"], arrays)


def run(controller: SelfConsistency, arrays: StoreArrays, qs: Any, orders: Any, budget: int, kappa: int,
        out: Any) -> None:
    n = controller.params["n"]
    kernels.sc_kernel(arrays.qlo, qs, orders, arrays.tok, arrays.fin, ints([arrays.segment_tokens, kappa, budget, n]),
                      zeros(n), zeros(arrays.vocab_size), zeros(arrays.vocab_size), out)
