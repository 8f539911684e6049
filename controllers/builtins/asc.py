"""Adaptive consistency: sample one full branch at a time until the vote is confident."""

from __future__ import annotations

from ..actions import Branch
from ..aggregate import majority, top_two
from ..base import GeneratorController, Param
from ..confidence import beta_confidence


class AdaptiveConsistency(GeneratorController):
    name = "asc"
    description = "adaptive consistency: stop once the Beta-posterior confidence of the leader exceeds threshold"
    parameters = {
        "n": Param(int, 64, low=1, help="most branches to sample"),
        "threshold": Param(float, 0.95, low=0.0, high=1.0, help="stop when confidence > threshold"),
    }

    def run(self, obs):
        n, threshold = self.params["n"], self.params["threshold"]
        for sampled in range(1, n + 1):
            yield [Branch(1, segments=None, probe=False)]
            if sampled >= 2:
                leader, v1, v2 = top_two(obs.completed_answers())
                if beta_confidence(v1, v2) > threshold:
                    return leader
        return majority(obs.completed_answers())
