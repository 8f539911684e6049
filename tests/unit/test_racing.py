"""Racing: who goes on (the best 1/eta that can still reach the incumbent on the same seeds), what a
raced-out record keeps, that stages add up to exactly the full evaluation, and that jobs keep every
slot busy (a candidate's stores split over slots) with the contract checked once per candidate."""

from __future__ import annotations

from dataclasses import replace

import pytest
from autotts.discovery.evaluate import EvalConfig, evaluate_source
from autotts.discovery.racing import RacePlan, incumbent_at, race
from autotts.discovery.runner import LocalRunner

from .discovery_data import VALID, beta_controller, tiny_store_file

STORES = ("s0", "s1", "s2", "s3")


def test_plans_cut_the_seeds_into_stages():
    assert RacePlan.make(10, [2, 5]).stages == ((0, 1), (2, 3, 4), (5, 6, 7, 8, 9))
    assert RacePlan.make(3, [2, 5, 0]).stages == ((0, 1), (2,))
    assert RacePlan.make(4).stages == ((0, 1, 2, 3),) and RacePlan.make(4).seeds == 4


def fake_run(quality: dict[str, float], calls: list):
    """Jobs scored without any sandbox: a candidate's source names its accuracy."""
    def run(jobs):
        calls.append(jobs)
        for index, job in reversed(list(enumerate(jobs))):  # finish out of order
            acc = quality[job.source]
            cells = [{"beta": b, "store": s, "model": s, "dataset": "d", "episodes": 10 * len(job.seeds),
                      "correct": round(acc * len(job.seeds)), "tokens": 1000 * len(job.seeds),
                      "tokens_sq": 100000 * len(job.seeds), "failed": 0} for b in (0.0, 1.0) for s in job.stores]
            yield index, {"status": "ok", "errors": [], "grids": [], "class": {"name": job.source}, "cells": cells,
                          "evidence": None, "seeds": list(job.seeds), "wall_s": 1.0}
    return run


def test_successive_halving_keeps_the_best_third_and_records_why_the_rest_stopped():
    quality = {f"c{i}": 1.0 + i for i in range(9)}
    calls, finals = [], []
    plan = RacePlan.make(6, [1, 3], eta=3)
    config = EvalConfig(stores=STORES, betas=(0.0, 1.0))
    records = race(list(quality), plan, config, fake_run(quality, calls), slots=2,
                   on_final=lambda i, r: finals.append(i))
    assert sorted(finals) == list(range(9))  # each record handed over exactly once
    assert [len({j.candidate for j in stage}) for stage in calls] == [9, 3, 1]
    winner = records[8]
    assert winner["complete"] and winner["raced_out"] is None and winner["seeds"] == list(range(6))
    assert [s["seeds"] for s in winner["stages"]] == [1, 3, 6]
    assert all(s["objective_se"] is not None for s in winner["stages"])
    loser = records[0]
    assert not loser["complete"] and loser["seeds"] == [0] and "ranked 9 of 9, only the best 3 went on" in loser[
        "raced_out"]
    assert records[6]["raced_out"].startswith("stage 1: ranked 3 of 3")
    # with fewer candidates than slots a candidate's stores are split over jobs; checked once per candidate
    assert [len(j.stores) for j in calls[-1]] == [2, 2] and not any(j.check for j in calls[-1])
    assert sum(j.check for j in calls[0]) == 9 and {len(j.stores) for j in calls[0]} == {4}


def test_a_candidate_that_cannot_reach_the_incumbent_on_the_same_seeds_stops():
    incumbent = {"objective": 50.0, "stages": [{"seeds": 1, "objective": 95.0}, {"seeds": 3, "objective": 60.0}]}
    assert incumbent_at(incumbent, 1) == 95.0 and incumbent_at(incumbent, 2) == 50.0 and incumbent_at(None, 1) is None
    quality = {"weak": 1.0, "strong": 9.9}
    config = EvalConfig(stores=STORES, betas=(0.0, 1.0))
    records = race(["weak", "strong"], RacePlan.make(3, [1], eta=1, z=0.0), config, fake_run(quality, []),
                   incumbent=incumbent)
    assert "cannot reach the incumbent's 95.000 on the same 1 seeds" in records[0]["raced_out"]
    assert records[1]["complete"]


