"""The run directory survives anything: atomic files, refusal to overwrite, and SIGKILL + --resume.

The kill test runs `autotts discover` in a child process, SIGKILLs it in the middle of round 0,
resumes, and checks that every evaluation finished before the kill is still there unchanged, that
nothing was evaluated twice, and that the result equals an uninterrupted run (the local explorer is
deterministic).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import autotts.cli
import autotts.controllers
import autotts.discovery
import autotts.offline
import pytest
from autotts.discovery.history import History, RunDirError

from .discovery_data import tiny_store_file

# Runs the CLI from the same source directories as this test process, whatever is installed.
BOOT = """
import importlib.machinery, importlib.util, json, sys
dirs = json.loads(sys.argv[1])
class Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "autotts":
            return importlib.machinery.ModuleSpec("autotts", None, is_package=True)
        if name in dirs:
            return importlib.util.spec_from_file_location(name, dirs[name] + "/__init__.py",
                                                          submodule_search_locations=[dirs[name]])
sys.meta_path.insert(0, Finder)
from autotts.cli.main import main
sys.exit(main(sys.argv[2:]))
"""
DIRS = json.dumps({m.__name__: str(Path(m.__file__).parent)
                   for m in (autotts.cli, autotts.controllers, autotts.discovery, autotts.offline)})


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", BOOT, DIRS, *args]


def test_history_round_trips_and_leaves_no_temporary_files(tmp_path):
    run = tmp_path / "run"
    history = History.create(run, {"explorer": "local"}, resume=False)
    cid = history.id_for("print(1)\n")
    history.write_source(cid, "print(1)\n")
    history.add({"id": cid, "key": "k1", "status": "ok", "objective": 1.5, "round": 0})
    history.add_usage({"round": 0, "input_tokens": 10, "output_tokens": 2, "usd": 0.25})
    history.finish_round({"round": 0})
    again = History(run)
    assert again.records == history.records and again.usage == history.usage and again.rounds == [{"round": 0}]
    assert again.spend() == {"input_tokens": 10, "output_tokens": 2, "usd": 0.25, "calls": 1}
    assert again.id_for("print(2)\n") == "c0001"
    assert not list(run.rglob("*.tmp"))
    with pytest.raises(RunDirError, match="not empty; use --resume"):
        History.create(run, {}, resume=False)
    with pytest.raises(RunDirError, match="nothing to resume"):
        History.create(tmp_path / "empty", {}, resume=True)


def _records(run: Path) -> list[dict]:
    path = run / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigkill_mid_round_then_resume_loses_no_evaluation(tmp_path):
    store = tiny_store_file(tmp_path / "data", questions=2)
    args = ["discover", "--explorer", "local", "--data", str(store), "--rounds", "2", "--population", "4",
            "--workers", "1", "--search-seeds", "1", "--betas", "0,1", "--no-progress"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(*args, "--out", str(killed)), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(_records(killed)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _records(killed)
    assert len(before) >= 3, "the run should have been killed after three evaluations"
    assert not (killed / "rounds.jsonl").exists(), "the kill should land inside round 0 (four seed recipes)"

    resumed = subprocess.run(cli("discover", "--resume", "--out", str(killed), "--no-progress"),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _records(killed)
    by_id = {r["id"]: r for r in after}
    for r in before:  # every finished evaluation kept, unchanged (same code, same numbers, same time stamp)
        assert by_id[r["id"]] == r
    keys = [r["key"] for r in after]
    assert len(keys) == len(set(keys)), "an evaluation was run twice"
    assert [r["id"] for r in after] == [f"c{i:04d}" for i in range(len(after))]
    assert len((killed / "rounds.jsonl").read_text().splitlines()) == 2

    straight = tmp_path / "straight"
    done = subprocess.run(cli(*args, "--out", str(straight)), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = {r["key"]: (r["status"], r["objective"]) for r in _records(straight)}
    assert {r["key"]: (r["status"], r["objective"]) for r in after} == reference
    assert list((killed / "artifacts").iterdir())
