"""The fast path (autotts.offline.fast) gives the same episodes as the reference path
(`run_episode` over `ReplayEnv`), field by field, on random stores and on the real trajectories
(the 68-row table itself: tests/integration/test_expected_table.py, which goes through the evaluator
and so through the fast path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from autotts.controllers import load
from autotts.controllers.builtins import BUILTINS, ParallelProbe
from autotts.controllers.confidence import beta_confidence
from autotts.offline import ReplayEnv, ReplayStore, load_store, run_episode
from autotts.offline import evaluate as evaluate_module
from autotts.offline.check import synthetic_store
from autotts.offline.evaluate import EvalOptions, evaluate
from autotts.offline.fast import fast_controllers, run_fast, unsupported
from autotts.offline.fast._arrays import conf_table
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

ANSWERS = ["7", "42", "ERR", "x"]  # few distinct answers: ties are common
BUILTIN_SPECS = ["sc", "asc", "esc", "parallel_probe", "cmc:beta=0", "cmc:beta=0.5", "cmc:beta=1"]


def reference(controller, store, seeds, kappa_probe=0, token_budget=None, answer_mode="exact"):
    env = ReplayEnv(store, kappa_probe=kappa_probe, token_budget=token_budget)
    return [run_episode(controller, env, q, s, answer_mode=answer_mode)
            for s in seeds for q in range(store.n_questions)]


def assert_same(controller, store, seeds, **options):
    fast = run_fast(controller, store, seeds, **options)
    assert fast is not None, unsupported(controller, store)
    slow = reference(controller, store, seeds, **options)
    assert [e.error for e in slow] == [None] * len(slow)
    for f, s in zip(fast, slow, strict=True):
        assert f == s, (controller.spec, f, s)


@st.composite
def stores(draw):
    """Tiny random stores: ragged branch counts, probe counts that disagree with the tokens, branches
    shorter than one segment, zero-cost tails, repeated answers, questions without a gold answer and
    (sometimes) branches without any probe."""
    seg = draw(st.sampled_from([1, 7, 100, 500]))
    fewest_probes = draw(st.sampled_from([0, 1, 1, 1]))
    records = []
    for qi in range(draw(st.integers(1, 3))):
        rows = []
        for _ in range(draw(st.integers(1, 12))):
            n = draw(st.integers(fewest_probes, 6))
            probes = draw(st.lists(st.sampled_from(ANSWERS), min_size=n, max_size=n))
            final = probes[-1] if probes and draw(st.booleans()) else draw(st.sampled_from(ANSWERS))
            rows.append((probes, draw(st.integers(0, seg * (n + 2))), final))
        gold = draw(st.sampled_from([*ANSWERS, "never-answered", None]))
        records.append({"question": f"q{qi}", "gold_answer": gold, "branches": rows})
    return ReplayStore.from_records("hypothesis", "random", seg, records)


@st.composite
def controllers(draw, fewest_branches):
    """A built-in with random parameters; n mostly within the branches every question has."""
    name = draw(st.sampled_from(sorted(BUILTINS)))
    n = draw(st.integers(1, fewest_branches) if draw(st.integers(0, 5)) else st.integers(1, 14))
    if name == "sc":
        return load("sc", n=n)
    if name == "asc":
        return load("asc", n=n, threshold=draw(st.sampled_from([0.0, 0.5, 0.8, 0.875, 0.95, 1.0])))
    if name == "esc":
        return load("esc", n=n, window=draw(st.integers(1, 6)))
    if name == "parallel_probe":
        return load("parallel_probe", n=n, T=draw(st.integers(1, 6)), patience=draw(st.integers(1, 4)),
                    warm_up=draw(st.integers(0, 5)), max_steps=draw(st.integers(1, 30)))
    return load("cmc", beta=draw(st.floats(0, 1)), max_steps=draw(st.integers(1, 60)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(store=stores(), data=st.data(), seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=4),
       kappa=st.sampled_from([0, 0, 3, 250]), budget_segments=st.one_of(st.none(), st.integers(1, 12)))
def test_fast_path_equals_reference_on_random_stores(store, data, seeds, kappa, budget_segments):
    fewest = min(store.n_branches(q) for q in range(store.n_questions))
    controller = data.draw(controllers(fewest))
    budget = None if budget_segments is None else budget_segments * store.segment_tokens
    options = {"kappa_probe": kappa, "token_budget": budget}
    fast = run_fast(controller, store, seeds, **options)
    event(f"{controller.name}: {'declined' if fast is None else 'replayed'}")
    if fast is None:  # only the configurations the environment itself rejects are declined
        if controller.name == "parallel_probe":
            assert any(b == a for a, b in zip(store.probe_offsets[:-1], store.probe_offsets[1:], strict=True))
        else:
            assert controller.params["n"] > fewest
        return
    slow = reference(controller, store, seeds, **options)
    assert [e.error for e in slow] == [None] * len(slow)
    event(f"budget exhausted: {any(e.budget_exhausted for e in slow)}")
    assert fast == slow


@pytest.mark.parametrize("spec", BUILTIN_SPECS)
def test_fast_path_equals_reference_on_synthetic_stores(spec):
    controller = load(spec)
    for seed in range(3):
        assert_same(controller, synthetic_store(seed), list(range(12)))
    for budget in (700, 3000, 20_000):  # runs out while opening, mid-episode, or late
        assert_same(controller, synthetic_store(9), [3, 5], kappa_probe=40, token_budget=budget)


@pytest.mark.parametrize("spec", BUILTIN_SPECS)
def test_all_err_store_and_ties(spec):
    # every answer "ERR" (a legal answer that can win) in one question; a two-way tie in the other
    err = ["ERR"] * 3
    tie = [(["a", "b"], 900, "a" if i % 2 else "b") for i in range(70)]
    records = [{"question": "all ERR", "gold_answer": "ERR", "branches": [(err, 1400, "ERR")] * 70},
               {"question": "tie", "gold_answer": "b", "branches": tie}]
    store = ReplayStore.from_records("edge", "cases", 500, records)
    assert_same(load(spec), store, list(range(8)))


def test_conf_table_is_beta_confidence_bit_for_bit():
    width = 70
    table = list(conf_table(width))
    for v1 in range(width):
        for v2 in range(width - v1):
            assert table[v1 * width + v2] == beta_confidence(v1, v2)


def test_subclasses_and_other_controllers_take_the_reference_path():
    class Tweaked(ParallelProbe):  # same name, possibly different behaviour: must not be replaced
        pass

    store = synthetic_store(0)
    assert run_fast(Tweaked(), store, [0]) is None
    assert "only the built-in classes" in unsupported(Tweaked(), store)
    assert fast_controllers() == sorted(BUILTINS)


def test_evaluator_uses_the_fast_path_except_for_traced_seeds(monkeypatch):
    store = synthetic_store(4)
    calls = []
    real = evaluate_module.run_episode
    monkeypatch.setattr(evaluate_module, "run_episode", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    opts = EvalOptions(seeds=6, chunk_seeds=4, trace_seeds=(5,))
    cells = evaluate(["cmc:beta=0.5", "esc"], [store], opts, workers=1, progress=False)
    assert sorted(set(calls)) == [5] and len(calls) == 2 * store.n_questions  # only the traced seed
    for cell in cells:
        expected = reference(load(cell.spec), store, range(6))
        assert [e.trace == [] for e in cell.episodes] == [e.seed != 5 for e in expected]
        for got, want in zip(cell.episodes, expected, strict=True):
            assert (got.answer, got.correct, got.tokens, got.branches, got.probes, got.steps) == (
                want.answer, want.correct, want.tokens, want.branches, want.probes, want.steps)


def test_plain_python_kernels_match_without_numba():
    # the kernels run uncompiled when numba is absent (or AUTOTTS_FAST=pure): same episodes
    script = (
        "from autotts.controllers import load\n"
        "from autotts.offline import ReplayEnv, run_episode\n"
        "from autotts.offline.check import synthetic_store\n"
        "from autotts.offline.fast import JIT, run_fast\n"
        "assert not JIT\n"
        "store = synthetic_store(2)\n"
        f"for spec in {BUILTIN_SPECS!r}:\n"
        "    c = load(spec)\n"
        "    for budget in (None, 2500):\n"
        "        env = ReplayEnv(store, kappa_probe=5, token_budget=budget)\n"
        "        slow = [run_episode(c, env, q, s) for s in range(6) for q in range(store.n_questions)]\n"
        "        assert run_fast(c, store, list(range(6)), kappa_probe=5, token_budget=budget) == slow, spec\n"
        "print('ok')\n")
    env = {**os.environ, "AUTOTTS_FAST": "pure"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_other_controllers_never_import_the_compiler():
    # discovered controllers go through ReplayEnv: evaluating one must not pay numba's import
    script = ("import sys\n"
              "from autotts.controllers.builtins import ParallelProbe\n"
              "from autotts.offline.check import synthetic_store\n"
              "from autotts.offline import ReplayEnv, run_episode\n"
              "from autotts.offline.fast import run_fast\n"
              "class Mine(ParallelProbe):\n"
              "    pass\n"
              "store = synthetic_store(0)\n"
              "assert run_fast(Mine(), store, [0, 1]) is None\n"
              "assert run_episode(Mine(), ReplayEnv(store), 0, 0).error is None\n"
              "assert 'numba' not in sys.modules\n"
              "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_fast_path_can_be_switched_off():
    script = ("from autotts.controllers import load\n"
              "from autotts.offline.check import synthetic_store\n"
              "from autotts.offline.fast import run_fast, unsupported\n"
              "store = synthetic_store(0)\n"
              "assert run_fast(load('sc'), store, [0]) is None\n"
              "print(unsupported(load('sc'), store))\n")
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "AUTOTTS_FAST": "0"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "switched off" in done.stdout, done.stderr


@pytest.mark.parametrize("path", ["Qwen3-0.6B/aime24.json.gz", "Qwen3-8B/aime25.json.gz"])
def test_fast_path_equals_reference_on_real_stores(shared_replay, path):
    store = load_store(shared_replay / path)
    for spec in BUILTIN_SPECS:
        assert_same(load(spec), store, [0, 13, 99])
    assert_same(load("cmc:beta=0.3"), store, [4], kappa_probe=64, token_budget=150_000)
    assert_same(load("parallel_probe"), store, [4], kappa_probe=64, token_budget=400_000)
