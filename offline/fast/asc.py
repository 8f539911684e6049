"""Fast path of `asc` (adaptive consistency): one full read at a time until the Beta confidence is high."""

from __future__ import annotations

from typing import Any

from autotts.controllers.builtins.asc import AdaptiveConsistency

from . import kernels
from ._arrays import StoreArrays, conf_table, floats, ints, too_wide, zeros

CONTROLLER = AdaptiveConsistency


def unsupported(controller: AdaptiveConsistency, arrays: StoreArrays) -> str | None:
    """Why the kernel cannot replay this configuration (None: it can)."""
    return too_wide(controller.params["n"], arrays)


def run(controller: AdaptiveConsistency, arrays: StoreArrays, qs: Any, orders: Any, budget: int, kappa: int,
        out: Any) -> None:
    n = controller.params["n"]
    width = n + 1  # votes never exceed the n reads
    ip = ints([arrays.segment_tokens, kappa, budget, n, width])
    kernels.asc_kernel(arrays.qlo, qs, orders, arrays.tok, arrays.fin, ip, floats([controller.params["threshold"]]),
                       conf_table(width), zeros(arrays.vocab_size), zeros(arrays.vocab_size), out)
