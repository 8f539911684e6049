"""A deterministic in-process token engine, for tests and examples that need no model.

Token IDs depend only on (sampling seed, position in the sequence), so the same branch decodes the
same way whichever segment boundaries it is cut at. A sequence "emits EOS" when it reaches `eos_at`
tokens (``finish_reason == "stop"``); a call that starts past that point (a probe forced after the end)
decodes normally. With ``temperature == 0`` (greedy) the seed plays no part, as in a real engine.
`stream` yields the same tokens a few at a time (`stream_chunk`, or as vLLM's ``stream_interval`` does
when asked for `chunk_tokens`: the first alone, then that many; each chunk after `delay_s`).
`detokenize` maps each ID to one printable character, and `in_flight` counts calls (and streams) not yet
returned, so tests can check that cancellation stops work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from .base import Capabilities, GenerateResult, Sampling, StreamChunk

__all__ = ["FakeEngine"]

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 "


class FakeEngine:
    """A `TokenEngine` that needs no model: deterministic tokens, EOS after `eos_at`, optional `delay_s`."""

    name = "fake"
    capabilities = Capabilities(token_stream=True)

    def __init__(self, *, model: str = "fake", eos_at: int | None = None, delay_s: float = 0.0,
                 prompt_base: int = 0, url: str | None = None, stream_chunk: int = 3) -> None:
        self.stream_chunk = stream_chunk
        self.model = model
        self.url = url
        self.eos_at = eos_at  # generated tokens after which a sequence stops (None: never)
        self.delay_s = delay_s
        self.prompt_base = prompt_base
        self.in_flight = 0
        self.calls: list[dict[str, Any]] = []

    async def start(self) -> None:
        return None

    async def tokenize_chat(self, messages: list[dict[str, Any]], **template_kwargs: Any) -> list[int]:
        text = "".join(f"<{m['role']}>{m.get('content') or ''}" for m in messages) + "<assistant>"
        return [1000 + b for b in text.encode()]

    async def tokenize_text(self, text: str) -> list[int]:
        return [1000 + b for b in text.encode()]

    async def detokenize(self, token_ids: list[int]) -> str:
        return "".join(chr(t - 1000) if 1000 <= t < 1256 else _ALPHABET[t % len(_ALPHABET)] for t in token_ids)

    async def generate(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling,
                       request_id: str) -> GenerateResult:
        self.calls.append({"prompt": list(prompt_ids), "max_tokens": max_tokens, "id": request_id})
        self.in_flight += 1
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            ids, finish = self._tokens(prompt_ids, max_tokens, sampling)
            return GenerateResult(token_ids=ids, text=await self.detokenize(ids), finish_reason=finish,
                                  prompt_tokens=len(prompt_ids), completion_tokens=len(ids), cached_tokens=0)
        finally:
            self.in_flight -= 1

    def _tokens(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling) -> tuple[list[int], str]:
        generated = len(prompt_ids) - self.prompt_base  # position of the first new token
        seed = 0 if sampling.temperature == 0 else sampling.seed or 0
        n, finish = max_tokens, "length"
        if self.eos_at is not None and generated < self.eos_at <= generated + max_tokens:
            n, finish = max(0, self.eos_at - generated), "stop"
        return [(seed * 31 + (generated + k) * 17) % 37 for k in range(n)], finish

    async def stream(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling, request_id: str,
                     chunk_tokens: int = 1) -> AsyncIterator[StreamChunk]:
        self.calls.append({"prompt": list(prompt_ids), "max_tokens": max_tokens, "id": request_id, "stream": True})
        self.in_flight += 1
        try:
            ids, finish = self._tokens(prompt_ids, max_tokens, sampling)
            step = chunk_tokens if chunk_tokens > 1 else self.stream_chunk
            starts = [0, *range(1, len(ids), step)] if chunk_tokens > 1 else range(0, len(ids), step)
            for start in starts:
                await asyncio.sleep(self.delay_s)
                yield StreamChunk(ids[start:1 if start == 0 and chunk_tokens > 1 else start + step])
            yield StreamChunk([], finish, len(prompt_ids), 0)
        finally:
            self.in_flight -= 1

    async def health(self) -> bool:
        return True

    async def close(self) -> None:
        return None
