"""Self-consistency: read n whole branches, answer with the majority."""

from __future__ import annotations

from ..actions import Branch
from ..aggregate import majority
from ..base import GeneratorController, Param


class SelfConsistency(GeneratorController):
    name = "sc"
    description = "self-consistency@n: n full samples in one batch, majority vote"
    parameters = {"n": Param(int, 64, low=1, help="branches to sample")}

    def run(self, obs):
        yield [Branch(self.params["n"], segments=None, probe=False)]
        return majority(obs.completed_answers())