def test_a_race_through_stages_is_exactly_the_full_evaluation(tmp_path):
    stores = (str(tiny_store_file(tmp_path / "a", questions=2)), str(tiny_store_file(tmp_path / "b", questions=2,
                                                                                     seed=3, model="Other")))
    config = EvalConfig(stores=stores, betas=(0.0, 1.0), seeds=(0, 1, 2))
    runner = LocalRunner(2)
    (raced,) = race([VALID], RacePlan.make(3, [1], eta=1), config, lambda jobs: runner.run(jobs, config), slots=2)
    full = evaluate_source(VALID, config)
    assert raced["complete"] and raced["cells"] == sorted(full["cells"], key=lambda c: (c["store"], c["beta"]))
    assert raced["curve"] == full["curve"] and raced["objective"] == pytest.approx(full["objective"])
    assert raced["evidence"]["per_beta"] == full["evidence"]["per_beta"]


def test_a_failing_candidate_is_final_after_its_first_stage(tmp_path):
    store = str(tiny_store_file(tmp_path, questions=2))
    config = EvalConfig(stores=(store,), betas=(0.0, 1.0), seeds=(0, 1, 2))
    broken = beta_controller("        raise RuntimeError('broken on purpose')\n        yield []\n")
    runner = LocalRunner(1)
    records = race([broken, VALID], RacePlan.make(3, [1], eta=1), replace(config, static_check=True),
                   lambda jobs: runner.run(jobs, config), slots=1)
    assert records[0]["status"] == "check_failed" and not records[0]["complete"] and records[0]["seeds"] == [0]
    assert records[1]["complete"]


def test_a_stage_is_scored_against_cmc_on_its_own_seeds(tmp_path):
    from autotts.discovery.baselines import builtin_points
    from autotts.discovery.objective import objective_with_se

    store = str(tiny_store_file(tmp_path, questions=3))
    points = builtin_points([store], (0.0, 1.0), seeds=3, workers=1, names=("cmc",), prefixes=(1, 3, 5))
    alone = builtin_points([store], (0.0, 1.0), seeds=1, workers=1, names=("cmc",))
    for point, first in zip(points, alone, strict=True):
        assert set(point["prefixes"]) == {"1"}  # only cuts inside the sweep
        assert {k: point["prefixes"]["1"][k] for k in ("acc", "tokens")} == {k: first[k] for k in ("acc", "tokens")}
    config = EvalConfig(stores=(store,), betas=(0.0, 1.0), seeds=(0, 1, 2), baselines=tuple(points),
                        objective="cmc-savings")
    (raced,) = race([VALID], RacePlan.make(3, [1], eta=1, z=10.0), config,
                    lambda jobs: LocalRunner(1).run(jobs, config), slots=1)
    stage0 = evaluate_source(VALID, replace(config, seeds=(0,)))
    paired = objective_with_se(stage0["curve"], "cmc-savings", config.gamma, [p["prefixes"]["1"] for p in points])
    unpaired = objective_with_se(stage0["curve"], "cmc-savings", config.gamma, points)
    assert paired[0] != pytest.approx(unpaired[0])  # on this store the seed's draw matters
    assert stage0["objective"] == pytest.approx(paired[0])
    assert raced["stages"][0]["objective"] == pytest.approx(paired[0])
    full = objective_with_se(raced["curve"], "cmc-savings", config.gamma, points)
    assert raced["complete"] and raced["objective"] == pytest.approx(full[0])  # all seeds: cmc on all of them
