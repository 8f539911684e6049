"""The token-engine contract: token IDs in, token IDs out, cancellation = abort.

A `TokenEngine` applies the chat template once (`tokenize_chat`) and then only ever sees token
IDs: every branch segment and probe is `generate(prompt_ids, max_tokens, sampling, request_id)`.
Cancelling the task that awaits `generate` must stop the work in the engine (vLLM over HTTP: the
closed connection aborts the request; in-process vLLM: `AsyncLLM.abort`). Failures are raised as
the `EngineError` subclasses of `autotts.engines.errors`, never as transport exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["GenerateResult", "Sampling", "TokenEngine", "branch_seed"]


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling settings of one engine call (the engine's defaults where None)."""

    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    ignore_eos: bool = False

    def with_seed(self, seed: int | None) -> Sampling:
        return Sampling(self.temperature, self.top_p, seed, self.ignore_eos)


@dataclass(frozen=True, slots=True)
class GenerateResult:
    """One finished engine call: the new tokens, why it stopped and the engine's own usage counts."""

    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (EOS / stop token) or "length" (max_tokens reached)
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@runtime_checkable
class TokenEngine(Protocol):
    """What the executor needs from an engine (see `vllm_http.VLLMHTTPEngine`, `vllm_inproc.VLLMInprocEngine`)."""

    name: str
    model: str

    async def tokenize_chat(self, messages: list[dict[str, Any]], **template_kwargs: Any) -> list[int]:
        """The prompt IDs of `messages` with the chat template and generation prompt applied."""
        ...

    async def tokenize_text(self, text: str) -> list[int]:
        """IDs of raw text (no template, no special tokens added): probe suffixes, /v1/completions prompts."""
        ...

    async def generate(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling,
                       request_id: str) -> GenerateResult:
        ...

    async def detokenize(self, token_ids: list[int]) -> str:
        ...

    async def health(self) -> bool:
        ...

    async def close(self) -> None:
        ...


def branch_seed(seed: int, branch: int, call: int) -> int:
    """A distinct, reproducible sampling seed per (request seed, branch, call on that branch)."""
    return (seed * 1_000_003 + branch * 7_919 + call * 104_729) % (2**31 - 1)
