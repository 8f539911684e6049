"""The controller SDK contract: specs, parameters, β, schedules, aggregation, confidence, normalisation."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest
from autotts.controllers import (
    Branch,
    Continue,
    Controller,
    ControllerSpecError,
    IllegalActionError,
    Param,
    answer_key,
    beta_confidence,
    check_schedule,
    is_correct,
    load,
    majority,
    parse_spec,
    top_two,
    weighted,
)


def test_spec_parsing_and_typed_parameters():
    assert parse_spec("asc:threshold=0.9,n=32") == ("asc", {"threshold": "0.9", "n": "32"})
    assert parse_spec("cmc") == ("cmc", {})
    c = load("asc:threshold=0.9,n=32")
    assert c.params == {"n": 32, "threshold": 0.9} and c.spec == "asc:n=32,threshold=0.9"
    assert load(c.spec).params == c.params


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown controller 'nope'; available: asc, cmc, esc, parallel_probe, sc"),
    ("asc:n=3.5", "parameter 'n' of controller 'asc' must be int, got '3.5'"),
    ("asc:threshold=high", "must be float"),
    ("asc:threshold=1.5", r"must be in \[0.0, 1.0\]"),
    ("asc:window=3", "unknown parameter"),
    ("cmc:beta=1.5", r"parameter 'beta' of controller 'cmc' must be in \[0.0, 1.0\], got 1.5"),
    ("sc:beta=0.5", "takes no beta"),
    ("asc:n", "expected key=value"),
    ("", "empty controller spec"),
])
def test_bad_specs_get_one_clear_message(spec, message):
    with pytest.raises(ControllerSpecError, match=message):
        load(spec)


def test_beta_defaults_and_knobs():
    assert load("cmc").beta == 0.5 and load("cmc").knobs["n_init"] == 5
    assert load("sc").beta is None and load("sc").knobs == {}


def test_check_schedule_rejects_shrinking_budget_and_non_monotone_knobs():
    class Shrinks(Controller):
        name, beta_range, budget_knobs = "shrinks", (0.0, 1.0), ("width",)

        @classmethod
        def schedule(cls, beta):
            return {"width": round(10 - 5 * beta)}

    class Wiggles(Controller):
        name, beta_range = "wiggles", (0.0, 1.0)

        @classmethod
        def schedule(cls, beta):
            return {"alpha": abs(beta - 0.5)}

    with pytest.raises(ControllerSpecError, match="budget knob 'width' decreases"):
        check_schedule(Shrinks)
    with pytest.raises(ControllerSpecError, match="'alpha' is not monotone"):
        check_schedule(Wiggles)
    assert check_schedule(type(load("cmc")))[0]["beta"] == 0.0


def test_param_coercion_edge_cases():
    p = Param(bool, False)
    assert p.coerce("x", "c", "true") is True and p.coerce("x", "c", "0") is False
    with pytest.raises(ControllerSpecError):
        p.coerce("x", "c", "maybe")
    assert Param(int, 1).coerce("n", "c", 4.0) == 4
    with pytest.raises(ControllerSpecError):
        Param(int, 1).coerce("n", "c", True)
    with pytest.raises(ControllerSpecError):
        Param(float, 1.0).coerce("t", "c", "nan")


def test_actions_validate_on_construction():
    with pytest.raises(IllegalActionError):
        Continue(-1)
    with pytest.raises(IllegalActionError):
        Branch(2, segments=0)
    with pytest.raises(AttributeError):
        Continue(1).branch = 2  # frozen


def test_majority_ties_go_to_first_seen_and_keys_group_answers():
    assert majority(["b", "a", "a", "b"]) == "b"
    assert majority([]) is None
    assert top_two(["x", "y", "y", "z", "y", "x"]) == ("y", 3, 2)
    assert weighted(["a", "b"], [0.4, 0.6]) == "b"
    key = answer_key("math")
    assert majority(["0.5", "7", "\\frac{1}{2}"], key=key) == "0.5"


def test_beta_confidence_is_the_exact_binomial_tail():
    for v1 in range(12):
        for v2 in range(v1 + 1):
            m = v1 + v2 + 1
            exact = Fraction(sum(comb(m, j) for j in range(v1 + 1)), 2**m)
            assert beta_confidence(v1, v2) == float(exact)
    assert beta_confidence(1, 0) == 0.75 and beta_confidence(2, 2) == 0.5


def test_answer_correctness_modes():
    assert is_correct("204", "204") and not is_correct("204.0", "204")
    assert is_correct("204.0", "204", "math") and is_correct("\\frac{1}{2}", "0.5", "math")
    assert not is_correct("ERR", "12", "math") and not is_correct(None, "12")
    with pytest.raises(ValueError, match="unknown answer mode"):
        is_correct("1", "1", "fuzzy")


def test_math_mode_works_off_the_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    from autotts.controllers.normalize import _parse

    _parse.cache_clear()
    with ThreadPoolExecutor(1) as pool:  # math-verify's SIGALRM timeouts fail outside the main thread
        assert pool.submit(is_correct, "17.0", "17", "math").result()
        assert pool.submit(is_correct, "\\frac{1}{4}", "0.25", "math").result()
    assert is_correct("17.0", "17", "math")


def test_importing_the_sdk_pulls_no_heavy_dependencies():
    import subprocess
    import sys

    code = "import sys, autotts.controllers; print(sorted(m for m in ('pyarrow', 'numpy', 'math_verify', " \
           "'httpx', 'vllm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
