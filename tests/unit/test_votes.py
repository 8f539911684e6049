"""Answer extractors and aggregators (autotts.controllers.extractors / .aggregators) and the episode
machine voting over equivalence classes, offline. Live: tests/unit/test_dropin.py; the real embedding
model: tests/integration/test_semantic_votes.py."""

from __future__ import annotations

import pytest
from autotts.controllers.aggregators import parse_aggregator, parse_judge
from autotts.controllers.errors import VoteSpecError
from autotts.controllers.extractors import NO_ANSWER, parse_extractor
from autotts.controllers.normalize import math_key
from autotts.controllers.registry import load
from autotts.offline.env import ReplayEnv
from autotts.offline.episode import run_episode
from autotts.offline.errors import StoreError
from autotts.offline.evaluate import EvalOptions, evaluate
from autotts.offline.store import load_store
from autotts.server.app import build_app
from autotts.server.config import GatewayConfig

from tests.helpers import run_app, short, store_in_opening_order


@pytest.mark.parametrize(("spec", "final_text", "probe_text", "final", "probe"), [
    ("boxed", "<think>\\boxed{9}</think>so \\boxed{\\frac{1}{2}}", "7} tail", "\\frac{1}{2}", "7"),
    ("number", "<think>maybe 12</think>We get 3 then 1,024 apples.", " 42. Done", "1024", "42"),
    ("choice", "Between (A) and (C), the answer is (C).", "C) since", "C", "C"),
    ({"kind": "regex", "pattern": r"ANSWER:\s*(\w+)"}, "ANSWER: foo then ANSWER: bar", "ANSWER: baz", "bar", "baz"),
    ({"kind": "json", "field": "result.city"}, 'x {"result": {"city": "Oslo"}} y', '"Rome"}', "Oslo", "Rome"),
    ({"kind": "regex", "pattern": "(?s)(.+)"}, "<think>hm</think>\n\nRayleigh scattering.\n", " Blue light. ",
     "Rayleigh scattering.", "Blue light."),  # free text: the whole answer, without the blank lines around it
])
def test_extractors_read_finals_and_probes(spec, final_text, probe_text, final, probe):
    extractor = parse_extractor(spec)
    assert extractor.final(final_text) == final
    assert extractor.probe(probe_text) == probe
    assert extractor.probe("") == NO_ANSWER
    assert extractor.final("nothing here at all") is None or extractor.kind == "choice" or spec["pattern"] == "(?s)(.+)"


def test_probe_suffix_follows_the_extractor():
    suffixes = {k: parse_extractor(k if k != "json" else {"kind": k, "field": "answer"}).probe_suffix
                for k in ("boxed", "number", "choice", "json")}
    assert suffixes["boxed"].endswith("\\boxed{") and suffixes["json"].endswith('{"answer": ')
    assert len(set(suffixes.values())) == 4 and all(s.startswith("\n</think>") for s in suffixes.values())
    assert parse_extractor({"kind": "number", "suffix": "#### "}).probe_suffix == "#### "
    assert parse_extractor({"kind": "json", "field": "a"}).sentence("3") == '{"a": 3}'


@pytest.mark.parametrize(("spec", "message"), [
    ("boxd", "extractor.kind must be one of"), ({"kind": "regex"}, "extractor.pattern is required"),
    ({"kind": "regex", "pattern": "("}, "not a regular expression"), ({"kind": "json"}, "extractor.field"),
    ({"kind": "boxed", "colour": 1}, "extractor.colour is not a field"),
])
def test_bad_extractor_specs_name_the_field(spec, message):
    with pytest.raises(VoteSpecError, match=message):
        parse_extractor(spec)


def test_math_normalized_and_exact_clusters():
    answers = ["1/2", "7", "0.5", "\\frac{1}{2}", "7", "7"]
    assert parse_aggregator("exact").vote(answers).winner == "7"
    math = parse_aggregator("math").vote(answers)
    assert math.winner == "1/2"
    assert [(c.size, c.variants) for c in math.clusters] == [(3, ("1/2", "0.5", "\\frac{1}{2}")), (3, ("7",))]
    near = parse_aggregator("math:tolerance=0.001").vote(["0.3333", "1/3", "2"])
    assert near.clusters[0].size == 2 and parse_aggregator("math").vote(["0.3333", "1/3"]).clusters[0].size == 1
    assert parse_aggregator("normalized").vote(["Paris.", "paris", "$\\text{Paris}$", "Rome"]).clusters[0].size == 3


def test_semantic_clusters_by_cosine_and_judge_parsing():
    agg = parse_aggregator("semantic:threshold=0.9")
    vote = agg.vote(["a", "b", "c"], vectors=[[1, 0], [0.99, 0.05], [0, 1]])
    assert [c.size for c in vote.clusters] == [2, 1]
    with pytest.raises(VoteSpecError, match="one embedding per answer"):
        agg.vote(["a"], vectors=[])
    assert parse_judge("The most consistent response is Response 2.", 3) == 2
    assert parse_judge("Response 9", 3) is None
    judge = parse_aggregator("judge")
    assert judge.candidates(["x", "y", "y"]) == ["y", "x"]  # what the judge is shown, biggest cluster first
    judged = judge.vote(["x", "y", "y"], judge_reply="Response 1")
    assert judged.winner == "x" and judged.detail["judge_pick"] == 1
    assert parse_aggregator("judge").vote(["x", "y", "y"], judge_reply="??").winner == "y"


