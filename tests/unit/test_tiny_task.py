"""The chain task's generator and exact checker (autotts.server.tiny_task), and the trainer's data: what a
probe is taught to answer from a cut-off chain. The trained model itself: tests/integration/test_tiny_chain.py."""

from __future__ import annotations

import random
import re

import pytest
from autotts.server.tiny_task import SPLITS, Chain, check, parse, questions, sample_chain


def test_answer_follows_the_rounds_mod_10() -> None:
    chain = Chain(start=9, key=5, rounds=4)
    # r=4: 9*7=3, +5=8; r=3: 8*3=4, +5=9; r=2: 9*9=1, +5=6; r=1: 6*7=2, +5=7
    assert chain.values() == [8, 9, 6, 7] and chain.answer() == 7
    assert chain.solution().endswith("\\boxed{7}")
    assert [line for line, _ in chain.lines()] == ["4:9*7=3+5=8\n", "3:8*3=4+5=9\n", "2:9*9=1+5=6\n",
                                                    "1:6*7=2+5=7\n"]


def test_parse_inverts_text_and_rejects_other_text() -> None:
    rng = random.Random(3)
    for _ in range(200):
        chain = sample_chain(rng, "train")
        assert parse(chain.text()) == chain
    for bad in ("Start 7 add 3 rounds 0.", "Start 12 add 3 rounds 2.", "what is 2+2?", ""):
        with pytest.raises(ValueError):
            parse(bad)
    with pytest.raises(ValueError, match="split"):
        sample_chain(rng, "medium")


def test_checker_is_exact() -> None:
    q = Chain(7, 3, 1).text()  # 7*7=9, +3 = 2
    assert check(q, "2") and check(q, " 2 ")
    assert not check(q, "12") and not check(q, None) and not check(q, "ERR")


def test_every_round_is_a_bijection_so_one_slip_changes_the_answer() -> None:
    rng = random.Random(0)
    for _ in range(300):
        chain = sample_chain(rng, "hard")
        i = rng.randrange(chain.rounds)
        right = chain.values()[i]
        wrong = (right + rng.randint(1, 9)) % 10
        assert chain.finish_from(i + 1, wrong) != chain.answer()


def test_slips_happen_at_the_requested_rate_and_the_chain_goes_on_from_them() -> None:
    rng = random.Random(1)
    wrong = rounds = 0
    for _ in range(2000):
        chain = sample_chain(rng, "hard")
        x = chain.start
        for r, (line, value) in zip(range(chain.rounds, 0, -1), chain.lines(rng, 0.1), strict=True):
            assert line.startswith(f"{r}:{x}*") and line.endswith(f"={value}\n")
            wrong += value != chain.step(x, r)[1]
            rounds += 1
            x = value
    # a round is right when neither of its two results slipped (or the sum slip undoes the product slip: never)
    assert abs(wrong / rounds - (1 - 0.9**2)) < 0.015


def test_question_sets_are_deterministic_sized_and_differ_by_seed() -> None:
    a, b = questions(50, seed=1), questions(50, seed=2)
    assert a == questions(50, seed=1) and a != b
    lo, hi = SPLITS["hard"]
    assert all(lo <= parse(q["question"]).rounds <= hi for q in a)
    assert all(check(q["question"], q["gold_answer"]) for q in a + b)


def test_the_solution_reaches_its_answer_then_checks_it() -> None:
    chain = Chain(start=9, key=5, rounds=4)
    lines = [line for line, _ in chain.lines()]
    checks = [line[:-1] + " 7\n" for line in lines]  # each check line carries the answer being checked
    assert chain.solution() == ("<think>\n" + "".join(lines) + "so 7\ncheck\n" + "".join(checks)
                                + "</think>\n\n\\boxed{7}")
    rng = random.Random(2)  # the passes slip on their own; the boxed answer is the one the first pass reached
    differ = 0
    for _ in range(300):
        text = sample_chain(rng, "hard").solution(rng, slip=0.2, check_slip=0.0)
        said = re.search(r"\nso (\d)\ncheck\n", text).group(1)
        last, running = re.search(r"=(\d) (\d)\n</think>", text).groups()
        assert text.endswith(f"\\boxed{{{said}}}") and running == said
        differ += said != last
    assert differ > 100


def test_probe_examples_target_what_the_trace_has_written() -> None:
    """Cut during the first pass: the right answer from the values written (a guess); from the first
    pass's last result on (through the check pass): the answer it reached."""
    from autotts.server.tiny_train import PROBE_SUFFIX, TrainSettings, _Examples

    class CharTok:  # one id per character: enough to check the cut arithmetic of the training data
        def encode(self, text, add_special_tokens=False):
            return [ord(c) for c in text]

        def convert_tokens_to_ids(self, token):
            return 0

        def apply_chat_template(self, messages, **kw):
            return [ord(c) for c in messages[0]["content"]]

    ex = _Examples(CharTok(), TrainSettings(slip=0.3, check_slip=0.3, probe_share=1.0))
    rng = random.Random(5)
    seen = set()
    line = re.compile(r"\d:\d\*\d=\d\+\d=\d")
    for _ in range(600):
        ids, labels = ex.make(rng)
        text = "".join(chr(i) for i in ids)
        question, _, rest = text.partition("<think>\n")
        chain = parse(question)
        body, _, answer = rest.partition(PROBE_SUFFIX)
        first, checking, second = body.partition("so ")
        if not checking:  # cut in the first pass (or just at its end)
            pieces = first.split("\n")
            done = pieces[:-1] + ([pieces[-1]] if line.fullmatch(pieces[-1]) else [])
            value = int(done[-1][-1]) if done else chain.start
            want, where = chain.finish_from(len(done), value), "first" if len(done) < chain.rounds else "said"
        else:
            want, where = int(first.split("\n")[-2][-1]), "check"
            assert not second or int(second[0]) == want
        assert answer == f"{want}}}", (body, answer)
        assert [chr(t) for t in labels if t != -100] == list(answer)
        seen.add(where)
    assert seen == {"first", "said", "check"}
