r"""Reading answers out of generated text: the final answer of a branch and the answer a probe forced.

A probe appends an answer-forcing suffix (by default the end of the thinking block and an opened
``\boxed{``) to a copy of the branch, so the probe's few new tokens are the inside of the box up to
its closing brace. A finished branch's answer is its last ``\boxed{…}``. "ERR" marks a text with no
extractable answer, as in the recorded replay stores.

>>> probe_answer("42} and more")
'42'
>>> final_answer("<think>so \\boxed{1}</think> The answer is \\boxed{\\frac{1}{2}}.")
'\\frac{1}{2}'
>>> split_reasoning("<think>\nhmm\n</think>\n\nDone.")
('hmm', 'Done.')
"""

from __future__ import annotations

__all__ = ["NO_ANSWER", "final_answer", "probe_answer", "split_reasoning"]

NO_ANSWER = "ERR"
_BOX = "\\boxed{"


def _closing(text: str, start: int) -> int:
    """Index of the brace closing the group opened just before `start`, or -1."""
    depth = 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def final_answer(text: str) -> str | None:
    """The content of the last complete ``\\boxed{…}`` after the thinking block (else anywhere)."""
    _, _, after = text.rpartition("</think>")
    for part in (after, text):
        start = part.rfind(_BOX)
        while start >= 0:
            end = _closing(part, start + len(_BOX))
            if end >= 0:
                return part[start + len(_BOX):end].strip() or None
            start = part.rfind(_BOX, 0, start)
    return None


def probe_answer(text: str) -> str:
    """The answer a probe produced after the suffix opened a box: up to the closing brace."""
    end = _closing(text, 0)
    answer = (text if end < 0 else text[:end]).strip()
    return answer or NO_ANSWER


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning inside the thinking block, text after it); no block → ("", text)."""
    head, sep, tail = text.partition("</think>")
    if not sep:
        return "", text.strip()
    return head.replace("<think>", "", 1).strip(), tail.strip()
