"""The closed-loop example (examples/closed_loop/run.py) end to end, as a user runs it: it builds the tiny
model, starts its own vLLM (CPU), collects a store, discovers a controller on it, serves the artifact through
the gateway, asks it with the `openai` client and scrapes /metrics. A few minutes on 2 cores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, require_modules, vllm_python

pytestmark = pytest.mark.timeout(1500)


def test_closed_loop_example_runs_end_to_end(tmp_path):
    require_modules("openai", "fastapi", reason="the example needs the discovery and serve extras")
    summary_path = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "closed_loop" / "run.py"), "--workdir",
                           str(tmp_path / "work"), "--vllm-python", vllm_python(), "--summary", str(summary_path)],
                          capture_output=True, text=True, timeout=1400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    print(proc.stdout)

    artifact = summary["artifact"]
    manifest = json.loads((tmp_path / "work" / "discover" / "artifacts" / os.path.basename(artifact) /
                           "manifest.json").read_text())
    assert manifest["name"] == summary["controller"]
    assert (tmp_path / "work" / "stores" / "tiny" / "closed_loop.parquet").is_file()
    assert {"tiny_model", "vllm_start", "collect", "discover", "gateway_start", "requests"} <= set(summary["timings"])

    answers = summary["answers"]
    assert len(answers) == 2
    assert all(a["controller"] == manifest["name"] and isinstance(a["answer"], str) and a["answer"]
               for a in answers)

    def counter(name: str, **labels: str) -> float:
        found = [line for line in summary["metrics"] if line.startswith(name + "{")
                 and f'controller="{manifest["name"]}"' in line
                 and all(f'{k}="{v}"' in line for k, v in labels.items())]
        assert len(found) == 1, (name, labels, summary["metrics"])
        return float(found[0].rsplit(" ", 1)[1])

    assert counter("autotts_requests_total", status="200") == 2
    decode, probe = counter("autotts_tokens_total", kind="decode"), counter("autotts_tokens_total", kind="probe")
    assert decode > 0 and decode + probe == sum(a["completion_tokens"] for a in answers)
    assert counter("autotts_tokens_total", kind="cached") > 0  # continuations hit vLLM's prefix cache

    # every process the example started is gone
    for pid in summary["pids"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert re.search(r"stopped vllm \(pid \d+\)", proc.stdout) and "stopped gateway" in proc.stdout
