"""The block library and its composition: cmc is one recipe, every reachable recipe renders to a readable
controller that keeps the β contract by construction, and mutations do what their description says.

Generated controllers are run in process here (test code inspecting its own generator); the explorer
itself only ever evaluates them in the sandbox (tests/unit/test_discovery_local.py).
"""

from __future__ import annotations

import ast
import random
import types

import pytest
from autotts.controllers import GeneratorController, load
from autotts.controllers.base import check_schedule
from autotts.discovery.blocks import BLOCKS, CMC_RECIPE, KNOBS, SLOTS, Recipe, render, repair, seed_recipes
from autotts.discovery.blocks.evolve import crossover, guided, mutate, perturb, restructure
from autotts.discovery.static import problems
from autotts.offline import ReplayEnv, load_store, run_episode
from autotts.offline.check import check_controller

from .discovery_data import tiny_store_file


def controller_class(source: str) -> type[GeneratorController]:
    module = types.ModuleType("candidate_under_test")
    exec(compile(source, "<candidate>", "exec"), module.__dict__)
    (cls,) = [v for v in vars(module).values()
              if isinstance(v, type) and issubclass(v, GeneratorController) and v is not GeneratorController]
    return cls


def reachable(n: int = 40, seed: int = 7) -> list[Recipe]:
    rng = random.Random(seed)
    recipes = list(seed_recipes())
    for _ in range(n):
        a, b = rng.choice(recipes), rng.choice(recipes)
        child, _ = crossover(a, b, rng) if rng.random() < 0.3 else mutate(a, rng, rate=0.6, scale=0.3)
        recipes.append(child)
    return recipes


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_the_cmc_recipe_plays_every_episode_as_cmc(tmp_path, beta):
    store = load_store(tiny_store_file(tmp_path, questions=3))
    env = ReplayEnv(store)
    mine, cmc = controller_class(render(CMC_RECIPE))(beta=beta), load(f"cmc:beta={beta}")
    assert {k: v for k, v in mine.knobs.items() if k in cmc.knobs} == cmc.knobs
    for seed in range(4):
        for q in range(store.n_questions):
            a, b = run_episode(mine, env, q, seed), run_episode(cmc, env, q, seed)
            assert (a.answer, a.tokens, a.branches, a.steps) == (b.answer, b.tokens, b.branches, b.steps)


def test_every_block_is_one_documented_method_naming_its_mechanism():
    assert {b.slot for b in BLOCKS.values()} == set(SLOTS)
    for block in BLOCKS.values():
        (fn,) = ast.parse("class X:\n" + block.code).body[0].body
        assert fn.name == block.method
        doc = ast.get_docstring(fn)
        assert doc and doc.lower().startswith(block.title.lower()), block.name
        used = {n.slice.value for n in ast.walk(fn) if isinstance(n, ast.Subscript)
                and isinstance(n.slice, ast.Constant) and ast.unparse(n.value).endswith("knobs")}
        assert used <= set(block.knobs), (block.name, used - set(block.knobs))
        assert all(k in KNOBS for k in block.knobs)


def test_every_reachable_recipe_renders_a_controller_that_keeps_the_contract():
    rng = random.Random(3)
    for recipe in reachable()[::3]:
        assert repair(recipe) == recipe and Recipe.from_json(recipe.to_json()) == recipe
        for slot, rule in SLOTS.items():
            assert rule.least <= len(recipe.blocks[slot]) <= rule.most
        source = render(recipe)
        assert problems(source) == [], source  # SDK and collections only, no escape hatches
        cls = controller_class(source)
        table = check_schedule(cls)  # monotone knobs, budget knobs non-decreasing in β
        assert set(cls.budget_knobs) == {k for k in recipe.knobs() if KNOBS[k].spend > 0}
        for knob in (k for k in recipe.knobs() if KNOBS[k].spend < 0):
            assert table[0][knob] >= table[-1][knob]  # thrifty knobs never grow with β
        assert all(row["max_branches"] >= row["n_init"] for row in table)
        check_controller(cls(beta=rng.random()), episodes=2)