@pytest.mark.parametrize(("spec", "message"), [
    ("vote", "unknown aggregator"), ("math:tol=1", "math takes tolerance"), ("semantic:threshold=2", "out of range"),
    ("math:tolerance=x", "must be a number"),
])
def test_bad_aggregator_specs(spec, message):
    with pytest.raises(VoteSpecError, match=message):
        parse_aggregator(spec)


VARIANTS = [short("7"), short("1/2"), short("7"), short("0.5"), short("\\frac{1}{2}"), short("7"), short("2/4")]


@pytest.mark.parametrize(("aggregator", "winner"), [(None, "7"), ("exact", "7"), ("math", "1/2")])
def test_math_voting_changes_the_winner_where_it_must(aggregator, winner):
    """sc:n=7 over 7 recorded branches: three say 7, four say one half in four spellings."""
    store = store_in_opening_order(VARIANTS, gold="0.5")
    env = ReplayEnv(store, aggregator=parse_aggregator(aggregator))
    result = run_episode(load("sc:n=7"), env, 0, 0, answer_mode="math")
    assert result.answer == winner
    assert result.correct is (winner != "7")
    cells = evaluate(["sc:n=7"], [store], EvalOptions(seeds=3, aggregator=aggregator, answer_mode="math"),
                     workers=1, progress=False)
    assert {math_key(e.answer) for e in cells[0].episodes} == {math_key(winner)}  # other seeds: other spellings


def test_probe_answers_are_canonicalised_for_controllers():
    """A controller that compares `latest` strings sees one class for equivalent probes."""
    store = store_in_opening_order([(["0.5", "1/2"], 1000, "1/2"), (["\\frac{1}{2}"], 500, "\\frac{1}{2}")])
    env = ReplayEnv(store, aggregator=parse_aggregator("math"))
    obs = env.reset(0, 0)
    env.step([load("sc:n=1").step(obs)[0].__class__(2, segments=1, probe=True)])
    assert [b.latest for b in obs.branches] == ["0.5", "0.5"]
    assert env.machine.equivalence.variants["0.5"] == ["0.5", "\\frac{1}{2}"]


def test_the_evaluator_refuses_the_judge_and_stores_of_another_extractor():
    store = store_in_opening_order(VARIANTS)
    with pytest.raises(VoteSpecError, match="judge needs an engine"):
        evaluate(["sc"], [store], EvalOptions(seeds=1, aggregator="judge"), workers=1, progress=False)
    with pytest.raises(VoteSpecError, match="recorded with the boxed extractor"):
        evaluate(["sc"], [store], EvalOptions(seeds=1, extractor="number"), workers=1, progress=False)
    assert evaluate(["sc:n=7"], [store], EvalOptions(seeds=1, extractor="boxed"), workers=1, progress=False)


def test_a_store_votes_as_it_records_unless_told(tmp_path):
    """`autotts collect` records the aggregator the live gateway uses for its answers (math for boxed); eval,
    the replay env and a reload all follow it, a named one wins, and a store that records none votes exact."""
    store = store_in_opening_order(VARIANTS, gold="0.5")
    store.meta["aggregator"] = "math"
    loaded = load_store(store.write_parquet(tmp_path / "math.parquet"))
    assert run_episode(load("sc:n=7"), ReplayEnv(loaded), 0, 0, answer_mode="math").answer == "1/2"

    def winners(**opts):
        cells = evaluate(["sc:n=7"], [loaded], EvalOptions(seeds=3, answer_mode="math", **opts), workers=1,
                         progress=False)
        return {math_key(e.answer) for e in cells[0].episodes}

    assert winners() == {math_key("1/2")} and winners(aggregator="exact") == {"7"}
    assert {math_key(e.answer) for e in evaluate(["sc:n=7"], [store_in_opening_order(VARIANTS)],
                                                 EvalOptions(seeds=3), workers=1, progress=False)[0].episodes} == {"7"}
    served = {}  # the replay engine behind the gateway votes as eval does, on both stores
    for name, path in (("math", tmp_path / "math.parquet"),
                       ("exact", store_in_opening_order(VARIANTS).write_parquet(tmp_path / "exact.parquet"))):
        async def go(client):
            body = {"model": "tiny", "seed": 0, "messages": [{"role": "user", "content": "q?"}],
                    "tts": {"controller": "sc:n=7"}}
            return (await client.post("/v1/chat/completions", json=body)).json()["tts"]

        served[name] = run_app(build_app(GatewayConfig.load(overrides={"stores": [str(path)]})), go)
    assert (served["math"]["aggregator"], served["math"]["answer"]) == ("math", "1/2")
    assert (served["exact"]["aggregator"], served["exact"]["answer"]) == ("exact", "7")
    store.meta["aggregator"] = "vote-by-vibes"
    with pytest.raises(StoreError, match=r"bad\.parquet: store metadata: aggregator: unknown aggregator"):
        load_store(store.write_parquet(tmp_path / "bad.parquet"))


def test_extractors_name_the_vote_their_answers_default_to():
    assert {kind: parse_extractor(kind if kind != "regex" else {"kind": "regex", "pattern": "x"}).default_aggregator
            for kind in ("boxed", "number", "choice", "regex")} == {
        "boxed": "math", "number": "math", "choice": "normalized", "regex": "normalized"}
