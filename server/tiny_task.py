r"""The `chain` task: a synthetic problem where writing the work out helps, with a generator and an exact checker.

A question gives a start digit x, a key k and a number of rounds n (1-9)::

    Start 7 add 3 rounds 3.

Each round, counted down by r = rounds left (n, n-1, ..., 1), multiplies x by m = (3, 7, 9)[r mod 3] and
adds k, mod 10. The worked solution reaches the answer, says it, then verifies it: a first pass writes one
line per round (r, then the product, then the sum), ``so A`` states the answer it reached, a check pass
recomputes every round from the start, each line ending with the answer being checked, and the thinking
block closes with that answer boxed::

    <think>
    3:7*3=1+3=4
    2:4*9=6+3=9
    1:9*7=3+3=6
    so 6
    check
    3:7*3=1+3=4 6
    2:4*9=6+3=9 6
    1:9*7=3+3=6 6
    </think>

    \boxed{6}

Why this task: every line follows from the line above by a small lookup (a 2-layer model learns it in
minutes on a CPU), but the answer depends on every round, so the model is right only if it writes the
rounds out (thinking longer helps); each round is a bijection of x, so a slip anywhere gives a different
final digit, spread over the other nine (voting cancels slips). A probe (the trace cut off plus the
answer-forcing suffix) can only copy an answer the trace has already written: before ``so A`` it guesses,
after it it has the answer, and the trace goes on checking, as a real reasoning model's does after it
first reaches its answer (where early-stopping controllers save tokens). The check does not change the
answer here (docs/tiny_model.md: a 2-layer model did not learn a check that corrects it). The training
teacher slips on purpose, at rate `slip` per written result in the first pass and `check_slip` in the
check pass, so a model sampled at temperature 1 slips too: that is the noise self-consistency is meant
to vote away. Pure Python, no I/O.

>>> q = Chain(start=7, key=3, rounds=3)
>>> q.text(), q.answer()
('Start 7 add 3 rounds 3.', 6)
>>> check(q.text(), "6"), check(q.text(), "4")
(True, False)
>>> print(q.solution())
<think>
3:7*3=1+3=4
2:4*9=6+3=9
1:9*7=3+3=6
so 6
check
3:7*3=1+3=4 6
2:4*9=6+3=9 6
1:9*7=3+3=6 6
</think>
<BLANKLINE>
\boxed{6}
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = ["MULTIPLIERS", "SPLITS", "Chain", "check", "checking", "first_answer", "parse", "questions", "sample_chain"]

MULTIPLIERS = (3, 7, 9)  # round with r rounds left multiplies by MULTIPLIERS[r % 3]
SPLITS = {"easy": (2, 4), "hard": (7, 9), "train": (1, 9)}  # number of rounds, inclusive
_QUESTION = re.compile(r"^Start (\d) add (\d) rounds ([1-9])\.$")


@dataclass(frozen=True)
class Chain:
    start: int
    key: int
    rounds: int

    def text(self) -> str:
        return f"Start {self.start} add {self.key} rounds {self.rounds}."

    def step(self, x: int, r: int) -> tuple[int, int]:
        """(product, value) of the round with `r` rounds left, from `x`."""
        p = x * MULTIPLIERS[r % 3] % 10
        return p, (p + self.key) % 10

    def values(self) -> list[int]:
        """The value after each round (correct arithmetic)."""
        out, x = [], self.start
        for r in range(self.rounds, 0, -1):
            x = self.step(x, r)[1]
            out.append(x)
        return out

    def answer(self) -> int:
        return self.values()[-1]

    def finish_from(self, done: int, value: int) -> int:
        """The right answer from `value` after `done` rounds (what a cut-off chain should conclude)."""
        for r in range(self.rounds - done, 0, -1):
            value = self.step(value, r)[1]
        return value

    def lines(self, rng: random.Random | None = None, slip: float = 0.0) -> list[tuple[str, int]]:
        """One (line, value written) per round; with `rng`, each written result is a wrong digit with
        probability `slip` and the chain goes on from what was written, as a sampled model's does."""
        def maybe_slip(v: int) -> int:
            if rng is not None and slip > 0 and rng.random() < slip:
                return rng.choice([d for d in range(10) if d != v])
            return v

        out, x = [], self.start
        for r in range(self.rounds, 0, -1):
            m = MULTIPLIERS[r % 3]
            p = maybe_slip(x * m % 10)
            y = maybe_slip((p + self.key) % 10)
            out.append((f"{r}:{x}*{m}={p}+{self.key}={y}\n", y))
            x = y
        return out

    def solution(self, rng: random.Random | None = None, slip: float = 0.0, check_slip: float = 0.0) -> str:
        """The verified solution: first pass, ``so A``, ``check``, the check pass, A boxed."""
        first, second = self.lines(rng, slip), self.lines(rng, check_slip)
        said = first[-1][1]
        return "".join(["<think>\n", *(line for line, _ in first), first_answer(said),
                        *(checking(line, said) for line, _ in second), f"</think>\n\n\\boxed{{{said}}}"])


def first_answer(value: int) -> str:
    """What the trace writes between its passes: the answer the first pass reached, then the check begins."""
    return f"so {value}\ncheck\n"


def checking(line: str, said: int) -> str:
    """A check-pass line: the round recomputed, then the answer being checked (the running answer), so
    that it is always a line away: a 2-layer model copies a digit from the line above, not from far back."""
    return f"{line[:-1]} {said}\n"


def parse(question: str) -> Chain:
    """The chain a question text states; ValueError for any other text."""
    m = _QUESTION.match(question.strip())
    if not m:
        raise ValueError(f"not a chain question (want 'Start X add K rounds N.'): {question[:80]!r}")
    return Chain(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def check(question: str, answer: str | None) -> bool:
    """Exact checker: is `answer` (an extracted box content) the question's answer?"""
    if answer is None:
        return False
    return answer.strip() == str(parse(question).answer())


def sample_chain(rng: random.Random, split: str = "hard") -> Chain:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    lo, hi = SPLITS[split]
    return Chain(rng.randrange(10), rng.randrange(10), rng.randint(lo, hi))


def questions(count: int, *, split: str = "hard", seed: int = 0) -> list[dict[str, str]]:
    """`count` question rows (``question``, ``gold_answer``) as `autotts collect` reads them.

    Only 10 x 10 x 3 hard questions exist, so sets of different seeds overlap in text; each row is a
    fresh draw (the trainer never sees gold answers of these draws, it draws its own)."""
    rng = random.Random(f"chain-{split}-{seed}")
    out = []
    for _ in range(count):
        c = sample_chain(rng, split)
        out.append({"question": c.text(), "gold_answer": str(c.answer())})
    return out
