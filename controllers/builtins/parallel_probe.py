"""Parallel-Probe: decode many branches in lockstep, probe each every segment, prune the off-track.

All n branches are opened at once (opening reveals each branch's first probe). Each step decodes
one more segment of every running branch. Once past warm-up, a running branch whose latest answer
disagrees with the current majority `patience` steps in a row is pruned. The episode ends when the
majority has held for `T` steps or no branch is left running.
"""

from __future__ import annotations

from ..actions import Branch, Continue, Prune
from ..base import GeneratorController, Param


class ParallelProbe(GeneratorController):
    name = "parallel_probe"
    description = "Parallel-Probe: lockstep probing of n branches, prune off-track ones, stop on a stable majority"
    parameters = {
        "n": Param(int, 64, low=1, help="branches opened at the start"),
        "T": Param(int, 40, low=1, help="stop when the majority held this many steps"),
        "patience": Param(int, 7, low=1, help="prune after this many off-track steps in a row"),
        "warm_up": Param(int, 15, low=0, help="no pruning before this step"),
        "max_steps": Param(int, 100, low=1, help="hard cap on lockstep rounds"),
    }

    def run(self, obs):
        p = self.params
        patience, warm_up = p["patience"], p["warm_up"]
        yield [Branch(min(p["n"], obs.branches_available or p["n"]))]
        branches = obs.branches
        probes = _probes(len(branches))
        active = [b for b in branches if not b.pruned]
        running = [b for b in active if not b.finished]  # both in opening order
        off_track = [0] * len(branches)
        previous = winner = None
        stable = 0
        doomed: list[int] = []  # pruned in this step, sent with the next batch
        for step in range(p["max_steps"]):
            yield [Prune(i) for i in doomed] + [probes[b.id] for b in running if b.id not in doomed]
            active = [b for b in branches if not b.pruned]
            running = [b for b in active if not b.finished]
            winner = _majority(active)
            doomed = []
            if step >= warm_up and len(active) > 1:
                for b in running:
                    if b.latest == winner:
                        off_track[b.id] = 0
                    else:
                        off_track[b.id] += 1
                        if off_track[b.id] >= patience:
                            doomed.append(b.id)
                if doomed:
                    active = [b for b in active if b.id not in doomed]
                    if not active:
                        return previous if previous is not None else winner
                    winner = _majority(active)
            stable = stable + 1 if winner == previous else 0
            previous = winner
            if stable >= p["T"] or len(doomed) == len(running):
                return winner
        return winner


def _probes(n: int) -> list[Continue]:
    """`Continue(i)` for branch ids below `n`, built once per process (actions are immutable)."""
    if len(_PROBES) < n:
        _PROBES[:] = [Continue(i) for i in range(max(n, 64))]
    return _PROBES


_PROBES: list[Continue] = []


def _majority(branches: list) -> str | None:
    """`majority` of the branches' latest answers (ties to the first seen), without building the list."""
    counts: dict[str | None, int] = {}
    for b in branches:
        counts[b.latest] = counts.get(b.latest, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None
