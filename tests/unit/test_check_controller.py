"""check_controller catches controllers that break the contract; every built-in passes it."""

from __future__ import annotations

import pytest
from autotts.controllers import BUILTINS, Answer, Branch, Controller, EpisodeError, GeneratorController, load
from autotts.offline.check import check_controller


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_meets_the_contract(name):
    check_controller(load(name))


class KeepsState(Controller):
    name = "keeps_state"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def step(self, obs):
        self.calls += 1
        if not obs.branches:
            return [Branch(1 + self.calls % 3, segments=None, probe=False)]
        return [Answer(obs.branches[0].final)]


class Mutates(Controller):
    name = "mutates"

    def step(self, obs):
        if obs.branches:
            obs.branches[0].pruned = True
            return [Answer("x")]
        return [Branch(1)]


class NeverAnswers(GeneratorController):
    name = "never_answers"

    def run(self, obs):
        yield [Branch(1)]
        while True:
            yield [c for c in []] or [Branch(1)] if obs.branches_available else []


def test_state_between_episodes_is_caught():
    with pytest.raises(EpisodeError, match="not deterministic or keeps state"):
        check_controller(KeepsState())


def test_mutating_the_observation_is_caught():
    with pytest.raises(EpisodeError, match=r"raised ObservationReadOnlyError: BranchView\.pruned is read-only"):
        check_controller(Mutates())


def test_running_out_of_actions_is_caught():
    with pytest.raises(EpisodeError, match="empty batch"):
        check_controller(NeverAnswers())
