"""The episode machine: one set of rules, the same through every driver.

Random controllers (batches of legal and illegal actions drawn by hypothesis, junk included) run on
the replay driver (`ReplayEnv` + `run_episode`, what `autotts eval` does) and on the live executor
over the replay engine (what `autotts serve` does), with the engine's calls finishing in a shuffled
order; trace, answer, cost and error must be identical. The legality table is checked by what the
machine does in every state, not by restating it.
"""

from __future__ import annotations

import asyncio
import json
import random
from contextlib import suppress

import pytest
from autotts.controllers import Answer, Branch, Continue, Controller, IllegalActionError, Probe, Prune
from autotts.controllers.aggregators import parse_aggregator
from autotts.controllers.episode import LEGALITY, EpisodeMachine
from autotts.controllers.errors import EpisodeError, ObservationReadOnlyError
from autotts.controllers.obs_sync import ObservationSync, apply_delta, describe, new_observation
from autotts.offline.env import ReplayEnv
from autotts.offline.episode import run_episode as replay_episode
from autotts.server.errors import ControllerFailed
from autotts.server.executor import Caps
from autotts.server.executor import run_episode as live_episode
from autotts.server.replay import ReplayBranchBackend
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import store_in_opening_order

segments = st.one_of(st.none(), st.integers(1, 3))
branch_id = st.integers(0, 6)
actions = st.one_of(
    st.builds(Branch, st.integers(1, 3), segments, st.booleans()),
    st.builds(Continue, branch_id, segments, st.booleans()),
    st.builds(Probe, branch_id),
    st.builds(Prune, branch_id),
    st.builds(Answer, st.sampled_from(["a", "b", "ERR"])),
)
junk = st.sampled_from([42, "Continue(0)", None, (1, 0, 1, True)])
batches = st.lists(st.one_of(st.lists(st.one_of(actions, junk), min_size=0, max_size=5),
                             actions, st.just(None)), min_size=1, max_size=12)
trajectory = st.tuples(st.lists(st.sampled_from(["a", "b", "c", "ERR"]), min_size=1, max_size=5),
                       st.integers(0, 3000), st.sampled_from(["a", "b", "c"]))


class Script(Controller):
    """Returns the drawn batches in turn, then answers."""

    name = "script"

    def __init__(self, batches) -> None:
        super().__init__()
        self.batches = batches

    def step(self, obs):
        return self.batches[obs.step] if obs.step < len(self.batches) else [Answer("end")]


class ShuffledReplay(ReplayBranchBackend):
    """The replay engine with its calls as concurrent tasks that finish in a random order."""

    concurrent = True

    def __init__(self, *args, rng: random.Random, **kw) -> None:
        super().__init__(*args, **kw)
        self.rng = rng

    async def decode(self, branch, segments, probe):
        for _ in range(self.rng.randrange(3)):
            await asyncio.sleep(0)
        return await super().decode(branch, segments, probe)

    async def probe(self, branch):
        for _ in range(self.rng.randrange(3)):
            await asyncio.sleep(0)
        return await super().probe(branch)


def replay(store, controller, budget, max_steps, aggregator=None):
    env = ReplayEnv(store, token_budget=budget, record_trace=True, max_steps=max_steps, aggregator=aggregator)
    result = replay_episode(controller, env, 0, 0)
    error = result.error.strip().splitlines()[-1].split(": ", 1)[1] if result.error else None
    return result.answer, result.tokens, result.trace, error, result.budget_exhausted


def live(store, controller, budget, max_steps, rng, aggregator=None):
    backend = ShuffledReplay(store, 0, 0, prompt_tokens=3, rng=rng)
    caps = Caps(token_budget=budget, max_steps=max_steps, record_trace=True, controller_in_thread=False)
    try:
        o = asyncio.run(live_episode(controller, backend, question_id=0, question="q?", caps=caps,
                                     aggregator=aggregator))
    except ControllerFailed as exc:
        return None, exc.tokens_spent, exc.trace, exc.reason, False
    assert backend.ledger.completion_tokens >= o.obs.tokens_spent  # the engine did at least what was charged
    return o.answer, o.obs.tokens_spent, o.trace, None, o.budget_exhausted


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branches=st.lists(trajectory, min_size=1, max_size=6), script=batches,
       budget=st.one_of(st.none(), st.integers(1, 6000)), max_steps=st.sampled_from([3, 10_000]),
       shuffle=st.integers(0, 2**16))
