"""SGLang's native HTTP API as a token engine: `/generate` with `input_ids`, aborts by request id.

SGLang serves its own endpoints next to OpenAI-compatible ones; the gateway uses these (schemas as in
SGLang's docs and `http_server.py` / `io_struct.py` / `sampling_params.py`, current tree):

* ``POST /generate`` ``{"input_ids", "sampling_params", "rid", "stream": false}`` for every segment
  and probe. `sampling_params` carries ``max_new_tokens``, ``temperature``, ``top_p``,
  ``sampling_seed`` (SGLang's name for the per-request seed; sent only when a seed is set, older
  SGLang versions without the field reject it), ``ignore_eos`` and ``skip_special_tokens: false``.
  The answer's ``output_ids`` are the new tokens, ``text`` their decoding, ``meta_info`` has
  ``finish_reason`` (``{"type": "length"|"stop"|"abort", ...}``), ``prompt_tokens``,
  ``completion_tokens`` and ``cached_tokens`` (the radix-cache hit, on by default in SGLang).
* ``POST /abort_request`` ``{"rid"}``: sent (shielded, best effort, short timeout) when the awaiting
  task is cancelled or times out. SGLang notices a closed connection of a non-streaming request only
  when its wait loop next times out (seconds), so closing the socket alone is not enough.
* ``POST /tokenize`` ``{"prompt", "add_special_tokens": false}`` → ``{"tokens"}`` and
  ``POST /detokenize`` ``{"tokens", "skip_special_tokens": false}`` → ``{"text"}``.
* The chat template: SGLang's `/tokenize` takes text only, so `tokenize_chat` asks
  ``/v1/chat/completions`` for one token with ``return_prompt_token_ids: true`` and reads the
  templated prompt's IDs from the choice (``choices[0].prompt_token_ids``; ``sglext.prompt_token_ids``
  is accepted too). That costs one prefill per request, which then sits in the radix cache for the
  branches. SGLang versions without ``return_prompt_token_ids`` fail here with a clear error.
* ``GET /v1/models`` (else ``/get_model_info``'s ``model_path``) names the model; ``GET /health``;
  ``/v1/chat/completions`` and ``/v1/completions`` for controller `none` (`http_common`).

Verified only against the schema-following fake in tests/unit/sglang_fake.py: SGLang itself does not
install on CPU-only machines.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx

from .base import Capabilities, GenerateResult, Sampling
from .errors import EngineError, EngineGarbage, EngineRejected, EngineTimeout
from .http_common import HTTPEngine, token_list

__all__ = ["SGLangHTTPEngine"]

ABORT_TIMEOUT_S = 2.0


class SGLangHTTPEngine(HTTPEngine):
    """An SGLang server (``python -m sglang.launch_server``) at `url`, e.g. ``http://127.0.0.1:30000``."""

    name = "sglang"
    capabilities = Capabilities(passthrough=True, abort_by_id=True)

    def __init__(self, url: str, model: str | None = None, *, timeout_s: float = 120.0,
                 connect_timeout_s: float = 5.0, max_connections: int = 256, keepalive_s: float = 2.0,
                 client: httpx.AsyncClient | None = None) -> None:
        super().__init__(url, model, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                         max_connections=max_connections, keepalive_s=keepalive_s, client=client)
        self._aborts: set[asyncio.Task[None]] = set()  # in-flight abort calls (kept referenced)

    async def start(self) -> None:
        """Resolve the served model name when none was configured."""
        if self.model:
            return
        try:
            data = await self._call("GET", "/v1/models")
            self.model = str(data["data"][0]["id"])
            return
        except (KeyError, IndexError, TypeError, EngineGarbage, EngineRejected):
            pass  # no OpenAI model list here: ask the native route
        info = await self._call("GET", "/get_model_info")
        path = info.get("model_path") if isinstance(info, dict) else None
        if not isinstance(path, str) or not path:
            raise EngineGarbage(f"SGLang at {self.url}: neither /v1/models nor /get_model_info names a model")
        self.model = path

    # --- tokens <-> text ----------------------------------------------------------------
    async def tokenize_chat(self, messages: list[dict[str, Any]], **template_kwargs: Any) -> list[int]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": 1, "stream": False,
                                "return_prompt_token_ids": True}
        if template_kwargs:
            body["chat_template_kwargs"] = template_kwargs
        data = await self._call("POST", "/v1/chat/completions", body)
        for holder in _prompt_id_holders(data):
            ids = holder.get("prompt_token_ids")
            if isinstance(ids, list) and ids and all(type(t) is int for t in ids):
                return ids
        raise EngineGarbage(f"{self.url}/v1/chat/completions returned no prompt_token_ids: this SGLang "
                            "version lacks `return_prompt_token_ids`, which the gateway needs to apply the "
                            "chat template")

    async def tokenize_text(self, text: str) -> list[int]:
        body = {"model": self.model, "prompt": text, "add_special_tokens": False}
        return token_list(await self._call("POST", "/tokenize", body), "tokens", f"{self.url}/tokenize")

    async def detokenize(self, token_ids: list[int]) -> str:
        data = await self._call("POST", "/detokenize",
                                {"model": self.model, "tokens": token_ids, "skip_special_tokens": False})
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise EngineGarbage(f"{self.url}/detokenize: no 'text' string in the response")
        return text

    # --- generation -----------------------------------------------------------------------
    async def generate(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling,
                       request_id: str) -> GenerateResult:
        params: dict[str, Any] = {"max_new_tokens": max_tokens, "skip_special_tokens": False}
        if sampling.temperature is not None:
            params["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            params["top_p"] = sampling.top_p
        if sampling.seed is not None:
            params["sampling_seed"] = sampling.seed
        if sampling.ignore_eos:
            params["ignore_eos"] = True
        body = {"input_ids": prompt_ids, "sampling_params": params, "rid": request_id, "stream": False}
        try:
            data = await self._call("POST", "/generate", body)
        except (asyncio.CancelledError, EngineError) as exc:
            if isinstance(exc, asyncio.CancelledError | EngineTimeout):
                await self._abort(request_id)
            raise
        return self._result(data)

    def _result(self, data: Any) -> GenerateResult:
        where = f"{self.url}/generate"
        try:
            meta = data["meta_info"]
            ids = data["output_ids"]
            if not isinstance(ids, list) or not all(type(t) is int for t in ids):
                raise TypeError("output_ids is not a list of ints")
            finish = meta.get("finish_reason")
            kind = finish.get("type") if isinstance(finish, dict) else finish
            if kind == "abort":
                message = finish.get("message") if isinstance(finish, dict) else None
                raise EngineError(f"SGLang aborted the request {meta.get('id', '')!s}: {message or 'no reason given'}")
            if kind not in ("stop", "length", None):
                raise ValueError(f"unknown finish_reason {finish!r}")
            return GenerateResult(token_ids=ids, text=str(data.get("text") or ""), finish_reason=kind or "length",
                                  prompt_tokens=int(meta["prompt_tokens"]),
                                  completion_tokens=int(meta["completion_tokens"]),
                                  cached_tokens=int(meta.get("cached_tokens") or 0))
        except EngineError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise EngineGarbage(f"{where}: unexpected response ({exc!r})") from exc

    async def _abort(self, rid: str) -> None:
        """Tell SGLang to drop `rid`; survives the caller's own cancellation, never raises."""
        task = asyncio.get_running_loop().create_task(self._send_abort(rid))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)
        with contextlib.suppress(asyncio.CancelledError):  # cancelled again while waiting: it still goes out
            await asyncio.shield(task)

    async def _send_abort(self, rid: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # best effort: the engine is gone or slow
            await self.client.post("/abort_request", json={"rid": rid}, timeout=ABORT_TIMEOUT_S)

    async def close(self) -> None:
        if self._aborts:
            await asyncio.gather(*self._aborts, return_exceptions=True)
        await super().close()


def _prompt_id_holders(data: Any) -> list[dict[str, Any]]:
    """Where SGLang versions put the templated prompt's IDs: the first choice, or the `sglext` block."""
    holders: list[dict[str, Any]] = []
    if isinstance(data, dict):
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            holders.append(choices[0])
        if isinstance(data.get("sglext"), dict):
            holders.append(data["sglext"])
    return holders
