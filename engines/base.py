"""The engine seam: one small async protocol, token IDs in and out, and capabilities declared, never probed.

A `TokenEngine` applies the chat template once (`tokenize_chat`) and then only ever sees token
IDs: every branch segment and probe is `generate(prompt_ids, max_tokens, sampling, request_id)`.
Cancelling the task that awaits `generate` must stop the work in the engine (vLLM over HTTP: the
closed connection aborts the request; SGLang: ``/abort_request`` by id; in-process vLLM:
`AsyncLLM.abort`). Failures are raised as the `EngineError` subclasses of `autotts.engines.errors`,
never as transport exceptions.

What an engine can do beyond the protocol it states in its `capabilities` (a frozen `Capabilities`);
callers read that, they never look for methods. An engine that declares ``passthrough`` also
implements `Passthrough` (OpenAI requests forwarded unchanged, for controller `none`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Capabilities", "GenerateResult", "Passthrough", "Sampling", "StreamChunk", "TokenEngine",
           "TokenStreamer", "block_misfit", "branch_seed"]


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


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """Part of a streamed call: new token IDs, and on the last chunk why it stopped and the engine's usage."""

    token_ids: list[int]
    finish_reason: str | None = None  # "stop" or "length" on the last chunk, None before
    prompt_tokens: int | None = None  # the engine's counts, where it reports them (the last chunk)
    cached_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine offers beyond `TokenEngine`, as the engine declares it."""

    #: serves OpenAI's /v1/chat/completions and /v1/completions itself and implements `Passthrough`:
    #: controller `none` forwards a request unchanged, streamed or not
    passthrough: bool = False
    #: a cancelled call is aborted in the engine by its request id (SGLang ``/abort_request``,
    #: ``AsyncLLM.abort``); without it, closing the call's connection is what aborts it (vLLM over HTTP)
    abort_by_id: bool = False
    #: tokens per KV-cache block, when the adapter knows it (prefix-cache hits come in whole blocks)
    kv_block_size: int | None = None
    #: implements `TokenStreamer`: one call streams its token IDs as they are decoded, closing it aborts
    #: the call (what ``branch_mode: stream`` runs a branch on)
    token_stream: bool = False


@runtime_checkable
class TokenEngine(Protocol):
    """What the executor, the replica pool and `autotts collect` need from an engine.

    Implementations: `vllm_http.VLLMHTTPEngine`, `sglang_http.SGLangHTTPEngine`,
    `vllm_inproc.VLLMInprocEngine`, `pool.ReplicaPool` (and its `Lease`), `FakeEngine`, `MockEngine`.
    """

    name: str  # the adapter's kind, e.g. "vllm"
    model: str  # the served model's name ("" until `start` resolved it)
    url: str | None  # where the engine runs (None: in this process)
    capabilities: Capabilities

    async def start(self) -> None:
        """Connect (or start the engine in process) and resolve the model name; idempotent."""
        ...

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


class Passthrough(Protocol):
    """What an engine with ``capabilities.passthrough`` adds: OpenAI requests to its own routes, unchanged."""

    async def passthrough(self, path: str, body: dict[str, Any]) -> Any:
        """The engine's JSON answer to `body` on `path` (``/v1/chat/completions`` or ``/v1/completions``)."""
        ...

    async def passthrough_stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The engine's SSE bytes for `body`; errors before the first byte raise, later ones end the stream
        with an `EngineError`."""
        ...


class TokenStreamer(Protocol):
    """What an engine with ``capabilities.token_stream`` adds: one call read as it decodes."""

    def stream(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling, request_id: str,
               chunk_tokens: int = 1) -> AsyncIterator[StreamChunk]:
        """The call's chunks in order, the last with its finish reason. Closing the iterator early (or
        cancelling the task reading it) aborts the call in the engine; a call the engine aborted or cut
        off without a finish reason raises an `EngineError`, never ends like a finished one.

        `chunk_tokens` asks the engine to send tokens in chunks of that many (the first token alone, then
        every `chunk_tokens`, the rest with the finish), where it can: fewer chunks to write and parse."""
        ...


def branch_seed(seed: int, branch: int, call: int) -> int:
    """A distinct, reproducible sampling seed per (request seed, branch, call on that branch)."""
    return (seed * 1_000_003 + branch * 7_919 + call * 104_729) % (2**31 - 1)


def block_misfit(segment_tokens: int, kv_block_size: int | None) -> str | None:
    """Why Δ = `segment_tokens` wastes the engine's prefix cache, or None when it fits (or the size is unknown).

    Only full KV blocks are cached: with Δ a multiple of the block size every segment boundary moves
    the cached prefix by whole blocks; otherwise the partial block at each boundary is recomputed by
    every later call, and a Δ below one block leaves whole segments uncached.
    """
    if not kv_block_size or segment_tokens % kv_block_size == 0:
        return None
    above = -(-segment_tokens // kv_block_size) * kv_block_size
    fits = " or ".join(f"Δ = {d}" for d in (above - kv_block_size, above) if d > 0)
    return (f"segment_tokens (Δ) = {segment_tokens} is not a multiple of the engine's KV block size "
            f"({kv_block_size} tokens): every segment boundary leaves a partial block the prefix cache cannot "
            f"hold, recomputed on each later call; {fits} fits")
