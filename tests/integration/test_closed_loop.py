"""The closed-loop example (examples/closed_loop/run.py) end to end, as a user runs it: it trains the chain
model, starts its own vLLM (CPU), collects a store, discovers a controller on it, serves it beside sc and
cmc as A/B arms, asks fresh questions with the `openai` client, labels them with the task's checker and runs
`autotts ab report`. Budget: 10 minutes on 2 cores, training included."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, require_modules, vllm_python

pytestmark = pytest.mark.timeout(900)


def test_closed_loop_example_runs_end_to_end(tmp_path):
    require_modules("openai", "fastapi", reason="the example needs the discovery and serve extras")
    summary_path = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "closed_loop" / "run.py"), "--workdir",
                           str(tmp_path / "work"), "--vllm-python", vllm_python(), "--summary", str(summary_path)],
                          capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    print(proc.stdout)

    artifact = summary["artifact"]
    manifest = json.loads((tmp_path / "work" / "discover" / "artifacts" / os.path.basename(artifact) /
                           "manifest.json").read_text())
    assert manifest["name"] == summary["controller"]
    assert (tmp_path / "work" / "stores" / "chain" / "closed_loop.parquet").is_file()
    assert {"tiny_model", "vllm_start", "collect", "discover", "gateway_start", "requests"} <= set(summary["timings"])

    answers = summary["answers"]
    assert len(answers) == 18 and {a["arm"] for a in answers} == {"sc", "cmc", "discovered"}
    assert all(a["answer"] is not None for a in answers)
    # the model really reasons and really samples: its collected traces are right often, not always
    # (48 traces at about 0.46 single-sample accuracy, docs/tiny_model.md), and the checker agrees with the store
    from autotts.offline.store import load_store
    from autotts.server.tiny_task import check

    store = load_store(tmp_path / "work" / "stores" / "chain" / "closed_loop.parquet")
    verdicts = [check(store.questions[i], a) for i in range(store.n_questions) for a in store.question(i).finals]
    assert 0.1 < sum(verdicts) / len(verdicts) < 0.9
    assert all(check(store.questions[i], store.golds[i]) for i in range(store.n_questions))
    # and its majority vote is right more often than a single trace
    assert sum(a["correct"] for a in answers) / len(answers) > sum(verdicts) / len(verdicts)

    report = summary["ab_reports"]["sc_vs_discovered"]
    rows = {r["arm"]: r for r in report["arms"]}
    for arm in ("sc", "discovered"):
        mine = [a for a in answers if a["arm"] == arm]
        assert rows[arm]["requests"] == len(mine)
        assert rows[arm]["correct"] == sum(a["correct"] for a in mine)
    assert "comparison" in report

    # every process the example started is gone
    for pid in summary["pids"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert re.search(r"stopped vllm \(pid \d+\)", proc.stdout) and "stopped gateway" in proc.stdout