def test_the_source_names_its_mechanisms():
    (recipe,) = [r for r in seed_recipes() if "stability_gate" in r.blocks["stop"]]  # cmc + the stability gate
    source = render(recipe, note="A note a person reads.")
    assert "A note a person reads." in source
    for block in recipe.block_list():
        assert f"{block.slot}: {block.title} ({block.origin})" in source  # the class docstring's list
        assert f"# {block.title} ({block.origin})" in source or not block.knobs  # the schedule's groups
        assert f"def {block.method}(" in source
    assert "answer-stability gate" in source and "stop_stability" in source


def test_structural_mutations_change_one_slot_as_described():
    rng = random.Random(0)
    child, what = restructure(CMC_RECIPE, rng, "stop", "add")
    assert len(child.blocks["stop"]) == 2 and what.startswith("stop: + ")
    assert BLOCKS[child.blocks["stop"][1]].title in what
    child, what = restructure(CMC_RECIPE, rng, "vote", "swap")
    assert child.blocks["vote"] != CMC_RECIPE.blocks["vote"] and what.startswith("vote: finished-answer vote -> ")
    assert {s: v for s, v in child.blocks.items() if s != "vote"} == {s: v for s, v in CMC_RECIPE.blocks.items()
                                                                      if s != "vote"}
    assert restructure(CMC_RECIPE, rng, "stop", "drop")[0] == CMC_RECIPE  # a stop slot is never left empty
    assert set(child.ends) == set(child.knobs())  # a new block brings its knobs, the old ones go
    moved, what = perturb(CMC_RECIPE, random.Random(1), rate=1.0)
    assert moved.blocks == CMC_RECIPE.blocks and moved.ends != CMC_RECIPE.ends and what.startswith("knobs: ")


def test_crossover_takes_each_slot_whole_from_one_parent():
    a, b = seed_recipes()[1], seed_recipes()[8]
    for seed in range(10):
        child, _ = crossover(a, b, random.Random(seed))
        for slot in SLOTS:
            assert child.blocks[slot] in (a.blocks[slot], b.blocks[slot])


@pytest.mark.parametrize("half, end", [("low", 0), ("high", 1)])
def test_evidence_of_early_stops_makes_that_end_of_a_stop_knob_stricter(half, end):
    diagnosis = {half: {"early_stop": 0.3}}
    for seed in range(20):
        move = guided(CMC_RECIPE, random.Random(seed), diagnosis)
        assert move is not None
        child, what = move
        assert what.startswith(f"evidence ({half} beta: early_stop 30%)")
        changed = [k for k in child.knobs() if child.ends[k] != CMC_RECIPE.ends[k]]
        assert changed and all(k in ("warm_up", "min_complete", "conf_thresh", "delta_slack") for k in changed)
        for k in changed:  # towards spending more at the side where the early stops were seen
            direction = KNOBS[k].spend * (child.ends[k][end] - CMC_RECIPE.ends[k][end])
            assert direction > 0 or child.ends[k][end] == CMC_RECIPE.ends[k][end], (k, what)


def test_evidence_of_waiting_after_the_vote_settled_makes_stopping_cheaper_or_adds_a_stop():
    diagnosis = {"low": {"settled_waits": 8.0}}
    moves = [guided(CMC_RECIPE, random.Random(seed), diagnosis) for seed in range(30)]
    assert all(what.startswith("evidence (low beta: 8.0 settled waits): ") for _, what in moves)
    assert any("): stop: + " in what or "): pace: + " in what for _, what in moves)  # a stop or pacing block added
    for child, what in moves:
        if " at beta=0: " in what:  # else a knob of a stop block moves to spend less at beta=0
            (k,) = [k for k in child.knobs() if child.ends[k] != CMC_RECIPE.ends[k]]
            assert KNOBS[k].spend * (child.ends[k][0] - CMC_RECIPE.ends[k][0]) < 0
    assert guided(CMC_RECIPE, random.Random(0), {"low": {}}) is None  # nothing to act on
