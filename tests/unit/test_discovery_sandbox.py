"""The sandbox contains what a candidate can do wrong, and reports it instead of crashing.

Two layers are tested apart: `evaluate_source` (static check first, then the sandbox) and the
sandbox alone (`run_task`, no static check), so the run-time guard is shown to hold by itself.
Cases: infinite loops (in a step and at import), memory bombs, os.system, environment reads,
sockets, file writes, a controller that never answers, one that crashes, illegal actions.
"""

from __future__ import annotations

import os

import pytest
from autotts.discovery.evaluate import EvalConfig, evaluate_source
from autotts.discovery.sandbox import Limits, child_env, run_task

from .discovery_data import VALID, beta_controller, tiny_store_file

LIMITS = Limits(cpu_seconds=8, memory_mb=1024, wall_seconds=60)
SECRET = "autotts-test-secret-value-123"


@pytest.fixture
def store(tmp_path):
    return str(tiny_store_file(tmp_path, questions=2, branches=64))


def config(store, **kw):
    return EvalConfig(stores=(store,), betas=(0.0, 1.0), seeds=(0, 1), limits=kw.pop("limits", LIMITS),
                      episode_timeout_s=kw.pop("episode_timeout_s", 0.5), **kw)


def raw(source: str, store: str, limits: Limits = LIMITS, episode_timeout_s: float = 0.5):
    """The sandbox alone: no static check in front of it."""
    return run_task("evaluate", config(store, limits=limits, episode_timeout_s=episode_timeout_s).payload(source),
                    limits)


def test_a_valid_candidate_is_scored(store):
    record = evaluate_source(VALID, config(store))
    assert record["status"] == "ok", record["errors"]
    assert [p["beta"] for p in record["curve"]] == [0.0, 1.0]
    assert all(p["per_store"]["Tiny/bench"]["episodes"] == 4 for p in record["curve"])
    assert record["curve"][1]["tokens"] > record["curve"][0]["tokens"]


def test_infinite_loop_inside_a_step_fails_its_episodes_not_the_loop(store):
    source = beta_controller("        while True:\n            pass\n        yield []\n")
    record = evaluate_source(source, config(store))
    assert record["status"] == "check_failed"
    assert "EpisodeTimeout" in record["errors"][0]


def test_infinite_loop_at_import_hits_the_cpu_limit(store):
    source = "while True:\n    pass\n"
    box = raw(source, store, Limits(cpu_seconds=2, memory_mb=1024, wall_seconds=60))
    assert box.kind == "cpu" and "CPU-time limit of 2s" in box.error


def test_wall_clock_limit_kills_a_sleeping_child(store):
    source = "import time\ntime.sleep(60)\n"  # sleeping burns no CPU: only the wall clock catches it
    box = raw(source, store, Limits(cpu_seconds=30, memory_mb=1024, wall_seconds=3))
    assert box.kind == "timeout" and box.wall_s < 20


def test_memory_bomb_is_contained(store):
    source = beta_controller("        hoard = []\n        while True:\n            hoard.append(bytearray(10**8))\n"
                             "        yield []\n")
    record = evaluate_source(source, config(store, limits=Limits(cpu_seconds=20, memory_mb=1024, wall_seconds=60)))
    assert record["status"] in ("check_failed", "memory")
    assert "MemoryError" in " ".join(record["errors"]) or record["status"] == "memory"
    box = raw("x = bytearray(10**11)\n", store)
    assert box.kind == "ok" and box.result["status"] == "load_error" and "MemoryError" in box.result["errors"][0]


def test_os_system_is_refused_statically_and_at_run_time(store, tmp_path):
    marker = tmp_path / "ran"
    body = f"        import os\n        os.system('touch {marker}')\n        yield [Branch(1)]\n        return 'x'\n"
    record = evaluate_source(beta_controller(body), config(store))
    assert record["status"] == "static_error" and "forbidden module 'os'" in record["errors"][0]
    box = raw(beta_controller(body), store)
    assert box.kind == "violation" and any("os.system" in v for v in box.violations)
    assert not marker.exists()


