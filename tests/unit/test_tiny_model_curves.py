"""benchmarks/tiny_model.py's depth curves: the latest answer per trace keeps every trace at every depth."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "tiny_model.py"
SPEC = importlib.util.spec_from_file_location("tiny_model_bench", SCRIPT)
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def test_latest_answer_curve_uses_a_finished_traces_final_answer():
    # trace 0 runs 4 segments (probes at 1-3: wrong, right, right), its final answer right;
    # trace 1 ends after 2 segments (probe at 1 wrong), its final answer wrong
    finals = [("q0", "7", 4), ("q1", "3", 2)]
    probe_right = {(0, 1): False, (0, 2): True, (0, 3): True, (1, 1): False}
    curve = bench.latest_answer_curve(finals, probe_right, check=lambda q, a: a == "7")
    assert curve == {"1": {"accuracy": 0.0, "traces": 2, "running": 2},
                     "2": {"accuracy": 0.5, "traces": 2, "running": 1},
                     "3": {"accuracy": 0.5, "traces": 2, "running": 1}}


def test_rising_within_noise_and_strictly():
    rising = [(0.1, 1000), (0.2, 1000), (0.3, 1000)]
    assert bench.never_falls(rising) and bench.rises_within_noise(rising)
    noisy = [(0.1, 1000), (0.21, 1000), (0.2, 1000), (0.3, 1000)]  # a dip well within sampling noise
    assert not bench.never_falls(noisy) and bench.rises_within_noise(noisy)
    dip = [(0.1, 1000), (0.3, 1000), (0.15, 1000), (0.35, 1000)]
    assert not bench.rises_within_noise(dip)
