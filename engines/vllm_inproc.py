"""vLLM's `AsyncLLM` inside the gateway process as a token engine: no HTTP or JSON hop per call.

The engine core still runs in its own process (vLLM starts it); the scheduler, the prefix cache and
cancellation are the same as behind vLLM's HTTP server. `vllm` is imported only when the engine is
built, so the gateway runs without it. Build it under ``if __name__ == "__main__"`` (vLLM spawns).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .base import Capabilities, GenerateResult, Sampling
from .errors import EngineDown, EngineError, EngineRejected

__all__ = ["VLLMInprocEngine"]


class VLLMInprocEngine:
    """`AsyncLLM` for `model` (a directory or model id); extra engine arguments via `engine_args`."""

    name = "vllm-inproc"
    url = None

    def __init__(self, model: str, *, served_name: str | None = None, **engine_args: Any) -> None:
        self.model_path = model
        self.model = served_name or model
        defaults = {"enforce_eager": True, "kv_cache_memory_bytes": 256 * 2**20, "block_size": 32,
                    "enable_prefix_caching": True}
        self.engine_args = {**defaults, **engine_args}
        self.capabilities = Capabilities(abort_by_id=True, kv_block_size=self.engine_args.get("block_size"))
        self.engine: Any = None
        self._tokenizer: Any = None

    async def start(self) -> None:
        if self.engine is not None:
            return
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineDown(f"engine vllm-inproc needs vllm installed (pip install 'autotts[vllm]'): {exc}") from exc
        args = AsyncEngineArgs(model=self.model_path, **self.engine_args)
        self.engine = AsyncLLM.from_engine_args(args)
        self._tokenizer = self.engine.get_tokenizer()
        block = getattr(getattr(getattr(self.engine, "vllm_config", None), "cache_config", None), "block_size", None)
        if isinstance(block, int) and block > 0:  # what the engine resolved, not what was asked for
            self.capabilities = Capabilities(abort_by_id=True, kv_block_size=block)

    async def tokenize_chat(self, messages: list[dict[str, Any]], **template_kwargs: Any) -> list[int]:
        ids = self._tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                  **template_kwargs)
        if hasattr(ids, "keys"):  # transformers >= 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return [int(t) for t in ids]

    async def tokenize_text(self, text: str) -> list[int]:
        return [int(t) for t in self._tokenizer.encode(text, add_special_tokens=False)]

    async def detokenize(self, token_ids: list[int]) -> str:
        return str(self._tokenizer.decode(token_ids))

    async def generate(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling,
                       request_id: str) -> GenerateResult:
        from vllm import SamplingParams, TokensPrompt

        kwargs: dict[str, Any] = {"max_tokens": max_tokens, "ignore_eos": sampling.ignore_eos,
                                  "skip_special_tokens": False}
        for key in ("temperature", "top_p", "seed"):
            value = getattr(sampling, key)
            if value is not None:
                kwargs[key] = value
        try:
            params = SamplingParams(**kwargs)
        except (ValueError, TypeError) as exc:
            raise EngineRejected(f"vllm-inproc: bad sampling parameters: {exc}") from exc
        final = None
        try:
            async for out in self.engine.generate(TokensPrompt(prompt_token_ids=prompt_ids), params,
                                                  request_id=request_id):
                final = out
        except asyncio.CancelledError:
            raise  # AsyncLLM.generate aborts the request itself on cancellation
        except ValueError as exc:  # validation, e.g. prompt longer than the context
            raise EngineRejected(f"vllm-inproc rejected the request: {exc}") from exc
        except Exception as exc:
            raise EngineError(f"vllm-inproc failed: {type(exc).__name__}: {exc}") from exc
        if final is None or not final.outputs:
            raise EngineError("vllm-inproc returned no output")
        choice = final.outputs[0]
        ids = list(choice.token_ids)
        return GenerateResult(token_ids=ids, text=choice.text or "",
                              finish_reason=str(choice.finish_reason or "length"),
                              prompt_tokens=len(prompt_ids), completion_tokens=len(ids),
                              cached_tokens=int(final.num_cached_tokens or 0))

    def unfinished(self) -> int:
        """Requests the engine still holds (0 once every call returned or was cancelled)."""
        return 0 if self.engine is None else int(self.engine.get_num_unfinished_requests())

    async def health(self) -> bool:
        if self.engine is None:
            return False
        try:
            await self.engine.check_health()
        except Exception:
            return False
        return True

    async def close(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None