def test_environment_variables_are_neither_passed_nor_readable(store, monkeypatch):
    monkeypatch.setenv("AUTOTTS_TEST_SECRET", SECRET)
    assert "AUTOTTS_TEST_SECRET" not in child_env()
    body = ("        import os\n        value = os.environ.get('AUTOTTS_TEST_SECRET', 'absent')\n"
            "        raise RuntimeError(value)\n        yield []\n")
    box = raw(beta_controller(body), store)
    assert box.kind == "violation" and "reading environment variable 'AUTOTTS_TEST_SECRET'" in box.violations[0]
    leak = ("        import os\n        raise RuntimeError(open('/proc/%d/environ' % os.getppid()).read())\n"
            "        yield []\n")
    box = raw(beta_controller(leak), store)
    assert box.kind == "violation" and any(v.startswith("reading /proc/") for v in box.violations)
    assert SECRET not in repr(box.result) + (box.error or "") + box.stderr_tail


def test_sockets_are_refused(store):
    body = ("        import socket\n        socket.create_connection(('127.0.0.1', 9))\n        yield []\n")
    assert evaluate_source(beta_controller(body), config(store))["status"] == "static_error"
    box = raw(beta_controller(body), store)
    assert box.kind == "violation" and any("socket" in v for v in box.violations)
    # with the socket module already loaded, the audit hook still refuses to create one
    box = run_task("selftest", {"preimport": ["socket"], "code": "import socket\nresult = str(socket.socket())"},
                   LIMITS)
    assert box.kind == "violation" and any(v.startswith("socket.__new__") for v in box.violations)


def test_file_writes_are_refused(store, tmp_path):
    target = tmp_path / "written"
    box = run_task("selftest", {"code": f"open({str(target)!r}, 'w').write('x')\nresult = 1"}, LIMITS)
    assert box.kind == "violation" and f"writing {target}" in box.violations[0]
    assert not target.exists()


def test_a_controller_that_never_answers_is_reported(store):
    body = "        yield [Branch(1)]\n        while True:\n            yield [Probe(0)]\n"
    record = evaluate_source(beta_controller(body), config(store, max_steps=200))
    assert record["status"] == "check_failed" and "no answer after 200 steps" in record["errors"][0]


def test_crashes_and_illegal_actions_come_back_as_feedback(store):
    crash = beta_controller("        yield [Branch(2)]\n        return obs.branches[5].latest\n")
    record = evaluate_source(crash, config(store))
    assert record["status"] == "check_failed" and "IndexError" in record["errors"][0]
    illegal = beta_controller("        yield [Branch(2)]\n        yield [Prune(0), Continue(0)]\n        return 'x'\n")
    record = evaluate_source(illegal, config(store))
    assert record["status"] == "check_failed" and "Continue on pruned branch 0" in record["errors"][0]


def test_syntax_errors_and_missing_beta_are_reported(store):
    assert evaluate_source("def broken(:\n", config(store))["status"] == "static_error"
    no_beta = VALID.replace("    beta_range = (0.0, 1.0)\n", "    beta_range = None\n")
    record = evaluate_source(no_beta, config(store))
    assert record["status"] == "no_beta" and "beta-parameterised" in record["errors"][0]


def test_the_child_environment_is_minimal():
    env = child_env()
    assert set(env) <= {"LANG", "LC_ALL", "TZ", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS",
                        "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}
    assert not any(k in env for k in os.environ if k.endswith(("_KEY", "_TOKEN", "_SECRET")))


def test_store_files_cannot_be_read_by_the_candidate(store):
    body = f"        gold = open({store!r}).read()\n        yield [Branch(1)]\n        return gold[:5]\n"
    assert evaluate_source(beta_controller(body), config(store))["status"] == "static_error"
    box = raw(beta_controller(body), store)
    assert box.kind == "violation" and any(v == f"reading {store}" for v in box.violations)
