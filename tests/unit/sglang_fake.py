"""An in-process stand-in for an SGLang server, following SGLang's documented HTTP schema.

SGLang cannot be installed on CPU-only machines, so the SGLang adapter is tested against this FastAPI
app (run it with `autotts.server.background.BackgroundServer`). It answers the routes the adapter and
the gateway use, with SGLang's request and response shapes (docs: "SGLang Native APIs", "Sampling
Parameters"; source: http_server.py, io_struct.py, sampling_params.py):

* ``/generate``: ``input_ids`` or ``text``, ``sampling_params`` (``max_new_tokens``, ``temperature``,
  ``top_p``, ``sampling_seed``, ``ignore_eos``, ``skip_special_tokens``, ``no_stop_trim``), ``rid``,
  ``stream``. The answer is ``{"text", "output_ids", "meta_info": {"id", "finish_reason": {"type":
  "length", "length"} | {"type": "stop", "matched"} | {"type": "abort", "message"}, "prompt_tokens",
  "completion_tokens", "cached_tokens"}}``; streamed, ``data: {...}`` chunks (cumulative text and
  ids, SGLang's default) then ``data: [DONE]``.
* ``/abort_request`` ``{"rid"}``, ``/flush_cache``, ``/tokenize``, ``/detokenize``, ``/get_model_info``,
  ``/health``, ``/v1/models``, ``/metrics`` (``sglang:*`` counters), ``/v1/chat/completions`` and
  ``/v1/completions`` (``return_prompt_token_ids`` puts the templated prompt's IDs on the choice).
* Errors are SGLang's ``{"object": "error", "message", "type", "param", "code"}`` with status 400.

Behaviour that makes tests meaningful: token IDs depend only on (seed, absolute position) (greedy when
``temperature == 0``), so a branch decodes identically however it is cut into calls; a radix-style
prefix cache over every finished sequence gives ``cached_tokens``; each generated token takes
``token_delay_s``; a non-streaming request whose client went away is noticed only every
``disconnect_check_s`` (like SGLang's wait loop), so prompt stops need ``/abort_request``. The fake
records every generate call, the in-flight, finished and aborted rids, and per-route token counters.
Not part of the package: fakes live only at the HTTP boundary, the adapter under test is real.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # IDs 0, 1, 2
EOS = 2  # <|im_end|>, the chat models' end of turn
BYTE_BASE = len(SPECIALS)  # byte b is token BYTE_BASE + b
ALPHABET = "1234 x}"  # generated text; '}' closes a probe's \boxed{...}
CONTEXT_LEN = 4096


def encode(text: str) -> list[int]:
    """The fake tokenizer: special tokens by name, every other byte one token."""
    ids: list[int] = []
    i = 0
    while i < len(text):
        for sid, special in enumerate(SPECIALS):
            if text.startswith(special, i):
                ids.append(sid)
                i += len(special)
                break
        else:
            ids.extend(BYTE_BASE + b for b in text[i].encode())
            i += 1
    return ids


def decode(ids: list[int], skip_special_tokens: bool = True) -> str:
    out = bytearray()
    for t in ids:
        if t < BYTE_BASE:
            if not skip_special_tokens:
                out += SPECIALS[t].encode()
        else:
            out.append((t - BYTE_BASE) % 256)
    return out.decode(errors="replace")


def token_at(seed: int, position: int) -> int:
    """The (non-EOS) token a sequence samples at absolute `position` under `seed`."""
    h = (seed * 1_000_003 + position * 2_654_435_761) % 4_294_967_291
    return encode(ALPHABET[(h >> 7) % len(ALPHABET)])[0]


def chat_prompt(messages: list[dict[str, Any]], enable_thinking: bool = True) -> str:
    text = "".join(f"<|im_start|>{m['role']}\n{m.get('content') or ''}<|im_end|>\n" for m in messages)
    return text + "<|im_start|>assistant\n" + ("" if enable_thinking else "<think>\n\n</think>\n\n")


class PrefixCache:
    """A token trie over every sequence the fake has finished: longest cached prefix of a prompt."""

    def __init__(self) -> None:
        self.root: dict[int, dict] = {}

    def match(self, ids: list[int]) -> int:
        node, n = self.root, 0
        for t in ids[:-1]:  # the last prompt token is always computed (its logits are needed)
            if t not in node:
                break
            node, n = node[t], n + 1
        return n

    def insert(self, ids: list[int]) -> None:
        node = self.root
        for t in ids:
            node = node.setdefault(t, {})


class FakeSGLang:
    """State and behaviour of one fake SGLang server; `app` is its FastAPI application."""

    def __init__(self, *, model_path: str = "org/fake-sglang", served_name: str | None = None,
                 token_delay_s: float = 0.0, eos_at: int | None = None, disconnect_check_s: float = 4.0,
                 models_route: bool = True, prompt_token_ids: bool = True) -> None:
        self.model_path, self.served_name = model_path, served_name or model_path
        self.models_route = models_route  # False: no /v1/models (404), like a server without OpenAI routes
        self.prompt_token_ids = prompt_token_ids  # False: an SGLang without `return_prompt_token_ids`
        self.token_delay_s = token_delay_s
        self.eos_at = eos_at  # absolute position at which a sequence emits EOS (None: never)
        self.disconnect_check_s = disconnect_check_s
        self.cache = PrefixCache()
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []  # /generate request bodies, in arrival order
        self.in_flight: dict[str, float] = {}  # rid -> start time
        self.finished: list[str] = []
        self.aborted: list[str] = []  # rids stopped early (abort request or noticed disconnect)
        self.abort_requests: list[tuple[str, float]] = []  # (rid, time) of every /abort_request
        self.counters: dict[str, dict[str, int]] = {}  # route -> prompt/generation/cached tokens, requests
        self.inject: list[tuple[int, bytes]] = []  # next /generate answers: (status, raw body)
        self._abort_flags: set[str] = set()
        self._auto_seed = 0
        self.app = self._build()

    # --- bookkeeping --------------------------------------------------------------------
    def count(self, route: str, prompt: int, generated: int, cached: int) -> None:
        with self.lock:
            c = self.counters.setdefault(route, {"prompt": 0, "generation": 0, "cached": 0, "requests": 0})
            c["prompt"] += prompt
            c["generation"] += generated
            c["cached"] += cached
            c["requests"] += 1

    def totals(self) -> dict[str, int]:
        with self.lock:
            keys = ("prompt", "generation", "cached", "requests")
            return {k: sum(c[k] for c in self.counters.values()) for k in keys}

    # --- the engine -----------------------------------------------------------------------
    async def run(self, route: str, rid: str, input_ids: list[int], params: dict[str, Any],
                  request: Request | None, *, stream: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Decode `input_ids`; yields the final output, preceded when `stream` by the cumulative one
        after every token. `request` (non-streaming) is polled for a disconnect every `disconnect_check_s`."""
        max_new = params.get("max_new_tokens", 128)
        temperature = params.get("temperature", 1.0)
        seed = params.get("sampling_seed")
        if temperature == 0:
            seed = 0
        elif seed is None:
            self._auto_seed += 1
            seed = 10_000 + self._auto_seed
        skip = params.get("skip_special_tokens", True)
        cached = self.cache.match(input_ids)
        self.in_flight[rid] = time.monotonic()
        out: list[int] = []
        finish: dict[str, Any] = {"type": "length", "length": max_new}
        last_check = time.monotonic()
        done = False
        try:
            while len(out) < max_new:
                if rid in self._abort_flags:
                    finish = {"type": "abort", "message": f"Abort request {rid}"}
                    self.aborted.append(rid)
                    break
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
                if request is not None and time.monotonic() - last_check >= self.disconnect_check_s:
                    last_check = time.monotonic()
                    if await request.is_disconnected():
                        finish = {"type": "abort", "message": "client disconnected"}
                        self.aborted.append(rid)
                        break
                position = len(input_ids) + len(out)
                if self.eos_at is not None and position == self.eos_at and not params.get("ignore_eos"):
                    out.append(EOS)
                    finish = {"type": "stop", "matched": EOS}
                    break
                out.append(token_at(seed, position))
                if stream and len(out) < max_new:
                    yield self._output(rid, input_ids, out, None, cached, skip, params)
            if finish["type"] != "abort":
                self.cache.insert(input_ids + out)
                self.finished.append(rid)
            self.count(route, len(input_ids), len(out), cached)
            done = True
            yield self._output(rid, input_ids, out, finish, cached, skip, params)
        finally:
            if not done:  # the stream's client went away: SGLang's abort task drops the request
                self.aborted.append(rid)
            self.in_flight.pop(rid, None)
            self._abort_flags.discard(rid)

    @staticmethod
    def _output(rid, input_ids, out, finish, cached, skip, params) -> dict[str, Any]:
        shown = out
        if finish and finish.get("type") == "stop" and not params.get("no_stop_trim"):
            shown = out[:-1]  # SGLang trims the matched stop token from the text
        return {"text": decode(shown, skip), "output_ids": list(out),
                "meta_info": {"id": rid, "finish_reason": finish, "prompt_tokens": len(input_ids),
                              "completion_tokens": len(out), "cached_tokens": cached,
                              "e2e_latency": 0.0}}

    async def complete(self, route: str, rid: str, input_ids: list[int], params: dict[str, Any],
                       request: Request | None) -> dict[str, Any]:
        outputs = [out async for out in self.run(route, rid, input_ids, params, request)]
        return outputs[-1]

    # --- the HTTP app ---------------------------------------------------------------------
    def _build(self) -> FastAPI:
        app = FastAPI()
        fake = self

        def error(message: str, status: int = 400) -> JSONResponse:
            return JSONResponse({"object": "error", "message": message, "type": "BadRequest", "param": None,
                                 "code": status}, status_code=status)

        def check(input_ids: Any, params: dict[str, Any]) -> str | None:
            if not isinstance(input_ids, list) or not input_ids or not all(type(t) is int for t in input_ids):
                return "input_ids must be a non-empty list of ints"
            if len(input_ids) + int(params.get("max_new_tokens", 128)) > CONTEXT_LEN:
                return (f"Requested token count exceeds the model's maximum context length of {CONTEXT_LEN} "
                        f"tokens. You requested a total of {len(input_ids) + params.get('max_new_tokens', 128)}")
            unknown = set(params) - {"max_new_tokens", "temperature", "top_p", "top_k", "sampling_seed",
                                     "ignore_eos", "skip_special_tokens", "no_stop_trim", "stop",
                                     "stop_token_ids", "min_p", "n"}
            if unknown:
                return f"unexpected sampling_params {sorted(unknown)}"
            if int(params.get("max_new_tokens", 128)) < 0:
                return "max_new_tokens must be at least 0"
            return None

        @app.get("/health")
        async def health() -> Response:
            return Response(status_code=200)

        @app.get("/get_model_info")
        async def model_info() -> dict[str, Any]:
            return {"model_path": fake.model_path, "tokenizer_path": fake.model_path, "is_generation": True,
                    "preferred_sampling_params": None, "weight_version": "default"}

        @app.get("/v1/models")
        async def models() -> Any:
            if not fake.models_route:
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            return {"object": "list", "data": [{"id": fake.served_name, "object": "model", "created": 0,
                                                "owned_by": "sglang", "root": fake.served_name,
                                                "max_model_len": CONTEXT_LEN}]}

        @app.post("/generate")
        async def generate(request: Request) -> Response:
            body = await request.json()
            fake.calls.append(body)
            if fake.inject:
                status, raw = fake.inject.pop(0)
                return Response(raw, status_code=status, media_type="application/json")
            params = dict(body.get("sampling_params") or {})
            input_ids = body.get("input_ids")
            if input_ids is None and isinstance(body.get("text"), str):
                input_ids = encode(body["text"])
            problem = check(input_ids, params)
            if problem:
                return error(problem)
            rid = str(body.get("rid") or f"gen-{len(fake.calls)}")
            if rid in fake.in_flight:
                return error(f"Duplicate request ID {rid}")
            if body.get("stream"):
                return StreamingResponse(fake._sse(rid, input_ids, params, request), media_type="text/event-stream")
            return JSONResponse(await fake.complete("/generate", rid, input_ids, params, request))

        @app.post("/abort_request")
        async def abort(request: Request) -> Response:
            body = await request.json()
            rid = str(body.get("rid") or "")
            fake.abort_requests.append((rid, time.monotonic()))
            if body.get("abort_all"):
                fake._abort_flags.update(fake.in_flight)
            elif rid in fake.in_flight:
                fake._abort_flags.add(rid)
            return Response(status_code=200)

        @app.api_route("/flush_cache", methods=["GET", "POST"])
        async def flush() -> Response:
            if fake.in_flight:
                return PlainTextResponse("Cache not flushed: requests are running.\n", status_code=400)
            fake.cache = PrefixCache()
            return PlainTextResponse("Cache flushed.\n")

        @app.post("/tokenize")
        async def tokenize(request: Request) -> Response:
            body = await request.json()
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                return error("Invalid prompt type. Expected str or List[str].")
            ids = encode(prompt)
            if body.get("add_special_tokens", True):
                ids = [0, *ids]  # a BOS-like token, so `add_special_tokens: false` matters
            return JSONResponse({"tokens": ids, "count": len(ids), "max_model_len": CONTEXT_LEN})

        @app.post("/detokenize")
        async def detokenize(request: Request) -> Response:
            body = await request.json()
            tokens = body.get("tokens")
            if not isinstance(tokens, list) or not all(type(t) is int for t in tokens):
                return error("Invalid input: 'tokens' must be a list of integers.")
            return JSONResponse({"text": decode(tokens, body.get("skip_special_tokens", True))})

        @app.get("/metrics")
        async def metrics() -> Response:
            t = fake.totals()
            label = f'{{model_name="{fake.served_name}"}}'
            lines = []
            for name, value, kind in (("prompt_tokens_total", t["prompt"], "counter"),
                                      ("generation_tokens_total", t["generation"], "counter"),
                                      ("cached_tokens_total", t["cached"], "counter"),
                                      ("num_requests_total", t["requests"], "counter"),
                                      ("num_running_reqs", len(fake.in_flight), "gauge")):
                lines += [f"# HELP sglang:{name} {name}", f"# TYPE sglang:{name} {kind}",
                          f"sglang:{name}{label} {float(value)}"]
            return PlainTextResponse("\n".join(lines) + "\n")

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            kwargs = body.get("chat_template_kwargs") or {}
            ids = encode(chat_prompt(body.get("messages") or [], kwargs.get("enable_thinking", True)))
            return await fake._openai("chat", body, ids, request)

        @app.post("/v1/completions")
        async def completions(request: Request) -> Response:
            body = await request.json()
            prompt = body.get("prompt")
            ids = prompt if isinstance(prompt, list) else encode(str(prompt or ""))
            return await fake._openai("text", body, ids, request)

        return app

    async def _sse(self, rid: str, input_ids: list[int], params: dict[str, Any],
                   request: Request) -> AsyncIterator[bytes]:
        async for out in self.run("/generate", rid, input_ids, params, None, stream=True):
            yield b"data: " + json.dumps(out).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def _openai(self, kind: str, body: dict[str, Any], ids: list[int], request: Request) -> Response:
        route = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
        if body.get("stream") and body.get("return_prompt_token_ids"):
            return JSONResponse({"object": "error", "message": "return_prompt_token_ids is not supported with "
                                 "streaming", "type": "BadRequest", "param": None, "code": 400}, status_code=400)
        params = {"max_new_tokens": body.get("max_tokens") or body.get("max_completion_tokens") or 128,
                  "temperature": body.get("temperature", 1.0), "ignore_eos": bool(body.get("ignore_eos")),
                  "sampling_seed": body.get("seed")}
        rid = f"{kind}-{time.monotonic_ns()}"
        created, model = int(time.time()), body.get("model") or self.served_name
        if body.get("stream"):
            async def events() -> AsyncIterator[bytes]:
                sent, sent_text, final = 0, "", {}
                async for final in self.run(route, rid, ids, params, None, stream=True):
                    text = final["text"]
                    if final["meta_info"]["finish_reason"] is None and len(final["output_ids"]) > sent:
                        sent = len(final["output_ids"])
                        delta, sent_text = text[len(sent_text):], text
                        yield _sse(_chunk(kind, rid, created, model, delta, None))
                reason = final["meta_info"]["finish_reason"]["type"]
                yield _sse(_chunk(kind, rid, created, model, final["text"][len(sent_text):], reason))
                yield b"data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        out = await self.complete(route, rid, ids, params, request)
        meta = out["meta_info"]
        choice: dict[str, Any] = {"index": 0, "finish_reason": meta["finish_reason"]["type"]}
        if kind == "chat":
            choice["message"] = {"role": "assistant", "content": out["text"], "reasoning_content": None}
        else:
            choice["text"] = out["text"]
        if body.get("return_prompt_token_ids") and self.prompt_token_ids:
            choice["prompt_token_ids"] = list(ids)
        usage = {"prompt_tokens": meta["prompt_tokens"], "completion_tokens": meta["completion_tokens"],
                 "total_tokens": meta["prompt_tokens"] + meta["completion_tokens"],
                 "prompt_tokens_details": {"cached_tokens": meta["cached_tokens"]}}
        return JSONResponse({"id": rid, "object": "chat.completion" if kind == "chat" else "text_completion",
                             "created": created, "model": model, "choices": [choice], "usage": usage})


def _chunk(kind: str, rid: str, created: int, model: str, delta: str, reason: str | None) -> dict[str, Any]:
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "delta": {"role": "assistant", "content": delta}, "finish_reason": reason}
        return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [choice]}
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": delta, "finish_reason": reason}]}


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"
