"""Trace evidence on episodes whose outcome is known: a store of one question where the first branch a
seed opens is wrong and the next two end on the gold; a candidate that answers from the first branch
while the others run stopped too early, one that prunes them pruned the winners, one that opens only
wrong branches never reached the gold. Run through the sandboxed evaluation, as every candidate is;
the LLM explorers read the same evidence (`render_record`)."""

from __future__ import annotations

import json
import random

from autotts.discovery.evaluate import EvalConfig, evaluate_source
from autotts.discovery.evidence import diagnose, merge_evidence
from autotts.discovery.explorers.prompts import render_record

from .discovery_data import beta_controller

ORDER = list(range(8))
random.Random(0).shuffle(ORDER)  # the branch order of seed 0 (../shared/replay/README.md)


def store(tmp_path, finals_in_opening_order: list[str]) -> str:
    each = [None] * 8
    for rank, index in enumerate(ORDER):
        final = finals_in_opening_order[rank]
        each[index] = [[final] * 4, 2000, final]
    path = tmp_path / "M" / "d.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{"question": "q", "gold_answer": "7", "probe_freq": 500, "each_branch": each}]))
    return str(path)


def evidence_of(path: str, body: str) -> dict:
    record = evaluate_source(beta_controller(body), EvalConfig(stores=(path,), betas=(0.0,), seeds=(0,)), check=False)
    assert record["status"] == "ok", record["errors"]
    (row,) = record["evidence"]["per_beta"]
    return record, row


FIRST_BRANCH = ("        yield [Branch(3)]\n        yield [Continue(0, segments=None)%s]\n"
                "        return obs.branches[0].latest\n")


def test_answering_while_the_gold_is_still_running_is_an_early_stop(tmp_path):
    record, row = evidence_of(store(tmp_path, ["1", "7", "7", "1", "1", "1", "1", "1"]), FIRST_BRANCH % "")
    assert (row["episodes"], row["correct"], row["early_stop"], row["pruned"]) == (1, 0, 1, 0)
    assert diagnose(record["evidence"])["low"]["early_stop"] == 1.0
    text = render_record({**record, "id": "c0000"}, 2.0)
    assert "1 early_stop" in text and "still running (branch@depth -> recorded end): b1@1->'7', b2@1->'7'" in text


def test_pruning_the_branches_that_end_on_the_gold_is_a_pruned_winner(tmp_path):
    _, row = evidence_of(store(tmp_path, ["1", "7", "7", "1", "1", "1", "1", "1"]),
                         FIRST_BRANCH % ", Prune(1), Prune(2)")
    assert (row["pruned_winner"], row["pruned"], row["pruned_gold"], row["early_stop"]) == (1, 2, 2, 0)


def test_opening_only_wrong_branches_never_reached_the_gold_and_chunks_add_up(tmp_path):
    record, row = evidence_of(store(tmp_path, ["1"] * 8), FIRST_BRANCH % "")
    assert row["not_reached"] == 1 and row["early_stop"] == 0
    merged = merge_evidence([record["evidence"], record["evidence"]])
    assert merged["per_beta"][0]["not_reached"] == 2 and merged["per_beta"][0]["episodes"] == 2
