r"""Reading a branch: its answer (through the request's extractor) and its thinking block, on token IDs.

The readers themselves are the SDK's (`autotts.controllers.extractors`); this module keeps the math
defaults as functions, and splits a branch *on its token IDs* at the end of its thinking block, so the
text a response carries is decoded from the IDs the gateway holds, never from an engine's text (vLLM
can leak prompt text when a token-ID prompt ends inside a multi-byte character).

>>> probe_answer("42} and more")
'42'
>>> final_answer("<think>so \\boxed{1}</think> The answer is \\boxed{\\frac{1}{2}}.")
'\\frac{1}{2}'
>>> split_reasoning("<think>\nhmm\n</think>\n\nDone.")
('hmm', 'Done.')
>>> split_tokens([5, 1, 2, 9, 3, 4], [9])
([5, 1, 2], [3, 4])
>>> split_tokens([1, 2], [9]), split_tokens([1, 2], [9], thinking=False)
(([1, 2], None), (None, [1, 2]))
"""

from __future__ import annotations

from autotts.controllers.extractors import NO_ANSWER, Extractor, split_thinking

__all__ = ["NO_ANSWER", "final_answer", "probe_answer", "split_reasoning", "split_tokens"]

_BOXED = Extractor()
final_answer = _BOXED.final
probe_answer = _BOXED.probe
split_reasoning = split_thinking


def split_tokens(ids: list[int], end: list[int], *, thinking: bool = True,
                 start: list[int] | None = None) -> tuple[list[int] | None, list[int] | None]:
    """(reasoning IDs, content IDs) of a branch, as vLLM's reasoning parsers split it.

    The thinking block ends at the first `end` sequence (``</think>``); a leading `start` (``<think>``) is
    dropped. No end: the branch is still thinking, all reasoning and no content; `thinking` False (the
    template closed the block already, ``enable_thinking: false``) or no `end` known: all content.
    """
    if not thinking or not end:
        return None, list(ids)
    if start and ids[:len(start)] == start:
        ids = ids[len(start):]
    n = len(end)
    for i in range(len(ids) - n + 1):
        if ids[i:i + n] == end:
            return ids[:i], ids[i + n:] or None
    return list(ids), None
