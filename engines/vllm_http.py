"""vLLM's OpenAI server over HTTP as a token engine: token-ID prompts, token-ID answers, one pool.

Every segment and probe is one call whose prompt is a list of token IDs, so the engine never
re-tokenises text and its automatic prefix cache sees the exact prefix of the branch. Where the server
has vLLM's token-in/token-out endpoint (``vllm serve --enable-scale-out``: ``/inference/v1/generate``
with ``output_mode="tokens"``) the calls go there (``api="auto"``, the default, or ``"generate"``):
vLLM then never detokenises what it decodes, which the gateway does not read (it detokenises the
tokens it keeps itself, once); elsewhere they are `/v1/completions` calls with `return_token_ids`.
Both take the same sampling fields and answer with the same token IDs (checked against a real server).
`/tokenize` applies the chat template once per request. One shared `httpx.AsyncClient` (connection
pooling) serves all requests of the gateway. Cancelling an awaiting call closes its connection,
which makes vLLM abort the request (measured: `vllm:num_requests_running` drops within 0.02 s).
Transport and schema failures are mapped to `EngineDown` / `EngineTimeout` / `EngineGarbage` /
`EngineRejected` at the boundary (`http_common.HTTPEngine`, shared with the SGLang adapter).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx

from .base import Capabilities, GenerateResult, Sampling, StreamChunk
from .errors import EngineError, EngineGarbage, EngineTimeout
from .http_common import HTTPEngine, decode_response, token_list

log = logging.getLogger(__name__)
_CACHE_INFO = re.compile(r"^vllm:cache_config_info\{([^}]*)\}", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')

__all__ = ["APIS", "VLLMHTTPEngine"]

APIS = ("auto", "completions", "generate")  # which route decodes: auto = generate where the server has it
GENERATE = "/inference/v1/generate"


class VLLMHTTPEngine(HTTPEngine):
    """A vLLM OpenAI-compatible server at `url` (e.g. ``http://127.0.0.1:8000``)."""

    name = "vllm"
    capabilities = Capabilities(passthrough=True, token_stream=True)

    def __init__(self, url: str, model: str | None = None, *, api: str = "auto", **options: Any) -> None:
        if api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, got {api!r}")
        super().__init__(url, model, **options)
        self.api = api  # "completions" or "generate" once `start` resolved "auto"

    async def start(self) -> None:
        """Resolve the served model name when none was configured (first of `/v1/models`), the route that
        decodes (`api`), and the KV block size the server runs with (``capabilities.kv_block_size``)."""
        if self.api != "completions":
            await self._resolve_api()
        if not self.model:
            data = await self._call("GET", "/v1/models")
            try:
                self.model = str(data["data"][0]["id"])
            except (KeyError, IndexError, TypeError) as exc:
                raise EngineGarbage(f"vLLM at {self.url}: /v1/models lists no model ({exc!r})") from exc
        if self.capabilities.kv_block_size is None:
            block = await self._block_size()
            if block is not None:
                self.capabilities = replace(self.capabilities, kv_block_size=block)

    async def _resolve_api(self) -> None:
        """"generate" when the server lists `GENERATE` in its OpenAPI schema; "completions" otherwise for
        "auto", an error naming the flag for "generate"."""
        try:
            paths = (await self._call("GET", "/openapi.json")).get("paths") or {}
        except (EngineError, AttributeError) as exc:
            paths = {}
            log.info("vLLM at %s: no OpenAPI schema to look for %s in (%s)", self.url, GENERATE, exc)
        found = GENERATE in paths
        if self.api == "generate" and not found:
            raise EngineError(f"vLLM at {self.url} has no {GENERATE} (the token-in/token-out endpoint): start it "
                              "with --enable-scale-out, or use the completions API")
        self.api = "generate" if found else "completions"
        log.info("vLLM at %s: decoding through %s", self.url, GENERATE if found else "/v1/completions")

    @property
    def _route(self) -> str:
        return GENERATE if self.api == "generate" else "/v1/completions"

    async def _block_size(self) -> int | None:
        """The prefix cache's block size from the ``vllm:cache_config_info`` series of `/metrics` (None when
        the server does not publish it: metrics off, an older vLLM)."""
        try:
            response = await self._send("GET", "/metrics", timeout=10.0)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except (EngineError, httpx.HTTPError) as exc:
            log.info("vLLM at %s: no /metrics to read the KV block size from (%s)", self.url, exc)
            return None
        found = _CACHE_INFO.search(response.text) if response.status_code == 200 else None
        labels = dict(_LABEL.findall(found.group(1))) if found else {}
        for key in ("hash_block_size", "effective_attention_block_size", "block_size"):  # the unit hits come in
            if labels.get(key, "").isdigit() and int(labels[key]) > 0:
                return int(labels[key])
        log.info("vLLM at %s: /metrics names no KV block size", self.url)
        return None

    async def tokenize_chat(self, messages: list[dict[str, Any]], **template_kwargs: Any) -> list[int]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "add_generation_prompt": True}
        if template_kwargs:
            body["chat_template_kwargs"] = template_kwargs
        return _ids(await self._call("POST", "/tokenize", body), "/tokenize")

    async def tokenize_text(self, text: str) -> list[int]:
        body = {"model": self.model, "prompt": text, "add_special_tokens": False}
        return _ids(await self._call("POST", "/tokenize", body), "/tokenize")

    async def detokenize(self, token_ids: list[int]) -> str:
        data = await self._call("POST", "/detokenize", {"model": self.model, "tokens": token_ids})
        prompt = data.get("prompt") if isinstance(data, dict) else None
        if not isinstance(prompt, str):
            raise EngineGarbage(f"{self.url}/detokenize: no 'prompt' string in the response")
        return prompt

    def _body(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": max_tokens, "skip_special_tokens": False}
        for key in ("temperature", "top_p", "seed"):
            value = getattr(sampling, key)
            if value is not None:
                params[key] = value
        if sampling.ignore_eos:
            params["ignore_eos"] = True
        if self.api == "generate":
            return {"model": self.model, "token_ids": prompt_ids, "output_mode": "tokens",
                    "sampling_params": {**params, "detokenize": False}}
        return {"model": self.model, "prompt": prompt_ids, "return_token_ids": True, **params}

    async def stream(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling, request_id: str,
                     chunk_tokens: int = 1) -> AsyncIterator[StreamChunk]:
        """One streamed call (`_route`), read as token IDs (``return_token_ids`` on every completions chunk; the
        chunks' text is never used: a prompt ending inside a UTF-8 character makes vLLM's first delta
        carry the whole prompt's text). `chunk_tokens` is vLLM's per-request ``stream_interval`` (servers
        that predate it ignore it and send every token). Closing the iterator closes the connection, which
        aborts the call."""
        body = {**self._body(prompt_ids, max_tokens, sampling), "stream": True,
                "stream_options": {"include_usage": True}}
        if chunk_tokens > 1:  # a sampling parameter of vLLM's; the completions API takes it at the top level
            (body["sampling_params"] if self.api == "generate" else body)["stream_interval"] = chunk_tokens
        where = f"{self.url}{self._route}"
        response = await self._send("POST", self._route, body, {"X-Request-Id": request_id})
        try:
            if response.status_code != 200:
                await response.aread()
                decode_response(response, where)  # raises the mapped error
                raise EngineGarbage(f"{where}: status {response.status_code}")
            finish: str | None = None
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = _chunk(json.loads(data), where)
                    if chunk.finish_reason == "abort":
                        raise EngineError(f"{where}: the engine aborted the call ({request_id})")
                    finish = chunk.finish_reason or finish
                    if chunk.prompt_tokens is not None and finish is not None:  # the usage chunk: last
                        yield StreamChunk(chunk.token_ids, finish, chunk.prompt_tokens, chunk.cached_tokens)
                        return
                    if chunk.token_ids:
                        yield StreamChunk(chunk.token_ids)
            except httpx.TimeoutException as exc:
                raise EngineTimeout(f"timed out reading the stream of {where}") from exc
            except httpx.TransportError as exc:
                raise await self._lost(self._route, exc) from exc
            except (ValueError, TypeError) as exc:
                raise EngineGarbage(f"{where}: unexpected stream chunk ({exc!r})") from exc
            if finish is None:
                raise EngineError(f"{where}: the stream of {request_id} ended without a finish reason")
            yield StreamChunk([], finish)
        finally:
            await response.aclose()

    async def generate(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling,
                       request_id: str) -> GenerateResult:
        body = self._body(prompt_ids, max_tokens, sampling)
        data = await self._call("POST", self._route, body, request_id=request_id)
        try:
            choice = data["choices"][0]
            usage = data["usage"]
            ids = choice["token_ids"]
            if not isinstance(ids, list) or not all(type(t) is int for t in ids):
                raise TypeError("token_ids is not a list of ints (is return_token_ids supported?)")
            details = usage.get("prompt_tokens_details") or {}
            return GenerateResult(token_ids=ids, text=str(choice.get("text") or ""),
                                  finish_reason=str(choice.get("finish_reason") or "length"),
                                  prompt_tokens=int(usage["prompt_tokens"]),
                                  completion_tokens=int(usage["completion_tokens"]),
                                  cached_tokens=int(details.get("cached_tokens") or 0))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise EngineGarbage(f"{self.url}{self._route}: unexpected response ({exc!r})") from exc


def _chunk(data: Any, where: str) -> StreamChunk:
    """One SSE event of a streamed completion: its token IDs, finish reason and (usage chunk) counts."""
    choices = data.get("choices") or []
    ids: list[int] = []
    finish = None
    if choices:
        ids = choices[0].get("token_ids") or []
        if not isinstance(ids, list) or not all(type(t) is int for t in ids):
            raise TypeError("token_ids is not a list of ints (is return_token_ids supported?)")
        finish = choices[0].get("finish_reason")
    usage = data.get("usage")
    if not usage:
        return StreamChunk(ids, finish)
    details = usage.get("prompt_tokens_details") or {}
    return StreamChunk(ids, finish, int(usage["prompt_tokens"]), int(details.get("cached_tokens") or 0))


def _ids(data: Any, where: str) -> list[int]:
    return token_list(data, "tokens", where)