def test_replay_driver_and_live_executor_agree_on_every_episode(branches, script, budget, max_steps, shuffle):
    store = store_in_opening_order(branches)
    offline = replay(store, Script(script), budget, max_steps)
    online = live(store, Script(script), budget, max_steps, random.Random(shuffle))
    assert online == offline


spelled = st.tuples(st.lists(st.sampled_from(["a", "A.", " a", "b", "B", "ERR"]), min_size=1, max_size=4),
                    st.integers(0, 3000), st.sampled_from(["a", "A", "b.", "B"]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branches=st.lists(spelled, min_size=1, max_size=5), script=batches,
       budget=st.one_of(st.none(), st.integers(1, 6000)), shuffle=st.integers(0, 2**16))
@example(branches=[(["a"], 1000, "a"), (["b"], 1000, "A")], script=[[Branch(2, None, False)]], budget=None,
         shuffle=0)  # full reads (the replay driver's shortcut) reveal the class of a final spelt anew
def test_the_drivers_agree_when_answers_vote_by_class(branches, script, budget, shuffle):
    """With a key aggregator every revealed answer (probes, full reads, unit by unit) maps to its class's
    first spelling, in the replay driver's shortcuts and the live executor's units alike."""
    store = store_in_opening_order(branches)
    aggregator = parse_aggregator("normalized")
    offline = replay(store, Script(script), budget, 10_000, aggregator)
    online = live(store, Script(script), budget, 10_000, random.Random(shuffle), aggregator)
    assert online == offline


def _machine(*tracks, **kw):
    return EpisodeMachine(0, "q", segment_tokens=500, branches_available=len(tracks), recorded=list(tracks).__getitem__,
                          **kw)


TRACK = (["x", "y"], 1200, "z")


def _in_state(state: str) -> EpisodeMachine:
    """A machine whose branch 0 is in `state` (branch 1 stays running)."""
    m = _machine(TRACK, TRACK)
    m.step([Branch(2)])
    if state == "finished":
        m.step([Continue(0, segments=None, probe=False)])
    elif state == "pruned":
        m.step([Prune(0)])
    return m


@pytest.mark.parametrize("kind", ["Continue", "Probe", "Prune"])
@pytest.mark.parametrize("state", ["running", "finished", "pruned", "unopened"])
def test_every_branch_action_in_every_state_does_what_the_table_says(kind, state):
    m = _in_state("running" if state == "unopened" else state)
    target = 5 if state == "unopened" else 0
    action = {"Continue": Continue, "Probe": Probe, "Prune": Prune}[kind](target)
    def effect():
        b = m.obs.branches[0]
        return m.obs.tokens_spent, b.depth, len(b.answers), m.prunes

    before, reason = effect(), LEGALITY[kind][state]
    if reason is None:
        m.step([action])
        assert not m.failed and effect() != before
    else:
        with pytest.raises(IllegalActionError, match=reason.format(b=target, opened=2).replace("(", r"\(")
                           .replace(")", r"\)")):
            m.step([Continue(1), action])  # the action before it is applied, then the error
        assert m.obs.branches[1].depth == 2 and m.failed
        with pytest.raises(IllegalActionError, match="the episode is over"):
            m.step([Continue(1)])


def test_branch_with_nothing_left_to_open_and_answer_not_last_and_after_the_end():
    m = _machine(TRACK, TRACK)
    with pytest.raises(IllegalActionError, match=r"Branch\(3\) but only 2 branch\(es\) left to open"):
        m.step([Branch(3)])
    m = _machine(TRACK, TRACK)
    m.step([Branch(2)])
    with pytest.raises(IllegalActionError, match="Branch\\(1\\) but only 0"):
        m.step([Branch(1)])
    m = _machine(TRACK)
    with pytest.raises(IllegalActionError, match="Answer must be the last action of its batch"):
        m.step([Answer("a"), Branch(1)])
    m = _machine(TRACK)
    m.step([Branch(1), Answer("a")])
    assert m.done and m.answer == "a" and m.obs.tokens_spent == 500
    with pytest.raises(IllegalActionError, match="the episode is over"):
        m.step([Answer("b")])


def test_the_observation_is_read_only_for_controllers():
    m = _machine(TRACK)
    m.step([Branch(1)])
    obs, view = m.obs, m.obs.branches[0]
    for write in (lambda: setattr(obs, "tokens_spent", 0), lambda: setattr(view, "depth", 9),
                  lambda: setattr(view, "pruned", True), lambda: obs.branches.append(view),
                  lambda: view.answers.clear(), lambda: obs.completed.extend([0]),
                  lambda: obs.branches.__setitem__(0, None), lambda: delattr(view, "latest")):
        with pytest.raises(ObservationReadOnlyError, match="read-only"):
            write()
    obs.memory["mine"] = 1  # the one thing a controller may change
    assert (obs.tokens_spent, view.depth, view.answers) == (500, 1, ["x"])
    copy = list(view.answers)  # copies are ordinary lists
    copy.append("more")
    assert copy == ["x", "more"] and view.answers == ["x"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branches=st.lists(trajectory, min_size=1, max_size=6), script=batches,
       budget=st.one_of(st.none(), st.integers(1, 6000)))
def test_a_mirror_fed_the_machines_change_log_equals_its_observation(branches, script, budget):
    """What the sandbox's worker sees is what an in-process controller would see, field by field."""
    store = store_in_opening_order(branches)
    machine = ReplayEnv(store, token_budget=budget).machine_for(0, 0, log_changes=True)
    sync = ObservationSync(machine)
    mirror = new_observation(json.loads(json.dumps(sync.init())))
    for batch in script:
        with suppress(IllegalActionError, EpisodeError):  # a failed action's partial effects are logged too
            machine.step(batch)
        apply_delta(mirror, json.loads(json.dumps(sync.delta())))  # through JSON, as over the wire
        assert describe(mirror) == describe(machine.obs)
        if machine.done or machine.failed:
            break


# mostly the actions the shortcut takes (continues within the recorded probes, prunes), some it leaves to the rules
common = st.one_of(st.builds(Continue, st.integers(0, 3), st.integers(1, 3), st.booleans()),
                   st.builds(Prune, st.integers(0, 3)), st.builds(Branch, st.integers(1, 2)))
long_trajectory = st.tuples(st.lists(st.sampled_from(["a", "b", "ERR"]), min_size=1, max_size=9),
                            st.integers(0, 6000), st.sampled_from(["a", "b"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branches=st.lists(long_trajectory, min_size=2, max_size=5),
       script=st.lists(st.lists(st.one_of(common, common, common, actions), min_size=1, max_size=6), max_size=10),
       kappa=st.sampled_from([0, 7]))
def test_the_replay_shortcut_for_whole_batches_equals_the_action_by_action_rules(branches, script, kappa):
    """Without trace or budget the machine applies a batch's commonest actions in one loop
    (`RecordedShortcuts._run_recorded`); with a trace every action goes through the full rules."""
    store = store_in_opening_order(branches)
    script = [[Branch(2)], *script]
    outcomes = []
    for traced in (False, True):
        machine = ReplayEnv(store, kappa_probe=kappa, record_trace=traced).machine_for(0, 0, log_changes=True)
        sync, seen = ObservationSync(machine), []
        for batch in script:
            try:
                machine.step(batch)
                error = None
            except (IllegalActionError, EpisodeError) as exc:
                error = str(exc)
            seen.append((error, describe(machine.obs), sync.delta(), machine.probes, machine.prunes,
                         machine.done, machine.answer))
            if machine.done or machine.failed:
                break
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
