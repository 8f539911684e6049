"""`autotts discover --explorer local` on real recorded trajectories, kept short (a few rounds and
seeds): it must emit an artifact that `autotts eval` loads, and `autotts eval` must measure the same
held-out numbers the run reported. The full-size run is the must-show command in the README; the
fast unit tests of the parts are tests/unit/test_discovery_*.py."""

from __future__ import annotations

import csv
import json

from autotts.cli.main import main


def test_local_discovery_emits_an_artifact_that_eval_loads(shared_replay, tmp_path, capsys):
    search = shared_replay / "Qwen3-8B" / "aime24.json.gz"
    heldout = shared_replay / "Qwen3-8B" / "aime25.json.gz"
    run = tmp_path / "run"
    code = main(["discover", "--explorer", "local", "--data", str(search), "--heldout", str(heldout),
                 "--rounds", "2", "--population", "2", "--search-seeds", "2", "--heldout-seeds", "2",
                 "--betas", "0,0.5,1", "--top-k", "1", "--workers", "2", "--out", str(run), "--no-progress"])
    assert code == 0
    report = json.loads((run / "report.json").read_text())
    assert len(report["rounds"]) == 2 and report["evaluations"] == 4  # the first seed recipes, two a round
    finalist = report["finalists"][0]
    assert finalist["artifact"] and (run / "report.md").is_file()
    manifest = json.loads((tmp_path / finalist["artifact"] / "manifest.json").read_text())
    assert manifest["beta"]["range"] == [0.0, 1.0] and manifest["scorecard"]["heldout"]["seeds"] == 2
    held = {p["beta"]: p for p in finalist["heldout"]["curve"]}
    out = tmp_path / "r.csv"
    assert main(["eval", "--data", str(heldout), "--controller", finalist["artifact"] + ":beta=1", "--seeds", "2",
                 "--workers", "1", "--out", str(out), "--no-progress"]) == 0
    (row,) = list(csv.DictReader(out.open()))
    assert abs(float(row["accuracy_pct"]) - held[1.0]["acc"]) < 1e-5  # the CSV rounds to 6 decimals
    assert abs(float(row["avg_tokens"]) - held[1.0]["tokens"]) < 1e-5
    assert "evaluations in 2 rounds" in capsys.readouterr().out
