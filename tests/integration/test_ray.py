"""`autotts eval --ray` on a local Ray instance gives the same tables as the local process pool.

Real Ray (two CPUs, no dashboard), real bundled stores; the unit-level twin of these checks is
tests/unit/test_cli.py (the local pool). Ray startup dominates the run time (~15 s per test).
"""

from __future__ import annotations

import csv
import json
import os
import sys

import pytest
from autotts.cli.main import main
from autotts.offline.evaluate import EvalOptions, bundled_data_dir, evaluate
from autotts.offline.ray_backend import RayUnavailableError, ray_session

from tests.helpers import short, store_in_opening_order


@pytest.fixture(scope="module")
def ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Ray is not installed under CI=true (it is in the dev extra)")
        pytest.skip("Ray is not installed (pip install 'autotts[ray]')")
    assert not ray.is_initialized()
    return ray


def table(path, drop=("wall_s",)):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(fh)]


def test_eval_ray_matches_local_pool_on_two_stores(tmp_path, ray):
    stores = [str(bundled_data_dir() / "Qwen3-0.6B" / "aime24.parquet"),
              str(bundled_data_dir() / "Qwen3-4B" / "aime25.parquet")]
    common = ["eval", "--data", *stores, "--controller", "sc:n=16", "--controller", "esc",
              "--controller", "cmc:beta=0.3", "--seeds", "12", "--no-progress"]
    outputs = {}
    for name, extra in (("pool", ["--workers", "1"]), ("ray", ["--workers", "2", "--ray"])):
        out = tmp_path / name
        assert main([*common, *extra, "--out", str(out / "r.csv"), "--episodes-out", str(out / "ep.parquet"),
                     "--traces-out", str(out / "traces")]) == 0
        outputs[name] = out
    assert not ray.is_initialized(), "the CLI must shut down the Ray instance it started"

    local, remote = table(outputs["pool"] / "r.csv"), table(outputs["ray"] / "r.csv")
    assert len(local) == 6 and {r["store"] for r in local} == set(stores)
    assert all(r["episodes"] == "360" for r in local)  # 30 questions x 12 seeds, in two seed chunks
    assert remote == local

    import pyarrow.parquet as pq

    episodes = [pq.read_table(outputs[name] / "ep.parquet").to_pylist() for name in ("pool", "ray")]
    assert len(episodes[0]) == 6 * 360 and episodes[1] == episodes[0]
    names = sorted(p.name for p in (outputs["pool"] / "traces").iterdir())
    assert len(names) == 6 and names == sorted(p.name for p in (outputs["ray"] / "traces").iterdir())
    for name in names:
        assert (outputs["ray"] / "traces" / name).read_text() == (outputs["pool"] / "traces" / name).read_text()


def test_in_memory_stores_reach_ray_workers_and_a_caller_session_is_kept(ray):
    # an in-memory store has no path: forked pool workers inherit it, Ray workers get it from the object store
    store = store_in_opening_order([short("b"), short("a"), short("a"), ([ "a", "a"], 1200, "a")])
    opts = EvalOptions(seeds=3, chunk_seeds=1)
    expected = [c.row() for c in evaluate(["sc:n=3", "esc:n=4,window=2"], [store], opts, workers=1, progress=False)]
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        cells = evaluate(["sc:n=3", "esc:n=4,window=2"], [store], opts, workers=2, progress=False,
                         ray_address="")
        assert ray.is_initialized(), "a Ray session the caller started must be left running"
    finally:
        ray.shutdown()
    for row, want in zip((c.row() for c in cells), expected, strict=True):
        row.pop("wall_s"), want.pop("wall_s")
        assert row == want
    assert [c.row()["episodes"] for c in cells] == [3, 3]


def test_missing_ray_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(RayUnavailableError, match=r"pip install 'autotts\[ray\]'"), ray_session(""):
        pass


def test_discover_on_ray_keeps_the_sandbox_and_gives_the_same_history(tmp_path, ray):
    """`autotts discover --ray`: every job runs `evaluate_source` (its sandboxed worker) on a Ray worker;
    the history written here is the one a local run writes, number for number."""
    from autotts.discovery.config import DiscoverConfig
    from autotts.discovery.loop import run_discovery

    from tests.unit.discovery_data import tiny_store_file

    store = str(tiny_store_file(tmp_path / "data", questions=2))
    runs = {}
    for name, address in (("local", None), ("ray", "")):
        config = DiscoverConfig(explorer="local", data=[store], rounds=1, population=3, search_seeds=3,
                                race_stages=[1], betas=[0.0, 1.0], workers=2, top_k=1, ray_address=address)
        run_discovery(config, tmp_path / name, progress=False)
        runs[name] = [json.loads(line) for line in (tmp_path / name / "history.jsonl").read_text().splitlines()]
    assert not ray.is_initialized(), "discover must shut down the Ray instance it started"
    keep = ("id", "key", "status", "objective", "objective_se", "cells", "evidence", "stages", "complete", "raced_out")
    local, remote = ([{k: r.get(k) for k in keep} for r in runs[n]] for n in ("local", "ray"))
    assert remote == local and len(local) == 3 and all(r["status"] == "ok" for r in local)
    assert sum(r["complete"] for r in local) == 1 and all(r["stages"] for r in local)  # raced on Ray too
