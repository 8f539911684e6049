"""The local explorer's family and search: cmc is a member, every member keeps the β contract,
proposals are deterministic, and the generated code is what gets evaluated."""

from __future__ import annotations

import random
import types

import pytest
from autotts.controllers import load
from autotts.controllers.base import check_schedule
from autotts.discovery.explorers.family import BUDGET_KNOBS, CMC_GENOME, Genome, crossover, mutate, render, seed_genomes
from autotts.discovery.explorers.local import LocalExplorer
from autotts.offline import ReplayEnv, load_store, run_episode
from autotts.offline.check import check_controller

from .discovery_data import tiny_store_file


def controller_class(source: str):
    module = types.ModuleType("candidate_under_test")
    exec(compile(source, "<candidate>", "exec"), module.__dict__)
    return module.MomentumVote


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_the_cmc_genome_is_exactly_cmc(tmp_path, beta):
    store = load_store(tiny_store_file(tmp_path, questions=3))
    env = ReplayEnv(store)
    mine, cmc = controller_class(render(CMC_GENOME))(beta=beta), load(f"cmc:beta={beta}")
    assert {k: v for k, v in mine.knobs.items() if k in cmc.knobs} == cmc.knobs
    for seed in range(4):
        for q in range(store.n_questions):
            a, b = run_episode(mine, env, q, seed), run_episode(cmc, env, q, seed)
            assert (a.answer, a.tokens, a.branches, a.steps) == (b.answer, b.tokens, b.branches, b.steps)


def test_every_mutant_keeps_the_beta_contract():
    rng = random.Random(7)
    genomes = list(seed_genomes())
    for _ in range(40):
        a, b = rng.choice(genomes), rng.choice(genomes)
        genomes.append(mutate(crossover(a, b, rng), rng, rate=0.6, scale=0.3))
    for genome in genomes[-12:] + genomes[:4]:
        cls = controller_class(render(genome))
        table = check_schedule(cls)  # monotone knobs, budget knobs non-decreasing
        assert set(BUDGET_KNOBS) <= set(cls.budget_knobs)
        assert all(row["max_branches"] >= row["n_init"] for row in table)
        check_controller(cls(beta=rng.random()), episodes=2)
    assert Genome.from_json(genomes[-1].to_json()) == genomes[-1]


def _record(i: int, genome: Genome, objective: float, round_no: int = 0) -> dict:
    return {"id": f"c{i:04d}", "status": "ok", "objective": objective, "round": round_no,
            "meta": {"genome": genome.to_json(), "genome_key": genome.key()}}


def test_proposals_depend_only_on_seed_round_and_earlier_rounds():
    seeds = seed_genomes()
    earlier = [_record(i, g, 60.0 + i) for i, g in enumerate(seeds)]
    explorer = LocalExplorer(seed=3, population=4)
    first = [g.key() for g, _ in explorer.propose(1, earlier)]
    assert first == [g.key() for g, _ in LocalExplorer(seed=3, population=4).propose(1, earlier)]
    assert first != [g.key() for g, _ in LocalExplorer(seed=4, population=4).propose(1, earlier)]
    assert len(set(first)) == 4 and not set(first) & {g.key() for g in seeds}
    parents = {p for _, ps in explorer.propose(1, earlier) for p in ps}
    assert parents <= {r["id"] for r in earlier}
    assert [g.key() for g, _ in explorer.propose(0, [])] == [g.key() for g in seeds]
