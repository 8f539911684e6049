"""Parallel-Probe: decode many branches in lockstep, probe each every segment, prune the off-track.

All n branches are opened at once (opening reveals each branch's first probe). Each step decodes
one more segment of every running branch. Once past warm-up, a running branch whose latest answer
disagrees with the current majority `patience` steps in a row is pruned. The episode ends when the
majority has held for `T` steps or no branch is left running.
"""

from __future__ import annotations

from ..actions import Branch, Continue, Prune
from ..aggregate import majority
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
        yield [Branch(min(p["n"], obs.branches_available or p["n"]))]
        off_track: dict[int, int] = {}
        previous = winner = None
        stable = 0
        doomed: list[int] = []  # pruned in this step, sent with the next batch
        for step in range(p["max_steps"]):
            yield [Prune(i) for i in doomed] + [Continue(b.id) for b in obs.branches
                                                if b.running and b.id not in doomed]
            active = [b for b in obs.branches if not b.pruned]
            winner = majority([b.latest for b in active])
            doomed = []
            if step >= p["warm_up"] and len(active) > 1:
                for b in active:
                    if not b.finished:
                        off_track[b.id] = off_track.get(b.id, 0) + 1 if b.latest != winner else 0
                doomed = [b.id for b in active if not b.finished and off_track[b.id] >= p["patience"]]
                if doomed:
                    active = [b for b in active if b.id not in doomed]
                    if not active:
                        return previous if previous is not None else winner
                    winner = majority([b.latest for b in active])
            stable = stable + 1 if winner == previous else 0
            previous = winner
            if stable >= p["T"] or all(not b.running or b.id in doomed for b in obs.branches):
                return winner
        return winner
