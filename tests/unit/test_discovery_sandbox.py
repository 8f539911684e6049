"""What a candidate can do wrong comes back as a status and errors, never as a crash of the loop.

`evaluate_source` runs the static check first, then the candidate in a kernel-sandboxed worker
(`autotts.sandbox`); `raw` switches the static check off, so that the sandbox is shown to hold by
itself. Cases: infinite loops (in a step and at import), sleeping, memory bombs, a controller
that never answers, crashes, illegal actions, syntax errors, a missing β schedule. The attacks on
the boundary itself (reading gold answers, files, sockets, processes, forged costs) are
tests/integration/test_trust_boundary.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from autotts.discovery.evaluate import EvalConfig, evaluate_source
from autotts.sandbox import Limits

from .discovery_data import VALID, beta_controller, tiny_store_file

LIMITS = Limits(cpu_s=8, memory_bytes=1 << 30, wall_s=60)


@pytest.fixture
def store(tmp_path):
    return str(tiny_store_file(tmp_path, questions=2, branches=64))


def config(store, **kw):
    return EvalConfig(stores=(store,), betas=(0.0, 1.0), seeds=(0, 1), limits=kw.pop("limits", LIMITS),
                      episode_timeout_s=kw.pop("episode_timeout_s", 0.5), **kw)


def raw(source: str, store: str, **kw):
    """The sandbox alone: no static check in front of it."""
    return evaluate_source(source, replace(config(store, **kw), static_check=False))


def test_a_valid_candidate_is_scored(store):
    record = evaluate_source(VALID, config(store))
    assert record["status"] == "ok", record["errors"]
    assert [p["beta"] for p in record["curve"]] == [0.0, 1.0]
    assert all(p["per_store"]["Tiny/bench"]["episodes"] == 4 for p in record["curve"])
    assert record["curve"][1]["tokens"] > record["curve"][0]["tokens"]
    assert record["class"]["name"] == "probe_test" and record["schedule"][0] == {"beta": 0.0, "n": 2}


def test_infinite_loop_inside_a_step_fails_its_episodes_not_the_loop(store):
    source = beta_controller("        while True:\n            pass\n        yield []\n")
    record = evaluate_source(source, config(store))
    assert record["status"] == "check_failed"
    assert "StepTimeout" in record["errors"][0] and "per-step limit" in record["errors"][0]


def test_a_step_that_swallows_its_timeout_hits_the_cpu_limit(store):
    body = ("        while True:\n            try:\n                while True:\n                    pass\n"
            "            except BaseException:\n                pass\n        yield []\n")
    record = raw(beta_controller(body), store, limits=Limits(cpu_s=3, wall_s=60))
    assert record["status"] == "cpu" and "CPU time limit exceeded (3 s" in record["errors"][0]


def test_infinite_loop_at_import_hits_the_cpu_limit(store):
    record = raw("while True:\n    pass\n", store, limits=Limits(cpu_s=2, wall_s=60))
    assert record["status"] == "cpu" and "CPU time limit exceeded (2 s" in record["errors"][0]


def test_the_wall_clock_limit_ends_a_sleeping_candidate(store):
    record = raw("import time\ntime.sleep(60)\n", store, limits=Limits(cpu_s=30, wall_s=3))
    assert record["status"] == "timeout" and record["wall_s"] < 20


def test_memory_bombs_are_contained(store):
    bomb = beta_controller("        hoard = []\n        while True:\n            hoard.append(bytearray(10**8))\n"
                           "        yield []\n")
    record = evaluate_source(bomb, config(store, limits=Limits(cpu_s=20, memory_bytes=1 << 30, wall_s=60),
                                          episode_timeout_s=10))
    assert record["status"] == "memory" and "memory limit exceeded" in record["errors"][0]
    record = raw("x = bytearray(10**11)\n", store)
    assert record["status"] in ("load_error", "memory")
    assert "MemoryError" in record["errors"][0] or "memory limit" in record["errors"][0]


def test_a_controller_that_never_answers_is_reported(store):
    body = "        yield [Branch(1)]\n        while True:\n            yield [Probe(0)]\n"
    record = evaluate_source(beta_controller(body), config(store, max_steps=200))
    assert record["status"] == "check_failed" and "no answer after 200 steps" in record["errors"][0]


def test_crashes_and_illegal_actions_come_back_as_feedback(store):
    crash = beta_controller("        yield [Branch(2)]\n        return obs.branches[5].latest\n")
    record = evaluate_source(crash, config(store))
    assert record["status"] == "check_failed" and "IndexError" in record["errors"][0]
    assert "<candidate>" in record["errors"][0]  # the line of the candidate that raised
    illegal = beta_controller("        yield [Branch(2)]\n        yield [Prune(0), Continue(0)]\n        return 'x'\n")
    record = evaluate_source(illegal, config(store))
    assert record["status"] == "check_failed" and "Continue on pruned branch 0" in record["errors"][0]


def test_syntax_errors_and_missing_beta_are_reported(store):
    assert evaluate_source("def broken(:\n", config(store))["status"] == "static_error"
    assert raw("def broken(:\n", store)["status"] == "load_error"
    no_beta = VALID.replace("    beta_range = (0.0, 1.0)\n", "    beta_range = None\n")
    record = evaluate_source(no_beta, config(store))
    assert record["status"] == "no_beta" and "beta-parameterised" in record["errors"][0]
    two = VALID + VALID.split("\n\n\n", 1)[1].replace("class Candidate", "class Other")
    record = evaluate_source(two, config(store))
    assert record["status"] == "load_error" and "exactly one Controller subclass, found 2" in record["errors"][0]


def test_a_schedule_that_shrinks_the_budget_is_refused_here_not_by_the_worker(store):
    shrinking = beta_controller("        yield [Branch(1)]\n        return 'x'\n", knobs='{"n": round(8 - 6 * beta)}')
    record = evaluate_source(shrinking, config(store))
    assert record["status"] == "schedule_error" and "budget knob 'n' decreases" in record["errors"][0]
