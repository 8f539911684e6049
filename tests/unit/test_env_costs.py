"""Cost accounting and legality in the replay environment (integration counterpart:
tests/integration/test_expected_table.py checks the same semantics on the real trajectories)."""

from __future__ import annotations

import pytest
from autotts.controllers import Answer, Branch, Continue, IllegalActionError, Probe, Prune
from autotts.offline import ReplayEnv

from tests.helpers import store_in_opening_order

# 3 probes but 1200 tokens: probe count exceeds tokens // 500 (a mismatch the real data has)
OVER = (["x", "y", "z"], 1200, "z")
# 2 probes but 2300 tokens: the finishing call costs the 1300-token tail
UNDER = (["p", "q"], 2300, "q")


def env_for(*branches, **kw):
    env = ReplayEnv(store_in_opening_order(list(branches)), **kw)
    return env, env.reset(0, 0)


def test_probing_to_the_end_costs_max_of_tokens_and_segments():
    env, obs = env_for(OVER, UNDER)
    env.step([Branch(2, segments=None, probe=True)])
    a, b = obs.branches
    assert (a.tokens, a.answers, a.final) == (1500, ["x", "y", "z", "z"], "z")  # max(1200, 3*500)
    assert (b.tokens, b.answers, b.final) == (2300, ["p", "q", "q"], "q")  # 2*500 + (2300 - 1000)
    assert obs.tokens_spent == 3800 and obs.completed == [0, 1]


def test_full_read_costs_branch_tokens_and_reveals_only_the_final():
    env, obs = env_for(OVER, UNDER)
    env.step([Branch(2, segments=None, probe=False)])
    assert [b.tokens for b in obs.branches] == [1200, 2300]
    assert [b.answers for b in obs.branches] == [["z"], ["q"]]
    assert env.probes == 0


def test_finishing_call_after_all_probes_can_cost_zero():
    env, obs = env_for(OVER)
    env.step([Branch(1, segments=3)])
    assert obs.branches[0].tokens == 1500 and not obs.branches[0].finished
    _, cost, _, _ = env.step([Continue(0)])
    assert cost == 0 and obs.branches[0].finished and obs.branches[0].final == "z"


def test_continue_stops_early_at_the_end():
    env, obs = env_for(UNDER)
    env.step([Branch(1)])
    _, cost, _, _ = env.step([Continue(0, segments=10)])
    assert cost == 500 + 1300 and obs.branches[0].finished


def test_full_read_after_some_segments_charges_the_rest():
    env, obs = env_for(UNDER)
    env.step([Branch(1)])
    _, cost, _, _ = env.step([Continue(0, segments=None, probe=False)])
    assert cost == 2300 - 500 and obs.branches[0].tokens == 2300


def test_pruned_branch_keeps_its_cost_and_cannot_continue():
    env, obs = env_for(UNDER, OVER)
    env.step([Branch(2)])
    env.step([Prune(0)])
    assert obs.branches[0].tokens == 500 and obs.tokens_spent == 1000
    with pytest.raises(IllegalActionError, match="pruned branch 0"):
        env.step([Continue(0)])


@pytest.mark.parametrize("batch, message", [
    ([Continue(5)], "never opened"),
    ([Branch(3)], "only 2 branch"),
    ([Answer("x"), Continue(0)], "last action"),
    ([], "empty batch"),
    (["Continue(0)"], "is not an action"),
    ("nonsense", "expected a list"),
])
def test_illegal_batches_are_named(batch, message):
    env, _ = env_for(UNDER, OVER)
    with pytest.raises(IllegalActionError, match=message):
        env.step(batch)


def test_every_branch_action_is_legal_on_a_running_branch():
    # the machine skips the legality table for running branches; this keeps that shortcut honest
    for action in (Continue(0), Probe(0), Prune(0)):
        env, obs = env_for(OVER)
        env.step([Branch(1)])
        env.step([action])
        assert obs.step == 2


def test_continue_on_finished_branch_is_illegal():
    env, _ = env_for(UNDER, OVER)
    env.step([Branch(1, segments=None, probe=False)])
    with pytest.raises(IllegalActionError, match="finished branch 0"):
        env.step([Continue(0)])


def test_standalone_probe_reveals_current_depth_and_costs_kappa():
    env, obs = env_for(OVER, kappa_probe=7)
    env.step([Branch(1, segments=2, probe=False)])
    assert obs.branches[0].answers == [] and obs.tokens_spent == 1000
    _, cost, _, _ = env.step([Probe(0)])
    assert cost == 7 and obs.branches[0].latest == "y"
    _, cost, _, _ = env.step([Continue(0)])  # probing segment: 500 + κ
    assert cost == 507 and obs.branches[0].latest == "z"


def test_token_budget_ends_the_episode_with_the_vote_so_far():
    env, obs = env_for(UNDER, OVER, (["x", "x"], 1000, "x"), token_budget=2000)
    _, _, done, info = env.step([Branch(3, segments=None, probe=False)])
    # first read costs 2300 >= budget, so the second is never started
    assert done and info["budget_exhausted"] and info["answer"] == "q"
    assert obs.tokens_spent == 2300 and len(obs.branches) == 2


def test_trace_replay_reproduces_answer_and_cost():
    from autotts.controllers import load
    from autotts.offline.episode import replay_trace, run_episode

    env = ReplayEnv(store_in_opening_order([OVER, UNDER, (["z", "z"], 900, "z")] * 4), record_trace=True)
    original = run_episode(load("parallel_probe:n=8,warm_up=0,patience=1,T=2"), env, 0, 0)
    assert original.error is None and original.trace
    first = original.trace[0]
    assert first["action"]["type"] == "Branch" and len(first["revealed"]) == 8 and first["tokens"] == 4000
    again = replay_trace(ReplayEnv(env.store, record_trace=True), original.trace, 0, 0)
    assert (again.answer, again.tokens, again.trace) == (original.answer, original.tokens, original.trace)
