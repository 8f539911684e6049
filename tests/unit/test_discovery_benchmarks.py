"""benchmarks/cmc_waste.py and the comparison of benchmarks/discovery_local.py: the waste analysis replays
cmc exactly as the built-in does (else its shares would describe another controller), and a cmc point
counts as dominated only with at least its accuracy for at most the token ratio."""

import importlib.util
import json
from pathlib import Path

import pytest

from .discovery_data import tiny_store_file

BENCH = Path(__file__).parents[2] / "benchmarks"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_the_waste_analysis_plays_cmc_as_the_builtin_does(tmp_path, beta):
    waste = script("cmc_waste")
    path = tiny_store_file(tmp_path, questions=3)
    stores = {"Tiny": json.loads(path.read_text())}
    waste.check_against_builtin(stores, [str(path)], beta, seeds=3)  # SystemExit on any difference
    row = waste.measure(stores, beta, seeds=3)
    assert sum(row["share"].values()) == pytest.approx(1.0, abs=2e-3)
    assert 0.0 <= row["share_widened_never_voted"] <= row["share"]["abandoned"] + row["share"]["running_at_stop"]
    assert 0.0 < row["oracle_stop_share"] <= 1.0


def test_a_cmc_point_is_dominated_only_at_its_accuracy_and_the_token_ratio():
    versus = script("discovery_local")._versus_cmc
    cmc = [{"beta": 0.0, "acc": 50.0, "tokens": 100.0}, {"beta": 1.0, "acc": 60.0, "tokens": 200.0}]
    mine = [{"beta": 0.0, "acc": 50.0, "tokens": 95.0}, {"beta": 1.0, "acc": 61.0, "tokens": 150.0}]
    table, dominated = versus(mine, cmc, 0.9)
    assert dominated == 1 and [row["dominated"] for row in table] == [False, True]
    assert table[0]["cheapest_point_as_accurate"]["tokens_ratio"] == 0.95  # as accurate, not 10% cheaper
    assert table[1]["by_beta"] == [1.0]
    assert versus([{"beta": 1.0, "acc": 59.9, "tokens": 1.0}], cmc[1:], 0.9)[1] == 0  # cheaper but less accurate
