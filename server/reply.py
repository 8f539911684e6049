"""What a finished episode's response says: the winning branch's own text, or a short answer sentence.

An app that swaps its reasoning endpoint for the gateway expects the response the engine would have
given: ``content`` is the winning branch's text after its thinking block, token for token, and the
thinking goes in ``reasoning_content`` (and ``reasoning``, newer vLLM's name). Both are decoded from
the token IDs the gateway holds (`TokenBranchBackend.text`), split at the thinking block's end token
as vLLM's reasoning parsers split it; ``/v1/completions`` returns the whole text, as vLLM does.

``response: "full"`` (default): a winner that was still decoding (the controller answered from
probes) is first decoded to its end within ``max_tokens``; a branch with no text after its thinking
(it hit the cap while thinking), an episode without a winning branch, or a replay store (no text) get
the answer sentence instead, and ``tts.response`` says why. ``response: "answer"``: the extractor's
answer sentence (``The answer is $\\boxed{70}$.``). ``tts.answer`` is always the extracted answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autotts.controllers.extractors import Extractor
from autotts.engines.backends import BranchBackend, Splitter

from .executor import EpisodeOutcome
from .replay import ReplayBranchBackend

__all__ = ["RESPONSES", "ReplyPlan", "compose"]

RESPONSES = ("full", "answer")


@dataclass(frozen=True)
class ReplyPlan:
    response: str = "full"
    extractor: Extractor = field(default_factory=Extractor)
    split: Splitter | None = None  # None: the whole text is content (completions)


async def compose(plan: ReplyPlan, backend: BranchBackend, outcome: EpisodeOutcome) -> EpisodeOutcome:
    """Fill the outcome's `content`, `reasoning` and `response` report."""
    answer, winner = outcome.answer, outcome.winner
    sentence = None if answer is None else plan.extractor.sentence(answer)
    report: dict[str, str | bool] = {"mode": plan.response}
    content = reasoning = None
    if winner is not None:
        if plan.response == "full" and not outcome.obs.branches[winner].finished:
            await backend.finish(winner)
            report["finished_winner"] = True
        content, reasoning, outcome.token_ids = await backend.text(winner, plan.split)
    if plan.response == "answer" or content is None:
        if plan.response == "full":
            report.update(mode="answer", reason=_why(backend, winner))
        content = sentence
    outcome.content, outcome.reasoning, outcome.response = content, reasoning, report
    return outcome


def _why(backend: BranchBackend, winner: int | None) -> str:
    if winner is None:
        return "no branch carries the answer"
    if isinstance(backend, ReplayBranchBackend):
        return "replay stores keep no text"
    return "the winning branch has no text after its thinking block within max_tokens"
