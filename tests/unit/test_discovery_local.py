"""The local explorer: seed recipes first, then children of the best complete candidates (with what
changed and who their parents are), deterministic given seed, round and earlier records, steered by
evidence; and a short real run whose candidates are evaluated in the sandbox, raced, and reported."""

from __future__ import annotations

import json

from autotts.discovery.blocks import Recipe, render, seed_recipes
from autotts.discovery.config import DiscoverConfig
from autotts.discovery.explorers.local import LocalExplorer
from autotts.discovery.loop import run_discovery

from .discovery_data import tiny_store_file


def _record(i: int, recipe: Recipe, objective: float, *, complete: bool = True, evidence=None) -> dict:
    return {"id": f"c{i:04d}", "status": "ok", "objective": objective, "round": 0, "complete": complete,
            "evidence": evidence, "meta": {"recipe": recipe.to_json(), "recipe_key": recipe.key()}}


def test_seed_recipes_come_first_population_a_round():
    explorer = LocalExplorer(seed=0, population=4)
    first = explorer.propose(0, [])
    assert [r.key() for r, _, _ in first] == [r.key() for r in seed_recipes()[:4]]
    assert all(parents == [] and what == "seed recipe" for _, parents, what in first)
    done = [_record(i, r, 50.0 + i) for i, (r, _, _) in enumerate(first)]
    second = explorer.propose(1, done)
    assert [r.key() for r, _, _ in second] == [r.key() for r in seed_recipes()[4:8]]


def test_children_depend_only_on_seed_round_and_earlier_rounds():
    seeds = seed_recipes()
    earlier = [_record(i, r, 60.0 + i) for i, r in enumerate(seeds)]
    explorer = LocalExplorer(seed=3, population=4)
    first = explorer.propose(1, earlier)
    keys = [r.key() for r, _, _ in first]
    assert keys == [r.key() for r, _, _ in LocalExplorer(seed=3, population=4).propose(1, earlier)]
    assert keys != [r.key() for r, _, _ in LocalExplorer(seed=4, population=4).propose(1, earlier)]
    assert len(set(keys)) == 4 and not set(keys) & {r.key() for r in seeds}
    ids = {r["id"] for r in earlier}
    for _, parents, what in first:
        assert parents and set(parents) <= ids and what


def test_parents_are_complete_candidates_while_there_are_two():
    seeds = seed_recipes()
    earlier = [_record(0, seeds[0], 50.0), _record(1, seeds[1], 51.0), _record(2, seeds[2], 99.0, complete=False)]
    earlier += [_record(3 + i, r, 10.0) for i, r in enumerate(seeds[3:])]
    parents = {p for _, ps, _ in LocalExplorer(seed=1, population=6).propose(1, earlier) for p in ps}
    assert "c0002" not in parents  # raced out: its 99 is from a few seeds only


def test_evidence_steers_the_mutations_of_a_parent():
    seeds = seed_recipes()
    evidence = {"per_beta": [{"beta": 0.0, "episodes": 100, "correct": 60, "not_reached": 0, "early_stop": 35,
                              "pruned_winner": 0, "outvoted": 5, "other": 0, "pruned": 10, "pruned_gold": 0,
                              "settled_waits": 0}], "examples": []}
    earlier = [_record(i, r, 10.0) for i, r in enumerate(seeds)]
    earlier[0] = _record(0, seeds[0], 90.0, evidence=evidence)
    children = [(parents, what) for seed in range(4)
                for _, parents, what in LocalExplorer(seed=seed, population=12, crossover_rate=0.0).propose(1, earlier)]
    steered = [what for parents, what in children if what.startswith("evidence (")]
    assert any(w.startswith("evidence (low beta: early_stop 35%)") for w in steered), children
    assert all(parents == ["c0000"] for parents, what in children if what.startswith("evidence ("))


def test_a_short_run_is_sandboxed_raced_and_reported(tmp_path):
    store = tiny_store_file(tmp_path / "data", questions=2)
    config = DiscoverConfig(explorer="local", data=[str(store)], rounds=2, population=3, search_seeds=3,
                            race_stages=[1], race_eta=3, betas=[0.0, 1.0], workers=2, top_k=1)
    report = run_discovery(config, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    for r in records:  # every candidate met stage 0; a raced-out one stopped there, with its standard error
        assert r["stages"][0]["seeds"] == 1 and r["objective_se"] is not None and r["evidence"]["per_beta"]
        assert r["complete"] == (r["raced_out"] is None) == (len(r["seeds"]) == 3)
        assert (tmp_path / "run" / r["source_file"]).read_text() == render(Recipe.from_json(r["meta"]["recipe"]),
                                                                              note=r["note"].join(
            ["Composed by the autotts local explorer (", ")."]))
    assert sum(r["complete"] for r in records if r["round"] == 0) == 1  # the best 1/3 of three went on
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "## Frontier per round against the built-ins" in markdown and "| 1 | 3 |" in markdown
    assert "## Mechanisms (block library)" in markdown and "trend stopping" in markdown
    (finalist,) = report["finalists"]
    assert finalist["mechanisms"] and finalist["lineage"][-1]["id"] == finalist["id"]
    if finalist["lineage"][0]["id"] != finalist["id"]:  # a child: its diff from its parent is in the report
        assert finalist["parent_diff"].startswith("---") and "Code diff from its parent" in markdown
