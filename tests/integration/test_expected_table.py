"""The paper's replay table, reproduced from the real Qwen3 trajectories in ../shared/replay
(unit counterparts: tests/unit/test_env_costs.py and tests/unit/test_builtins.py).

Twice: by the built-ins (the compiled kernels), and by the same built-ins exported as plain artifacts,
which run like any model-written controller: in a kernel-sandboxed worker, their episodes driven by
the episode machines of the evaluating process in lockstep. Honest code loses nothing to the boundary.
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


@pytest.mark.slow
@pytest.mark.parametrize("how", ["builtin", "sandboxed artifact"])
def test_every_row_of_expected_csv(shared_replay, tmp_path, how):
    def _spec(method: str, config: str = "") -> str:
        name = method if how == "builtin" else str(tmp_path / method)
        return f"{name}:{config}" if method == "cmc" else name

    if how == "sandboxed artifact":
        for method in ("sc", "asc", "esc", "parallel_probe", "cmc"):
            assert main(["controllers", "--export", method, str(tmp_path / method)]) == 0
    out = tmp_path / "r.csv"
    specs = [_spec("sc"), _spec("asc"), _spec("esc"), _spec("parallel_probe"), *(_spec("cmc", f"beta={b}")
                                                                                   for b in BETAS)]
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
