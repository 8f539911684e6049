"""The paper's replay table, reproduced from the real Qwen3 trajectories in ../shared/replay
(unit counterparts: tests/unit/test_env_costs.py and tests/unit/test_builtins.py).

The built-ins exported as plain artifacts run like any model-written controller: in a kernel-sandboxed
worker, their episodes driven by the episode machines of the evaluating process in lockstep. They give
the built-ins' episodes exactly, on every store and every configuration of the table (5 seeds here;
all 68 rows with 100 seeds: `python benchmarks/sandboxed_table.py`). Honest code loses nothing.
"""

from __future__ import annotations

import csv
from itertools import pairwise

import pytest
from autotts.cli.main import main
from autotts.controllers import load
from autotts.offline import ReplayEnv, load_store, run_episode
from autotts.offline.episode import replay_trace

BETAS = ("0.0", "0.2", "0.4", "0.5", "0.6", "0.8", "1.0")


def _spec(method: str, config: str) -> str:
    return f"cmc:{config}" if method == "cmc" else method


@pytest.mark.slow
def test_every_row_of_expected_csv(shared_replay, tmp_path):
    out = tmp_path / "r.csv"
    specs = ["sc", "asc", "esc", "parallel_probe", *(f"cmc:beta={b}" for b in BETAS)]
    argv = ["eval", "--data", str(shared_replay), "--out", str(out), "--workers", "2", "--no-progress"]
    for spec in specs:
        argv += ["--controller", spec]
    assert main(argv) == 0
    with open(out, newline="") as fh:
        got = {(r["spec"], r["model"], r["dataset"]): r for r in csv.DictReader(fh)}
    with open(shared_replay / "expected.csv", newline="") as fh:
        expected = list(csv.DictReader(fh))
    assert len(expected) == 68
    mismatches = []
    for row in expected:
        key = (_spec(row["method"], row["config"]), row["model"], row["dataset"])
        mine = got[key]
        acc_ok = round(float(mine["accuracy_pct"]), 2) == float(row["accuracy_pct"])
        tok_ok = abs(float(mine["avg_tokens"]) - float(row["avg_tokens_per_question"])) <= 0.5
        if not (acc_ok and tok_ok and mine["failed"] == "0" and mine["episodes"] == "3000"):
            mismatches.append((key, mine["accuracy_pct"], mine["avg_tokens"], row["accuracy_pct"],
                               row["avg_tokens_per_question"]))
    assert not mismatches, mismatches


@pytest.mark.slow
def test_builtins_as_sandboxed_plain_artifacts_give_the_builtins_episodes(shared_replay, tmp_path):
    from autotts.offline.evaluate import EvalOptions, evaluate, resolve_stores

    for method in ("sc", "asc", "esc", "parallel_probe", "cmc"):
        assert main(["controllers", "--export", method, str(tmp_path / method)]) == 0
    builtins = ["sc", "asc", "esc", "parallel_probe", *(f"cmc:beta={b}" for b in BETAS)]
    artifacts = [str(tmp_path / s.split(":")[0]) + (s[3:] if s.startswith("cmc") else "") for s in builtins]
    stores = resolve_stores([shared_replay])
    options = EvalOptions(seeds=5)
    fast = evaluate(builtins, stores, options, workers=2, progress=False)
    sandboxed = evaluate(artifacts, stores, options, workers=2, progress=False)
    assert len(fast) == len(sandboxed) == 11 * 8
    for a, b in zip(fast, sandboxed, strict=True):
        assert (a.model, a.dataset, a.beta, len(a.episodes)) == (b.model, b.dataset, b.beta, 150)
        for x, y in zip(a.episodes, b.episodes, strict=True):
            assert (x.question, x.seed, x.answer, x.correct, x.tokens, x.branches, x.probes, x.steps, x.error) == \
                (y.question, y.seed, y.answer, y.correct, y.tokens, y.branches, y.probes, y.steps, y.error), \
                (a.spec, a.model, a.dataset, x.question, x.seed)


def test_trace_of_a_real_episode_replays_exactly(shared_replay):
    store = load_store(shared_replay / "Qwen3-8B" / "aime25.json.gz")
    env = ReplayEnv(store, record_trace=True)
    for spec in ("cmc:beta=0.5", "parallel_probe", "asc"):
        original = run_episode(load(spec), env, 7, 13)
        trace = original.trace
        assert original.error is None and trace[-1]["action"] == {"type": "Answer", "text": original.answer}
        assert trace[-1]["tokens"] == original.tokens
        assert all(r["tokens"] == prev["tokens"] + r["cost"] for prev, r in pairwise(trace))
        again = replay_trace(ReplayEnv(store, record_trace=True), trace, 7, 13)
        assert (again.answer, again.tokens, again.trace) == (original.answer, original.tokens, trace)
