"""What engine work produces, as the episode machine applies it: units, and the work of a live plan.

A *unit* is what one decoded segment (``depth`` set) or probe (``depth`` None) produced:
``(cost, depth, answer, final, confidence)``. Live backends build `Unit`s from engine calls;
`recorded_units` and `recorded_probe` are the replay rules that turn a recorded trajectory into units
(../shared/replay/README.md): segment k < n of a branch with n recorded probes costs Δ and reveals
probe k, segment n+1 reveals the final answer and costs ``max(0, tokens − Δ·n)``, a full read from
depth d costs ``max(0, tokens − Δ·d)``, and a revealed probe costs κ_probe more. A `Plan` is one batch
turned into per-branch chains of engine `Work` (`EpisodeMachine.plan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .observation import BranchView

__all__ = ["STOP", "Plan", "Recorded", "Unit", "Work", "recorded_probe", "recorded_units"]


class Unit(NamedTuple):
    """What one decoded segment (``depth`` set) or probe (``depth`` None) produced."""

    cost: int | None
    depth: int | None
    answer: str | None = None
    final: bool = False
    confidence: float | None = None


#: a live driver stopped before this unit because the episode's token cap was already spent in flight
STOP = Unit(None, None)

Recorded = tuple[Sequence[str], int, str]  # a recorded branch: (probe answers, tokens, final answer)


def recorded_units(track: Recorded, depth: int, segments: int | None, probe: bool, segment_tokens: int,
                   kappa: int = 0) -> list[tuple]:
    """The units of decoding `segments` segments (None: to the end) of a recorded branch at `depth`."""
    probes, tokens, final = track
    n = len(probes)
    if segments is None and not probe:  # one full read to the end
        return [(max(0, tokens - segment_tokens * depth), n + 1, final, True, None)]
    left = n + 1 - depth if segments is None else segments
    charge = segment_tokens + kappa if probe else segment_tokens
    units = []
    while left > 0:
        if depth < n:
            units.append((charge, depth + 1, probes[depth] if probe else None, False, None))
            depth += 1
        else:
            units.append((max(0, tokens - segment_tokens * n), depth + 1, final, True, None))
            break
        left -= 1
    return units


def recorded_probe(track: Recorded, depth: int, kappa: int = 0) -> tuple:
    """The unit of probing a recorded branch at `depth` (≥ 1): the answer recorded there, for κ_probe."""
    return (kappa, None, track[0][depth - 1], False, None)


class Work(NamedTuple):
    """One engine job of a live plan: decode (``probe_only`` False) or probe branch `branch`."""

    key: tuple[int, int]  # (action index, k-th branch of a Branch action)
    branch: int
    opens: bool  # first job of a branch this batch opens
    probe_only: bool
    segments: int | None
    probe: bool


class Plan:
    """A batch turned into work: one chain of jobs per branch, which a driver may run concurrently.

    Jobs of one chain run in order; `ends_chain(units)` says when a chain has nothing more to do.
    Fill `results[work.key]` with each job's units, then hand the plan to `EpisodeMachine.apply`.
    """

    __slots__ = ("batch", "chains", "results")

    def __init__(self, batch: list[Any], chains: dict[int, list[Work]]) -> None:
        self.batch, self.chains = batch, chains
        self.results: dict[tuple[int, int], Sequence[tuple]] = {}

    @staticmethod
    def ends_chain(units: Sequence[tuple]) -> bool:
        """After these units the branch's later jobs cannot run: it finished, or the driver stopped."""
        return not units or units[-1][3] or units[-1] is STOP

    def _units(self, index: int, k: int, action: Any, view: BranchView) -> Sequence[tuple]:
        units = self.results.get((index, k))
        if units is None:
            raise RuntimeError(f"the driver returned no result for action {index} ({action!r}) on branch {view.id}")
        return units
