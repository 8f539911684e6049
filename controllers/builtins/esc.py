"""Early-stopping consistency: sample windows of full branches until one window is unanimous."""

from __future__ import annotations

from ..actions import Branch
from ..aggregate import majority
from ..base import GeneratorController, Param


class EarlyStoppingConsistency(GeneratorController):
    name = "esc"
    description = "early-stopping consistency: stop after the first window whose answers all agree"
    parameters = {
        "n": Param(int, 64, low=1, help="most branches to sample"),
        "window": Param(int, 8, low=1, help="branches per window"),
    }

    def run(self, obs):
        n, window = self.params["n"], self.params["window"]
        while len(obs.branches) < n:
            yield [Branch(min(window, n - len(obs.branches)), segments=None, probe=False)]
            last = obs.completed_answers()[-window:]
            if len(last) == window and all(a == last[0] for a in last):
                return last[0]
        return majority(obs.completed_answers())
