"""The statistics of benchmarks/live_replay.py: the prediction's interval is over questions, not episodes."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "live_replay.py"
SPEC = importlib.util.spec_from_file_location("live_replay", SCRIPT)
live_replay = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(live_replay)


def episodes(per_question: list[list[bool]], tokens: int = 100, probes: int = 4) -> list[dict]:
    return [{"question": q, "correct": c, "tokens": tokens + q, "probes": probes, "branches": 2}
            for q, seeds in enumerate(per_question) for c in seeds]


def test_prediction_averages_seeds_within_a_question_first():
    # question 0 is right under 3 of 4 seeds, question 1 under none: the mean over questions is 0.375,
    # and the spread is between the two questions (0.75 vs 0.0), not between the 8 episodes
    pred = live_replay.predicted(episodes([[True, True, True, False], [False] * 4]), probe_tokens_per_probe=2.5)
    assert pred["questions"] == 2 and pred["episodes"] == 8
    assert pred["accuracy"]["mean"] == pytest.approx(0.375)
    assert pred["accuracy"]["se"] == pytest.approx(0.375, abs=1e-4)  # sd 0.5303 / sqrt(2)
    assert pred["decode_tokens"]["mean"] == pytest.approx(100.5)
    assert pred["decode_probe_tokens"]["mean"] == pytest.approx(100.5 + 4 * 2.5)


def test_compare_flags_outside_interval_and_token_drift():
    pred = live_replay.predicted(episodes([[True, False]] * 50), probe_tokens_per_probe=0)  # 0.5, se 0
    live = {"accuracy": {"correct": 9, "n": 10, "wilson95": live_replay.wilson(9, 10)},
            "tokens_spent": {"mean": 106.0}, "decode_tokens": {"mean": 100.0}, "branches": {"mean": 2.0},
            "probes": {"mean": 4.0}}
    got = live_replay.compare(pred, live)
    assert got["live_inside_predicted_ci95"] is False and got["accuracy_difference_z"] > 1.96
    assert got["tokens_live_over_predicted"] == pytest.approx(106 / 124.5, abs=1e-4)
    assert got["tokens_within_5pct"] is False


def test_wilson_stays_inside_zero_one():
    assert live_replay.wilson(0, 10)[0] == 0.0 and live_replay.wilson(10, 10)[1] == 1.0
    lo, hi = live_replay.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)


def test_predicted_difference_of_two_controllers():
    a = live_replay.predicted(episodes([[True] * 2, [True] * 2], tokens=300), probe_tokens_per_probe=0)
    b = live_replay.predicted(episodes([[True] * 2, [False] * 2], tokens=100), probe_tokens_per_probe=0)
    diff = live_replay.predicted_difference(a, b)
    assert diff["accuracy"]["difference"] == pytest.approx(0.5)
    lo, hi = diff["accuracy"]["ci95"]
    assert lo < 0.5 < hi  # b's two questions disagree: its interval is wide
    assert diff["decode_probe_tokens"]["difference"] == pytest.approx(200)
    assert diff["decode_probe_tokens"]["relative"] == pytest.approx(300.5 / 100.5 - 1, abs=1e-4)
