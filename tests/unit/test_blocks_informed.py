"""The blocks added against cmc's measured waste: probe-consensus pacing, informed widening, short-trace
weighting. Each is called as the generated controller's own method on a hand-made observation, so the
test says what the mechanism does, not only that it renders (tests/unit/test_blocks.py covers that).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from autotts.discovery.blocks import BLOCKS, CMC_RECIPE, Recipe, render, repair, seed_recipes

from .test_blocks import controller_class


def controller(**changes):
    recipe = repair(Recipe({**CMC_RECIPE.blocks, **changes}, dict(CMC_RECIPE.ends)))
    return controller_class(render(recipe))(beta=0.5)


def branch(latest=None, tokens=0, final=None):
    return SimpleNamespace(latest=latest, tokens=tokens, final=final)


def observation(running=(), finished=()):
    """An observation with `running` branches and `finished` ones (in completion order)."""
    branches = [*finished, *running]
    return SimpleNamespace(running=lambda: list(running), branches=branches,
                           completed=list(range(len(finished))),
                           completed_answers=lambda: [b.final for b in finished])


def test_new_blocks_are_seeded_once_each():
    for name in ("consensus_pacing", "informed_widening", "short_trace_vote"):
        assert name in BLOCKS
        assert sum(name in r.blocks[BLOCKS[name].slot] for r in seed_recipes()) == 1


def test_consensus_pacing_holds_widening_only_while_the_probes_agree():
    c = controller(pace=("consensus_pacing",))
    need = c.knobs["consensus_votes"]
    agreeing = [branch("7") for _ in range(need)] + [branch("ERR")]  # ERR is no probe answer
    assert c.pace(observation(agreeing), {}, 3) == 0
    split = [branch("7") for _ in range(need)] + [branch(str(i)) for i in range(need + 1)]
    assert c.pace(observation(split), {}, 3) == 3
    assert c.pace(observation([branch("7")] * (need - 1)), {}, 3) == 3  # too few to call it agreement


def test_informed_widening_races_a_fixed_width_until_a_vote_arrives():
    c = controller(widen=("informed_widening",))
    k, step = c.knobs, c.knobs["warm_up"]
    racing = [branch("ERR") for _ in range(k["race_width"] - 1)]
    assert c.widen(observation(racing), {}, step, 0.0, 0.0) == 1  # tops up the race, no more
    full = [*racing, branch("ERR")]
    assert c.widen(observation(full), {}, step, 0.0, 0.0) == 0  # nothing has voted: no blind widening
    voted = observation(full, finished=[branch("3", 9000, "3")])
    assert c.widen(voted, {}, step, 0.0, 0.0) == k["widen_burst"]  # a flat, low confidence with votes in
    assert c.widen(voted, {}, step, 0.99, 0.0) == 0  # confident enough


@pytest.mark.parametrize("short, long, winner", [(1000, 3000, "A"), (3000, 1000, "B")])
def test_short_trace_weighting_breaks_near_ties_towards_shorter_reasoning(short, long, winner):
    c = controller(vote=("short_trace_vote",))
    done = [branch("A", short, "A"), branch("B", long, "B"), branch("B", 2 * long, "B")]
    got, conf, votes = c.vote(observation(finished=done))
    assert (got, votes) == (winner, 3)
    assert 0.0 < conf < 0.75  # two answers split the vote: the confidence says so
    same = [branch("A", 1000, "A"), branch("B", 1000, "B"), branch("B", 1000, "B")]
    assert c.vote(observation(finished=same))[0] == "B"  # equal lengths: the plain majority
    assert c.vote(observation())[:2] == (None, 0.0)
