"""Small pure parts of discovery: the static check, the objective and Pareto helpers, the β check
on measured tokens (and the rejection of a candidate that violates it), prompts, doctests."""

from __future__ import annotations

import doctest
import importlib

import pytest
from autotts.discovery.evaluate import EvalConfig, evaluate_source
from autotts.discovery.objective import beta_check, dominates, objective, pareto_front
from autotts.discovery.static import problems

from .discovery_data import VALID, beta_controller, tiny_store_file

MODULES = ["autotts.discovery.grid", "autotts.discovery.objective", "autotts.discovery.static",
           "autotts.discovery.explorers.accounting"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    failures, attempted = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0


@pytest.mark.parametrize("source, message", [
    ("import subprocess\n", "forbidden module 'subprocess'"),
    ("from os import path\n", "forbidden module 'os'"),
    ("from . import x\n", "forbidden module"),
    ("x = __import__('os')\n", "use of '__import__'"),
    ("x = open('f')\n", "use of 'open'"),
    ("x = ().__class__.__bases__\n", "attribute '__bases__'"),
])
def test_static_check_names_the_problem_and_line(source, message):
    (found,) = problems(source)
    assert found.startswith("line 1: ") and message in found


def test_static_check_accepts_sdk_and_small_stdlib():
    assert problems(VALID + "import math\nfrom collections import deque\n") == []


def test_objective_and_pareto():
    curve = [{"beta": 0.0, "acc": 50.0, "tokens": 100.0}, {"beta": 1.0, "acc": 70.0, "tokens": 300.0}]
    assert objective(curve, gamma=0.1) == pytest.approx(((50 - 10) + (70 - 30)) / 2)
    assert dominates(curve, {"acc": 60.0, "tokens": 300.0}) and not dominates(curve, {"acc": 71.0, "tokens": 1e9})
    assert not dominates(curve, {"acc": 70.0, "tokens": 300.0})  # equal is not dominance
    pts = [*curve, {"beta": None, "acc": 55.0, "tokens": 400.0}, {"beta": None, "acc": 60.0, "tokens": 150.0}]
    assert [p["acc"] for p in pareto_front(pts)] == [50.0, 60.0, 70.0]


def test_beta_check_allows_noise_and_flags_real_drops():
    rising = [{"beta": 0.0, "tokens": 1000.0, "tokens_se": 5.0}, {"beta": 1.0, "tokens": 2000.0, "tokens_se": 5.0}]
    assert beta_check(rising) == []
    wobble = [{"beta": 0.0, "tokens": 1000.0, "tokens_se": 5.0}, {"beta": 1.0, "tokens": 990.0, "tokens_se": 5.0}]
    assert beta_check(wobble) == []  # 1% is within the 3% allowance
    falling = [{"beta": 0.0, "tokens": 1000.0, "tokens_se": 5.0}, {"beta": 1.0, "tokens": 800.0, "tokens_se": 5.0}]
    (problem,) = beta_check(falling)
    assert "tokens fall from 1,000 at beta=0 to 800 at beta=1" in problem


# n shrinks as beta grows; it is not declared a budget knob, so only the measurement can catch it
SHRINKING = beta_controller(
    "        yield [Branch(self.knobs['n'], segments=None, probe=False)]\n"
    "        return top_two(obs.completed_answers())[0]\n",
    knobs='{"n": round(16 - 12 * beta), "cap": round(1 + 3 * beta)}', budget='("cap",)')


@pytest.mark.parametrize("policy, status", [("reject", "beta_violation"), ("flag", "ok")])
def test_candidates_whose_tokens_fall_with_beta_are_rejected_or_flagged(tmp_path, policy, status):
    store = str(tiny_store_file(tmp_path, questions=2))
    config = EvalConfig(stores=(store,), betas=(0.0, 0.5, 1.0), seeds=(0, 1), beta_policy=policy)
    record = evaluate_source(SHRINKING, config)
    assert record["status"] == status
    assert record["beta_check"] and "tokens fall" in record["beta_check"][0]
    if policy == "reject":
        assert "must not decrease as beta grows" in record["errors"][0]
    assert evaluate_source(VALID, config)["beta_check"] == []


def test_baselines_lower_n_to_the_branches_every_question_has(tmp_path) -> None:
    from autotts.discovery.baselines import builtin_points

    path = tiny_store_file(tmp_path, branches=8)
    points = builtin_points([str(path)], (0.5,), seeds=2, workers=1)
    by_controller = {p["controller"]: p for p in points}
    assert by_controller["sc"]["spec"] == "sc:n=8" and by_controller["esc"]["spec"] == "esc:n=8"
    assert all(p["failed"] == 0 for p in points), [(p["spec"], p["failed"]) for p in points]
