"""Answer normalisation: exact strings for parity with the paper, math equivalence for live use.

`exact` mode compares raw strings (what the paper's replay table uses). `math` mode uses
`math-verify` to parse LaTeX/plain answers, so `\\frac{1}{2}`, `0.5` and `$\\boxed{1/2}$` agree.
`math-verify` is imported lazily, only when math mode is used. Its timeouts use SIGALRM, which only
the main thread may set: elsewhere (worker threads, servers run in a thread) they are switched off,
otherwise every parse would fail there and the failure would be cached.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from functools import lru_cache

__all__ = ["MODES", "answer_key", "is_correct", "math_key", "numeric_value"]

MODES = ("exact", "math")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown answer mode {mode!r}; choose one of {', '.join(MODES)}")


def _timeout() -> int | None:
    """math-verify's signal-based timeout (seconds), or None where signals cannot be used."""
    return 5 if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=65536)
def _parse(text: str) -> tuple:
    from math_verify import parse

    wrapped = text if "$" in text or "\\boxed" in text else f"${text}$"
    try:
        return tuple(parse(wrapped, parsing_timeout=_timeout()))
    except Exception:  # math-verify raises assorted errors on garbage; garbage has no math form
        return ()


@lru_cache(maxsize=65536)
def math_key(text: str) -> str:
    """The answer's class under math equivalence: its simplified math form (numbers as exact rationals),
    else the stripped text."""
    parsed = _parse(text.strip())
    if not parsed:
        return text.strip()
    expr = parsed[0]
    if getattr(expr, "is_number", False):  # 0.5 and 1/2 must share a class
        import sympy

        with suppress(TypeError, ValueError, AttributeError):
            expr = sympy.nsimplify(expr, rational=True)
    return str(expr)


@lru_cache(maxsize=65536)
def numeric_value(text: str) -> float | None:
    """The answer's value as a float when it is a plain number (``\\frac{1}{2}`` → 0.5), else None."""
    parsed = _parse(text.strip())
    if not parsed or not getattr(parsed[0], "is_number", False):
        return None
    try:
        value = float(parsed[0])
    except (TypeError, ValueError, OverflowError):
        return None
    return value if value == value else None


def answer_key(mode: str = "exact"):
    """A function mapping an answer to its equivalence class under `mode` (None for exact)."""
    _check_mode(mode)
    return None if mode == "exact" else math_key


def is_correct(answer: str | None, gold: str, mode: str = "exact") -> bool:
    """Whether `answer` matches `gold` under `mode`; no answer is never correct."""
    _check_mode(mode)
    if answer is None:
        return False
    if mode == "exact":
        return answer == gold
    from math_verify import verify

    gold_parsed, answer_parsed = _parse(gold.strip()), _parse(answer.strip())
    if not gold_parsed or not answer_parsed:
        return answer.strip() == gold.strip()
    try:
        return bool(verify(list(gold_parsed), list(answer_parsed), timeout_seconds=_timeout()))
    except Exception:
        return answer.strip() == gold.strip()
