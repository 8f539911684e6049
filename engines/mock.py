r"""`MockEngine(handler)`: a token engine whose every generation is answered by a function you write.

In the spirit of httpx's `MockTransport`: `handler(request)` receives a `GenerateRequest` (the prompt's
IDs and their text, ``max_tokens``, the sampling settings, the request id) and returns the reply:

* a `str`: the tokens of that text, then EOS (``finish_reason="stop"``); cut at ``max_tokens`` with
  ``finish_reason="length"`` when longer;
* a `GenerateResult`, returned as it is (any tokens, finish reason and usage counts).

The handler may be ``async`` (to wait, or to hang until cancelled) and may raise an `EngineError`
(`EngineDown`, `EngineRejected`, ...) to script a failure. Text and IDs map one UTF-8 byte to one ID,
and the chat template is ``<|role|>content`` per message followed by ``<|assistant|>``, so a handler
can read the prompt (``request.prompt``) and tell a probe (it ends with the probe suffix) from a segment.
`calls` keeps every request, `in_flight` counts calls not yet returned.

>>> import asyncio
>>> from autotts.engines import MockEngine, Sampling
>>> def handler(request):
...     return "so \\boxed{7}" if request.prompt.endswith("3 + 4?<|assistant|>") else "hm"
>>> engine = MockEngine(handler)
>>> async def ask(question):
...     prompt = await engine.tokenize_chat([{"role": "user", "content": question}])
...     return await engine.generate(prompt, 64, Sampling(seed=1), f"req-{len(engine.calls)}")
>>> result = asyncio.run(ask("3 + 4?"))
>>> result.text, result.finish_reason, result.completion_tokens
('so \\boxed{7}', 'stop', 12)
>>> asyncio.run(ask("2 + 2?")).text, [c.request_id for c in engine.calls]
('hm', ['req-0', 'req-1'])
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .base import Capabilities, GenerateResult, Sampling

__all__ = ["GenerateRequest", "Handler", "MockEngine"]


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """One `generate` call as the handler sees it."""

    prompt_ids: list[int]
    max_tokens: int
    sampling: Sampling
    request_id: str

    @property
    def prompt(self) -> str:
        """The prompt's text (the mock's one-byte-per-ID encoding)."""
        return _decode(self.prompt_ids)


Handler = Callable[[GenerateRequest], "str | GenerateResult | Awaitable[str | GenerateResult]"]


class MockEngine:
    """A `TokenEngine` answering `generate` with `handler(GenerateRequest)`; see the module docstring."""

    name = "mock"
    capabilities = Capabilities()

    def __init__(self, handler: Handler, *, model: str = "mock", url: str | None = None) -> None:
        self.handler = handler
        self.model = model
        self.url = url
        self.calls: list[GenerateRequest] = []
        self.in_flight = 0

    async def start(self) -> None:
        return None

    async def tokenize_chat(self, messages: list[dict[str, Any]], **template_kwargs: Any) -> list[int]:
        text = "".join(f"<|{m['role']}|>{m.get('content') or ''}" for m in messages) + "<|assistant|>"
        return _encode(text)

    async def tokenize_text(self, text: str) -> list[int]:
        return _encode(text)

    async def detokenize(self, token_ids: list[int]) -> str:
        return _decode(token_ids)

    async def generate(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling,
                       request_id: str) -> GenerateResult:
        request = GenerateRequest(list(prompt_ids), max_tokens, sampling, request_id)
        self.calls.append(request)
        self.in_flight += 1
        try:
            reply = self.handler(request)
            if inspect.isawaitable(reply):
                reply = await reply
        finally:
            self.in_flight -= 1
        if isinstance(reply, GenerateResult):
            return reply
        ids = _encode(reply)
        finish = "stop" if len(ids) <= max_tokens else "length"
        ids = ids[:max_tokens]
        return GenerateResult(token_ids=ids, text=_decode(ids), finish_reason=finish, prompt_tokens=len(prompt_ids),
                              completion_tokens=len(ids), cached_tokens=0)

    async def health(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def _encode(text: str) -> list[int]:
    return list(text.encode())


def _decode(ids: list[int]) -> str:
    return bytes(t % 256 for t in ids).decode(errors="replace")
